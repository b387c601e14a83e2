/**
 * Masking (RFC 6455 §5.3): payload byte i is XORed with key byte (i mod 4).
 *
 * Three paths, fastest first (measured on this project's machine, 64 KiB buffers, one core):
 * - WebAssembly SIMD, 16 bytes per instruction, through a 64 KiB block of wasm memory (copy in,
 *   XOR, copy out): about 13 GB/s. Used from SIMD_THRESHOLD bytes up, where the copies pay off.
 * - JavaScript over an Int32Array view, unrolled 16 words a step: about 8 GB/s.
 * - a byte loop, four bytes a step with the key's bytes in locals, for payloads under
 *   WORD_THRESHOLD (most messages of a chat or game), the unaligned head and the tail.
 * Int32 (not Uint32) keeps V8 in small-integer arithmetic; a Uint32Array loop ran at 2 GB/s.
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { endianness } from 'node:os';

const LITTLE_ENDIAN = endianness() === 'LE';
/**
 * Below this many bytes the byte loop is faster than making an Int32Array view (applyMask per
 * call, 2 million calls: 64 B 75-88 ns with the byte loop against 150-205 through the view; even
 * at 125 B, about 130; at 256 B the view wins, 170 against 245).
 */
const WORD_THRESHOLD = 128;
/** From this many bytes the WebAssembly path is used (when the runtime has SIMD). */
const SIMD_THRESHOLD = 512;
/** Size of the wasm memory block the SIMD path works through (64 KiB). */
const SIMD_BLOCK = 65536;
/**
 * A copy whose destination lies 1 to 31 bytes past its source within a 4 KiB page runs 15-20x
 * slower on this machine (4K aliasing of loads and stores: about 2 GB/s against 30-40 for a 64
 * KiB Buffer.copy; `node dist/bench/page-offsets.js` measures it). JavaScript cannot see where a
 * buffer's memory starts within its page, only its byteOffset in its ArrayBuffer, whose own start
 * is usually a page start plus a little (16 bytes for large malloc'd ones). So the wasm side of
 * every copy is placed half a page away from the other buffer's byteOffset (`away()`), far from
 * the slow band in that usual case. Each area reserves this much more than its size.
 */
const PAGE = 4096;
/** The block area: SIMD_BLOCK plus room to shift it within a page. */
const BLOCK_AREA = SIMD_BLOCK + PAGE;
/** Size of one output slot (see MaskSlots). */
const SLOT_SIZE = 65536;
/** Distance between slots: a slot plus room to shift it within a page. */
const SLOT_STRIDE = SLOT_SIZE + PAGE;
/**
 * Number of output slots, after the block area: about 17 MiB of address space, each page
 * touched only once a slot is used. Enough for a 16 MiB message to be masked into slots whole:
 * with 32 (2 MiB) the rest of such a message went to a fresh buffer every time, whose pages the
 * kernel faulted in and zeroed per message (bench:bulk, 16 MiB messages: sender 0.69 -> 0.63 CPU
 * s/GB, peak RSS 205 -> 124 MiB).
 */
export const SLOT_COUNT = 256;

/** An offset (multiple of 16, under PAGE) that puts a wasm copy half a page away from `byteOffset`'s page offset. */
function away(byteOffset: number): number {
  return (byteOffset + PAGE / 2) & (PAGE - 16);
}

/**
 * A hand-assembled WebAssembly module (about 200 bytes) exporting 274 pages of memory ("mem", 64
 * KiB each: the block area, then the output slots) and `xor(p, len, word)`, which XORs mem[p..p+len)
 * (len a multiple of 16) with the 32-bit `word` repeated: 64 bytes a step (four 16-byte vectors,
 * which ran at 38 GB/s on 32 KiB in cache where one vector a step ran at 25), then the last
 * 16-byte blocks one by one:
 *
 *   (func (param $p i32) (param $len i32) (param $word i32) (local $m v128) (local $end i32)
 *     (local.set $m (i32x4.splat (local.get $word)))
 *     (local.set $end (i32.add (local.get $p) (local.get $len)))
 *     (block (loop
 *       (br_if 1 (i32.gt_u (i32.add (local.get $p) (i32.const 64)) (local.get $end)))
 *       (v128.store offset=0 (local.get $p) (v128.xor (v128.load offset=0 (local.get $p)) (local.get $m)))
 *       ... the same at offset=16, offset=32 and offset=48
 *       (local.set $p (i32.add (local.get $p) (i32.const 64)))
 *       (br 0)))
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
 *       (v128.store (local.get $p) (v128.xor (v128.load (local.get $p)) (local.get $m)))
 *       (local.set $p (i32.add (local.get $p) (i32.const 16)))
 *       (br 0))))
 */
