/**
 * The inbound chain fused into plain calls: FrameSplitter -> Unmasker -> FragmentAssembler ->
 * ControlFrameResponder, the same cores that the stream stages wrap, without a stream hop per
 * stage. A core that fails stops the splitter mid-chunk, so nothing after a bad frame is
 * delivered. Messages in one small frame that lie whole in a chunk skip the splitter's state
 * machine and the unmasker: the splitter's scan checks them and the assembler takes them whole
 * (writeTakingWhole); spec/equivalence.spec.ts holds the output to the stages' own.
 *
 * permessage-deflate (when negotiated): an InflaterCore sits between the unmasker and the
 * assembler. zlib is asynchronous, so from then on frames may be delivered after write()
 * returns: they stay in order (the inflater queues them), `busy` says that some are still
 * waiting (the owner should stop reading the socket), onInflateIdle says they are all through,
 * and an error met asynchronously goes to onAsyncError instead of write()'s return value.
 */
import { Buffer } from 'node:buffer';
import { ControlFrameResponderCore, ControlFrameResponderHandler } from '../stages/control-frame-responder';
import { WebSocketError } from '../protocol/errors';
import { FragmentAssemblerCore, MessagePiece } from '../stages/fragment-assembler';
import { Frame, Inbound, Message, withPayload } from '../protocol/frame';
import { applyMask, applyMaskAt } from '../protocol/mask';
import { Opcode } from '../protocol/constants';
import { FrameSplitterCore } from '../stages/frame-splitter';
import { InflaterCore } from '../deflate/inflater';
import { type DeflateSides, sharedLimiter } from '../deflate/permessage-deflate';
import { maskingError, unmaskFrame } from '../stages/unmasker';

export type Role = 'server' | 'client';

/** A frame's first byte less its RSV bits: FIN and the opcode. */
const FIN_AND_OPCODE = 0x80 | 0x0f;
/** FIN_AND_OPCODE of a text or binary message in one frame. */
const WHOLE_TEXT = 0x80 | Opcode.Text;
const WHOLE_BINARY = 0x80 | Opcode.Binary;

/** Limits and checks of the inbound side; each defaults as documented on its stage. */
export interface ReceiverOptions {
  /** Largest payload of a single frame, in bytes. Default 100 MiB. */
  maxPayload?: number;
  /** Largest message delivered whole, in bytes. Default 100 MiB. */
  maxMessageSize?: number;
  /**
   * Most frames one message may be made of (empty ones count). Default Infinity: each frame
   * after the first counts 256 bytes (Defaults.frameOverhead) against maxMessageSize instead.
   */
  maxFragments?: number;
  /** Skip the UTF-8 check of text messages (only for trusted peers). Default false. */
  skipUtf8Validation?: boolean;
  /** Answer pings with pongs automatically. Default true. */
  autoPong?: boolean;
  /**
   * Deliver every data message as a stream of pieces as it arrives (onMessagePiece) instead of
   * whole. maxMessageSize and maxFragments then do not apply (nothing is kept);
   * maxStreamedMessageSize does. Default false.
   */
  streamMessages?: boolean;
  /** Largest streamed message, in bytes. Default Infinity (each frame is still capped by maxPayload). */
  maxStreamedMessageSize?: number;
}

/**
 * Where control frames go when the receiver is given one (WebSocket gives its ConnectionCore)
 * instead of its own ControlFrameResponderCore; data messages then go to the handler's onMessage,
 * which must drop those that come after the peer's close.
 */
export interface InboundSink {
  /** Takes one control frame (or message); returns the error that failed the connection, or null. */
  receive(value: Inbound): WebSocketError | null;
}

/** The responder's outputs (needed without an InboundSink), plus the pieces of streamed messages. */
export interface ReceiverHandler extends Partial<ControlFrameResponderHandler> {
  onMessagePiece?(piece: MessagePiece): void;
  /** permessage-deflate: an error met while inflating, after write() returned. */
  onAsyncError?(err: WebSocketError): void;
  /** permessage-deflate: every frame written so far has been delivered (`busy` went false). */
  onInflateIdle?(): void;
  /** permessage-deflate: an inflated chunk went to the assembler (what it holds may have grown). */
  onInflatedFrame?(): void;
}

