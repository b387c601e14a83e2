/**
 * What a connection needs to know of topics (fan-out, lib/fanout/): the options of a
 * subscription, the counters, and the host that keeps the subscriptions. The host is the server's
 * fan-out hub; it lives in a higher layer, so the connection only knows this interface.
 */
import type { WebSocket } from './websocket';

/**
 * What a subscription does when its subscriber cannot keep up (its queue plus the bytes the
 * connection holds already would pass the limit):
 * - 'drop-oldest': evict the subscription's oldest queued messages to make room (the newest is
 *   always kept, unless it alone is over the limit);
 * - 'drop-newest': discard the arriving message;
 * - 'coalesce': keep only the latest queued message per key (publish's `key`, default the topic),
 *   then evict the oldest other keys if still over;
 * - 'close': close the connection with 1013 (Try Again Later).
 */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'coalesce' | 'close';

export interface SubscriptionOptions {
  /** Most bytes (frames queued for this subscription plus those the connection holds unsent). Default 1 MiB. */
  limit?: number;
  /** See OverflowPolicy. Default 'close'. */
  policy?: OverflowPolicy;
}

/** Fan-out counters, of one connection or summed over a server. */
export interface FanoutCounters {
  /** Messages handed to connections. */
  delivered: number;
  /** Messages discarded on arrival ('drop-newest', a message that alone passes the limit, a subscriber closed for 'close'). */
  dropped: number;
  /** Queued messages discarded to make room ('drop-oldest', and 'coalesce' past its limit). */
  evicted: number;
  /** Queued messages replaced by a later one of the same key ('coalesce'). */
  coalesced: number;
  /** Connections closed with 1013 by a 'close' subscription. */
  closed: number;
  /** Bytes queued now (not yet handed to the connection). */
  queuedBytes: number;
}

/** (Not exported from the package.) The fan-out hub as a connection sees it (set by the server, see WebSocketOptions.topicHost). */
export interface TopicHost {
  subscribe(ws: WebSocket, topic: string, options?: SubscriptionOptions): void;
  unsubscribe(ws: WebSocket, topic: string): boolean;
  isSubscribed(ws: WebSocket, topic: string): boolean;
  topics(ws: WebSocket): string[];
  counters(ws: WebSocket): FanoutCounters;
  /** The connection is about to send something of its own: published frames it holds go first. */
  beforeSend(ws: WebSocket): void;
}
