/**
 * Moves one file of any size as ONE WebSocket message, streamed, with bounded memory.
 *
 *   npx ts-node examples/file-transfer.ts receive --port 9000 --out /tmp/copy.bin
 *   npx ts-node examples/file-transfer.ts send /path/to/file --url ws://127.0.0.1:9000
 *
 * (or compiled: node dist/examples/file-transfer.js ...). The receiver writes the message to
 * --out as it streams in, prints its sha256 and closes with the digest as the close reason; the
 * sender prints the sha256 of what it read and exits 0 only when the receiver's digest matches.
 * Both print their peak RSS on stderr. Exit codes: 0 done, 1 failed, 2 usage.
 * FILE_TRANSFER_MEMLOG=1 also prints process.memoryUsage() (MiB) on stderr every 100 ms.
 */
import { createHash, Hash } from 'node:crypto';
import * as fs from 'node:fs';
import { Transform, TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { connect, createServer, MessageReadable, WebSocket } from '../lib';

const USAGE = `usage:
  file-transfer receive --port N --out PATH
  file-transfer send PATH --url ws://HOST:PORT`;

function option(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : undefined;
}

function usage(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

/**
 * This process's peak RSS. On Linux it is VmHWM from /proc/self/status, the high-water mark of
 * this program's own address space: getrusage's maxRSS (process.resourceUsage()) is no good for
 * a child process, as the kernel carries the high-water mark of the address space replaced by
 * exec() over into it, so a process spawned by a 500 MiB parent reports at least 500 MiB.
 */
function peakRss(): string {
  let kib = process.resourceUsage().maxRSS;
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (hwm !== null) kib = Number(hwm[1]);
  } catch {
    // Not Linux: maxRSS it is.
  }
  return `${(kib / 1024).toFixed(1)} MiB`;
}

/** FILE_TRANSFER_MEMLOG=1: where the memory goes, every 100 ms. */
function logMemory(): void {
  const start = Date.now();
  const mib = (bytes: number): string => (bytes / 1048576).toFixed(0);
  setInterval(() => {
    const m = process.memoryUsage();
    process.stderr.write(
      `memory t=${Date.now() - start}ms rss=${mib(m.rss)} heapUsed=${mib(m.heapUsed)} heapTotal=${mib(m.heapTotal)} external=${mib(m.external)} arrayBuffers=${mib(m.arrayBuffers)} MiB\n`,
    );
  }, 100).unref();
}

/** Passes bytes through, hashing and counting them. */
class Tap extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly onBytes: (total: number) => void = () => {}) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes(this.bytes);
    cb(null, chunk);
  }
}

/** A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise. */
function progress(total: number): (done: number) => void {
  const start = Date.now();
  let lastDraw = 0;
  let lastTenth = -1;
  return (done: number) => {
    const now = Date.now();
    const fraction = total === 0 ? 1 : done / total;
    const mbps = done / 1e6 / Math.max(0.001, (now - start) / 1000);
    const line = `${(fraction * 100).toFixed(1).padStart(5)}% ${(done / 1048576).toFixed(1)}/${(total / 1048576).toFixed(1)} MiB ${mbps.toFixed(0)} MB/s`;
    if (process.stderr.isTTY) {
      if (now - lastDraw < 100 && done < total) return;
      lastDraw = now;
      const width = 30;
      const filled = Math.round(fraction * width);
      process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${line}`);
      if (done >= total) process.stderr.write('\n');
    } else {
      const tenth = Math.floor(fraction * 10);
      if (tenth === lastTenth) return;
      lastTenth = tenth;
      process.stderr.write(`${line}\n`);
    }
  };
}

async function receive(): Promise<void> {
  const port = Number(option('port') ?? usage('--port is required'));
  const out = option('out') ?? usage('--out is required');
  const server = createServer({ port, host: '127.0.0.1', streamMessages: true });
  server.on('error', (err: Error) => {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(1);
  });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  process.stderr.write(`receiving on ws://127.0.0.1:${server.address()!.port}, writing to ${out}\n`);
  const ws = await new Promise<WebSocket>((resolve) => server.once('connection', resolve));
  ws.on('error', (err: Error) => process.stderr.write(`error: ${err.message}\n`));
  const message = await new Promise<MessageReadable>((resolve, reject) => {
    ws.once('message', resolve);
    ws.once('close', (code: number) => reject(new Error(`connection closed (${code}) before a message came`)));
  });
  const tap = new Tap();
  await pipeline(message, tap, fs.createWriteStream(out));
  const digest = tap.hash.digest('hex');
  process.stdout.write(`${digest}  ${out}\n`);
  process.stderr.write(`received ${tap.bytes} bytes, peak RSS ${peakRss()}\n`);
  ws.close(1000, digest);
  await new Promise<void>((resolve) => ws.once('close', () => resolve()));
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

async function send(): Promise<void> {
  const file = process.argv[3];
  if (file === undefined || file.startsWith('--')) usage('the file to send is required');
  const url = option('url') ?? usage('--url is required');
  const size = fs.statSync(file).size;
  const ws = connect(url);
  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
  ws.on('error', (err: Error) => process.stderr.write(`error: ${err.message}\n`));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('close', (code: number) => reject(new Error(`could not connect to ${url} (${code})`)));
  });
  const tap = new Tap(progress(size));
  await pipeline(fs.createReadStream(file), tap, ws.createMessageStream({ binary: true }));
  const digest = tap.hash.digest('hex');
  const [code, reason] = await closed;
  process.stdout.write(`${digest}  ${file}\n`);
  process.stderr.write(`sent ${tap.bytes} bytes, peak RSS ${peakRss()}\n`);
  if (code !== 1000 || reason !== digest) {
    throw new Error(`the receiver did not confirm the transfer (close ${code} ${reason})`);
  }
}

if (process.env.FILE_TRANSFER_MEMLOG === '1') logMemory();
const command = process.argv[2];
const run = command === 'receive' ? receive : command === 'send' ? send : usage(`unknown command ${command ?? ''}`);
run().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(1);
  },
);
