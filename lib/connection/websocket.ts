/**
 * WebSocket: one connection as a Duplex of messages.
 *
 *   socket --bytes--> Receiver (splitter > unmasker > assembler > responder) --messages--> read()
 *                                                              |
 *                                          pong / close echo   v
 *   write()/send() --messages--> Sender (framer > masker > serializer) --bytes--> socket
 *
 * Reading side: text messages come out as strings, binary ones as Buffers. When the reader
 * stops reading, the socket is still read (so that pings are answered and the peer's close is
 * seen) until the unread data reach memoryBudget; then it is paused, so TCP's window closes on
 * the peer. Writing side: a string is sent as a text message, a Buffer or Uint8Array as a binary
 * one; write() returns false while the socket's buffer is over its mark, and 'drain' follows.
 *
 * Errors: a protocol violation by the peer sends a close frame with the matching code, emits
 * one 'error' (a WebSocketError) if anyone listens for it, then 'close'. Without an 'error'
 * listener the error is not thrown: it is kept in `error` and its code reaches 'close', because
 * a peer's bad bytes must never crash the process.
 */
import { Buffer } from 'node:buffer';
import type { AnyListener } from '../protocol/events';
import { Duplex, Readable } from '../stages/streams';
import type { MessagePiece } from '../stages/fragment-assembler';
import type { UpgradeResponse } from '../handshake/handshake-parser';
import { MessageReadable, MessageWritable, MessageWritableOptions, PartSink } from '../stages/message-stream';
import { Tap, TapOptions, TapPoint } from '../stages/tap';
import { emitIfFlowing, writableIdle } from '../stages/stage';
import { checkCloseArgs } from '../protocol/close';
import { Defaults } from '../protocol/constants';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import { Frame, Message } from '../protocol/frame';
import { OutboundMessage, toMessage } from '../stages/message-framer';
import { Receiver, ReceiverOptions, Role } from './receiver';
import { ConnectionCore, CoreState } from './connection-core';
import { ByteSink, Sender, SenderOptions } from './sender';
import type { DeflateSides, PerMessageDeflateOptions } from '../deflate/permessage-deflate';
import { makeFrame } from '../protocol/frame';
import { Opcode } from '../protocol/constants';
import { encodeClosePayload } from '../protocol/close';
import type { FanoutCounters, SubscriptionOptions, TopicHost } from './topics';
import { channels as diagnostics, peerAddress, publishFrame } from './diagnostics';

/** The underlying transport: a net.Socket, a tls.TLSSocket, or any Duplex of bytes. */
export interface Transport extends ByteSink {
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'end' | 'close' | 'drain', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  removeListener(event: string, listener: (...args: never[]) => void): this;
  pause(): this;
  resume(): this;
  end(): this;
  destroy(err?: Error): this;
  readonly destroyed: boolean;
  setNoDelay?(noDelay?: boolean): this;
  setTimeout?(ms: number): this;
}

export enum ReadyState {
  CONNECTING = 0,
  OPEN = 1,
  CLOSING = 2,
  CLOSED = 3,
}

export interface WebSocketOptions extends ReceiverOptions, SenderOptions {
  /** Milliseconds to wait for the closing handshake (and then the TCP close) before destroying the socket. Default 5000. */
  closeTimeout?: number;
  /**
   * The readable side's highWaterMark, in messages (what pipe() and read() go by). Default 16.
   * A full reader does not stop reading from the socket by itself: pings and the peer's close
   * must still be read and answered; the memoryBudget stops it.
   */
  readableHighWaterMark?: number;
  /**
   * Bytes waiting to be sent (bufferedAmount) at which write() and send() return false, until
   * 'drain'. Default 1 MiB. (writableHighWaterMark counts messages; this counts bytes, so that a
   * writer of large messages is held back before it queues hundreds of MiB.)
   */
  writableHighWaterMarkBytes?: number;
  /** How many messages the writable side buffers before write() returns false. Default 16. */
  writableHighWaterMark?: number;
  /**
   * One memory budget for the connection, in bytes: the received data the application has not
   * read yet (messages in the readable buffer, bytes in MessageReadables), the fragments of the
   * message being assembled, and what waits to be sent (bufferedAmount); see `heldBytes`. At
   * the budget the connection stops reading from the socket, so TCP slows the peer down (it is
   * not disconnected), and reads again once the application has read or the peer has taken
   * enough. write() and send() return false once bufferedAmount reaches the smaller of this and
   * writableHighWaterMarkBytes. A message delivered whole can only be delivered once complete:
   * its fragments may take it past the budget (maxMessageSize bounds it), and reading never
   * waits for it alone. Default 16 MiB (Defaults.memoryBudget).
   */
  memoryBudget?: number;
  /**
   * Heartbeat: when nothing came from the peer for `interval` ms, send a ping; if nothing (a
   * pong or any other frame) comes within `timeout` ms more, the peer is taken for dead
   * (half-open TCP): the socket is destroyed, 'error' reports WS_ERR_PEER_UNRESPONSIVE and
   * 'close' 1006. Default: off.
   */
  heartbeat?: { interval: number; timeout: number };
  /** Close with 1001 after this many ms without any traffic in either direction. Default: off. */
  idleTimeout?: number;
  /**
   * Most bytes that may wait to be sent (bufferedAmount) before outboundOverflow applies.
   * Default: Infinity (write() returning false is the only brake).
   */
  maxBufferedAmount?: number;
  /**
   * What a write beyond maxBufferedAmount does: 'error' (default) fails the connection with
   * WS_ERR_BUFFER_FULL (close 1008; the peer that does not read is cut off); 'drop' discards
   * that message, its callback gets WS_ERR_BUFFER_FULL, and the connection stays open.
   */
  outboundOverflow?: 'error' | 'drop';
  /** @internal Set by the server: the fan-out hub that keeps this connection's topics (lib/fanout/). */
  topicHost?: TopicHost;
  /**
   * Told whenever what the connection holds (heldBytes) may have changed: set by the server for
   * its server-wide memory budget (serverMemoryBudget), which may then hold reading from the
   * connection (holdForServer) or cut it (failForServer). Default: none.
   */
  heldBytesObserver?: HeldBytesObserver;
}

/** Watches connections' heldBytes (the server's memory budget). */
export interface HeldBytesObserver {
  heldBytesChanged(connection: WebSocket): void;
}

/** What the opening handshake settled. */
export interface HandshakeResult {
  /** The subprotocol both sides agreed on, or '' for none. */
  protocol: string;
  /** The Sec-WebSocket-Extensions value agreed on, or '' for none. */
  extensions: string;
  /** permessage-deflate, when negotiated: how each side compresses, and the options (RFC 7692). */
  deflate?: { sides: DeflateSides; options: PerMessageDeflateOptions } | undefined;
}

type WriteCallback = (error?: Error | null) => void;

/** What a received value counts against the memory budget: bytes, or UTF-16 code units of text (a MessageReadable counts its own bytes). */
function unreadSize(value: Buffer | string | MessageReadable): number {
  return value instanceof MessageReadable ? 0 : value.length;
}

/** Where a tap observes a connection: raw bytes, frames (unmasked), or data messages. */
export type TapLayer = 'bytes' | 'frames' | 'messages';
/** 'in': from the peer; 'out': to the peer. */
export type TapDirection = 'in' | 'out';
/** What a messages tap yields: whole messages, or pieces of streamed ones. */
export type TappedMessage = Message | MessagePiece;

interface TapPoints {
  in: { bytes: TapPoint<Buffer>; frames: TapPoint<Frame>; messages: TapPoint<TappedMessage> };
  out: { bytes: TapPoint<Buffer>; frames: TapPoint<Frame>; messages: TapPoint<TappedMessage> };
}

/** Events of a WebSocket, with their arguments (besides a Duplex's own: 'data', 'end', 'finish' ...). */
export interface WebSocketEvents {
  /** The opening handshake is done: the connection is OPEN. */
  open: () => void;
  /**
   * A data message: text as a string, binary as a Buffer; `isBinary` says which. With the
   * `streamMessages` option each message is a MessageReadable instead (annotate the parameter:
   * `(stream: MessageReadable) => ...`).
   */
  message: (data: string | Buffer, isBinary: boolean) => void;
  /** The peer pinged (the pong is sent automatically unless `autoPong: false`). */
  ping: (payload: Buffer) => void;
  pong: (payload: Buffer) => void;
  /** The connection has ended: the close code and reason (1006 and '' without a close frame). */
  close: (code: number, reason: string) => void;
  /** A protocol error (a WebSocketError, with its `code` and `closeCode`) or a socket error; emitted once. */
  error: (err: Error) => void;
  /** `send()`/`write()` returned false and the connection can take more now. */
  drain: () => void;
  /** Client: the server's 101 response was received and checked (before 'open'). */
  upgrade: (response: UpgradeResponse) => void;
}

