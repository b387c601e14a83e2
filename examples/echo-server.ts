/**
 * Echo server: every message comes back as it came (text as text, binary as binary).
 *
 *   npx ts-node examples/echo-server.ts --port 8080
 *   node dist/examples/echo-server.js --port 8080      (after npm run build)
 *   ... --no-deflate                                   (decline permessage-deflate)
 *   ... --cert cert.pem --key key.pem                   (wss:// over TLS)
 *   ... --cert cert.pem --key key.pem --http2           (wss:// over HTTP/2, RFC 8441, and
 *                                                        HTTP/1.1 upgrades, on the same port)
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
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import { createServer, WebSocket } from '../lib';

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1]! : fallback;
}

const port = Number(option('port', '8080'));
const host = option('host', '127.0.0.1');
const quiet = process.argv.includes('--quiet');
const deflate = !process.argv.includes('--no-deflate');

// TLS (--cert, --key): an https server, or with --http2 an HTTP/2 one that also takes HTTP/1.1
// (allowHTTP1), both answering plain requests with a line of text.
const certFile = option('cert', '');
const keyFile = option('key', '');
const useHttp2 = process.argv.includes('--http2');
if ((certFile === '') !== (keyFile === '') || (useHttp2 && certFile === '')) {
  console.error('--cert and --key go together; --http2 needs them');
  process.exit(2);
}
const tls = certFile === '' ? null : { cert: readFileSync(certFile), key: readFileSync(keyFile) };
const tlsServer = tls === null ? null : useHttp2 ? http2.createSecureServer({ ...tls, allowHTTP1: true }) : https.createServer(tls);
tlsServer?.on('request', (_req: unknown, res: { end(text: string): void }) => res.end('wspipe echo server: open a WebSocket here\n'));
const scheme = tlsServer === null ? 'ws' : 'wss';

const server = createServer({
  ...(tlsServer === null ? { port, host } : { server: tlsServer, http2: useHttp2 }),
  maxPayload: 128 * 1024 * 1024,
  maxMessageSize: 128 * 1024 * 1024,
  perMessageDeflate: deflate,
  protocols: (offered) => offered[0],
});

server.on('listening', () => {
  const addr = server.address();
  const notes = [deflate ? 'permessage-deflate on' : '', useHttp2 ? 'HTTP/2 (RFC 8441) and HTTP/1.1' : ''].filter((note) => note !== '');
  console.log(`echo server listening on ${scheme}://${host}:${addr?.port ?? port}${notes.length === 0 ? '' : ` (${notes.join(', ')})`}`);
  console.log(`try: npx ts-node examples/echo-client.ts ${scheme}://${host}:${addr?.port ?? port} hello`);
});
tlsServer?.listen(port, host, () => server.emit('listening'));

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
