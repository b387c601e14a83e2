/**
 * Joining and unmasking a message that spans two socket reads: what our receiver does
 * (FragmentAssemblerCore's join: applyMask of each piece into the message buffer, through
 * WebAssembly memory) against what ws with bufferutil does (Buffer.concat-style copies, then
 * bufferutil's native unmask in place).
 *
 *   npm run build && taskset -c 1 node dist/bench/join.js [size]
 *
 * The pieces are views of 16 read buffers, refilled before each join as a socket read would, the
 * message starting 14 bytes into its read (after a 64 KiB frame's header) and split 40000 bytes in.
 * The message buffers are reused (16 of them), so that page faults on fresh memory, which both
 * libraries meet alike and which vary with the heap's layout, stay out of the figure. Prints the
 * median of 7 timings of 20000 joins each, per join, for each way in turn, over ROUNDS rounds.
 */
import { Buffer } from 'node:buffer';
import { applyMask } from '../lib/protocol/mask';

/** bufferutil's one call used here (the package has no typings). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const bufferutil = require('bufferutil') as { unmask(buffer: Buffer, mask: Buffer): void };

const SIZE = Number(process.argv[2] ?? 65536);
if (!Number.isSafeInteger(SIZE) || SIZE <= 1) throw new Error('size must be an integer above 1');
const HEADER = 14;
const SPLIT = Math.min(40000, SIZE >> 1);
const ROUNDS = 3;
const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

const reads = Array.from({ length: 16 }, () => Buffer.allocUnsafe(HEADER + SIZE));
const messages = Array.from({ length: 16 }, () => Buffer.allocUnsafe(SIZE));
const wire = Buffer.alloc(HEADER + SIZE, 0xa7);

type Join = (first: Buffer, second: Buffer, out: Buffer) => void;

const ours: Join = (first, second, out) => {
  applyMask(first, MASK, 0, out, 0);
  applyMask(second, MASK, first.length, out, first.length);
};

const wsWithBufferutil: Join = (first, second, out) => {
  out.set(first, 0);
  out.set(second, first.length);
  bufferutil.unmask(out, MASK);
};

/** Microseconds per join: the median of 7 timings. */
function time(join: Join): number {
  const timings: number[] = [];
  for (let t = 0; t < 7; t++) {
    const n = 20000;
    let ns = 0n;
    for (let i = 0; i < n; i++) {
      const read = reads[i & 15]!;
      wire.copy(read);
      const first = read.subarray(HEADER, HEADER + SPLIT);
      const second = read.subarray(HEADER + SPLIT, HEADER + SIZE);
      const started = process.hrtime.bigint();
      join(first, second, messages[i & 15]!);
      ns += process.hrtime.bigint() - started;
    }
    timings.push(Number(ns) / n / 1000);
  }
  return timings.sort((a, b) => a - b)[3]!;
}

// Both ways must give the same bytes.
const check = [Buffer.allocUnsafe(SIZE), Buffer.allocUnsafe(SIZE)] as const;
const sample = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 7) & 0xff));
ours(sample.subarray(0, SPLIT), sample.subarray(SPLIT), check[0]);
wsWithBufferutil(sample.subarray(0, SPLIT), sample.subarray(SPLIT), check[1]);
if (!check[0].equals(check[1])) throw new Error('the two joins differ');

for (let round = 1; round <= ROUNDS; round++) {
  const a = time(ours);
  const b = time(wsWithBufferutil);
  console.log(`round ${round}, ${SIZE} bytes: ours ${a.toFixed(2)} µs per join, ws + bufferutil ${b.toFixed(2)} µs`);
}
