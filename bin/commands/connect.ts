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
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { connect, ReadyState, WebSocket } from '../../lib';

export const help = `usage: wspipe connect [options] URL

Opens a WebSocket connection to URL (ws:// or wss://). Each line of stdin is sent as a
text message; each message received is written to stdout: text as one line, binary as a
line "<binary N bytes>" (or as raw bytes with --binary). End of input (Ctrl-D) or Ctrl-C
closes the connection with 1000 (a second Ctrl-C drops it at once).

options:
  -b, --binary           send stdin as binary messages, one per chunk read (chunk sizes are
                         whatever the pipe delivers, up to 64 KiB), and write received binary
                         messages to stdout as raw bytes
  -p, --subprotocol P    offer subprotocol P (repeatable, in order of preference)
  -H, --header 'N: V'    add a header to the opening handshake (repeatable)
      --insecure         accept any TLS certificate (self-signed, other host name)
      --ca FILE          trust the CA certificate(s) in FILE (PEM) for wss://
      --echo             send every received message back (stdin is not read); runs until
                         the peer closes or Ctrl-C
  -q, --wait SECONDS     after the end of input, wait up to SECONDS for the peer's answers
                         (and its close) before closing (default 0), like netcat's -q
  -h, --help             show this help

exit status: 0 after a clean close (1000, 1001 or no status code), 1 when the connection
fails or ends otherwise, 2 on a usage error. Errors go to stderr.
`;

/** Exit statuses shared by the wspipe commands (as netcat and websocat use them). */
export enum ExitCode {
  Ok = 0,
  /** The connection (or the server) failed, or closed with an error. */
  Failure = 1,
  /** Bad options or arguments. */
  Usage = 2,
}

/** Close codes after which connect exits 0: normal, going away, and no status code. */
const CLEAN_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1001, 1005]);

/** Prints `wspipe CMD: message` and a hint on stderr; returns ExitCode.Usage. */
export function usageError(command: string, message: string): ExitCode {
  process.stderr.write(`wspipe ${command}: ${message}\nTry 'wspipe ${command} --help'.\n`);
  return ExitCode.Usage;
}

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

/**
 * Writes one received message to `out`: text as a line, binary as raw bytes when `rawBinary`,
 * else as the line `<binary N bytes>`. Returns what out.write returned (false: wait for 'drain').
 */
export function writeMessage(out: NodeJS.WritableStream, data: string | Buffer, rawBinary: boolean): boolean {
  if (typeof data === 'string') return out.write(`${data}\n`);
  return out.write(rawBinary ? data : `<binary ${data.length} bytes>\n`);
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

/** Calls `handler` on SIGINT and SIGTERM; returns a function that removes it. */
export function onSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  };
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

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        binary: { type: 'boolean', short: 'b' },
        subprotocol: { type: 'string', short: 'p', multiple: true },
        header: { type: 'string', short: 'H', multiple: true },
        insecure: { type: 'boolean' },
        ca: { type: 'string' },
        echo: { type: 'boolean' },
        wait: { type: 'string', short: 'q', default: '0' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    return usageError('connect', (err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(help);
    return ExitCode.Ok;
  }
  if (positionals.length !== 1) return usageError('connect', positionals.length === 0 ? 'a URL is required' : 'only one URL, please');
  const url = positionals[0]!;
  const badUrl = checkUrl(url);
  if (badUrl !== null) return usageError('connect', badUrl);
  const wait = Number(values.wait);
  if (values.wait!.trim() === '' || !(wait >= 0)) return usageError('connect', `bad --wait '${values.wait}' (seconds)`);
  const headers = parseHeaders(values.header ?? []);
  if (typeof headers === 'string') return usageError('connect', headers);
  let ca: Buffer | undefined;
  if (values.ca !== undefined) {
    try {
      ca = fs.readFileSync(values.ca);
    } catch (err) {
      return usageError('connect', `cannot read --ca: ${(err as Error).message}`);
    }
  }
  const tls = values.insecure === true ? { rejectUnauthorized: false, ca } : ca !== undefined ? { ca } : undefined;
  const ws = connect(url, { protocols: values.subprotocol, headers, tls });
  return session(ws, url, { binary: values.binary === true, echo: values.echo === true, waitMs: wait * 1000 });
}

interface SessionOptions {
  binary: boolean;
  echo: boolean;
  /** Milliseconds to wait after the end of input before closing. */
  waitMs: number;
}

/** Runs one connection to its end; resolves with the exit status. */
function session(ws: WebSocket, url: string, { binary, echo, waitMs }: SessionOptions): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const wsGate = new Gate(ws);
  const stdinGate = new Gate(stdin);
  let opened = false;
  let error: Error | null = null;
  let lingering: NodeJS.Timeout | null = null;

  ws.on('error', (err: Error) => {
    error ??= err;
  });
  ws.on('data', (data: string | Buffer) => {
    if (!writeMessage(stdout, data, binary)) wsGate.waitFor(stdout);
    if (echo && ws.readyState === ReadyState.OPEN && !ws.send(data)) wsGate.waitFor(ws);
  });
  stdout.on('error', () => ws.close(1000));
  ws.once('open', () => {
    opened = true;
    if (echo) return;
    readMessages(
      stdin,
      binary,
      (data) => {
        if (ws.readyState === ReadyState.OPEN && !ws.send(data)) stdinGate.waitFor(ws);
      },
      () => {
        if (waitMs === 0) ws.close(1000);
        else lingering = setTimeout(() => ws.close(1000), waitMs);
      },
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
      if (lingering !== null) clearTimeout(lingering);
      stdin.pause();
      const why = error === null ? '' : `: ${error.message}`;
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
