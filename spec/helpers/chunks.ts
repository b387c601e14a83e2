/**
 * Ways to cut one input into chunks, so that every parser spec can feed the same bytes whole,
 * byte by byte, and split in two at every offset.
 */
import { Readable, Writable } from 'readable-stream';

export interface Chunking {
  /** Describes the cut, for test titles and failure messages. */
  readonly name: string;
  readonly chunks: Buffer[];
}

/** Whole, byte by byte, and every two-way split (each offset 1..n-1). */
export function everyChunking(input: Buffer): Chunking[] {
  const out: Chunking[] = [{ name: 'whole', chunks: [input] }];
  if (input.length > 1) {
    const bytes: Buffer[] = [];
    for (let i = 0; i < input.length; i++) bytes.push(input.subarray(i, i + 1));
    out.push({ name: 'byte by byte', chunks: bytes });
    for (let at = 1; at < input.length; at++) {
      out.push({ name: `split at ${at}`, chunks: [input.subarray(0, at), input.subarray(at)] });
    }
  }
  return out;
}

/** Whole, byte by byte, and cut into pieces of each size in `sizes`. For inputs too large to split at every offset. */
export function someChunkings(input: Buffer, sizes: number[] = [1, 2, 3, 7, 64, 1000]): Chunking[] {
  const out: Chunking[] = [{ name: 'whole', chunks: [input] }];
  for (const size of sizes) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < input.length; i += size) chunks.push(input.subarray(i, i + size));
    out.push({ name: `pieces of ${size}`, chunks });
  }
  return out;
}

/** Everything a readable stream yields until it ends (or the error it fails with). */
export async function collect<T = unknown>(stream: Readable | NodeJS.ReadableStream): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream as AsyncIterable<T>) out.push(item);
  return out;
}

/** A Readable that yields the given chunks, then ends. */
export function fromChunks<T>(chunks: T[], objectMode = false): Readable {
  return Readable.from(chunks, { objectMode });
}

/** A Writable that keeps what it receives. */
export function sink<T = Buffer>(objectMode = false): Writable & { received: T[] } {
  const received: T[] = [];
  const w = new Writable({
    objectMode,
    write(chunk: T, _enc, cb) {
      received.push(chunk);
      cb();
    },
  }) as Writable & { received: T[] };
  w.received = received;
  return w;
}
