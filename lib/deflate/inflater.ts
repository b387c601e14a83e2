/**
 * Inflater: the permessage-deflate receiving side (RFC 7692 §6.2, §7.2.2). Unmasked frames (or
 * pieces of frames) in; frames out, with compressed messages inflated. It sits between the
 * Unmasker and the FragmentAssembler:
 *
 *   ... Unmasker ─► Inflater ─► FragmentAssembler ...
 *   (Frame)         (Frame, RSV1 messages inflated; control and plain frames passed on)
 *
 * A message whose first frame has RSV1 set is compressed (§6.1). Its frames' payloads are fed to
 * one raw-DEFLATE stream as they arrive and, at the end of the message, the 4 bytes 00 00 ff ff
 * that the sender removed are appended (§7.2.2). The inflated bytes come out as they are
 * produced, as whole frames: the first with the message's opcode, the rest as Continuation
 * frames, FIN on the last. So the assembler (and a streamed message's reader) sees a fragmented
 * message whose fragments are zlib's output chunks; a message that inflates into one chunk comes
 * out as one frame. Uncompressed messages and control frames pass through unchanged.
 *
 * Deviation from the core contract (on purpose): zlib runs in libuv's thread pool, so
 * inflating cannot finish inside a synchronous `write()`. `write(frame, done)` queues the frame
 * and returns the error known so far; `done(err)` is called once the frame has been fully handed
 * on: synchronously for frames that need no zlib work, later for compressed ones. Frames are
 * always handled in the order written, so messages, control frames and errors keep their order
 * (a close frame behind a compressed message comes out after it). `pending` says how many frames
 * wait; the owner should stop reading its source while it is above zero.
 *
 * Limits apply to the INFLATED bytes: `maxMessageSize` to a message and `maxPayload` to what one
 * wire frame inflates to. The count is checked on every output chunk, and at the limit the zlib
 * stream is destroyed at once, so a decompression bomb costs at most one chunk over the limit.
 * Each wire frame of a message after its first also counts `frameOverhead` bytes (default 256)
 * against maxMessageSize, as in the FragmentAssembler, so that a compressed message of empty or
 * tiny fragments is cut after a bounded number of frames (WS_ERR_TOO_MANY_FRAGMENTS, 1009).
 *
 * Tiny frames are inflated together: consecutive small frames of one message already queued
 * (one socket chunk holds thousands of them) are joined and given to zlib in one operation,
 * instead of one trip through the thread pool each.
 *
 * Backpressure: `pause()` (the consumer is full) stops zlib after its current output chunk;
 * `resume()` lets it go on. A paused inflater gives its zlib slot back (see ZlibLimiter), so that
 * a slow reader never holds up other connections. Fairness: an operation that has inflated a
 * slice (1 MiB) while others wait for a slot gives its slot back and queues again, so one
 * connection's large message (or a bomb on its way to the limit) cannot hold the pool for long.
 */
