/**
 * Topics on a real server (127.0.0.1, port 0), with ws's client as the peer: subscribe and
 * publish, frames built once and shared (the same Buffer objects reach every subscriber's
 * socket), permessage-deflate (RFC 7692) with and without context takeover, ordering against a
 * connection's own sends, bounded delivery to subscribers that stop reading, counters and
 * diagnostics_channel, broadcast, and servers of one process sharing topics on a LocalBus.
 */
import { expect } from 'chai';
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocket as WsClient } from 'ws';
import { connect, createServer, LocalBus, localAdapter, WebSocket, WebSocketServer } from '../../lib';
import type { ServerOptions } from '../../lib/server/server';

interface Started {
  server: WebSocketServer;
  url: string;
  /** Server-side connections, in order of arrival. */
  conns: WebSocket[];
  /** Chunks written by each server-side socket, in order of arrival (when recording). */
  writes: Buffer[][];
  /** Per server-side socket: how many times it handed bytes to the system (its _write and _writev calls). */
  flushes: number[];
  http: http.Server;
}

/** A server on an http server of ours (so that the spec holds each server-side socket and can see what it writes). */
async function start(options: ServerOptions = {}): Promise<Started> {
  const httpServer = http.createServer();
  const server = createServer({ ...options, noServer: true });
  const conns: WebSocket[] = [];
  const writes: Buffer[][] = [];
  const flushes: number[] = [];
  httpServer.on('upgrade', (req, socket: net.Socket, head) => {
    const record: Buffer[] = [];
    writes.push(record);
    const index = flushes.push(0) - 1;
    const internals = socket as unknown as { _write: (...args: unknown[]) => void; _writev: (...args: unknown[]) => void };
    for (const name of ['_write', '_writev'] as const) {
      const original = internals[name].bind(socket);
      internals[name] = (...args: unknown[]) => {
        flushes[index]!++;
        original(...args);
      };
    }
    const write = socket.write.bind(socket) as (chunk: Buffer, cb?: () => void) => boolean;
    (socket as unknown as { write: typeof write }).write = (chunk: Buffer, cb?: () => void) => {
      record.push(chunk);
      return write(chunk, cb);
    };
    server.handleUpgrade(req as never, socket, head, (ws) => {
      conns.push(ws);
      server.emit('connection', ws, req);
    });
  });
  httpServer.listen(0, '127.0.0.1');
  await once(httpServer, 'listening');
  const { port } = httpServer.address() as net.AddressInfo;
  return { server, url: `ws://127.0.0.1:${port}`, conns, writes, flushes, http: httpServer };
}

async function stop(s: Started): Promise<void> {
  await new Promise<void>((resolve) => s.server.close(resolve));
  s.http.close();
  await once(s.http, 'close');
}

interface Peer {
  ws: WsClient;
  got: Array<{ data: string; binary: boolean }>;
  /** Resolves once `n` messages have come in all. */
  until(n: number): Promise<void>;
}

async function peer(s: Started, options: ConstructorParameters<typeof WsClient>[2] = {}): Promise<{ peer: Peer; conn: WebSocket }> {
  const before = s.conns.length;
  const ws = new WsClient(s.url, options);
  const got: Peer['got'] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  ws.on('message', (data: Buffer, binary: boolean) => {
    got.push({ data: data.toString(), binary });
    for (const w of [...waiters]) if (got.length >= w.n) w.resolve();
  });
  await once(ws, 'open');
  while (s.conns.length === before) await new Promise((r) => setImmediate(r));
  const until = (n: number): Promise<void> =>
    got.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }));
  return { peer: { ws, got, until }, conn: s.conns[s.conns.length - 1]! };
}

async function closePeer(p: Peer): Promise<void> {
  if (p.ws.readyState === WsClient.CLOSED) return;
  p.ws.terminate();
  await once(p.ws, 'close');
}

/** A client whose socket is paused once open: it stops reading (resume() it to read again). */
async function stalledPeer(s: Started): Promise<{ peer: Peer; conn: WebSocket; socket: net.Socket }> {
  const made = await peer(s);
  const socket = (made.peer.ws as unknown as { _socket: net.Socket })._socket;
  socket.pause();
  return { ...made, socket };
}

