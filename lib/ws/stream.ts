/**
 * createWebSocketStream(ws): ws's helper that turns a WebSocket into a Duplex of bytes: each
 * message received is pushed as a chunk (message boundaries are not kept, unless
 * readableObjectMode is set), each chunk written is sent as one message (binary for Buffers;
 * with decodeStrings: false, strings as text). end() starts the closing handshake; destroy()
 * terminates the connection. Backpressure: when the readable side is full the WebSocket is
 * paused, and reading resumes it.
 */
import { Buffer } from 'node:buffer';
import { Duplex, DuplexOptions } from 'node:stream';
import { ReadyState } from '../connection/websocket';
import type { RawData, WebSocket } from './websocket';

export function createWebSocketStream(ws: WebSocket, options: DuplexOptions = {}): Duplex {
  let done = false;
  const stream: Duplex = new Duplex({
    ...options,
    autoDestroy: false,
    emitClose: false,
    objectMode: false,
    writableObjectMode: false,
    read() {
      if (ws.isPaused) ws.resume();
    },
    write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (err?: Error | null) => void) {
      if (ws.readyState === ReadyState.CONNECTING) {
        ws.once('open', () => stream._write(chunk, _encoding, callback));
        return;
      }
      ws.send(chunk, (err) => callback(err ?? null));
    },
    final(callback: (err?: Error | null) => void) {
      if (ws.readyState === ReadyState.CONNECTING) {
        ws.once('open', () => stream._final(callback));
        return;
      }
      if (ws.readyState === ReadyState.CLOSED) {
        callback();
        return;
      }
      ws.once('close', () => callback());
      if (ws.readyState === ReadyState.OPEN) ws.close();
    },
    destroy(err: Error | null, callback: (error: Error | null) => void) {
      if (ws.readyState === ReadyState.CLOSED) {
        callback(err);
        return;
      }
      ws.once('close', () => callback(err));
      ws.terminate();
    },
  });
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const chunk = stream.readableObjectMode && !isBinary && Buffer.isBuffer(data) ? data.toString() : data;
    if (!stream.push(chunk)) ws.pause();
  });
  ws.once('error', (err: Error) => {
    if (done) return;
    done = true;
    stream.destroy(err);
  });
  ws.once('close', () => {
    if (stream.destroyed) return;
    stream.push(null);
  });
  return stream;
}
