/**
 * `wspipe connect URL`: a WebSocket client on stdin and stdout, like netcat or websocat.
 *
 *   stdin ──lines──► text messages ──► peer ──► messages ──► stdout
 *
 * Backpressure both ways: stdin is paused while the connection's write buffer is full, and the
 * connection is paused (so TCP slows the peer) while stdout is not drained.
 *
 * Also exports the small helpers the listen command shares (reading messages from a stream,
 * printing received messages, pausing a stream until another drains).
 */
import { EventEmitter, once } from 'node:events';
import * as fs from 'node:fs';
import { ExitCode, oneLine, onSignals, parseCommand, usageError } from './cli';
import { connect, ReadyState, reconnecting, Reconnecting, WebSocket } from '../../lib';
import type { ClientOptions } from '../../lib';

export const help = `usage: wspipe connect [options] URL

Opens a WebSocket connection to URL (ws:// or wss://). Each line of stdin is sent as a
text message; each message received is written to stdout: text as one line (a message with
line breaks stays one line: they are written as "\\n"), binary as a line "<binary N bytes>"
(or as raw bytes with --binary). After the end of input (Ctrl-D), connect still prints what
arrives, and closes with 1000 once the peer has been quiet for --quiet seconds (or at the
--wait limit, or when the peer closes first). Ctrl-C closes at once (a second Ctrl-C drops
the connection).

options:
  -b, --binary           send stdin as binary messages, one per chunk read (chunk sizes are
                         whatever the pipe delivers, up to 64 KiB), and write received binary
                         messages to stdout as raw bytes
      --json             write each received message as one JSON line:
                         {"t": ISO time, "type": "text", "data": TEXT} or
                         {"t": ..., "type": "binary", "base64": BYTES}
      --one-message      send all of stdin as ONE message (text, or binary with --binary),
                         print the first message received, and close
  -p, --subprotocol P    offer subprotocol P (repeatable, in order of preference)
  -H, --header 'N: V'    add a header to the opening handshake (repeatable)
      --origin O         send Origin: O (as a browser does)
      --no-deflate       do not offer permessage-deflate (offered by default)
      --ping-interval S  send a ping after S seconds without traffic from the peer; a peer
                         silent for S more seconds is taken for dead (exit 1)
      --insecure         accept any TLS certificate (self-signed, other host name)
      --ca FILE          trust the CA certificate(s) in FILE (PEM) for wss://
      --cert FILE        client certificate (PEM) for wss:// (requires --key)
      --key FILE         the client certificate's private key (PEM)
      --echo             send every received message back (stdin is not read); runs until
                         the peer closes or Ctrl-C
      --quiet SECONDS    after the end of input, close once nothing has come from the peer
                         for SECONDS (default 1; 0 closes at once)
  -q, --wait SECONDS     after the end of input, close after SECONDS at the latest (default:
                         no limit but --quiet), like netcat's -q
      --reconnect        when the connection fails or is lost, connect again (backoff
                         from 1 s, doubling up to 30 s, with jitter), and go on with stdin
                         over the new connection; each attempt is reported on stderr. Not
                         after our own close (end of input, Ctrl-C), nor after the server
                         closed with 1000. Lines read while a connection drops may be lost
      --retries N        with --reconnect: give up (exit 1) after N failed attempts in a
                         row (default: never)
  -h, --help             show this help

exit status: 0 after a clean close (1000, 1001 or no status code), 1 when the connection
fails or ends otherwise, 2 on a usage error. Errors go to stderr.
`;

/** Close codes after which connect exits 0: normal, going away, and no status code. */
const CLEAN_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1001, 1005]);

/**
 * Pauses a stream while writes elsewhere are not drained, and for any other reason held.
 * `waitFor(target)` holds it until `target` emits 'drain' (or 'close'); `hold(key)` and
 * `release(key)` hold it for a reason of the caller's. The stream resumes when nothing holds it.
 */
export class Gate {
  private readonly holders = new Set<unknown>();

