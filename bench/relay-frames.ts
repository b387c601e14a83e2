/**
 * The relay's cost per frame, without sockets: one ProxyConnection between two stand-in sockets
 * (EventEmitters that take writes and count them), fed 64 KiB chunks of masked client frames
 * through its 'data' listener, as a socket would. What is measured is the relay itself:
 * parsing, unmasking, the observer, re-masking with a fresh key per frame, serialization and
 * the coalesced writes, not the kernel.
 *
 *   node dist/bench/relay-frames.js            (after npm run build; pin it: taskset -c 1)
 *   RELAY_FRAMES=2000000 RELAY_KINDS=tiny ...  (frames per kind; kinds: tiny, small, downstream)
 *   RELAY_TAP=frames ...                       (a frames tap on the measured direction: every
 *                                               frame a Frame, the relay's path when observed)
 *
 * Kinds: 'tiny': the tiny-fragment flood (1-byte continuation frames without FIN, each 64 KiB
 * chunk one message: a first frame, continuations, a last one with FIN); 'small': complete
 * 16-byte binary messages; 'downstream': the same 16-byte messages from the upstream (unmasked,
 * relayed to the client without a mask). Prints ns per frame (best of RELAY_RUNS, default 5).
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { ProxyConnection } from '../lib/proxy/relay';
import { MASK_KEY } from './wire';
import { StandInSocket, relayBetween } from '../spec/helpers/transports';

const FRAMES = Number(process.env.RELAY_FRAMES ?? 2_000_000);
const RUNS = Number(process.env.RELAY_RUNS ?? 5);
const KINDS = (process.env.RELAY_KINDS ?? 'tiny,small,downstream').split(',') as Kind[];
const CHUNK = 64 * 1024;
const TAP = process.env.RELAY_TAP === 'frames';

type Kind = 'tiny' | 'small' | 'downstream';

/** One frame: FIN as given, opcode, a payload of `size` bytes ('x'), masked with MASK_KEY when `masked`. */
function frame(opcode: number, fin: boolean, size: number, masked: boolean): Buffer {
  const header = 2 + (masked ? 4 : 0);
  const out = Buffer.alloc(header + size);
  out[0] = (fin ? 0x80 : 0) | opcode;
  out[1] = (masked ? 0x80 : 0) | size;
  if (masked) MASK_KEY.copy(out, 2);
  for (let i = 0; i < size; i++) out[header + i] = 0x78 ^ (masked ? MASK_KEY[i & 3]! : 0);
  return out;
}

/** The chunks of one kind (each at most CHUNK bytes, whole frames) and the frames they hold. */
function chunks(kind: Kind): { chunks: Buffer[]; frames: number } {
  const out: Buffer[] = [];
  let frames = 0;
  if (kind === 'tiny') {
    const first = frame(0x2, false, 1, true);
    const middle = frame(0x0, false, 1, true);
    const last = frame(0x0, true, 1, true);
    const perChunk = Math.floor(CHUNK / middle.length);
    while (frames < FRAMES) {
      const parts = [first];
      for (let i = 2; i < perChunk; i++) parts.push(middle);
      parts.push(last);
      out.push(Buffer.concat(parts));
      frames += perChunk;
    }
  } else {
    const one = frame(0x2, true, 16, kind === 'small');
    const perChunk = Math.floor(CHUNK / one.length);
    const block = Buffer.concat(Array.from({ length: perChunk }, () => one));
    while (frames < FRAMES) {
      out.push(Buffer.from(block));
      frames += perChunk;
    }
  }
  return { chunks: out, frames };
}

function connection(): { conn: ProxyConnection; client: StandInSocket; upstream: StandInSocket } {
  const client = new StandInSocket();
  const upstream = new StandInSocket();
  const conn = relayBetween(client, upstream);
  return { conn, client, upstream };
}

async function run(kind: Kind): Promise<{ nsPerFrame: number; frames: number; writes: number; bytes: number }> {
  // Fresh chunks each run: the client's are unmasked in place.
  const { chunks: input, frames } = chunks(kind);
  const { conn, client, upstream } = connection();
  // A tap nobody reads (it drops what it cannot hold): the relay makes and offers every Frame.
  if (TAP) conn.tap('frames', kind === 'downstream' ? 'downstream' : 'upstream');
  const source = kind === 'downstream' ? upstream : client;
  const dest = kind === 'downstream' ? client : upstream;
  const started = performance.now();
  const count = (): number => (kind === 'downstream' ? conn.frames.downstream : conn.frames.upstream);
  // A chunk at a time, as a socket that honors pause() hands them: each side relays at most
  // TURN_FRAMES frames per turn of the event loop (lib/proxy/turns.ts), the rest at the next.
  // (Every chunk holds the same number of frames.)
  const perChunk = frames / input.length;
  let sent = 0;
  for (const chunk of input) {
    source.emit('data', chunk);
    sent += perChunk;
    while (count() < sent && conn.error === null) await new Promise((resolve) => setImmediate(resolve));
  }
  const ns = (performance.now() - started) * 1e6;
  const relayed = count();
  if (relayed !== frames || conn.error !== null) throw new Error(`${kind}: relayed ${relayed} of ${frames} (${String(conn.error)})`);
  return { nsPerFrame: ns / frames, frames, writes: dest.writes, bytes: dest.written };
}

async function main(): Promise<void> {
  console.log(`relay-frames: ${FRAMES} frames per kind, best of ${RUNS} runs${TAP ? ', frames tap' : ''}, node ${process.version}`);
  for (const kind of KINDS) {
    const all: number[] = [];
    let last = await run(kind); // warm-up
    for (let i = 0; i < RUNS; i++) {
      last = await run(kind);
      all.push(last.nsPerFrame);
    }
    all.sort((a, b) => a - b);
    console.log(
      `${kind.padEnd(10)} ${all[0]!.toFixed(0).padStart(5)} ns/frame (median ${all[all.length >> 1]!.toFixed(0)}), ` +
        `${last.frames} frames -> ${last.writes} writes, ${last.bytes} bytes`,
    );
  }
}

void main();
