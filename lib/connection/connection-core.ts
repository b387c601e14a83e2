/**
 * ConnectionCore: one WebSocket connection's protocol decisions above the frames, without I/O.
 * No socket, no timer, no stream: time is passed in (`now`, in ms), and every decision comes
 * out through the handler, synchronously. WebSocket (the fused Duplex), a proxy relay or a
 * composed pipeline drives one and does the I/O it asks for.
 *
 *   in                                          out (ConnectionCoreHandler)
 *   ------------------------------------------  ------------------------------------------------
 *   receive(message | control frame, now)       onMessage / onPing / onPong / onPeerClose
 *   close(code, reason, now)   (application)    sendFrame(frame)      pong, close, heartbeat ping
 *   fail(err, now)             (any layer)      onError(err)          once, never after a clean close
 *   transportError(err)                         endTransport()        half-close (handshake done, failed)
 *   transportClosed()                           destroyTransport()    close timeout, dead peer
 *   tick(now)                  (at deadline)    setReading(on)        hold / resume reading
 *   hold(reason) / release(reason)              onClosed(code, reason, clean)
 *   unread(+-bytes)            (memory budget)
 *   readAhead(+-bytes)         (kept aside while inflating)
 *
 * What it owns:
 * - The closing handshake (RFC 6455 §5.5.1, §7.1): closeSent / closeReceived, the peer's code
 *   and reason, the echo (code AND reason, as ws, python-websockets and Chromium do), who closes
 *   TCP (§7.1.1: the server, at once once close frames went both ways; the client waits for it),
 *   and what 'close' reports (§7.1.5: the code of the close received, 1005 if it had none, 1006
 *   without one; our own code when we failed first).
 * - Failing (§7.1.7): one error, a close frame with its closeCode and its code as reason (when
 *   that code may be on the wire), and all later input discarded. A TCP error once the
 *   handshake completed is not an error.
 * - Liveness as deadlines: `deadline` is the next time tick() has something to do (heartbeat
 *   ping, heartbeat timeout, idle timeout, close timeout), Infinity for none; the adapter arms
 *   one timer for it after each call.
 * - Reading holds and the memory budget: reading stops while any reason holds it (the budget,
 *   unanswered replies, an inflater at work, a blocking tap, an external budget) and resumes once
 *   none does; setReading() reports the transitions only. The inflater alone holds it only once
 *   READ_AHEAD bytes are kept aside (readAhead()), so that a peer leaving behind frames being
 *   inflated is seen. The budget counts received data not read yet (unread()), data read
 *   ahead, what is being assembled and what waits to be sent (the adapter's `sizes`): reading
 *   waits while that reaches memoryBudget and some of it goes away without reading more; once
 *   our close is sent it never waits (the peer's close must be found).
 * - Outbound ordering of streamed messages: claim(owner) / finish(owner): one streamed message
 *   owns the data side at a time; the others (and plain sends) wait their turn; control frames
 *   never wait (the adapter's sender writes whole frames, so they fall between fragments).
 */
