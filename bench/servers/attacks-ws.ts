/** The `ws` library's echo server for `npm run bench:attacks`: its defaults, deflate accepted, our message limit (MAX_MESSAGE). */
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { MAX_MESSAGE, ignore, ready } from './control';

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_MESSAGE, perMessageDeflate: true });
server.on('connection', (ws: WebSocket) => {
  ws.on('error', ignore);
  ws.on('message', (data: RawData, isBinary: boolean) => ws.send(data, { binary: isBinary }));
});
server.on('listening', () => {
  const addr = server.address();
  ready(addr !== null && typeof addr === 'object' ? addr.port : 0);
});
