/**
 * FanoutHub: the server's topics. It keeps which connection subscribes to which topic, gives
 * each subscriber a bounded DeliveryQueue (lib/fanout/queue.ts), encodes each published message
 * once (Publication) and hands the same frame bytes to every subscriber that can take them, and
 * passes messages to and from the other nodes through an adapter:
 *
 *   server.publish(topic, data) ─► Publication (framed once) ─► each local subscriber's queue ─► ws.sendFrameBytes
 *                               └► adapter.publish({ origin: id, seq }) ─► broker ─► other nodes' hubs ─► their subscribers
 *
 * A node receives its own messages back from a broker and drops them (it delivered them when
 * they were published). A subscriber is a thin adapter over its connection (Subscriber, the
 * queue's sink); everything it decides is in the queue.
 */
import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { CloseCode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { ReadyState, type WebSocket } from '../connection/websocket';
import type { Frame, Message } from '../protocol/frame';
import type { FanoutCounters, SubscriptionOptions, TopicHost } from '../connection/topics';
import { DeliveryQueue, DeliverySink, Discard, Subscription, emptyCounters, subscriptionSettings } from './queue';
import { Compression, Publication } from './publication';
import { AdapterEvent, AdapterMessage, FanoutAdapter, localAdapter } from './adapter';
import { FanoutChannels } from './channels';

/** Server-wide fan-out options (ServerOptions.fanout). */
export interface FanoutOptions {
  /** Limit and policy of subscriptions that give none, and of broadcast(). Default { limit: 1 MiB, policy: 'close' }. */
  defaults?: SubscriptionOptions;
  /**
   * permessage-deflate connections that compress with context takeover cannot share the one
   * compressed frame: 'compress' (default) compresses the message through each one's own
   * stream (one zlib call per subscriber, in the thread pool); 'plain' sends them the shared
   * uncompressed frame instead (no CPU per subscriber, more bytes on the wire).
   */
  contextTakeover?: 'compress' | 'plain';
}

export interface PublishOptions {
  /** Send as binary (default: a string as text, a Buffer or Uint8Array as binary). */
  binary?: boolean;
  /** A connection (or several) of this server not to send it to, e.g. the one it came from. */
  except?: WebSocket | readonly WebSocket[] | ReadonlySet<WebSocket>;
  /** For 'coalesce' subscriptions: only the latest queued message per key is kept. Default: the topic. */
  key?: string;
}

export interface BroadcastOptions {
  binary?: boolean;
  /** Sends only to the connections for which this returns true. */
  filter?: (ws: WebSocket) => boolean;
}

/** Server-wide counters: the subscribers' summed, plus what crossed the adapter. */
export interface HubCounters extends FanoutCounters {
  /** Messages published by this server (publish() calls). */
  published: number;
  /** Messages received from other nodes through the adapter. */
  received: number;
  /** Messages of other nodes known to be lost (gaps in their sequence numbers). */
  lost: number;
}

/** The hub's events, reported through the server. */
export interface HubEvents {
  /** Messages of another node never arrived. */
  lost(info: { origin: string; topic: string; count: number }): void;
  /** The adapter's broker connection went down, came back, or failed. */
  adapter(event: AdapterEvent): void;
}

const BROADCAST = '';

function toPayload(data: string | Buffer | Uint8Array): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'data must be a string, Buffer or Uint8Array');
}

function checkTopic(topic: unknown): asserts topic is string {
  if (typeof topic !== 'string') throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'a topic is a string');
}

/**
 * How many bytes a subscriber's connection may hold (its socket's buffer plus the frames of this
 * turn not written yet) and still be handed more at once; at most half the smallest limit of its
 * subscriptions, so that what the socket holds and what is queued stay within the limit (a
 * queue always keeps the newest message: the limit plus one message when the socket alone
 * holds more than the limit minus one message). Frames handed to it within one turn of the event loop go out together at the
 * turn's end, in one socket write, or earlier once they reach this. Past it, its queue waits for
 * the socket's 'drain'. A socket's own mark (16 KiB) is one large message: waiting for 'drain' at
 * it would send a burst of large messages one write and one 'drain' each.
 */
const WRITE_AHEAD = 256 * 1024;

type Tapped = { frame: Frame; message: Message };

/** One connection's side of fan-out: the sink of its DeliveryQueue. */
class Subscriber implements DeliverySink<Publication> {
  readonly queue: DeliveryQueue<Publication>;
  readonly subscriptions = new Map<string, Subscription<Publication>>();
  /** For broadcast(): made on first use, with the hub's defaults. */
  broadcastSub: Subscription<Publication> | null = null;
  /** The connection has room again (or cannot send any more). */
  readonly onRoom = (err?: Error | null): void => {
    if (err === null || err === undefined) this.queue.drained();
  };