const SIMD_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type: (i32 i32 i32) -> ()
  0x03, 0x02, 0x01, 0x00, // one function of type 0
  0x05, 0x04, 0x01, 0x00, 0x92, 0x02, // memory: min 274 pages, LEB128 (never grown: growing would detach the slots' views)
  0x07, 0x0d, 0x02, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x03, 0x78, 0x6f, 0x72, 0x00, 0x00, // exports "mem", "xor"
  0x0a, 0x97, 0x01, 0x01, 0x94, 0x01, // code section (151 bytes): one body of 148 bytes
  0x02, 0x01, 0x7b, 0x01, 0x7f, // locals: 1 v128, 1 i32
  0x20, 0x02, 0xfd, 0x11, 0x21, 0x03, // $m = i32x4.splat($word)
  0x20, 0x00, 0x20, 0x01, 0x6a, 0x21, 0x04, // $end = $p + $len
  0x02, 0x40, 0x03, 0x40, // block, loop: 64 bytes a step
  0x20, 0x00, 0x41, 0xc0, 0x00, 0x6a, 0x20, 0x04, 0x4b, 0x0d, 0x01, // br_if 1 ($p + 64 > $end) (64: signed LEB128 c0 00)
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x00, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00, // store(p, load(p) ^ m), offset 0
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x10, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x10, // the same, offset 16
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x20, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x20, // offset 32
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x30, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x30, // offset 48
  0x20, 0x00, 0x41, 0xc0, 0x00, 0x6a, 0x21, 0x00, // $p += 64
  0x0c, 0x00, 0x0b, 0x0b, // br 0, end loop, end block
  0x02, 0x40, 0x03, 0x40, // block, loop: the last 16-byte blocks
  0x20, 0x00, 0x20, 0x04, 0x4f, 0x0d, 0x01, // br_if 1 ($p >= $end)
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x00, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00, // store(p, load(p) ^ m)
  0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, // $p += 16
  0x0c, 0x00, 0x0b, 0x0b, 0x0b, // br 0, end loop, end block, end func
]);

interface SimdXor {
  /** A Buffer (not a plain Uint8Array), so that the copies see one kind of array. */
  memory: Buffer;
  xor: (p: number, len: number, word: number) => void;
}

/** The few WebAssembly calls used here (@types/node does not declare the global). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: { mem: { buffer: ArrayBuffer }; xor: SimdXor['xor'] } };
}

/** Instantiates the SIMD module, or null where the runtime lacks WebAssembly SIMD. */
function loadSimd(): SimdXor | null {
  try {
    const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (wasm === undefined || !wasm.validate(SIMD_MODULE)) return null;
    const exports = new wasm.Instance(new wasm.Module(SIMD_MODULE)).exports;
    return { memory: Buffer.from(exports.mem.buffer), xor: exports.xor };
  } catch {
    return null;
  }
}

const simd = process.env.WSPIPE_NO_SIMD === '1' ? null : loadSimd();

/** True when masking uses WebAssembly SIMD in this process. */
export const maskUsesSimd = simd !== null;

/** The key as a little-endian 32-bit word, rotated so that its first byte applies at `offset`. */
function maskWord(mask: Buffer, offset: number): number {
  const k = offset & 3;
  return mask[k]! | (mask[(k + 1) & 3]! << 8) | (mask[(k + 2) & 3]! << 16) | (mask[(k + 3) & 3]! << 24);
}

/** XORs data[from..to) a 32-bit word at a time (from + byteOffset aligned to 4 by the caller). */
function xorWords(data: Buffer, from: number, words: number, word: number): void {
  const view = new Int32Array(data.buffer, data.byteOffset + from, words);
  const unrolled = words & ~15;
  let w = 0;
  for (; w < unrolled; w += 16) {
    view[w] = view[w]! ^ word;
    view[w + 1] = view[w + 1]! ^ word;
    view[w + 2] = view[w + 2]! ^ word;
    view[w + 3] = view[w + 3]! ^ word;
    view[w + 4] = view[w + 4]! ^ word;
    view[w + 5] = view[w + 5]! ^ word;
    view[w + 6] = view[w + 6]! ^ word;
    view[w + 7] = view[w + 7]! ^ word;
    view[w + 8] = view[w + 8]! ^ word;
    view[w + 9] = view[w + 9]! ^ word;
    view[w + 10] = view[w + 10]! ^ word;
    view[w + 11] = view[w + 11]! ^ word;
    view[w + 12] = view[w + 12]! ^ word;
    view[w + 13] = view[w + 13]! ^ word;
    view[w + 14] = view[w + 14]! ^ word;
    view[w + 15] = view[w + 15]! ^ word;
  }
  for (; w < words; w++) view[w] = view[w]! ^ word;
}

