/**
 * `wspipe listen --port N`: a WebSocket server whose connections are handled one of four ways:
 *
 *   stdio (default)  every client's messages ──► stdout;  stdin lines ──► every client
 *   --echo           each connection piped into itself (ws.pipe(ws))
 *   --exec CMD       messages ──► a child's stdin;  its stdout ──► messages (one child each)
 *   --broadcast      each message ──► every other client
 *
 * Plain ws:// is served by node:http, wss:// (with --cert and --key) by node:https; the
 * WebSocketServer takes their 'upgrade' events. Ctrl-C closes every client with 1001.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { createServer, ReadyState, WebSocket, WebSocketServer } from '../../lib';
import { ExitCode, onSignals, parseCommand, usageError } from './cli';
import { Gate, OutputMode, readMessages, writeMessage } from './connect';

export const help = `usage: wspipe listen --port N [options]

Serves WebSocket connections on HOST:N (port 0 picks a free port; the address is printed
on stderr, as are connections and closes). Connections are handled by one of:

  (default)        stdio: messages from every client are written to stdout (text as a line,
                   binary as "<binary N bytes>" or raw with --binary); stdin lines are sent
                   to every connected client (stdin is read only while one is connected)
  --echo           every message is sent back to its sender
  --exec CMD       one child process per connection (run by the shell): each message goes
                   to its stdin (a text message as a line), each line of its stdout comes
                   back as a text message (each chunk as a binary message with --binary).
                   The connection closes when the child exits (1000 if it exited with 0,
                   else 1011); the child is killed when the connection closes
  --broadcast      every message is sent to every other connected client

options:
      --port N           port to listen on (required)
      --host H           address to listen on (default 127.0.0.1)
  -b, --binary           binary messages in and out of stdio or the child (see above)
      --json             stdio: write each message as one JSON line, {"t": ISO time,
                         "client": N, "type": "text", "data": TEXT} or {..., "type":
                         "binary", "base64": BYTES} (a text message with line breaks is
                         otherwise one line, its breaks written as "\\n")
      --cert FILE        serve wss:// with this certificate (PEM; requires --key)
      --key FILE         the certificate's private key (PEM)
  -p, --subprotocol P    a subprotocol this server speaks (repeatable, in order of
                         preference; the first one the client offers is chosen)
  -h, --help             show this help

Ctrl-C (SIGINT) or SIGTERM closes every connection with 1001 and exits 0. Exit status 1 when
the server cannot listen, 2 on a usage error.
`;

/** A connection handler: attaches to one open connection. */
type Handler = (ws: WebSocket, id: number) => void;

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand('listen', help, {
    args,
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      echo: { type: 'boolean' },
      exec: { type: 'string' },
      broadcast: { type: 'boolean' },
      binary: { type: 'boolean', short: 'b' },
      json: { type: 'boolean' },
      cert: { type: 'string' },
      key: { type: 'string' },
      subprotocol: { type: 'string', short: 'p', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (values.port === undefined) return usageError('listen', '--port is required');
  const port = Number(values.port);
  if (!/^\d+$/.test(values.port) || port > 65535) return usageError('listen', `bad port '${values.port}'`);
  const modes = [values.echo === true, values.exec !== undefined, values.broadcast === true].filter(Boolean).length;
  if (modes > 1) return usageError('listen', 'choose one of --echo, --exec and --broadcast');
  if ((values.cert === undefined) !== (values.key === undefined)) return usageError('listen', '--cert and --key go together');
  if (values.json === true && (values.binary === true || modes > 0)) return usageError('listen', '--json is for the default stdio mode, without --binary');
  let credentials: { cert: Buffer; key: Buffer } | null = null;
  if (values.cert !== undefined && values.key !== undefined) {
    try {
      credentials = { cert: fs.readFileSync(values.cert), key: fs.readFileSync(values.key) };
    } catch (err) {
      return usageError('listen', `cannot read the certificate or key: ${(err as Error).message}`);
    }
  }

  let web: http.Server | https.Server;
  try {
    web = credentials === null ? http.createServer() : https.createServer(credentials);
  } catch (err) {
    return usageError('listen', `bad certificate or key: ${(err as Error).message}`);
  }
  web.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close', Upgrade: 'websocket' });
    res.end('This is a WebSocket server.\n');
  });
  const wss = createServer({ server: web as http.Server, protocols: values.subprotocol });
  const binary = values.binary === true;
  const handler: Handler =
    values.echo === true
      ? (ws) => ws.pipe(ws)
      : values.exec !== undefined
        ? execHandler(values.exec, binary)
        : values.broadcast === true
          ? broadcastHandler(wss)
          : stdioHandler(wss, values.json === true ? 'json' : binary ? 'raw' : 'lines');

  let next = 1;
  wss.on('connection', (ws: WebSocket, req: http.IncomingMessage) => {
    const id = next++;
    const from = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    log(`client #${id} connected from ${from}${ws.protocol === '' ? '' : ` (subprotocol ${ws.protocol})`}`);
    ws.on('error', (err: Error) => log(`client #${id}: ${err.message}`));
    ws.once('close', (code: number, reason: string) => log(`client #${id} closed: ${code}${reason === '' ? '' : ` ${reason}`}`));
    handler(ws, id);
  });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stopSignals = onSignals(() => {
      if (stopping) {
        for (const ws of wss.clients) ws.terminate();
        return;
      }
      stopping = true;
      log('shutting down');
      web.close();
      wss.close(() => {
        stopSignals();
        resolve(ExitCode.Ok);
      });
    });
    web.once('error', (err: Error) => {
      stopSignals();
      log(`cannot listen on ${values.host}:${port}: ${err.message}`);
      resolve(ExitCode.Failure);
    });
    web.listen(port, values.host, () => {
      const address = web.address();
      const actual = address !== null && typeof address === 'object' ? address.port : port;
      const host = values.host!.includes(':') ? `[${values.host}]` : values.host;
      log(`listening on ${credentials === null ? 'ws' : 'wss'}://${host}:${actual}`);
    });
  });
}