  /** Frames of this turn not written yet (see WRITE_AHEAD), their size, and what taps would see of them. */
  private batch: Buffer[] | null = null;
  private batchBytes = 0;
  private batchTaps: Array<() => Tapped> = [];
  /** WRITE_AHEAD, or half the smallest limit of this connection's subscriptions when smaller (see limitsChanged). */
  private writeAhead = WRITE_AHEAD;

  constructor(
    readonly ws: WebSocket,
    private readonly hub: FanoutHub,
  ) {
    this.queue = new DeliveryQueue(this, hub.totals);
  }

  write(p: Publication): boolean {
    const c: Compression | null = this.ws.outboundCompression;
    if (c === null || !p.compressible(c)) return this.add(p.plain(), p.size, p.tappedPlain);
    if (c.side.noContextTakeover) return this.add(p.deflated(c), p.size, p.tappedDeflated(c));
    if (this.hub.contextTakeover === 'plain') return this.add(p.plain(), p.size, p.tappedPlain);
    // Through the connection's own compressor: one message in flight at a time.
    this.flush();
    this.ws.send(p.data, { binary: p.binary }, this.onRoom);
    return false;
  }

  /** The subscriptions changed: the write-ahead follows their smallest limit (see WRITE_AHEAD). */
  limitsChanged(): void {
    let least = Infinity;
    for (const sub of this.subscriptions.values()) least = Math.min(least, sub.limit);
    if (this.broadcastSub !== null) least = Math.min(least, this.broadcastSub.limit);
    this.writeAhead = Math.min(WRITE_AHEAD, Math.floor(least / 2));
  }

  /** Adds a frame to this turn's batch: true while the connection holds less than its write-ahead (the batch goes at the turn's end). */
  private add(bytes: Buffer[], size: number, tapped: () => Tapped): boolean {
    if (this.batch === null) {
      this.batch = [];
      this.hub.flushLater(this);
    }
    for (const b of bytes) this.batch.push(b);
    this.batchBytes += size;
    this.batchTaps.push(tapped);
    return this.buffered() < this.writeAhead || this.flush();
  }

  /**
   * Writes this turn's batch (in one write). False when the connection is full: the socket asked
   * to wait for 'drain' and holds the write-ahead or more (the queue then waits for onRoom).
   */
  flush(): boolean {
    const batch = this.batch;
    if (batch === null) return true;
    const bytes = this.batchBytes;
    const taps = this.batchTaps;
    this.batch = null;
    this.batchBytes = 0;
    this.batchTaps = [];
    const tapped = taps.length === 1 ? (): Tapped[] => [taps[0]!()] : (): Tapped[] => taps.map((t) => t());
    // Not sent at once, onRoom is called once there is room: the queue may wait for it.
    const sent = this.ws.sendFrameBytes(batch, bytes, this.onRoom, tapped) || this.ws.bufferedAmount < this.writeAhead;
    if (!sent) this.queue.blocked();
    return sent;
  }

  buffered(): number {
    return this.ws.bufferedAmount + this.batchBytes;
  }

  overflow(sub: Subscription<Publication>): void {
    if (FanoutChannels.overflow.hasSubscribers) FanoutChannels.overflow.publish({ topic: sub.topic, ws: this.ws });
    this.hub.forget(this.ws);
    if (this.ws.readyState === ReadyState.OPEN) this.ws.close(CloseCode.TryAgainLater, 'subscriber too slow');
  }

  discarded(sub: Subscription<Publication>, what: Discard, bytes: number): void {
    if (FanoutChannels.discard.hasSubscribers) FanoutChannels.discard.publish({ topic: sub.topic, what, bytes, ws: this.ws });
  }
}

export class FanoutHub implements TopicHost {
  /** This node's id: the origin of the messages it publishes through the adapter. */
  readonly id: string = randomUUID();
  /** Summed over this server's subscribers (see counters()). */
  readonly totals: FanoutCounters = emptyCounters();
  readonly contextTakeover: 'compress' | 'plain';
  private readonly defaults: SubscriptionOptions;
  private readonly adapter: FanoutAdapter;
  private readonly topicSubscribers = new Map<string, Set<Subscriber>>();
  private readonly subscribers = new Map<WebSocket, Subscriber>();
  /** Next sequence number per topic published here. */
  private readonly sent = new Map<string, number>();
  /** Last sequence number seen per topic and origin (only for topics subscribed here). */
  private readonly seen = new Map<string, Map<string, number>>();
  private published = 0;
  private received = 0;
  private lost = 0;
  private closed = false;

