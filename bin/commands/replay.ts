/**
 * `wspipe replay FILE [--to URL]`: plays a recording back against a server and prints what it
 * answered. FILE is an NDJSON frame log (written by `wspipe proxy --tap`) or a HAR file (from
 * `wspipe proxy --har`, Chrome DevTools, Playwright, ...); `-` reads it from stdin.
 *
 *   frame log: each connection (conn) replayed on its own connection, all at once (lib/capture/replay.ts)
 *   HAR:       each WebSocket entry's 'send' messages, on its own connection (lib/capture/har.ts)
 *
 * One line per message received on stdout (prefixed with the connection when there are
 * several), one summary line per connection on stderr, then what was played.
 */
import * as fs from 'node:fs';
import { CloseCode } from '../../lib/protocol/constants';
import { FrameLogDirection } from '../../lib/capture/frame-log';
import { Har, parseHar, replayHar } from '../../lib/capture/har';
import { ConnectionReplay, ReplayOptions, replay, replayAll } from '../../lib/capture/replay';
import { ExitCode, oneLine, parseCommand, usageError } from './cli';

export const help = `usage: wspipe replay FILE [--to URL] [options]

Plays a recording back against a server and prints every message the server sent back: a
text message as a line, a binary one as "<binary N bytes> BASE64". FILE ("-": stdin) is:

  an NDJSON frame log (wspipe proxy --tap): its client -> server frames ("dir": "upstream"),
      frame by frame (fragmentation kept), then its close frame (else a close 1000). Every
      connection of the log ("conn") is played on its own connection, all at once;
  a HAR file (wspipe proxy --har, Chrome DevTools, Playwright): the client's ("send")
      messages of each WebSocket entry, each entry on its own connection, all at once, to the
      entry's own URL unless --to is given.

Compressed messages are sent as messages (compressed again if the server accepts
permessage-deflate). With several connections, each printed line starts with "[ID] ".

options:
      --to URL          the server (required for a frame log)
      --connection ID   play only connection ID of the log ("conn"), or entry ID of the HAR
                        (its 0-based index among the WebSocket entries)
      --timing          keep the original gaps between frames (and between connections)
      --speed X         keep the original gaps, played X times faster (--speed 2: half)
      --dir D           the log direction to play: upstream (default), downstream, in or out
      --insecure        do not check the server's TLS certificate
  -h, --help            show this help

Exit status 0 when every connection closed cleanly (1000, 1001 or no status code), 1 otherwise
(handshake refused, abnormal close, a recording that cannot be played), 2 on a usage error.
`;

const CLEAN: ReadonlySet<number> = new Set([CloseCode.Normal, CloseCode.GoingAway, CloseCode.NoStatus]);
const DIRECTIONS: ReadonlySet<string> = new Set(['upstream', 'downstream', 'in', 'out']);

/** Reads all of stdin. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The recording as a HAR when it is one (a JSON object with "log"), else null (a frame log). */
function asHar(text: string): Har | null {
  const start = text.trimStart();
  if (!start.startsWith('{')) return null;
  let value: unknown;
  try {
    value = JSON.parse(start);
  } catch {
    return null; // NDJSON: several objects
  }
  return typeof value === 'object' && value !== null && 'log' in value ? parseHar(value) : null;
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand('replay', help, {
    args,
    allowPositionals: true,
    options: {
      to: { type: 'string' },
      connection: { type: 'string' },
      timing: { type: 'boolean', default: false },
      speed: { type: 'string' },
      dir: { type: 'string', default: 'upstream' },
      insecure: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const o = parsed.values;
  if (parsed.positionals.length !== 1) return usageError('replay', 'one FILE is required ("-" for stdin)');
  const speed = o.speed === undefined ? 1 : Number(o.speed);
  if (!(speed > 0) || !Number.isFinite(speed)) return usageError('replay', '--speed must be a positive number');
  if (!DIRECTIONS.has(o.dir)) return usageError('replay', `unknown --dir '${o.dir}'`);
  if (o.connection !== undefined && !/^\d+$/.test(o.connection)) return usageError('replay', `--connection must be a number, not '${o.connection}'`);
  if (o.to !== undefined) {
    let url: URL | null = null;
    try {
      url = new URL(o.to);
    } catch {
      // below
    }
    if (url === null || (url.protocol !== 'ws:' && url.protocol !== 'wss:')) return usageError('replay', `--to needs a ws:// or wss:// URL, not '${o.to}'`);
  }
  const file = parsed.positionals[0]!;
  let text: string;
  try {
    text = file === '-' ? await readStdin() : fs.readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(`wspipe replay: cannot read ${file}: ${(err as Error).message}\n`);
    return ExitCode.Failure;
  }
  const options: ReplayOptions = {
    timing: o.timing || o.speed !== undefined,
    speed,
    directions: [o.dir as FrameLogDirection],
    tls: o.insecure ? { rejectUnauthorized: false } : undefined,
  };
  const id = o.connection === undefined ? undefined : Number(o.connection);
  let played: ConnectionReplay[];
  let kind: string;
  try {
    const har = asHar(text);
    if (har !== null) {
      kind = 'HAR entr';
      played = await replayHar(har, { ...options, url: o.to, entry: id });
    } else {
      kind = 'connection';
      if (o.to === undefined) return usageError('replay', '--to URL is required for a frame log');
      const lines = text.split('\n');
      if (id === undefined) played = await replayAll(lines, o.to, options);
      else {
        const result = await replay(lines, o.to, { ...options, connection: id }).catch((err: Error) => err);
        played = [{ connection: id, frames: 0, result }];
      }
    }
  } catch (err) {
    process.stderr.write(`wspipe replay: ${(err as Error).message}\n`);
    return ExitCode.Failure;
  }
  return report(played, kind);
}

function report(played: ConnectionReplay[], kind: string): number {
  const several = played.length > 1;
  let clean = true;
  let frames = 0;
  for (const p of played) {
    const name = p.connection === null ? 'the log' : `${kind === 'connection' ? 'connection' : 'entry'} ${p.connection}`;
    const prefix = several ? `[${p.connection ?? '-'}] ` : '';
    if (p.result instanceof Error) {
      clean = false;
      process.stderr.write(`wspipe replay: ${name}: ${p.result.message}\n`);
      continue;
    }
    const r = p.result;
    frames += r.sent;
    for (const m of r.messages) {
      // A text message with line breaks stays one line: its line breaks are shown as "\n".
      const shown = m.binary ? `<binary ${m.data.length} bytes> ${m.data.toString('base64')}` : oneLine(m.data.toString('utf8'));
      process.stdout.write(`${prefix}${shown}\n`);
    }
    if (!CLEAN.has(r.code)) clean = false;
    const reason = r.reason === '' ? '' : ` ${r.reason}`;
    process.stderr.write(`wspipe replay: ${name}: sent ${r.sent} frame${r.sent === 1 ? '' : 's'}, got ${r.messages.length} message${r.messages.length === 1 ? '' : 's'}; closed ${r.code}${reason}\n`);
  }
  const what = kind === 'connection' ? `${played.length} connection${played.length === 1 ? '' : 's'}` : `${played.length} HAR entr${played.length === 1 ? 'y' : 'ies'}`;
  process.stderr.write(`wspipe replay: played ${what}, ${frames} frame${frames === 1 ? '' : 's'} sent\n`);
  return clean && played.length > 0 ? ExitCode.Ok : ExitCode.Failure;
}