import { Buffer } from 'node:buffer';
import { CloseCode, Defaults, Opcode, isValidWireCloseCode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { type Frame, type Inbound, type Message, isMessage, makeFrame } from '../protocol/frame';
import { checkCloseArgs, encodeClosePayload, parseClosePayload } from '../protocol/close';
import type { Role } from './receiver';

/** Why reading from the transport is held: bits, any one holds it. */
export enum ReadHold {
  /** Received and unsent data reach memoryBudget. */
  Budget = 1 << 0,
  /** Our replies (pongs) wait for the transport to drain. */
  Replies = 1 << 1,
  /** permessage-deflate: received frames wait to be inflated (alone: once the read-ahead is full). */
  Inflate = 1 << 2,
  /** A blocking tap, or another reader of the adapter's, is full. */
  Reader = 1 << 3,
  /** Something outside the connection (a server-wide budget) asked to hold. */
  External = 1 << 4,
  /** A chunk took long to parse: reading waits for the next turn of the event loop (fairness). */
  Turn = 1 << 5,
}

/** The connection's state, as the browser API numbers it. */
export enum CoreState {
  Open = 1,
  Closing = 2,
  Closed = 3,
}

/** The options the core reads (WebSocketOptions has them all, so a WebSocket passes its own). */
export interface ConnectionCoreOptions {
  /** Answer pings with pongs (RFC 6455 §5.5.2). Default true. */
  autoPong?: boolean;
  /** ms from the start of the closing handshake to destroyTransport(). Default Defaults.closeTimeout. */
  closeTimeout?: number;
  /** Ping after `interval` ms without anything from the peer; dead after `timeout` ms more. Default off. */
  heartbeat?: { interval: number; timeout: number };
  /** Close with 1001 after this many ms without traffic either way. Default off. */
  idleTimeout?: number;
  /** Bytes held (see heldBytes) at which reading stops. Default Defaults.memoryBudget. */
  memoryBudget?: number;
}

/** What the core asks of its adapter. Every method is called synchronously from a core call. */
export interface ConnectionCoreHandler {
  /** A data message from the peer (never after its close, never after a failure). */
  onMessage(message: Message): void;
  onPing(payload: Buffer): void;
  onPong(payload: Buffer): void;
  /**
   * The peer's close frame (code 1005 when it had none). Return true to answer it later with
   * answerClose() (after data still to send, RFC 6455 §5.5.1); otherwise it is answered now.
   * Also called when our close went first (`closeSent`): then there is nothing to answer, and
   * what it returns does not matter.
   */
  onPeerClose(code: number, reason: string): boolean | void;
  /** A frame to send now, unmasked, whole (pong, close, heartbeat ping). */
  sendFrame(frame: Frame): void;
  /** The connection's first error (never one after a completed closing handshake). */
  onError(err: Error): void;
  /** Close our side of the transport (FIN): the handshake completed (server), or we failed. */
  endTransport(): void;
  /** Destroy the transport now: close timeout, a dead peer. */
  destroyTransport(): void;
  /** Reading from the transport should stop (false) or start again (true). */
  setReading(on: boolean): void;
  /**
   * The transport is gone: what 'close' reports, and whether the closing handshake completed.
   * (WebSocket emits 'close' itself once it has settled its callbacks, from the core's fields.)
   */
  onClosed(code: number, reason: string, clean: boolean): void;
  /** For the memory budget: bytes accepted for sending that the transport has not taken (bufferedAmount). */
  unsentBytes(): number;
  /** For the memory budget: bytes of the message being assembled. */
  assemblingBytes(): number;
}

// Bits of `flags`.
const CLOSE_SENT = 1;
const CLOSE_RECEIVED = 2;
const FAILED = 4;
const AUTO_PONG = 8;
const ANSWER_LATER = 16;
const SERVER = 32;
/** The holds for memory, released once our close is sent (the peer's close must be read). */
const BUDGET_HOLDS = ReadHold.Budget | ReadHold.External;
/** setReading(false) was the last transition reported. */
const NOT_READING = 64;

/**
 * Most bytes read ahead while the inflater alone holds reading (1 MiB, or a quarter of
 * memoryBudget if less): enough to take in the rest of a bomb's compressed frame (one of about
 * 1 MB inflates to 1 GiB) and see its sender leave behind it.
 */
export const READ_AHEAD = 1024 * 1024;

/** See the module comment. */
export class ConnectionCore {
  state: CoreState = CoreState.Open;
  /** The first error (ours or the peer's), or null. */
  error: Error | null = null;
  /** What 'close' reports (see the module comment). */
  closeCode: number = CloseCode.Abnormal;
  closeReason = '';
  /** Bytes of received data handed to buffers and not read yet (see unread()). */
  unreadBytes = 0;
  /** ReadHold bits now holding reading. */
  holds = 0;
  /** Bytes read while the inflater holds reading, kept aside by the adapter (see readAhead()). */
  aheadBytes = 0;
  /** @internal What reads took (ms) in the event loop's turn numbered turnOf (lib/connection/turn.ts). */
  turnTook = 0;
  /** @internal See turnTook. */
  turnOf = 0;
  /** @internal Bytes read since reading last yielded its turn, counted up to TURN_BYTES (see readTooMuch in lib/connection/turn.ts). */
  turnBytes = 0;
  /** @internal The event loop's turn in which the frame budget was last renewed (see renewsFrameBudget in lib/connection/turn.ts). */
  framesTurnOf = -1;
  private flags: number;
  private readonly options: ConnectionCoreOptions;
  private readonly handler: ConnectionCoreHandler;
  /** The time last passed in (ms): what receive() without a time (from a receiver) goes by. */
  private now: number;
  /** When the peer was last heard from, and when the application last sent (ms). */
  private lastReceived: number;
  private lastSent: number;
  /** When the heartbeat ping went out, 0 when none is outstanding. */
  private pingSentAt = 0;
  /** When the closing handshake must be over (ms; Infinity: not closing). */
  private closeBy = Infinity;
  /** The streamed message that owns the data side, and who waits for it. */
  private owner: object | null = null;
  private waiting: Array<() => void> | null = null;

  /** `now`: the time (ms) the connection opens at. */
  constructor(role: Role, options: ConnectionCoreOptions, handler: ConnectionCoreHandler, now = 0) {
    this.options = options;
    this.handler = handler;
    this.flags = ((options.autoPong ?? true) ? AUTO_PONG : 0) | (role === 'server' ? SERVER : 0);
    this.now = this.lastReceived = this.lastSent = now;
  }

  get closeSent(): boolean {
    return (this.flags & CLOSE_SENT) !== 0;
  }

  get closeReceived(): boolean {
    return (this.flags & CLOSE_RECEIVED) !== 0;
  }

  /** Close frames went both ways (RFC 6455 §7.1.4: the closing handshake is complete). */
  get handshakeDone(): boolean {
    return (this.flags & (CLOSE_SENT | CLOSE_RECEIVED)) === (CLOSE_SENT | CLOSE_RECEIVED);
  }

  /** The peer's close waits for answerClose() (onPeerClose returned true). */
  get answerPending(): boolean {
    return (this.flags & ANSWER_LATER) !== 0 && !this.closeSent;
  }

  // ----- Inbound -----

  /**
   * Takes one message or control frame from the peer (the receiver's output). Returns the
   * error that failed the connection, or null. Everything after the peer's close (§1.4: it
   * sends nothing after it) and after a failure is discarded. (WebSocket passes control frames
   * only: its receiver hands data messages straight to it, which checks closeReceived itself.)
   */
  receive(value: Inbound, now?: number): WebSocketError | null {
    if (now !== undefined) this.now = this.lastReceived = now;
    if ((this.flags & (FAILED | CLOSE_RECEIVED)) !== 0) return null;
    if (isMessage(value)) {
      this.handler.onMessage(value);
      return null;
    }
    switch (value.opcode) {
      case Opcode.Ping:
        this.handler.onPing(value.payload);
        // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response";
        // §5.5.3: with identical "Application data" (copied: the ping's buffer went to the app).
        if ((this.flags & (AUTO_PONG | CLOSE_SENT)) === AUTO_PONG) this.handler.sendFrame(makeFrame(Opcode.Pong, Buffer.from(value.payload)));
        return null;
      case Opcode.Pong:
        this.pingSentAt = 0;
        this.handler.onPong(value.payload);
        return null;
      case Opcode.Close:
        return this.receiveClose(value.payload, now);
      default:
        return null;
    }
  }

  /**
   * Bytes came from the peer at `now` (called per read, before they are parsed): the heartbeat
   * and idle clocks restart, and what receive() gets from them without a time happened then.
   */
  received(now: number): void {
    this.now = this.lastReceived = now;
  }

  /** The application sent something at `now`: the idle clock restarts. */
  sent(now: number): void {
    this.lastSent = now;
  }

  private receiveClose(payload: Buffer, now: number | undefined): WebSocketError | null {
    const parsed = parseClosePayload(payload);
    if (parsed instanceof WebSocketError) {
      this.fail(parsed, now);
      return parsed;
    }
    this.flags |= CLOSE_RECEIVED;
    this.closeCode = parsed.code;
    this.closeReason = parsed.reason;
    this.startClosing(now);
    if (this.closeSent) {
      // Told too (the adapter ends its message side), but there is nothing to answer.
      this.handler.onPeerClose(parsed.code, parsed.reason);
      this.handshakeCompleted();
      return null;
    }
    if (this.handler.onPeerClose(parsed.code, parsed.reason) === true) this.flags |= ANSWER_LATER;
    else this.answerClose(now);
    return null;
  }

  /**
   * Answers the peer's close (§5.5.1: "the endpoint typically echos the status code it
   * received"): its code and reason; an empty close when it had no code (1005 never goes on the
   * wire). Does nothing before the peer's close or once a close was sent.
   */
  answerClose(now?: number): void {
    if (!this.closeReceived || this.closeSent) return;
    const code = this.closeCode === CloseCode.NoStatus ? undefined : this.closeCode;
    this.sendClose(code, code === undefined ? undefined : this.closeReason, now);
  }

  // ----- From the application -----

  /**
   * Starts the closing handshake (§7.1.2): sends a close with `code` and `reason`. Throws
   * WS_ERR_INVALID_ARGUMENT for arguments the RFC forbids (checkCloseArgs). Once a close was
   * sent, does nothing. After the peer's close, it is the answer.
   */
  close(code: number | undefined, reason: string | undefined, now: number): void {
    this.now = now;
    const invalid = checkCloseArgs(code, reason);
    if (invalid !== null) throw invalid;
    if (this.closeSent || this.state === CoreState.Closed) return;
    this.sendClose(code, reason, now);
  }

  /**
   * Fails the connection (§7.1.7): reports `err` once, sends a close carrying err.closeCode and
   * err.code as reason (unless a close was sent, or the code may not be on the wire: 1006),
   * discards all later input, and closes our side of the transport.
   */
  fail(err: WebSocketError, now?: number): void {
    if (now !== undefined) this.now = now;
    if ((this.flags & FAILED) !== 0 || this.state === CoreState.Closed) return;
    this.flags |= FAILED;
    this.reportError(err);
    if (!this.closeReceived) this.closeCode = err.closeCode;
    if (!this.closeSent) {
      this.flags |= CLOSE_SENT;
      if (isValidWireCloseCode(err.closeCode)) this.handler.sendFrame(makeFrame(Opcode.Close, encodeClosePayload(err.closeCode, err.code)));
    }
    this.startClosing(now);
    this.release(BUDGET_HOLDS);
    this.handler.endTransport();
  }

  private sendClose(code: number | undefined, reason: string | undefined, now: number | undefined): void {
    this.flags |= CLOSE_SENT;
    this.handler.sendFrame(makeFrame(Opcode.Close, encodeClosePayload(code, reason)));
    this.startClosing(now);
    // Only the peer's close is awaited now: reading never waits for a budget (ours or the
    // server's) again; what would take the connection past its own is discarded (discards()).
    this.release(BUDGET_HOLDS);
    if (this.closeReceived) this.handshakeCompleted();
  }

  /**
   * The closing handshake begins before our close frame can go out (the application closed
   * while messages still wait to be sent; close() or answerClose() follows): CLOSING, and the
   * close timeout runs from `now`.
   */
  beginClose(now: number): void {
    this.now = now;
    if (this.state !== CoreState.Closed) this.startClosing(now);
  }

  /**
   * The closing handshake must be over within `ms` of `now`, or sooner if the close timeout
   * says so (a proxy's side whose partner left: its answer is not worth the whole close
   * timeout). CLOSING, as beginClose().
   */
  closeWithin(now: number, ms: number): void {
    this.beginClose(now);
    if (this.state === CoreState.Closed) return;
    this.settle(now);
    this.closeBy = Math.min(this.closeBy, now + ms);
  }

  /**
   * CLOSING, and the close timeout runs from `now`. Without a time (a close frame that came
   * through receive() without one) the deadline is fixed by the next settle(now).
   */
  private startClosing(now: number | undefined): void {
    if (this.state === CoreState.Open) this.state = CoreState.Closing;
    if (this.closeBy === Infinity) this.closeBy = now === undefined ? NaN : now + this.closeTimeout;
  }

  private get closeTimeout(): number {
    return this.options.closeTimeout ?? Defaults.closeTimeout;
  }

  /**
   * Passes the time in for a deadline that started without one (see startClosing): the
   * adapter calls it before reading `deadline` after a receive() without a time.
   */
  settle(now: number): void {
    if (Number.isNaN(this.closeBy)) this.closeBy = now + this.closeTimeout;
  }

  /** §7.1.1: "the server MUST close the underlying TCP connection immediately"; the client waits for it. */
  private handshakeCompleted(): void {
    if ((this.flags & SERVER) !== 0) this.handler.endTransport();
  }

  // ----- From the transport -----

  /** The transport failed. Not an error once the closing handshake completed (a reset after it). */
  transportError(err: Error): void {
    if (!this.handshakeDone) this.reportError(err);
  }

  /** The transport is gone: reports 'close' once. */
  transportClosed(): void {
    if (this.state === CoreState.Closed) return;
    this.state = CoreState.Closed;
    this.closeBy = Infinity;
    this.handler.onClosed(this.closeCode, this.closeReason, this.handshakeDone && (this.flags & FAILED) === 0);
  }

  /** Reports an error of the connection (onError); `error` keeps the first. */
  reportError(err: Error): void {
    if (this.error === null) this.error = err;
    this.handler.onError(err);
  }

  // ----- Time -----

  /** The next time (ms) tick() has something to do; Infinity for none. */
  get deadline(): number {
    if (this.state === CoreState.Closed) return Infinity;
    let next = Number.isNaN(this.closeBy) ? this.now + this.closeTimeout : this.closeBy;
    if (this.state === CoreState.Open) {
      const heartbeat = this.options.heartbeat;
      if (heartbeat !== undefined) {
        next = Math.min(next, this.pingSentAt !== 0 ? this.pingSentAt + heartbeat.timeout : this.lastReceived + heartbeat.interval);
      }
      const idle = this.options.idleTimeout;
      if (idle !== undefined) next = Math.min(next, Math.max(this.lastReceived, this.lastSent) + idle);
    }
    return next;
  }

  /** Does what is due at `now`: the close timeout, the heartbeat, the idle timeout. */
  tick(now: number): void {
    if (this.state === CoreState.Closed) return;
    this.now = now;
    this.settle(now);
    if (now >= this.closeBy) {
      this.closeBy = Infinity;
      this.handler.destroyTransport();
      return;
    }
    if (this.state !== CoreState.Open) return;
    // While we hold reading, the peer's silence proves nothing (its pong may be waiting).
    if (this.holds !== 0) this.lastReceived = now;
    const heartbeat = this.options.heartbeat;
    if (heartbeat !== undefined) {
      if (this.pingSentAt !== 0 && this.lastReceived >= this.pingSentAt) this.pingSentAt = 0;
      if (this.pingSentAt !== 0 && now - this.pingSentAt >= heartbeat.timeout) {
        this.reportError(new WebSocketError('WS_ERR_PEER_UNRESPONSIVE', `no answer within ${heartbeat.timeout} ms`));
        this.handler.destroyTransport();
        return;
      }
      if (this.pingSentAt === 0 && now - this.lastReceived >= heartbeat.interval) {
        this.pingSentAt = now;
        this.handler.sendFrame(makeFrame(Opcode.Ping, Buffer.alloc(0)));
      }
    }
    const idle = this.options.idleTimeout;
    // Idleness is policy, not an error: the close reason says it.
    if (idle !== undefined && now - Math.max(this.lastReceived, this.lastSent) >= idle) this.close(CloseCode.GoingAway, 'idle timeout', now);
  }

  // ----- Reading holds and the memory budget -----

  get memoryBudget(): number {
    return this.options.memoryBudget ?? Defaults.memoryBudget;
  }

  /** Bytes held against memoryBudget: unread data, data read ahead, the message being assembled, unsent data. */
  get heldBytes(): number {
    return this.unreadBytes + this.aheadBytes + this.handler.assemblingBytes() + this.handler.unsentBytes();
  }

  /** `reason` holds reading (setReading(false) if nothing held it; see ReadHold.Inflate). */
  hold(reason: ReadHold): void {
    if ((this.holds & reason) !== 0 || (reason === ReadHold.External && this.closeSent)) return;
    this.holds |= reason;
    this.updateReading();
  }

  /** `reason` no longer holds reading (setReading(true) if nothing else holds it). */
  release(reason: ReadHold): void {
    if ((this.holds & reason) === 0) return;
    this.holds &= ~reason;
    this.updateReading();
  }

  /** The inflater holds reading: what is read is kept aside, unparsed (frames stay in order). */
  get readingAhead(): boolean {
    return (this.holds & ReadHold.Inflate) !== 0;
  }

  /**
   * Bytes were kept aside while the inflater holds reading (+bytes), or handed to the parser
   * (-bytes). They count in heldBytes; reading stops once they reach the read-ahead's bound.
   */
  readAhead(bytes: number): void {
    this.aheadBytes += bytes;
    this.updateReading();
  }

  /** Reports a change of whether reading should go on (see hold() and readAhead()). */
  private updateReading(): void {
    const holds = this.holds;
    const off = holds !== 0 && (holds !== ReadHold.Inflate || this.aheadBytes >= Math.min(READ_AHEAD, this.memoryBudget / 4));
    if (off === ((this.flags & NOT_READING) !== 0)) return;
    if (off) {
      this.flags |= NOT_READING;
      this.handler.setReading(false);
    } else if (this.state !== CoreState.Closed) {
      this.flags &= ~NOT_READING;
      this.handler.setReading(true);
    }
  }

  /** Received data went into a buffer (+bytes) or left it (-bytes); the budget is checked. */
  unread(bytes: number): void {
    this.unreadBytes += bytes;
    if (bytes > 0 || (this.holds & ReadHold.Budget) !== 0) this.checkBudget();
  }

  /**
   * Whether data of `bytes` received now should be discarded instead of kept: only once our
   * close is sent and keeping it would take the connection past its budget.
   */
  discards(bytes: number): boolean {
    return this.closeSent && this.heldBytes + bytes > this.memoryBudget;
  }

  /**
   * Holds or releases reading for the budget: held while what is held reaches memoryBudget and
   * part of it goes away without reading more (not for a message being assembled alone, which
   * only more reading can complete), never once our close is sent.
   */
  checkBudget(): void {
    const releasable = this.unreadBytes + this.handler.unsentBytes();
    if (!this.closeSent && releasable > 0 && releasable + this.handler.assemblingBytes() >= this.memoryBudget) this.hold(ReadHold.Budget);
    else this.release(ReadHold.Budget);
  }

  // ----- Outbound ordering of streamed messages -----

  /**
   * Runs `send` once `owner` may send data frames: at once when no other streamed message owns
   * the data side (null: a plain message, which never takes it), else when its message ends.
   * Returns whether it ran at once.
   */
  whenSendable(owner: object | null, send: () => void): boolean {
    if (this.owner === null || this.owner === owner) {
      send();
      return true;
    }
    (this.waiting ??= []).push(() => this.whenSendable(owner, send));
    return false;
  }

  /** `owner`'s streamed message has begun: data frames of others wait until finish(owner). */
  claim(owner: object): void {
    if (this.owner === null) this.owner = owner;
  }

  /** The streamed message that owns the data side, or null. */
  get outboundOwner(): object | null {
    return this.owner;
  }

  /** Data may be sent now without waiting: open, no close sent, no streamed message holding the data side, nobody waiting. */
  get sendable(): boolean {
    return this.state === CoreState.Open && (this.flags & CLOSE_SENT) === 0 && this.owner === null && this.waiting === null;
  }

  /** Whether sends wait for a streamed message. */
  get sendsWaiting(): boolean {
    return this.waiting !== null;
  }

  /** `owner`'s message has ended (or failed): the sends waiting for it go, in order. */
  finish(owner: object): void {
    if (this.owner !== owner) return;
    this.owner = null;
    const waiting = this.waiting;
    this.waiting = null;
    if (waiting !== null) for (const task of waiting) task();
  }

  /** Takes every send still waiting (the connection closed: the adapter settles them). */
  takeWaiting(): Array<() => void> {
    const waiting = this.waiting ?? [];
    this.waiting = null;
    this.owner = null;
    return waiting;
  }
}
