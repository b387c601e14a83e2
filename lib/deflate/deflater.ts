/**
 * Deflater: the permessage-deflate sending side (RFC 7692 §6.1, §7.2.1). Unmasked data frames
 * in (from the MessageFramer), frames out with compressed payloads and RSV1 set on the first
 * frame of each compressed message. It sits between the MessageFramer and the Masker:
 *
 *   MessageFramer ─► Deflater ─► Masker (client) ─► FrameSerializer
 *   (Frame)          (Frame, payloads compressed, RSV1 on the first)
 *
 * Each frame of a compressed message is compressed on its own with a sync flush, so a message
 * sent whole (one frame), cut into fragments, or streamed part by part all work the same way:
 * every frame's compressed bytes end on a byte boundary, and the 4 bytes 00 00 ff ff that end
 * the message's last sync flush are removed (§7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff
 * 0xff) from the tail end"). Earlier frames keep theirs (they are valid empty stored blocks).
 *
 * Which messages are compressed: a message sent whole (its first frame has FIN) is compressed
 * when its payload has at least `threshold` bytes; a message in several frames is always
 * compressed (its size is not known when its first frame goes). With context takeover, the
 * compressor's window carries over from message to message (a message sent uncompressed does
 * not enter it); without, the zlib stream is freed after each message and made anew for the
 * next, so that an idle connection holds no compressor memory.
 *
 * Deviation from the core contract (on purpose): zlib runs in libuv's thread pool, so
 * `write(frame, done)` queues the frame and `done(err)` is called when its output has been handed
 * on (synchronously when no zlib work is needed). Data frames and Close frames come out in the
 * order written. Ping and Pong frames never wait: they are handed on at once, even while a large
 * message is being compressed (RFC 6455 §5.4 lets control frames come between fragments, and a
 * compressed frame is handed on whole, so they never land inside one).
 */
import { Buffer } from 'node:buffer';
import { Transform } from '../stages/streams';
import { constants as zlibConstants, createDeflateRaw, type DeflateRaw } from 'node:zlib';
import { Opcode, isControlOpcode } from '../protocol/constants';
import { WebSocketError, invalidArgument } from '../protocol/errors';
import { type Frame, makeFrame } from '../protocol/frame';
import { DEFLATE_TRAILER, DeflateDefaults, MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS, ZlibLimiter, ZlibListeners } from './permessage-deflate';
import { type ZlibDone, type ZlibHandler, ZlibWork, noDone } from './zlib-work';

/** Options of DeflaterCore and Deflater. */
export interface DeflaterOptions {
  /** Our LZ77 window, in bits: 9-15 (zlib cannot compress with 8). Default 15. */
  windowBits?: number;
  /** Compress each message alone (the zlib stream is freed between messages). Default false. */
  noContextTakeover?: boolean;
  /** Messages sent whole with fewer bytes than this go uncompressed. Default 1024 (see PerMessageDeflateOptions). */
  threshold?: number;
  /** zlib level, -1 (zlib's default, 6) or 0-9. Default -1. */
  level?: number;
  /** zlib memLevel, 1-9. Default 8. */
  memLevel?: number;
  /** @internal Limits concurrent zlib work; default: the process-wide limiter of 10. */
  limiter?: ZlibLimiter;
}

const EMPTY = Buffer.alloc(0);
const TRAILER_SIZE = DEFLATE_TRAILER.length;
/**
 * An empty message whose flush produced no new bytes (zlib emits nothing when nothing is pending)
 * still needs the first byte of an empty stored block, so that the receiver's appended 00 00 ff ff
 * completes a block (RFC 7692 §7.2.3.6: an empty message compresses to the single byte 0x00).
 */
const EMPTY_BLOCK = Buffer.from([0x00]);

/** The I/O-free (but asynchronous) deflater; see the module comment. */
export class DeflaterCore extends ZlibWork<DeflateRaw> {
  private readonly windowBits: number;
  private readonly noContextTakeover: boolean;
  private readonly threshold: number;
  private readonly level: number;
  private readonly memLevel: number;

  /** Compressed chunks of the frame being compressed. */
  private chunks: Buffer[] = [];
  private chunkBytes = 0;

  /** The message being sent is compressed (decided on its first frame). */
  private compressing = false;

  /** Throws a RangeError for a windowBits outside 9-15. */
  constructor(options: DeflaterOptions, handler: ZlibHandler) {
    super(options.limiter, handler);
    const bits = options.windowBits ?? MAX_WINDOW_BITS;
    if (!Number.isInteger(bits) || bits < MIN_DEFLATE_WINDOW_BITS || bits > MAX_WINDOW_BITS) {
      throw invalidArgument(`Deflater windowBits must be 9-15 (zlib cannot compress with 8), got ${bits}`, RangeError);
    }
    this.windowBits = bits;
    this.noContextTakeover = options.noContextTakeover === true;
    this.threshold = options.threshold ?? DeflateDefaults.threshold;
    this.level = options.level ?? DeflateDefaults.level;
    this.memLevel = options.memLevel ?? DeflateDefaults.memLevel;
  }

