/**
 * `wspipe proxy --port N --to URL`: a frame-level relay (lib/proxy/proxy.ts) that can show each frame
 * (--print) and record the traffic as an NDJSON frame log (--tap FILE, lib/capture/frame-log.ts).
 *
 *   client ──► proxy ──► upstream (--to)
 *                │ frames taps (policy 'block': the log is complete; a slow disk slows the relay)
 *                ▼
 *   FrameLogWriterCore ──► FILE (NDJSON) and/or stdout (one readable line per frame)
 */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Frame } from '../../lib/protocol/frame';
import { FrameLogRecord, FrameLogWriterCore, formatFrameLogRecord } from '../../lib/capture/frame-log';
import { ProxyConnection, createProxy } from '../../lib/proxy/proxy';
import { ExitCode, onSignals, usageError } from './connect';

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
                        per line: t, dir "upstream"|"downstream", opcode, fin, rsv1-3, len,
                        text or base64, truncated; plus conn, the connection number)
      --print           print one readable line per frame to stdout
      --log-max N       most payload bytes logged or printed per frame (default 65536)
      --local-ping      answer pings on each side and do not relay them
      --insecure        do not check the upstream's TLS certificate
  -h, --help            show this help

Ctrl-C (SIGINT) or SIGTERM closes every connection with 1001 (both sides) and exits 0.
Exit status 1 when the proxy cannot listen, 2 on a usage error.
`;

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        port: { type: 'string' },
        to: { type: 'string' },
        host: { type: 'string', default: '127.0.0.1' },
        tap: { type: 'string' },
        print: { type: 'boolean', default: false },
        'log-max': { type: 'string' },
        'local-ping': { type: 'boolean', default: false },
        insecure: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    return usageError('proxy', (err as Error).message);
  }
  const o = parsed.values;
  if (o.help) {
    process.stdout.write(help);
    return ExitCode.Ok;
  }
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
  if (logMax !== undefined && (!Number.isSafeInteger(logMax) || logMax < 0)) return usageError('proxy', '--log-max must be a number of bytes');

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

  const proxy = createProxy({
    target: o.to,
    port: Number(o.port),
    host: o.host,
    pingPong: o['local-ping'] ? 'local' : 'relay',
    tls: o.insecure ? { rejectUnauthorized: false } : undefined,
  });
  const listened = await new Promise<Error | null>((resolve) => {
    proxy.once('listening', () => resolve(null));
    proxy.once('error', resolve);
  });
  if (listened !== null) {
    process.stderr.write(`wspipe proxy: cannot listen on ${o.host}:${o.port}: ${listened.message}\n`);
    file?.end();
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
    if (file !== null || o.print) logConnection(conn, id, file, o.print, logMax);
  });

  await new Promise<void>((resolve) => {
    const stop = onSignals(() => {
      stop();
      process.stderr.write('wspipe proxy: closing\n');
      proxy.close(() => resolve());
    });
  });
  if (file !== null) await new Promise<void>((resolve) => file!.end(() => resolve()));
  return ExitCode.Ok;
}

/** Logs both directions of one connection through blocking frame taps. */
function logConnection(conn: ProxyConnection, id: number, file: fs.WriteStream | null, print: boolean, maxLoggedPayload: number | undefined): void {
  const writer = new FrameLogWriterCore(
    { maxLoggedPayload },
    {
      onRecord: (record: FrameLogRecord) => {
        if (file !== null && !file.write(`${JSON.stringify({ ...record, conn: id })}\n`)) holdUntilDrain(file);
        if (print && !process.stdout.write(`${formatFrameLogRecord(record)}\n`)) holdUntilDrain(process.stdout);
      },
    },
  );
  const taps = (['upstream', 'downstream'] as const).map((dir) => {
    const tap = conn.tap('frames', dir, { policy: 'block' });
    tap.on('data', (frame: Frame) => writer.write({ dir, frame }));
    return tap;
  });
  // A full file or stdout pauses the taps; being 'block' taps, they then pause the relay.
  let held = 0;
  function holdUntilDrain(out: NodeJS.WritableStream): void {
    held++;
    for (const tap of taps) tap.pause();
    out.once('drain', () => {
      if (--held === 0) for (const tap of taps) tap.resume();
    });
  }
}