/** permessage-deflate's receiving side, when negotiated. */
interface Inflating {
  readonly inflater: InflaterCore;
  /** Called back by the inflater once per frame. */
  readonly inflated: (err: WebSocketError | null) => void;
  /** Inside write(): errors are returned, not reported through onAsyncError. */
  writing: boolean;
  asyncErrorReported: boolean;
}

/**
 * Handlers are methods on shared prototypes, not closures: an idle connection holds no
 * per-connection function objects here, and what only permessage-deflate needs is in one
 * object made when it is negotiated.
 *
 * It is the FrameSplitterHandler and FragmentAssemblerHandler of its cores, without an
 * `implements` clause: those methods are marked internal, left out of the published declarations,
 * where the clause would no longer hold; passing `this` to the cores checks the shape.
 */
export class Receiver {
  readonly splitter: FrameSplitterCore;
  readonly assembler: FragmentAssemblerCore;
  /** Where messages and control frames go: the sink given, or the responder. */
  readonly sink: InboundSink;
  /** The responder, when no sink was given (null otherwise). */
  readonly responder: ControlFrameResponderCore | null;
  /** Sees every frame after unmasking, before reassembly (taps). */
  frameObserver: ((frame: Frame) => void) | null = null;
  private readonly handler: ReceiverHandler;
  private readonly inflating: Inflating | null = null;
  /**
   * We are the server: frames must come masked. Unmasking is a plain call (unmaskFrame), not an
   * UnmaskerCore and its handler per connection.
   */
  private readonly server: boolean;

  /**
   * `inflate`: permessage-deflate's receiving parameters (deflateSides(...).inflate), when
   * negotiated. `sink`: where messages and control frames go; without one, a
   * ControlFrameResponderCore answers them, and `handler` must have its handler's methods.
   */
  constructor(
    role: Role,
    options: ReceiverOptions,
    handler: ReceiverHandler,
    inflate?: DeflateSides['inflate'] & { maxConcurrency?: number },
    sink?: InboundSink,
  ) {
    this.handler = handler;
    this.server = role === 'server';
    if (sink === undefined) {
      const responder = new ControlFrameResponderCore({ autoPong: options.autoPong ?? true }, handler as ControlFrameResponderHandler);
      this.responder = responder;
      this.sink = { receive: (value) => responder.write(value) };
    } else {
      if (handler.onMessage === undefined) throw new TypeError('Receiver: a handler with onMessage is needed with a sink');
      this.responder = null;
      this.sink = sink;
    }
    this.assembler = new FragmentAssemblerCore(
      {
        maxMessageSize: options.maxMessageSize,
        // With an inflater, a compressed message reaches the assembler as zlib's chunks, not
        // the peer's frames: the inflater counts the peer's frames instead.
        maxFragments: inflate === undefined ? options.maxFragments : Number.POSITIVE_INFINITY,
        frameOverhead: inflate === undefined ? undefined : 0,
        skipUtf8Validation: options.skipUtf8Validation,
        streaming: options.streamMessages,
        maxStreamedMessageSize: options.maxStreamedMessageSize,
      },
      this,
    );
    if (inflate !== undefined) {
      // Limits apply to the inflated bytes. A streamed message keeps nothing, so only its own
      // limit (or else maxPayload) bounds what one compressed message may inflate to.
      const streamed = options.streamMessages === true;
      const streamedLimit = options.maxStreamedMessageSize ?? Number.POSITIVE_INFINITY;
      const inflater = new InflaterCore(
        {
          windowBits: inflate.windowBits,
          noContextTakeover: inflate.noContextTakeover,
          maxPayload: options.maxPayload,
          maxMessageSize: streamed ? (Number.isFinite(streamedLimit) ? streamedLimit : options.maxPayload) : options.maxMessageSize,
          maxFragments: streamed ? Number.POSITIVE_INFINITY : options.maxFragments,
          limiter: inflate.maxConcurrency === undefined ? undefined : sharedLimiter(inflate.maxConcurrency),
        },
        {
          onFrame: (frame: Frame) => {
            this.pass(this.assembler.write(frame));
            this.handler.onInflatedFrame?.();
          },
        },
      );
      const inflated = (err: WebSocketError | null): void => this.inflated(err);
      this.inflating = { inflater, inflated, writing: false, asyncErrorReported: false };
    }
    this.splitter = new FrameSplitterCore({ maxPayload: options.maxPayload, streaming: true, rsv1: inflate !== undefined }, this);
  }

