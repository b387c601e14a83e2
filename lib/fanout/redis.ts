/**
 * The Redis adapter (`import { redisAdapter } from 'wspipe/redis'`): servers of several processes
 * or machines share topics through Redis pub/sub.
 *
 *   createServer({ port: 8080, adapter: redisAdapter({ url: 'redis://127.0.0.1:6379' }) })
 *
 * Each topic is a Redis channel (`prefix:topic`), subscribed while this server has a local
 * subscriber to it; a message is one PUBLISH of an envelope carrying the origin node and a
 * sequence number (lib/fanout/adapter.ts). Two connections: one for PUBLISH, one in subscriber
 * mode (Redis requires it), both on ioredis, which reconnects by itself.
 *
 * AT MOST ONCE, as Redis pub/sub is: a message published while a node is not subscribed (Redis
 * down or restarting, the node reconnecting) is not kept anywhere and is lost for that node.
 * What was lost is said, not hidden: PUBLISH is not queued while Redis is unreachable (a queue
 * would grow without bound during an outage); it fails, is counted in `counters.unsent`, and
 * the 'up' report after the reconnection says how many of ours never left (`unsent`). Nodes
 * that missed messages of another count them from the sequence numbers (the server's 'lost'
 * event, the `lost` counter, `wspipe:fanout:lost`).
 *
 * ioredis is an optional peer dependency: install it (`npm install ioredis`) to use this module;
 * the rest of wspipe never loads it.
 */
import { Buffer } from 'node:buffer';
import { Redis, type RedisOptions } from 'ioredis';
import { WebSocketError } from '../protocol/errors';
import { type AdapterNode, type FanoutAdapter, decodeEnvelope, encodeEnvelope } from './adapter';

export interface RedisAdapterOptions {
  /** Where Redis is. Default 'redis://127.0.0.1:6379'. */
  url?: string;
  /** Channel names are `${prefix}:${topic}`; servers that share topics use the same prefix. Default 'wspipe'. */
  prefix?: string;
  /** More ioredis options for both connections (retryStrategy, tls, password...). */
  redis?: RedisOptions;
}

export interface RedisAdapterCounters {
  /** Messages PUBLISHed. */
  published: number;
  /** Messages of ours that could not be published (Redis unreachable): lost for every other node. */
  unsent: number;
  /** Messages received from Redis (ours included, which the node drops). */
  received: number;
  /** Times the subscriber connection was lost. */
  disconnects: number;
}

/** The Redis adapter, with its counters and a way to wait for its subscriptions. */
export interface RedisAdapter extends FanoutAdapter {
  readonly counters: RedisAdapterCounters;
  /** Resolves once Redis has confirmed the subscription of every topic subscribed so far. */
  synced(): Promise<void>;
}

/** ioredis retries: 50 ms, 100 ms ... at most 1 s apart, forever (until close()). */
function retry(times: number): number {
  return Math.min(times * 50, 1000);
}

export function redisAdapter(options: RedisAdapterOptions = {}): RedisAdapter {
  const url = options.url ?? 'redis://127.0.0.1:6379';
  const prefix = `${options.prefix ?? 'wspipe'}:`;
  const connectionOptions: RedisOptions = {
    retryStrategy: retry,
    ...options.redis,
    // Our own choices, whatever `redis` says: see the module comment.
    enableOfflineQueue: false,
    autoResubscribe: false,
    lazyConnect: true,
    maxRetriesPerRequest: null,
  };
  const counters: RedisAdapterCounters = { published: 0, unsent: 0, received: 0, disconnects: 0 };
  const topics = new Set<string>();
  /** Topics whose SUBSCRIBE is confirmed on the current connection. */
  const subscribed = new Set<string>();
  const waiters: Array<() => void> = [];
  let node: AdapterNode | null = null;
  let pub: Redis | null = null;
  let sub: Redis | null = null;
  let down = false;
  let unsentAtDown = 0;
  let closing = false;

  const settle = (): void => {
    if (sub?.status !== 'ready') return;
    for (const topic of topics) if (!subscribed.has(topic)) return;
    for (const resolve of waiters.splice(0)) resolve();
  };

  const send = (command: 'subscribe' | 'unsubscribe', topic: string): void => {
    if (sub === null || sub.status !== 'ready') return; // done on 'ready'
    sub[command](prefix + topic).then(
      () => {
        if (command === 'subscribe' && topics.has(topic)) subscribed.add(topic);
        settle();
      },
      // The connection went down meanwhile: 'ready' subscribes again.
      () => {},
    );
  };

  const onSubReady = (): void => {
    subscribed.clear();
    for (const topic of topics) send('subscribe', topic);
    if (down) {
      down = false;
      node?.report({ event: 'up', unsent: counters.unsent - unsentAtDown });
    }
    settle();
  };

  const onSubDown = (): void => {
    subscribed.clear();
    if (down || closing) return;
    down = true;
    unsentAtDown = counters.unsent;
    counters.disconnects++;
    node?.report({ event: 'down' });
  };

  let lastError: string | null = null;
  const onError = (err: Error): void => {
    // ioredis reports each failed attempt while Redis is away: one report per distinct error.
    if (closing || err.message === lastError) return;
    lastError = err.message;
    node?.report({ event: 'error', error: err });
  };

  return {
    counters,
    start(n) {
      if (node !== null) throw new WebSocketError('WS_ERR_INVALID_STATE', 'this Redis adapter serves a server already');
      node = n;
      pub = new Redis(url, connectionOptions);
      sub = new Redis(url, connectionOptions);
      for (const c of [pub, sub]) c.on('error', onError);
      pub.on('ready', () => (lastError = null));
      sub.on('ready', onSubReady);
      sub.on('close', onSubDown);
      sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
        counters.received++;
        const name = channel.toString('utf8');
        if (!name.startsWith(prefix)) return;
        const m = decodeEnvelope(name.slice(prefix.length), message);
        if (m !== null) node!.receive(m);
      });
      // Connection failures are retried by ioredis ('error' reports them).
      pub.connect().catch(() => {});
      sub.connect().catch(() => {});
    },
    publish(message) {
      if (pub === null || pub.status !== 'ready') {
        counters.unsent++;
        return;
      }
      counters.published++;
      pub.publish(prefix + message.topic, encodeEnvelope(message)).catch(() => {
        counters.published--;
        counters.unsent++;
      });
    },
    subscribe(topic) {
      if (topics.has(topic)) return;
      topics.add(topic);
      send('subscribe', topic);
    },
    unsubscribe(topic) {
      if (!topics.delete(topic)) return;
      subscribed.delete(topic);
      send('unsubscribe', topic);
      settle();
    },
    synced() {
      return new Promise<void>((resolve) => {
        waiters.push(resolve);
        settle();
      });
    },
    async close() {
      closing = true;
      for (const resolve of waiters.splice(0)) resolve();
      await Promise.all(
        [pub, sub].map((c) =>
          c === null || c.status === 'end'
            ? null
            : new Promise<void>((resolve) => {
                c.once('end', () => resolve());
                c.disconnect(false);
              }),
        ),
      );
    },
  };
}