  constructor(private readonly stream: { pause(): unknown; resume(): unknown }) {}

  hold(key: unknown): void {
    if (this.holders.has(key)) return;
    this.holders.add(key);
    if (this.holders.size === 1) this.stream.pause();
  }

  release(key: unknown): void {
    if (!this.holders.delete(key)) return;
    if (this.holders.size === 0) this.stream.resume();
  }

  /** Holds the stream until `target` drains or closes (once, however often it is called meanwhile). */
  waitFor(target: EventEmitter): void {
    if (this.holders.has(target)) return;
    this.hold(target);
    const done = (): void => {
      target.removeListener('drain', done);
      target.removeListener('close', done);
      this.release(target);
    };
    target.on('drain', done);
    target.on('close', done);
  }
}

/**
 * Reads `input` as messages: in text mode each line (without its "\n" or "\r\n") is one text
 * message, a last line without "\n" included; in binary mode each chunk read is one binary
 * message. Calls `onEnd` after the last one. Pause `input` (e.g. with a Gate) to stop the flow.
 */
export function readMessages(
  input: NodeJS.ReadableStream,
  binary: boolean,
  onMessage: (data: string | Buffer) => void,
  onEnd: () => void,
): void {
  let rest = '';
  if (!binary) input.setEncoding('utf8');
  input.on('data', (chunk: string | Buffer) => {
    if (binary) {
      onMessage(chunk as Buffer);
      return;
    }
    const lines = (chunk as string).split('\n');
    lines[0] = rest + lines[0]!;
    rest = lines.pop()!;
    for (const line of lines) onMessage(line.endsWith('\r') ? line.slice(0, -1) : line);
  });
  input.on('end', () => {
    if (rest !== '') onMessage(rest);
    rest = '';
    onEnd();
  });
}

/** How received messages are written: lines (binary as a summary line, or raw bytes), or JSON lines. */
export type OutputMode = 'lines' | 'raw' | 'json';

/**
 * Writes one received message to `out`: text as a line (oneLine), binary as raw bytes ('raw')
 * or the line `<binary N bytes>`; in 'json' mode one JSON object per line, with `extra` fields
 * (e.g. the client number). Returns what out.write returned (false: wait for 'drain').
 */
export function writeMessage(out: NodeJS.WritableStream, data: string | Buffer, mode: OutputMode | boolean, extra: Record<string, unknown> = {}): boolean {
  const m: OutputMode = mode === true ? 'raw' : mode === false ? 'lines' : mode;
  if (m === 'json') {
    const record = typeof data === 'string' ? { t: new Date().toISOString(), ...extra, type: 'text', data } : { t: new Date().toISOString(), ...extra, type: 'binary', base64: data.toString('base64') };
    return out.write(`${JSON.stringify(record)}\n`);
  }
  if (typeof data === 'string') return out.write(`${oneLine(data)}\n`);
  return out.write(m === 'raw' ? data : `<binary ${data.length} bytes>\n`);
}

/** Parses repeated `-H 'Name: value'` options; returns an error message for a malformed one. */
export function parseHeaders(list: string[]): Record<string, string> | string {
  const headers: Record<string, string> = {};
  for (const item of list) {
    const colon = item.indexOf(':');
    const name = colon > 0 ? item.slice(0, colon).trim() : '';
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) return `bad header '${item}' (expected 'Name: value')`;
    headers[name] = item.slice(colon + 1).trim();
  }
  return headers;
}

function checkUrl(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `invalid URL '${text}'`;
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') return `unsupported scheme '${url.protocol}' (use ws:// or wss://)`;
  return null;
}

/** A number of seconds >= 0 from an option, or null when it is not one. */
function seconds(text: string | undefined): number | null {
  if (text === undefined) return null;
  const value = Number(text);
  return text.trim() === '' || !(value >= 0) || !Number.isFinite(value) ? null : value;
}