  /** @internal The splitter's output: a frame (or piece) to check and unmask. */
  onFrame(frame: Frame): void {
    // Without an inflater data frames stay masked: the assembler unmasks the pieces it joins in
    // the same pass as the join.
    const unmasked = unmaskFrame(frame, this.server, this.inflating === null);
    if (unmasked === null) this.pass(maskingError(this.server));
    else this.unmasked(unmasked);
  }

  /** The unmasked frame (or piece). */
  private unmasked(frame: Frame): void {
    if (this.frameObserver !== null) {
      // Taps see frames unmasked.
      if (frame.mask !== null) {
        applyMask(frame.payload, frame.mask, frame.offset);
        frame = withPayload(frame, frame.payload, null);
      }
      this.frameObserver(frame);
    }
    const inflating = this.inflating;
    if (inflating !== null) inflating.inflater.write(frame, inflating.inflated);
    else this.pass(this.assembler.write(frame));
  }

  /** @internal The assembler's outputs. */
  onMessage(message: Message): void {
    // Given a sink (a connection's core), data messages go straight to the handler: the core is
    // told of control frames only, and the handler drops what comes after the peer's close.
    if (this.responder === null) this.handler.onMessage!(message);
    else this.pass(this.responder.write(message));
  }

  /** @internal */
  onControl(frame: Frame): void {
    this.pass(this.sink.receive(frame));
  }

  /** @internal */
  onMessagePiece(piece: MessagePiece): void {
    this.handler.onMessagePiece?.(piece);
  }

  /** Feeds bytes from the socket; returns the first error of any core, or null. */
  write(chunk: Buffer): WebSocketError | null {
    const inflating = this.inflating;
    if (inflating === null) return this.frameObserver === null ? this.writeTakingWhole(chunk) : this.splitter.write(chunk);
    inflating.writing = true;
    const err = this.splitter.write(chunk);
    inflating.writing = false;
    return err;
  }

  /** Parses what the splitter held back once its budget is renewed (FrameSplitterCore.budget); returns the first error, or null. */
  resumeParsing(): WebSocketError | null {
    const inflating = this.inflating;
    if (inflating === null) return this.splitter.resume();
    inflating.writing = true;
    const err = this.splitter.resume();
    inflating.writing = false;
    return err;
  }

  /** permessage-deflate's receiving side, when negotiated. */
  get inflater(): InflaterCore | null {
    return this.inflating === null ? null : this.inflating.inflater;
  }

  /** permessage-deflate: frames are still waiting to be inflated and delivered. */
  get busy(): boolean {
    return this.inflating !== null && this.inflating.inflater.pending > 0;
  }

  /** The consumer is full: inflate nothing more until resumeInflate(). */
  pauseInflate(): void {
    this.inflating?.inflater.pause();
  }

  resumeInflate(): void {
    this.inflating?.inflater.resume();
  }

  /** Stops every core with `err` and drops what they keep (the message being assembled, zlib); nothing more is reported. */
  abort(err: WebSocketError): void {
    this.splitter.fail(err);
    this.assembler.fail(err);
    if (this.inflating !== null) {
      this.inflating.asyncErrorReported = true;
      this.inflating.inflater.fail(err);
    }
  }

  /** Frees zlib and the message being assembled (the connection is gone); nothing more is delivered or reported. */
  destroy(): void {
    // The error is only made when something is dropped (a stack trace costs more than the rest of a close).
    if (this.assembler.heldBytes > 0) this.assembler.fail(new WebSocketError('WS_ERR_CONNECTION_LOST', 'connection closed in the middle of a message'));
    if (this.inflating === null) return;
    this.inflating.asyncErrorReported = true;
    this.inflating.inflater.destroy();
  }

  /** Called back by the inflater once per frame. */
  private inflated(err: WebSocketError | null): void {
    const inflating = this.inflating!;
    if (err !== null) {
      this.splitter.fail(err);
      // Met inside write(): write() returns it. Later: reported once.
      if (!inflating.writing && !inflating.asyncErrorReported) {
        inflating.asyncErrorReported = true;
        this.handler.onAsyncError?.(err);
      }
    }
    // After an error the queue is empty too: nothing more will come.
    if (!inflating.writing && inflating.inflater.pending === 0) this.handler.onInflateIdle?.();
  }