  /**
   * Queues one whole, unmasked frame; `done` is called once its output has been handed on.
   * Ping and Pong frames are handed on at once. Returns the error known so far.
   */
  write(frame: Frame, done: ZlibDone = noDone): WebSocketError | null {
    if (this.error !== null) {
      done(this.error);
      return this.error;
    }
    if (frame.opcode === Opcode.Ping || frame.opcode === Opcode.Pong) {
      this.handler.onFrame(frame);
      done(this.error);
      return this.error;
    }
    this.queue.push(frame, done);
    if (!this.busy) this.drain();
    return this.error;
  }

  protected dropOutput(): void {
    this.chunks = [];
    this.chunkBytes = 0;
  }

  /** Frees the zlib stream and stops; queued frames are called back with an error. */
  destroy(): void {
    this.fail(new WebSocketError('WS_ERR_INVALID_STATE', 'the deflater was destroyed'));
  }

  private drain(): void {
    let frame: Frame | undefined;
    while (this.error === null && !this.busy && (frame = this.queue.peek()) !== undefined) {
      if (isControlOpcode(frame.opcode)) {
        this.handler.onFrame(frame);
        this.finishFrame();
        continue;
      }
      if (frame.opcode !== Opcode.Continuation) {
        this.compressing = !frame.fin || frame.payload.length >= this.threshold;
      }
      if (!this.compressing) {
        this.handler.onFrame(frame);
        this.finishFrame();
        continue;
      }
      if (frame.payload.length === 0 && !frame.fin) {
        // Nothing to compress: an empty fragment carries no DEFLATE bytes (RFC 7692 §7.2.3.6).
        this.handler.onFrame(this.output(frame, EMPTY));
        this.finishFrame();
        continue;
      }
      this.busy = true;
      this.holdsSlot = false;
      this.limiter.acquire(this.onSlot);
      return;
    }
  }

  private finishFrame(): void {
    this.queue.finish(this.error);
  }

  /** The frame with RSV1 set when it opens its message ("Per-Message Compressed" bit, RFC 7692 §6). */
  private output(frame: Frame, payload: Buffer): Frame {
    return makeFrame(frame.opcode, payload, { fin: frame.fin, rsv1: frame.opcode !== Opcode.Continuation });
  }

  private readonly onSlot = (): void => {
    this.holdsSlot = true;
    if (this.error !== null) {
      this.releaseSlot();
      return;
    }
    const frame = this.queue.peek()!;
    const zlib = this.zlib ?? this.createZlib();
    this.chunks = [];
    this.chunkBytes = 0;
    this.zlibWritten = false;
    if (frame.payload.length > 0) zlib.write(frame.payload);
    // §7.2.1: "Compress all the octets of the payload of the message using DEFLATE" ending with
    // an empty block (here: the sync flush), so that the output ends on a byte boundary.
    zlib.flush(zlibConstants.Z_SYNC_FLUSH, this.onZlibWritten);
  };

  protected readonly zlibListeners: ZlibListeners = { onData: (c) => this.onZlibData(c), onError: (e) => this.onZlibError(e) };

  protected newZlib(): DeflateRaw {
    return createDeflateRaw({ windowBits: this.windowBits, level: this.level, memLevel: this.memLevel });
  }

  private readonly onZlibData = (chunk: Buffer): void => {
    if (this.error !== null) return;
    this.chunks.push(chunk);
    this.chunkBytes += chunk.length;
    if (this.zlibWritten) this.maybeComplete();
  };

  private readonly onZlibWritten = (err?: Error | null): void => {
    if (this.error !== null || err) return;
    this.zlibWritten = true;
    this.maybeComplete();
  };

  private readonly onZlibError = (err: Error): void => {
    this.fail(new WebSocketError('WS_ERR_INVALID_ARGUMENT', `deflate failed: ${err.message}`));
  };

  /** Complete once zlib has called back and every output chunk has arrived. */
  private maybeComplete(): void {
    const zlib = this.zlib;
    if (!this.busy || !this.zlibWritten || zlib === null || zlib.readableLength > 0) return;
    this.busy = false;
    this.releaseSlot();
    const frame = this.queue.peek()!;
    const chunks = this.chunks;
    const total = this.chunkBytes;
    this.chunks = [];
    this.chunkBytes = 0;
    let payload = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
    if (frame.fin) {
      // A sync flush always ends with 00 00 ff ff; the message's last one is removed (§7.2.1).
      payload = total > TRAILER_SIZE ? payload.subarray(0, total - TRAILER_SIZE) : EMPTY_BLOCK;
      if (this.noContextTakeover) this.releaseZlib();
    }
    this.handler.onFrame(this.output(frame, payload));
    if (this.error !== null) return;
    this.finishFrame();
    this.drain();
  }
}

/**
 * Deflater as a Transform: whole unmasked Frame values in, Frame values out (compressed where
 * due, RSV1 on the first frame of a compressed message). Object mode on both sides.
 */
export class Deflater extends Transform {
  readonly core: DeflaterCore;

  constructor(options: DeflaterOptions = {}) {
    super({ objectMode: true });
    this.core = new DeflaterCore(options, { onFrame: (frame) => this.push(frame) });
  }

  override _transform(chunk: Frame, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.core.write(chunk, (err) => cb(err ?? undefined));
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    if (this.core.error === null) this.core.destroy();
    cb(err);
  }
}
