/**
 * The `ws` library's echo server. ws loads bufferutil by itself when it is installed; the runner
 * sets WS_NO_BUFFER_UTIL=1 (which ws honours) for the variant without it.
 */
import { WebSocketServer } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { RawData, WebSocket } from 'ws';
import { ACK, MAX_MESSAGE, ignore, isSink, ready } from './control';

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_MESSAGE, perMessageDeflate: false });
server.on('connection', (ws: WebSocket, req: IncomingMessage) => {
  ws.on('error', ignore);
  if (isSink(req.url)) ws.on('message', () => ws.send(ACK));
  else ws.on('message', (data: RawData, isBinary: boolean) => ws.send(data, { binary: isBinary }));
});
server.on('listening', () => {
  const addr = server.address();
  ready(addr !== null && typeof addr === 'object' ? addr.port : 0);
});
