/**
 * Masker: the outbound stage a client puts between MessageFramer and FrameSerializer. RFC 6455
 * §5.3: "The masking key is a 32-bit value chosen at random by the client. When preparing a
 * masked frame, the client MUST pick a fresh masking key from the set of allowed 32-bit values."
 * §5.1: "a client MUST mask all frames that it sends to the server".
 *
 *   Frame (plain) --> [Masker] --> Frame (masked, with its key) --> FrameSerializer
 *
 * The masked payload is always a new buffer: the caller's payload may be shared (the same
 * message broadcast to several connections), so it is never modified.
 */
import { Buffer } from 'node:buffer';
import { WebSocketError } from '../protocol/errors';
import { applyMask, randomMask, type MaskGenerator, type MaskSlots } from '../protocol/mask';
import { isFirstPiece, isLastPiece, withPayload, type Frame } from '../protocol/frame';
import { COALESCE_LIMIT } from './frame-serializer';
import { Stage, StageOutput } from './stage';

/** RFC 6455 §5.2: "Masking-key: 0 or 4 bytes". */
const MASK_KEY_LENGTH = 4;

/** Options of MaskerCore and Masker. */
export interface MaskerOptions {
  /**
   * Produces a fresh 4-byte key for every frame. Default: randomMask from lib/protocol/mask.ts (pooled
   * crypto.randomFillSync, as RFC 6455 §10.3 requires). Inject a fixed key only in tests.
   */
  generateMask?: MaskGenerator;
  /**
   * @internal Mask payloads of more than COALESCE_LIMIT bytes into these slots (lib/protocol/mask.ts), cut into
   * slot-sized pieces, while slots are free. Only for a caller that releases every slot it gets
   * back once written (the fused Sender); a piped Masker never uses them. Default null.
   */
  slots?: MaskSlots | null;
}

/** Where MaskerCore sends its output. */
export interface MaskerHandler {
  /** One frame (or frame piece), masked, in order. */
  onFrame(frame: Frame): void;
}

/** Where the masker is within the stream of frame pieces. */
enum MaskerState {
  /** The next input starts a frame (offset 0). */
  FrameStart,
  /** A frame whose first piece was masked with `key` has more pieces to come. */
  InFrame,
}

/** The I/O-free core of Masker. */
export class MaskerCore {
  /** The first error met; once set, all further input is ignored. */
  error: WebSocketError | null = null;
  private readonly generateMask: MaskGenerator;
  private readonly handler: MaskerHandler;
  private readonly slots: MaskSlots | null;
  private state = MaskerState.FrameStart;
  /** The key of the frame under way (MaskerState.InFrame), reused for its later pieces. */
  private key: Buffer | null = null;
  /** Where the next piece of the frame under way must start. */
  private nextOffset = 0;

  constructor(options: MaskerOptions, handler: MaskerHandler) {
    this.generateMask = options.generateMask ?? randomMask;
    this.slots = options.slots ?? null;
    this.handler = handler;
  }

  /**
   * Masks one frame or frame piece. A first piece gets a fresh key; later pieces of the same
   * frame reuse it and are masked at their offset. A frame (or piece) that already carries a mask
   * passes unchanged. Fails with WS_ERR_INVALID_STATE for a piece that does not continue the frame
   * under way, and WS_ERR_INVALID_ARGUMENT for a generated key that is not 4 bytes.
   */
  write(frame: Frame): WebSocketError | null {
    if (this.error !== null) return this.error;
    let key: Buffer;
    if (this.state === MaskerState.FrameStart) {
      if (!isFirstPiece(frame)) {
        this.fail(new WebSocketError('WS_ERR_INVALID_STATE', `frame piece at offset ${frame.offset} without its start`));
        return this.error;
      }
      if (frame.mask !== null) {
        key = frame.mask;
      } else {
        key = this.generateMask();
        if (key.length !== MASK_KEY_LENGTH) {
          this.fail(new WebSocketError('WS_ERR_INVALID_ARGUMENT', `generateMask returned ${key.length} bytes, not 4`));
          return this.error;
        }
      }
    } else {
      if (frame.offset !== this.nextOffset) {
        this.fail(new WebSocketError('WS_ERR_INVALID_STATE', `frame piece at offset ${frame.offset}, expected ${this.nextOffset}`));
        return this.error;
      }
      key = this.key!;
    }
    if (isLastPiece(frame)) {
      this.state = MaskerState.FrameStart;
      this.key = null;
    } else {
      this.state = MaskerState.InFrame;
      this.key = key;
      this.nextOffset = frame.offset + frame.payload.length;
    }
    if (frame.mask !== null) {
      // Already masked (e.g. a frame relayed as received): passes unchanged.
      this.handler.onFrame(frame);
      return this.error;
    }
    const source = frame.payload;
    // Pieces of a larger payload are never coalesced by the serializer, so each slot handed on
    // reaches the sink as it is (and is released there).
    const done = this.slots !== null && source.length > COALESCE_LIMIT ? this.maskIntoSlots(frame, key, this.slots) : 0;
    if (done > 0 && done === source.length) return this.error;
    const rest = done === 0 ? source : source.subarray(done);
    const masked = Buffer.allocUnsafe(rest.length);
    applyMask(rest, key, frame.offset + done, masked); // every byte of `masked` written
    this.handler.onFrame(withPayload(frame, masked, key, frame.offset + done));
    return this.error;
  }

  /** Masks `frame`'s payload into slots, a piece per slot, while slots are free; returns the bytes done. */
  private maskIntoSlots(frame: Frame, key: Buffer, slots: MaskSlots): number {
    const source = frame.payload;
    let done = 0;
    while (done < source.length) {
      const slot = slots.take(source.byteOffset + done);
      if (slot === null) break;
      const n = Math.min(slot.length, source.length - done);
      const masked = slot.subarray(0, n);
      slots.mask(source.subarray(done, done + n), key, frame.offset + done, masked);
      this.handler.onFrame(withPayload(frame, masked, key, frame.offset + done));
      done += n;
    }
    return done;
  }

  /** Records `err` as the error (if none is set yet); every later input is ignored. */
  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
  }
}

/** A Masker's stream options: shared by every instance (readable-stream only reads them). */
const MASKER_STREAM_OPTIONS = Object.freeze({ writableObjectMode: true, readableObjectMode: true });

/** Stream stage: Frame values in, masked Frame values out (object mode on both sides). */
export class Masker extends Stage {
  readonly core: MaskerCore;

  constructor(options: MaskerOptions = {}) {
    super(MASKER_STREAM_OPTIONS);
    this.core = new MaskerCore(options, new StageOutput(this));
  }

  protected override step(chunk: Frame): WebSocketError | null {
    return this.core.write(chunk);
  }
}
