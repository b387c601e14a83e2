/**
 * ControlFrameResponder: the last inbound stage. Data messages pass through; pings, pongs and
 * close frames become events; the replies the protocol requires (a pong for a ping, the close
 * echo, the close frame that fails the connection) become frames on a separate `replies` stream,
 * meant to be piped into the outbound chain at frame level. Failing the connection is data moving
 * toward the peer, never a socket call.
 *
 * Replies are unmasked frames; for the client role the outbound Masker masks them.
 */
import { Buffer } from 'node:buffer';
import { Readable } from './streams';
import { CloseCode, Opcode, isValidWireCloseCode } from '../protocol/constants';
import type { Emitting } from '../protocol/events';
import { WebSocketError } from '../protocol/errors';
import { type Frame, type Inbound, type Message, isMessage, makeFrame } from '../protocol/frame';
import { checkCloseArgs, encodeClosePayload, parseClosePayload } from '../protocol/close';
import { Stage } from './stage';

/** Options of ControlFrameResponderCore and ControlFrameResponder. */
export interface ControlFrameResponderOptions {
  /** Answer every ping with a pong carrying the same payload (RFC 6455 §5.5.3). Default true. */
  autoPong?: boolean;
  /**
   * The stage only (the core asks its handler's onClose). 'auto' (default): the peer's close is
   * echoed at once. 'manual': it is not; the message side ends, and the application answers with
   * answerClose() once its own outbound side has handed on what it had (RFC 6455 §5.5.1 lets an
   * endpoint send what it has before its close), e.g. when the message framer of an echo ends.
   */
  closeAnswer?: 'auto' | 'manual';
}

/** Where ControlFrameResponderCore sends its outputs. */
export interface ControlFrameResponderHandler {
  /** A data message, received before the peer's close. */
  onMessage(message: Message): void;
  /** The peer pinged us, with this payload. */
  onPing(payload: Buffer): void;
  /** The peer sent a pong, with this payload. */
  onPong(payload: Buffer): void;
  /**
   * The peer's close frame: its code (1005 when it sent none) and reason. Return true to answer
   * it later with close() (after data already queued, as RFC 6455 §5.5.1 allows); otherwise
   * the core echoes it at once.
   */
  onClose(code: number, reason: string): boolean | void;
  /** A frame to send to the peer (unmasked). */
  onReply(frame: Frame): void;
}

// Bits of ControlFrameResponderCore's `flags`: three booleans in one field.
const CLOSE_RECEIVED = 1;
const CLOSE_SENT = 2;
const AUTO_PONG = 4;

/** The I/O-free responder; see the module comment. */
export class ControlFrameResponderCore {
  error: WebSocketError | null = null;
  /** CLOSE_RECEIVED, CLOSE_SENT, AUTO_PONG. */
  private flags: number;
  /** The peer's close code (1005 when it sent none) and reason, once its close came; what answerClose() echoes. */
  private peerCode = 0;
  private peerReason = '';
  private readonly handler: ControlFrameResponderHandler;

  constructor(options: ControlFrameResponderOptions, handler: ControlFrameResponderHandler) {
    this.flags = (options.autoPong ?? true) ? AUTO_PONG : 0;
    this.handler = handler;
  }

  /** The peer's close frame has arrived. */
  get closeReceived(): boolean {
    return (this.flags & CLOSE_RECEIVED) !== 0;
  }

  /** A close frame has been sent to the peer (or queued to be). */
  get closeSent(): boolean {
    return (this.flags & CLOSE_SENT) !== 0;
  }

  /** Takes one message or control frame; returns the first error met, or null. */
  write(value: Inbound): WebSocketError | null {
    if (this.error !== null) return this.error;
    // RFC 6455 §1.4: after its Close frame the peer sends no more data ("the endpoint MUST NOT
    // send any more data frames after sending a Close frame"); anything after it is discarded.
    if ((this.flags & CLOSE_RECEIVED) !== 0) return null;
    if (isMessage(value)) {
      this.handler.onMessage(value);
      return this.error;
    }
    switch (value.opcode) {
      case Opcode.Ping:
        this.handler.onPing(value.payload);
        // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
        // response, unless it already received a Close frame." §5.5.3: "A Pong frame sent in
        // response to a Ping frame must have identical 'Application data'". The payload is
        // copied: the reply may be masked in place, and the ping's buffer was handed to the app.
        if ((this.flags & (AUTO_PONG | CLOSE_SENT)) === AUTO_PONG && this.error === null) {
          this.handler.onReply(makeFrame(Opcode.Pong, Buffer.from(value.payload)));
        }
        break;
      case Opcode.Pong:
        this.handler.onPong(value.payload);
        break;
      case Opcode.Close:
        this.receiveClose(value.payload);
        break;
      default:
        // Data frames never reach this stage (FragmentAssembler turns them into messages).
        break;
    }
    return this.error;
  }

