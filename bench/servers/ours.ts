/** Our server, the way an application writes it: on 'message', send the data back. */
import { createServer, WebSocket } from '../../lib';
import type { UpgradeRequest } from '../../lib';
import { ACK, MAX_MESSAGE, ignore, isSink, ready } from './control';

const server = createServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_MESSAGE, maxMessageSize: MAX_MESSAGE });
server.on('connection', (ws: WebSocket, req: UpgradeRequest) => {
  ws.on('error', ignore);
  if (isSink(req.url)) ws.on('message', () => ws.send(ACK));
  else ws.on('message', (data: string | Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
});
server.on('listening', () => ready(server.address()!.port));
