/**
 * What one connection's stream objects cost to make, wire and tear down, without sockets: the
 * part of a handshake that the hand-composed pipeline (bench/servers/stages.ts) adds.
 *
 *   npm run build && taskset -c 1 node dist/bench/lifecycle.js
 *
 * For the seven stages of bench/servers/stages.ts on a PassThrough standing for the socket (made
 * and wired by the same code, bench/servers/stage-pipeline.ts):
 * - make: the constructors only;
 * - make + pipe: and the same pipe() calls as the bench server;
 * - make + pipe + destroy: and its teardown (every stage destroyed when the socket closes),
 *   including the 'close' events that follow on the next ticks.
 * And for comparison, the fused connection: a WebSocket attached to a transport that does no
 * I/O, then terminated.
 *
 * Prints the median and range over ROUNDS rounds (after one warm-up round) of CPU microseconds
 * per connection; the cases take turns within each round.
 */
import { PassThrough } from 'node:stream';
import { HandshakeParser, WebSocket } from '../lib';
import { NullTransport } from '../spec/helpers/transports';
import { makeStages, wireStages } from './servers/stage-pipeline';

const ROUNDS = 7;
const CONNECTIONS = 5000;

type Depth = 'make' | 'pipe' | 'destroy';

/** One connection's stages, made and wired by the code bench/servers/stages.ts runs. */
function stages(depth: Depth): void {
  const socket = new PassThrough();
  const handshake = new HandshakeParser({ role: 'server' });
  socket.pipe(handshake);
  const made = makeStages();
  if (depth === 'make') return;
  wireStages(socket, handshake, made, null);
  if (depth === 'pipe') return;
  socket.destroy();
}

/** One fused connection: made, attached, terminated. */
function fused(): void {
  const ws = new WebSocket('server', { maxPayload: 1 << 20 });
  ws.on('error', () => {});
  ws.attach(new NullTransport() as never, null, { protocol: '', extensions: '' });
  ws.terminate();
}

const CASES: Array<[string, () => void]> = [
  ['stages: make', () => stages('make')],
  ['stages: make + pipe', () => stages('pipe')],
  ['stages: make + pipe + destroy', () => stages('destroy')],
  ['fused WebSocket: make + attach + terminate', fused],
];

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** CPU microseconds per connection for `make`, the ticks and 'close' events it leaves included. */
async function measure(make: () => void): Promise<number> {
  const before = process.cpuUsage();
  for (let i = 0; i < CONNECTIONS; i++) {
    make();
    if ((i & 63) === 63) await turn();
  }
  await turn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / CONNECTIONS;
}

async function main(): Promise<void> {
  const results = new Map<string, number[]>(CASES.map(([name]) => [name, []]));
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [name, make] of CASES) {
      const us = await measure(make);
      if (round > 0) results.get(name)!.push(us);
    }
  }
  for (const [name, values] of results) {
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1]!;
    console.log(`${name}: ${median.toFixed(1)} µs per connection (${sorted[0]!.toFixed(1)}-${sorted[sorted.length - 1]!.toFixed(1)})`);
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
