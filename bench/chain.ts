/**
 * CPU time per message through the hand-composed stage chain, in one process and without
 * sockets: what the stages and readable-stream cost, apart from the system calls that dominate
 * `npm run bench`'s figures on this 2-core machine (and that vary with whatever else runs).
 *
 *   npm run build && taskset -c 0 node dist/bench/chain.js [messages] [size]
 *
 * The chain is the stages server's, made and wired by the same code
 * (bench/servers/stage-pipeline.ts): PassThrough (standing in for the socket's readable side) >
 * HandshakeParser > FrameSplitter > Unmasker > FragmentAssembler > ControlFrameResponder >
 * MessageFramer > FrameSerializer > a Duplex that counts what is written to it. One masked
 * binary frame is written per turn of the event loop (setImmediate), as when each message
 * arrives in its own TCP read; the first 10% are warm-up. Prints CPU ns (user + system) and wall ns per message, median of 5 rounds.
 */
import { Duplex, PassThrough } from 'readable-stream';
import { HandshakeParser } from '../lib';
import { makeStages, wireStages } from './servers/stage-pipeline';
import { maskedBinaryFrame } from './wire';

const MESSAGES = Number(process.argv[2] ?? '200000');
const SIZE = Number(process.argv[3] ?? '64');
const ROUNDS = 5;

const REQUEST =
  'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** Runs `count` messages through a fresh chain; resolves with [CPU ns, wall ns] per measured message. */
function round(frame: Buffer, count: number): Promise<[number, number]> {
  const source = new PassThrough();
  const handshake = new HandshakeParser({ role: 'server' });
  source.pipe(handshake);
  let received = 0;
  // Stands for the socket's writable side: counts what the serializer writes.
  const sink = new Duplex({
    read() {},
    write(_chunk: Buffer, _enc: BufferEncoding, cb: () => void) {
      received++;
      cb();
    },
  });
  wireStages(sink, handshake, makeStages(), null);
  source.write(Buffer.from(REQUEST, 'latin1'));
  const warmup = Math.floor(count / 10);
  return new Promise((resolve, reject) => {
    let sent = 0;
    let cpu = process.cpuUsage();
    let wall = process.hrtime.bigint();
    const next = (): void => {
      if (sent === warmup) {
        cpu = process.cpuUsage();
        wall = process.hrtime.bigint();
      }
      if (sent === count) {
        setImmediate(() => {
          if (received !== count) {
            reject(new Error(`${received} of ${count} messages came out`));
            return;
          }
          const used = process.cpuUsage(cpu);
          const measured = count - warmup;
          resolve([((used.user + used.system) * 1000) / measured, Number(process.hrtime.bigint() - wall) / measured]);
        });
        return;
      }
      sent++;
      source.write(frame);
      setImmediate(next);
    };
    setImmediate(next);
  });
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  // In a buffer of its own, as a socket read is (a small Buffer.from() or allocUnsafe() is a slice
  // of Node's shared 8 KiB pool, which ran slower through the chain here).
  const frame = Buffer.alloc(SIZE + 6);
  maskedBinaryFrame(SIZE).copy(frame);
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const [c, w] = await round(frame, MESSAGES);
    cpu.push(c);
    wall.push(w);
  }
  const range = (v: number[]): string => `${Math.round(Math.min(...v))}-${Math.round(Math.max(...v))}`;
  console.log(
    `stage chain, ${SIZE} B messages, ${MESSAGES} per round, median of ${ROUNDS}: ` +
      `${Math.round(median(cpu))} ns CPU/msg (${range(cpu)}), ${Math.round(median(wall))} ns wall/msg (${range(wall)})`,
  );
}

main().catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
