/**
 * A flood of 1-byte fragments into the fused receiver (lib/connection/receiver.ts): CPU time per
 * fragment of 64 KiB reads of them (9 362 masked continuation frames of one byte each, the first
 * opening a binary message), as the receiver takes them (the whole-message scan, which stops at
 * the first fragment and hands the rest of the read to the splitter in one write) and with a
 * frame observer set (every read through the splitter alone, as with taps). What the scan costs
 * a peer that sends no whole messages.
 *
 *   npm run build && taskset -c 0 node dist/bench/fragments.js
 *
 * Prints, for each way (twice, after a round of each unprinted), the best of 24 timings of 20
 * reads each (after 6 to warm up).
 */
import { Buffer } from 'node:buffer';
import { Receiver } from '../lib/connection/receiver';

const READ = 64 * 1024;
/** A masked frame of one byte with the key 0 (so the byte is its own unmasked value): 7 bytes. */
const fragment = (opcode: number): Buffer => Buffer.from([opcode, 0x81, 0, 0, 0, 0, 0x61]);
const COUNT = Math.floor(READ / 7);
const first = Buffer.concat([fragment(0x02), ...Array.from({ length: COUNT - 1 }, () => fragment(0x00))]);
const later = Buffer.concat(Array.from({ length: COUNT }, () => fragment(0x00)));

function receiver(observed: boolean): Receiver {
  const ignore = (): void => undefined;
  const r = new Receiver('server', { maxMessageSize: 2 ** 40 }, { onMessage: ignore, onPing: ignore, onPong: ignore, onClose: ignore, onReply: ignore });
  if (observed) r.frameObserver = ignore;
  return r;
}

function bestNsPerFragment(observed: boolean): number {
  let best = Number.POSITIVE_INFINITY;
  for (let rep = 0; rep < 30; rep++) {
    const r = receiver(observed);
    const started = process.hrtime.bigint();
    for (let i = 0; i < 20; i++) {
      // A fresh buffer per read, as a socket's; the server unmasks in place.
      const err = r.write(Buffer.from(i === 0 ? first : later));
      if (err !== null) throw err;
    }
    const ns = Number(process.hrtime.bigint() - started) / (20 * COUNT);
    if (rep >= 6) best = Math.min(best, ns);
  }
  return best;
}

// One round of each first, unprinted: the first one timed also pays for compiling both.
bestNsPerFragment(false);
bestNsPerFragment(true);
for (const observed of [false, true, false, true]) {
  const ns = bestNsPerFragment(observed);
  process.stdout.write(`${observed ? 'splitter alone (a frame observer set)' : 'as the receiver takes them'}: ${ns.toFixed(1)} ns per fragment\n`);
}
