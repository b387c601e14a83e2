/**
 * Unmasker: checks that each inbound frame is masked as its sender's role requires (RFC 6455
 * §5.1) and unmasks its payload in place (§5.3). Frames in, frames with `mask === null` out.
 * Pieces of one frame (see FrameSplitter's `streaming` option) unmask correctly on their own.
 */
import { type Readable, Transform } from 'readable-stream';
import { WebSocketError } from './errors';
import { isControlOpcode } from './constants';
import { Frame, withPayload } from './frame';
import { applyMask } from './mask';

/** Options of UnmaskerCore and Unmasker. */
export interface UnmaskerOptions {
  /**
   * Which end of the connection we are. A server requires every frame from its client to be
   * masked; a client requires every frame from its server to be unmasked. No default.
   */
  role: 'server' | 'client';
  /**
   * Check data frames but hand them on still masked (their `mask` set), for a next stage that
   * unmasks as it copies (FragmentAssemblerCore joins a message's pieces and unmasks them in the
   * same pass). Control frames are always unmasked. Default false.
   */
  keepDataMasked?: boolean;
}

/** Where UnmaskerCore sends the unmasked frames. */
export interface UnmaskerHandler {
  onFrame(frame: Frame): void;
}

/** The I/O-free unmasker. */
export class UnmaskerCore {
  /** The first error met, or null. Once set, all further input is ignored. */
  error: WebSocketError | null = null;

  private readonly handler: UnmaskerHandler;
  private readonly server: boolean;
  private readonly keepDataMasked: boolean;

  constructor(options: UnmaskerOptions, handler: UnmaskerHandler) {
    this.handler = handler;
    this.server = options.role === 'server';
    this.keepDataMasked = options.keepDataMasked === true;
  }

  /** Sets `error` if not yet set. */
  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
  }

  /** Checks and unmasks one frame (or piece), in place, and hands it on; returns `this.error`. */
  write(frame: Frame): WebSocketError | null {
    if (this.error !== null) return this.error;
    const mask = frame.mask;
    if (this.server) {
      // §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
      if (mask === null) {
        this.fail(new WebSocketError('WS_ERR_EXPECTED_MASK'));
        return this.error;
      }
      if (this.keepDataMasked && !isControlOpcode(frame.opcode)) {
        this.handler.onFrame(frame);
        return this.error;
      }
      applyMask(frame.payload, mask, frame.offset);
      this.handler.onFrame(withPayload(frame, frame.payload, null));
    } else {
      // §5.1: "A client MUST close a connection if it detects a masked frame."
      if (mask !== null) {
        this.fail(new WebSocketError('WS_ERR_UNEXPECTED_MASK'));
        return this.error;
      }
      this.handler.onFrame(frame);
    }
    return this.error;
  }
}

/** An Unmasker's stream options when it is given none: shared (readable-stream only reads them). */
const UNMASKER_STREAM_OPTIONS = Object.freeze({ objectMode: true });

/** Pushes the core's frames to the stage's readable side (a prototype method, not a closure per stage). */
class FramesToStream implements UnmaskerHandler {
  constructor(private readonly stream: Readable) {}

  onFrame(frame: Frame): void {
    this.stream.push(frame);
  }
}

/** The stream stage: frames in, unmasked frames out (object mode on both sides). */
export class Unmasker extends Transform {
  readonly core: UnmaskerCore;

  constructor(options: UnmaskerOptions, streamOptions?: { highWaterMark?: number }) {
    super(streamOptions === undefined ? UNMASKER_STREAM_OPTIONS : { ...streamOptions, objectMode: true });
    this.core = new UnmaskerCore(options, new FramesToStream(this));
  }

  override _transform(frame: Frame, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    cb(this.core.write(frame) ?? undefined);
  }
}