  /**
   * Parses `chunk`, taking messages in one frame each (up to 64 KiB: a 7- or 16-bit length) that
   * lie whole in it straight from the chunk (unmasked in place): no Frame, no key Buffer, no pass
   * through the unmasker and the assembler's piece handling (a fifth of the CPU per message of an
   * echo of 64-byte messages, bench/ws-cpu.ts fake mode). They are checked as the splitter checks
   * them (scanSmall: opcode, RSV bits, masking, maxPayload) and as the assembler does
   * (takesWhole: no message open, maxMessageSize; whole: UTF-8), and count against the frame
   * budget. First the frame the last chunk cut goes through the splitter, to its end; then the
   * scan; then the first frame that is not such a message (a control frame, a fragment, a larger
   * frame, one cut by the chunk's end, one that fails a check) and all after it go through the
   * splitter in one write. So a chunk costs the splitter a few writes at most, whatever it holds
   * (a write per frame, a flood of 1-byte fragments cost 1.6 times what the splitter's own loop
   * does: bench/fragments.ts). Not with permessage-deflate (its frames go to the inflater) nor
   * with a frame observer (taps see every Frame). Returns the first error, or null.
   */
  private writeTakingWhole(chunk: Buffer): WebSocketError | null {
    const splitter = this.splitter;
    let at = 0;
    // The frame under way: a byte at a time while its header is not whole (a few bytes).
    while (!splitter.atFrameBoundary && at < chunk.length && splitter.budget > 0) {
      const next = splitter.writeFrameFrom(chunk, at);
      if (typeof next !== 'number') return next;
      at = next;
    }
    if (splitter.atFrameBoundary && at < chunk.length && splitter.budget > 0) {
      this.scanned = at;
      try {
        at = splitter.scanSmall(chunk, at, this.server, 0xffff, (this.eachWhole ??= (c, a, p, l) => this.wholeMessage(c, a, p, l)));
      } catch (err) {
        // A listener threw (its exception goes on to whoever emitted the chunk): what follows
        // the message it was given waits in the splitter for the next parse, as it would have
        // had the splitter handed that message on.
        splitter.keep(chunk.subarray(this.scanned));
        throw err;
      }
    }
    // What stopped the scan and the rest (held by the splitter while the budget is spent).
    if (at === chunk.length || splitter.error !== null) return splitter.error;
    return splitter.write(at === 0 ? chunk : chunk.subarray(at));
  }

  /** writeTakingWhole()'s handler, made on first use: an idle connection holds no closure. */
  private eachWhole: ((chunk: Buffer, at: number, payloadAt: number, length: number) => boolean) | null = null;
  /** Where the scan is in its chunk: the end of the message wholeMessage() is delivering (or where the scan began). */
  private scanned = 0;

  /** One small data frame of writeTakingWhole()'s: delivered when it is a whole message; false when it is not, or parsing must stop. */
  private wholeMessage(chunk: Buffer, at: number, payloadAt: number, length: number): boolean {
    // FIN and the opcode (scanSmall checked that the RSV bits are clear: no extension here).
    const head = chunk[at]! & FIN_AND_OPCODE;
    const splitter = this.splitter;
    if ((head !== WHOLE_TEXT && head !== WHOLE_BINARY) || splitter.budget <= 0 || !this.assembler.takesWhole(length)) return false;
    const data = chunk.subarray(payloadAt, payloadAt + length);
    if (this.server) applyMaskAt(data, chunk, payloadAt - 4);
    this.scanned = payloadAt + length;
    splitter.budget--;
    this.pass(this.assembler.whole(head === WHOLE_BINARY, data));
    return splitter.error === null;
  }

  /** The first error any core met. */
  get error(): WebSocketError | null {
    return this.splitter.error;
  }

  /** A downstream error stops the splitter at once. */
  private pass(err: WebSocketError | null): void {
    if (err !== null) {
      this.splitter.fail(err);
      this.inflating?.inflater.fail(err);
    }
  }
}