/** Typed listeners for WebSocketEvents (see lib/protocol/events.ts). */
export interface WebSocket {
  on<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  on(event: string | symbol, listener: AnyListener): this;
  once<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  once(event: string | symbol, listener: AnyListener): this;
  addListener<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  addListener(event: string | symbol, listener: AnyListener): this;
  prependListener<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  prependListener(event: string | symbol, listener: AnyListener): this;
  prependOnceListener<E extends keyof WebSocketEvents>(event: E, listener: WebSocketEvents[E]): this;
  prependOnceListener(event: string | symbol, listener: AnyListener): this;
}

/** The connection a transport is attached to (its listeners are shared functions, see attach()). */
const kConnection = Symbol('wspipe.connection');
type OwnedTransport = Transport & { [kConnection]?: WebSocket };

/** Bits of WebSocket.flags: the connection's small state in one number (see the accessors). */
enum Flag {
  /** attach() ran: the connection is no longer CONNECTING (the core has the rest of the state). */
  Attached = 1 << 0,
  /** Heartbeat or idleTimeout is configured: the core is told the time of traffic. */
  Timed = 1 << 1,
  ClientRole = 1 << 2,
  /** write() returned false because of bufferedAmount; a 'drain' is owed. */
  NeedBytesDrain = 1 << 3,
  /** The readable side has been ended (push(null)). */
  ReadableDone = 1 << 6,
  /** Reading is paused because a reader (ours, a MessageReadable's, a blocking tap's) is full. */
  PausedByUs = 1 << 7,
  /** Reading is paused until our automatic replies (pongs) drain. */
  PausedForReplies = 1 << 8,
  /** permessage-deflate: the transport is paused while received frames wait to be inflated. */
  PausedForInflate = 1 << 9,
  /** Reading is paused because the connection holds its memoryBudget. */
  PausedForBudget = 1 << 10,
  /** Reading is paused by the server's memory budget (holdForServer). */
  PausedForServer = 1 << 12,
  /** wspipe:websocket:frame had subscribers when the connection opened: its frames are published. */
  FrameDiagnostics = 1 << 13,
  ReadingHeld = PausedByUs | PausedForReplies | PausedForInflate | PausedForBudget | PausedForServer,
}

/**
 * What only some connections ever need, in one object made on first use (an idle connection
 * holds none of it). Each field is null while unused.
 */
class Extras {
  /** The one timer of the connection, armed at the core's deadline, and when it fires (ms). */
  timer: NodeJS.Timeout | null = null;
  timerAt = Infinity;
  /** Close arguments given to close() while writes were still queued (sent from _final). */
  closePending: { code?: number; reason?: string } | null = null;
  /** Answers the peer's close if the reader has not read up to it in half of closeTimeout. */
  answerTimer: NodeJS.Timeout | null = null;
  /** Callbacks of writes waiting for the transport to drain. */
  drainWaiters: WriteCallback[] | null = null;
  /** Work waiting for the opening handshake to finish (writes made while CONNECTING). */
  whenOpen: Array<() => void> | null = null;
  /**
   * Who may send data frames now: null (anyone), or the MessageWritable whose message is open.
   * Fragments of one message are never interleaved with another message's frames.
   */
  outboundOwner: MessageWritable | null = null;
  /** Sends waiting for outboundOwner to finish its message. */
  ownerWaiters: Array<() => void> | null = null;
  /** The incoming message being streamed (streamMessages option). */
  inboundStream: MessageReadable | null = null;
  /** Taps, created on the first call to tap(). */
  tapPoints: TapPoints | null = null;
  /**
   * Messages accepted by write() that could not be sent (the connection closed first). Their
   * stream callback is called without an error (an error there would be emitted as 'error'
   * and could crash a process that does not listen for it); the caller's own callback gets it.
   */
  unsent: WeakMap<Message, Error> | null = null;
  /** permessage-deflate: what to do once inflation is through (finish after the transport closed). */
  afterInflate: (() => void) | null = null;
}

/**
 * The object EventEmitter keeps a connection's listeners in. EventEmitter's own is a dictionary
 * (256 B of hash table once it holds four event names); this one has the names a connection
 * usually listens to as fields without a listener yet, so it stays a small fast object, as
 * Node's own streams do. No prototype, so that no event name finds an inherited function.
 */
function listenerTable(): object {
  return Object.setPrototypeOf({ newListener: undefined, data: undefined, message: undefined, error: undefined, close: undefined }, null);
}

/**
 * Memory per connection: an idle connection should cost little more than its socket. So the
 * connection is itself the handler of its Receiver (the ReceiverHandler methods below), the
 * transport's and its own listeners are shared functions that find the connection through the
 * transport (or `this`), yes/no state is bits of one field, and what only some connections need
 * (heartbeat, closing state, waiting lists, streamed messages, taps) is made on first use.
 *
 * No `implements ReceiverHandler`: its methods here are marked internal, left out of the published
 * declarations (stripInternal), where the clause would no longer hold; `new Receiver(..., this)`
 * checks the shape.
 */
export class WebSocket extends Duplex {
  static readonly CONNECTING = ReadyState.CONNECTING;
  static readonly OPEN = ReadyState.OPEN;
  static readonly CLOSING = ReadyState.CLOSING;
  static readonly CLOSED = ReadyState.CLOSED;

  /** The subprotocol agreed on in the opening handshake ('' for none). */
  protocol = '';
  /** The extensions agreed on in the opening handshake ('' for none). */
  extensions = '';
  /** Flag bits (ReadyState CONNECTING at first). */
  private flags: number;
  private transport: Transport | null = null;
  private receiver: Receiver | null = null;
  private sender: Sender | null = null;
  private readonly options: WebSocketOptions;
  /** Received bytes pushed into a buffer (ours or a MessageReadable's) and not read yet. */
  private unreadBytes = 0;
  /** Bytes given to write() that have not reached the transport yet. */
  private queuedBytes = 0;
  /**
   * The protocol decisions: the closing handshake, failing (error -> close code), the liveness
   * deadlines and the close timeout. This class does the I/O they ask for.
   */
  private readonly core: ConnectionCore;
  /** See Extras; null until something needs it. */
  private extras: Extras | null = null;

  constructor(role: Role, options: WebSocketOptions = {}) {
    if (role !== 'client' && role !== 'server') throw roleError(role);
    // emitClose is off: 'close' is ours, with (code, reason), emitted once the transport is
    // gone. autoDestroy is off: messages received before the close stay readable.
    // (@types/readable-stream lacks both options, hence the cast.)
    const streamOptions = {
      objectMode: true,
      readableHighWaterMark: options.readableHighWaterMark ?? 16,
      writableHighWaterMark: options.writableHighWaterMark ?? 16,
      allowHalfOpen: true,
      emitClose: false,
      autoDestroy: false,
      decodeStrings: false,
    };
    super(streamOptions as ConstructorParameters<typeof Duplex>[0]);
    const emitter = this as unknown as { _events: object; _eventsCount: number };
    if (emitter._eventsCount === 0) emitter._events = listenerTable();
    this.flags = (role === 'client' ? Flag.ClientRole : 0) | (options.heartbeat !== undefined || options.idleTimeout !== undefined ? Flag.Timed : 0);
    this.options = options;
    this.core = new ConnectionCore(role, options, this);
    this.on('newListener', WebSocket.newListener);
  }

  /** The names of the events listened to (the listener table also holds names without listeners). */
  override eventNames(): Array<string | symbol> {
    return super.eventNames().filter((name) => this.listenerCount(name) > 0);
  }

  /** 'server' or 'client'. */
  get role(): Role {
    return this.flags & Flag.ClientRole ? 'client' : 'server';
  }

  /** The first error of this connection, if any (also emitted as 'error' when listened for). */
  get error(): Error | null {
    return this.core.error;
  }

  /** CONNECTING until attach(), then the core's state (OPEN, CLOSING, CLOSED: the same numbers). */
  private get state(): ReadyState {
    const state = this.core.state;
    return (this.flags & Flag.Attached) === 0 && state !== CoreState.Closed ? ReadyState.CONNECTING : (state as number);
  }

