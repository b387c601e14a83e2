/**
 * The outbound chain fused into plain calls: MessageFramer -> Masker (client role) ->
 * FrameSerializer -> socket. Every frame reaches the socket whole and in one synchronous step,
 * so a control frame sent between two calls can fall between two fragments of a message but
 * never inside a frame's bytes. A message's header and payload go out in one corked writev.
 *
 * permessage-deflate (when negotiated): a DeflaterCore sits between the framer and the masker.
 * zlib is asynchronous, so a compressed message reaches the socket after the send call returns
 * (still whole frames, in order); `pending` says so and whenSent() calls back once it is out.
 * Pings and pongs never wait for it; a close frame waits behind the messages sent before it.
 */
import { Buffer } from 'node:buffer';
import { WebSocketError } from '../protocol/errors';
import { Frame, Message } from '../protocol/frame';
import { FrameSerializerCore } from '../stages/frame-serializer';
import { MaskGenerator, maskSlots } from '../protocol/mask';
import { Socket } from 'node:net';
import { MaskerCore } from '../stages/masker';
import { MessageFramerCore } from '../stages/message-framer';
import { DeflaterCore } from '../deflate/deflater';
import { Opcode } from '../protocol/constants';
import { type DeflateSides, type PerMessageDeflateOptions, sharedLimiter } from '../deflate/permessage-deflate';
import type { Role } from './receiver';

/** Anything bytes can be written to: a net.Socket, a tls.TLSSocket, or any Writable. */
export interface ByteSink {
  write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
  readonly writableLength: number;
}

export interface SenderOptions {
  /** Cut outbound messages into frames of at most this many payload bytes; 0 never cuts. Default 0. */
  fragmentSize?: number;
  /** Source of masking keys (client role). Default: crypto.randomFillSync, pooled. */
  generateMask?: MaskGenerator;
}

/** permessage-deflate's sending side (when negotiated and allowed to compress). */
interface Deflating {
  readonly deflater: DeflaterCore;
  /** Called back by the deflater once per frame. */
  readonly deflatedAll: (err: WebSocketError | null) => void;
  /** Callbacks of whenSent(), run once the deflater has nothing pending (null: none yet). */
  waiters: Array<(err: Error | null, flowing: boolean) => void> | null;
  /** Socket writes made by the deflater's later output all found room. */
  flowing: boolean;
  error: Error | null;
}

/** What taps see of the outbound side; false holds the writer until 'drain'. */
export interface SenderTaps {
  /** Every outbound frame, before masking. */
  frame(frame: Frame): boolean;
  /** Every outbound byte chunk. */
  bytes(chunk: Buffer): boolean;
}

/**
 * Client role over a socket: masked payloads written from MaskSlots and not yet called back,
 * oldest first (a socket calls its writes back in order). Each slot goes back in its write's
 * callback.
 */
class SlotsInFlight {
  readonly chunks: Buffer[] = [];
  /** The sender is destroyed: its slots were given back already. */
  released = false;
  /** A write from a slot is called back: its slot is free. */
  readonly written = (): void => {
    const chunk = this.chunks.shift();
    if (chunk !== undefined && !this.released) maskSlots!.release(chunk);
  };
}

/**
 * The sender is its framer's and serializer's handler itself (methods on the shared prototype,
 * not a closure per connection); closures, and the objects of the state they need, exist only
 * for the client's masker and for permessage-deflate.
 *
 * It is the MessageFramerHandler and FrameSerializerHandler of its cores, without an
 * `implements` clause: those methods are marked internal, left out of the published declarations,
 * where the clause would no longer hold; passing `this` to the cores checks the shape.
 */
