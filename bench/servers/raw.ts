/**
 * Raw TCP baseline: answers the handshake request with a canned head (no checks, no SHA-1), then
 * echoes bytes as they come ('/echo') or discards them, sending a 2-byte empty frame for every
 * N bytes received ('/sink?bytes=N', N being the wire size of one message).
 */
import * as net from 'node:net';
import { ignore, ready } from './control';

const HEAD_END = Buffer.from('\r\n\r\n');
const RESPONSE = Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
const ACK_FRAME = Buffer.from([0x82, 0x00]);

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', ignore);
  let head: Buffer = Buffer.alloc(0);
  const onHead = (chunk: Buffer): void => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const end = head.indexOf(HEAD_END);
    if (end < 0) return;
    socket.removeListener('data', onHead);
    const sink = /^GET \/sink\?bytes=(\d+) /.exec(head.subarray(0, end).toString('latin1'));
    const rest = head.subarray(end + HEAD_END.length);
    socket.write(RESPONSE);
    if (sink !== null) discard(socket, rest, Math.max(1, Number(sink[1])));
    else echo(socket, rest);
  };
  socket.on('data', onHead);
});

function echo(socket: net.Socket, rest: Buffer): void {
  if (rest.length > 0) socket.write(rest);
  socket.pipe(socket);
}

function discard(socket: net.Socket, rest: Buffer, sinkSize: number): void {
  let received = 0;
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    let acks = 0;
    while (received >= sinkSize) {
      received -= sinkSize;
      acks++;
    }
    if (acks > 0) socket.write(acks === 1 ? ACK_FRAME : Buffer.concat(Array<Buffer>(acks).fill(ACK_FRAME)));
  };
  if (rest.length > 0) onData(rest);
  socket.on('data', onData);
}

server.listen(0, '127.0.0.1', () => ready((server.address() as net.AddressInfo).port));