  // The flags field: has(flag), setFlag(flag, on).
  private setFlag(flag: Flag, on: boolean): void {
    this.flags = on ? this.flags | flag : this.flags & ~flag;
  }
  private has(flag: Flag): boolean {
    return (this.flags & flag) !== 0;
  }

  /** See WebSocketOptions.memoryBudget. */
  private get memoryBudget(): number {
    return this.options.memoryBudget ?? Defaults.memoryBudget;
  }

  /** See WebSocketOptions.writableHighWaterMarkBytes (at most memoryBudget). */
  private get writableBytesMark(): number {
    return Math.min(this.options.writableHighWaterMarkBytes ?? 1024 * 1024, this.memoryBudget);
  }

  /** Extras, made now if it was not yet. */
  private more(): Extras {
    return (this.extras ??= new Extras());
  }

  /** The tap points, or null (no tap was ever made). */
  private get tapPoints(): TapPoints | null {
    return this.extras === null ? null : this.extras.tapPoints;
  }

  /** CONNECTING, OPEN, CLOSING or CLOSED, as in the browser API. */
  get readyState(): ReadyState {
    return this.state;
  }

  /** Bytes accepted by send()/write() that the transport has not sent yet. */
  get bufferedAmount(): number {
    return this.queuedBytes + (this.transport?.writableLength ?? 0);
  }

  /**
   * Bytes this connection holds against its memoryBudget: received data not read yet (text
   * counted in UTF-16 code units), the fragments of the message being assembled, and
   * bufferedAmount.
   */
  get heldBytes(): number {
    return this.unreadBytes + (this.receiver?.assembler.heldBytes ?? 0) + this.bufferedAmount;
  }

  /**
   * @internal Starts the connection on a transport whose opening handshake is done. `head` holds bytes
   * that arrived after the handshake (often the first frames). Used by the server and client.
   */
  attach(transport: Transport, head: Buffer | null, handshake: HandshakeResult): void {
    if (this.transport !== null) throw new WebSocketError('WS_ERR_INVALID_STATE', 'already attached');
    this.transport = transport;
    this.protocol = handshake.protocol;
    this.extensions = handshake.extensions;
    transport.setNoDelay?.(true);
    transport.setTimeout?.(0);
    const deflate = handshake.deflate;
    this.receiver = new Receiver(
      this.role,
      this.options,
      this,
      deflate === undefined ? undefined : { ...deflate.sides.inflate, maxConcurrency: deflate.options.maxConcurrency },
      this.core,
    );
    const deflateSide = deflate?.sides.deflate ?? null;
    this.sender = new Sender(
      transport,
      this.role,
      this.options,
      deflate === undefined || deflateSide === null ? undefined : { side: deflateSide, options: deflate.options },
    );
    this.hookTaps();
    (transport as OwnedTransport)[kConnection] = this;
    transport.on('data', WebSocket.transportData);
    transport.on('end', WebSocket.transportEnd);
    transport.on('close', WebSocket.transportClose);
    transport.on('error', WebSocket.transportError);
    transport.on('drain', WebSocket.transportDrain);
    this.setFlag(Flag.Attached, true);
    if (this.has(Flag.Timed)) {
      // Heartbeat and idle timeout run from now.
      const now = Date.now();
      this.core.received(now);
      this.core.sent(now);
      this.arm();
    }
    if (diagnostics.frame.hasSubscribers) this.hookFrameDiagnostics();
    if (diagnostics.open.hasSubscribers) {
      diagnostics.open.publish({ websocket: this, role: this.role, address: peerAddress(transport), protocol: this.protocol, extensions: this.extensions });
    }
    this.emit('open');
    // Bytes that came with the handshake are parsed on the next tick, once the caller that
    // received this connection has attached its listeners (before any later socket data).
    if (head !== null && head.length > 0) process.nextTick(WebSocket.receiveHead, this, head);
    // Writes queued while CONNECTING go out now, in order.
    const queued = this.extras?.whenOpen ?? null;
    if (queued !== null) {
      this.extras!.whenOpen = null;
      for (const task of queued) task();
    }
  }

  // The transport's listeners: one set of functions for all connections (`this` is the transport).
  private static transportData(this: OwnedTransport, chunk: Buffer): void {
    this[kConnection]!.onData(chunk);
  }

  private static transportEnd(this: OwnedTransport): void {
    this[kConnection]!.onEnd();
  }

  private static transportClose(this: OwnedTransport): void {
    this[kConnection]!.onTransportClose();
  }

  private static transportError(this: OwnedTransport, err: Error): void {
    this[kConnection]!.onTransportError(err);
  }

  private static transportDrain(this: OwnedTransport): void {
    this[kConnection]!.onDrain();
  }

  private static receiveHead(ws: WebSocket, head: Buffer): void {
    ws.onData(head);
  }

  /** A 'message' listener puts the stream in flowing mode, as a 'data' listener does (`this` is the connection). */
  private static newListener(this: WebSocket, event: string | symbol): void {
    if (event === 'message' && this.listenerCount('message') === 0) this.on('data', WebSocket.emitMessage);
  }

  // A stream's emitter emits no 'removeListener' event (Node keeps its listener table's shape):
  // removing the last 'message' listener is seen here, and takes the 'data' listener that fed it
  // along, so that a 'message' listener added later is not fed twice.

  /** @internal Removes a listener (and the 'data' listener feeding 'message' with the last 'message' listener). */
  override removeListener(event: string | symbol, listener: AnyListener): this {
    super.removeListener(event, listener);
    if (event === 'message') this.messageListenersGone();
    return this;
  }

  /** @internal The same as removeListener(). */
  override off(event: string | symbol, listener: AnyListener): this {
    return this.removeListener(event, listener);
  }

  /** @internal Removes listeners (and the 'data' listener feeding 'message' with the 'message' listeners). */
  override removeAllListeners(event?: string | symbol): this {
    super.removeAllListeners(event);
    if (event === undefined || event === 'message') this.messageListenersGone();
    return this;
  }

  private messageListenersGone(): void {
    if (this.listenerCount('message') === 0) super.removeListener('data', WebSocket.emitMessage);
  }

  private static emitMessage(this: WebSocket, value: string | Buffer | MessageReadable): void {
    if (value instanceof MessageReadable) this.emit('message', value, value.binary);
    else this.emit('message', value, typeof value !== 'string');
  }

  /**
   * Observes the traffic at one layer and direction without changing it: returns a Readable
   * (object mode) of Buffers ('bytes'), Frames ('frames', unmasked) or messages ('messages':
   * Message values, or MessagePiece values for streamed messages). Policy 'drop' (default)
   * never slows the connection and counts what it dropped; 'block' holds the connection while
   * the tap is not read. Destroy the tap to detach it; it ends when the connection closes.
   */
  tap(layer: 'bytes', direction: TapDirection, options?: TapOptions): Tap<Buffer>;
  tap(layer: 'frames', direction: TapDirection, options?: TapOptions): Tap<Frame>;
  tap(layer: 'messages', direction: TapDirection, options?: TapOptions): Tap<TappedMessage>;
  tap(layer: TapLayer, direction: TapDirection, options: TapOptions = {}): Tap<unknown> {
    let points = this.tapPoints;
    if (points === null) {
      const resume = (): void => this.resumeTransport();
      const drain = (): void => this.onDrain();
      const inbound = (): TapPoint<never> => new TapPoint(resume);
      const outbound = (): TapPoint<never> => new TapPoint(drain);
      points = this.more().tapPoints = {
        in: { bytes: inbound(), frames: inbound(), messages: inbound() },
        out: { bytes: outbound(), frames: outbound(), messages: outbound() },
      };
      this.hookTaps();
    }
    return (points[direction][layer] as TapPoint<unknown>).add(options);
  }

  /** Connects the tap points to the receiver and sender (now, or at attach). */
  private hookTaps(): void {
    const points = this.tapPoints;
    if (points === null || this.receiver === null || this.sender === null) return;
    this.receiver.frameObserver = (frame) => this.offerInbound(points.in.frames, frame);
    this.sender.taps = { frame: (frame) => points.out.frames.offer(frame), bytes: (chunk) => points.out.bytes.offer(chunk) };
    if (this.has(Flag.FrameDiagnostics)) this.hookFrameDiagnostics();
  }

