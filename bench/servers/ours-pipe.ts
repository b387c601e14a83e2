/** Our server with each connection piped into itself: ws.pipe(ws) (backpressure included). */
import { Writable } from 'readable-stream';
import { createServer, WebSocket } from '../../lib';
import type { UpgradeRequest } from '../../lib';
import { ACK, MAX_MESSAGE, ignore, isSink, ready } from './control';

const server = createServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_MESSAGE, maxMessageSize: MAX_MESSAGE });
server.on('connection', (ws: WebSocket, req: UpgradeRequest) => {
  ws.on('error', ignore);
  if (!isSink(req.url)) {
    ws.pipe(ws);
    return;
  }
  // Sink: each message read is answered with an empty one, still through pipe() backpressure.
  ws.pipe(
    new Writable({
      objectMode: true,
      write(_message: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void) {
        if (ws.send(ACK)) cb();
        else ws.once('drain', () => cb());
      },
    }),
  );
});
server.on('listening', () => ready(server.address()!.port));
