/**
 * MessageFramer: the first outbound stage. Turns the messages an application sends into data
 * frames (RFC 6455 §5.6), cutting each into fragments (§5.4) when asked to.
 *
 *   OutboundMessage --> [MessageFramer] --> Frame (unmasked) --> Masker --> FrameSerializer
 *
 * Payloads are never copied: every frame's payload is a view of the message's bytes (a string is
 * encoded once). A message can also be streamed part by part with `MessageFramerCore.writePart`.
 */
import { Buffer, isUtf8 } from 'node:buffer';
import { Opcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { makeFrame, type Frame, type Message } from '../protocol/frame';
import { Stage, StageOutput } from './stage';

/** The bytes of a message: a string (encoded as UTF-8), a Buffer or any Uint8Array. */
export type OutboundData = string | Buffer | Uint8Array;

/**
 * What an application may send: a string is a text message, a Buffer or Uint8Array a binary one;
 * the object form says which explicitly (`binary` defaults to `typeof data !== 'string'`).
 */
export type OutboundMessage = OutboundData | { data: OutboundData; binary?: boolean };

/** A Buffer view of `data` (no copy for a Uint8Array), or null when `data` is not message bytes. */
function toBuffer(data: unknown): Buffer | null {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/**
 * Normalises an OutboundMessage into a Message. Returns a WebSocketError WS_ERR_INVALID_ARGUMENT
 * (never throws) when `value` is not an OutboundMessage, or when bytes declared as text are not
 * valid UTF-8 (RFC 6455 §5.6: a text frame's payload "is text data encoded as UTF-8"; a peer
 * would fail the connection with 1007). A string always encodes to valid UTF-8.
 */
export function toMessage(value: OutboundMessage): Message | WebSocketError {
  if (typeof value === 'string') return { binary: false, data: Buffer.from(value, 'utf8') };
  const direct = toBuffer(value);
  if (direct !== null) return { binary: true, data: direct };
  if (typeof value !== 'object' || value === null) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `cannot send a ${value === null ? 'null' : typeof value}`);
  }
  const { data: raw, binary: flag } = value as { data?: unknown; binary?: unknown };
  const data = toBuffer(raw);
  if (data === null) return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'message data must be a string, Buffer or Uint8Array');
  if (flag !== undefined && typeof flag !== 'boolean') {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'message binary flag must be a boolean');
  }
  const binary = flag ?? typeof raw !== 'string';
  if (!binary && typeof raw !== 'string' && !isUtf8(data)) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'text message data is not valid UTF-8');
  }
  return { binary, data };
}

/** Options of MessageFramerCore and MessageFramer. */
export interface MessageFramerOptions {
  /**
   * Largest payload of one frame, in bytes: a longer message is cut into a Text/Binary frame
   * followed by Continuation frames, FIN on the last (RFC 6455 §5.4). Default 0: never fragment.
   * Does not apply to parts written with `writePart` (each part is one frame).
   */
  fragmentSize?: number;
}

/** Where MessageFramerCore sends its output. */
export interface MessageFramerHandler {
  /** One data frame (whole, unmasked), in order. */
  onFrame(frame: Frame): void;
}

/** Whether a message written part by part is under way, and of which type (one field, not two). */
enum FramerState {
  /** Between messages. */
  Idle,
  /** A streamed text message has been started with `writePart` and not yet ended with `fin`. */
  StreamingText,
  /** The same for a binary message. */
  StreamingBinary,
}

/** The I/O-free core of MessageFramer. */
export class MessageFramerCore {
  /** The first error met; once set, all further input is ignored. */
  error: WebSocketError | null = null;
  private readonly fragmentSize: number;
  private readonly handler: MessageFramerHandler;
  private state = FramerState.Idle;

