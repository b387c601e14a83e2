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
import { WebSocketError } from './errors';
import { Frame, Message } from './frame';
import { FrameSerializerCore, FrameSerializerHandler } from './frame-serializer';
import { MaskGenerator, maskSlots } from './mask';
import { Socket } from 'node:net';
import { MaskerCore } from './masker';
import { MessageFramerCore, MessageFramerHandler } from './message-framer';
import { DeflaterCore } from './deflater';
import { Opcode } from './constants';
import { type DeflateSides, type PerMessageDeflateOptions, sharedLimiter } from './permessage-deflate';
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

/**
 * The sender is its framer's and serializer's handler itself (methods on the shared prototype,
 * not a closure per connection); closures exist only for the client's masker and for
 * permessage-deflate.
 */
export class Sender implements MessageFramerHandler, FrameSerializerHandler {
  private readonly framer: MessageFramerCore;
  private readonly serializer: FrameSerializerCore;
  private readonly masker: MaskerCore | null;
  /** permessage-deflate's sending side, when negotiated (and allowed to compress). */
  private readonly deflater: DeflaterCore | null = null;
  /** Callbacks of whenSent(), run once the deflater has nothing pending (null: none yet). */
  private sentWaiters: Array<(err: Error | null, flowing: boolean) => void> | null = null;
  /** Socket writes made by the deflater's later output all found room. */
  private asyncFlowing = true;
  private deflateError: Error | null = null;
  /** False once a write of the current send found the socket (or a blocking tap) full. */
  private flowing = true;
  /** Sees every outbound frame before masking (taps); false holds the writer until 'drain'. */
  frameObserver: ((frame: Frame) => boolean) | null = null;
  /** Sees every outbound byte chunk (taps); false holds the writer until 'drain'. */
  bytesObserver: ((chunk: Buffer) => boolean) | null = null;
  /**
   * Masked payloads written from MaskSlots and not yet called back, oldest first (a socket
   * calls its writes back in order). Each slot goes back in its write's callback. Null when
   * this sender never masks into slots (server role, or not a socket).
   */
  private readonly slotsInFlight: Buffer[] | null = null;
  /** A write from a slot is called back: its slot is free (null when slots are not used). */
  private readonly slotWritten: (() => void) | null = null;
  /** permessage-deflate: called back by the deflater once per frame (null without a deflater). */
  private readonly afterDeflate: ((err: WebSocketError | null) => void) | null = null;
  private destroyed = false;

  /** `deflate`: permessage-deflate's sending parameters (deflateSides(...).deflate) and options, when negotiated. */
  constructor(
    private readonly socket: ByteSink,
    role: Role,
    options: SenderOptions = {},
    deflate?: { side: NonNullable<DeflateSides['deflate']>; options: PerMessageDeflateOptions },
  ) {
    this.serializer = new FrameSerializerCore({}, this);
    // Slots only where the write callback means "the bytes are gone": a socket (TCP or TLS)
    // copies them into the kernel (or the TLS record) before calling back; another Writable may
    // keep the chunk itself.
    const slots = role === 'client' && socket instanceof Socket ? maskSlots : null;
    if (slots !== null) {
      const inFlight: Buffer[] = [];
      this.slotsInFlight = inFlight;
      this.slotWritten = (): void => {
        const chunk = inFlight.shift();
        if (chunk !== undefined && !this.destroyed) slots.release(chunk);
      };
    }
    this.masker =
      role === 'client'
        ? new MaskerCore({ generateMask: options.generateMask, slots }, { onFrame: (frame: Frame) => this.serializer.write(frame) })
        : null;
    if (deflate !== undefined) {
      const { side, options: o } = deflate;
      this.deflater = new DeflaterCore(
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
      this.afterDeflate = (err: WebSocketError | null): void => this.deflatedAll(err);
    }
    this.framer = new MessageFramerCore({ fragmentSize: options.fragmentSize ?? 0 }, this);
  }

  /** @internal The framer's output: a data frame, to compress (permessage-deflate) or send. */
  onFrame(frame: Frame): void {
    if (this.deflater === null) this.frame(frame);
    else void this.deflater.write(frame, this.afterDeflate!);
  }

  /** @internal The serializer's output: bytes for the socket. */
  onData(chunk: Buffer): void {
    // Any false within one send means 'drain' will follow (Node sets needDrain).
    if (this.slotsInFlight !== null && maskSlots!.owns(chunk)) {
      this.slotsInFlight.push(chunk);
      if (!this.socket.write(chunk, this.slotWritten!)) this.flowing = false;
      // A tap may keep what it is given: it gets a copy, as the slot will be reused.
      if (this.bytesObserver !== null && !this.bytesObserver(Buffer.from(chunk))) this.flowing = false;
      return;
    }
    if (!this.socket.write(chunk)) this.flowing = false;
    if (this.bytesObserver !== null && !this.bytesObserver(chunk)) this.flowing = false;
  }

  /** permessage-deflate: frames handed over are still being compressed. */
  get pending(): boolean {
    return this.deflater !== null && this.deflater.pending > 0;
  }

  /**
   * Calls back once every frame handed over so far is on the socket (at once when nothing is
   * pending), with whether the socket still had room.
   */
  whenSent(callback: (err: Error | null, flowing: boolean) => void): void {
    if (!this.pending) {
      callback(this.deflateError, this.flowing);
      return;
    }
    this.asyncFlowing = this.flowing;
    (this.sentWaiters ??= []).push(callback);
  }

  /**
   * The connection is gone (the socket is closed, so nothing reads its pending writes any
   * more): frees zlib, dropping frames still being compressed, and gives back the slots of
   * writes not called back.
   */
  destroy(): void {
    this.deflater?.destroy();
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.slotsInFlight === null) return;
    for (const chunk of this.slotsInFlight) maskSlots!.release(chunk);
    this.slotsInFlight.length = 0;
  }

  /** A frame the deflater has finished with: onto the socket, in its own corked write. */
  private deflated(frame: Frame): void {
    this.flowing = true;
    this.socket.cork();
    this.frame(frame);
    this.socket.uncork();
    if (!this.flowing) this.asyncFlowing = false;
  }

  /** The deflater is through with one frame. */
  private deflatedAll(err: WebSocketError | null): void {
    if (err !== null && this.deflateError === null) this.deflateError = err;
    if (this.deflater!.pending > 0 || this.sentWaiters === null || this.sentWaiters.length === 0) return;
    const waiters = this.sentWaiters;
    this.sentWaiters = null;
    const flowing = this.asyncFlowing;
    for (const waiter of waiters) waiter(this.deflateError, flowing);
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

  /** Sends one frame as it is (control frames: pong, ping, close). */
  sendFrame(frame: Frame): boolean {
    this.flowing = true;
    // A close frame must not overtake the messages still being compressed (nothing may follow
    // it, RFC 6455 §5.5.1); pings and pongs go at once.
    if (this.deflater !== null && frame.opcode === Opcode.Close && this.deflater.pending > 0) {
      this.deflater.write(frame, this.afterDeflate!);
      return this.flowing;
    }
    this.socket.cork();
    this.frame(frame);
    this.socket.uncork();
    return this.flowing;
  }

  private frame(frame: Frame): void {
    if (this.frameObserver !== null && !this.frameObserver(frame)) this.flowing = false;
    const err = this.masker !== null ? this.masker.write(frame) : this.serializer.write(frame);
    if (err !== null) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', err.message);
  }
}