export class Sender {
  private readonly framer: MessageFramerCore;
  private readonly serializer: FrameSerializerCore;
  /** Client role: the masker, and its slots in flight (null when it never masks into slots: not a socket). */
  private readonly masking: { readonly masker: MaskerCore; readonly slots: SlotsInFlight | null } | null = null;
  private readonly deflating: Deflating | null = null;
  /** False once a write of the current send found the socket (or a blocking tap) full. */
  private flowing = true;
  /** Taps on the outbound side, if any. */
  taps: SenderTaps | null = null;
  /** permessage-deflate's sending parameters, when negotiated and allowed to compress (null: messages go uncompressed). */
  readonly compression: { side: NonNullable<DeflateSides['deflate']>; options: PerMessageDeflateOptions } | null;

  /** `deflate`: permessage-deflate's sending parameters (deflateSides(...).deflate) and options, when negotiated. */
  constructor(
    private readonly socket: ByteSink,
    role: Role,
    options: SenderOptions = {},
    deflate?: { side: NonNullable<DeflateSides['deflate']>; options: PerMessageDeflateOptions },
  ) {
    this.serializer = new FrameSerializerCore({}, this);
    this.compression = deflate ?? null;
    // Slots only where the write callback means "the bytes are gone": a socket (TCP or TLS)
    // copies them into the kernel (or the TLS record) before calling back; another Writable may
    // keep the chunk itself.
    if (role === 'client') {
      const slots = socket instanceof Socket ? maskSlots : null;
      const masker = new MaskerCore({ generateMask: options.generateMask, slots }, { onFrame: (frame: Frame) => this.serializer.write(frame) });
      this.masking = { masker, slots: slots === null ? null : new SlotsInFlight() };
    }
    if (deflate !== undefined) {
      const { side, options: o } = deflate;
      const deflater = new DeflaterCore(
        {
          windowBits: side.windowBits,
          noContextTakeover: side.noContextTakeover,
          threshold: o.threshold,
          level: o.level,
          memLevel: o.memLevel,
          limiter: o.maxConcurrency === undefined ? undefined : sharedLimiter(o.maxConcurrency),
        },
        { onFrame: (frame: Frame) => this.deflated(frame) },
      );
      const deflatedAll = (err: WebSocketError | null): void => this.deflatedAll(err);
      this.deflating = { deflater, deflatedAll, waiters: null, flowing: true, error: null };
    }
    this.framer = new MessageFramerCore({ fragmentSize: options.fragmentSize ?? 0 }, this);
  }

  /** @internal The framer's output: a data frame, to compress (permessage-deflate) or send. */
  onFrame(frame: Frame): void {
    const deflating = this.deflating;
    if (deflating === null) this.frame(frame);
    else void deflating.deflater.write(frame, deflating.deflatedAll);
  }

  /** @internal The serializer's output: bytes for the socket. */
  onData(chunk: Buffer): void {
    // Any false within one send means 'drain' will follow (Node sets needDrain).
    const slots = this.masking === null ? null : this.masking.slots;
    if (slots !== null && maskSlots!.owns(chunk)) {
      slots.chunks.push(chunk);
      if (!this.socket.write(chunk, slots.written)) this.flowing = false;
      // A tap may keep what it is given: it gets a copy, as the slot will be reused.
      if (this.taps !== null && !this.taps.bytes(Buffer.from(chunk))) this.flowing = false;
      return;
    }
    if (!this.socket.write(chunk)) this.flowing = false;
    if (this.taps !== null && !this.taps.bytes(chunk)) this.flowing = false;
  }

  /** permessage-deflate: frames handed over are still being compressed. */
  get pending(): boolean {
    return this.deflating !== null && this.deflating.deflater.pending > 0;
  }

  /**
   * Calls back once every frame handed over so far is on the socket (at once when nothing is
   * pending), with whether the socket still had room.
   */
  whenSent(callback: (err: Error | null, flowing: boolean) => void): void {
    const deflating = this.deflating;
    if (deflating === null || deflating.deflater.pending === 0) {
      callback(deflating === null ? null : deflating.error, this.flowing);
      return;
    }
    deflating.flowing = this.flowing;
    (deflating.waiters ??= []).push(callback);
  }

