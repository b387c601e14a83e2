/**
 * WebSocket: one connection as a Duplex of messages, a thin adapter over a ConnectionCore and
 * any transport Duplex of bytes.
 *
 *   transport --bytes--> inbound.ts: onData > Receiver (splitter > unmasker > assembler; a
 *                        message in one small frame whole in the chunk: straight to the assembler)
 *        ^                  > ConnectionCore.receive (pings, pongs, close)  > pushOrPause --> read()
 *        |                                     | pong / close / heartbeat ping (sendReply)
 *        |                                     v
 *        +--bytes-- Sender (framer > masker) <-- outbound.ts: write()/send() (sendAtOnce, or the
 *                                                 Writable's _write > dispatch > sendNow)
 *
 *   websocket.ts   this class: the public API, attach(), the Duplex internals
 *   handlers.ts    the methods the Receiver, the core and the server's memory budget call, put on
 *                  this class's prototype (most a line into the files below)
 *   inbound.ts     bytes in, messages into the readable side and 'message', reading held and released
 *   outbound.ts    write(), send(), streamed and pre-framed sends, control frames, 'drain'
 *   closing.ts     failing, close(), _final's close, the one timer at the core's deadline, 'close'
 *   taps.ts        taps and the frame diagnostics channel
 *   connection-state.ts  the flag bits, the Duplex options, what only some connections need (Extras)
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
import type { AnyListener, Emitting, PlainDuplex } from '../protocol/events';
import { Duplex } from '../stages/streams';
import { MessageReadable, MessageWritable, MessageWritableOptions } from '../stages/message-stream';
import type { Tap, TapOptions } from '../stages/tap';
import { Defaults, Opcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import type { Frame, Message } from '../protocol/frame';
import type { OutboundMessage } from '../stages/message-framer';
import { Receiver, Role } from './receiver';
import { ConnectionCore, CoreState } from './connection-core';
import { Sender } from './sender';
import type { FanoutCounters, SubscriptionOptions, TopicHost } from './topics';
import { channels as diagnostics } from './diagnostics';
import { type ControlCallback, Extras, Flag, PreFramed, SentAhead, type TapPoints, type WriteCallback, listenerTable, roleError, streamOptions, unreadSize } from './connection-state';
import { HandshakeResult, ReadyState, TapDirection, TapLayer, TappedMessage, Transport, WebSocketEvents, WebSocketOptions } from './websocket-types';
import { consumed, messageListenersGone, onNewListener, resumeTransport } from './inbound';
import { partSink, sendControlForm, sendFrameBytes, writeMany, writeMessage, writeOne } from './outbound';
import { closeConnection, finalClose } from './closing';
import { openTap } from './taps';
import { attachTransport } from './attach';
import { ConnectionHandlers, installHandlers } from './handlers';

export { ReadyState } from './websocket-types';
export type { HandshakeResult, HeldBytesObserver, TapDirection, TapLayer, TappedMessage, Transport, WebSocketEvents, WebSocketOptions } from './websocket-types';

/**
 * @internal The handler methods of its Receiver, its core and the server's memory budget: in
 * handlers.ts, installed on the prototype below (installHandlers).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- merged into the class: adds ConnectionHandlers' methods
export interface WebSocket extends ConnectionHandlers {}

/**
 * Memory per connection: an idle connection should cost little more than its socket. So the
 * connection is itself the handler of its Receiver and of its core (handlers.ts), the
 * transport's and its own listeners are shared functions that find the connection through the
 * transport (or `this`), yes/no state is bits of one field, and what only some connections need
 * (heartbeat, closing state, waiting lists, streamed messages, taps) is made on first use.
 *
 * No `implements ReceiverHandler, ConnectionCoreHandler`: their methods are internal, left out of
 * the published declarations (stripInternal), where the clause would no longer hold;
 * `new Receiver(..., this)` checks the shape.
 */
export class WebSocket extends (Duplex as Emitting<typeof Duplex, WebSocketEvents, PlainDuplex>) {
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
  /**
   * @internal The protocol decisions: the closing handshake, failing (error -> close code), the liveness
   * deadlines and the close timeout. This class does the I/O they ask for.
   */
  readonly core: ConnectionCore;
  /** @internal See Extras; null until something needs it. */
  extras: Extras | null = null;

  constructor(role: Role, options: WebSocketOptions = {}) {
    if (role !== 'client' && role !== 'server') throw roleError(role);
    super(streamOptions(options));
    const emitter = this as unknown as { _events: object; _eventsCount: number };
    if (emitter._eventsCount === 0) emitter._events = listenerTable();
    this.flags = (role === 'client' ? Flag.ClientRole : 0) | (options.heartbeat !== undefined || options.idleTimeout !== undefined ? Flag.Timed : 0);
    this.options = options;
    this.core = new ConnectionCore(role, options, this);
    this.on('newListener', onNewListener);
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

  // A stream's emitter emits no 'removeListener' event (Node keeps its listener table's shape):
  // removing the last 'message' listener is seen here (see messageListenersGone in inbound.ts).

  /** @internal Removes a listener (and the 'data' listener feeding 'message' with the last 'message' listener). */
  override removeListener(event: string | symbol, listener: AnyListener): this {
    super.removeListener(event, listener);
    if (event === 'message') messageListenersGone(this);
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
      this.on('newListener', onNewListener);
      return this;
    }
    super.removeAllListeners(event);
    if (event === 'message') messageListenersGone(this);
    if (event === 'newListener') this.on('newListener', onNewListener);
    return this;
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
}

installHandlers(WebSocket);
