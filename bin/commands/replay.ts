/**
 * `wspipe replay FILE --to URL`: plays the client -> server frames of an NDJSON frame log
 * (written by `wspipe proxy --tap`) back against a server (lib/capture/replay.ts) and prints what it
 * answered: one line per message, then the close code and reason on stderr.
 */
import { parseArgs } from 'node:util';
import { CloseCode } from '../../lib/protocol/constants';
import { FrameLogDirection } from '../../lib/capture/frame-log';
import { replay } from '../../lib/capture/replay';
import { ExitCode, usageError } from './connect';

export const help = `usage: wspipe replay FILE --to URL [options]

Reads the NDJSON frame log FILE and sends its client -> server frames ("dir": "upstream")
to the server at URL, frame by frame (fragmentation kept), then closes (with the log's close
frame if it has one, else 1000). Prints every message the server sent back: a text message
as a line, a binary one as "<binary N bytes> BASE64".

options:
      --to URL          the server (required)
      --timing          keep the original gaps between frames
      --speed X         with --timing, play X times faster (default 1)
      --dir D           the direction to play: upstream (default), downstream, in or out
      --insecure        do not check the server's TLS certificate
  -h, --help            show this help

Exit status 0 when the server closed cleanly (1000, 1001 or no status code), 1 otherwise
(handshake refused, abnormal close, a log that cannot be played), 2 on a usage error.
`;

const CLEAN: ReadonlySet<number> = new Set([CloseCode.Normal, CloseCode.GoingAway, CloseCode.NoStatus]);
const DIRECTIONS: ReadonlySet<string> = new Set(['upstream', 'downstream', 'in', 'out']);

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        to: { type: 'string' },
        timing: { type: 'boolean', default: false },
        speed: { type: 'string' },
        dir: { type: 'string', default: 'upstream' },
        insecure: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    return usageError('replay', (err as Error).message);
  }
  const o = parsed.values;
  if (o.help) {
    process.stdout.write(help);
    return ExitCode.Ok;
  }
  if (parsed.positionals.length !== 1) return usageError('replay', 'one FILE is required');
  if (o.to === undefined) return usageError('replay', '--to URL is required');
  const speed = o.speed === undefined ? 1 : Number(o.speed);
  if (!(speed > 0)) return usageError('replay', '--speed must be a positive number');
  if (!DIRECTIONS.has(o.dir)) return usageError('replay', `unknown --dir '${o.dir}'`);
  const file = parsed.positionals[0]!;
  try {
    const result = await replay(file, o.to, {
      timing: o.timing,
      speed,
      directions: [o.dir as FrameLogDirection],
      tls: o.insecure ? { rejectUnauthorized: false } : undefined,
    });
    for (const m of result.messages) {
      process.stdout.write(m.binary ? `<binary ${m.data.length} bytes> ${m.data.toString('base64')}\n` : `${m.data.toString('utf8')}\n`);
    }
    process.stderr.write(`wspipe replay: sent ${result.sent} frames; closed ${result.code}${result.reason === '' ? '' : ` ${result.reason}`}\n`);
    return CLEAN.has(result.code) ? ExitCode.Ok : ExitCode.Failure;
  } catch (err) {
    process.stderr.write(`wspipe replay: ${(err as Error).message}\n`);
    return ExitCode.Failure;
  }
}
