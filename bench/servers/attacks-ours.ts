/**
 * Our echo server for `npm run bench:attacks`: the defaults a user gets (memory budgets, fragment
 * overhead, handshake timeout), permessage-deflate accepted (for the bombs), and the same message
 * limit as ws's server beside it (MAX_MESSAGE).
 *
 * BENCH_DIAG=1: on exit, writes to stderr where the time went (event-loop delay, GC pauses, how
 * often the first connection, the canary, was held and why).
 */
import { createServer, WebSocket } from '../../lib';
import { MAX_MESSAGE, ignore, ready } from './control';
import { diagnose } from './attacks-diag';

const server = createServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_MESSAGE, maxMessageSize: MAX_MESSAGE, perMessageDeflate: true });
const diag = process.env.BENCH_DIAG === '1' ? diagnose() : null;
server.on('connection', (ws: WebSocket) => {
  diag?.connection(ws);
  ws.on('error', ignore);
  ws.on('message', (data: string | Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
});
server.on('listening', () => ready(server.address()!.port));