/** The failure of a connection, said plainly when it is a known mistake (TLS to a plain port). */
export function explain(err: Error, url: string): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (/wrong version number|WRONG_VERSION_NUMBER|packet length too long|unknown protocol/i.test(`${code} ${err.message}`)) {
    return `the server does not speak TLS on this port (${code === '' ? 'wrong version number' : code}): is it ${url.replace(/^wss:/i, 'ws:')}?`;
  }
  return err.message;
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand('connect', help, {
    args,
    allowPositionals: true,
    options: {
      binary: { type: 'boolean', short: 'b' },
      json: { type: 'boolean' },
      'one-message': { type: 'boolean' },
      subprotocol: { type: 'string', short: 'p', multiple: true },
      header: { type: 'string', short: 'H', multiple: true },
      origin: { type: 'string' },
      'no-deflate': { type: 'boolean' },
      'ping-interval': { type: 'string' },
      insecure: { type: 'boolean' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      echo: { type: 'boolean' },
      quiet: { type: 'string' },
      wait: { type: 'string', short: 'q' },
      reconnect: { type: 'boolean' },
      retries: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usageError('connect', positionals.length === 0 ? 'a URL is required' : 'only one URL, please');
  const url = positionals[0]!;
  const badUrl = checkUrl(url);
  if (badUrl !== null) return usageError('connect', badUrl);
  const wait = seconds(values.wait);
  if (values.wait !== undefined && wait === null) return usageError('connect', `bad --wait '${values.wait}' (seconds)`);
  const quiet = seconds(values.quiet ?? '1');
  if (quiet === null) return usageError('connect', `bad --quiet '${values.quiet}' (seconds)`);
  const ping = seconds(values['ping-interval']);
  if (values['ping-interval'] !== undefined && (ping === null || ping === 0)) return usageError('connect', `bad --ping-interval '${values['ping-interval']}' (seconds, above 0)`);
  if (values.echo === true && values['one-message'] === true) return usageError('connect', 'choose one of --echo and --one-message');
  if (values.json === true && values.binary === true) return usageError('connect', 'choose one of --json and --binary');
  if ((values.cert === undefined) !== (values.key === undefined)) return usageError('connect', '--cert and --key go together');
  if (values.reconnect === true && values['one-message'] === true) return usageError('connect', 'choose one of --reconnect and --one-message');
  const retries = values.retries === undefined ? Infinity : Number(values.retries);
  if (values.retries !== undefined && (values.reconnect !== true || !Number.isInteger(retries) || retries < 0)) {
    return usageError('connect', values.reconnect !== true ? '--retries goes with --reconnect' : `bad --retries '${values.retries}' (a whole number >= 0)`);
  }
  const headers = parseHeaders(values.header ?? []);
  if (typeof headers === 'string') return usageError('connect', headers);
  const files: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  for (const name of ['ca', 'cert', 'key'] as const) {
    const file = values[name];
    if (file === undefined) continue;
    try {
      files[name] = fs.readFileSync(file);
    } catch (err) {
      return usageError('connect', `cannot read --${name}: ${(err as Error).message}`);
    }
  }
  const tls = values.insecure === true || Object.keys(files).length > 0 ? { ...files, ...(values.insecure === true ? { rejectUnauthorized: false } : {}) } : undefined;
  const clientOptions: ClientOptions = {
    protocols: values.subprotocol,
    headers,
    tls,
    origin: values.origin,
    perMessageDeflate: values['no-deflate'] === true ? false : undefined,
    heartbeat: ping === null ? undefined : { interval: ping * 1000, timeout: ping * 1000 },
  };
  const sessionOptions: SessionOptions = {
    binary: values.binary === true,
    json: values.json === true,
    echo: values.echo === true,
    oneMessage: values['one-message'] === true,
    waitMs: wait === null ? null : wait * 1000,
    quietMs: values.wait !== undefined && values.quiet === undefined ? null : quiet * 1000,
  };
  if (values.reconnect === true) return reconnectSession(reconnecting(url, { ...clientOptions, reconnect: { retries } }), url, sessionOptions);
  return session(connect(url, clientOptions), url, sessionOptions);
}

interface SessionOptions {
  binary: boolean;
  json: boolean;
  echo: boolean;
  oneMessage: boolean;
  /** After the end of input: close after this many ms at the latest (null: no limit). */
  waitMs: number | null;
  /** After the end of input: close once the peer was quiet this many ms (null: not on quiet). */
  quietMs: number | null;
}

/** Runs one connection to its end; resolves with the exit status. */
function session(ws: WebSocket, url: string, o: SessionOptions): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const wsGate = new Gate(ws);
  const stdinGate = new Gate(stdin);
  const mode: OutputMode = o.json ? 'json' : o.binary ? 'raw' : 'lines';
  let opened = false;
  let error: Error | null = null;
  let inputEnded = false;
  let limit: NodeJS.Timeout | null = null;
  let quiet: NodeJS.Timeout | null = null;
  const closeNow = (): void => {
    if (ws.readyState === ReadyState.OPEN) ws.close(1000);
  };
  /** After the end of input, every message from the peer restarts the quiet period. */
  const armQuiet = (): void => {
    if (!inputEnded || o.quietMs === null) return;
    if (quiet !== null) clearTimeout(quiet);
    quiet = setTimeout(closeNow, o.quietMs);
  };

  ws.on('error', (err: Error) => {
    error ??= err;
  });
  let received = 0;
  ws.on('data', (data: string | Buffer) => {
    received++;
    if (o.oneMessage && received > 1) return;
    if (!writeMessage(stdout, data, mode)) wsGate.waitFor(stdout);
    if (o.echo && ws.readyState === ReadyState.OPEN && !ws.send(data)) wsGate.waitFor(ws);
    if (o.oneMessage) closeNow();
    armQuiet();
  });
  stdout.on('error', () => ws.close(1000));
  const afterInput = (): void => {
    inputEnded = true;
    if (o.oneMessage) return; // closes after the first answer
    if (o.waitMs === 0 || o.quietMs === 0) {
      closeNow();
      return;
    }
    if (o.waitMs !== null) limit = setTimeout(closeNow, o.waitMs);
    armQuiet();
  };
  ws.once('open', () => {
    opened = true;
    if (o.echo) return;
    if (o.oneMessage) {
      const chunks: Buffer[] = [];
      stdin.on('data', (chunk: Buffer) => chunks.push(chunk));
      stdin.on('end', () => {
        const all = Buffer.concat(chunks);
        if (ws.readyState === ReadyState.OPEN) ws.send(o.binary ? all : all.toString('utf8').replace(/\r?\n$/, ''), { binary: o.binary });
        afterInput();
      });
      return;
    }
    readMessages(
      stdin,
      o.binary,
      (data) => {
        if (ws.readyState === ReadyState.OPEN && !ws.send(data)) stdinGate.waitFor(ws);
      },
      afterInput,
    );
  });

  let interrupted = false;
  const stopSignals = onSignals(() => {
    if (interrupted || ws.readyState === ReadyState.CONNECTING) ws.terminate();
    else ws.close(1000);
    interrupted = true;
  });

  return new Promise<number>((done) => {
    // 'close' can come while received messages still wait for stdout to drain (the connection
    // is paused): they stay readable, and the readable side ends after them. Exit after them.
    const resolve = (status: number): void => {
      if (ws.readable && !ws.readableEnded) ws.once('end', () => done(status));
      else done(status);
    };
    ws.once('close', (code: number, reason: string) => {
      stopSignals();
      if (limit !== null) clearTimeout(limit);
      if (quiet !== null) clearTimeout(quiet);
      stdin.pause();
      const why = error === null ? '' : `: ${explain(error, url)}`;
      if (!opened) {
        process.stderr.write(`wspipe connect: cannot connect to ${url}${why}\n`);
        resolve(ExitCode.Failure);
      } else if (error === null && CLEAN_CLOSE_CODES.has(code)) {
        resolve(ExitCode.Ok);
      } else {
        process.stderr.write(`wspipe connect: connection closed with ${code}${reason === '' ? '' : ` ${reason}`}${why}\n`);
        resolve(ExitCode.Failure);
      }
    });
  });
}

/**
 * `--reconnect`: the connections of reconnecting() one after the other, stdin read once across
 * them (paused while none is open), each attempt on stderr. Our close (end of input, Ctrl-C)
 * ends the iteration, so nothing reconnects after it. Resolves with the exit status.
 */
async function reconnectSession(connections: Reconnecting, url: string, o: SessionOptions): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const stdinGate = new Gate(stdin);
  const mode: OutputMode = o.json ? 'json' : o.binary ? 'raw' : 'lines';
  const say = (line: string): boolean => process.stderr.write(`wspipe connect: ${line}\n`);
  let current: WebSocket | null = null;
  let attempt = 0;
  let limit: NodeJS.Timeout | null = null;
  let quiet: NodeJS.Timeout | null = null;
  let inputEnded = false;
  let last: { code: number; error: Error | null } | null = null;
  /** The user's close: the current connection closes with 1000 and no other follows. */
  const closeNow = (): void => connections.close(1000);
  const armQuiet = (): void => {
    if (!inputEnded || o.quietMs === null) return;
    if (quiet !== null) clearTimeout(quiet);
    quiet = setTimeout(closeNow, o.quietMs);
  };

  connections.on('attempt', (n: number) => (attempt = n));
  connections.on('retry', (err: Error, n: number, delay: number) => say(`attempt ${n} failed: ${explain(err, url)}; retrying in ${delay} ms`));
  connections.on('close', (code: number, reason: string, again: boolean) => {
    if (again) say(`connection closed with ${code}${reason === '' ? '' : ` ${reason}`}; reconnecting`);
  });
  stdinGate.hold(connections); // until a connection is open
  if (!o.echo) {
    readMessages(
      stdin,
      o.binary,
      (data) => {
        if (current !== null && current.readyState === ReadyState.OPEN && !current.send(data)) stdinGate.waitFor(current);
      },
      () => {
        inputEnded = true;
        if (o.waitMs === 0 || o.quietMs === 0) closeNow();
        else {
          if (o.waitMs !== null) limit = setTimeout(closeNow, o.waitMs);
          armQuiet();
        }
      },
    );
  }
  let interrupted = false;
  const stopSignals = onSignals(() => {
    if (interrupted) current?.terminate();
    closeNow();
    interrupted = true;
  });

  try {
    for await (const ws of connections) {
      current = ws;
      say(`connected to ${url} (attempt ${attempt})`);
      const wsGate = new Gate(ws);
      let error: Error | null = null;
      ws.on('error', (err: Error) => (error ??= err));
      ws.on('data', (data: string | Buffer) => {
        if (!writeMessage(stdout, data, mode)) wsGate.waitFor(stdout);
        if (o.echo && ws.readyState === ReadyState.OPEN && !ws.send(data)) wsGate.waitFor(ws);
        armQuiet();
      });
      stdinGate.release(connections);
      const [code] = (await once(ws, 'close')) as [number];
      // Messages still waiting for stdout to drain are written before the next connection.
      if (ws.readable && !ws.readableEnded) await once(ws, 'end');
      stdinGate.hold(connections);
      current = null;
      last = { code, error };
    }
  } catch (err) {
    say(`giving up after ${attempt} attempts: ${explain(err as Error, url)}`);
    return ExitCode.Failure;
  } finally {
    stopSignals();
    if (limit !== null) clearTimeout(limit);
    if (quiet !== null) clearTimeout(quiet);
    stdin.pause();
  }
  if (last === null) {
    say(`closed before a connection to ${url} was made`);
    return ExitCode.Failure;
  }
  if (last.error === null && CLEAN_CLOSE_CODES.has(last.code)) return ExitCode.Ok;
  say(`connection closed with ${last.code}${last.error === null ? '' : `: ${explain(last.error, url)}`}`);
  return ExitCode.Failure;
}
