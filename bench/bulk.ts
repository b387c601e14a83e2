/**
 * `npm run bench:bulk`: one-way bulk transfer of BULK_BYTES (default 1 GiB) over 127.0.0.1,
 * receiver pinned to CPU 0 and sender to CPU 1 (taskset), each its own process; the data is
 * generated in memory (no disk). Cases:
 *
 * - raw TCP (`net`), 64 KiB writes: the ceiling;
 * - raw TCP with the masking passes RFC 6455 asks of a client: the sender masks each chunk into
 *   one of a few reused buffers and the receiver unmasks what it reads in place, with the
 *   library's applyMask (WebAssembly SIMD), and nothing else: the ceiling of a client's stream;
 * - raw TCP, framed: each 64 KiB chunk sent as a binary frame, its header and payload in one
 *   corked write (what any WebSocket sender on a net.Socket does), the receiver reading the
 *   headers; unmasked (the ceiling of a server's sending) and masked as a client must, the
 *   receiver unmasking each payload in place (the ceiling of a client's sending); and unmasked
 *   again, its chunks coming from the same Readable as the streamed cases' through pipe() into a
 *   minimal framing Writable (node:stream): what Node's stream machinery adds per chunk for any
 *   stream-fed sender, the ceiling of the streamed cases;
 * - ours: one BULK_BYTES message streamed (a Readable of 64 KiB chunks piped into
 *   ws.createMessageStream(); the receiver has streamMessages and counts the MessageReadable),
 *   client to server (the client masks every byte, as RFC 6455 requires) and server to client
 *   (nothing masked);
 * - ours: 16 MiB and 64 KiB whole messages (send() / 'message');
 * - ws (bufferutil loaded): 16 MiB and 64 KiB whole messages (ws cannot stream one message).
 *
 * Each transfer first moves BULK_WARMUP bytes (default 256 MiB; 0 for none) on the same
 * connection and in the same way (for the streamed cases: one message of that size first), then
 * BULK_BYTES. A fresh process runs its stream code cold: V8 compiles it only after a few thousand
 * chunks, which cost several times more than later ones (about 0.2 s of CPU per process on this
 * machine, whatever the library: a bare Readable piped into a Writable shows it too), while raw
 * TCP runs next to no JavaScript. So the table gives both: MB/s and CPU s/GB over BULK_BYTES after
 * the warm-up (the steady cost per byte), and MB/s over everything from the first byte (what a
 * fresh process sees).
 *
 * MB/s (10^6 bytes) is measured at the receiver; each process reports its peak RSS (VmHWM) and
 * its minor page faults over the measured bytes over IPC. Each figure is the
 * median of BULK_RUNS runs (default 5: this machine is noisy) with the spread. Prints one Markdown table and writes it
 * to bench/results/bulk.md. Progress goes to stderr.
 *
 * The same file is the child: BULK_ROLE=receiver|sender picks the part it plays.
 */
import { ChildProcess, fork } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WebSocket as WsClient, WebSocketServer as WsServer } from 'ws';
import type { RawData } from 'ws';
import { connect, createServer, MessageReadable, WebSocket } from '../lib';
import { applyMask } from '../lib/protocol/mask';
import { FrameCounter, MASK_KEY, frameHeaderLength, writeHeader } from './wire';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** Size of each write of the streamed message and of raw TCP. */
const CHUNK = 64 * KiB;
/** The in-memory data every sender cycles through. */
const POOL_SIZE = 16 * MiB;
/** ws has no write() returning false: its sender keeps this many bytes (at least 2 messages) in flight. */
const WS_WINDOW_BYTES = 1 * MiB;
const RECEIVER_CPU = '0';
/** Run compiled (dist/bench/bulk.js, as `npm run bench:bulk` does): the children then load no TypeScript, so their RSS is the library's. */
const COMPILED = __filename.endsWith('.js');
/** The project's root (this file is bench/bulk.ts, or dist/bench/bulk.js once compiled). */
const ROOT = path.resolve(__dirname, COMPILED ? '../..' : '..');
const SENDER_CPU = '1';

type Library = 'tcp' | 'ours' | 'ws';