  /** wspipe:websocket:frame had subscribers at attach: every frame is published (around the taps, if any). */
  private hookFrameDiagnostics(): void {
    const receiver = this.receiver!;
    const sender = this.sender!;
    this.setFlag(Flag.FrameDiagnostics, true);
    const tapIn = receiver.frameObserver;
    const tapsOut = sender.taps;
    receiver.frameObserver = (frame) => {
      publishFrame(this, 'in', frame);
      tapIn?.(frame);
    };
    sender.taps = {
      frame: (frame) => {
        publishFrame(this, 'out', frame);
        return tapsOut === null || tapsOut.frame(frame);
      },
      bytes: (chunk) => tapsOut === null || tapsOut.bytes(chunk),
    };
  }

  private inboundTapsBlocked(): boolean {
    const taps = this.tapPoints!.in;
    return taps.bytes.blocked || taps.frames.blocked || taps.messages.blocked;
  }

  /** Offers an inbound value to a tap point; a blocking tap that is full pauses the transport. */
  private offerInbound<T>(point: TapPoint<T>, value: T): void {
    if (!point.active) return;
    if (!point.offer(value)) this.holdReading(Flag.PausedByUs);
  }

  /**
   * Starts one outgoing message whose payload is written as a stream: each chunk written goes
   * out as a frame as soon as the connection may send, and end() sends the final frame.
   * `fs.createReadStream(path).pipe(ws.createMessageStream({ binary: true }))`. Control frames
   * (pong, close) still get through between its frames; other data messages wait until it ends.
   */
  createMessageStream(options: MessageWritableOptions = {}): MessageWritable {
    return new MessageWritable(this.partSink(), options);
  }

  /**
   * @internal Fails a connection that never opened (the handshake failed): emits the error if listened
   * for, then 'close' with 1006. Used by the client.
   */
  abortHandshake(err: Error): void {
    if (this.state === ReadyState.CLOSED) return;
    if (diagnostics.handshakeRejected.hasSubscribers) diagnostics.handshakeRejected.publish({ side: 'client', error: err, websocket: this });
    this.reportError(err);
    this.finish();
  }

  /**
   * Sends one message: a string as text, a Buffer or Uint8Array as binary, unless
   * `options.binary` says otherwise. Returns false when the caller should wait for 'drain'.
   */
  send(data: string | Buffer | Uint8Array, callback?: WriteCallback): boolean;
  send(data: string | Buffer | Uint8Array, options?: { binary?: boolean }, callback?: WriteCallback): boolean;
  send(data: string | Buffer | Uint8Array, a?: { binary?: boolean } | WriteCallback, b?: WriteCallback): boolean {
    // send(data, cb), as ws accepts it, or send(data, options, cb).
    const options = typeof a === 'function' || a === undefined ? {} : a;
    const callback = typeof a === 'function' ? a : b;
    const value: OutboundMessage = options.binary === undefined ? data : { data, binary: options.binary };
    return callback === undefined ? this.write(value) : this.write(value, callback);
  }