/**
 * XORs `data` with `mask` into `target` from byte `at` on (by default `data` itself, in place), as
 * if `data` started at byte `offset` of a frame's payload (so a piece of a payload can be
 * (un)masked on its own). Masking and unmasking are the same. `target` must hold at least
 * `at + data.length` bytes and must not overlap `data` unless it is `data` (and `at` is 0).
 */
export function applyMask(data: Buffer, mask: Buffer, offset = 0, target: Buffer = data, at = 0): void {
  const length = data.length;
  let i = 0;
  if (length >= SIMD_THRESHOLD && simd !== null) {
    // Whole 16-byte blocks keep the key's phase, so one word serves every block; the last block
    // is XORed whole too (the bytes past the data are scratch), so no byte is left for a loop.
    // Steps of SIMD_BLOCK keep the data's page offset, so one shift serves every step.
    const word = maskWord(mask, offset);
    const memory = simd.memory;
    const p = away(data.byteOffset);
    for (; i < length; i += SIMD_BLOCK) {
      const n = Math.min(SIMD_BLOCK, length - i);
      memory.set(n === length ? data : data.subarray(i, i + n), p);
      simd.xor(p, (n + 15) & ~15, word);
      target.set(memory.subarray(p, p + n), at + i);
    }
    return;
  } else if (length >= WORD_THRESHOLD && LITTLE_ENDIAN) {
    if (target !== data || at !== 0) {
      // One copy, then in place: the word loop needs one alignment for reads and writes.
      data.copy(target, at, 0, length);
      if (at !== 0) target = target.subarray(at, at + length);
      data = target;
      at = 0;
    }
    const misaligned = data.byteOffset & 3;
    const head = misaligned === 0 ? 0 : 4 - misaligned;
    xorBytes(data, mask, offset, data, 0, head, 0);
    i = head;
    const words = (length - i) >>> 2;
    xorWords(data, i, words, maskWord(mask, offset + i));
    i += words << 2;
  }
  xorBytes(data, mask, offset, target, i, length, at);
}

/**
 * target[at + from .. at + to) = data[from..to) XOR the key (applied from payload byte
 * `offset`), a byte at a time.
 */
function xorBytes(data: Buffer, mask: Buffer, offset: number, target: Buffer, from: number, to: number, at: number): void {
  const k = offset + from;
  const m0 = mask[k & 3]!;
  const m1 = mask[(k + 1) & 3]!;
  const m2 = mask[(k + 2) & 3]!;
  const m3 = mask[(k + 3) & 3]!;
  let i = from;
  let t = at + from;
  for (; i + 4 <= to; i += 4, t += 4) {
    target[t] = data[i]! ^ m0;
    target[t + 1] = data[i + 1]! ^ m1;
    target[t + 2] = data[i + 2]! ^ m2;
    target[t + 3] = data[i + 3]! ^ m3;
  }
  if (i < to) target[t] = data[i]! ^ m0;
  if (i + 1 < to) target[t + 1] = data[i + 1]! ^ m1;
  if (i + 2 < to) target[t + 2] = data[i + 2]! ^ m2;
}

/**
 * Output buffers for masked payloads, in wasm memory: a payload masked into a slot costs one
 * copy (in) and the XOR, where a fresh buffer costs a copy in, the XOR, a copy out and garbage.
 * Only for bytes whose last reader calls release(): the fused client sender, which writes a slot
 * to a net.Socket and releases it in the write's callback (the kernel has the bytes by then).
 * Shared by every connection of the process; take() returns null when all slots are in use
 * (callers then allocate as usual).
 */
export class MaskSlots {
  /** Free slot numbers (a stack). */
  private readonly free: number[] = [];
  /** The slots lie in the SIMD module's memory: mask() XORs right there, with no copy out. */
  private readonly inWasm: boolean;

  constructor(
    private readonly memory: Uint8Array,
    /** Byte offset of slot 0 in the memory. */
    private readonly base: number,
    count: number,
  ) {
    for (let slot = count - 1; slot >= 0; slot--) this.free.push(slot);
    this.inWasm = simd !== null && memory.buffer === simd.memory.buffer;
  }