interface Case {
  id: string;
  label: string;
  library: Library;
  /** Message size in bytes, or 'stream' for one message of all the bytes. */
  size: number | 'stream';
  /** Raw TCP only: mask every chunk before it is sent and unmask it where it is read. */
  masked?: boolean;
  /**
   * Raw TCP only: send each chunk as a binary frame (its header and the payload in one corked
   * write, as a WebSocket sender must); the receiver reads the headers (bench/wire.ts
   * FrameCounter) and counts payload bytes. With `masked`, a client's frames: the key in the
   * header, the payload masked, and the receiver unmasks each payload in place.
   */
  framed?: boolean;
  /**
   * Raw TCP, framed, only: the chunks come from the Readable the streamed cases pipe from, piped
   * into a minimal framing Writable (node:stream) instead of a plain loop of writes.
   */
  piped?: boolean;
  /**
   * The server sends and the client receives (the listening process still runs on CPU 0 and
   * the connecting one on CPU 1). Default: the client sends, masking every byte as RFC 6455
   * requires of clients; server to client nothing is masked.
   */
  toClient?: boolean;
}

const CASES: Case[] = [
  { id: 'tcp', label: 'raw TCP (net), 64 KiB writes', library: 'tcp', size: CHUNK },
  { id: 'tcp-masked', label: 'raw TCP, masked and unmasked (applyMask) at both ends', library: 'tcp', size: CHUNK, masked: true },
  {
    id: 'tcp-framed',
    label: 'raw TCP, framed: each 64 KiB write a binary frame (header + payload, one corked write)',
    library: 'tcp',
    size: CHUNK,
    framed: true,
  },
  {
    id: 'tcp-framed-piped',
    label: 'raw TCP, framed, piped: the streamed cases\' Readable piped into a 10-line framing Writable',
    library: 'tcp',
    size: CHUNK,
    framed: true,
    piped: true,
  },
  {
    id: 'tcp-framed-masked',
    label: "raw TCP, framed and masked: a client's frames, unmasked in place by the receiver",
    library: 'tcp',
    size: CHUNK,
    framed: true,
    masked: true,
  },
  { id: 'ours-stream', label: 'ours: one message, streamed (64 KiB chunks)', library: 'ours', size: 'stream' },
  {
    id: 'ours-stream-s2c',
    label: 'ours: one message, streamed, server to client (unmasked)',
    library: 'ours',
    size: 'stream',
    toClient: true,
  },
  { id: 'ours-16m', label: 'ours: 16 MiB messages', library: 'ours', size: 16 * MiB },
  { id: 'ours-64k', label: 'ours: 64 KiB messages', library: 'ours', size: 64 * KiB },
  { id: 'ws-16m', label: 'ws+bufferutil: 16 MiB messages', library: 'ws', size: 16 * MiB },
  { id: 'ws-64k', label: 'ws+bufferutil: 64 KiB messages', library: 'ws', size: 64 * KiB },
];

/** What a child tells the parent. RSS figures in bytes. */
type ChildMessage =
  | { type: 'ready'; port: number; rss: number }
  | {
      type: 'received';
      /** Every byte received, the warm-up's included. */
      allBytes: number;
      /** Bytes received after the warm-up, and the seconds they took. */
      bytes: number;
      seconds: number;
      /** Seconds from the first byte of the warm-up to the last byte. */
      coldSeconds: number;
      maxRss: number;
      cpu: number;
      faults: number;
    }
  | { type: 'sent'; bytes: number; maxRss: number; cpu: number; faults: number }
  | { type: 'failed'; error: string };

/**
 * This process's peak RSS in bytes: VmHWM from /proc/self/status. getrusage's maxRSS
 * (process.resourceUsage()) is not this child's own: the kernel carries the high-water mark of
 * the address space exec() replaced (the parent's, after fork) over into it.
 */
function maxRss(): number {
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return (hwm === null ? process.resourceUsage().maxRSS : Number(hwm[1])) * 1024;
}

function tell(message: ChildMessage): void {
  process.send?.(message);
}

/**
 * This process's minor page faults so far (/proc/self/stat; 0 where there is none): each one a
 * page the kernel had to map, and zero, on first touch, often because malloc gave freed memory
 * back to the system and then took it again.
 */
function minorFaults(): number {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return 0;
  }
}

/** The process's CPU time (user + system, µs) and minor page faults when its part of the transfer started. */
let cpuMark = process.cpuUsage();
let faultMark = 0;

/** The transfer starts now for this process (CPU time and page faults are counted from here). */
function markCpu(): void {
  cpuMark = process.cpuUsage();
  faultMark = minorFaults();
}