  /** Stops the responder: keeps the first error, ignores all later input. */
  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
  }

  /** The outbound side sent a close frame itself: the peer's close will not be echoed. */
  noteCloseSent(): void {
    this.flags |= CLOSE_SENT;
  }

  /**
   * Fails the connection with `err` (RFC 6455 §7.1.7): queues a close frame carrying
   * `err.closeCode` and `err.code` as reason (unless a close was already sent) and ignores all
   * later input. A close code that may not be on the wire (1006 for a lost connection or a
   * timeout) sends nothing, but still counts as the close being sent: nothing more goes out.
   */
  failConnection(err: WebSocketError): void {
    this.fail(err);
    if ((this.flags & CLOSE_SENT) !== 0) return;
    this.flags |= CLOSE_SENT;
    if (isValidWireCloseCode(err.closeCode)) {
      this.handler.onReply(makeFrame(Opcode.Close, encodeClosePayload(err.closeCode, err.code)));
    }
  }

  /**
   * The application closes (RFC 6455 §7.1.2): queues a close frame with `code` and `reason`.
   * Returns WS_ERR_INVALID_ARGUMENT for arguments checkCloseArgs rejects (nothing is sent). When a
   * close was already sent, does nothing and returns null.
   */
  close(code?: number, reason?: string): WebSocketError | null {
    const err = checkCloseArgs(code, reason);
    if (err !== null) return err;
    if ((this.flags & CLOSE_SENT) !== 0) return null;
    this.flags |= CLOSE_SENT;
    this.handler.onReply(makeFrame(Opcode.Close, encodeClosePayload(code, reason)));
    return null;
  }

  /**
   * The application's own ping, or an unsolicited pong (RFC 6455 §5.5.2, §5.5.3), queued as a
   * reply: it goes out between data frames, never inside one. Returns WS_ERR_INVALID_ARGUMENT for
   * a payload over 125 bytes (§5.5) and WS_ERR_INVALID_STATE once a close was sent (nothing
   * follows a close frame); nothing is sent then.
   */
  sendControl(opcode: Opcode.Ping | Opcode.Pong, payload: Buffer): WebSocketError | null {
    if (payload.length > 125) return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'control payload over 125 bytes');
    if ((this.flags & CLOSE_SENT) !== 0 || this.error !== null) return new WebSocketError('WS_ERR_INVALID_STATE', 'a close frame was sent');
    this.handler.onReply(makeFrame(opcode, payload));
    return null;
  }

  /**
   * Answers the peer's close (RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not
   * previously send a Close frame, the endpoint MUST send a Close frame in response. (When sending
   * a Close frame in response, the endpoint typically echos the status code it received.)"): the
   * echo of its code and its reason, as ws, python-websockets and Chromium send (the reason was
   * checked on receipt: valid UTF-8, at most 123 bytes). 1005 means the peer sent no code, and
   * never goes on the wire: the echo is then empty too. Does nothing before the peer's close, once a close was sent, or after an
   * error. The core calls it itself unless the handler's onClose returned true.
   */
  answerClose(): void {
    if ((this.flags & (CLOSE_RECEIVED | CLOSE_SENT)) !== CLOSE_RECEIVED || this.error !== null) return;
    this.flags |= CLOSE_SENT;
    const code = this.peerCode === CloseCode.NoStatus ? undefined : this.peerCode;
    this.handler.onReply(makeFrame(Opcode.Close, encodeClosePayload(code, code === undefined ? undefined : this.peerReason)));
  }

  private receiveClose(payload: Buffer): void {
    const parsed = parseClosePayload(payload);
    if (parsed instanceof WebSocketError) {
      this.failConnection(parsed);
      return;
    }
    this.flags |= CLOSE_RECEIVED;
    this.peerCode = parsed.code;
    this.peerReason = parsed.reason;
    if (this.handler.onClose(parsed.code, parsed.reason) !== true) this.answerClose();
  }
}

/** A ControlFrameResponder's stream options: shared by every instance (readable-stream only reads them). */
const RESPONDER_STREAM_OPTIONS = Object.freeze({ objectMode: true });