  /**
   * The connection is gone (the socket is closed, so nothing reads its pending writes any
   * more): frees zlib, dropping frames still being compressed, and gives back the slots of
   * writes not called back.
   */
  destroy(): void {
    this.deflating?.deflater.destroy();
    const slots = this.masking?.slots ?? null;
    if (slots === null || slots.released) return;
    slots.released = true;
    for (const chunk of slots.chunks) maskSlots!.release(chunk);
    slots.chunks.length = 0;
  }

  /** A frame the deflater has finished with: onto the socket, in its own corked write. */
  private deflated(frame: Frame): void {
    this.flowing = true;
    this.socket.cork();
    this.frame(frame);
    this.socket.uncork();
    if (!this.flowing) this.deflating!.flowing = false;
  }

  /** The deflater is through with one frame. */
  private deflatedAll(err: WebSocketError | null): void {
    const deflating = this.deflating!;
    if (err !== null && deflating.error === null) deflating.error = err;
    const waiters = deflating.waiters;
    if (deflating.deflater.pending > 0 || waiters === null || waiters.length === 0) return;
    deflating.waiters = null;
    const flowing = deflating.flowing;
    for (const waiter of waiters) waiter(deflating.error, flowing);
  }

  /** Sends one whole message; returns false when the socket asks the writer to wait for 'drain'. */
  sendMessage(message: Message): boolean {
    this.flowing = true;
    this.socket.cork();
    const err = this.framer.write(message);
    this.socket.uncork();
    if (err !== null) throw err;
    return this.flowing;
  }

  /** Sends several messages in one corked batch (the Duplex's _writev). */
  sendMessages(messages: Message[]): boolean {
    this.flowing = true;
    this.socket.cork();
    for (const message of messages) {
      const err = this.framer.write(message);
      if (err !== null) {
        this.socket.uncork();
        throw err;
      }
    }
    this.socket.uncork();
    return this.flowing;
  }

  /** Sends one part of a streamed message (the first part opens it, `fin` ends it). */
  sendPart(data: Buffer, binary: boolean, fin: boolean): boolean {
    this.flowing = true;
    this.socket.cork();
    const err = this.framer.writePart(data, binary, fin);
    this.socket.uncork();
    if (err !== null) throw err;
    return this.flowing;
  }

  /**
   * Writes frames encoded already (fan-out: one publish's frame, shared by every subscriber) as
   * they are, in one corked write; returns false when the socket asks the writer to wait for
   * 'drain'. The caller sees to their order against messages (nothing pending in zlib).
   * `frames` are what the bytes encode, for the frames tap.
   */
  sendBytes(buffers: readonly Buffer[], frames: readonly Frame[] | null = null): boolean {
    this.flowing = true;
    if (frames !== null && this.taps !== null) for (const frame of frames) if (!this.taps.frame(frame)) this.flowing = false;
    if (buffers.length === 1) {
      this.onData(buffers[0]!);
      return this.flowing;
    }
    this.socket.cork();
    for (const chunk of buffers) this.onData(chunk);
    this.socket.uncork();
    return this.flowing;
  }

  /** Sends one frame as it is (control frames: pong, ping, close). */
  sendFrame(frame: Frame): boolean {
    this.flowing = true;
    // A close frame must not overtake the messages still being compressed (nothing may follow
    // it, RFC 6455 §5.5.1); pings and pongs go at once.
    const deflating = this.deflating;
    if (deflating !== null && frame.opcode === Opcode.Close && deflating.deflater.pending > 0) {
      deflating.deflater.write(frame, deflating.deflatedAll);
      return this.flowing;
    }
    this.socket.cork();
    this.frame(frame);
    this.socket.uncork();
    return this.flowing;
  }

  private frame(frame: Frame): void {
    if (this.taps !== null && !this.taps.frame(frame)) this.flowing = false;
    const err = this.masking !== null ? this.masking.masker.write(frame) : this.serializer.write(frame);
    if (err !== null) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', err.message);
  }
}