/** Minor page faults since markCpu(). */
function faultsSinceMark(): number {
  return minorFaults() - faultMark;
}

/** CPU seconds (user + system) since markCpu(). */
function cpuSinceMark(): number {
  const { user, system } = process.cpuUsage(cpuMark);
  return (user + system) / 1e6;
}

/** BULK_WARMUP (default 256 MiB), rounded up to whole messages of the case's size. */
function warmupBytes(c: Case): number {
  const warmup = Number(process.env.BULK_WARMUP ?? 256 * MiB);
  if (warmup === 0 || c.size === 'stream') return warmup;
  return Math.ceil(warmup / c.size) * c.size;
}

function caseById(id: string | undefined): Case {
  const found = CASES.find((c) => c.id === id);
  if (found === undefined) throw new Error(`unknown case ${id ?? ''}`);
  return found;
}

// ---------------------------------------------------------------------------------------------
// Receiver (CPU 0)

/**
 * Counts bytes; notes the time of the first, of the last, and of the end of the warm-up (where
 * the CPU time starts to count).
 */
class Counter {
  bytes = 0;
  first = 0;
  last = 0;
  /** When the warm-up's bytes were all in, and how many bytes had come by then. */
  warm = 0;
  bytesWhenWarm = 0;
  private readonly total: number;
  constructor(
    private readonly warmup: number,
    measured: number,
    private readonly onDone: () => void,
  ) {
    this.total = warmup + measured;
  }

  /** The first data byte reached the socket (before any message is complete). */
  started(): void {
    if (this.first === 0) this.begin();
  }

  add(n: number): void {
    if (this.first === 0) this.begin();
    this.bytes += n;
    if (this.warm === 0 && this.bytes >= this.warmup) {
      this.warm = performance.now();
      this.bytesWhenWarm = this.bytes;
      markCpu();
    }
    if (this.bytes >= this.total && this.last === 0) {
      this.last = performance.now();
      this.onDone();
    }
  }

  report(): void {
    tell({
      type: 'received',
      allBytes: this.bytes,
      bytes: this.bytes - this.bytesWhenWarm,
      seconds: (this.last - this.warm) / 1000,
      coldSeconds: (this.last - this.first) / 1000,
      maxRss: maxRss(),
      cpu: cpuSinceMark(),
      faults: faultsSinceMark(),
    });
  }

  private begin(): void {
    this.first = performance.now();
    if (this.warmup === 0) {
      this.warm = this.first;
      markCpu();
    }
  }
}

/** Notes the first data byte on the connection's socket (a private field, so only if present). */
function watchFirstByte(socket: unknown, counter: Counter): void {
  if (socket instanceof net.Socket) socket.once('data', () => counter.started());
}

