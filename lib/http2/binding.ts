/**
 * The server side's I/O for WebSockets over HTTP/2 (RFC 8441): makes a node:http2 server
 * advertise SETTINGS_ENABLE_CONNECT_PROTOCOL, hands its extended CONNECT streams for
 * "websocket" to a callback, and answers on a stream (the handshake's 200 or a refusal).
 *
 * Opt-in only: a server advertises the setting only while a binding is attached, because a
 * client that sees it sends its WebSockets as streams (Chromium does, on a connection it already
 * has), and those must reach code that takes them. Detaching stops advertising it on new HTTP/2
 * connections (connections already open keep the SETTINGS they were sent).
 *
 * The stream itself (a node:http2 Http2Stream, a Duplex of bytes) is the WebSocket's transport:
 * its flow control is the backpressure, END_STREAM is the TCP FIN of HTTP/1.1, and RST_STREAM
 * the TCP RST (RFC 8441 §5: "the RST_STREAM frame ... is used as the equivalent of a TCP RST").
 */
import type * as http2 from 'node:http2';
import type { HeaderMap } from '../handshake/handshake-parser';
import type { Transport } from '../connection/websocket';
import { type Http2ExtraHeaders, buildConnectAnswer, buildConnectRefusal, isWebSocketConnect } from './handshake';

/** A node:http2 server (secure or not, with or without allowHTTP1). */
export type Http2ServerLike = http2.Http2Server | http2.Http2SecureServer;

/** Is `server` a node:http2 server (one that can send SETTINGS)? */
export function isHttp2Server(server: unknown): server is Http2ServerLike {
  return typeof server === 'object' && server !== null && typeof (server as { updateSettings?: unknown }).updateSettings === 'function';
}

/** Called with each extended CONNECT stream that asks for a WebSocket. */
export type WebSocketStreamHandler = (stream: http2.ServerHttp2Stream, headers: HeaderMap, rawHeaders: string[]) => void;

/** HTTP 405: what Node's compatibility layer answers a CONNECT nobody takes. */
const METHOD_NOT_ALLOWED = 405;

/**
 * Starts taking the WebSocket streams of `server`: advertises SETTINGS_ENABLE_CONNECT_PROTOCOL
 * to the HTTP/2 connections opened from now on and calls `onStream` for each extended CONNECT
 * with `:protocol` websocket. Other streams are left to the server's other listeners. Returns
 * the function that detaches it.
 *
 * With Node's compatibility API (a 'request' listener), a CONNECT stream is also offered as a
 * 'connect' event, and answered 405 when nobody listens: the binding listens to 'connect' too,
 * ignores the WebSocket ones (answered here) and answers 405 to the others when it is their only
 * listener, as Node would have.
 */
export function bindHttp2Server(server: Http2ServerLike, onStream: WebSocketStreamHandler): () => void {
  server.updateSettings({ enableConnectProtocol: true });
  const streamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]): void => {
    if (isWebSocketConnect(headers as HeaderMap)) onStream(stream, headers as HeaderMap, rawHeaders);
  };
  // With allowHTTP1, an HTTP/1.1 CONNECT comes here too, as (IncomingMessage, Socket): without
  // other listeners it is dropped, as Node drops it.
  const connectListener = (req: { headers: http2.IncomingHttpHeaders }, res: http2.Http2ServerResponse | { destroy(): void }): void => {
    if (isWebSocketConnect(req.headers as HeaderMap) || server.listenerCount('connect') !== 1) return;
    if ('stream' in res) {
      res.statusCode = METHOD_NOT_ALLOWED;
      res.end();
    } else {
      res.destroy();
    }
  };
  server.on('stream', streamListener);
  server.on('connect', connectListener);
  return () => {
    server.removeListener('stream', streamListener);
    server.removeListener('connect', connectListener);
    server.updateSettings({ enableConnectProtocol: false });
  };
}

/** Is the stream still able to carry an answer? */
export function streamOpen(stream: http2.ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed && !stream.headersSent;
}

/** Answers 200 (with the negotiated header fields) and returns the stream as a WebSocket transport. */
export function acceptStream(
  stream: http2.ServerHttp2Stream,
  answer: { protocol?: string | undefined; extensions?: string | undefined; headers?: Http2ExtraHeaders | undefined },
): Transport {
  stream.respond(buildConnectAnswer(answer));
  return stream as unknown as Transport;
}

/**
 * Answers a refusal (status, a text body) and ends the stream; an unread request body is
 * discarded. Nothing is answered on a stream already answered or gone.
 */
export function refuseStream(
  stream: http2.ServerHttp2Stream,
  status: number,
  message: string,
  headers?: Http2ExtraHeaders,
  versionError = false,
): void {
  if (!streamOpen(stream)) {
    if (!stream.destroyed) stream.close();
    return;
  }
  stream.on('error', () => {});
  stream.respond(buildConnectRefusal(status, headers, versionError));
  stream.end(message);
  stream.resume();
}
