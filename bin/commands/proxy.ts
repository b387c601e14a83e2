/**
 * `wspipe proxy --port N --to URL`: a frame-level relay (lib/proxy/proxy.ts) that can show each frame
 * (--print), record the traffic as an NDJSON frame log (--tap FILE, lib/capture/frame-log.ts) and
 * as HAR (--har FILE, lib/capture/har.ts), and show it live in a web page (--ui PORT,
 * lib/capture/inspector.ts).
 *
 *   client ──► proxy ──► upstream (--to)
 *                │ frames taps (policy 'block': the log is complete; a slow disk slows the relay)
 *                ▼
 *   ConnectionCapture (compressed messages inflated) ──► records ──► FILE (NDJSON), stdout (--print)
 *                                                    └─► messages ──► HAR entry, written at close
 */
import * as fs from 'node:fs';
import { CapturedClose, CapturedMessage, ConnectionCapture } from '../../lib/capture/capture';
import { FrameLogRecord, formatFrameLogRecord } from '../../lib/capture/frame-log';
import { HarWebSocketMessage, HarWriter, harEntry, harMessage } from '../../lib/capture/har';
import { Inspector } from '../../lib/capture/inspector';
import { headerValue } from '../../lib/handshake/handshake';
import { ForwardedMode } from '../../lib/proxy/forwarded';
import { ProxyConnection, createProxy } from '../../lib/proxy/proxy';
import { ExitCode, onSignals, parseAmount, parseCommand, usageError } from './cli';