function receive(c: Case, total: number): void {
  const ready = (port: number): void => tell({ type: 'ready', port, rss: process.memoryUsage().rss });
  if (c.library === 'tcp') {
    const server = net.createServer((socket) => {
      const counter = new Counter(warmupBytes(c), total, () => counter.report());
      if (c.framed === true) {
        const frames = new FrameCounter();
        const unmask =
          c.masked === true
            ? (buf: Buffer, start: number, end: number, payloadOffset: number): void => applyMask(buf.subarray(start, end), MASK_KEY, payloadOffset)
            : undefined;
        socket.on('data', (chunk: Buffer) => {
          const before = frames.payloadBytes;
          frames.feed(chunk, unmask);
          counter.add(frames.payloadBytes - before);
        });
      } else {
        let offset = 0;
        socket.on('data', (chunk: Buffer) => {
          if (c.masked === true) applyMask(chunk, MASK_KEY, offset);
          offset += chunk.length;
          counter.add(chunk.length);
        });
      }
      socket.on('end', () => socket.end());
      socket.on('close', () => server.close());
    });
    server.listen(0, '127.0.0.1', () => ready((server.address() as net.AddressInfo).port));
    return;
  }
  if (c.library === 'ours' && c.toClient === true) {
    const server = createServer({ host: '127.0.0.1', port: 0 });
    server.on('connection', (ws: WebSocket) => {
      ws.on('error', (err: Error) => tell({ type: 'failed', error: `sender (server): ${err.message}` }));
      const data = pool();
      markCpu();
      sendStreamed(ws, data, warmupBytes(c), total).then(
        () => tell({ type: 'sent', bytes: total, maxRss: maxRss(), cpu: cpuSinceMark(), faults: faultsSinceMark() }),
        (err: Error) => tell({ type: 'failed', error: `sender (server): ${err.message}` }),
      );
      ws.on('close', () => server.close());
    });
    server.on('listening', () => ready(server.address()!.port));
    return;
  }
  if (c.library === 'ours') {
    const server = createServer({
      host: '127.0.0.1',
      port: 0,
      streamMessages: c.size === 'stream',
      maxPayload: 64 * MiB,
      maxMessageSize: 64 * MiB,
    });
    server.on('connection', (ws: WebSocket) => {
      const counter = new Counter(warmupBytes(c), total, () => {
        counter.report();
        ws.close(1000);
      });
      watchFirstByte((ws as unknown as { transport?: unknown }).transport, counter);
      ws.on('error', (err: Error) => tell({ type: 'failed', error: `receiver: ${err.message}` }));
      ws.on('message', (data: MessageReadable | Buffer | string) => {
        if (data instanceof MessageReadable) data.on('data', (chunk: Buffer) => counter.add(chunk.length));
        else counter.add(data.length);
      });
      ws.on('close', () => server.close());
    });
    server.on('listening', () => ready(server.address()!.port));
    return;
  }
  const server = new WsServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * MiB, perMessageDeflate: false });
  server.on('connection', (ws: WsClient, _req: IncomingMessage) => {
    const counter = new Counter(warmupBytes(c), total, () => {
      counter.report();
      ws.close(1000);
    });
    watchFirstByte((ws as unknown as { _socket?: unknown })._socket, counter);
    ws.on('error', (err: Error) => tell({ type: 'failed', error: `receiver: ${err.message}` }));
    ws.on('message', (data: RawData) => counter.add(rawLength(data)));
    ws.on('close', () => server.close());
  });
  server.on('listening', () => ready((server.address() as net.AddressInfo).port));
}

function rawLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((sum, b) => sum + b.length, 0);
  return data.byteLength;
}

// ---------------------------------------------------------------------------------------------
// Sender (CPU 1)

const pool = (): Buffer => randomFillSync(Buffer.allocUnsafe(POOL_SIZE));

/** `total` bytes as chunks of at most `size`, cycling through the pool (views, no copies). */
function* pieces(data: Buffer, total: number, size: number): Generator<Buffer> {
  let offset = 0;
  for (let left = total; left > 0; ) {
    const n = Math.min(size, left);
    if (offset + n > data.length) offset = 0;
    yield data.subarray(offset, offset + n);
    offset += n;
    left -= n;
  }
}

/** pieces() of the warm-up and then the measured bytes; CPU time counts from the first measured piece. */
function* afterWarmup(data: Buffer, warmup: number, total: number, size: number): Generator<Buffer> {
  let given = 0;
  for (const piece of pieces(data, warmup + total, size)) {
    if (warmup > 0 && given === warmup) markCpu();
    given += piece.length;
    yield piece;
  }
}

/** One streamed message of the warm-up's bytes (if any), then one of `total`; CPU time counts from the second. */
async function sendStreamed(ws: WebSocket, data: Buffer, warmup: number, total: number): Promise<void> {
  if (warmup > 0) {
    await pipeline(new Generated(data, warmup), ws.createMessageStream({ binary: true }));
    markCpu();
  }
  await pipeline(new Generated(data, total), ws.createMessageStream({ binary: true }));
}

/** A Readable of `total` generated bytes in 64 KiB chunks (pushes until its buffer is full). */
class Generated extends Readable {
  private readonly source: Generator<Buffer>;
  constructor(data: Buffer, total: number) {
    super({ highWaterMark: CHUNK });
    this.source = pieces(data, total, CHUNK);
  }
  override _read(): void {
    for (;;) {
      const next = this.source.next();
      if (next.done === true) {
        this.push(null);
        return;
      }
      if (!this.push(next.value)) return;
    }
  }
}

const once = (emitter: NodeJS.EventEmitter, event: string): Promise<void> =>
  new Promise((resolve) => emitter.once(event, () => resolve()));

/**
 * Writes `payload` (already masked, if `masked`) to `socket` as one binary frame: a header made
 * anew, as a sender makes it, and the payload in one corked write. Returns write()'s answer.
 */