import { Buffer } from 'node:buffer';
import { Transform } from '../stages/streams';
import { constants as zlibConstants, createInflateRaw, type InflateRaw } from 'node:zlib';
import { Defaults, Opcode, isControlOpcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { type Frame, isLastPiece, makeFrame } from '../protocol/frame';
import { fragmentsOverLimit } from '../stages/fragment-assembler';
import { DEFLATE_TRAILER, MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS, ZlibLimiter, ZlibListeners } from './permessage-deflate';
import { type ZlibDone, type ZlibHandler, ZlibWork, noDone } from './zlib-work';

/** Options of InflaterCore and Inflater. */
export interface InflaterOptions {
  /** The peer's LZ77 window, in bits (8-15; 8 is inflated as 9, which decodes it). Default 15. */
  windowBits?: number;
  /** The peer compresses each message alone: our zlib stream is freed after each message. Default false. */
  noContextTakeover?: boolean;
  /** Largest inflated message, in bytes (WS_ERR_MESSAGE_TOO_BIG, 1009, beyond). Default 100 MiB. */
  maxMessageSize?: number;
  /** Largest inflated size of one wire frame's payload, in bytes (WS_ERR_MESSAGE_TOO_BIG, 1009, beyond). Default 100 MiB. */
  maxPayload?: number;
  /**
   * Most wire frames one message (compressed or not) may be made of (WS_ERR_TOO_MANY_FRAGMENTS,
   * 1009, beyond). Counted here because the frames handed on for a compressed message are
   * zlib's chunks, not the peer's frames. Default Infinity (frameOverhead bounds them).
   */
  maxFragments?: number;
  /** Bytes each wire frame of a message after its first counts against maxMessageSize beside its payload. Default 256 (Defaults.frameOverhead). */
  frameOverhead?: number;
  /** Size of zlib's output chunks, in bytes. Default 16 KiB (zlib's own default). */
  chunkSize?: number;
  /** @internal Limits concurrent zlib work; default: the process-wide limiter of 10. */
  limiter?: ZlibLimiter;
}

const EMPTY = Buffer.alloc(0);
const DEFAULT_CHUNK_SIZE = 16 * 1024;
/** Frames smaller than this are joined with the queued frames after them into one zlib operation. */
const BATCH_BELOW = 1024;
/** Most bytes of input one joined operation takes. */
const MAX_BATCH = 64 * 1024;
/** Inflated bytes after which an operation yields its slot to a waiting one. */
const SLICE = 1024 * 1024;

/**
 * An inflate error means the peer sent bytes that are not DEFLATE data: close 1007 ("data within
 * a message that was not consistent with the type of the message", RFC 6455 §7.4.1).
 */
function corrupt(detail: string): WebSocketError {
  return new WebSocketError('WS_ERR_INVALID_COMPRESSED_DATA', detail);
}

/** The I/O-free (but asynchronous) inflater; see the module comment. */
export class InflaterCore extends ZlibWork<InflateRaw> {
  private readonly windowBits: number;
  private readonly noContextTakeover: boolean;
  private readonly maxMessageSize: number;
  private readonly maxPayload: number;
  private readonly maxFragments: number;
  private readonly frameOverhead: number;
  private readonly chunkSize: number;

  private paused = false;
  /** Waiting for a slot from the limiter. */
  private waitingForSlot = false;
  /** The current operation's input has been given to zlib. */
  private opStarted = false;

  /** The current operation ends its message. */
  private opEndsMessage = false;
  /** Wire frames the current operation inflates (consecutive tiny ones are joined). */
  private opFrames = 1;
  /** Bytes inflated since the slot was last taken (see SLICE). */
  private sliceBytes = 0;

  // The message being received.
  private inMessage = false;
  private compressed = false;
  private opcode = Opcode.Text;
  private fragments = 0;
  /** frameOverhead for each wire frame of the message after its first. */
  private overheadBytes = 0;
  /** Inflated bytes of the message so far, and of the current wire frame. */
  private messageBytes = 0;
  private frameBytes = 0;
  /** The message's first output frame has been handed on (later ones are Continuation frames). */
  private started = false;
  /** The last inflated chunk, held back so that the final frame can carry FIN with data. */
  private held: Buffer | null = null;

  constructor(options: InflaterOptions, handler: ZlibHandler) {
    super(options.limiter, handler);
    const bits = options.windowBits ?? MAX_WINDOW_BITS;
    this.windowBits = Math.max(bits, MIN_DEFLATE_WINDOW_BITS);
    this.noContextTakeover = options.noContextTakeover === true;
    this.maxMessageSize = options.maxMessageSize ?? Defaults.maxMessageSize;
    this.maxPayload = options.maxPayload ?? Defaults.maxPayload;
    this.maxFragments = options.maxFragments ?? Defaults.maxFragments;
    this.frameOverhead = options.frameOverhead ?? Defaults.frameOverhead;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  }

  /** A close frame waits behind the frames being inflated (the peer closed properly). */
  get closeQueued(): boolean {
    return this.queue.has(Opcode.Close);
  }

  /**
   * Queues one frame (or piece); `done` is called once it has been handed on, synchronously
   * when no zlib work is needed. Returns the error known so far.
   */
  write(frame: Frame, done: ZlibDone = noDone): WebSocketError | null {
    if (this.error !== null) {
      done(this.error);
      return this.error;
    }
    this.queue.push(frame, done);
    if (!this.busy) this.drain();
    return this.error;
  }

  protected dropOutput(): void {
    this.held = null;
  }

  /** The consumer is full: inflate nothing more (after zlib's current chunk) until resume(). */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    if (this.zlib !== null) this.zlib.pause();
    // A paused operation gives its slot back, so that a slow reader holds up no one else.
    this.releaseSlot();
  }

  /** The consumer wants more: go on inflating. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.error !== null) return;
    if (!this.busy) this.drain();
    else if (!this.holdsSlot && !this.waitingForSlot) this.requestSlot();
  }

  /** Frees the zlib stream and stops; for the owner's teardown. Queued frames are called back with an error. */
  destroy(): void {
    this.fail(new WebSocketError('WS_ERR_CONNECTION_LOST', 'the inflater was destroyed'));
  }

  /** Handles queued frames in order until one needs zlib (or the queue is empty). */
  private drain(): void {
    let frame: Frame | undefined;
    while (this.error === null && !this.busy && (frame = this.queue.peek()) !== undefined) {
      if (!this.startFrame(frame)) return;
      if (!this.compressed || isControlOpcode(frame.opcode)) {
        this.handler.onFrame(frame);
        if (this.error !== null) return;
        if (!isControlOpcode(frame.opcode) && frame.fin && isLastPiece(frame)) this.inMessage = false;
        this.finishFrame(null);
        continue;
      }
      const ends = frame.fin && isLastPiece(frame);
      if (frame.payload.length === 0 && !ends) {
        this.finishFrame(null);
        continue;
      }
      this.busy = true;
      this.opStarted = false;
      this.opEndsMessage = ends;
      this.opFrames = 1;
      if (!ends && frame.payload.length < BATCH_BELOW && !this.batch(frame.payload.length)) return;
      if (!this.paused) this.requestSlot();
      return;
    }
  }

  /**
   * Joins the tiny frames queued after the one at the head (whose payload is `bytes` long) to the
   * operation, up to the one that ends the message, a larger one or a control frame. False when
   * one of them fails its checks.
   */
  private batch(bytes: number): boolean {
    let frame: Frame | undefined;
    while (
      (frame = this.queue.at(this.opFrames)) !== undefined &&
      !isControlOpcode(frame.opcode) &&
      frame.payload.length < BATCH_BELOW &&
      bytes + frame.payload.length <= MAX_BATCH
    ) {
      if (!this.startFrame(frame)) return false;
      bytes += frame.payload.length;
      this.opFrames++;
      if (frame.fin && isLastPiece(frame)) {
        this.opEndsMessage = true;
        break;
      }
    }
    // Every frame of the batch counts from zero toward maxPayload: the batch may inflate to their sum.
    this.frameBytes = 0;
    return true;
  }

  /** Checks a frame against the message sequence (RFC 7692 §6.1) and the limits; false on error. */
  private startFrame(frame: Frame): boolean {
    const opcode = frame.opcode;
    if (isControlOpcode(opcode)) {
      // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control frames".
      if (frame.rsv1) {
        this.fail(new WebSocketError('WS_ERR_UNEXPECTED_RSV', 'RSV1 on a control frame'));
        return false;
      }
      return true;
    }
    if (frame.offset !== 0) return true;
    if (opcode === Opcode.Continuation) {
      if (!this.inMessage) {
        this.fail(new WebSocketError('WS_ERR_UNEXPECTED_CONTINUATION'));
        return false;
      }
      // §6.1: the bit is set "on the first frame of a message" only; a receiver that finds it
      // on a continuation frame fails the connection (§6.2 applies it per message).
      if (frame.rsv1) {
        this.fail(new WebSocketError('WS_ERR_UNEXPECTED_RSV', 'RSV1 on a continuation frame'));
        return false;
      }
    } else {
      if (this.inMessage) {
        this.fail(new WebSocketError('WS_ERR_EXPECTED_CONTINUATION'));
        return false;
      }
      this.inMessage = true;
      this.compressed = frame.rsv1;
      this.opcode = opcode;
      this.fragments = 0;
      this.overheadBytes = 0;
      this.messageBytes = 0;
      this.started = false;
      this.held = null;
    }
    if (++this.fragments > this.maxFragments) {
      this.fail(new WebSocketError('WS_ERR_TOO_MANY_FRAGMENTS', `more than ${this.maxFragments} frames`));
      return false;
    }
    if (this.fragments > 1) this.overheadBytes += this.frameOverhead;
    // A compressed frame's bytes are counted as they come out of zlib; an uncompressed one's
    // here (the assembler checks its bytes too, but sees no overhead on an inflating connection).
    if (!this.compressed) this.messageBytes += frame.length;
    if (this.messageBytes + this.overheadBytes > this.maxMessageSize && this.messageBytes <= this.maxMessageSize) {
      this.fail(fragmentsOverLimit(this.fragments, this.frameOverhead, this.maxMessageSize));
      return false;
    }
    this.frameBytes = 0;
    return true;
  }

  /** The frame at the queue's head is done: call it back. */
  private finishFrame(err: WebSocketError | null): void {
    this.queue.finish(err);
  }

  private requestSlot(): void {
    this.waitingForSlot = true;
    this.limiter.acquire(this.onSlot);
  }

  /** The operation gives its slot to whoever waits and queues again behind them (see SLICE). */
  private yieldSlot(): void {
    this.zlib!.pause();
    this.releaseSlot();
    this.requestSlot();
  }

  /** A zlib slot is ours: start the operation, or go on with a paused one. */
  private readonly onSlot = (): void => {
    this.waitingForSlot = false;
    this.holdsSlot = true;
    this.sliceBytes = 0;
    if (this.error !== null || this.paused) {
      this.releaseSlot();
      return;
    }
    if (!this.busy) {
      // The operation completed while we waited (its output had all been handed on).
      this.releaseSlot();
      this.drain();
      return;
    }
    if (!this.opStarted) {
      this.startOp();
      return;
    }
    this.zlib!.resume();
    this.maybeCompleteOp();
  };

  /** Feeds the frame at the queue's head to zlib. */
  private startOp(): void {
    this.opStarted = true;
    const payload = this.opInput();
    const zlib = this.zlib ?? this.createZlib();
    if (zlib.isPaused()) zlib.resume();
    this.zlibWritten = false;
    if (this.opEndsMessage) {
      if (payload.length > 0) zlib.write(payload);
      // §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the payload of the message."
      zlib.write(DEFLATE_TRAILER);
      zlib.flush(zlibConstants.Z_SYNC_FLUSH, this.onZlibWritten);
    } else {
      zlib.write(payload, this.onZlibWritten);
    }
  }

  /** The current operation's input: the head frame's payload, or the joined payloads of a batch. */
  private opInput(): Buffer {
    const queue = this.queue;
    if (this.opFrames === 1) return queue.peek()!.payload;
    const parts: Buffer[] = [];
    for (let i = 0; i < this.opFrames; i++) parts.push(queue.at(i)!.payload);
    return Buffer.concat(parts);
  }

  protected readonly zlibListeners: ZlibListeners = { onData: (c) => this.onZlibData(c), onError: (e) => this.onZlibError(e) };

  protected newZlib(): InflateRaw {
    return createInflateRaw({ windowBits: this.windowBits, chunkSize: this.chunkSize });
  }

  private readonly onZlibData = (chunk: Buffer): void => {
    if (this.error !== null) return;
    this.messageBytes += chunk.length;
    this.frameBytes += chunk.length;
    this.sliceBytes += chunk.length;
    // The limits count inflated bytes: a small frame that inflates to gigabytes stops here, one
    // chunk past the limit, with the zlib stream destroyed.
    if (this.messageBytes > this.maxMessageSize) {
      this.fail(new WebSocketError('WS_ERR_MESSAGE_TOO_BIG', `inflated message over ${this.maxMessageSize} bytes`));
      return;
    }
    if (this.messageBytes + this.overheadBytes > this.maxMessageSize) {
      this.fail(fragmentsOverLimit(this.fragments, this.frameOverhead, this.maxMessageSize));
      return;
    }
    if (this.frameBytes > this.maxPayload * this.opFrames) {
      this.fail(new WebSocketError('WS_ERR_MESSAGE_TOO_BIG', `a frame inflated over ${this.maxPayload} bytes (maxPayload)`));
      return;
    }
    const previous = this.held;
    this.held = chunk;
    if (previous !== null) this.emit(previous, false);
    if (this.error !== null) return;
    if (this.zlibWritten) this.maybeCompleteOp();
    if (this.busy && this.holdsSlot && this.sliceBytes >= SLICE && this.limiter.waiting > 0) this.yieldSlot();
  };

  private readonly onZlibWritten = (err?: Error | null): void => {
    if (this.error !== null || err) return; // an error arrives through onZlibError too
    this.zlibWritten = true;
    this.maybeCompleteOp();
  };

  private readonly onZlibError = (err: Error): void => {
    this.fail(corrupt(err.message));
  };

  /** The operation is complete once zlib has called back and every output chunk has been handed on. */
  private maybeCompleteOp(): void {
    const zlib = this.zlib;
    if (!this.busy || !this.zlibWritten || zlib === null || zlib.readableLength > 0 || this.error !== null) return;
    this.busy = false;
    this.releaseSlot();
    if (this.opEndsMessage) {
      const last = this.held ?? EMPTY;
      this.held = null;
      this.inMessage = false;
      // §7.2.2 / context takeover: without it the peer starts each message afresh, and so do we
      // (the stream is freed: an idle connection then holds no zlib memory).
      if (this.noContextTakeover) this.releaseZlib();
      this.emit(last, true);
      if (this.error !== null) return;
    }
    this.queue.finish(null, this.opFrames);
    this.drain();
  }

  private emit(data: Buffer, fin: boolean): void {
    const opcode = this.started ? Opcode.Continuation : this.opcode;
    this.started = true;
    this.handler.onFrame(makeFrame(opcode, data, { fin }));
  }
}

/**
 * Inflater as a Transform: Frame values in (unmasked), Frame values out, compressed messages
 * inflated. Object mode on both sides. A reader that stops reading stops the inflation.
 */
export class Inflater extends Transform {
  readonly core: InflaterCore;

  constructor(options: InflaterOptions = {}) {
    super({ objectMode: true });
    this.core = new InflaterCore(options, {
      onFrame: (frame) => {
        if (!this.push(frame)) this.core.pause();
      },
    });
  }

  override _transform(chunk: Frame, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.core.write(chunk, (err) => cb(err ?? undefined));
  }

  override _read(size: number): void {
    this.core.resume();
    super._read(size);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    if (this.core.error === null) this.core.destroy();
    cb(err);
  }
}
