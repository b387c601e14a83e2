/**
 * FragmentAssembler: frames (or pieces of frames) in, whole data messages and control frames
 * out, in order (RFC 6455 §5.4).
 *
 * Pieces of a message are kept in a list and joined once, at the end of the message, with the
 * total already known; a message made of one piece is handed on without a copy. Text is
 * validated piece by piece as it arrives, so invalid UTF-8 fails the message at once.
 *
 * What fragments cost: a piece under 1 KiB is copied into a shared buffer (the coalescing tail,
 * 4 to 64 KiB) instead of being kept as a view of its own, so a message of tiny fragments holds
 * about its bytes, not an object per fragment. And every frame of a message after its first
 * counts `frameOverhead` bytes (default 256) against maxMessageSize beside its payload: a flood
 * of empty or 1-byte fragments reaches the limit (1009) after a bounded number of frames,
 * without a cap on the frame count that would refuse a legitimate message of many small ones.
 *
 * A data frame may come still masked (its `mask` set: UnmaskerCore's keepDataMasked): a piece
 * that is kept for a join is unmasked by the join itself (one pass instead of unmasking in place
 * and then copying); anything handed on or checked as it is gets unmasked in place first.
 */
import { Buffer } from 'node:buffer';
import { Defaults, Opcode, isControlOpcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { SharedSettings } from '../protocol/shared-settings';
import { type Frame, type Message, isLastPiece } from '../protocol/frame';
import { Utf8Validator, isValidUtf8 } from '../protocol/utf8';
import { applyMask } from '../protocol/mask';
import { Stage } from './stage';

/** Options of FragmentAssemblerCore and FragmentAssembler. */
export interface FragmentAssemblerOptions {
  /** Largest message, in bytes, summed over its frames' declared lengths. Default 100 MiB (Defaults.maxMessageSize). */
  maxMessageSize?: number;
  /**
   * Most frames one message may be made of, counting every frame, empty ones included
   * (WS_ERR_TOO_MANY_FRAGMENTS, 1009, beyond). Default Infinity: frameOverhead already bounds a
   * flood of tiny or empty fragments; set it to refuse messages of many frames outright.
   */
  maxFragments?: number;
  /**
   * Bytes each frame of a message after its first counts against maxMessageSize beside its
   * payload (WS_ERR_TOO_MANY_FRAGMENTS, 1009, when the payload alone fits but the count does
   * not). Default 256 (Defaults.frameOverhead).
   */
  frameOverhead?: number;
  /** Skip UTF-8 validation of text messages (when the application checks, or does not care). Default false. */
  skipUtf8Validation?: boolean;
  /**
   * Hand on each message as it arrives, as MessagePiece values (onMessagePiece), instead of
   * joining it. Nothing is kept, so maxMessageSize and maxFragments do not apply; the streamed
   * message's size is limited by maxStreamedMessageSize. Text is still UTF-8-checked per piece,
   * before it is handed on. Default false.
   */
  streaming?: boolean;
  /** Largest message in streaming mode, in bytes. Default Infinity (each frame is still capped by maxPayload). */
  maxStreamedMessageSize?: number;
}

/** A piece of a message being streamed: `first` opens it (its kind known), `last` ends it. */
export interface MessagePiece {
  readonly binary: boolean;
  readonly data: Buffer;
  readonly first: boolean;
  readonly last: boolean;
}

/** Where FragmentAssemblerCore sends its outputs. */
export interface FragmentAssemblerHandler {
  /** A whole data message. */
  onMessage(message: Message): void;
  /** A control frame (Close, Ping or Pong), as soon as it arrives. */
  onControl(frame: Frame): void;
  /** Streaming mode only: a piece of the open message. */
  onMessagePiece?(piece: MessagePiece): void;
}

const EMPTY = Buffer.alloc(0);

/**
 * RFC 6455 §5.4, the order of a message's frames: a fragmented message is "a single frame with
 * the FIN bit clear and an opcode other than 0, followed by zero or more frames with the FIN bit
 * clear and the opcode set to 0, and terminated by a single frame with the FIN bit set and an
 * opcode of 0", and "the fragments of one message MUST NOT be interleaved between the fragments
 * of another message". The error for a data frame of `opcode` when a message is `open` (or not),
 * or null. Used by the assembler and by the proxy, which relays frames without assembling them.
 */
export function fragmentOrderError(opcode: number, open: boolean): WebSocketError | null {
  if (opcode === Opcode.Continuation) return open ? null : new WebSocketError('WS_ERR_UNEXPECTED_CONTINUATION');
  return open ? new WebSocketError('WS_ERR_EXPECTED_CONTINUATION') : null;
}

/** The error for a message whose frames, counted at `overhead` bytes each after the first, exceed `limit`. */
export function fragmentsOverLimit(frames: number, overhead: number, limit: number): WebSocketError {
  return new WebSocketError('WS_ERR_TOO_MANY_FRAGMENTS', `${frames} frames, ${overhead} bytes each beside their payload, exceed ${limit} bytes`);
}

/** An assembler's limits and mode, shared by every assembler made with the same ones (never written to). */
type AssemblerConfig = Readonly<{
  maxMessageSize: number;
  maxFragments: number;
  frameOverhead: number;
  validateUtf8: boolean;
  streaming: boolean;
}>;

const configs = new SharedSettings<AssemblerConfig>();

function configFor(options: FragmentAssemblerOptions): AssemblerConfig {
  const streaming = options.streaming === true;
  return configs.share({
    maxMessageSize: streaming
      ? (options.maxStreamedMessageSize ?? Number.POSITIVE_INFINITY)
      : (options.maxMessageSize ?? Defaults.maxMessageSize),
    maxFragments: streaming ? Number.POSITIVE_INFINITY : (options.maxFragments ?? Defaults.maxFragments),
    frameOverhead: options.frameOverhead ?? Defaults.frameOverhead,
    validateUtf8: options.skipUtf8Validation !== true,
    streaming,
  });
}

/**
 * The kept pieces of a message that takes more than one (made per such message, dropped at its
 * end): three entries a piece in one array, its payload, its mask key (null for a plain piece)
 * and its offset in its frame, so that a message of two pieces costs one small array. Small
 * pieces are copied into `tail`, which is itself one entry (sealed to its used length when a
 * later piece or the join comes after it).
 */
interface Parts {
  readonly entries: Array<Buffer | null | number>;
  bytes: number;
  /** The coalescing buffer being filled (its entry is at `tailAt`), or null. */
  tail: Buffer | null;
  tailAt: number;
  tailUsed: number;
}

/** Pieces smaller than this are copied into the coalescing tail instead of kept as views. */
const COALESCE_BELOW = 1024;
/** Sizes of a coalescing tail: it grows with the message, from the smallest to the largest. */
const MIN_TAIL = 4 * 1024;
const MAX_TAIL = 64 * 1024;
/**
 * What a kept view costs beside its bytes, in heldBytes: the Buffer object and its three array
 * slots (about 100 bytes measured on Node 20; rounded up).
 */
const PIECE_OVERHEAD = 128;

// Bits of FragmentAssemblerCore's `flags`: the open message's state in one field.
/** A message has started and its final frame has not ended yet. */
const OPEN = 1;
/** Streaming mode: the open message's first piece has not been handed on yet. */
const FIRST_PENDING = 2;
const BINARY = 4;
/** Validate the open message's pieces (a text message, validation not skipped). */
const VALIDATING = 8;

/** The I/O-free assembler; see the module comment. */
export class FragmentAssemblerCore {
  error: WebSocketError | null = null;
  private readonly config: AssemblerConfig;
  private readonly handler: FragmentAssemblerHandler;
  /** OPEN, FIRST_PENDING, BINARY, VALIDATING. */
  private flags = 0;
  /** Frames of the open message so far. */
  private fragments = 0;
  /** Sum of the declared lengths of the open message's frames so far. */
  private declaredBytes = 0;
  /** Pieces of the open message kept so far; null while there are none. */
  private parts: Parts | null = null;
  /** Created with the first text message that is validated piece by piece. */
  private validator: Utf8Validator | null = null;

  constructor(options: FragmentAssemblerOptions, handler: FragmentAssemblerHandler) {
    this.config = configFor(options);
    this.handler = handler;
  }

  /** Bytes of the open message kept so far. */
  get bufferedBytes(): number {
    return this.parts === null ? 0 : this.parts.bytes;
  }

  /**
   * Memory the open message holds: its bytes, the free room of its coalescing tail, and
   * PIECE_OVERHEAD for each kept buffer (what a memory budget should count).
   */
  get heldBytes(): number {
    const parts = this.parts;
    if (parts === null) return 0;
    const spare = parts.tail === null ? 0 : parts.tail.length - parts.tailUsed;
    return parts.bytes + spare + (parts.entries.length / 3) * PIECE_OVERHEAD;
  }

  /** Buffers the open message keeps so far: views of large pieces and coalescing tails (empty pieces are not kept). */
  get bufferedParts(): number {
    return this.parts === null ? 0 : this.parts.entries.length / 3;
  }

  /**
   * @internal True when write() would take a frame that is a whole message of `length` bytes (FIN
   * set, text or binary, whole) in one piece and deliver it at once: no message open, not
   * streaming, within maxMessageSize (and maxFragments). A caller that parsed such a frame itself
   * (the fused receiver's small frames) then hands it to whole(), unmasked.
   */
  takesWhole(length: number): boolean {
    const config = this.config;
    return this.error === null && (this.flags & OPEN) === 0 && !config.streaming && length <= config.maxMessageSize && config.maxFragments >= 1;
  }

  /** @internal A frame takesWhole() allowed, unmasked: delivered as write() delivers it (its UTF-8 checked). */
  whole(binary: boolean, data: Buffer): WebSocketError | null {
    const validating = !binary && this.config.validateUtf8;
    this.flags = binary ? BINARY : 0;
    return this.finish(data, validating && !isValidUtf8(data));
  }

  /** Takes one frame or piece of a frame; returns the first error met, or null. */
  write(frame: Frame): WebSocketError | null {
    if (this.error !== null) return this.error;
    // RFC 6455 §5.4: "Control frames MAY be injected in the middle of a fragmented message."
    if (isControlOpcode(frame.opcode)) {
      this.handler.onControl(frame);
      return this.error;
    }
    const payload = frame.payload;
    if (frame.offset === 0 && !this.startFrame(frame)) return this.error;
    if ((this.flags & OPEN) === 0) {
      // A later piece of a frame whose first piece never came, or came after an error.
      this.fail(new WebSocketError('WS_ERR_UNEXPECTED_CONTINUATION'));
      return this.error;
    }
    const ends = frame.fin && isLastPiece(frame);
    const whole = ends && this.parts === null && frame.offset === 0;
    const streaming = this.config.streaming;
    const validating = (this.flags & VALIDATING) !== 0;
    let mask = frame.mask;
    if (mask !== null && (streaming || validating || whole)) {
      // Handed on or checked as it is: unmasked in place now.
      applyMask(payload, mask, frame.offset);
      mask = null;
    }
    if (streaming) return this.streamPiece(payload, ends, validating);
    if (whole) {
      // The whole message in one piece: no list, no copy.
      return this.finish(payload, validating && !isValidUtf8(payload));
    }
    if (payload.length > 0) {
      // RFC 6455 §8.1: invalid UTF-8 MUST fail the connection; checking each piece as it comes
      // finds it without waiting for the rest of the message.
      if (validating && !this.startValidator().write(payload)) {
        this.fail(new WebSocketError('WS_ERR_INVALID_UTF8'));
        return this.error;
      }
      this.keep(payload, mask, frame.offset, ends);
    }
    if (!ends) return null;
    return this.finish(this.join(), validating && !this.startValidator().end());
  }

  /**
   * Keeps a piece for the join; `mask` (with the piece's offset in its frame) when it is still
   * masked. A small piece is copied (unmasked on the way) into the coalescing tail; a large one
   * is kept as it is, and so is the message's last piece (`last`: the join copies it at once, so
   * it costs nothing kept; a tail made for it would be a second buffer of the message's size,
   * for the few bytes a read or TLS record boundary left at its end).
   */
  private keep(payload: Buffer, mask: Buffer | null, offset: number, last: boolean): void {
    let parts = this.parts;
    if (parts === null) parts = this.parts = { entries: [], bytes: 0, tail: null, tailAt: 0, tailUsed: 0 };
    const length = payload.length;
    if (length >= COALESCE_BELOW || last) {
      sealTail(parts);
      parts.entries.push(payload, mask, offset);
    } else {
      let tail = parts.tail;
      if (tail === null || parts.tailUsed + length > tail.length) {
        sealTail(parts);
        tail = parts.tail = Buffer.allocUnsafe(Math.min(MAX_TAIL, Math.max(MIN_TAIL, parts.bytes)));
        parts.tailAt = parts.entries.length;
        parts.tailUsed = 0;
        parts.entries.push(tail, null, 0);
      }
      if (mask === null) tail.set(payload, parts.tailUsed);
      else applyMask(payload, mask, offset, tail, parts.tailUsed);
      parts.tailUsed += length;
    }
    parts.bytes += length;
  }

  /** The kept pieces as one buffer, unmasked: a lone plain piece as it is, else one copy (unmasking on the way). */
  private join(): Buffer {
    const parts = this.parts;
    if (parts === null) return EMPTY;
    const onlyTail = parts.tail !== null && parts.entries.length === 3;
    sealTail(parts);
    const entries = parts.entries;
    if (entries.length === 3 && !onlyTail) {
      const only = entries[0] as Buffer;
      const mask = entries[1] as Buffer | null;
      if (mask !== null) applyMask(only, mask, entries[2] as number);
      return only;
    }
    const out = Buffer.allocUnsafe(parts.bytes);
    let at = 0;
    for (let i = 0; i < entries.length; i += 3) {
      const piece = entries[i] as Buffer;
      const mask = entries[i + 1] as Buffer | null;
      if (mask === null) out.set(piece, at);
      else applyMask(piece, mask, entries[i + 2] as number, out, at);
      at += piece.length;
    }
    return out;
  }

  /** Streaming mode: checks and hands on one piece; empty pieces only when they open or end a message. */
  private streamPiece(payload: Buffer, ends: boolean, validating: boolean): WebSocketError | null {
    if (validating && payload.length > 0 && !this.startValidator().write(payload)) {
      this.fail(new WebSocketError('WS_ERR_INVALID_UTF8'));
      return this.error;
    }
    const flags = this.flags;
    const first = (flags & FIRST_PENDING) !== 0;
    if (ends) {
      this.flags = flags & ~OPEN;
      if (validating && !this.startValidator().end()) {
        this.fail(new WebSocketError('WS_ERR_INVALID_UTF8'));
        return this.error;
      }
    } else if (payload.length === 0 && !first) {
      return null;
    }
    this.flags &= ~FIRST_PENDING;
    this.handler.onMessagePiece!({ binary: (flags & BINARY) !== 0, data: payload, first, last: ends });
    return this.error;
  }

  /** Stops the assembler: keeps the first error, ignores all later input. */
  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
    this.dropParts();
  }

  private dropParts(): void {
    this.parts = null;
  }

  /**
   * The validator of the open text message: made on first use (most connections never receive
   * a text message in pieces, and a message in one piece is checked whole), reset when a text
   * message starts.
   */
  private startValidator(): Utf8Validator {
    return (this.validator ??= new Utf8Validator());
  }

  /** Checks the first piece of a data frame against the sequence rules and limits. */
  private startFrame(frame: Frame): boolean {
    const config = this.config;
    const outOfOrder = fragmentOrderError(frame.opcode, (this.flags & OPEN) !== 0);
    if (outOfOrder !== null) {
      this.fail(outOfOrder);
      return false;
    }
    if (frame.opcode !== Opcode.Continuation) {
      if (frame.opcode === Opcode.Binary) this.flags = OPEN | FIRST_PENDING | BINARY;
      else this.flags = config.validateUtf8 ? OPEN | FIRST_PENDING | VALIDATING : OPEN | FIRST_PENDING;
      this.fragments = 0;
      this.declaredBytes = 0;
      if (this.validator !== null) this.validator.reset();
    }
    const fragments = ++this.fragments;
    if (fragments > config.maxFragments) {
      this.fail(new WebSocketError('WS_ERR_TOO_MANY_FRAGMENTS', `more than ${config.maxFragments} frames`));
      return false;
    }
    // Checked on the declared length, before any byte of this frame is kept.
    const declared = (this.declaredBytes += frame.length);
    if (declared > config.maxMessageSize) {
      this.fail(new WebSocketError('WS_ERR_MESSAGE_TOO_BIG', `more than ${config.maxMessageSize} bytes`));
      return false;
    }
    if (declared + (fragments - 1) * config.frameOverhead > config.maxMessageSize) {
      this.fail(fragmentsOverLimit(fragments, config.frameOverhead, config.maxMessageSize));
      return false;
    }
    return true;
  }

  /** Ends the open message and hands it on (or fails it when its UTF-8 is invalid). */
  private finish(data: Buffer, invalidUtf8: boolean): WebSocketError | null {
    const binary = (this.flags & BINARY) !== 0;
    this.flags &= ~OPEN;
    this.parts = null;
    if (invalidUtf8) {
      this.fail(new WebSocketError('WS_ERR_INVALID_UTF8'));
      return this.error;
    }
    this.handler.onMessage({ binary, data });
    return this.error;
  }
}