function log(line: string): void {
  process.stderr.write(`wspipe listen: ${line}\n`);
}

/** Sends `data` to each of `targets`; `source` is paused until every congested target drains. */
function fanOut(targets: Iterable<WebSocket>, data: string | Buffer, gate: Gate, except?: WebSocket): void {
  for (const target of targets) {
    if (target === except || target.readyState !== ReadyState.OPEN) continue;
    if (!target.send(data)) gate.waitFor(target);
  }
}

/** stdio: every client's messages to stdout, stdin to every client. */
function stdioHandler(wss: WebSocketServer, mode: OutputMode): Handler {
  const binary = mode === 'raw';
  const stdinGate = new Gate(process.stdin);
  const NO_CLIENTS = 'no clients';
  stdinGate.hold(NO_CLIENTS);
  readMessages(
    process.stdin,
    binary,
    (data) => fanOut(wss.clients, data, stdinGate),
    () => log('end of input; still serving (Ctrl-C stops)'),
  );
  return (ws, id) => {
    const gate = new Gate(ws);
    ws.on('data', (data: string | Buffer) => {
      if (!writeMessage(process.stdout, data, mode, { client: id })) gate.waitFor(process.stdout);
    });
    stdinGate.release(NO_CLIENTS);
    ws.once('close', () => {
      if (wss.clients.size === 0) stdinGate.hold(NO_CLIENTS);
    });
  };
}

/** broadcast: each message to every other client. */
function broadcastHandler(wss: WebSocketServer): Handler {
  return (ws) => {
    const gate = new Gate(ws);
    ws.on('data', (data: string | Buffer) => fanOut(wss.clients, data, gate, ws));
  };
}

/** exec: one child per connection, messages to its stdin, its stdout back as messages. */
function execHandler(command: string, binary: boolean): Handler {
  return (ws) => {
    // detached: the child leads its own process group, so that everything the shell started
    // can be killed at once (and a Ctrl-C in the terminal reaches only us: we close cleanly).
    const child: ChildProcess = spawn(command, { shell: true, detached: true, stdio: ['pipe', 'pipe', 'inherit'] });
    const stdin = child.stdin!;
    const stdout = child.stdout!;
    // The child may exit without reading everything (EPIPE): its exit closes the connection.
    stdin.on('error', () => {});
    const wsGate = new Gate(ws);
    const childGate = new Gate(stdout);
    ws.on('data', (data: string | Buffer) => {
      if (!stdin.writable) return;
      if (!stdin.write(typeof data === 'string' ? `${data}\n` : data)) wsGate.waitFor(stdin);
    });
    ws.on('end', () => stdin.end());
    readMessages(
      stdout,
      binary,
      (data) => {
        if (ws.readyState === ReadyState.OPEN && !ws.send(data)) childGate.waitFor(ws);
      },
      () => {},
    );
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      if (ws.readyState !== ReadyState.OPEN) return;
      if (code === 0) ws.close(1000);
      else ws.close(1011, signal !== null ? `command killed by ${signal}` : `command exited with ${code}`);
    });
    child.once('error', (err: Error) => {
      log(`cannot run '${command}': ${err.message}`);
      if (ws.readyState === ReadyState.OPEN) ws.close(1011, 'cannot run the command');
    });
    ws.once('close', () => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        child.kill();
      }
    });
  };
}
