/**
 * FrameSerializer: the last outbound stage. Writes each frame as bytes in the base framing
 * protocol of RFC 6455 §5.2:
 *
 *    0                   1                   2                   3
 *   +-+-+-+-+-------+-+-------------+-------------------------------+
 *   |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *   |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *   |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *   | |1|2|3|       |K|             |                               |
 *   +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *   |     Extended payload length continued, if payload len == 127  |
 *   + - - - - - - - - - - - - - - - +-------------------------------+
 *   |                               |Masking-key, if MASK set to 1  |
 *   +-------------------------------+-------------------------------+
 *   | Masking-key (continued)       |          Payload Data         |
 *   +-------------------------------- - - - - - - - - - - - - - - - +
 *
 *   Frame (payload already masked when `mask` is set) --> [FrameSerializer] --> bytes --> socket
 *
 * The serializer never masks: a frame with a `mask` is expected to carry its payload masked
 * with it already (the Masker's job); the key is only written into the header.
 *
 * Nothing follows a close frame (RFC 6455 §5.5.1: "After sending a Close frame, the application
 * MUST NOT send any more data frames"): frames written after one are dropped and counted in
 * `droppedAfterClose`. In a hand-composed pipeline they are the replies still on their way when
 * the close went out (see ControlFrameResponder's closeAnswer).
 */
import { Buffer } from 'node:buffer';
import { isControlOpcode, isKnownOpcode, MAX_CONTROL_PAYLOAD, Opcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { isFirstPiece, isLastPiece, type Frame } from '../protocol/frame';
import { Stage, StageOutput } from './stage';

/** Payloads up to this many bytes are copied after their header into one chunk (one write). */
export const COALESCE_LIMIT = 1024;

/** RFC 6455 §5.2: the 7-bit length field holds lengths 0-125 itself... */
const MAX_7BIT_LENGTH = 125;
/** ...126 means "the following 2 bytes interpreted as a 16-bit unsigned integer"... */
const LENGTH_16BIT = 126;
const MAX_16BIT_LENGTH = 0xffff;
/** ...and 127 "the following 8 bytes interpreted as a 64-bit unsigned integer". */
const LENGTH_64BIT = 127;
const TWO_POW_32 = 2 ** 32;
const MASK_KEY_LENGTH = 4;

const FIN_BIT = 0x80;
const RSV1_BIT = 0x40;
const RSV2_BIT = 0x20;
const RSV3_BIT = 0x10;
const MASK_BIT = 0x80;

/** Size in bytes of `frame`'s header: 2, 4 or 10, plus 4 when it carries a masking key. */
export function headerSize(frame: Frame): number {
  const length = frame.length;
  const base = length <= MAX_7BIT_LENGTH ? 2 : length <= MAX_16BIT_LENGTH ? 4 : 10;
  return frame.mask === null ? base : base + MASK_KEY_LENGTH;
}

/**
 * Writes `frame`'s header into `target` at `at` (headerSize(frame) bytes, every one of them
 * written) and returns the offset just past it. The length is the whole frame's (`frame.length`),
 * in the minimal form §5.2 requires ("the minimal number of bytes MUST be used"). Expects a frame
 * that checkFrame accepts.
 */
export function writeHeader(frame: Frame, target: Buffer, at: number): number {
  const length = frame.length;
  target[at] =
    (frame.fin ? FIN_BIT : 0) |
    (frame.rsv1 ? RSV1_BIT : 0) |
    (frame.rsv2 ? RSV2_BIT : 0) |
    (frame.rsv3 ? RSV3_BIT : 0) |
    frame.opcode;
  const maskBit = frame.mask === null ? 0 : MASK_BIT;
  let i = at + 2;
  if (length <= MAX_7BIT_LENGTH) {
    target[at + 1] = maskBit | length;
  } else if (length <= MAX_16BIT_LENGTH) {
    target[at + 1] = maskBit | LENGTH_16BIT;
    target.writeUInt16BE(length, i);
    i += 2;
  } else {
    // "the most significant bit MUST be 0": lengths are safe integers (< 2^53), so it is.
    target[at + 1] = maskBit | LENGTH_64BIT;
    target.writeUInt32BE(Math.floor(length / TWO_POW_32), i);
    target.writeUInt32BE(length % TWO_POW_32, i + 4);
    i += 8;
  }
  if (frame.mask !== null) {
    frame.mask.copy(target, i, 0, MASK_KEY_LENGTH);
    i += MASK_KEY_LENGTH;
  }
  return i;
}

/**
 * Encodes `frame`'s header (RFC 6455 §5.2): FIN/RSV/opcode byte, MASK bit and 7-, 16- or 64-bit
 * length of the whole frame (`frame.length`, minimal form), then the masking key if any. Pure;
 * expects a frame that checkFrame accepts.
 */
export function encodeHeader(frame: Frame): Buffer {
  const header = Buffer.allocUnsafe(headerSize(frame));
  writeHeader(frame, header, 0);
  return header;
}

/**
 * Why `frame` cannot be sent, or null when it can: a reserved opcode, a length that is not a safe
 * non-negative integer, a piece out of its frame's bounds, a mask that is not 4 bytes, or a
 * control frame that is fragmented or longer than 125 bytes (RFC 6455 §5.5: "All control frames
 * MUST have a payload length of 125 bytes or less and MUST NOT be fragmented").
 */
export function checkFrame(frame: Frame): WebSocketError | null {
  if (!isKnownOpcode(frame.opcode)) return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `reserved opcode ${frame.opcode}`);
  if (!Number.isSafeInteger(frame.length) || frame.length < 0) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `invalid payload length ${frame.length}`);
  }
  if (!Number.isSafeInteger(frame.offset) || frame.offset < 0 || frame.offset + frame.payload.length > frame.length) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'payload piece outside its frame');
  }
  if (frame.mask !== null && frame.mask.length !== MASK_KEY_LENGTH) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'masking key must be 4 bytes');
  }
  if (isControlOpcode(frame.opcode) && (!frame.fin || frame.length > MAX_CONTROL_PAYLOAD)) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'control frame fragmented or over 125 bytes');
  }
  return null;
}

