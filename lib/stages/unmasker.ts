/**
 * Unmasker: checks that each inbound frame is masked as its sender's role requires (RFC 6455
 * §5.1) and unmasks its payload in place (§5.3). Frames in, frames with `mask === null` out.
 * Pieces of one frame (see FrameSplitter's `streaming` option) unmask correctly on their own.
 */
import { WebSocketError } from '../protocol/errors';
import { isControlOpcode } from '../protocol/constants';
import { Frame, withPayload } from '../protocol/frame';
import { applyMask } from '../protocol/mask';
import { Stage, StageOutput } from './stage';

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

/**
 * Checks one frame (or piece) against the masking its sender's role requires and, for frames
 * from a client, unmasks it in place: a plain function, so that the fused receiver needs no
 * unmasker object per connection. `server`: we are the server (the frame comes from a client).
 * `keepDataMasked`: see UnmaskerOptions. Returns the frame to hand on (`mask === null` once
 * unmasked), or null when its masking is wrong for the role; maskingError(server) is the error.
 */
export function unmaskFrame(frame: Frame, server: boolean, keepDataMasked: boolean): Frame | null {
  const mask = frame.mask;
  // §5.1: "A client MUST close a connection if it detects a masked frame."
  if (!server) return mask === null ? frame : null;
  // §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
  if (mask === null) return null;
  if (keepDataMasked && !isControlOpcode(frame.opcode)) return frame;
  applyMask(frame.payload, mask, frame.offset);
  return withPayload(frame, frame.payload, null);
}

/** The error for a frame unmaskFrame refused: unmasked from a client, or masked from a server. */
export function maskingError(server: boolean): WebSocketError {
  return new WebSocketError(server ? 'WS_ERR_EXPECTED_MASK' : 'WS_ERR_UNEXPECTED_MASK');
}

/** The I/O-free unmasker (for the stream stage and the proxy; the fused receiver calls unmaskFrame). */
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
    const out = unmaskFrame(frame, this.server, this.keepDataMasked);
    if (out === null) {
      this.fail(maskingError(this.server));
      return this.error;
    }
    this.handler.onFrame(out);
    return this.error;
  }
}

/** An Unmasker's stream options when it is given none: shared (readable-stream only reads them). */
const UNMASKER_STREAM_OPTIONS = Object.freeze({ objectMode: true });

/** The stream stage: frames in, unmasked frames out (object mode on both sides). */
export class Unmasker extends Stage {
  readonly core: UnmaskerCore;

  constructor(options: UnmaskerOptions, streamOptions?: { highWaterMark?: number }) {
    super(streamOptions === undefined ? UNMASKER_STREAM_OPTIONS : { ...streamOptions, objectMode: true });
    this.core = new UnmaskerCore(options, new StageOutput(this));
  }

  protected override step(frame: Frame): WebSocketError | null {
    return this.core.write(frame);
  }
}