function writeFrame(socket: net.Socket, payload: Buffer, masked: boolean): boolean {
  const header = Buffer.allocUnsafe(frameHeaderLength(payload.length, masked));
  writeHeader(header, payload.length, masked);
  socket.cork();
  socket.write(header);
  const flowing = socket.write(payload);
  socket.uncork();
  return flowing;
}

/** The least a stream-fed WebSocket sender must do: each chunk a binary frame, written corked; wait for 'drain' when the socket is full. */
class FramingWritable extends Writable {
  constructor(private readonly socket: net.Socket) {
    super({ highWaterMark: CHUNK });
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (writeFrame(this.socket, chunk, false)) callback();
    else this.socket.once('drain', () => callback());
  }
}

async function sendTcp(c: Case, port: number, data: Buffer, warmup: number, total: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  const closed = once(socket, 'close');
  await once(socket, 'connect');
  if (c.piped === true) {
    if (warmup > 0) {
      await pipeline(new Generated(data, warmup), new FramingWritable(socket));
      markCpu();
    }
    await pipeline(new Generated(data, total), new FramingWritable(socket));
    socket.end();
    await closed;
    return;
  }
  // Masked: into reused buffers, as our client's MaskSlots do. The sender waits for 'drain'
  // whenever write() returns false, so at most a few writes are ever queued: eight is plenty.
  const slots = c.masked === true ? Array.from({ length: 8 }, () => Buffer.allocUnsafe(CHUNK)) : [];
  let next = 0;
  let offset = 0;
  for (const piece of afterWarmup(data, warmup, total, CHUNK)) {
    let chunk = piece;
    if (c.masked === true) {
      chunk = slots[next++ & 7]!.subarray(0, piece.length);
      // Framed, each payload is masked from the key's first byte on; unframed, the stream is.
      applyMask(piece, MASK_KEY, c.framed === true ? 0 : offset, chunk);
      offset += piece.length;
    }
    const flowing = c.framed === true ? writeFrame(socket, chunk, c.masked === true) : socket.write(chunk);
    if (!flowing) await once(socket, 'drain');
  }
  socket.end();
  await closed;
}

