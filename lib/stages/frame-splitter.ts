/**
 * FrameSplitter: the first inbound stage. Bytes in, `Frame`s out (RFC 6455 §5.2).
 *
 * The core keeps received chunks in a list and hands payloads on as views of them; it copies
 * only when a needed range spans chunks, and then exactly once. Every header field is checked
 * as soon as the bytes that carry it are there, before any payload is waited for or allocated.
 * Masked payloads are passed on still masked, with their key: unmasking is the Unmasker's job.
 *
 * With `streaming: true` a data frame's payload is handed on in pieces as its bytes arrive (see
 * lib/protocol/frame.ts for how pieces are described), so a large frame is never held whole.
 */
import { Buffer } from 'node:buffer';
import { Defaults, MAX_CONTROL_PAYLOAD, Opcode, isControlOpcode, isKnownOpcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { SharedSettings } from '../protocol/shared-settings';
import { Frame } from '../protocol/frame';
import { Stage, StageOutput } from './stage';

/** The RSV bits an extension negotiated in the opening handshake claims (RFC 6455 §5.2, §9). */
export interface ExtensionBits {
  /** RSV1 may be set (permessage-deflate, RFC 7692). Default false. */
  rsv1?: boolean;
  /** RSV2 may be set. Default false. */
  rsv2?: boolean;
  /** RSV3 may be set. Default false. */
  rsv3?: boolean;
}

/** Options of FrameSplitterCore and FrameSplitter. */
export interface FrameSplitterOptions extends ExtensionBits {
  /**
   * Largest payload of a single frame, in bytes; a frame declaring more fails with
   * WS_ERR_PAYLOAD_TOO_BIG (close 1009) before any of its payload is buffered.
   * Default `Defaults.maxPayload` (100 MiB).
   */
  maxPayload?: number;
  /**
   * Hand on data frame payloads in pieces as their bytes arrive instead of whole. Control
   * frames are always handed on whole. Default false.
   */
  streaming?: boolean;
}

/** Where FrameSplitterCore sends what it parses. */
export interface FrameSplitterHandler {
  /** Called once per frame (or, in streaming mode, once per piece of a data frame's payload). */
  onFrame(frame: Frame): void;
}

/** Stream options FrameSplitter passes on to its Transform. */
export interface FrameSplitterStreamOptions {
  highWaterMark?: number;
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
}

/** Bits of the first header byte (RFC 6455 §5.2). */
const FIN_BIT = 0x80;
const RSV1_BIT = 0x40;
const RSV2_BIT = 0x20;
const RSV3_BIT = 0x10;
const RSV_BITS = RSV1_BIT | RSV2_BIT | RSV3_BIT;
const OPCODE_BITS = 0x0f;
/** Set in the opcode of every control frame (RFC 6455 §5.5: opcodes 0x8 to 0xF). */
const CONTROL_BIT = 0x08;
/** Kept with the first header byte (above its 8 bits): the frame carries a mask key. */
const MASKED_FLAG = 0x100;
/** Bits of the second header byte. */
const MASK_BIT = 0x80;
const LENGTH_BITS = 0x7f;
/** Values of the 7-bit length that announce an extended length. */
const LENGTH_16 = 126;
const LENGTH_64 = 127;
/** Sizes, in bytes, of the header parts. */
const BASE_HEADER_SIZE = 2;
const LENGTH_16_SIZE = 2;
const LENGTH_64_SIZE = 8;
const MASK_KEY_SIZE = 4;
/** 2^32, to combine the two halves of a 64-bit length. */
const TWO_POW_32 = 0x1_0000_0000;
/** Largest high half of a 64-bit length whose value is still at most Number.MAX_SAFE_INTEGER. */
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;

const EMPTY = Buffer.alloc(0);
/**
 * The chunk list of a splitter that holds nothing and never did (shared, never written to): a
 * connection that stays idle allocates no list of its own.
 */
const NO_CHUNKS: readonly Buffer[] = Object.freeze([]);

/** What the parser waits for next. */
enum State {
  Header,
  Length16,
  Length64,
  MaskKey,
  Payload,
}

function rsvMask(bits: ExtensionBits): number {
  return (bits.rsv1 === true ? RSV1_BIT : 0) | (bits.rsv2 === true ? RSV2_BIT : 0) | (bits.rsv3 === true ? RSV3_BIT : 0);
}

/** A splitter's settings, shared by every splitter made with the same ones (never written to). */
type SplitterConfig = Readonly<{
  maxPayload: number;
  streaming: boolean;
  /** RSV bits (as in the first header byte) that a negotiated extension claims. */
  allowedRsv: number;
}>;

const configs = new SharedSettings<SplitterConfig>();

function configFor(maxPayload: number, streaming: boolean, allowedRsv: number): SplitterConfig {
  return configs.share({ maxPayload, streaming, allowedRsv });
}

/**
 * The I/O-free frame parser. Feed it bytes with `write`; it calls `handler.onFrame` for every
 * frame (or piece) as soon as it is complete, and returns the first error met (then ignores all
 * further input).
 */
export class FrameSplitterCore {
  /** The first error met, or null. Once set, all further input is ignored. */
  error: WebSocketError | null = null;

  private readonly handler: FrameSplitterHandler;
  /** Shared settings (see configFor); replaced, never changed, by setExtensionBits. */
  private config: SplitterConfig;

  /** Received chunks; those before `head` are spent, and `chunks[head]` is spent up to `headOffset`. */
  private chunks: Buffer[] = NO_CHUNKS as Buffer[];
  private head = 0;
  private headOffset = 0;
  private buffered = 0;

  private state = State.Header;
  // The frame being parsed.
  /**
   * Its first header byte (FIN, RSV bits, opcode) as received, plus MASKED_FLAG when the second
   * says a mask key follows: one field instead of six per connection.
   */
  private header = 0;
  /** Its mask key, once read. */
  private mask: Buffer | null = null;
  private length = 0;
  /** Payload bytes of the current frame already handed on (streaming mode). */
  private emitted = 0;
  /**
   * Frames (and pieces) it may still hand on before it stops parsing, the rest of its input
   * held until resume() (a fairness budget set by its owner; Infinity: no limit).
   */
  budget = Infinity;

  constructor(options: FrameSplitterOptions, handler: FrameSplitterHandler) {
    this.handler = handler;
    this.config = configFor(options.maxPayload ?? Defaults.maxPayload, options.streaming ?? false, rsvMask(options));
  }

  /** Bytes received and not yet handed on. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** True when no frame is partly received: the input so far ended on a frame boundary. */
  get atFrameBoundary(): boolean {
    return this.state === State.Header && this.buffered === 0;
  }

  /** Changes the RSV bits claimed by extensions (after negotiation); a bit left out is not claimed. */
  setExtensionBits(bits: ExtensionBits): void {
    const config = this.config;
    this.config = configFor(config.maxPayload, config.streaming, rsvMask(bits));
  }

  /** Sets `error` if not yet set; parsing stops at once, even in the middle of a chunk. */
  fail(err: WebSocketError): void {
    if (this.error === null) {
      this.error = err;
      this.chunks = NO_CHUNKS as Buffer[];
      this.head = 0;
      this.headOffset = 0;
      this.buffered = 0;
    }
  }

  /**
   * @internal For a caller that handles small whole frames itself (the proxy's relay), at a frame
   * boundary: hands each frame from chunk[from] on that lies whole in it and is a data frame
   * (opcode 0x0-0x2) of at most `maxLength` bytes (a 7-bit or minimal 16-bit length), masked as
   * `masked` says, whose RSV bits are claimed and whose length is within maxPayload, to
   * `each(chunk, at, payloadAt, length)` (`at`: its first header byte; its key, if any, is the 4
   * bytes before `payloadAt`), until `each` returns false or a frame is anything else. Returns
   * where it stopped: what follows goes to write(), which parses (and checks) whatever stopped
   * the run as usual.
   */
  scanSmall(
    chunk: Buffer,
    from: number,
    masked: boolean,
    maxLength: number,
    each: (chunk: Buffer, at: number, payloadAt: number, length: number) => boolean,
  ): number {
    if (this.error !== null || !this.atFrameBoundary) return from;
    const { allowedRsv, maxPayload } = this.config;
    const maskBit = masked ? MASK_BIT : 0;
    const keySize = masked ? MASK_KEY_SIZE : 0;
    const end = chunk.length;
    let at = from;
    while (at + BASE_HEADER_SIZE <= end) {
      const b0 = chunk[at]!;
      const b1 = chunk[at + 1]!;
      let length = b1 & LENGTH_BITS;
      let payloadAt = at + BASE_HEADER_SIZE + keySize;
      if (length === LENGTH_16) {
        if (at + BASE_HEADER_SIZE + LENGTH_16_SIZE > end) break;
        length = (chunk[at + 2]! << 8) | chunk[at + 3]!;
        // §5.2: the minimal form only (a 16-bit length under 126 is left to the usual path).
        if (length < LENGTH_16) break;
        payloadAt += LENGTH_16_SIZE;
      }
      if (
        (b0 & OPCODE_BITS) > Opcode.Binary ||
        (b0 & RSV_BITS & ~allowedRsv) !== 0 ||
        (b1 & MASK_BIT) !== maskBit ||
        length === LENGTH_64 ||
        length > maxLength ||
        length > maxPayload ||
        payloadAt + length > end ||
        !each(chunk, at, payloadAt, length)
      ) {
        break;
      }
      at = payloadAt + length;
    }
    return at;
  }

  /**
   * @internal The size of the frame whose first byte is chunk[at] when its header lies whole in `chunk`
   * (header and payload; -1 otherwise, or for a 64-bit length): what a caller writes to end on
   * the next frame boundary.
   */
  static frameSizeAt(chunk: Buffer, at: number): number {
    if (at + BASE_HEADER_SIZE > chunk.length) return -1;
    const b1 = chunk[at + 1]!;
    let length = b1 & LENGTH_BITS;
    let header = BASE_HEADER_SIZE + ((b1 & MASK_BIT) !== 0 ? MASK_KEY_SIZE : 0);
    if (length === LENGTH_64) return -1;
    if (length === LENGTH_16) {
      if (at + BASE_HEADER_SIZE + LENGTH_16_SIZE > chunk.length) return -1;
      length = (chunk[at + 2]! << 8) | chunk[at + 3]!;
      header += LENGTH_16_SIZE;
    }
    return header + length;
  }

  /**
   * @internal Bytes still to come before the frame under way ends: 0 at a frame boundary, -1 while its
   * header is incomplete (the length is not known yet). Writing just these ends on a boundary.
   */
  get bytesToBoundary(): number {
    switch (this.state) {
      case State.Header:
        return this.buffered === 0 ? 0 : -1;
      case State.MaskKey:
        return MASK_KEY_SIZE - this.buffered + this.length;
      case State.Payload:
        return this.length - this.emitted - this.buffered;
      default:
        return -1;
    }
  }

  /**
   * @internal Writes chunk[at..] up to the end of the frame under way, or of the one starting at
   * `at` at a frame boundary (no further than the chunk): a byte at a time while that frame's
   * length is not known yet (its header cut by a chunk, or a 64-bit length: a few bytes). Returns
   * where it stopped, or the error met. For a caller that takes whole frames from its chunks
   * itself between the ones it leaves to the splitter (the proxy's relay, the fused receiver).
   */
  writeFrameFrom(chunk: Buffer, at: number): WebSocketError | number {
    const need = this.atFrameBoundary ? FrameSplitterCore.frameSizeAt(chunk, at) : this.bytesToBoundary;
    const end = need <= 0 ? at + 1 : Math.min(chunk.length, at + need);
    return this.write(at === 0 && end === chunk.length ? chunk : chunk.subarray(at, end)) ?? end;
  }

  /** Parses `chunk` together with the bytes still held; returns `this.error`. */
  write(chunk: Buffer): WebSocketError | null {
    if (this.error !== null) return this.error;
    if (chunk.length === 0) return null;
    this.keep(chunk);
    return this.parseHeld();
  }

  /**
   * @internal Holds `chunk` after the bytes already held, unparsed: the next write() or resume()
   * parses it. For a caller that handed on part of a chunk itself and had to stop (the fused
   * receiver, when a listener threw), as the splitter holds what follows a frame it hands on.
   */
  keep(chunk: Buffer): void {
    if (this.error !== null || chunk.length === 0) return;
    if (this.chunks === NO_CHUNKS) this.chunks = [chunk];
    else this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** True when the budget stopped parsing with input held (resume() goes on once it is renewed). */
  get stalled(): boolean {
    return this.budget <= 0 && this.buffered > 0 && this.error === null;
  }

  /** Parses what is held (after the budget was renewed); returns `this.error`. */
  resume(): WebSocketError | null {
    if (this.error !== null || this.buffered === 0) return this.error;
    return this.parseHeld();
  }

  private parseHeld(): WebSocketError | null {
    this.run();
    if (this.head === 0) return this.error;
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
    } else {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
    return this.error;
  }

  private run(): void {
    while (this.error === null && this.budget > 0) {
      switch (this.state) {
        case State.Header:
          if (this.buffered < BASE_HEADER_SIZE) return;
          this.readHeader();
          break;
        case State.Length16: {
          if (this.buffered < LENGTH_16_SIZE) return;
          const length = (this.byteAt(0) << 8) | this.byteAt(1);
          this.skip(LENGTH_16_SIZE);
          this.setLength(length);
          break;
        }
        case State.Length64:
          if (this.buffered < LENGTH_64_SIZE) return;
          this.readLength64();
          break;
        case State.MaskKey:
          if (this.buffered < MASK_KEY_SIZE) return;
          this.mask = this.consume(MASK_KEY_SIZE);
          this.state = State.Payload;
          break;
        case State.Payload:
          if (this.config.streaming && (this.header & CONTROL_BIT) === 0) {
            if (!this.streamPayload()) return;
          } else {
            if (this.buffered < this.length) return;
            const payload = this.length === 0 ? EMPTY : this.consume(this.length);
            this.state = State.Header;
            this.emit(payload, 0);
          }
          break;
      }
    }
  }

  /** Reads and checks the first two header bytes. */
  private readHeader(): void {
    const b0 = this.byteAt(0);
    const b1 = this.byteAt(1);
    const opcode = b0 & OPCODE_BITS;
    // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket Connection_."
    if (!isKnownOpcode(opcode)) {
      this.fail(new WebSocketError('WS_ERR_INVALID_OPCODE', `opcode 0x${opcode.toString(16)}`));
      return;
    }
    const control = isControlOpcode(opcode);
    // §5.2: "If a nonzero value is received and none of the negotiated extensions defines the
    // meaning of such a nonzero value, the receiving endpoint MUST _Fail the WebSocket Connection_."
    // No extension we know gives RSV bits a meaning on control frames (RFC 7692 §6: RSV1 is for
    // data messages only).
    const rsv = b0 & RSV_BITS;
    if (rsv !== 0 && (control || (rsv & ~this.config.allowedRsv) !== 0)) {
      this.fail(new WebSocketError('WS_ERR_UNEXPECTED_RSV', `RSV bits 0x${rsv.toString(16)}`));
      return;
    }
    const length7 = b1 & LENGTH_BITS;
    if (control) {
      // §5.5: "All control frames MUST have a payload length of 125 bytes or less and MUST NOT be fragmented."
      if ((b0 & FIN_BIT) === 0) {
        this.fail(new WebSocketError('WS_ERR_FRAGMENTED_CONTROL_FRAME'));
        return;
      }
      if (length7 > MAX_CONTROL_PAYLOAD) {
        this.fail(new WebSocketError('WS_ERR_CONTROL_FRAME_TOO_LONG'));
        return;
      }
    }
    this.header = (b1 & MASK_BIT) !== 0 ? b0 | MASKED_FLAG : b0;
    this.mask = null;
    this.skip(BASE_HEADER_SIZE);
    if (length7 === LENGTH_16) this.state = State.Length16;
    else if (length7 === LENGTH_64) this.state = State.Length64;
    else this.setLength(length7);
  }

  /** Reads and checks a 64-bit extended payload length. */
  private readLength64(): void {
    const high = ((this.byteAt(0) << 24) | (this.byteAt(1) << 16) | (this.byteAt(2) << 8) | this.byteAt(3)) >>> 0;
    // §5.2: "the most significant bit MUST be 0": a protocol error (1002).
    if ((high & 0x8000_0000) !== 0) {
      this.fail(new WebSocketError('WS_ERR_INVALID_LENGTH', 'most significant bit of the 64-bit length set'));
      return;
    }
    // A legal length that no number holds exactly (over 2^53 - 1) is simply too big (1009).
    if (high > MAX_SAFE_HIGH_WORD) {
      this.fail(new WebSocketError('WS_ERR_PAYLOAD_TOO_BIG', `over Number.MAX_SAFE_INTEGER, maxPayload ${this.config.maxPayload}`));
      return;
    }
    const low = ((this.byteAt(4) << 24) | (this.byteAt(5) << 16) | (this.byteAt(6) << 8) | this.byteAt(7)) >>> 0;
    this.skip(LENGTH_64_SIZE);
    this.setLength(high * TWO_POW_32 + low);
  }

  /** Records the payload length, checks it against maxPayload, and moves on. */
  private setLength(length: number): void {
    const maxPayload = this.config.maxPayload;
    if (length > maxPayload) {
      this.fail(new WebSocketError('WS_ERR_PAYLOAD_TOO_BIG', `${length} bytes, maxPayload ${maxPayload}`));
      return;
    }
    this.length = length;
    this.emitted = 0;
    this.state = (this.header & MASKED_FLAG) !== 0 ? State.MaskKey : State.Payload;
  }

  /**
   * Streaming mode: hands on the payload bytes held, as views, one piece per chunk. Returns
   * true when the frame is complete, false when more bytes are needed.
   */
  private streamPayload(): boolean {
    if (this.length === 0) {
      this.state = State.Header;
      this.emit(EMPTY, 0);
      return true;
    }
    while (this.buffered > 0 && this.error === null && this.budget > 0) {
      const chunk = this.chunks[this.head]!;
      const size = Math.min(chunk.length - this.headOffset, this.length - this.emitted);
      const piece = this.consume(size);
      const offset = this.emitted;
      this.emitted += size;
      if (this.emitted === this.length) {
        this.state = State.Header;
        this.emit(piece, offset);
        return true;
      }
      this.emit(piece, offset);
    }
    return false;
  }

  private emit(payload: Buffer, offset: number): void {
    const header = this.header;
    // Every field given, in makeFrame's order (the same hidden class as every other frame),
    // without makeFrame's options object and defaults: this runs once per frame.
    const frame: Frame = {
      fin: (header & FIN_BIT) !== 0,
      rsv1: (header & RSV1_BIT) !== 0,
      rsv2: (header & RSV2_BIT) !== 0,
      rsv3: (header & RSV3_BIT) !== 0,
      opcode: (header & OPCODE_BITS) as Opcode,
      mask: this.mask,
      payload,
      length: this.length,
      offset,
    };
    this.budget--;
    this.handler.onFrame(frame);
  }

  /** The byte `index` bytes past the read position; the caller has checked that it is held. */
  private byteAt(index: number): number {
    let i = this.head;
    let chunk = this.chunks[i]!;
    let at = this.headOffset + index;
    while (at >= chunk.length) {
      at -= chunk.length;
      chunk = this.chunks[++i]!;
    }
    return chunk[at]!;
  }

  /** Drops `n` held bytes. */
  private skip(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const chunk = this.chunks[this.head]!;
      const left = chunk.length - this.headOffset;
      if (n < left) {
        this.headOffset += n;
        return;
      }
      n -= left;
      this.head++;
      this.headOffset = 0;
    }
  }

  /** Takes `n` (> 0) held bytes: a view when they lie in one chunk, else one copy. */
  private consume(n: number): Buffer {
    const chunk = this.chunks[this.head]!;
    const start = this.headOffset;
    if (start + n <= chunk.length) {
      this.buffered -= n;
      if (start + n === chunk.length) {
        this.head++;
        this.headOffset = 0;
      } else {
        this.headOffset = start + n;
      }
      return start === 0 && n === chunk.length ? chunk : chunk.subarray(start, start + n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const part = this.chunks[this.head]!;
      const from = this.headOffset;
      const take = Math.min(part.length - from, n - filled);
      part.copy(out, filled, from, from + take);
      filled += take;
      if (from + take === part.length) {
        this.head++;
        this.headOffset = 0;
      } else {
        this.headOffset = from + take;
      }
    }
    this.buffered -= n;
    return out;
  }
}

/** A FrameSplitter's stream options when it is given none: shared (readable-stream only reads them). */
const SPLITTER_STREAM_OPTIONS = Object.freeze({ readableObjectMode: true });

/**
 * The stream stage: bytes in (writable side), `Frame`s out (readable side, object mode). A
 * protocol error fails the chunk that carried it with the WebSocketError.
 */
export class FrameSplitter extends Stage {
  readonly core: FrameSplitterCore;

  constructor(options: FrameSplitterOptions = {}, streamOptions?: FrameSplitterStreamOptions) {
    super(streamOptions === undefined ? SPLITTER_STREAM_OPTIONS : { ...streamOptions, readableObjectMode: true });
    this.core = new FrameSplitterCore(options, new StageOutput(this));
  }

  protected override step(chunk: Buffer): WebSocketError | null {
    return this.core.write(chunk);
  }
}
