/**
 * WebSocket: one connection as a Duplex of messages, a thin adapter over a ConnectionCore and
 * any transport Duplex of bytes.
 *
 *   transport --bytes--> inbound.ts: onData > Receiver (splitter > unmasker > assembler)
 *        ^                  > ConnectionCore.receive (pings, pongs, close)  > pushOrPause --> read()
 *        |                                     | pong / close / heartbeat ping (sendReply)
 *        |                                     v
 *        +--bytes-- Sender (framer > masker) <-- outbound.ts: write()/send() (sendAtOnce, or the
 *                                                 Writable's _write > dispatch > sendNow)
 *
 *   websocket.ts   this class: the public API, attach(), the transport's listeners, and the
 *                  handler methods the Receiver and the core call (each a line into the files below)
 *   inbound.ts     bytes in, messages into the readable side, reading held and released
 *   outbound.ts    write(), send(), streamed and pre-framed sends, control frames, 'drain'
 *   closing.ts     failing, close(), _final's close, the one timer at the core's deadline, 'close'
 *   taps.ts        taps and the frame diagnostics channel
 *   connection-state.ts  the flag bits and what only some connections need (Extras)
 *   connection-core.ts   the protocol decisions, without I/O (closing handshake, failing, deadlines)
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
import { Duplex } from '../stages/streams';
import type { MessagePiece } from '../stages/fragment-assembler';
import { MessageReadable, MessageWritable, MessageWritableOptions } from '../stages/message-stream';
import type { Tap, TapOptions } from '../stages/tap';
import { Defaults, Opcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { type Frame, type Message, makeFrame } from '../protocol/frame';
import { encodeClosePayload } from '../protocol/close';
import type { OutboundMessage } from '../stages/message-framer';
import { Receiver, Role } from './receiver';
import { ConnectionCore, CoreState, ReadHold } from './connection-core';
import { Sender } from './sender';
import type { FanoutCounters, SubscriptionOptions, TopicHost } from './topics';
import { channels as diagnostics } from './diagnostics';
import { type ControlCallback, Extras, Flag, PreFramed, SentAhead, type TapPoints, type WriteCallback, listenerTable, roleError, unreadSize } from './connection-state';
import { HandshakeResult, ReadyState, TapDirection, TapLayer, TappedMessage, Transport, WebSocketEvents, WebSocketOptions } from './websocket-types';
import { consumed, deliverMessage, deliverPiece, inflateIdle, peerClosed, resumeTransport } from './inbound';
import { partSink, sendControlForm, sendFrameBytes, sendReply, writeMany, writeMessage, writeOne } from './outbound';
import { closeConnection, closed, failConnection, finalClose } from './closing';
import { openTap } from './taps';
import { attachTransport } from './attach';

export { ReadyState } from './websocket-types';
export type { HandshakeResult, HeldBytesObserver, TapDirection, TapLayer, TappedMessage, Transport, WebSocketEvents, WebSocketOptions } from './websocket-types';

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

/**
 * Memory per connection: an idle connection should cost little more than its socket. So the
 * connection is itself the handler of its Receiver and of its core (the methods below), the
 * transport's and its own listeners are shared functions that find the connection through the
 * transport (or `this`), yes/no state is bits of one field, and what only some connections need
 * (heartbeat, closing state, waiting lists, streamed messages, taps) is made on first use.
 *
 * No `implements ReceiverHandler, ConnectionCoreHandler`: their methods here are marked internal, left out of the published
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
  /** @internal Flag bits (ReadyState CONNECTING at first). */
  flags: number;
  /** @internal */
  transport: Transport | null = null;
  /** @internal */
  receiver: Receiver | null = null;
  /** @internal */
  sender: Sender | null = null;
  /** @internal */
  readonly options: WebSocketOptions;
  /** @internal Bytes given to write() that have not reached the transport yet. */
  queuedBytes = 0;
  /** @internal Bytes parsed since reading last yielded its turn (see TURN_BYTES in inbound.ts). */
  turnBytes = 0;
  /**
   * @internal The protocol decisions: the closing handshake, failing (error -> close code), the liveness
   * deadlines and the close timeout. This class does the I/O they ask for.
   */
  readonly core: ConnectionCore;
  /** @internal See Extras; null until something needs it. */
  extras: Extras | null = null;

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

  /** @internal CONNECTING until attach(), then the core's state (OPEN, CLOSING, CLOSED: the same numbers). */
  get state(): ReadyState {
    const state = this.core.state;
    return (this.flags & Flag.Attached) === 0 && state !== CoreState.Closed ? ReadyState.CONNECTING : (state as number);
  }

  // The flags field: has(flag), setFlag(flag, on).
  /** @internal */
  setFlag(flag: Flag, on: boolean): void {
    this.flags = on ? this.flags | flag : this.flags & ~flag;
  }
  /** @internal */
  has(flag: Flag): boolean {
    return (this.flags & flag) !== 0;
  }

  /** @internal See WebSocketOptions.memoryBudget. */
  get memoryBudget(): number {
    return this.options.memoryBudget ?? Defaults.memoryBudget;
  }

  /** @internal See WebSocketOptions.writableHighWaterMarkBytes (at most memoryBudget). */
  get writableBytesMark(): number {
    return Math.min(this.options.writableHighWaterMarkBytes ?? 1024 * 1024, this.memoryBudget);
  }

  /** @internal Hands a value to the Writable (what write() does for a message it does not send at once). */
  queue(chunk: Message | SentAhead | PreFramed, callback?: WriteCallback): boolean {
    return callback === undefined ? super.write(chunk) : super.write(chunk, callback);
  }

  /** @internal Extras, made now if it was not yet. */
  more(): Extras {
    return (this.extras ??= new Extras());
  }

  /** @internal The tap points, or null (no tap was ever made). */
  get tapPoints(): TapPoints | null {
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
    return this.core.heldBytes;
  }

  /**
   * @internal Starts the connection on a transport whose opening handshake is done. `head` holds bytes
   * that arrived after the handshake (often the first frames). Used by the server and client.
   */
  attach(transport: Transport, head: Buffer | null, handshake: HandshakeResult): void {
    attachTransport(this, transport, head, handshake);
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

  /**
   * @internal Removes listeners (and the 'data' listener feeding 'message' with the 'message'
   * listeners). Removing them all keeps the connection's own 'newListener' listener, which makes
   * a 'message' listener added later start the flow.
   */
  override removeAllListeners(event?: string | symbol): this {
    // (No argument and an undefined one differ to EventEmitter: the latter removes nothing.)
    if (event === undefined) {
      super.removeAllListeners();
      this.on('newListener', WebSocket.newListener);
      return this;
    }
    super.removeAllListeners(event);
    if (event === 'message') this.messageListenersGone();
    if (event === 'newListener') this.on('newListener', WebSocket.newListener);
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
    return openTap(this, layer, direction, options);
  }

  /**
   * Starts one outgoing message whose payload is written as a stream: each chunk written goes
   * out as a frame as soon as the connection may send, and end() sends the final frame.
   * `fs.createReadStream(path).pipe(ws.createMessageStream({ binary: true }))`. Control frames
   * (pong, close) still get through between its frames; other data messages wait until it ends.
   */
  createMessageStream(options: MessageWritableOptions = {}): MessageWritable {
    return new MessageWritable(partSink(this), options);
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
    return writeMessage(this, chunk, a, b);
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
    return sendFrameBytes(this, buffers, bytes, onRoom, tapped);
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
    sendControlForm(this, Opcode.Ping, payload, mask, callback);
  }

  /** Sends an unsolicited pong (a unidirectional heartbeat, RFC 6455 §5.5.3); the call forms of ping(). */
  pong(payload?: string | Buffer | ControlCallback, mask?: boolean | ControlCallback, callback?: ControlCallback): void {
    sendControlForm(this, Opcode.Pong, payload, mask, callback);
  }

  /**
   * Starts the closing handshake: messages already accepted by send()/write() are sent first,
   * then a close frame with `code` (1000-1003, 1007-1014 or 3000-4999; none sends an empty
   * close) and `reason` (at most 123 bytes of UTF-8). The transport is destroyed if the peer
   * does not answer within `closeTimeout`.
   */
  close(code?: number, reason?: string): void {
    closeConnection(this, code, reason);
  }

  /** Destroys the transport at once, without a closing handshake ('close' reports 1006). */
  terminate(): void {
    if (this.transport === null) this.finish();
    else this.transport.destroy();
  }

  // ----- Duplex internals -----

  override _read(): void {
    resumeTransport(this);
  }

  // Every way of consuming a buffered message ('message'/'data' listeners, pipe(), for await,
  // read()) goes through read(): that is where the memory budget gets its bytes back.
  override read(size?: number): string | Buffer | MessageReadable | null {
    const value = super.read(size) as string | Buffer | MessageReadable | null;
    if (value !== null && !(value instanceof MessageReadable)) consumed(this, unreadSize(value));
    return value;
  }

  override _write(message: Message | SentAhead | PreFramed, _enc: BufferEncoding, callback: WriteCallback): void {
    writeOne(this, message, callback);
  }

  override _writev(chunks: Array<{ chunk: Message | PreFramed }>, callback: WriteCallback): void {
    writeMany(this, chunks, callback);
  }

  override _final(callback: WriteCallback): void {
    finalClose(this, callback);
  }

  override _destroy(err: Error | null, callback: (error: Error | null) => void): void {
    if (this.transport !== null && !this.transport.destroyed) this.transport.destroy();
    callback(err);
  }

  // ----- Inbound -----

  /** @internal permessage-deflate: an inflated chunk reached the assembler (heldBytes grew). */
  onInflatedFrame(): void {
    this.options.heldBytesObserver?.heldBytesChanged(this);
  }

  /** @internal The server's memory budget holds (true) or releases (false) reading from the peer. */
  holdForServer(hold: boolean): void {
    if (hold) this.core.hold(ReadHold.External);
    else this.core.release(ReadHold.External);
  }

  /**
   * @internal The server's memory budget cuts this connection: what it assembles or inflates is
   * dropped, it fails with `err`'s code, and a peer that does not read (bytes still queued for
   * it) has its transport destroyed at once.
   */
  failForServer(err: WebSocketError): void {
    if (this.state === ReadyState.CLOSED) return;
    this.receiver?.abort(err);
    failConnection(this, err);
    if (this.bufferedAmount > 0) this.transport?.destroy();
  }

  // ----- ReceiverHandler: what the receiver delivers -----

  /** @internal permessage-deflate: everything received has been inflated and delivered. */
  onInflateIdle(): void {
    inflateIdle(this);
  }

  /** @internal permessage-deflate: an error met while inflating, after onData returned. */
  onAsyncError(err: WebSocketError): void {
    failConnection(this, err);
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
    // Straight from the receiver (the core sees control frames only): nothing after the peer's close.
    if (!this.core.closeReceived) deliverMessage(this, message);
  }

  /** @internal A piece of a streamed message. */
  onMessagePiece(piece: MessagePiece): void {
    deliverPiece(this, piece);
  }

  /** @internal The peer's close frame (the core keeps its code and reason; the close timeout runs). */
  onPeerClose(): boolean {
    return peerClosed(this);
  }

  // ----- ConnectionCoreHandler: what the core asks of its adapter -----

  /** @internal The core's frame to send now (pong, close, heartbeat ping). */
  sendFrame(frame: Frame): void {
    sendReply(this, frame);
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

  /** @internal Nothing holds reading any more (true), or something does (false): see the core's ReadHold. */
  setReading(on: boolean): void {
    if (on) this.transport?.resume();
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

  /** @internal An error of the connection that does not fail it: the core keeps the first, onError emits it. */
  reportError(err: Error): void {
    this.core.reportError(err);
  }

  /** @internal The transport is gone: the core reports it once (onClosed). */
  finish(): void {
    this.core.transportClosed();
  }

  /** @internal The transport is gone (the core is CLOSED): settle every pending callback and emit 'close'. */
  onClosed(code: number, reason: string): void {
    closed(this, code, reason);
  }
}

/** Encodes a close frame (used by stages and specs that build the bytes of a close by hand). */
export function closeFrame(code?: number, reason?: string): Frame {
  return makeFrame(Opcode.Close, encodeClosePayload(code, reason));
}