/** Waits (a turn of the event loop at a time, at most 10 s) until `ready()`. */
async function until(ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error('condition not met within 10 s');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

describe('fanout: topics on the server', function () {
  let s: Started;
  const peers: Peer[] = [];
  afterEach(async () => {
    for (const p of peers.splice(0)) await closePeer(p);
    if (s !== undefined) await stop(s);
  });

  async function add(options?: ConstructorParameters<typeof WsClient>[2]): Promise<{ peer: Peer; conn: WebSocket }> {
    const made = await peer(s, options);
    peers.push(made.peer);
    return made;
  }

  describe('subscribe, publish, unsubscribe', () => {
    it('delivers to the subscribers of the topic only, text as text and binary as binary, in order', async () => {
      s = await start();
      const a = await add();
      const b = await add();
      const c = await add();
      a.conn.subscribe('news');
      b.conn.subscribe('news');
      c.conn.subscribe('sport');
      expect(a.conn.isSubscribed('news')).to.equal(true);
      expect(c.conn.isSubscribed('news')).to.equal(false);
      expect(c.conn.topics).to.deep.equal(['sport']);
      expect(s.server.publish('news', 'one')).to.equal(2);
      expect(s.server.publish('news', Buffer.from('two'))).to.equal(2);
      expect(s.server.publish('sport', 'goal')).to.equal(1);
      expect(s.server.publish('nobody', 'x')).to.equal(0);
      await a.peer.until(2);
      await b.peer.until(2);
      await c.peer.until(1);
      expect(a.peer.got).to.deep.equal([
        { data: 'one', binary: false },
        { data: 'two', binary: true },
      ]);
      expect(b.peer.got).to.deep.equal(a.peer.got);
      expect(c.peer.got).to.deep.equal([{ data: 'goal', binary: false }]);
      expect(s.server.subscriberCount('news')).to.equal(2);
    });

    it('skips `except`, stops after unsubscribe, and forgets a connection once it closes', async () => {
      s = await start();
      const a = await add();
      const b = await add();
      a.conn.subscribe('t');
      b.conn.subscribe('t');
      s.server.publish('t', 'not to a', { except: a.conn });
      expect(a.conn.unsubscribe('t')).to.equal(true);
      expect(a.conn.unsubscribe('t')).to.equal(false);
      s.server.publish('t', 'after');
      await b.peer.until(2);
      a.conn.subscribe('t');
      s.server.publish('t', 'again');
      await a.peer.until(1);
      expect(a.peer.got.map((m) => m.data)).to.deep.equal(['again']);
      b.peer.ws.close();
      await once(b.conn, 'close');
      expect(s.server.subscriberCount('t')).to.equal(1);
    });

    it('refuses bad arguments with a code, and topics on a client connection', async () => {
      s = await start();
      const a = await add();
      expect(() => a.conn.subscribe(42 as never)).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => a.conn.subscribe('t', { policy: 'later' as never })).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => s.server.publish('t', 5 as never)).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      const client = connect(s.url);
      await once(client, 'open');
      expect(() => client.subscribe('t')).to.throw().with.property('code', 'WS_ERR_INVALID_STATE');
      expect(client.topics).to.deep.equal([]);
      client.close();
      await once(client, 'close');
    });
  });

  describe('frames built once', () => {
    it('writes the same Buffer objects to every subscriber: one chunk for a small message', async () => {
      s = await start();
      const subs = [await add(), await add(), await add()];
      for (const x of subs) x.conn.subscribe('t');
      const marks = s.writes.map((w) => w.length);
      s.server.publish('t', 'hello');
      await Promise.resolve(); // written at the end of the turn (one write per subscriber per turn)
      const sent = s.writes.map((w, i) => w.slice(marks[i]));
      expect(sent.map((w) => w.length)).to.deep.equal([1, 1, 1]);
      expect(sent[0]![0]).to.equal(sent[1]![0]);
      expect(sent[0]![0]).to.equal(sent[2]![0]);
      expect(sent[0]![0]!.toString('hex')).to.equal('8105' + Buffer.from('hello').toString('hex'));
      for (const x of subs) await x.peer.until(1);
    });

    it('writes the header and the published payload itself (no copy) for a large message', async () => {
      s = await start();
      const subs = [await add(), await add()];
      for (const x of subs) x.conn.subscribe('t');
      const payload = Buffer.alloc(16 * 1024, 7);
      const marks = s.writes.map((w) => w.length);
      s.server.publish('t', payload);
      await Promise.resolve();
      const sent = s.writes.map((w, i) => w.slice(marks[i]));
      expect(sent[0]).to.have.length(2);
      expect(sent[0]![0]).to.equal(sent[1]![0]);
      expect(sent[0]![1]).to.equal(payload);
      expect(sent[1]![1]).to.equal(payload);
      expect(sent[0]![0]!.toString('hex')).to.equal('827e4000');
      for (const x of subs) await x.peer.until(1);
      expect(subs[0]!.peer.got[0]!.data).to.equal(payload.toString());
    });

    it('hands a burst of large messages published in one turn to each socket in one write', async () => {
      s = await start();
      const subs = [await add(), await add()];
      for (const x of subs) x.conn.subscribe('t');
      const payloads = Array.from({ length: 8 }, (_, i) => Buffer.alloc(16 * 1024, i));
      const marks = s.writes.map((w) => w.length);
      const flushMarks = [...s.flushes];
      for (const p of payloads) s.server.publish('t', p);
      await Promise.resolve(); // the end of the turn
      const sent = s.writes.map((w, i) => w.slice(marks[i]));
      // Every frame of the turn is on each socket (header and payload, the published Buffers)...
      for (const w of sent) expect(w.filter((_, i) => i % 2 === 1)).to.deep.equal(payloads);
      expect(sent[0]![0]).to.equal(sent[1]![0]);
      // ... given to the system at once, not one message per 'drain'.
      expect(s.flushes.map((n, i) => n - flushMarks[i]!)).to.deep.equal([1, 1]);
      for (const x of subs) await x.peer.until(payloads.length);
      expect(subs[1]!.peer.got.map((m) => m.data)).to.deep.equal(payloads.map((p) => p.toString()));
    });

    it('shows published frames and messages to the connection\'s outbound taps', async () => {
      s = await start({ perMessageDeflate: { serverNoContextTakeover: true } });
      const a = await add({ perMessageDeflate: true });
      a.conn.subscribe('t');
      const frames = a.conn.tap('frames', 'out');
      const messages = a.conn.tap('messages', 'out');
      const big = 'compress me '.repeat(200);
      s.server.publish('t', 'small');
      s.server.publish('t', big);
      await a.peer.until(2);
      const seen = [frames.read(), frames.read()] as Array<{ rsv1: boolean; payload: Buffer } | null>;
      expect(seen[0]).to.include({ rsv1: false });
      expect(seen[0]!.payload.toString()).to.equal('small');
      expect(seen[1]).to.include({ rsv1: true });
      expect(seen[1]!.payload.length).to.be.below(big.length);
      const m = [messages.read(), messages.read()] as Array<{ data: Buffer } | null>;
      expect(m.map((x) => x!.data.toString())).to.deep.equal(['small', big]);
      frames.destroy();
      messages.destroy();
    });

    it('never puts a published frame inside a message being streamed out, nor before earlier sends', async () => {
      s = await start();
      const a = await add();
      a.conn.subscribe('t');
      a.conn.send('first');
      const stream = a.conn.createMessageStream();
      stream.write('part 1 ');
      await tick();
      s.server.publish('t', 'published');
      stream.write('part 2');
      stream.end();
      a.conn.send('last');
      await a.peer.until(4);
      expect(a.peer.got.map((m) => m.data)).to.deep.equal(['first', 'part 1 part 2', 'published', 'last']);
    });
  });

  describe('permessage-deflate', () => {
    const text = JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ id: i, name: `user ${i}`, online: i % 3 === 0 })));

    it('compresses once for every subscriber without context takeover, and shares that frame', async () => {
      s = await start({ perMessageDeflate: { serverNoContextTakeover: true } });
      const subs = [await add({ perMessageDeflate: true }), await add({ perMessageDeflate: true }), await add({ perMessageDeflate: true })];
      for (const x of subs) x.conn.subscribe('t');
      const seen: Array<{ encodings: number }> = [];
      const onPublish = (m: unknown): void => void seen.push(m as { encodings: number });
      diagnostics.subscribe('wspipe:fanout:publish', onPublish);
      const marks = s.writes.map((w) => w.length);
      try {
        s.server.publish('t', text);
        s.server.publish('t', text);
        await Promise.resolve();
      } finally {
        diagnostics.unsubscribe('wspipe:fanout:publish', onPublish);
      }
      expect(seen.map((m) => m.encodings)).to.deep.equal([1, 1]);
      const sent = s.writes.map((w, i) => w.slice(marks[i]));
      expect(sent[0]![0]).to.equal(sent[1]![0]);
      expect(sent[0]![0]).to.equal(sent[2]![0]);
      expect(sent[0]![0]![0]).to.equal(0xc1); // FIN, RSV1 (compressed), text
      expect(sent[0]![0]!.length).to.be.below(text.length / 2);
      for (const x of subs) await x.peer.until(2);
      for (const x of subs) expect(x.peer.got.map((m) => m.data)).to.deep.equal([text, text]);
    });

    it('compresses through their own stream for connections with context takeover, interleaved with their own sends', async () => {
      s = await start({ perMessageDeflate: true });
      const shared = await add({ perMessageDeflate: { serverNoContextTakeover: true } });
      const own = await add({ perMessageDeflate: true });
      for (const x of [shared, own]) x.conn.subscribe('t');
      own.conn.send(text + ' direct 1');
      s.server.publish('t', text);
      own.conn.send(text + ' direct 2');
      s.server.publish('t', text + ' again');
      await own.peer.until(4);
      await shared.peer.until(2);
      expect(own.peer.got.map((m) => m.data)).to.deep.equal([text + ' direct 1', text, text + ' direct 2', text + ' again']);
      expect(shared.peer.got.map((m) => m.data)).to.deep.equal([text, text + ' again']);
    });

    it("sends the shared uncompressed frame to connections with context takeover when fanout.contextTakeover is 'plain'", async () => {
      s = await start({ perMessageDeflate: true, fanout: { contextTakeover: 'plain' } });
      const own = await add({ perMessageDeflate: true });
      own.conn.subscribe('t');
      own.conn.send(text + ' direct');
      await own.peer.until(1);
      const mark = s.writes[0]!.length;
      s.server.publish('t', text);
      own.conn.send(text + ' direct');
      await own.peer.until(3);
      expect(s.writes[0]![mark]![0]).to.equal(0x81); // RSV1 clear: not compressed
      expect(own.peer.got.map((m) => m.data)).to.deep.equal([text + ' direct', text, text + ' direct']);
    });
  });

  describe('subscribers that cannot keep up', () => {
    it("'drop-oldest': the publisher never waits, others get everything, the slow one's queue stays within its limit and keeps the newest", async function () {
      s = await start();
      const fast = await add();
      const slow = await stalledPeer(s);
      fast.conn.subscribe('t', { limit: 64 * 1024 * 1024, policy: 'drop-newest' });
      const limit = 64 * 1024;
      slow.conn.subscribe('t', { limit, policy: 'drop-oldest' });
      // Enough to fill the kernel's socket buffers on loopback (several MiB) many times over.
      const total = 2000;
      const body = 'x'.repeat(16 * 1024);
      let maxQueued = 0;
      let maxHeld = 0;
      for (let i = 0; i < total; i++) {
        s.server.publish('t', `${String(i).padStart(5, '0')}${body}`);
        maxQueued = Math.max(maxQueued, slow.conn.fanoutCounters.queuedBytes);
        maxHeld = Math.max(maxHeld, slow.conn.fanoutCounters.queuedBytes + slow.conn.bufferedAmount);
        if (i % 20 === 19) await tick();
      }
      await fast.peer.until(total);
      expect(fast.peer.got.map((m) => Number(m.data.slice(0, 5)))).to.deep.equal(Array.from({ length: total }, (_, i) => i));
      const counters = slow.conn.fanoutCounters;
      expect(maxQueued).to.be.at.most(limit);
      // What the server holds for it, queued or in its socket's buffer: the limit, and at most one message more.
      expect(maxHeld).to.be.at.most(limit + body.length + 20);
      expect(counters.evicted).to.be.above(0);
      // The slow one reads again: it gets the rest, in order, ending with the newest.
      slow.socket.resume();
      await until(() => slow.conn.fanoutCounters.queuedBytes === 0 && slow.conn.bufferedAmount === 0);
      const after = slow.conn.fanoutCounters;
      expect(after.delivered + after.evicted + after.dropped).to.equal(total);
      await slow.peer.until(after.delivered);
      const seq = slow.peer.got.map((m) => Number(m.data.slice(0, 5)));
      expect(seq[seq.length - 1]).to.equal(total - 1);
      for (let i = 1; i < seq.length; i++) expect(seq[i]).to.be.above(seq[i - 1]!);
      expect(s.server.fanoutCounters.evicted).to.equal(after.evicted);
    });

    it("'close': the connection is closed with 1013 (Try Again Later) and its queue freed; the others go on", async () => {
      s = await start();
      const fast = await add();
      const slow = await stalledPeer(s);
      fast.conn.subscribe('t', { limit: 64 * 1024 * 1024 });
      slow.conn.subscribe('t', { limit: 256 * 1024, policy: 'close' });
      const overflows: unknown[] = [];
      const onOverflow = (m: unknown): void => void overflows.push(m);
      diagnostics.subscribe('wspipe:fanout:overflow', onOverflow);
      const body = 'y'.repeat(16 * 1024);
      const closing = new Promise<number>((resolve) => slow.peer.ws.once('close', (code: number) => resolve(code)));
      try {
        for (let i = 0; i < 1000 && slow.conn.readyState === WebSocket.OPEN; i++) {
          s.server.publish('t', body);
          if (i % 20 === 19) await tick();
        }
      } finally {
        diagnostics.unsubscribe('wspipe:fanout:overflow', onOverflow);
      }
      expect(slow.conn.readyState).to.not.equal(WebSocket.OPEN);
      expect(overflows).to.have.length(1);
      expect(slow.conn.isSubscribed('t')).to.equal(false);
      expect(s.server.fanoutCounters).to.include({ closed: 1 });
      s.server.publish('t', 'still flowing');
      slow.socket.resume();
      expect(await closing).to.equal(1013);
      await until(() => fast.peer.got.some((m) => m.data === 'still flowing'));
    });

    it("'coalesce': a subscriber that reads late gets the latest state of each key", async () => {
      s = await start();
      const slow = await stalledPeer(s);
      slow.conn.subscribe('prices', { limit: 1024 * 1024, policy: 'coalesce' });
      const discards: Array<{ what: string }> = [];
      const onDiscard = (m: unknown): void => void discards.push(m as { what: string });
      diagnostics.subscribe('wspipe:fanout:discard', onDiscard);
      const pad = 'p'.repeat(8 * 1024);
      let last: Record<string, number> = {};
      try {
        // Fill the socket first so that later updates have to queue.
        for (let i = 0; i < 2000 && slow.conn.fanoutCounters.queuedBytes === 0; i++) {
          s.server.publish('prices', `fill ${pad}`, { key: `fill${i}` });
          if (i % 20 === 19) await tick();
        }
        for (let round = 0; round < 50; round++) {
          for (const sym of ['AAA', 'BBB', 'CCC']) {
            s.server.publish('prices', JSON.stringify({ sym, round }), { key: sym });
            last = { ...last, [sym]: round };
          }
        }
      } finally {
        diagnostics.unsubscribe('wspipe:fanout:discard', onDiscard);
      }
      const counters = slow.conn.fanoutCounters;
      expect(counters.coalesced).to.equal(3 * 49);
      expect(discards.filter((d) => d.what === 'coalesced')).to.have.length(3 * 49);
      slow.socket.resume();
      await until(() => slow.conn.fanoutCounters.queuedBytes === 0);
      await until(() => slow.peer.got.filter((m) => m.data.startsWith('{')).length === 3);
      const updates = slow.peer.got.filter((m) => m.data.startsWith('{')).map((m) => JSON.parse(m.data) as { sym: string; round: number });
      expect(updates).to.deep.equal(['AAA', 'BBB', 'CCC'].map((sym) => ({ sym, round: last[sym] })));
    });
  });

  describe('broadcast', () => {
    it('sends to every open connection that the filter accepts, whatever their topics', async () => {
      s = await start();
      const a = await add();
      const b = await add();
      const c = await add();
      expect(s.server.broadcast('all')).to.equal(3);
      expect(s.server.broadcast('not b', { filter: (ws) => ws !== b.conn })).to.equal(2);
      await a.peer.until(2);
      await c.peer.until(2);
      await b.peer.until(1);
      expect(b.peer.got.map((m) => m.data)).to.deep.equal(['all']);
      expect(a.peer.got.map((m) => m.data)).to.deep.equal(['all', 'not b']);
    });
  });

  describe('servers of one process on a LocalBus', () => {
    let other: Started | undefined;
    afterEach(async () => {
      if (other !== undefined) await stop(other);
      other = undefined;
    });

    it('share topics: each subscriber gets each message once, whichever server published it', async () => {
      const bus = new LocalBus();
      s = await start({ adapter: localAdapter(bus) });
      other = await start({ adapter: localAdapter(bus) });
      const here = await add();
      const before = peers.length;
      const there = await peer(other);
      peers.push(there.peer);
      expect(peers.length).to.equal(before + 1);
      here.conn.subscribe('room');
      there.conn.subscribe('room');
      s.server.publish('room', 'from here');
      other.server.publish('room', 'from there');
      await here.peer.until(2);
      await there.peer.until(2);
      await tick();
      expect(here.peer.got.map((m) => m.data)).to.deep.equal(['from here', 'from there']);
      expect(there.peer.got.map((m) => m.data)).to.deep.equal(['from here', 'from there']);
      expect(other.server.fanoutCounters).to.include({ published: 1, received: 1, lost: 0 });
      there.conn.unsubscribe('room');
      s.server.publish('room', 'only here');
      await here.peer.until(3);
      expect(other.server.fanoutCounters.received).to.equal(1);
    });
  });
});
