/**
 * The inbound chain fused into plain calls: FrameSplitter -> Unmasker -> FragmentAssembler ->
 * ControlFrameResponder, the same cores that the stream stages wrap, without a stream hop per
 * stage. A core that fails stops the splitter mid-chunk, so nothing after a bad frame is
 * delivered.
 */
import { ControlFrameResponderCore, ControlFrameResponderHandler } from './control-frame-responder';
import { WebSocketError } from './errors';
import { FragmentAssemblerCore, MessagePiece } from './fragment-assembler';
import { Frame, Message } from './frame';
import { FrameSplitterCore } from './frame-splitter';
import { UnmaskerCore } from './unmasker';

export type Role = 'server' | 'client';

/** Limits and checks of the inbound side; each defaults as documented on its stage. */
export interface ReceiverOptions {
  /** Largest payload of a single frame, in bytes. Default 100 MiB. */
  maxPayload?: number;
  /** Largest message delivered whole, in bytes. Default 100 MiB. */
  maxMessageSize?: number;
  /** Most frames one message may be made of (empty ones count). Default 65536. */
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

/** The responder's outputs, plus the pieces of streamed messages. */
export interface ReceiverHandler extends ControlFrameResponderHandler {
  onMessagePiece?(piece: MessagePiece): void;
}

export class Receiver {
  readonly splitter: FrameSplitterCore;
  readonly unmasker: UnmaskerCore;
  readonly assembler: FragmentAssemblerCore;
  readonly responder: ControlFrameResponderCore;
  /** Sees every frame after unmasking, before reassembly (taps). */
  frameObserver: ((frame: Frame) => void) | null = null;

  constructor(role: Role, options: ReceiverOptions, handler: ReceiverHandler) {
    this.responder = new ControlFrameResponderCore({ autoPong: options.autoPong ?? true }, handler);
    this.assembler = new FragmentAssemblerCore(
      {
        maxMessageSize: options.maxMessageSize,
        maxFragments: options.maxFragments,
        skipUtf8Validation: options.skipUtf8Validation,
        streaming: options.streamMessages,
        maxStreamedMessageSize: options.maxStreamedMessageSize,
      },
      {
        onMessage: (message: Message) => this.pass(this.responder.write(message)),
        onControl: (frame: Frame) => this.pass(this.responder.write(frame)),
        onMessagePiece: handler.onMessagePiece,
      },
    );
    this.unmasker = new UnmaskerCore(
      { role },
      {
        onFrame: (frame: Frame) => {
          if (this.frameObserver !== null) this.frameObserver(frame);
          this.pass(this.assembler.write(frame));
        },
      },
    );
    this.splitter = new FrameSplitterCore(
      { maxPayload: options.maxPayload, streaming: true },
      { onFrame: (frame: Frame) => this.pass(this.unmasker.write(frame)) },
    );
  }

  /** Feeds bytes from the socket; returns the first error of any core, or null. */
  write(chunk: Buffer): WebSocketError | null {
    return this.splitter.write(chunk);
  }

  /** The first error any core met. */
  get error(): WebSocketError | null {
    return this.splitter.error;
  }

  /** A downstream error stops the splitter at once. */
  private pass(err: WebSocketError | null): void {
    if (err !== null) this.splitter.fail(err);
  }
}