/** `replies` is pushed to, never asked to read. */
function noRead(): void {}

/** The options of every `replies` stream, shared like RESPONDER_STREAM_OPTIONS. */
const REPLIES_STREAM_OPTIONS = Object.freeze({ objectMode: true, read: noRead });

/**
 * Turns the core's outputs into the stage's pushes and events (prototype methods, not five
 * closures made for every stage).
 */
class ResponderOutputs implements ControlFrameResponderHandler {
  constructor(
    private readonly stage: Stage,
    private readonly replies: Readable,
    private readonly manual: boolean,
  ) {}

  onMessage(message: Message): void {
    this.stage.deliver(message);
  }

  onPing(payload: Buffer): void {
    this.stage.emit('ping', payload);
  }

  onPong(payload: Buffer): void {
    this.stage.emit('pong', payload);
  }

  onClose(code: number, reason: string): boolean {
    this.stage.emit('peerclose', code, reason);
    return this.manual;
  }

  onReply(frame: Frame): void {
    this.replies.push(frame);
  }
}

/** Events of a ControlFrameResponder, besides a Transform's own. */
export interface ControlFrameResponderEvents {
  /** The peer pinged (the pong goes out on `replies` unless `autoPong: false`). */
  ping: (payload: Buffer) => void;
  pong: (payload: Buffer) => void;
  /** The peer's close frame: its code (1005 when it had none) and reason. */
  peerclose: (code: number, reason: string) => void;
}

/**
 * ControlFrameResponder as a Transform: writes Message and control Frame values, reads Message
 * values (object mode on both sides). Events: 'ping' (payload: Buffer), 'pong' (payload: Buffer),
 * 'peerclose' (code: number, reason: string) for the peer's close frame. (Not 'close': a stream
 * emits 'close' when destroyed, and pipeline() takes an early 'close' for a premature close.)
 *
 * `replies` yields the frames to send (pong, close echo, failing close, application close); pipe
 * it into the outbound chain at frame level with `{ end: false }`. It ends once a close frame has
 * been queued (nothing can follow a close). The readable side ends with the peer's close (the
 * peer sends nothing after it). With `closeAnswer: 'manual'` the peer's close is answered by
 * answerClose(), after the replies to the messages before it.
 */
export class ControlFrameResponder extends (Stage as Emitting<typeof Stage, ControlFrameResponderEvents>) {
  readonly core: ControlFrameResponderCore;
  /** The frames to send to the peer (unmasked), object mode. */
  readonly replies: Readable;
  private repliesEnded = false;
  private messagesEnded = false;

  constructor(options: ControlFrameResponderOptions = {}) {
    super(RESPONDER_STREAM_OPTIONS);
    this.replies = new Readable(REPLIES_STREAM_OPTIONS);
    this.core = new ControlFrameResponderCore(options, new ResponderOutputs(this, this.replies, options.closeAnswer === 'manual'));
  }

  protected override step(chunk: Inbound): WebSocketError | null {
    const err = this.core.write(chunk);
    this.settle();
    return err;
  }

  /** See ControlFrameResponderCore.noteCloseSent. */
  noteCloseSent(): void {
    this.core.noteCloseSent();
    this.settle();
  }

  /** See ControlFrameResponderCore.failConnection. */
  failConnection(err: WebSocketError): void {
    this.core.failConnection(err);
    this.settle();
  }

  /** See ControlFrameResponderCore.close. */
  close(code?: number, reason?: string): WebSocketError | null {
    const err = this.core.close(code, reason);
    this.settle();
    return err;
  }

  /** See ControlFrameResponderCore.sendControl: a ping or pong of the application's, on `replies`. */
  sendControl(opcode: Opcode.Ping | Opcode.Pong, payload: Buffer): WebSocketError | null {
    return this.core.sendControl(opcode, payload);
  }

  /** closeAnswer 'manual': answers the peer's close; see ControlFrameResponderCore.answerClose. */
  answerClose(): void {
    this.core.answerClose();
    this.settle();
  }

  /** Ends `replies` once a close is sent, and the message side once the peer's close came (nothing follows it). */
  private settle(): void {
    const core = this.core;
    if (core.closeSent && !this.repliesEnded) {
      this.repliesEnded = true;
      this.replies.push(null);
    }
    if (core.closeReceived && !this.messagesEnded) {
      this.messagesEnded = true;
      this.push(null);
    }
  }
}