  /** Masks `data` (a piece at payload byte `offset`) into `slot` (a view from take(), or a prefix of one). */
  mask(data: Buffer, mask: Buffer, offset: number, slot: Buffer): void {
    const length = data.length;
    if (!this.inWasm || length < SIMD_THRESHOLD) {
      applyMask(data, mask, offset, slot);
      return;
    }
    // Copy in and XOR in place (no copy out), the last 16-byte block whole (a slot is SLOT_SIZE
    // bytes, a multiple of 16, and nothing reads it past the data).
    slot.set(data, 0);
    simd!.xor(slot.byteOffset, (length + 15) & ~15, maskWord(mask, offset));
  }

  /**
   * A free slot (SLOT_SIZE bytes) to mask into, or null when none is free. `sourceOffset`: the
   * byteOffset of the data to be copied in (the slot is placed half a page away from it).
   */
  take(sourceOffset = 0): Buffer | null {
    const slot = this.free.pop();
    if (slot === undefined) return null;
    const start = this.base + slot * SLOT_STRIDE + away(sourceOffset);
    return Buffer.from(this.memory.buffer, start, SLOT_SIZE);
  }

  /** True when `chunk` lies in a slot (it must be released once written). */
  owns(chunk: Buffer): boolean {
    return chunk.buffer === this.memory.buffer;
  }

  /** Gives back the slot `chunk` starts in (a view returned by take(), or a prefix of one). */
  release(chunk: Buffer): void {
    this.free.push(((chunk.byteOffset - this.base) / SLOT_STRIDE) | 0);
  }

  /** How many slots are free (for specs). */
  get available(): number {
    return this.free.length;
  }
}

/** The process's MaskSlots, or null without WebAssembly SIMD. */
export const maskSlots: MaskSlots | null =
  simd === null ? null : new MaskSlots(simd.memory, BLOCK_AREA, Math.min(SLOT_COUNT, Math.floor((simd.memory.length - BLOCK_AREA) / SLOT_STRIDE)));

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
  const from = drawKey();
  return pool.subarray(from, from + 4);
};

/** Where the next fresh key lies in `pool` (4 bytes, never handed out before). */
function drawKey(): number {
  if (poolOffset === POOL_SIZE) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_SIZE));
    poolOffset = 0;
  }
  const from = poolOffset;
  poolOffset += 4;
  return from;
}

/** The key applyMask gets in maskWithFreshKey and applyMaskAt (used at once, never kept). */
const scratchKey = Buffer.alloc(4);

/**
 * (Un)masks `data` in place, from its payload's first byte, with the 4-byte key at
 * source[keyAt] (a received frame's key, in the chunk it came in): no Buffer made for the key.
 */
export function applyMaskAt(data: Buffer, source: Buffer, keyAt: number): void {
  scratchKey[0] = source[keyAt]!;
  scratchKey[1] = source[keyAt + 1]!;
  scratchKey[2] = source[keyAt + 2]!;
  scratchKey[3] = source[keyAt + 3]!;
  applyMask(data, scratchKey, 0);
}

/**
 * Writes a fresh key, drawn as randomMask draws it, into `target` at `keyAt`, then
 * source[from, from + length) masked with it into `target` at `at` (from the payload's start;
 * not overlapping the key or the source). With `sourceKeyAt` >= 0 the source bytes are masked
 * with the key at source[sourceKeyAt] (a received client frame): they are unmasked in the same
 * pass. A small frame masked straight into an output buffer, with no Buffer for its key or its
 * masked payload.
 */
export function maskWithFreshKey(source: Buffer, from: number, length: number, sourceKeyAt: number, target: Buffer, keyAt: number, at: number): void {
  const key = drawKey();
  let k0 = (target[keyAt] = pool[key]!);
  let k1 = (target[keyAt + 1] = pool[key + 1]!);
  let k2 = (target[keyAt + 2] = pool[key + 2]!);
  let k3 = (target[keyAt + 3] = pool[key + 3]!);
  if (sourceKeyAt >= 0) {
    k0 ^= source[sourceKeyAt]!;
    k1 ^= source[sourceKeyAt + 1]!;
    k2 ^= source[sourceKeyAt + 2]!;
    k3 ^= source[sourceKeyAt + 3]!;
  }
  scratchKey[0] = k0;
  scratchKey[1] = k1;
  scratchKey[2] = k2;
  scratchKey[3] = k3;
  if (length >= WORD_THRESHOLD) applyMask(source.subarray(from, from + length), scratchKey, 0, target, at);
  // (xorBytes writes source[i] to target[at + i]: here source[from] goes to target[at].)
  else xorBytes(source, scratchKey, -from, target, from, from + length, at - from);
}

/** Draws `size` bytes from a strong random source (the client's Sec-WebSocket-Key nonce). */
export function randomBytes(size: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(size));
}
