/**
 * The outbound chain fused into plain calls: MessageFramer -> Masker (client role) ->
 * FrameSerializer -> socket. Every frame reaches the socket whole and in one synchronous step,
 * so a control frame sent between two calls can fall between two fragments of a message but
 * never inside a frame's bytes. A message's header and payload go out in one corked writev.
 */
import { WebSocketError } from './errors';
import { Frame, Message } from './frame';
import { FrameSerializerCore } from './frame-serializer';
import { MaskGenerator } from './mask';
import { MaskerCore } from './masker';
import { MessageFramerCore } from './message-framer';
import type { Role } from './receiver';

/** Anything bytes can be written to: a net.Socket, a tls.TLSSocket, or any Writable. */
export interface ByteSink {
  write(chunk: Buffer): boolean;
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

export class Sender {
  private readonly framer: MessageFramerCore;
  private readonly serializer: FrameSerializerCore;
  private readonly masker: MaskerCore | null;
  /** False once a write of the current send found the socket (or a blocking tap) full. */
  private flowing = true;
  /** Sees every outbound frame before masking (taps); false holds the writer until 'drain'. */
  frameObserver: ((frame: Frame) => boolean) | null = null;
  /** Sees every outbound byte chunk (taps); false holds the writer until 'drain'. */
  bytesObserver: ((chunk: Buffer) => boolean) | null = null;

  constructor(
    private readonly socket: ByteSink,
    role: Role,
    options: SenderOptions = {},
  ) {
    this.serializer = new FrameSerializerCore(
      {},
      {
        onData: (chunk: Buffer) => {
          // Any false within one send means 'drain' will follow (Node sets needDrain).
          if (!this.socket.write(chunk)) this.flowing = false;
          if (this.bytesObserver !== null && !this.bytesObserver(chunk)) this.flowing = false;
        },
      },
    );
    this.masker =
      role === 'client'
        ? new MaskerCore({ generateMask: options.generateMask }, { onFrame: (frame: Frame) => this.serializer.write(frame) })
        : null;
    this.framer = new MessageFramerCore(
      { fragmentSize: options.fragmentSize ?? 0 },
      { onFrame: (frame: Frame) => this.frame(frame) },
    );
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
