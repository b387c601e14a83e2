/**
 * `wspipe bridge`: a WebSocket and a TCP connection joined, bytes both ways.
 *
 *   wspipe bridge ws://HOST/PATH tcp:HOST:PORT     as a client: one WebSocket, one TCP connection
 *   wspipe bridge --port N tcp:HOST:PORT           as a server: each WebSocket client gets its own
 *                                                  TCP connection to HOST:PORT
 *
 *   TCP bytes ──(each chunk read: one binary message)──► WebSocket
 *   WebSocket messages (text or binary, as bytes) ──────► TCP
 *
 * Backpressure both ways comes from pipe(): a WebSocket whose send buffer is full pauses the TCP
 * socket, and a TCP socket that does not drain pauses the WebSocket (so TCP slows its peer).
 * Ends: the TCP side's end closes the WebSocket with 1000; the WebSocket's close ends the TCP
 * side; a TCP error closes the WebSocket with 1011 (1014 if it could not connect, as a gateway).
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { connect, createServer, ReadyState, WebSocket } from '../../lib';
import { ExitCode, onSignals, parseCommand, usageError } from './cli';

export const help = `usage: wspipe bridge [options] ws://HOST[:PORT]/PATH tcp:HOST:PORT
       wspipe bridge --port N [options] tcp:HOST:PORT

Joins a WebSocket and a TCP connection, both directions. Each chunk read from TCP is sent
as one binary message; each message received (text or binary) is written to TCP as bytes.
As a client (a ws:// or wss:// URL), one WebSocket and one TCP connection; it ends when
either side ends. As a server (--port), every WebSocket client gets its own TCP connection.

options:
      --port N           serve WebSockets on HOST:N and bridge each client (port 0 picks one;
                         the address is printed on stderr)
      --host H           address to serve on (default 127.0.0.1)
  -p, --subprotocol P    offer (client) or speak (server) subprotocol P (repeatable)
      --insecure         accept any TLS certificate of a wss:// server
  -h, --help             show this help

The end of the TCP side closes the WebSocket with 1000; the WebSocket's close ends the TCP
side. Exit status (client): 0 after a clean end, 1 when either side fails, 2 on a usage error.
The server runs until Ctrl-C (SIGINT) or SIGTERM, which close every client with 1001.
`;

/** Parses "tcp:HOST:PORT" (HOST may be [v6]); returns an error message instead when bad. */
export function parseTcpTarget(text: string): { host: string; port: number } | string {
  const m = /^tcp:(\[[^\]]+\]|[^:]+):(\d+)$/.exec(text);
  if (m === null) return `expected tcp:HOST:PORT, not '${text}'`;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return `bad TCP port in '${text}'`;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function log(line: string): void {
  process.stderr.write(`wspipe bridge: ${line}\n`);
}

/** Joins `ws` (open) to a new TCP connection; resolves with whether both ended cleanly. */
function join(ws: WebSocket, target: { host: string; port: number }, name: string): Promise<boolean> {
  return new Promise((resolve) => {
    const tcp = net.connect(target.port, target.host);
    let connected = false;
    let failed = false;
    // Until the TCP connection is up, the WebSocket's messages wait (paused: TCP slows the peer).
    ws.pause();
    tcp.once('connect', () => {
      connected = true;
      tcp.setNoDelay(true);
      // pipe() carries the backpressure both ways; the TCP end becomes a close with 1000 (after
      // the messages queued), not the bare end() that pipe() would call (1005 at the peer).
      tcp.pipe(ws, { end: false });
      tcp.once('end', () => {
        if (ws.readyState === ReadyState.OPEN) ws.close(1000);
      });
      ws.pipe(tcp);
    });
    tcp.on('error', (err: Error) => {
      failed = true;
      log(`${name}: tcp:${target.host}:${target.port}: ${err.message}`);
      if (ws.readyState === ReadyState.OPEN) ws.close(connected ? 1011 : 1014, connected ? 'TCP connection failed' : 'cannot reach the TCP server');
    });
    ws.on('error', (err: Error) => {
      failed = true;
      log(`${name}: ${err.message}`);
    });
    ws.once('close', (code: number) => {
      if (!tcp.destroyed && !tcp.writableEnded) tcp.end();
      const clean = !failed && (code === 1000 || code === 1001 || code === 1005);
      if (tcp.closed) resolve(clean);
      else tcp.once('close', () => resolve(clean));
    });
  });
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand('bridge', help, {
    args,
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      subprotocol: { type: 'string', short: 'p', multiple: true },
      insecure: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const o = parsed.values;
  const positionals = parsed.positionals;
  if (o.port !== undefined) {
    if (positionals.length !== 1) return usageError('bridge', 'with --port, one tcp:HOST:PORT is required');
    if (!/^\d+$/.test(o.port) || Number(o.port) > 65535) return usageError('bridge', `bad port '${o.port}'`);
    const target = parseTcpTarget(positionals[0]!);
    if (typeof target === 'string') return usageError('bridge', target);
    return serve(Number(o.port), o.host, target, o.subprotocol);
  }
  if (positionals.length !== 2) return usageError('bridge', 'a ws:// URL and a tcp:HOST:PORT are required');
  const [url, tcpText] = positionals as [string, string];
  let parsedUrl: URL | null = null;
  try {
    parsedUrl = new URL(url);
  } catch {
    // below
  }
  if (parsedUrl === null || (parsedUrl.protocol !== 'ws:' && parsedUrl.protocol !== 'wss:')) return usageError('bridge', `expected a ws:// or wss:// URL, not '${url}'`);
  const target = parseTcpTarget(tcpText);
  if (typeof target === 'string') return usageError('bridge', target);
  const ws = connect(url, { protocols: o.subprotocol, tls: o.insecure ? { rejectUnauthorized: false } : undefined });
  let error: Error | null = null;
  ws.on('error', (err: Error) => (error ??= err));
  const opened = await new Promise<boolean>((resolve) => {
    ws.once('open', () => resolve(true));
    ws.once('close', () => resolve(false));
  });
  if (!opened) {
    log(`cannot connect to ${url}${error === null ? '' : `: ${(error as Error).message}`}`);
    return ExitCode.Failure;
  }
  const stop = onSignals(() => ws.close(1000));
  const clean = await join(ws, target, url);
  stop();
  return clean ? ExitCode.Ok : ExitCode.Failure;
}

async function serve(port: number, host: string, target: { host: string; port: number }, protocols: string[] | undefined): Promise<number> {
  const web = http.createServer((_req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close', Upgrade: 'websocket' });
    res.end('This is a WebSocket to TCP bridge.\n');
  });
  const wss = createServer({ server: web, protocols });
  let next = 1;
  wss.on('connection', (ws: WebSocket, req: http.IncomingMessage) => {
    const id = next++;
    log(`client #${id} from ${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'} -> tcp:${target.host}:${target.port}`);
    void join(ws, target, `client #${id}`).then((clean) => log(`client #${id} ${clean ? 'ended' : 'failed'}`));
  });
  return new Promise<number>((resolve) => {
    const stop = onSignals(() => {
      stop();
      log('shutting down');
      web.close();
      wss.close(() => resolve(ExitCode.Ok));
    });
    web.once('error', (err: Error) => {
      stop();
      log(`cannot listen on ${host}:${port}: ${err.message}`);
      resolve(ExitCode.Failure);
    });
    web.listen(port, host, () => {
      const address = web.address() as net.AddressInfo;
      log(`listening on ws://${host.includes(':') ? `[${host}]` : host}:${address.port}, bridging to tcp:${target.host}:${target.port}`);
    });
  });
}