  constructor(
    adapter: FanoutAdapter = localAdapter(),
    options: FanoutOptions = {},
    private readonly events: Partial<HubEvents> = {},
  ) {
    this.defaults = { ...subscriptionSettings(options.defaults) };
    this.contextTakeover = options.contextTakeover ?? 'compress';
    if (this.contextTakeover !== 'compress' && this.contextTakeover !== 'plain') {
      throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `fanout.contextTakeover must be 'compress' or 'plain'`);
    }
    this.adapter = adapter;
    adapter.start({
      id: this.id,
      receive: (m) => this.receive(m),
      report: (e) => this.report(e),
    });
  }

  // ----- TopicHost: what WebSocket's topic methods call -----

  subscribe(ws: WebSocket, topic: string, options?: SubscriptionOptions): void {
    checkTopic(topic);
    if (ws.readyState !== ReadyState.OPEN) throw new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[ws.readyState]}`);
    const subscriber = this.subscriberOf(ws);
    const sub = subscriber.queue.subscribe(topic, { ...this.defaults, ...options });
    const previous = subscriber.subscriptions.get(topic);
    if (previous !== undefined) subscriber.queue.unsubscribe(previous);
    subscriber.subscriptions.set(topic, sub);
    subscriber.limitsChanged();
    let set = this.topicSubscribers.get(topic);
    if (set === undefined) {
      this.topicSubscribers.set(topic, (set = new Set()));
      this.adapter.subscribe(topic);
    }
    set.add(subscriber);
  }

  unsubscribe(ws: WebSocket, topic: string): boolean {
    checkTopic(topic);
    const subscriber = this.subscribers.get(ws);
    const sub = subscriber?.subscriptions.get(topic);
    if (subscriber === undefined || sub === undefined) return false;
    subscriber.queue.unsubscribe(sub);
    subscriber.subscriptions.delete(topic);
    subscriber.limitsChanged();
    this.leave(subscriber, topic);
    return true;
  }

  isSubscribed(ws: WebSocket, topic: string): boolean {
    return this.subscribers.get(ws)?.subscriptions.has(topic) ?? false;
  }

  topics(ws: WebSocket): string[] {
    const subscriber = this.subscribers.get(ws);
    return subscriber === undefined ? [] : [...subscriber.subscriptions.keys()];
  }

  counters(ws: WebSocket): FanoutCounters {
    const subscriber = this.subscribers.get(ws);
    return subscriber === undefined ? emptyCounters() : { ...subscriber.queue.counters };
  }

  beforeSend(ws: WebSocket): void {
    if (this.toFlush.length === 0) return;
    this.subscribers.get(ws)?.flush();
  }

  // ----- The server's side -----

  /** Server-wide counters (a copy). */
  hubCounters(): HubCounters {
    return { ...this.totals, published: this.published, received: this.received, lost: this.lost };
  }

  /** Number of local subscribers of `topic`. */
  subscriberCount(topic: string): number {
    return this.topicSubscribers.get(topic)?.size ?? 0;
  }

  /**
   * Sends `data` to every subscriber of `topic`, here and (through the adapter) on the other
   * nodes. Never waits for a subscriber. Returns the number of local subscribers offered it.
   */
  publish(topic: string, data: string | Buffer | Uint8Array, options: PublishOptions = {}): number {
    checkTopic(topic);
    if (this.closed) throw new WebSocketError('WS_ERR_INVALID_STATE', 'the server is closed');
    const payload = toPayload(data);
    const binary = options.binary ?? typeof data !== 'string';
    const key = options.key ?? null;
    this.published++;
    const offered = this.deliver(new Publication(topic, payload, binary, key), options.except, false);
    const seq = (this.sent.get(topic) ?? 0) + 1;
    this.sent.set(topic, seq);
    this.adapter.publish({ origin: this.id, topic, seq, data: payload, binary, key });
    return offered;
  }

  /** Sends `data` to every open connection of `clients` (filtered), framed once. This server only. */
  broadcast(clients: Iterable<WebSocket>, data: string | Buffer | Uint8Array, options: BroadcastOptions = {}): number {
    const payload = toPayload(data);
    const p = new Publication(null, payload, options.binary ?? typeof data !== 'string', null);
    const filter = options.filter;
    let offered = 0;
    for (const ws of clients) {
      if (ws.readyState !== ReadyState.OPEN || (filter !== undefined && !filter(ws))) continue;
      const subscriber = this.subscriberOf(ws);
      let sub = subscriber.broadcastSub;
      if (sub === null) {
        sub = subscriber.broadcastSub = subscriber.queue.subscribe(BROADCAST, this.defaults);
        subscriber.limitsChanged();
      }
      subscriber.queue.offer(sub, p, p.size, null);
      offered++;
    }
    return offered;
  }

  /** A connection has closed, or was closed for falling behind: forget its subscriptions and queue. */
  forget(ws: WebSocket): void {
    const subscriber = this.subscribers.get(ws);
    if (subscriber === undefined) return;
    this.subscribers.delete(ws);
    subscriber.queue.clear();
    for (const topic of subscriber.subscriptions.keys()) this.leave(subscriber, topic);
    subscriber.subscriptions.clear();
    ws.removeListener('close', this.onClose);
  }

  /** Stops: forgets every subscriber and closes the adapter. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ws of [...this.subscribers.keys()]) this.forget(ws);
    await this.adapter.close();
  }

  // ----- Inside -----

  /** Subscribers with frames batched in this turn, written at its end (a microtask). */
  private toFlush: Subscriber[] = [];

  /** @internal `subscriber` has a batch to write at the end of this turn. */
  flushLater(subscriber: Subscriber): void {
    if (this.toFlush.length === 0) queueMicrotask(this.flushAll);
    this.toFlush.push(subscriber);
  }

  private readonly flushAll = (): void => {
    const list = this.toFlush;
    this.toFlush = [];
    for (const subscriber of list) subscriber.flush();
  };

  private readonly onClose = ((hub: FanoutHub) =>
    function (this: WebSocket): void {
      hub.forget(this);
    })(this);

  private subscriberOf(ws: WebSocket): Subscriber {
    let subscriber = this.subscribers.get(ws);
    if (subscriber === undefined) {
      subscriber = new Subscriber(ws, this);
      this.subscribers.set(ws, subscriber);
      ws.on('close', this.onClose);
    }
    return subscriber;
  }

  private leave(subscriber: Subscriber, topic: string): void {
    const set = this.topicSubscribers.get(topic);
    if (set === undefined) return;
    set.delete(subscriber);
    if (set.size === 0) {
      this.topicSubscribers.delete(topic);
      this.seen.delete(topic);
      if (!this.closed) this.adapter.unsubscribe(topic);
    }
  }

  private deliver(p: Publication, except: PublishOptions['except'], remote: boolean): number {
    const set = this.topicSubscribers.get(p.topic!);
    let offered = 0;
    if (set !== undefined) {
      const key = p.key;
      for (const subscriber of set) {
        if (except !== undefined && isExcepted(subscriber.ws, except)) continue;
        const sub = subscriber.subscriptions.get(p.topic!)!;
        subscriber.queue.offer(sub, p, p.size, key);
        offered++;
      }
    }
    if (FanoutChannels.publish.hasSubscribers) {
      FanoutChannels.publish.publish({ topic: p.topic, bytes: p.data.length, subscribers: offered, encodings: p.encodings, remote });
    }
    return offered;
  }

  /** A message from another node (the adapter's). */
  private receive(m: AdapterMessage): void {
    if (m.origin === this.id || this.closed) return;
    if (!this.topicSubscribers.has(m.topic)) return;
    this.received++;
    let origins = this.seen.get(m.topic);
    if (origins === undefined) this.seen.set(m.topic, (origins = new Map()));
    const last = origins.get(m.origin);
    origins.set(m.origin, m.seq);
    if (last !== undefined && m.seq > last + 1) {
      const info = { origin: m.origin, topic: m.topic, count: m.seq - last - 1 };
      this.lost += info.count;
      if (FanoutChannels.lost.hasSubscribers) FanoutChannels.lost.publish(info);
      this.events.lost?.(info);
    }
    this.deliver(new Publication(m.topic, m.data, m.binary, m.key), undefined, true);
  }

  private report(e: AdapterEvent): void {
    if (FanoutChannels.adapter.hasSubscribers) FanoutChannels.adapter.publish(e);
    this.events.adapter?.(e);
  }
}

function isExcepted(ws: WebSocket, except: NonNullable<PublishOptions['except']>): boolean {
  if (except === ws) return true;
  if (Array.isArray(except)) return except.includes(ws);
  if (except instanceof Set) return except.has(ws);
  return false;
}