/** Options of FrameSerializerCore and FrameSerializer: none yet (kept for the core/wrapper contract). */
export type FrameSerializerOptions = Record<string, never>;

/** Where FrameSerializerCore sends its output. */
export interface FrameSerializerHandler {
  /** Bytes to send, in order. A chunk may be the caller's payload buffer itself (not copied). */
  onData(chunk: Buffer): void;
}

/** Where the serializer is within the stream of frame pieces. */
enum SerializerState {
  /** The next input starts a frame (offset 0): its header is due. */
  FrameStart,
  /** A frame's header is written and `nextOffset` is where its next piece must start. */
  InFrame,
  /** A close frame went out: later frames are dropped. */
  Closed,
}

/** The I/O-free core of FrameSerializer. */
export class FrameSerializerCore {
  /** The first error met; once set, all further input is ignored. */
  error: WebSocketError | null = null;
  /** Frames (or pieces) written after the close frame, and dropped. */
  droppedAfterClose = 0;
  private readonly handler: FrameSerializerHandler;
  private state = SerializerState.FrameStart;
  private nextOffset = 0;

  constructor(_options: FrameSerializerOptions, handler: FrameSerializerHandler) {
    this.handler = handler;
  }

  /**
   * Serializes one frame or frame piece. A first piece (offset 0) is sent as header plus
   * payload (one chunk when the payload is at most COALESCE_LIMIT bytes, else two, the payload
   * not copied); a later piece as its payload bytes only. Fails with WS_ERR_INVALID_ARGUMENT for
   * a frame checkFrame rejects, and WS_ERR_INVALID_STATE when a piece does not continue the
   * frame under way (bytes of two frames must never interleave).
   */
  write(frame: Frame): WebSocketError | null {
    if (this.error !== null) return this.error;
    if (this.state === SerializerState.Closed) {
      this.droppedAfterClose++;
      return null;
    }
    const invalid = checkFrame(frame);
    if (invalid !== null) {
      this.fail(invalid);
      return this.error;
    }
    const expected = this.state === SerializerState.FrameStart ? 0 : this.nextOffset;
    if (frame.offset !== expected) {
      this.fail(new WebSocketError('WS_ERR_INVALID_STATE', `frame piece at offset ${frame.offset}, expected ${expected}`));
      return this.error;
    }
    if (isLastPiece(frame)) {
      this.state = frame.opcode === Opcode.Close ? SerializerState.Closed : SerializerState.FrameStart;
    } else {
      this.state = SerializerState.InFrame;
      this.nextOffset = frame.offset + frame.payload.length;
    }
    const payload = frame.payload;
    if (!isFirstPiece(frame)) {
      if (payload.length > 0) this.handler.onData(payload);
      return this.error;
    }
    if (payload.length <= COALESCE_LIMIT) {
      const size = headerSize(frame);
      const chunk = Buffer.allocUnsafe(size + payload.length);
      writeHeader(frame, chunk, 0);
      // set(), not copy(): Buffer's copy() checks its arguments, then calls set() (10-20 ns a frame).
      chunk.set(payload, size);
      this.handler.onData(chunk);
      return this.error;
    }
    this.handler.onData(encodeHeader(frame));
    if (this.error === null) this.handler.onData(payload);
    return this.error;
  }

  /** Records `err` as the error (if none is set yet); every later input is ignored. */
  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
  }
}

/** A FrameSerializer's stream options: shared by every instance (readable-stream only reads them). */
const SERIALIZER_STREAM_OPTIONS = Object.freeze({ writableObjectMode: true });

/** Stream stage: Frame values in (object mode), bytes out. */
export class FrameSerializer extends Stage {
  readonly core: FrameSerializerCore;

  constructor(options: FrameSerializerOptions = {}) {
    super(SERIALIZER_STREAM_OPTIONS);
    this.core = new FrameSerializerCore(options, new StageOutput(this));
  }

  protected override step(chunk: Frame): WebSocketError | null {
    return this.core.write(chunk);
  }
}
