/**
 * Adapters carry published messages between processes (and machines) through a broker, so that
 * the servers of several processes share topics. Delivery is AT MOST ONCE: a message published
 * while a node (or the broker) is down, or while the broker's connection is being re-established,
 * is lost for the nodes that missed it, and nothing resends it. Each message carries its origin
 * (so a node never delivers its own message twice: it delivered it locally when published) and a
 * sequence number per origin and topic, by which a receiver counts what it lost (see the hub's
 * `lost` counter and the `wspipe:fanout:lost` channel). Messages of one publisher on one topic
 * arrive in the order published.
 */
import { Buffer } from 'node:buffer';
import { WebSocketError } from '../protocol/errors';

/** One published message as it crosses processes. */
export interface AdapterMessage {
  /** The id of the node (server) that published it. */
  origin: string;
  topic: string;
  /** 1, 2, 3 ... per origin and topic. */
  seq: number;
  data: Buffer;
  binary: boolean;
  /** publish()'s `key` ('coalesce'), or null. */
  key: string | null;
}

/** What an adapter reports of its broker connection. */
/** 'up' may say how many of this node's messages could not be published while the broker was away (`unsent`). */
export type AdapterEvent = { event: 'down' } | { event: 'up'; unsent?: number } | { event: 'error'; error: Error };

/** The node (hub) an adapter serves. */
export interface AdapterNode {
  readonly id: string;
  /** A message from the broker (the node ignores its own). */
  receive(message: AdapterMessage): void;
  /** The broker connection went down, came back, or failed. */
  report(event: AdapterEvent): void;
}

/** A broker, as a server's fan-out sees it. One adapter serves one server. */
export interface FanoutAdapter {
  /** Called once, by the server that takes the adapter. */
  start(node: AdapterNode): void;
  /** Sends to every node subscribed to the topic (this one included: it drops its own). */
  publish(message: AdapterMessage): void;
  /** This node has its first local subscriber to `topic`. */
  subscribe(topic: string): void;
  /** This node has no local subscriber to `topic` any more. */
  unsubscribe(topic: string): void;
  /** Releases the broker connection. */
  close(): Promise<void>;
}

// ----- The wire envelope, for adapters whose broker carries bytes -----

const ENVELOPE_VERSION = 1;
const FLAG_BINARY = 1;
const FLAG_KEY = 2;

/**
 * Encodes `m` (without its topic, which a broker carries as the channel) as bytes:
 * version u8, flags u8, origin length u8, origin, seq (u32 high, u32 low), [key length u16, key], data.
 */
export function encodeEnvelope(m: AdapterMessage): Buffer {
  const origin = Buffer.from(m.origin, 'utf8');
  if (origin.length > 255) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'origin id over 255 bytes');
  const key = m.key === null ? null : Buffer.from(m.key, 'utf8');
  if (key !== null && key.length > 0xffff) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'key over 65535 bytes');
  const head = Buffer.allocUnsafe(3 + origin.length + 8 + (key === null ? 0 : 2 + key.length));
  head[0] = ENVELOPE_VERSION;
  head[1] = (m.binary ? FLAG_BINARY : 0) | (key === null ? 0 : FLAG_KEY);
  head[2] = origin.length;
  origin.copy(head, 3);
  let at = 3 + origin.length;
  head.writeUInt32BE(Math.floor(m.seq / 2 ** 32), at);
  head.writeUInt32BE(m.seq % 2 ** 32, at + 4);
  at += 8;
  if (key !== null) {
    head.writeUInt16BE(key.length, at);
    key.copy(head, at + 2);
  }
  return Buffer.concat([head, m.data]);
}

/** Decodes an envelope (the topic comes from the channel); null when the bytes are not one. */
export function decodeEnvelope(topic: string, bytes: Buffer): AdapterMessage | null {
  if (bytes.length < 3 || bytes[0] !== ENVELOPE_VERSION) return null;
  const flags = bytes[1]!;
  const originEnd = 3 + bytes[2]!;
  if (bytes.length < originEnd + 8) return null;
  const origin = bytes.toString('utf8', 3, originEnd);
  const seq = bytes.readUInt32BE(originEnd) * 2 ** 32 + bytes.readUInt32BE(originEnd + 4);
  let at = originEnd + 8;
  let key: string | null = null;
  if (flags & FLAG_KEY) {
    if (bytes.length < at + 2) return null;
    const length = bytes.readUInt16BE(at);
    if (bytes.length < at + 2 + length) return null;
    key = bytes.toString('utf8', at + 2, at + 2 + length);
    at += 2 + length;
  }
  return { origin, topic, seq, data: bytes.subarray(at), binary: (flags & FLAG_BINARY) !== 0, key };
}

// ----- In-process -----

/** Servers of one process that share topics: give each the same bus (localAdapter(bus)). */
export class LocalBus {
  /** @internal */
  readonly nodes = new Map<string, Set<AdapterNode>>();
}

/**
 * The in-process adapter (the default, with a bus of its own: topics stay within the server).
 * Servers given adapters on one LocalBus share topics; delivery is synchronous.
 */
export function localAdapter(bus: LocalBus = new LocalBus()): FanoutAdapter {
  let self: AdapterNode | null = null;
  const topics = new Set<string>();
  return {
    start(node) {
      self = node;
    },
    publish(message) {
      const nodes = bus.nodes.get(message.topic);
      if (nodes === undefined) return;
      for (const node of [...nodes]) node.receive(message);
    },
    subscribe(topic) {
      if (self === null || topics.has(topic)) return;
      topics.add(topic);
      let nodes = bus.nodes.get(topic);
      if (nodes === undefined) bus.nodes.set(topic, (nodes = new Set()));
      nodes.add(self);
    },
    unsubscribe(topic) {
      if (self === null || !topics.delete(topic)) return;
      const nodes = bus.nodes.get(topic);
      nodes?.delete(self);
      if (nodes?.size === 0) bus.nodes.delete(topic);
    },
    async close() {
      for (const topic of [...topics]) this.unsubscribe(topic);
    },
  };
}
