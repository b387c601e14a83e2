/**
 * Echo server: every message comes back as it came (text as text, binary as binary).
 *
 *   npx ts-node examples/echo-server.ts --port 8080
 *   node dist/examples/echo-server.js --port 8080      (after npm run build)
 *   ... --no-deflate                                   (decline permessage-deflate)
 *
 * permessage-deflate (RFC 7692) is accepted here, unlike the library's default, because an echo
 * server is what people point browsers and test suites at, and they offer it.
 *
 * Subprotocols: an echo speaks them all, so it selects the first one the client offers. (The
 * library's default is to select none, since a server should only name what it speaks; but a
 * browser or ws client that offers one refuses a 101 that names none, as the WHATWG standard
 * says, so a server that selects none locks them out.)
 *
 * Each connection is piped into itself: `ws.pipe(ws)`. pipe() stops reading while the echo's
 * writes are not drained, so a client that sends faster than it reads is slowed down by TCP
 * instead of filling this process's memory.
 */
import { createServer, WebSocket } from '../lib';

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1]! : fallback;
}

const port = Number(option('port', '8080'));
const host = option('host', '127.0.0.1');
const quiet = process.argv.includes('--quiet');
const deflate = !process.argv.includes('--no-deflate');

const server = createServer({
  port,
  host,
  maxPayload: 128 * 1024 * 1024,
  maxMessageSize: 128 * 1024 * 1024,
  perMessageDeflate: deflate,
  protocols: (offered) => offered[0],
});

server.on('listening', () => {
  const addr = server.address();
  console.log(`echo server listening on ws://${host}:${addr?.port ?? port}${deflate ? ' (permessage-deflate on)' : ''}`);
  console.log(`try: npx ts-node examples/echo-client.ts ws://${host}:${addr?.port ?? port} hello`);
});

server.on('connection', (ws: WebSocket) => {
  if (!quiet) console.log('client connected');
  ws.pipe(ws);
  ws.on('error', (err: Error) => {
    if (!quiet) console.error('connection error:', err.message);
  });
  ws.on('close', (code: number, reason: string) => {
    if (!quiet) console.log(`client closed: ${code}${reason === '' ? '' : ` ${reason}`}`);
  });
});

server.on('error', (err: Error) => {
  console.error(err.message);
  process.exit(1);
});

function shutdown(): void {
  server.close(() => process.exit(0));
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
