/**
 * The values that flow between stages: frames (or pieces of a frame's payload) and messages.
 *
 * A `Frame` may carry its whole payload or one piece of it. A stage that streams (see
 * FrameSplitter's `streaming` option) hands on a large data frame as several `Frame` values
 * that share the header fields: `offset` says where the piece starts in the frame's payload and
 * `length` is the length of the whole payload. A frame carried whole has `offset === 0` and
 * `payload.length === length`. Control frames are always carried whole.
 */
import { Buffer } from 'node:buffer';
import { Opcode } from './constants';

export interface Frame {
  /** FIN: this frame ends its message. */
  readonly fin: boolean;
  readonly rsv1: boolean;
  readonly rsv2: boolean;
  readonly rsv3: boolean;
  readonly opcode: Opcode;
  /** The 4-byte masking key when `payload` is masked with it, null when `payload` is plain. */
  readonly mask: Buffer | null;
  /** The payload, or the piece of it that starts at `offset`. */
  readonly payload: Buffer;
  /** Length of the frame's whole payload, as declared in its header. */
  readonly length: number;
  /** Offset of `payload` within the frame's whole payload. */
  readonly offset: number;
}

/** A data message as delivered whole: text (`binary === false`, valid UTF-8) or binary. */
export interface Message {
  readonly binary: boolean;
  readonly data: Buffer;
}

export interface FrameFields {
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  mask?: Buffer | null;
  length?: number;
  offset?: number;
}

/**
 * Builds a Frame with every field set, in one fixed order (one hidden class for every frame).
 * Defaults: fin true, RSV bits clear, no mask, the payload being the whole frame.
 */
export function makeFrame(opcode: Opcode, payload: Buffer, fields: FrameFields = {}): Frame {
  return {
    fin: fields.fin ?? true,
    rsv1: fields.rsv1 ?? false,
    rsv2: fields.rsv2 ?? false,
    rsv3: fields.rsv3 ?? false,
    opcode,
    mask: fields.mask ?? null,
    payload,
    length: fields.length ?? payload.length,
    offset: fields.offset ?? 0,
  };
}

/** A copy of `frame` with another payload piece and mask (all header fields kept). */
export function withPayload(frame: Frame, payload: Buffer, mask: Buffer | null, offset = frame.offset): Frame {
  return {
    fin: frame.fin,
    rsv1: frame.rsv1,
    rsv2: frame.rsv2,
    rsv3: frame.rsv3,
    opcode: frame.opcode,
    mask,
    payload,
    length: frame.length,
    offset,
  };
}

/** True when `frame` starts its frame's payload (it carries the header). */
export function isFirstPiece(frame: Frame): boolean {
  return frame.offset === 0;
}

/** True when `frame` ends its frame's payload. */
export function isLastPiece(frame: Frame): boolean {
  return frame.offset + frame.payload.length === frame.length;
}

/** A value on the inbound side after FragmentAssembler: a data message or a control frame. */
export type Inbound = Message | Frame;

/** True for a Message, false for a Frame. */
export function isMessage(value: Inbound): value is Message {
  return (value as Message).data !== undefined;
}
