/**
 * The load generator: one process (the runner pins it to CPU 1 with taskset), many raw
 * net.Sockets, the handshake written by hand, masked frames built once and written as they are,
 * replies counted by reading frame headers only. It costs the same against every server, so the
 * server (pinned to CPU 0) is what is measured.
 *
 * Driven over IPC by bench/run.ts: one LoadCommand in, one ChildReply out.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ChildReply, ExitCommand, ServerMessage, LoadCommand, Measurement } from './ipc';
import { FrameCounter, maskedBinaryFrame, repeat, upgradeRequest } from './wire';

const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_101 = 'HTTP/1.1 101';

/**
 * Connects and completes the opening handshake; resolves with the socket and any bytes that
 * followed the response head.
 */
function open(port: number, path: string): Promise<{ socket: net.Socket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end < 0) return;
      socket.removeListener('data', onData);
      socket.removeListener('error', reject);
      if (head.toString('latin1', 0, STATUS_101.length) !== STATUS_101) {
        socket.destroy();
        reject(new Error(`handshake refused: ${head.toString('latin1', 0, end)}`));
        return;
      }
      resolve({ socket, rest: head.subarray(end + HEAD_END.length) });
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.write(upgradeRequest(port, path));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resets a connection (RST): no TIME_WAIT left behind, so ports are never exhausted. */
function drop(socket: net.Socket): void {
  socket.on('error', () => {});
  socket.resetAndDestroy();
}

/** Monotonic clock in microseconds (the clock V8's CPU profiles use). */
function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * Waits out the warm-up, then turns counting on for `durationMs`; returns the window's length
 * in seconds, this process's CPU share over it and the window on the monotonic clock.
 */
