/**
 * One server WebSocket in this process, fed masked binary frames of SIZE bytes as 64 KiB reads
 * (4 a turn, each a fresh buffer, as a socket's are) on a transport that does no I/O; each
 * message is answered with an empty one. Prints CPU per message, the page faults of the process
 * and its garbage collections: what `bench/ws-cpu.ts sink` measures, one library per process, so
 * that processes can be compared with each other (docs/performance.md, "Why the one-way rows
 * swing": the same build lands in a state of few or many page faults, and keeps it).
 *
 *   npm run build && taskset -c 0 node dist/bench/sink-process.js [reads] [size] [lib folder]
 *
 * Defaults: 40 000 reads, 64 KiB messages, this build's dist/lib (another build's dist/lib may
 * be named to compare).
 */
import * as path from 'node:path';
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import type { WebSocket } from '../lib';
import { NullTransport } from '../spec/helpers/transports';
import { maskedBinaryFrame, streamReads } from './wire';

const READS = Number(process.argv[2] ?? '40000');
const SIZE = Number(process.argv[3] ?? String(64 * 1024));
const LIB = path.resolve(process.argv[4] ?? path.join(__dirname, '..', 'lib'));
const READ_SIZE = 64 * 1024;
const READS_PER_TURN = 4;

/** A transport whose writes complete on the next tick, as a socket's do. */
class DoneWritesTransport extends NullTransport {
  override write(_chunk: Buffer, cb?: (err?: Error | null) => void): boolean {
    if (cb !== undefined) process.nextTick(cb);
    return true;
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { WebSocket: Ours } = require(LIB) as { WebSocket: typeof WebSocket };
const transport = new DoneWritesTransport();
const ws = new Ours('server', { maxPayload: 1 << 30, maxMessageSize: 1 << 30 });
ws.attach(transport as never, null, { protocol: '', extensions: '' });
const EMPTY = Buffer.alloc(0);
let got = 0;
ws.on('message', () => {
  got++;
  ws.send(EMPTY, { binary: true });
});
ws.on('error', (err: Error) => {
  console.error(err);
  process.exitCode = 1;
});

const gcs: Record<string, number> = {};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = String((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind);
    gcs[kind] = (gcs[kind] ?? 0) + 1;
  }
}).observe({ entryTypes: ['gc'] });

const read = streamReads(maskedBinaryFrame(SIZE), READ_SIZE);
let fed = 0;
const faultsBefore = process.resourceUsage().minorPageFault;
const cpuBefore = process.cpuUsage();

function turn(): void {
  for (let k = 0; k < READS_PER_TURN && fed < READS; k++, fed++) {
    transport.emit('data', read());
  }
  if (fed < READS) {
    setImmediate(turn);
    return;
  }
  const cpu = process.cpuUsage(cpuBefore);
  const faults = process.resourceUsage().minorPageFault - faultsBefore;
  console.log(
    `${LIB}: ${got} messages of ${SIZE} B, ${Math.round(((cpu.user + cpu.system) * 1000) / got)} ns CPU a message ` +
      `(system ${Math.round((cpu.system * 1000) / got)}), ${faults} page faults, GCs by kind ${JSON.stringify(gcs)}`,
  );
}
turn();
