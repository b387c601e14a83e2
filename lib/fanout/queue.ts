/**
 * DeliveryQueue: one subscriber's fan-out delivery, I/O-free. Published messages are offered;
 * the queue hands them to a sink (the connection) while it takes more, and queues the rest,
 * bounded per subscription, until the sink says it drained:
 *
 *   publish ─► offer(sub, item) ─┬─ sink writable, nothing queued ─► sink.write(item)
 *                                └─ else: limit check (queued + sink.buffered()) ─► policy
 *                                         └─► queue ─► drained() ─► sink.write(...) in order
 *
 * One list per connection keeps publication order across its subscriptions; each entry is also
 * in its subscription's list, so that evicting the oldest of one subscription, or replacing a
 * key, is O(1). The publisher never waits: an offer always returns at once.
 */
import { WebSocketError } from '../protocol/errors';
import type { FanoutCounters, OverflowPolicy, SubscriptionOptions } from '../connection/topics';

export type { FanoutCounters, OverflowPolicy, SubscriptionOptions } from '../connection/topics';

/** Defaults of SubscriptionOptions. */
export const FanoutDefaults = {
  limit: 1024 * 1024,
  policy: 'close' as OverflowPolicy,
} as const;

const POLICIES: readonly OverflowPolicy[] = ['drop-oldest', 'drop-newest', 'coalesce', 'close'];

export function emptyCounters(): FanoutCounters {
  return { delivered: 0, dropped: 0, evicted: 0, coalesced: 0, closed: 0, queuedBytes: 0 };
}

/** What a queue discarded, for diagnostics. */
export type Discard = 'dropped' | 'evicted' | 'coalesced';

/** The connection, as the queue sees it. */
export interface DeliverySink<T> {
  /** Hands `item` to the connection: true when it takes more at once, false to wait for drained(). */
  write(item: T): boolean;
  /** Bytes the connection holds and has not sent yet (counted against every limit). */
  buffered(): number;
  /** A 'close' subscription overflowed: close the connection (1013). Called once. */
  overflow(sub: Subscription<T>): void;
  /** Optional: told of each message discarded (diagnostics). */
  discarded?(sub: Subscription<T>, what: Discard, size: number): void;
}

class Entry<T> {
  prev: Entry<T> | null = null;
  next: Entry<T> | null = null;
  subPrev: Entry<T> | null = null;
  subNext: Entry<T> | null = null;
  constructor(
    readonly item: T,
    readonly size: number,
    readonly sub: Subscription<T>,
    readonly key: string | null,
  ) {}
}

/** One topic of one subscriber, with its limit and policy, and its queued messages. */
export class Subscription<T> {
  /** Bytes queued for this subscription. */
  bytes = 0;
  /** Set once unsubscribed: offers are ignored. */
  removed = false;
  /** @internal Oldest and newest queued entries of this subscription. */
  head: Entry<T> | null = null;
  /** @internal */
  tail: Entry<T> | null = null;
  /** @internal 'coalesce': the queued entry of each key. */
  keys: Map<string, Entry<T>> | null;

  constructor(
    readonly topic: string,
    readonly limit: number,
    readonly policy: OverflowPolicy,
  ) {
    this.keys = policy === 'coalesce' ? new Map() : null;
  }
}

/** Checks subscription options (throws WS_ERR_INVALID_ARGUMENT) and fills in the defaults. */
export function subscriptionSettings(options: SubscriptionOptions = {}): { limit: number; policy: OverflowPolicy } {
  const limit = options.limit ?? FanoutDefaults.limit;
  const policy = options.policy ?? FanoutDefaults.policy;
  if (typeof limit !== 'number' || !(limit >= 0)) {
    throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `subscription limit must be a number of bytes >= 0, got ${String(limit)}`);
  }
  if (!POLICIES.includes(policy)) {
    throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `subscription policy must be one of ${POLICIES.join(', ')}, got ${String(policy)}`);
  }
  return { limit, policy };
}

export class DeliveryQueue<T> {
  readonly counters: FanoutCounters = emptyCounters();
  /** The sink takes more at once. */
  private writable = true;
  /** A 'close' subscription overflowed: nothing more is taken. */
  private closed = false;
  private head: Entry<T> | null = null;
  private tail: Entry<T> | null = null;

  /** `totals`: counters shared by the queues of one server, added to as well. */
  constructor(
    private readonly sink: DeliverySink<T>,
    private readonly totals: FanoutCounters | null = null,
  ) {}

  /** A new subscription (throws WS_ERR_INVALID_ARGUMENT for a bad limit or policy). */
  subscribe(topic: string, options?: SubscriptionOptions): Subscription<T> {
    const { limit, policy } = subscriptionSettings(options);
    return new Subscription<T>(topic, limit, policy);
  }