/** Ends the tail's filling: its entry becomes the used part of it. */
function sealTail(parts: Parts): void {
  const tail = parts.tail;
  if (tail === null) return;
  parts.entries[parts.tailAt] = tail.subarray(0, parts.tailUsed);
  parts.tail = null;
}

/** A FragmentAssembler's stream options: shared by every instance (readable-stream only reads them). */
const ASSEMBLER_STREAM_OPTIONS = Object.freeze({ objectMode: true });

/**
 * Pushes every output of the core, in order, to the stage's readable side (prototype methods,
 * not closures made for every stage).
 */
class OutputsToStream implements FragmentAssemblerHandler {
  constructor(private readonly stream: Stage) {}

  onMessage(message: Message): void {
    this.stream.deliver(message);
  }

  onControl(frame: Frame): void {
    this.stream.deliver(frame);
  }

  onMessagePiece(piece: MessagePiece): void {
    this.stream.deliver(piece);
  }
}

/**
 * FragmentAssembler as a Transform: writes Frame values (unmasked, whole or in pieces), reads
 * Message values (MessagePiece values in streaming mode) and control Frame values in the order
 * they complete. Object mode on both sides.
 */
export class FragmentAssembler extends Stage {
  readonly core: FragmentAssemblerCore;

  constructor(options: FragmentAssemblerOptions = {}) {
    super(ASSEMBLER_STREAM_OPTIONS);
    this.core = new FragmentAssemblerCore(options, new OutputsToStream(this));
  }

  protected override step(chunk: Frame): WebSocketError | null {
    return this.core.write(chunk);
  }
}
