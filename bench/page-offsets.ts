/**
 * How fast Buffer.copy moves 64 KiB depending on where the destination sits, within its 4 KiB
 * page, relative to the source: the reason lib/protocol/mask.ts places the WebAssembly side of every copy
 * half a page away from the other buffer.
 *
 *   npm run build && taskset -c 1 node dist/bench/page-offsets.js [size]
 *
 * Source and destination are views of one large ArrayBuffer, so their distance is exact (the
 * addresses of separately allocated buffers are not known to JavaScript). For each distance
 * (destination minus source, modulo 4096) from -64 to 128 bytes, and a few more, prints GB/s (the
 * median of 5 timings of 300 copies each, in cache) and lists the slow ones. On this project's
 * machine (AMD EPYC, glibc 2.36) a destination 1 to 31 bytes past the source ran at about
 * 1.5-2.5 GB/s against 30-40 GB/s everywhere else, equal offsets included: the copy's loads wait
 * on its own earlier stores to what look like the same addresses (4K aliasing). Two buffers that
 * malloc placed one after the other are 16 bytes apart in this sense (its chunk header), which
 * makes a copy from the first into the second a slow one when the first is used from its start.
 */
import { performance } from 'node:perf_hooks';

const size = Number(process.argv[2] ?? 65536);
if (!Number.isSafeInteger(size) || size <= 0) throw new Error('size must be a positive integer');
const PAGE = 4096;
/** Room for one buffer of `size` and a shift of up to a page either way, in whole pages. */
const AREA = (Math.ceil(size / PAGE) + 2) * PAGE;
const space = Buffer.from(new ArrayBuffer(2 * AREA));
space.fill(0x5a);
// Both a whole number of pages from the ArrayBuffer's start: their distance is the shift alone.
const SOURCE = PAGE;
const DESTINATION = AREA + PAGE;

function gbPerSecond(distance: number): number {
  const source = space.subarray(SOURCE, SOURCE + size);
  const at = DESTINATION + distance;
  const destination = space.subarray(at, at + size);
  const timings: number[] = [];
  for (let round = 0; round < 6; round++) {
    const start = performance.now();
    for (let i = 0; i < 300; i++) source.copy(destination);
    const ms = performance.now() - start;
    if (round > 0) timings.push(ms); // the first round warms up
  }
  timings.sort((a, b) => a - b);
  const median = timings[timings.length >> 1]!;
  return (size * 300) / (median / 1000) / 1e9;
}

const distances: number[] = [];
for (let d = -64; d <= 128; d++) distances.push(d);
distances.push(256, 1024, 2048, 4032, 4064);
const results = distances.map((d) => ({ d, gbs: gbPerSecond(d) }));
const sorted = results.map((r) => r.gbs).sort((a, b) => a - b);
const typical = sorted[sorted.length >> 1]!;
const slow = results.filter((r) => r.gbs < typical / 3);
console.log(`copy of ${size} bytes: median over all distances ${typical.toFixed(1)} GB/s`);
console.log(`slower than a third of that (${slow.length} of ${results.length} distances, destination minus source mod 4096):`);
console.log(slow.map((r) => `${r.d}: ${r.gbs.toFixed(1)}`).join(', ') || 'none');