async function measureWindow(
  c: { warmupMs: number; durationMs: number },
  setCounting: (on: boolean) => void,
): Promise<Pick<Measurement, 'seconds' | 'cpu' | 'windowUs'>> {
  await sleep(c.warmupMs);
  const cpuBefore = process.cpuUsage();
  const from = monotonicMicros();
  const start = performance.now();
  setCounting(true);
  await sleep(c.durationMs);
  setCounting(false);
  const seconds = (performance.now() - start) / 1000;
  const to = monotonicMicros();
  const cpu = process.cpuUsage(cpuBefore);
  return { seconds, cpu: (cpu.user + cpu.system) / 1e6 / seconds, windowUs: [from, to] };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/**
 * Echo: `conns` connections each keep `inflight` messages of `size` bytes in flight; every reply
 * sends one more. Counts replies in the window after warm-up.
 */
async function echo(c: Extract<LoadCommand, { cmd: 'echo' }>): Promise<Measurement> {
  const frame = maskedBinaryFrame(c.size);
  const batch = repeat(frame, c.inflight);
  const frameLength = frame.length;
  let counting = false;
  let running = true;
  let replies = 0;
  const latencies: number[] = [];
  const sockets = await Promise.all(Array.from({ length: c.conns }, () => open(c.port, '/echo')));
  // Replies owed per connection are sent once per event-loop turn, in one write each.
  const owed = new Array<number>(sockets.length).fill(0);
  const dirty: number[] = [];
  const sentAt = new Array<number>(sockets.length).fill(0);
  const flush = (): void => {
    for (const i of dirty) {
      const socket = sockets[i]!.socket;
      for (let left = owed[i]!; left > 0; left -= c.inflight) {
        socket.write(left >= c.inflight ? batch : batch.subarray(0, left * frameLength));
      }
      owed[i] = 0;
      if (c.latency) sentAt[i] = performance.now();
    }
    dirty.length = 0;
  };
  sockets.forEach(({ socket, rest }, i) => {
    const counter = new FrameCounter();
    const onData = (chunk: Buffer): void => {
      const n = counter.feed(chunk);
      if (n === 0) return;
      if (c.latency && counting) latencies.push(performance.now() - sentAt[i]!);
      if (counting) replies += n;
      if (!running) return;
      if (owed[i] === 0) {
        if (dirty.length === 0) setImmediate(flush);
        dirty.push(i);
      }
      owed[i] = owed[i]! + n;
    };
    socket.on('data', onData);
    socket.on('error', () => {});
    if (rest.length > 0) onData(rest);
    sentAt[i] = performance.now();
    socket.write(batch);
  });
  const timing = await measureWindow(c, (on) => (counting = on));
  running = false;
  for (const { socket } of sockets) drop(socket);
  const result: Measurement = { messages: replies, bytes: replies * c.size, ...timing };
  if (c.latency) {
    const sorted = Float64Array.from(latencies).sort();
    result.p50 = percentile(sorted, 0.5) * 1000;
    result.p99 = percentile(sorted, 0.99) * 1000;
  }
  return result;
}

/**
 * Bulk one-way: one connection sends messages of `size` bytes, `inflight` at a time; the server
 * answers each with an empty message, which lets the next one go. Counts bytes acknowledged.
 */
async function bulk(c: Extract<LoadCommand, { cmd: 'bulk' }>): Promise<Measurement> {
  const frame = maskedBinaryFrame(c.size);
  const { socket, rest } = await open(c.port, `/sink?bytes=${frame.length}`);
  const counter = new FrameCounter();
  let counting = false;
  let running = true;
  let acks = 0;
  const onData = (chunk: Buffer): void => {
    const n = counter.feed(chunk);
    if (counting) acks += n;
    if (!running) return;
    for (let i = 0; i < n; i++) socket.write(frame);
  };
  socket.on('data', onData);
  socket.on('error', () => {});
  if (rest.length > 0) onData(rest);
  for (let i = 0; i < c.inflight; i++) socket.write(frame);
  const timing = await measureWindow(c, (on) => (counting = on));
  running = false;
  drop(socket);
  return { messages: acks, bytes: acks * c.size, ...timing };
}

/**
 * Handshakes: `concurrency` loops each connect, send the request, wait for the 101 head, reset
 * the connection and start again. Counts completed handshakes after warm-up.
 */
async function handshakes(c: Extract<LoadCommand, { cmd: 'handshakes' }>): Promise<Measurement> {
  let counting = false;
  let running = true;
  let done = 0;
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const { socket } = await open(c.port, '/echo');
        if (counting) done++;
        drop(socket);
      } catch {
        // A refused or reset connect is not a handshake; try again shortly.
        await sleep(1);
      }
    }
  };
  const loops = Array.from({ length: c.concurrency }, loop);
  const timing = await measureWindow(c, (on) => (counting = on));
  running = false;
  await Promise.all(loops);
  return { messages: done, bytes: 0, ...timing };
}

/** Idle connections, kept open between 'idle-open' and 'idle-close'. */
let idle: net.Socket[] = [];

async function idleOpen(c: Extract<LoadCommand, { cmd: 'idle-open' }>): Promise<Measurement> {
  const start = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < c.n) {
      next++;
      const { socket } = await open(c.port, '/echo');
      socket.on('error', () => {});
      idle.push(socket);
    }
  };
  await Promise.all(Array.from({ length: c.concurrency }, worker));
  return { messages: idle.length, bytes: 0, seconds: (performance.now() - start) / 1000 };
}

async function idleClose(): Promise<Measurement> {
  const n = idle.length;
  for (const socket of idle) drop(socket);
  idle = [];
  return { messages: n, bytes: 0, seconds: 0 };
}

function run(c: LoadCommand): Promise<Measurement> {
  switch (c.cmd) {
    case 'echo':
      return echo(c);
    case 'bulk':
      return bulk(c);
    case 'handshakes':
      return handshakes(c);
    case 'idle-open':
      return idleOpen(c);
    case 'idle-close':
      return idleClose();
  }
}

process.on('message', (command: LoadCommand | ExitCommand) => {
  if (command.cmd === 'exit') process.exit(0);
  run(command).then(
    (result) => process.send?.({ ok: true, result } satisfies ChildReply),
    (err: Error) => process.send?.({ ok: false, error: err.message } satisfies ChildReply),
  );
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready', port: 0 } satisfies ServerMessage);