  override write(chunk: OutboundMessage, callback?: WriteCallback): boolean;
  override write(chunk: OutboundMessage, encoding?: BufferEncoding, callback?: WriteCallback): boolean;
  override write(chunk: OutboundMessage, a?: BufferEncoding | WriteCallback, b?: WriteCallback): boolean {
    const message = toMessage(chunk);
    const callback = typeof a === 'function' ? a : b;
    if (isWebSocketError(message)) {
      process.nextTick(() => {
        callback?.(message);
        this.reportError(message);
      });
      return false;
    }
    // After the peer's close, writes are still taken while its answer waits for the reader (see onPeerClose).
    if (this.core.closeSent || (this.state >= ReadyState.CLOSING && (!this.core.answerPending || this.writableEnded))) {
      const err = new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[this.state]}`);
      process.nextTick(() => callback?.(err));
      return false;
    }
    const limit = this.options.maxBufferedAmount;
    if (limit !== undefined && this.bufferedAmount + message.data.length > limit) {
      const err = new WebSocketError('WS_ERR_BUFFER_FULL', `bufferedAmount would exceed ${limit} bytes`);
      process.nextTick(() => callback?.(err));
      if (this.options.outboundOverflow !== 'drop') {
        // The peer does not read: a close frame would not get through either.
        this.failConnection(err);
        this.transport?.destroy();
      }
      return false;
    }
    if (this.has(Flag.Timed)) this.core.sent(Date.now());
    // Fan-out: frames published to this connection earlier in this turn go first.
    this.options.topicHost?.beforeSend(this);
    let flowing: boolean;
    if (a === undefined && b === undefined && this.sendableAtOnce()) {
      flowing = this.sendAtOnce(message);
    } else {
      this.queuedBytes += message.data.length;
      flowing =
        callback === undefined
          ? super.write(message)
          : super.write(message, (err?: Error | null) => callback(err ?? this.extras?.unsent?.get(message) ?? null));
    }
    this.options.heldBytesObserver?.heldBytesChanged(this);
    if (flowing && this.bufferedAmount >= this.writableBytesMark) {
      // Held back by bytes, not by message count: our own 'drain' follows (maybeBytesDrain).
      this.setFlag(Flag.NeedBytesDrain, true);
      return false;
    }
    return flowing;
  }

  // ----- Topics (fan-out): kept by the server's hub, see lib/fanout/ -----

  private get topicHost(): TopicHost {
    const host = this.options.topicHost;
    if (host === undefined) throw new WebSocketError('WS_ERR_INVALID_STATE', 'topics are kept by a server: this connection has none');
    return host;
  }

  /**
   * Subscribes this connection to `topic`: what the server publishes to it is sent here, framed
   * once for all subscribers. `options` bound what may wait for this subscriber (limit, policy);
   * subscribing again replaces them. Server connections only.
   */
  subscribe(topic: string, options?: SubscriptionOptions): void {
    this.topicHost.subscribe(this, topic, options);
  }

  /** Unsubscribes from `topic` (its queued messages are dropped); false if not subscribed. */
  unsubscribe(topic: string): boolean {
    return this.topicHost.unsubscribe(this, topic);
  }

  isSubscribed(topic: string): boolean {
    return this.options.topicHost?.isSubscribed(this, topic) ?? false;
  }

  /** The topics this connection is subscribed to. */
  get topics(): string[] {
    return this.options.topicHost?.topics(this) ?? [];
  }

  /** This connection's fan-out counters (delivered, dropped, evicted, coalesced, closed, queuedBytes). */
  get fanoutCounters(): FanoutCounters {
    return this.topicHost.counters(this);
  }

  /**
   * @internal Fan-out: writes frames encoded already (a published message's header and payload,
   * the same Buffers for every subscriber) after everything sent before, never inside a message
   * being streamed out. Returns true when they went to the transport and it has room; false
   * when the caller should wait: `onRoom` is then called once they are out and there is room
   * (or with an error, when the connection can no longer send them). `tapped` (the frame and
   * the message the bytes encode) is what taps see of them, made only when a tap watches.
   */
  sendFrameBytes(buffers: readonly Buffer[], bytes: number, onRoom: WriteCallback, tapped?: () => Array<{ frame: Frame; message: Message }>): boolean {
    if (this.core.closeSent || this.state !== ReadyState.OPEN) {
      const err = new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[this.state]}`);
      process.nextTick(onRoom, err);
      return false;
    }
    if (this.sendableAtOnce()) {
      const flowing = this.sender!.sendBytes(buffers);
      if (!flowing) (this.more().drainWaiters ??= []).push(onRoom);
      return flowing;
    }
    const chunk = new PreFramed(buffers, bytes, this.tapPoints === null || tapped === undefined ? null : tapped());
    this.queuedBytes += bytes;
    super.write(chunk, (err?: Error | null) => onRoom(err ?? chunk.error));
    return false;
  }

  /** @internal Fan-out: how this connection compresses what it sends (permessage-deflate), or null. */
  get outboundCompression(): Sender['compression'] {
    return this.sender === null ? null : this.sender.compression;
  }

  /**
   * Sends a ping; the peer answers with a pong carrying the same payload (at most 125 bytes).
   * Also accepts ws's forms `ping(data, mask, cb)`, `ping(data, cb)` and `ping(cb)`: `mask` is
   * ignored (the role decides: a client masks, a server does not, RFC 6455 §5.1), and `cb` is
   * called once the frame is handed to the socket (after 'drain' when the socket was full), or
   * with the error when the connection is not open. A payload over 125 bytes always throws.
   */
  ping(payload?: string | Buffer | ControlCallback, mask?: boolean | ControlCallback, callback?: ControlCallback): void {
    this.sendControlForm(Opcode.Ping, payload, mask, callback);
  }

  /** Sends an unsolicited pong (a unidirectional heartbeat, RFC 6455 §5.5.3); the call forms of ping(). */
  pong(payload?: string | Buffer | ControlCallback, mask?: boolean | ControlCallback, callback?: ControlCallback): void {
    this.sendControlForm(Opcode.Pong, payload, mask, callback);
  }

  private sendControlForm(
    opcode: Opcode,
    payload: string | Buffer | ControlCallback | undefined,
    mask: boolean | ControlCallback | undefined,
    callback: ControlCallback | undefined,
  ): void {
    const cb = typeof payload === 'function' ? payload : typeof mask === 'function' ? mask : callback;
    const data = typeof payload === 'function' || payload === undefined ? Buffer.alloc(0) : payload;
    if (cb === undefined) {
      this.sendControl(opcode, data);
      return;
    }
    if ((typeof data === 'string' ? Buffer.byteLength(data) : data.length) > 125) {
      throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'control payload over 125 bytes');
    }
    let flowing: boolean;
    try {
      flowing = this.sendControl(opcode, data);
    } catch (err) {
      process.nextTick(cb, err as Error);
      return;
    }
    this.afterSend(flowing, (err) => process.nextTick(cb, err ?? null));
  }

  /**
   * Starts the closing handshake: messages already accepted by send()/write() are sent first,
   * then a close frame with `code` (1000-1003, 1007-1014 or 3000-4999; none sends an empty
   * close) and `reason` (at most 123 bytes of UTF-8). The transport is destroyed if the peer
   * does not answer within `closeTimeout`.
   */
  close(code?: number, reason?: string): void {
    const invalid = checkCloseArgs(code, reason);
    if (invalid !== null) throw invalid;
    if (this.state === ReadyState.CLOSED || this.core.closeSent || (this.extras !== null && this.extras.closePending !== null)) return;
    if (this.state === ReadyState.CONNECTING) {
      // Asynchronously, so that listeners added right after close() still hear 'close'.
      process.nextTick(() => this.abortHandshake(new WebSocketError('WS_ERR_INVALID_STATE', 'closed before the connection was established')));
      this.transport?.destroy();
      return;
    }
    this.options.topicHost?.beforeSend(this);
    this.more().closePending = { code, reason };
    // CLOSING, and the close timeout runs; _final sends the close once the writes queued are out.
    this.core.beginClose(Date.now());
    this.arm();
    this.end();
  }

  /** Destroys the transport at once, without a closing handshake ('close' reports 1006). */
  terminate(): void {
    if (this.transport === null) this.finish();
    else this.transport.destroy();
  }

  // ----- Duplex internals -----

  override _read(): void {
    this.resumeTransport();
  }

  // Every way of consuming a buffered message ('message'/'data' listeners, pipe(), for await,
  // read()) goes through read(): that is where the memory budget gets its bytes back.
  override read(size?: number): string | Buffer | MessageReadable | null {
    const value = super.read(size) as string | Buffer | MessageReadable | null;
    if (value !== null && !(value instanceof MessageReadable)) this.consumed(unreadSize(value));
    return value;
  }

  override _write(message: Message | SentAhead | PreFramed, _enc: BufferEncoding, callback: WriteCallback): void {
    if (message instanceof SentAhead) this.settle(message.flowing, callback);
    else if (message instanceof PreFramed) this.whenSendable(null, () => this.sendPreFramed(message, callback));
    else this.dispatch([message], callback);
  }

  override _writev(chunks: Array<{ chunk: Message | PreFramed }>, callback: WriteCallback): void {
    this.dispatchInOrder(
      chunks.map((c) => c.chunk),
      0,
      callback,
    );
  }

  /** _writev of messages and pre-framed bytes mixed: each run in turn, the next once the one before is out. */
  private dispatchInOrder(items: Array<Message | PreFramed>, from: number, callback: WriteCallback): void {
    if (from >= items.length) {
      callback();
      return;
    }
    const first = items[from]!;
    let to = from + 1;
    const next = (err?: Error | null): void => (err ? callback(err) : this.dispatchInOrder(items, to, callback));
    if (first instanceof PreFramed) {
      this.whenSendable(null, () => this.sendPreFramed(first, next));
      return;
    }
    while (to < items.length && !(items[to] instanceof PreFramed)) to++;
    if (from === 0 && to === items.length) this.dispatch(items as Message[], callback);
    else this.dispatch(items.slice(from, to) as Message[], next);
  }

  /** Writes pre-framed bytes that waited in the Writable (see sendFrameBytes). */
  private sendPreFramed(chunk: PreFramed, callback: WriteCallback): void {
    this.queuedBytes -= chunk.bytes;
    const refused = this.cannotSend();
    if (refused !== null) {
      chunk.error = refused;
      callback();
      this.maybeBytesDrain();
      return;
    }
    const tapped = chunk.tapped;
    let flowing = this.sender!.sendBytes(chunk.buffers, tapped === null ? null : tapped.map((t) => t.frame));
    if (tapped !== null && this.tapPoints !== null) for (const t of tapped) if (!this.tapPoints.out.messages.offer(t.message)) flowing = false;
    this.afterSend(flowing, callback);
  }

  override _final(callback: WriteCallback): void {
    const extras = this.extras;
    const close = extras === null ? null : extras.closePending;
    if (extras !== null) extras.closePending = null;
    const core = this.core;
    if (!core.closeSent && this.has(Flag.Attached) && core.state !== CoreState.Closed) {
      const now = Date.now();
      core.beginClose(now);
      // close() gave a code and reason. Ended without close() (end(), or pipe() at its source's
      // end): after the peer's close, the echo of its code; before it, a close without a code.
      try {
        if (close === null && core.closeReceived) core.answerClose(now);
        else core.close(close?.code, close?.reason, now);
      } catch (err) {
        callback(err as Error);
        return;
      } finally {
        this.arm();
      }
    }
    callback();
  }

  override _destroy(err: Error | null, callback: (error: Error | null) => void): void {
    if (this.transport !== null && !this.transport.destroyed) this.transport.destroy();
    callback(err);
  }

  // ----- Inbound -----

  private onData(chunk: Buffer): void {
    const receiver = this.receiver!;
    if (receiver.error !== null) return;
    if (this.has(Flag.Timed)) this.core.received(Date.now());
    // Server role: the unmasker works in place, so a bytes tap gets a copy of the wire bytes.
    if (this.tapPoints !== null && this.tapPoints.in.bytes.active) {
      this.offerInbound(this.tapPoints.in.bytes, this.role === 'server' ? Buffer.from(chunk) : chunk);
    }
    // Everything sent while this chunk is processed (pongs, close echoes, and the messages that
    // synchronous 'message' listeners send back) leaves in one writev instead of one write each.
    const transport = this.transport!;
    transport.cork();
    const err = receiver.write(chunk);
    transport.uncork();
    if (err !== null) {
      this.failConnection(err);
      return;
    }
    // permessage-deflate: frames still being inflated; read nothing more until they are through.
    if (receiver.busy) this.holdReading(Flag.PausedForInflate);
    this.checkBudget();
    this.options.heldBytesObserver?.heldBytesChanged(this);
  }

  /** @internal permessage-deflate: an inflated chunk reached the assembler (heldBytes grew). */
  onInflatedFrame(): void {
    this.options.heldBytesObserver?.heldBytesChanged(this);
  }

  /** @internal The server's memory budget holds (true) or releases (false) reading from the peer. */
  holdForServer(hold: boolean): void {
    if (hold) this.holdReading(Flag.PausedForServer);
    else this.releaseReading(Flag.PausedForServer);
  }

  /**
   * @internal The server's memory budget cuts this connection: what it assembles or inflates is
   * dropped, it fails with `err`'s code, and a peer that does not read (bytes still queued for
   * it) has its transport destroyed at once.
   */
  failForServer(err: WebSocketError): void {
    if (this.state === ReadyState.CLOSED) return;
    this.receiver?.abort(err);
    this.failConnection(err);
    if (this.bufferedAmount > 0) this.transport?.destroy();
  }

  /**
   * Reading waits while the connection holds its memoryBudget in bytes that go away without
   * reading more (unread data, unsent data): not for a message being assembled alone, which
   * only more reading can complete.
   */
  private budgetHoldsReading(): boolean {
    // Our close is sent: only the peer's close matters now; it must be found (see pushOrPause).
    if (this.core.closeSent) return false;
    const releasable = this.unreadBytes + this.bufferedAmount;
    return releasable > 0 && releasable + (this.receiver?.assembler.heldBytes ?? 0) >= this.memoryBudget;
  }

  /** Pauses or resumes reading for the memory budget. */
  private checkBudget(): void {
    if (this.transport === null) return;
    if (this.budgetHoldsReading()) this.holdReading(Flag.PausedForBudget);
    else this.releaseReading(Flag.PausedForBudget);
  }

  /** True while we hold reading from the transport (for any reason). */
  private readingHeld(): boolean {
    return this.has(Flag.ReadingHeld);
  }

  /**
   * Stops reading from the transport for `reason` (one of the ReadingHeld bits). Returns true
   * if that reason did not hold it already.
   */
  private holdReading(reason: Flag): boolean {
    if (this.transport === null || this.has(reason)) return false;
    this.flags |= reason;
    this.transport.pause();
    return true;
  }

  /** `reason` no longer holds reading: the transport resumes once no other reason does. */
  private releaseReading(reason: Flag): void {
    if (!this.has(reason)) return;
    this.flags &= ~reason;
    this.resumeIfFree();
  }

  /** Resumes the transport unless something still holds reading. */
  private resumeIfFree(): void {
    if (!this.readingHeld()) this.transport?.resume();
  }

  /** Received bytes left a buffer (the application read them). */
  private consumed(bytes: number): void {
    this.unreadBytes -= bytes;
    if (this.has(Flag.PausedForBudget)) this.checkBudget();
    this.options.heldBytesObserver?.heldBytesChanged(this);
  }

  // ----- ReceiverHandler: what the receiver delivers -----

  /** @internal permessage-deflate: everything received has been inflated and delivered. */
  onInflateIdle(): void {
    const then = this.extras?.afterInflate ?? null;
    if (then !== null) {
      this.extras!.afterInflate = null;
      then();
      return;
    }
    this.releaseReading(Flag.PausedForInflate);
  }

  /** @internal permessage-deflate: an error met while inflating, after onData returned. */
  onAsyncError(err: WebSocketError): void {
    this.failConnection(err);
  }

  /** @internal The peer pinged. */
  onPing(payload: Buffer): void {
    if (diagnostics.ping.hasSubscribers) diagnostics.ping.publish({ websocket: this, payload });
    this.emit('ping', payload);
  }

  /** @internal The peer ponged. */
  onPong(payload: Buffer): void {
    if (diagnostics.pong.hasSubscribers) diagnostics.pong.publish({ websocket: this, payload });
    this.emit('pong', payload);
  }

  /** @internal A whole data message. */
  onMessage(message: Message): void {
    if (this.tapPoints !== null) this.offerInbound(this.tapPoints.in.messages, message);
    const value = message.binary ? message.data : message.data.toString('utf8');
    if (diagnostics.message.hasSubscribers) diagnostics.message.publish({ websocket: this, data: value, binary: message.binary });
    this.pushOrPause(this, value);
  }

  /** @internal A piece of a streamed message. */
  onMessagePiece(piece: MessagePiece): void {
    if (this.core.closeReceived) return;
    if (this.tapPoints !== null) this.offerInbound(this.tapPoints.in.messages, piece);
    const extras = this.more();
    if (piece.first) {
      extras.inboundStream = new MessageReadable(
        piece.binary,
        () => this.resumeTransport(),
        undefined,
        (bytes: number) => this.consumed(bytes),
      );
      this.pushOrPause(this, extras.inboundStream);
    }
    const stream = extras.inboundStream!;
    if (piece.data.length > 0) this.pushOrPause(stream, piece.data);
    if (piece.last) {
      stream.push(null);
      extras.inboundStream = null;
    }
  }

  /**
   * Pushes into a readable. What stays buffered counts as unread (a value handed to a 'data'
   * listener at once does not), against the memory budget. A full reader does not pause the
   * transport by itself: reading goes on, so that pings and the peer's close are still read and
   * answered, until the unread data reach the memory budget (see budgetHoldsReading). That bounds
   * what a connection holds for a reader that does not read; TCP slows the peer from there.
   * Once our close is sent, data that would take the connection past its budget are discarded:
   * the application chose to close, and only the peer's close is still awaited.
   */
  private pushOrPause(readable: Readable | Duplex, value: Buffer | string | MessageReadable): void {
    if (emitIfFlowing(readable, value)) return;
    if (this.core.closeSent && this.heldBytes + unreadSize(value) > this.memoryBudget) return;
    const before = readable.readableLength;
    readable.push(value);
    if (readable.readableLength > before) {
      this.unreadBytes += unreadSize(value);
      if (this.budgetHoldsReading()) this.holdReading(Flag.PausedForBudget);
    }
  }

  private resumeTransport(): void {
    if (this.tapPoints !== null && this.inboundTapsBlocked()) return;
    if (this.has(Flag.PausedForReplies) || !this.has(Flag.PausedByUs) || this.transport === null) return;
    // The flag goes first: what resumeInflate() delivers may fill the reader and hold it again.
    this.flags &= ~Flag.PausedByUs;
    this.receiver?.resumeInflate();
    this.resumeIfFree();
  }

  /** @internal The peer's close frame (the core keeps its code and reason; the close timeout runs). */
  onPeerClose(): boolean {
    // The close timeout runs from now (also when the close comes later, from the inflater).
    this.arm();
    this.endReadable();
    if (this.core.closeSent) return false;
    // Writes accepted before the peer's close still go out, then our close: _final sends it
    // (the application's own close if it called close(), else the echo of the peer's code).
    // RFC 6455 §5.5.1 lets an endpoint send what it has before its close. So do the replies to
    // messages the peer sent before its close that a reader (pipe(), a paused 'data' listener,
    // for await) has not read yet: the answer waits for the reader's 'end' (closeTimeout still
    // bounds the wait). Not behind a message streamed out, which may never end: the core
    // echoes at once, cutting it off. A connection nobody reads is answered at once.
    if (this.extras === null || this.extras.outboundOwner === null) {
      if (this.readableLength > 0 && this.readableFlowing !== null && !this.writableEnded) {
        this.once('end', () => this.answerPeerClose());
        // A reader that stopped for good must not hang the handshake: half of closeTimeout
        // later the close is answered anyway (what it has not read stays readable).
        const extras = this.more();
        extras.answerTimer = setTimeout(() => this.answerPeerClose(), (this.options.closeTimeout ?? Defaults.closeTimeout) / 2);
        extras.answerTimer.unref?.();
        return true;
      }
      if (this.writableLength > 0) {
        this.answerPeerClose();
        return true;
      }
    }
    // The core echoes the close right after this call.
    return false;
  }

  /** Ends the writable side: _final answers the peer's close after the writes queued (or sends the application's close). */
  private answerPeerClose(): void {
    this.clearAnswerTimer();
    if (!this.writableEnded) this.end();
  }

  /** @internal The core's frame to send now (pong, close, heartbeat ping). */
  sendFrame(frame: Frame): void {
    // A peer that sends pings (or anything that needs an answer) but does not read would have
    // us queue answers without end: stop reading from it until the answers have drained.
    const flowing = this.sender === null || this.sender.sendFrame(frame);
    if (!flowing && frame.opcode !== Opcode.Ping) this.holdReading(Flag.PausedForReplies);
    // Our close is sent: reading no longer waits for the budget; read on to the peer's close.
    if (frame.opcode === Opcode.Close) this.releaseReading(Flag.PausedForBudget);
  }

  /** @internal The core's error (it keeps the first in `error`): published, and emitted when listened for. */
  onError(err: Error): void {
    if (diagnostics.error.hasSubscribers) diagnostics.error.publish({ websocket: this, error: err });
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** @internal The core closes our side: the closing handshake completed (server), or we failed. */
  endTransport(): void {
    this.transport?.end();
  }

  /** @internal The core gives up on the transport (close timeout, a dead peer): 'close' follows. */
  destroyTransport(): void {
    this.terminate();
  }

  /**
   * @internal The core's reading holds (its own ReadHold bits, which this adapter does not use:
   * it keeps its reasons in `flags`, see holdReading) stop or resume the transport.
   */
  setReading(on: boolean): void {
    if (on) this.resumeIfFree();
    else this.transport?.pause();
  }

  /** @internal For the core's memory budget: bytes waiting to be sent. */
  unsentBytes(): number {
    return this.bufferedAmount;
  }

  /** @internal For the core's memory budget: bytes of the message being assembled. */
  assemblingBytes(): number {
    return this.receiver === null ? 0 : this.receiver.assembler.heldBytes;
  }

  private onEnd(): void {
    // The peer will send nothing more; finish our side too.
    if (this.transport !== null && !this.transport.destroyed) this.transport.end();
  }

  private onTransportError(err: Error): void {
    // Once close frames went both ways the connection is closed cleanly (RFC 6455 §7.1.4); what
    // TCP does after that (a reset from a peer that hangs up with our bytes unread, as Autobahn's
    // server does) is not an error of the connection: the core decides.
    this.core.transportError(err);
    this.transport?.destroy();
  }

  private onTransportClose(): void {
    // permessage-deflate: frames received before the end are still being inflated; deliver
    // them (whatever the reader's pace) before 'close'.
    if (this.receiver !== null && this.receiver.busy && this.receiver.error === null) {
      this.more().afterInflate = () => this.finish();
      this.receiver.resumeInflate();
      return;
    }
    this.finish();
  }

  // ----- Outbound -----

  /** Runs `send` once the connection is open and no streamed message holds the outbound side. */
  private whenSendable(owner: MessageWritable | null, send: () => void): void {
    if (this.state === ReadyState.CONNECTING) {
      (this.more().whenOpen ??= []).push(() => this.whenSendable(owner, send));
      return;
    }
    const holder = this.extras === null ? null : this.extras.outboundOwner;
    if (holder === null || holder === owner) send();
    else (this.extras!.ownerWaiters ??= []).push(() => this.whenSendable(owner, send));
  }

  /**
   * Whether a write without a callback may skip the Writable's machinery (the write request,
   * the dispatch closure, the callback's tick) and go to the sender at once: true when that
   * machinery would do the same at once. The writable side holds nothing and is not corked,
   * ending or failed, nor owes a 'drain' (and its mark is over one message, so that this write
   * alone would not make write() return false); the connection is open, no streamed message
   * holds the outbound side and no send waits for one; no tap watches (taps may hold the
   * writer); nothing waits to be compressed.
   */
  private sendableAtOnce(): boolean {
    if (this.state !== ReadyState.OPEN || this.core.closeSent || !writableIdle(this)) return false;
    const w = (this as unknown as { _writableState: { needDrain: boolean; highWaterMark: number } })._writableState;
    if (w.needDrain || w.highWaterMark <= 1) return false;
    const extras = this.extras;
    if (extras !== null && (extras.outboundOwner !== null || extras.ownerWaiters !== null || extras.whenOpen !== null || extras.tapPoints !== null)) {
      return false;
    }
    return this.sender !== null && !this.sender.pending;
  }

  /**
   * The fast path of write() (see sendableAtOnce): sends `message` now. Most often the socket
   * took it with room to spare, and the write is done: nothing is left to call back. When the
   * socket is full, or zlib still has the message, the usual path would keep the write in
   * progress until 'drain' (or until the message is out), and later writes queue behind it; so
   * the Writable is handed a write that only waits for that (SentAhead), and counts it as the
   * usual path would. A message the sender refuses is dropped and its error reported as 'error'
   * (its writer gave no callback to hear why). Returns what the usual path's super.write() would
   * (write() then applies the byte mark to either).
   */
  private sendAtOnce(message: Message): boolean {
    const sender = this.sender!;
    let flowing = false;
    let refused = false;
    try {
      flowing = sender.sendMessage(message);
    } catch (err) {
      // Its writer gave no callback to hear why: 'error' does (as for the usual path, see refuse()).
      refused = true;
      this.reportError(err as Error);
    }
    // (writableIdle again: whatever the transport ran while writing may have corked or ended this stream.)
    if (!refused && (!flowing || sender.pending) && writableIdle(this)) return super.write(new SentAhead(flowing));
    this.maybeBytesDrain();
    return true;
  }

  private dispatch(messages: Message[], callback: WriteCallback): void {
    this.whenSendable(null, () => this.sendNow(messages, callback));
  }

  /** Why nothing more can be sent, or null. */
  private cannotSend(): WebSocketError | null {
    if (this.core.closeSent || this.sender === null || this.state === ReadyState.CLOSED) {
      return new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[this.state]}`);
    }
    return null;
  }

  private sendNow(messages: Message[], callback: WriteCallback): void {
    let bytes = 0;
    for (const m of messages) bytes += m.data.length;
    this.queuedBytes -= bytes;
    const refused = this.cannotSend();
    if (refused !== null) {
      this.refuse(messages, refused, callback);
      return;
    }
    let flowing: boolean;
    try {
      flowing = messages.length === 1 ? this.sender!.sendMessage(messages[0]!) : this.sender!.sendMessages(messages);
    } catch (err) {
      // The sender refused (not the connection's state): a writer's callback hears of it through
      // `unsent`, and 'error' too, as a Writable reports a failed write both ways.
      this.reportError(err as Error);
      this.refuse(messages, err as Error, callback);
      return;
    }
    if (this.tapPoints !== null) {
      for (const m of messages) if (!this.tapPoints.out.messages.offer(m)) flowing = false;
    }
    // permessage-deflate: the write is done once its compressed frames are on the socket.
    if (this.sender!.pending) {
      this.sender!.whenSent((err, nowFlowing) =>
        err !== null ? this.refuse(messages, err, callback) : this.afterSend(flowing && nowFlowing, callback),
      );
    } else {
      this.afterSend(flowing, callback);
    }
  }

  /**
   * A write whose message sendAtOnce() sent already: done once it is out of zlib and the socket
   * has room, as for sendNow(). (Its writer gave no callback, so an error of zlib's is the
   * connection's to report, as it is for the usual path; refuse() only records it.)
   */
  private settle(flowing: boolean, callback: WriteCallback): void {
    if (this.sender!.pending) {
      this.sender!.whenSent((err, nowFlowing) => (err !== null ? this.refuse([], err, callback) : this.afterSend(flowing && nowFlowing, callback)));
    } else {
      this.afterSend(flowing, callback);
    }
  }

  /** Records why `messages` were not sent (for their writers' callbacks), and lets the stream go on. */
  private refuse(messages: Message[], err: Error, callback: WriteCallback): void {
    const unsent = (this.more().unsent ??= new WeakMap());
    for (const m of messages) unsent.set(m, err);
    callback();
    this.maybeBytesDrain();
  }

  /** Emits 'drain' once bytes held back a writer (see write()) and bufferedAmount is under the mark again. */
  private maybeBytesDrain(): void {
    if (!this.has(Flag.NeedBytesDrain) || this.bufferedAmount >= this.writableBytesMark) return;
    this.setFlag(Flag.NeedBytesDrain, false);
    process.nextTick(() => this.emit('drain'));
  }

  /** Calls back now, or once the transport has drained. */
  private afterSend(flowing: boolean, callback: WriteCallback): void {
    if (flowing) callback();
    else (this.more().drainWaiters ??= []).push(callback);
    this.maybeBytesDrain();
  }

  /** The MessageWritable side (made per message stream): one part of a streamed message. */
  private partSink(): PartSink {
    return {
      sendPart: (owner, data, fin, callback) => this.sendPart(owner, data, fin, callback),
      abortPart: (owner, cause) => this.abortPart(owner, cause),
    };
  }

  /**
   * A MessageWritable destroyed before its end. Begun on the wire, its message can only end by
   * failing the connection (RFC 6455 §7.1.7): close 1011, one 'error' whose cause is the
   * stream's. Not begun: the outbound side is simply given back.
   */
  private abortPart(owner: MessageWritable, cause: Error | null): void {
    const open = this.extras !== null && this.extras.outboundOwner === owner;
    this.releaseOutbound(owner);
    if (!open || !owner.started || this.state === ReadyState.CLOSED) return;
    const detail = cause === null ? 'the message stream was destroyed' : cause.message;
    this.failConnection(new WebSocketError('WS_ERR_MESSAGE_ABORTED', detail, { cause }));
  }

  private sendPart(owner: MessageWritable, data: Buffer, fin: boolean, callback: WriteCallback): void {
    if (!owner.started) this.options.topicHost?.beforeSend(this);
    this.whenSendable(owner, () => {
      const refused = this.cannotSend();
      if (refused !== null) {
        this.releaseOutbound(owner);
        callback(refused);
        return;
      }
      this.more().outboundOwner = owner;
      let flowing: boolean;
      try {
        flowing = this.sender!.sendPart(data, owner.binary, fin);
      } catch (err) {
        this.releaseOutbound(owner);
        callback(err as Error);
        return;
      }
      if (fin) this.releaseOutbound(owner);
      if (this.tapPoints !== null) {
        const piece: MessagePiece = { binary: owner.binary, data, first: !owner.started, last: fin };
        if (!this.tapPoints.out.messages.offer(piece)) flowing = false;
      }
      owner.started = true;
      if (this.sender!.pending) {
        this.sender!.whenSent((err, nowFlowing) => (err !== null ? callback(err) : this.afterSend(flowing && nowFlowing, callback)));
      } else {
        this.afterSend(flowing, callback);
      }
    });
  }

  /** The streamed message of `owner` has ended (or failed): let waiting sends go. */
  private releaseOutbound(owner: MessageWritable): void {
    const extras = this.extras;
    if (extras === null || extras.outboundOwner !== owner) return;
    extras.outboundOwner = null;
    const waiters = extras.ownerWaiters;
    extras.ownerWaiters = null;
    if (waiters !== null) for (const waiter of waiters) waiter();
  }

  private onDrain(): void {
    this.releaseReading(Flag.PausedForReplies);
    if (this.has(Flag.PausedForBudget)) this.checkBudget();
    const waiters = this.extras?.drainWaiters ?? null;
    if (waiters !== null) {
      this.extras!.drainWaiters = null;
      for (const callback of waiters) callback();
    }
    this.maybeBytesDrain();
  }

  /** Sends a control frame now; returns whether the transport still has room. */
  private sendControl(opcode: Opcode, payload: string | Buffer): boolean {
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (data.length > 125) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'control payload over 125 bytes');
    if (this.state !== ReadyState.OPEN || this.sender === null) {
      throw new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[this.state]}`);
    }
    return this.sender.sendFrame(makeFrame(opcode, data));
  }

  // ----- Failing and finishing -----

  /** RFC 6455 §7.1.7: send a close frame with the error's code, then close the transport. */
  private failConnection(err: WebSocketError): void {
    // The core reports the error (once), sends the close frame with its code (which 'close'
    // reports, unless the peer's close came first), and ends our side of the transport.
    this.core.fail(err, Date.now());
    // Everything the peer sends from now on is discarded (the receiver keeps this first error
    // and reads nothing after it), so that nothing reports it a second time.
    this.receiver?.splitter.fail(err);
    this.abortInboundStream(err);
    this.endReadable();
    this.arm();
  }

  /**
   * Ends a message being streamed in with an error. Destroyed with the error when someone
   * listens for it (pipeline(), for await, an 'error' listener); otherwise destroyed without
   * one (its consumer sees 'close' without 'end'), so that the process never crashes on it.
   */
  private abortInboundStream(err: WebSocketError): void {
    const stream = this.extras?.inboundStream ?? null;
    if (stream === null) return;
    this.extras!.inboundStream = null;
    stream.destroy(stream.listenerCount('error') > 0 ? err : undefined);
  }

  /**
   * Arms the connection's one timer at the core's deadline (heartbeat, idle timeout, close
   * timeout), unless it is armed for that time or earlier already: when it fires, the core's
   * tick() does what is due and the timer is armed again for the next deadline. Traffic only
   * moves deadlines later, so it never re-arms the timer: one armed early costs one early wake-up.
   */
  private arm(): void {
    const core = this.core;
    const now = Date.now();
    // A close timeout started by the peer's close (the receiver passes no time) runs from now.
    core.settle(now);
    const at = core.deadline;
    if (at === Infinity) {
      this.disarm();
      return;
    }
    const extras = this.more();
    if (extras.timer !== null) {
      if (extras.timerAt <= at) return;
      clearTimeout(extras.timer);
    }
    extras.timerAt = at;
    extras.timer = setTimeout(WebSocket.onTimer, Math.max(0, at - now), this);
    extras.timer.unref?.();
  }

  private disarm(): void {
    const extras = this.extras;
    if (extras === null || extras.timer === null) return;
    clearTimeout(extras.timer);
    extras.timer = null;
    extras.timerAt = Infinity;
  }

  private static onTimer(ws: WebSocket): void {
    const extras = ws.extras!;
    extras.timer = null;
    extras.timerAt = Infinity;
    const now = Date.now();
    // While we do not read, the peer's silence proves nothing (its pong may be waiting).
    if (ws.readingHeld()) ws.core.received(now);
    ws.core.tick(now);
    ws.arm();
  }

  private clearAnswerTimer(): void {
    const extras = this.extras;
    if (extras === null || extras.answerTimer === null) return;
    clearTimeout(extras.answerTimer);
    extras.answerTimer = null;
  }

  private endReadable(): void {
    if (this.has(Flag.ReadableDone)) return;
    this.setFlag(Flag.ReadableDone, true);
    this.push(null);
  }

  /** An error of the connection that does not fail it: the core keeps the first, onError emits it. */
  private reportError(err: Error): void {
    this.core.reportError(err);
  }

  /** The transport is gone: the core reports it once (onClosed). */
  private finish(): void {
    this.core.transportClosed();
  }

  /** @internal The transport is gone (the core is CLOSED): settle every pending callback and emit 'close'. */
  onClosed(code: number, reason: string): void {
    this.disarm();
    this.clearAnswerTimer();
    // permessage-deflate: free zlib's memory (nothing more will be sent or delivered).
    this.receiver?.destroy();
    this.sender?.destroy();
    const transport = this.transport;
    if (transport !== null) {
      transport.removeListener('data', WebSocket.transportData);
      transport.removeListener('drain', WebSocket.transportDrain);
      transport.removeListener('end', WebSocket.transportEnd);
      transport.removeListener('close', WebSocket.transportClose);
      // An 'error' may still follow a destroy; keep a listener so it is never unhandled.
      transport.removeListener('error', WebSocket.transportError);
      transport.on('error', ignore);
    }
    // Settle every write still waiting: it can no longer be sent.
    // Writes whose bytes are in the transport already: nothing more will come of them.
    const extras = this.extras;
    if (extras !== null) {
      const drainWaiters = extras.drainWaiters;
      extras.drainWaiters = null;
      if (drainWaiters !== null) for (const callback of drainWaiters) callback();
      const pending = [...(extras.whenOpen ?? []), ...(extras.ownerWaiters ?? [])];
      extras.whenOpen = null;
      extras.ownerWaiters = null;
      extras.outboundOwner = null;
      for (const task of pending) task();
      if (extras.tapPoints !== null) {
        for (const direction of [extras.tapPoints.in, extras.tapPoints.out]) {
          direction.bytes.end();
          direction.frames.end();
          direction.messages.end();
        }
      }
      // A message being streamed in cannot end normally any more (the error only made then: an
      // Error's stack trace costs more than the rest of a close).
      if (extras.inboundStream !== null) {
        this.abortInboundStream(new WebSocketError('WS_ERR_CONNECTION_LOST', 'connection closed in the middle of a message'));
      }
    }
    // Messages already received stay readable: the readable side ends, nothing is destroyed.
    this.endReadable();
    // Without a closing handshake or a failure of ours, 1006 (the core's default).
    if (diagnostics.close.hasSubscribers) diagnostics.close.publish({ websocket: this, code, reason });
    this.emit('close', code, reason);
  }
}