export const help = `usage: wspipe proxy --port N --to URL [options]

Listens on HOST:N (port 0 picks a free port; the address is printed on stderr) and relays
every WebSocket connection to URL (ws:// or wss://), frame by frame: fragmentation,
extensions and compressed payloads pass unchanged. With a URL whose path is "/", the
client's own path and query are used.

options:
      --port N          port to listen on (required)
      --to URL          the upstream server (required)
      --host H          address to listen on (default 127.0.0.1)
      --tap FILE        append every frame, both ways, to FILE as NDJSON (one JSON object
                        per line: t, conn (the connection number), dir "upstream"|"downstream",
                        opcode, fin, rsv1-3, len, text or base64, truncated). A compressed
                        message (permessage-deflate) is one line, inflated, with rsv1,
                        wireLen (compressed bytes) and frames
      --har FILE        write FILE as HAR 1.2: one entry per connection (the handshake as
                        request and response, the messages in _webSocketMessages), added
                        when the connection closes; the file is valid JSON between entries
      --ui PORT         serve the live inspector on http://127.0.0.1:PORT/ (0 picks a port;
                        the address is printed on stderr): connections and messages as they
                        pass, a filter, pause, and HAR export (see docs/capture.md)
      --print           print one readable line per frame to stdout, with the connection
                        number (#N)
      --log-max N       most payload bytes kept per frame and per message in the log, the
                        HAR and --print (default 65536); a longer payload is cut and the
                        line says so ("truncated": true, and its whole "len")
      --no-deflate      take permessage-deflate out of the client's offer: nothing is
                        compressed and every frame is readable as it passes
      --forwarded MODE  tell the upstream the client's address: both (default:
                        X-Forwarded-For/-Proto/-Host and Forwarded), x-forwarded,
                        forwarded, or none
      --trust-forwarded keep the client's own X-Forwarded-For/Forwarded and append this hop
                        (only behind proxies you trust: any client can write these headers;
                        without it they are replaced)
      --local-ping      answer pings on each side and do not relay them
      --max-payload N   largest frame payload relayed, in bytes (k, m, g: KiB, MiB, GiB);
                        a larger frame gets 1009 (default 100m)
      --max-message-size N
                        largest message a capture reassembles; also bounds the frames of
                        one relayed message, each after the first counting 256 bytes
                        (default 100m)
      --memory-budget N what all relayed connections together may hold, both sides
                        (default a quarter of the machine's memory, at most 1g; Infinity:
                        none); the largest holders are paused, then closed with 1008
      --close-timeout MS
                        how long a closing handshake may take (default 5000)
      --paused-ping-interval MS
                        ping a side the proxy stopped reading from this often, to notice
                        a peer that left (default 1000; Infinity: never)
      --insecure        do not check the upstream's TLS certificate
  -h, --help            show this help

Ctrl-C (SIGINT) or SIGTERM closes every connection with 1001 (both sides) and exits 0.
Exit status 1 when the proxy cannot listen, 2 on a usage error.
`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand('proxy', help, {
    args,
    options: {
      port: { type: 'string' },
      to: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      tap: { type: 'string' },
      print: { type: 'boolean', default: false },
      'log-max': { type: 'string' },
      'local-ping': { type: 'boolean', default: false },
      har: { type: 'string' },
      ui: { type: 'string' },
      'no-deflate': { type: 'boolean', default: false },
      forwarded: { type: 'string', default: 'both' },
      'trust-forwarded': { type: 'boolean', default: false },
      insecure: { type: 'boolean', default: false },
      'max-payload': { type: 'string' },
      'max-message-size': { type: 'string' },
      'memory-budget': { type: 'string' },
      'close-timeout': { type: 'string' },
      'paused-ping-interval': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const o = parsed.values;
  if (o.port === undefined || !/^\d+$/.test(o.port) || Number(o.port) > 65535) return usageError('proxy', '--port N is required (0-65535)');
  if (o.to === undefined) return usageError('proxy', '--to URL is required');
  let target: URL;
  try {
    target = new URL(o.to);
  } catch {
    return usageError('proxy', `invalid URL '${o.to}'`);
  }
  if (target.protocol !== 'ws:' && target.protocol !== 'wss:') return usageError('proxy', `unsupported scheme '${target.protocol}' (use ws:// or wss://)`);
  const logMax = o['log-max'] === undefined ? undefined : Number(o['log-max']);
  if (logMax !== undefined && (!/^\d+$/.test(o['log-max']!) || !Number.isSafeInteger(logMax))) return usageError('proxy', '--log-max must be a number of bytes');
  if (o.ui !== undefined && (!/^\d+$/.test(o.ui) || Number(o.ui) > 65535)) return usageError('proxy', `bad --ui port '${o.ui}'`);
  if (!FORWARDED_MODES.has(o.forwarded)) return usageError('proxy', `unknown --forwarded '${o.forwarded}' (both, x-forwarded, forwarded or none)`);
  const limits: Partial<Record<(typeof LIMIT_FLAGS)[number]['option'], number>> = {};
  for (const { flag, option, units, infinite } of LIMIT_FLAGS) {
    const text = o[flag];
    if (text === undefined) continue;
    const value = parseAmount(text, { units, infinite });
    if (value === null) return usageError('proxy', `bad --${flag} '${text}' (${units ? 'bytes: a positive whole number, k, m or g after it' : 'milliseconds: a positive whole number'}${infinite ? ', or Infinity' : ''})`);
    limits[option] = value;
  }

  let file: fs.WriteStream | null = null;
  if (o.tap !== undefined) {
    file = fs.createWriteStream(o.tap, { flags: 'a' });
    try {
      await new Promise<void>((resolve, reject) => {
        file!.once('open', () => resolve());
        file!.once('error', reject);
      });
    } catch (err) {
      process.stderr.write(`wspipe proxy: cannot open ${o.tap}: ${(err as Error).message}\n`);
      return ExitCode.Failure;
    }
  }

  let har: HarWriter | null = null;
  if (o.har !== undefined) {
    try {
      har = new HarWriter(o.har);
    } catch (err) {
      process.stderr.write(`wspipe proxy: cannot write ${o.har}: ${(err as Error).message}\n`);
      file?.end();
      return ExitCode.Failure;
    }
  }

  let inspector: Inspector | null = null;
  if (o.ui !== undefined) {
    inspector = new Inspector({ port: Number(o.ui) });
    try {
      const at = await inspector.listen();
      process.stderr.write(`wspipe proxy: inspector on http://127.0.0.1:${at.port}/\n`);
    } catch (err) {
      process.stderr.write(`wspipe proxy: cannot serve the inspector on 127.0.0.1:${o.ui}: ${(err as Error).message}\n`);
      file?.end();
      har?.close();
      return ExitCode.Failure;
    }
  }

  const proxy = createProxy({
    target: o.to,
    stripDeflate: o['no-deflate'],
    forwarded: o.forwarded as ForwardedMode,
    trustForwarded: o['trust-forwarded'],
    port: Number(o.port),
    host: o.host,
    pingPong: o['local-ping'] ? 'local' : 'relay',
    tls: o.insecure ? { rejectUnauthorized: false } : undefined,
    ...limits,
  });
  const listened = await new Promise<Error | null>((resolve) => {
    proxy.once('listening', () => resolve(null));
    proxy.once('error', resolve);
  });
  if (listened !== null) {
    process.stderr.write(`wspipe proxy: cannot listen on ${o.host}:${o.port}: ${listened.message}\n`);
    file?.end();
    har?.close();
    inspector?.close();
    return ExitCode.Failure;
  }
  proxy.on('error', (err: Error) => process.stderr.write(`wspipe proxy: ${err.message}\n`));
  const address = proxy.address()!;
  process.stderr.write(`wspipe proxy: listening on ${address.address}:${address.port}, relaying to ${o.to}\n`);

  let count = 0;
  proxy.on('rejected', (err: Error, _req: unknown, status: number) => {
    process.stderr.write(`wspipe proxy: refused a client (${status}): ${err.message}\n`);
  });
  proxy.on('connection', (conn: ProxyConnection) => {
    const id = ++count;
    process.stderr.write(`wspipe proxy: connection ${id} ${conn.request.url ?? '/'} -> ${conn.target.href}\n`);
    conn.on('error', (err: Error, side: string) => process.stderr.write(`wspipe proxy: connection ${id}: ${side}: ${err.message}\n`));
    conn.on('close', ({ client, upstream }: { client: { code: number }; upstream: { code: number } }) => {
      process.stderr.write(`wspipe proxy: connection ${id} closed (client ${client.code}, upstream ${upstream.code})\n`);
    });
    if (file !== null || o.print || har !== null || inspector !== null) record(conn, id, { file, print: o.print, har, inspector, maxLoggedPayload: logMax });
  });

  await new Promise<void>((resolve) => {
    const stop = onSignals(() => {
      stop();
      process.stderr.write('wspipe proxy: closing\n');
      proxy.close(() => resolve());
    });
  });
  if (file !== null) await new Promise<void>((resolve) => file!.end(() => resolve()));
  if (inspector !== null) await new Promise<void>((resolve) => inspector!.close(resolve));
  if (har !== null) {
    // Connections closed by the shutdown are written as their captures end.
    await Promise.all([...capturing]);
    har.close();
    process.stderr.write(`wspipe proxy: wrote ${har.entries} HAR entr${har.entries === 1 ? 'y' : 'ies'} to ${har.path}\n`);
  }
  return ExitCode.Ok;
}

const FORWARDED_MODES: ReadonlySet<string> = new Set(['both', 'x-forwarded', 'forwarded', 'none']);

/** Captures still under way (their HAR entry not yet written). */
const capturing = new Set<Promise<void>>();

interface RecordTo {
  file: fs.WriteStream | null;
  print: boolean;
  har: HarWriter | null;
  inspector: Inspector | null;
  maxLoggedPayload: number | undefined;
}

/** Captures one connection (lib/capture/capture.ts) into the frame log, stdout and the HAR. */
function record(conn: ProxyConnection, id: number, to: RecordTo): void {
  const capture = new ConnectionCapture(conn, id, { maxLoggedPayload: to.maxLoggedPayload });
  // A full file or stdout pauses the capture's taps; being 'block' taps, they then pause the relay.
  let held = 0;
  const holdUntilDrain = (out: NodeJS.WritableStream): void => {
    held++;
    capture.pause();
    out.once('drain', () => {
      if (--held === 0) capture.resume();
    });
  };
  if (to.file !== null || to.print) {
    capture.on('record', (r: FrameLogRecord) => {
      if (to.file !== null && !to.file.write(`${JSON.stringify(r)}\n`)) holdUntilDrain(to.file);
      if (to.print && !process.stdout.write(`${formatFrameLogRecord(r)}\n`)) holdUntilDrain(process.stdout);
    });
  }
  to.inspector?.add(capture);
  const har = to.har;
  if (har === null) return;
  const messages: HarWebSocketMessage[] = [];
  capture.on('message', (m: CapturedMessage) => messages.push(harMessage(m)));
  const host = headerValue(conn.request.headers, 'host') ?? `${conn.target.host}`;
  const written = new Promise<void>((resolve) => {
    capture.once('close', (close: CapturedClose) => {
      har.add(
        harEntry({
          id,
          request: conn.request,
          response: conn.response,
          url: `ws://${host}${conn.request.url}`,
          started: capture.started,
          messages,
          close,
          serverIPAddress: conn.target.hostname,
        }),
      );
      capturing.delete(written);
      resolve();
    });
  });
  capturing.add(written);
}

/** The flags that set a limit of the proxy: the option each sets, in bytes (units) or milliseconds. */
const LIMIT_FLAGS = [
  { flag: 'max-payload', option: 'maxPayload', units: true, infinite: false },
  { flag: 'max-message-size', option: 'maxMessageSize', units: true, infinite: false },
  { flag: 'memory-budget', option: 'serverMemoryBudget', units: true, infinite: true },
  { flag: 'close-timeout', option: 'closeTimeout', units: false, infinite: false },
  { flag: 'paused-ping-interval', option: 'pausedPingInterval', units: false, infinite: true },
] as const;
