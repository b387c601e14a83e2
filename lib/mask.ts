/**
 * Masking (RFC 6455 §5.3): payload byte i is XORed with key byte (i mod 4). Done a 32-bit word
 * at a time over the aligned middle of the buffer, a byte at a time over the ends.
 */
import { randomFillSync } from 'node:crypto';
import { endianness } from 'node:os';

const LITTLE_ENDIAN = endianness() === 'LE';
/** Below this many bytes a word view costs more than it saves. */
const WORD_THRESHOLD = 32;

/**
 * XORs `data` in place with `mask`, as if `data` started at byte `offset` of a frame's payload
 * (so a piece of a payload can be (un)masked on its own). Masking and unmasking are the same.
 */
export function applyMask(data: Buffer, mask: Buffer, offset = 0): void {
  const length = data.length;
  let i = 0;
  if (length >= WORD_THRESHOLD && LITTLE_ENDIAN) {
    const misaligned = data.byteOffset & 3;
    const head = misaligned === 0 ? 0 : 4 - misaligned;
    for (; i < head; i++) data[i] = data[i]! ^ mask[(offset + i) & 3]!;
    const words = (length - i) >>> 2;
    const k = (offset + i) & 3;
    const word =
      (mask[k]! | (mask[(k + 1) & 3]! << 8) | (mask[(k + 2) & 3]! << 16) | (mask[(k + 3) & 3]! << 24)) >>> 0;
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] = view[w]! ^ word;
    i += words << 2;
  }
  for (; i < length; i++) data[i] = data[i]! ^ mask[(offset + i) & 3]!;
}

/** Produces a fresh 4-byte masking key. Injectable so that specs can pin exact bytes. */
export type MaskGenerator = () => Buffer;

const POOL_SIZE = 8192;
let pool = Buffer.alloc(0);
let poolOffset = POOL_SIZE;

/**
 * The default MaskGenerator: keys from crypto.randomFillSync, drawn 8 KiB at a time (RFC 6455
 * §10.3 requires keys a peer cannot predict). A spent pool is replaced, never refilled, so keys
 * already handed out (still referenced by queued frames) never change.
 */
export const randomMask: MaskGenerator = () => {
  if (poolOffset === POOL_SIZE) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_SIZE));
    poolOffset = 0;
  }
  const key = pool.subarray(poolOffset, poolOffset + 4);
  poolOffset += 4;
  return key;
};

/** Draws `size` bytes from a strong random source (the client's Sec-WebSocket-Key nonce). */
export function randomBytes(size: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(size));
}