function ignore(): void {}

/** The callback of ping()/pong() in ws's forms. */
type ControlCallback = (err?: Error | null) => void;

/**
 * `new WebSocket(url)` (the browser's and ws's form) is not this class's constructor: the
 * connection layer does not dial. A clear error at the call, rather than a connection that
 * never opens.
 */
function roleError(role: unknown): TypeError {
  const shown = role instanceof URL ? role.href : JSON.stringify(role);
  const err = new TypeError(
    `new WebSocket(${shown}): the first argument is the role, 'client' or 'server'. ` +
      "To open a client connection use connect() from 'wspipe' (connect(url, options)), " +
      "or new WebSocket(url, protocols, options) from 'wspipe/ws'",
  );
  (err as TypeError & { code: string }).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/**
 * What write()'s fast path hands the Writable when the message it sent still has to settle
 * (see WebSocket.sendAtOnce): the Writable counts it as one write in progress, and _write()
 * waits, as for any message, without sending it again.
 */
class SentAhead {
  constructor(readonly flowing: boolean) {}
}

/** Fan-out: frames encoded already, waiting in the Writable behind earlier writes (see sendFrameBytes). */
class PreFramed {
  error: Error | null = null;
  constructor(
    readonly buffers: readonly Buffer[],
    readonly bytes: number,
    /** What taps see of these bytes (null when no tap watches). */
    readonly tapped: Array<{ frame: Frame; message: Message }> | null,
  ) {}
}

/** Encodes a close frame (used by stages and specs that build the bytes of a close by hand). */
export function closeFrame(code?: number, reason?: string): Frame {
  return makeFrame(Opcode.Close, encodeClosePayload(code, reason));
}