  /** Forgets `sub`, and its queued messages. */
  unsubscribe(sub: Subscription<T>): void {
    sub.removed = true;
    for (let e = sub.head; e !== null; e = e.subNext) this.unlink(e);
    sub.head = sub.tail = null;
    sub.keys?.clear();
  }

  /** Nothing more: frees every queued message (the connection is gone). */
  clear(): void {
    for (let e = this.head; e !== null; e = e.next) {
      const sub = e.sub;
      sub.bytes -= e.size;
      sub.head = sub.tail = null;
      sub.keys?.clear();
      this.count('queuedBytes', -e.size);
    }
    this.head = this.tail = null;
    this.closed = true;
  }

  /** Offers one published message of `size` bytes to this subscriber; `key` is for 'coalesce'. */
  offer(sub: Subscription<T>, item: T, size: number, key: string | null): void {
    if (sub.removed) return;
    if (this.closed) {
      this.count('dropped', 1);
      return;
    }
    if (this.writable && this.head === null) {
      this.deliver(item);
      return;
    }
    if (sub.keys !== null) {
      const previous = sub.keys.get(key ?? sub.topic);
      if (previous !== undefined) this.discard(previous, 'coalesced');
    }
    const held = this.sink.buffered();
    if (sub.bytes + size + held > sub.limit) {
      switch (sub.policy) {
        case 'drop-newest':
          this.dropArriving(sub, size);
          return;
        case 'close':
          this.overflow(sub, size);
          return;
        case 'drop-oldest':
        case 'coalesce':
          // The newest is kept: what the connection holds cannot be evicted, so when it alone
          // fills the limit, everything queued goes and the newest waits alone.
          if (size > sub.limit) {
            this.dropArriving(sub, size);
            return;
          }
          while (sub.head !== null && sub.bytes + size + held > sub.limit) this.discard(sub.head, 'evicted');
          break;
      }
    }
    this.append(new Entry(item, size, sub, sub.keys === null ? null : (key ?? sub.topic)));
  }

  /** The sink found itself full after a write it had accepted (a batched write went out later): queue until drained(). */
  blocked(): void {
    this.writable = false;
  }

  /** The sink can take more: sends what is queued, in order, while it does. */
  drained(): void {
    this.writable = true;
    while (this.writable && this.head !== null) {
      const e = this.head;
      this.unlink(e);
      this.forgetInSub(e);
      this.deliver(e.item);
    }
  }

  private deliver(item: T): void {
    this.count('delivered', 1);
    this.writable = this.sink.write(item);
  }

  private dropArriving(sub: Subscription<T>, size: number): void {
    this.count('dropped', 1);
    this.sink.discarded?.(sub, 'dropped', size);
  }

  private overflow(sub: Subscription<T>, size: number): void {
    let dropped = 1;
    for (let e = this.head; e !== null; e = e.next) dropped++;
    this.clear();
    this.count('dropped', dropped);
    this.count('closed', 1);
    this.sink.discarded?.(sub, 'dropped', size);
    this.sink.overflow(sub);
  }

  private discard(e: Entry<T>, what: Discard): void {
    this.unlink(e);
    this.forgetInSub(e);
    this.count(what, 1);
    this.sink.discarded?.(e.sub, what, e.size);
  }

  private append(e: Entry<T>): void {
    const sub = e.sub;
    e.prev = this.tail;
    if (this.tail === null) this.head = e;
    else this.tail.next = e;
    this.tail = e;
    e.subPrev = sub.tail;
    if (sub.tail === null) sub.head = e;
    else sub.tail.subNext = e;
    sub.tail = e;
    if (e.key !== null) sub.keys!.set(e.key, e);
    sub.bytes += e.size;
    this.count('queuedBytes', e.size);
  }

  /** Takes `e` out of the connection's list (and its bytes out of the counts). */
  private unlink(e: Entry<T>): void {
    if (e.prev === null) this.head = e.next;
    else e.prev.next = e.next;
    if (e.next === null) this.tail = e.prev;
    else e.next.prev = e.prev;
    e.prev = e.next = null;
    e.sub.bytes -= e.size;
    this.count('queuedBytes', -e.size);
  }

  /** Takes `e` out of its subscription's list and key map. */
  private forgetInSub(e: Entry<T>): void {
    const sub = e.sub;
    if (e.subPrev === null) sub.head = e.subNext;
    else e.subPrev.subNext = e.subNext;
    if (e.subNext === null) sub.tail = e.subPrev;
    else e.subNext.subPrev = e.subPrev;
    e.subPrev = e.subNext = null;
    if (e.key !== null && sub.keys!.get(e.key) === e) sub.keys!.delete(e.key);
  }

  private count(field: keyof FanoutCounters, n: number): void {
    this.counters[field] += n;
    if (this.totals !== null) this.totals[field] += n;
  }
}