async function sendOurs(c: Case, port: number, data: Buffer, warmup: number, total: number): Promise<void> {
  const ws = connect(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
  const closed = once(ws, 'close');
  ws.on('error', (err: Error) => tell({ type: 'failed', error: `sender: ${err.message}` }));
  await once(ws, 'open');
  if (c.size === 'stream') {
    await sendStreamed(ws, data, warmup, total);
  } else {
    for (const message of afterWarmup(data, warmup, total, c.size)) {
      if (!ws.send(message)) await once(ws, 'drain');
    }
  }
  await closed;
}

async function sendWs(c: Case, port: number, data: Buffer, warmup: number, total: number): Promise<void> {
  if (c.size === 'stream') throw new Error('ws cannot stream one message');
  const size = c.size;
  const ws = new WsClient(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
  const closed = once(ws, 'close');
  ws.on('error', (err: Error) => tell({ type: 'failed', error: `sender: ${err.message}` }));
  await once(ws, 'open');
  const window = Math.max(2, Math.ceil(WS_WINDOW_BYTES / size));
  const source = afterWarmup(data, warmup, total, size);
  await new Promise<void>((resolve, reject) => {
    let inFlight = 0;
    let finished = false;
    const pump = (): void => {
      while (!finished && inFlight < window) {
        const next = source.next();
        if (next.done === true) {
          finished = true;
          break;
        }
        inFlight++;
        ws.send(next.value, { binary: true }, onSent);
      }
      if (finished && inFlight === 0) resolve();
    };
    const onSent = (err?: Error): void => {
      if (err !== undefined && err !== null) {
        reject(err);
        return;
      }
      inFlight--;
      pump();
    };
    pump();
  });
  await closed;
}

/** The client receives one streamed message from the server (toClient cases). */
async function receiveAsClient(c: Case, port: number, total: number): Promise<void> {
  const ws = connect(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false, streamMessages: true });
  const counter = new Counter(warmupBytes(c), total, () => {
    counter.report();
    ws.close(1000);
  });
  const closed = once(ws, 'close');
  ws.on('error', (err: Error) => tell({ type: 'failed', error: `receiver (client): ${err.message}` }));
  ws.on('open', () => watchFirstByte((ws as unknown as { transport?: unknown }).transport, counter));
  ws.on('message', (data: MessageReadable) => data.on('data', (chunk: Buffer) => counter.add(chunk.length)));
  await closed;
}

async function send(c: Case, port: number, total: number): Promise<void> {
  if (c.toClient === true) {
    await receiveAsClient(c, port, total);
    return;
  }
  const data = pool();
  markCpu(); // the connection and its handshake are counted too: a few ms
  const warmup = warmupBytes(c);
  if (c.library === 'tcp') await sendTcp(c, port, data, warmup, total);
  else if (c.library === 'ours') await sendOurs(c, port, data, warmup, total);
  else await sendWs(c, port, data, warmup, total);
  tell({ type: 'sent', bytes: total, maxRss: maxRss(), cpu: cpuSinceMark(), faults: faultsSinceMark() });
}

// ---------------------------------------------------------------------------------------------
// Parent

function start(role: 'receiver' | 'sender', cpu: string, env: Record<string, string>): ChildProcess {
  return fork(__filename, [], {
    cwd: ROOT,
    execPath: 'taskset',
    execArgv: ['-c', cpu, process.execPath, ...profileArgs(role), ...(COMPILED ? [] : ['-r', 'ts-node/register'])],
    env: { TS_NODE_TRANSPILE_ONLY: 'true', ...process.env, ...env, BULK_ROLE: role },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** The next message of `child` of the given type (rejects on 'failed', an early exit or the timeout). */
function expect<T extends ChildMessage['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ChildMessage): void => {
      if (message.type === 'failed') {
        cleanup();
        reject(new Error(message.error));
      } else if (message.type === type) {
        cleanup();
        resolve(message as Extract<ChildMessage, { type: T }>);
      }
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`child exited (${code}) before '${type}'`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no '${type}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.removeListener('message', onMessage);
      child.removeListener('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.connected) child.disconnect();
  });
}

/**
 * BULK_PROFILE=DIR: each child writes a V8 CPU profile (node --cpu-prof) into DIR;
 * BULK_NODE_ARGS="--trace-gc ...": more node options for the children.
 */
function profileArgs(role: string): string[] {
  const dir = process.env.BULK_PROFILE;
  const extra = process.env.BULK_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? [];
  if (dir === undefined || dir === '') return extra;
  return [...extra, '--cpu-prof', '--cpu-prof-dir', path.resolve(dir), '--cpu-prof-name', `${role}-${Date.now()}.cpuprofile`];
}

/** BULK_CASES=id,id: only these cases (raw TCP always runs, for the ratios). */
function selectedCases(): Case[] {
  const ids = process.env.BULK_CASES;
  if (ids === undefined || ids === '') return CASES;
  const wanted = new Set(ids.split(',').map((id) => id.trim()));
  for (const id of wanted) caseById(id);
  return CASES.filter((c) => c.id === 'tcp' || wanted.has(c.id));
}

interface RunResult {
  /** After the warm-up. */
  mbps: number;
  /** Over everything, from the warm-up's first byte. */
  coldMbps: number;
  senderRss: number;
  receiverRss: number;
  /** RSS of a child right after start-up, for scale. */
  idleRss: number;
  /** CPU seconds per 10^9 bytes moved, of the sending and of the receiving process. */
  senderCpu: number;
  receiverCpu: number;
  /** Minor page faults per 10^6 bytes moved, of the sending and of the receiving process. */
  senderFaults: number;
  receiverFaults: number;
}

async function runCase(c: Case, total: number): Promise<RunResult> {
  const env = { BULK_CASE: c.id, BULK_BYTES: String(total) };
  // At least 10 MB/s, or something is wrong.
  const timeoutMs = 60_000 + (warmupBytes(c) + total) / 10_000;
  const receiver = start('receiver', RECEIVER_CPU, env);
  let sender: ChildProcess | null = null;
  try {
    const ready = await expect(receiver, 'ready', 60_000);
    const toClient = c.toClient === true;
    const received = toClient ? null : expect(receiver, 'received', timeoutMs);
    const sent = toClient ? expect(receiver, 'sent', timeoutMs) : null;
    sender = start('sender', SENDER_CPU, { ...env, BULK_PORT: String(ready.port) });
    // toClient: the listening process sends and the connecting one receives.
    const [r, s] = await Promise.all([
      received ?? expect(sender, 'received', timeoutMs),
      sent ?? expect(sender, 'sent', timeoutMs),
    ]);
    const warmup = warmupBytes(c);
    if (r.allBytes !== warmup + total) throw new Error(`received ${r.allBytes} bytes, expected ${warmup + total}`);
    return {
      mbps: r.bytes / r.seconds / 1e6,
      coldMbps: r.allBytes / r.coldSeconds / 1e6,
      senderRss: s.maxRss,
      receiverRss: r.maxRss,
      idleRss: ready.rss,
      senderCpu: s.cpu / (total / 1e9),
      receiverCpu: r.cpu / (total / 1e9),
      senderFaults: s.faults / (total / 1e6),
      receiverFaults: r.faults / (total / 1e6),
    };
  } finally {
    await Promise.all([stopChild(receiver), sender === null ? Promise.resolve() : stopChild(sender)]);
  }
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function spread(values: number[], digits: number): string {
  const m = median(values).toFixed(digits);
  if (values.length < 2) return m;
  return `${m} (${Math.min(...values).toFixed(digits)}-${Math.max(...values).toFixed(digits)})`;
}

const mib = (bytes: number): number => bytes / MiB;

function sizeLabel(bytes: number): string {
  if (bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes % MiB === 0) return `${bytes / MiB} MiB`;
  return `${bytes} bytes`;
}

async function main(): Promise<void> {
  const total = Number(process.env.BULK_BYTES ?? GiB);
  const runs = Math.max(1, Number(process.env.BULK_RUNS ?? '5'));
  if (!Number.isSafeInteger(total) || total <= 0) throw new Error('BULK_BYTES must be a positive integer');
  const warmupSetting = Number(process.env.BULK_WARMUP ?? 0);
  if (!Number.isSafeInteger(warmupSetting) || warmupSetting < 0 || warmupSetting % CHUNK !== 0) {
    throw new Error('BULK_WARMUP must be a whole number of 64 KiB chunks (0 for none)');
  }
  const cases = selectedCases();
  const results = new Map<string, RunResult[]>();
  const loadBefore = os.loadavg()[0]!;
  for (let run = 1; run <= runs; run++) {
    for (const c of cases) {
      process.stderr.write(`run ${run}/${runs}: ${c.label} ... `);
      const result = await runCase(c, total);
      process.stderr.write(
        `${result.mbps.toFixed(0)} MB/s, ${result.coldMbps.toFixed(0)} from cold (CPU s per GB: sender ${result.senderCpu.toFixed(2)}, receiver ${result.receiverCpu.toFixed(2)}; ` +
          `page faults per MB: ${result.senderFaults.toFixed(1)} / ${result.receiverFaults.toFixed(1)})\n`,
      );
      results.set(c.id, [...(results.get(c.id) ?? []), result]);
    }
  }
  const tcp = median(results.get('tcp')!.map((r) => r.mbps));
  const tcpByRound = results.get('tcp')!.map((r) => r.mbps);
  /** A case's MB/s over raw TCP's of the same round, round by round. */
  const perRound = (mbps: number[]): number[] => mbps.map((v, i) => v / tcpByRound[i]!);
  const tcpCold = median(results.get('tcp')!.map((r) => r.coldMbps));
  const warmup = warmupBytes(CASES[0]!);
  const idle = Math.max(...[...results.values()].flat().map((r) => r.idleRss));
  const lines = [
    `# Bulk transfer: ${sizeLabel(total)} one way over 127.0.0.1`,
    '',
    `- CPU: ${os.cpus()[0]?.model ?? 'unknown'} (${os.cpus().length} logical CPUs)`,
    `- Node ${process.version}, ${os.platform()} ${os.release()}`,
    `- listening process (the receiver, except server to client) pinned to CPU ${RECEIVER_CPU}, connecting process to CPU ${SENDER_CPU} (taskset); data generated in memory`,
    `- each transfer first moves ${warmup === 0 ? 'nothing' : sizeLabel(warmup)} of warm-up (the same way, on the same connection; BULK_WARMUP), then ${sizeLabel(total)}`,
    `- MB/s = 10^6 bytes/s at the receiver over the ${sizeLabel(total)} after the warm-up (the steady cost); "from cold": over everything, from a fresh process's first byte (V8 compiles stream code only after some thousands of chunks, which weighs on the first few hundred MiB); median of ${runs} run(s)${runs > 1 ? ' (min-max)' : ''}`,
    `- peak RSS = VmHWM of each process (/proc/self/status), the highest over the runs; a child right after start-up${COMPILED ? '' : ' (ts-node loaded: run compiled, with npm run bench:bulk, for the library\'s own figures)'} has about ${mib(idle).toFixed(0)} MiB`,
    `- 1-minute load average before the runs: ${loadBefore.toFixed(2)}, after: ${os.loadavg()[0]!.toFixed(2)} (other processes on the machine make the spread)`,
    `- ws sends with at most ${sizeLabel(WS_WINDOW_BYTES)} (and at least 2 messages) in flight, as it has no write() returning false; ours waits for 'drain' when send() returns false`,
    '- CPU s/GB = CPU seconds (user + system) a process used per 10^9 bytes moved after the warm-up: what the transfer costs each side, whatever else ran on the machine',
    '- faults/MB = minor page faults per 10^6 bytes after the warm-up, sender / receiver: pages the kernel mapped and zeroed on first touch, each adding system time. A process that frees and allocates 64 KiB buffers at this rate often gets them from memory that glibc\'s malloc gave back to the system (trimmed) moments before; how often varies from run to run with the heap\'s layout',
    `- per-round ratio: each round runs every case once, raw TCP first; the median (min-max) over the rounds of a case's MB/s divided by raw TCP's of the same round. When the machine's speed drifts over the minutes of a run, this pairs each figure with a raw TCP figure taken minutes apart at most`,
    '',
    '| case | MB/s | ratio to raw TCP | per-round ratio to raw TCP | MB/s from cold | ratio from cold | sender CPU s/GB | receiver CPU s/GB | faults/MB | sender peak RSS MiB | receiver peak RSS MiB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const c of cases) {
    const list = results.get(c.id)!;
    const mbps = list.map((r) => r.mbps);
    const label =
      c.size !== 'stream'
        ? c.label
        : c.toClient === true
          ? `ours: one ${sizeLabel(total)} message, streamed, server to client (unmasked)`
          : `ours: one ${sizeLabel(total)} message, streamed, client to server (masked)`;
    lines.push(
      `| ${label} | ${spread(mbps, 0)} | ${(median(mbps) / tcp).toFixed(2)} | ${spread(perRound(mbps), 2)} | ` +
        `${median(list.map((r) => r.coldMbps)).toFixed(0)} | ${(median(list.map((r) => r.coldMbps)) / tcpCold).toFixed(2)} | ` +
        `${median(list.map((r) => r.senderCpu)).toFixed(2)} | ${median(list.map((r) => r.receiverCpu)).toFixed(2)} | ` +
        `${median(list.map((r) => r.senderFaults)).toFixed(1)} / ${median(list.map((r) => r.receiverFaults)).toFixed(1)} | ` +
        `${mib(Math.max(...list.map((r) => r.senderRss))).toFixed(0)} | ${mib(Math.max(...list.map((r) => r.receiverRss))).toFixed(0)} |`,
    );
    if (c.id === 'ours-stream') {
      lines.push(
        `| ws+bufferutil: one ${sizeLabel(total)} message, streamed | n/a: ws has no streaming API for one message (it holds a whole message in memory on both sides) | | | | | | | | | |`,
      );
    }
  }
  const table = `${lines.join('\n')}\n`;
  process.stdout.write(table);
  const out = path.join(ROOT, 'bench', 'results', 'bulk.md');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, table);
  process.stderr.write(`written to ${path.relative(process.cwd(), out)}\n`);
}

function child(role: string): void {
  const c = caseById(process.env.BULK_CASE);
  const total = Number(process.env.BULK_BYTES);
  const fail = (err: Error): void => {
    tell({ type: 'failed', error: `${role}: ${err.message}` });
  };
  process.on('disconnect', () => process.exit(0));
  if (role === 'receiver') {
    try {
      receive(c, total);
    } catch (err) {
      fail(err as Error);
    }
  } else {
    send(c, Number(process.env.BULK_PORT), total).catch(fail);
  }
}

const role = process.env.BULK_ROLE;
if (role !== undefined) {
  child(role);
} else {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`error: ${err.message}\n`);
      process.exit(1);
    },
  );
}