  /** Throws a WebSocketError WS_ERR_INVALID_ARGUMENT when `fragmentSize` is not a non-negative integer. */
  constructor(options: MessageFramerOptions, handler: MessageFramerHandler) {
    const fragmentSize = options.fragmentSize ?? 0;
    if (!Number.isSafeInteger(fragmentSize) || fragmentSize < 0) {
      throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `fragmentSize must be a non-negative integer, got ${fragmentSize}`);
    }
    this.fragmentSize = fragmentSize;
    this.handler = handler;
  }

  /** True while a message streamed with `writePart` has not been ended. */
  get streaming(): boolean {
    return this.state !== FramerState.Idle;
  }

  /**
   * Frames one whole message. Fails with WS_ERR_INVALID_ARGUMENT for a value that is not an
   * OutboundMessage and with WS_ERR_INVALID_STATE while a streamed message is under way (its
   * frames and this message's would interleave, which RFC 6455 §5.4 forbids).
   */
  write(message: OutboundMessage): WebSocketError | null {
    if (this.error !== null) return this.error;
    if (this.state !== FramerState.Idle) {
      this.fail(new WebSocketError('WS_ERR_INVALID_STATE', 'a streamed message is not finished'));
      return this.error;
    }
    const normal = toMessage(message);
    if (normal instanceof WebSocketError) {
      this.fail(normal);
      return this.error;
    }
    const data = normal.data;
    const opcode = normal.binary ? Opcode.Binary : Opcode.Text;
    const size = this.fragmentSize;
    if (size === 0 || data.length <= size) {
      this.handler.onFrame(makeFrame(opcode, data));
      return this.error;
    }
    // RFC 6455 §5.4: "a single frame with the FIN bit clear and an opcode other than 0, followed
    // by zero or more frames with the FIN bit clear and the opcode set to 0, and terminated by a
    // single frame with the FIN bit set and an opcode of 0."
    const total = data.length;
    for (let start = 0; start < total && this.error === null; start += size) {
      const end = Math.min(start + size, total);
      this.handler.onFrame(
        makeFrame(start === 0 ? opcode : Opcode.Continuation, data.subarray(start, end), { fin: end === total }),
      );
    }
    return this.error;
  }

  /**
   * Sends one part of a message being streamed, as one frame: the first part opens the message
   * (Text or Binary per `binary`), later parts are Continuation frames, and the part with `fin`
   * ends it. A later part's `binary` must match the first's (else WS_ERR_INVALID_ARGUMENT).
   * Text parts are not checked for UTF-8 here (a part may end inside a character).
   */
  writePart(data: Buffer, binary: boolean, fin: boolean): WebSocketError | null {
    if (this.error !== null) return this.error;
    const payload = toBuffer(data);
    if (payload === null || typeof data === 'string') {
      this.fail(new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'a message part must be a Buffer or Uint8Array'));
      return this.error;
    }
    const streaming = binary ? FramerState.StreamingBinary : FramerState.StreamingText;
    let opcode: Opcode;
    if (this.state === FramerState.Idle) {
      opcode = binary ? Opcode.Binary : Opcode.Text;
    } else if (this.state !== streaming) {
      this.fail(new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'a message part changes the message type'));
      return this.error;
    } else {
      opcode = Opcode.Continuation;
    }
    this.state = fin ? FramerState.Idle : streaming;
    this.handler.onFrame(makeFrame(opcode, payload, { fin }));
    return this.error;
  }

  /** Records `err` as the error (if none is set yet); every later input is ignored. */
  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
  }
}

/** A MessageFramer's stream options: shared by every instance (readable-stream only reads them). */
const FRAMER_STREAM_OPTIONS = Object.freeze({ writableObjectMode: true, readableObjectMode: true });

/** Stream stage: OutboundMessage values in, Frame values out (object mode on both sides). */
export class MessageFramer extends Stage {
  readonly core: MessageFramerCore;

  constructor(options: MessageFramerOptions = {}) {
    super(FRAMER_STREAM_OPTIONS);
    this.core = new MessageFramerCore(options, new StageOutput(this));
  }

  protected override step(chunk: OutboundMessage): WebSocketError | null {
    return this.core.write(chunk);
  }
}
