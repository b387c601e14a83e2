/**
 * WebSocketStream (the WHATWG proposal's face, on connect() and on server connections): opening,
 * the readable and writable web streams, closing with and without a code, aborting before the
 * open, and backpressure both ways, proven on the socket: a readable nobody reads stops our reading
 * (the server's bufferedAmount grows, what we hold stays within the memory budget), and a peer
 * that does not read makes write() wait until 'drain'.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { setImmediate as turn } from 'node:timers/promises';
import { connect, createServer, WebSocket, WebSocketServer } from '../../lib';
import type { ServerOptions } from '../../lib/server/server';
import { WebSocketStream, toWebSocketStream } from '../../lib/streams/websocket-stream';

/** Lets `n` event-loop turns pass (each polls I/O): data that can flow, flows. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await turn();
}

/** Waits, turn by turn, until `condition()` holds (at most `limit` turns). */
async function until(condition: () => boolean, limit = 100000): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (condition()) return;
    await turn();
  }
  throw new Error('condition never held');
}

/** A promise's state after the microtasks ran. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await turn();
  return done;
}

describe('streams/websocket-stream', function () {
  this.timeout(20000);
  let wss: WebSocketServer | null = null;
  const closing: Array<Promise<unknown>> = [];
  const accepted: WebSocket[] = [];

  afterEach(async () => {
    // A failed spec may leave connections open: cut them, so that the server can close.
    for (const ws of accepted.splice(0)) ws.terminate();
    await Promise.all(closing.splice(0));
    if (wss !== null) await new Promise<void>((resolve) => wss!.close(() => resolve()));
    wss = null;
  });

  async function server(onConnection: (ws: WebSocket) => void, options: ServerOptions = {}): Promise<string> {
    wss = createServer({ port: 0, host: '127.0.0.1', ...options });
    wss.on('connection', (ws: WebSocket) => {
      ws.on('error', () => {});
      closing.push(once(ws, 'close'));
      accepted.push(ws);
      onConnection(ws);
    });
    await once(wss, 'listening');
    return `ws://127.0.0.1:${wss.address()!.port}`;
  }

  /** A server whose every connection is a WebSocketStream echoing what it reads (pipeTo). */
  function echoServer(options: ServerOptions = {}): Promise<string> {
    return server((ws) => {
      void toWebSocketStream(ws).opened.then(({ readable, writable }) => readable.pipeTo(writable).catch(() => {}));
    }, options);
  }

  describe('opening', () => {
    it('opened gives the streams, the protocol and the extensions; text is a string, binary a Uint8Array', async () => {
      const url = await echoServer({ protocols: ['chat'], perMessageDeflate: true });
      const wss = new WebSocketStream(url, { protocols: ['chat', 'other'] });
      const { readable, writable, protocol, extensions } = await wss.opened;
      expect(protocol).to.equal('chat');
      expect(extensions).to.match(/permessage-deflate/);
      const writer = writable.getWriter();
      const reader = readable.getReader();
      await writer.write('hello');
      await writer.write(new Uint8Array([1, 2, 3]));
      await writer.write(new Uint16Array([0x0201]).buffer);
      await writer.write(new DataView(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2));
      expect((await reader.read()).value).to.equal('hello');
      const binary = (await reader.read()).value;
      expect(binary).to.be.instanceOf(Uint8Array);
      expect([...(binary as Uint8Array)]).to.deep.equal([1, 2, 3]);
      expect([...((await reader.read()).value as Uint8Array)]).to.deep.equal([1, 2]);
      expect([...((await reader.read()).value as Uint8Array)]).to.deep.equal([8, 7]);
      wss.close();
      expect(await wss.closed).to.deep.equal({ closeCode: 1005, reason: '' });
    });

    it('throws at the call for a URL that is not ws:// or wss://, and for a repeated protocol', () => {
      expect(() => new WebSocketStream('ftp://127.0.0.1/')).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => new WebSocketStream('not a url')).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => new WebSocketStream('ws://127.0.0.1:1/', { protocols: ['a', 'a'] })).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
    });

    it('a refused connection rejects opened and closed with the error', async () => {
      const wss = new WebSocketStream('ws://127.0.0.1:1/');
      const [opened, closed] = await Promise.allSettled([wss.opened, wss.closed]);
      expect(opened.status).to.equal('rejected');
      expect(closed.status).to.equal('rejected');
      expect((opened as PromiseRejectedResult).reason).to.have.property('code', 'ECONNREFUSED');
    });

    it('a server that chose none of the offered protocols fails the opening (as browsers do)', async () => {
      const url = await echoServer();
      const wss = new WebSocketStream(url, { protocols: 'chat' });
      const err: unknown = await wss.opened.then(() => null, (e: unknown) => e);
      expect(err).to.have.property('code', 'WS_ERR_INVALID_SUBPROTOCOL');
      await wss.closed.catch(() => {});
    });
  });

  describe('aborting', () => {
    it('a signal aborted before the call rejects opened and closed with an AbortError', async () => {
      const url = await echoServer();
      const wss = new WebSocketStream(url, { signal: AbortSignal.abort() });
      const [opened, closed] = await Promise.allSettled([wss.opened, wss.closed]);
      expect((opened as PromiseRejectedResult).reason).to.include({ name: 'AbortError', code: 'ABORT_ERR' });
      expect((closed as PromiseRejectedResult).reason).to.include({ name: 'AbortError', code: 'ABORT_ERR' });
    });

    it('aborting during the handshake rejects both, and the server sees its socket closed', async () => {
      const silent = net.createServer();
      const sockets: net.Socket[] = [];
      // Reads (and ignores) the request, so that the client's end reaches 'close'.
      silent.on('connection', (socket) => sockets.push(socket.resume()));
      silent.listen(0, '127.0.0.1');
      await once(silent, 'listening');
      try {
        const controller = new AbortController();
        const wss = new WebSocketStream(`ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}/`, { signal: controller.signal });
        await until(() => sockets.length === 1);
        const socketClosed = once(sockets[0]!, 'close');
        controller.abort();
        const [opened, closed] = await Promise.allSettled([wss.opened, wss.closed]);
        expect((opened as PromiseRejectedResult).reason).to.have.property('name', 'AbortError');
        expect((closed as PromiseRejectedResult).reason).to.have.property('name', 'AbortError');
        await socketClosed;
      } finally {
        silent.close();
      }
    });

    it('aborting after the open changes nothing', async () => {
      const url = await echoServer();
      const controller = new AbortController();
      const wss = new WebSocketStream(url, { signal: controller.signal });
      const { readable, writable } = await wss.opened;
      controller.abort();
      const writer = writable.getWriter();
      await writer.write('still here');
      expect((await readable.getReader().read()).value).to.equal('still here');
      wss.close({ closeCode: 1000 });
      expect(await wss.closed).to.deep.equal({ closeCode: 1000, reason: '' });
    });
  });

  describe('closing', () => {
    it('close({ closeCode, reason }) sends them; the echo resolves closed', async () => {
      let seen: unknown = null;
      const url = await server((ws) => ws.on('close', (code: number, reason: string) => (seen = [code, reason])));
      const wss = new WebSocketStream(url);
      await wss.opened;
      wss.close({ closeCode: 3456, reason: 'pizza' });
      expect(await wss.closed).to.deep.equal({ closeCode: 3456, reason: 'pizza' });
      await Promise.all(closing);
      expect(seen).to.deep.equal([3456, 'pizza']);
    });

    it('close() validates as the WebSocket API does: 1000 or 3000-4999, a reason of at most 123 UTF-8 bytes', async () => {
      const url = await echoServer();
      const wss = new WebSocketStream(url);
      await wss.opened;
      for (const closeCode of [999, 1001, 1005, 1011, 2999, 5000, 3000.5]) {
        expect(() => wss.close({ closeCode }), String(closeCode)).to.throw(RangeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      }
      expect(() => wss.close({ closeCode: 1000, reason: 'é'.repeat(62) })).to.throw(RangeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => wss.close({ closeCode: 1000, reason: 1 as unknown as string })).to.throw(TypeError);
      // A reason without a code closes with 1000, as WebSocket.close() does.
      wss.close({ reason: 'é'.repeat(61) + 'x' });
      expect(await wss.closed).to.deep.equal({ closeCode: 1000, reason: 'é'.repeat(61) + 'x' });
    });

    it('close() before the open fails the opening: opened and closed reject', async () => {
      const url = await echoServer();
      const wss = new WebSocketStream(url);
      wss.close();
      const [opened, closed] = await Promise.allSettled([wss.opened, wss.closed]);
      expect(opened.status).to.equal('rejected');
      expect(closed.status).to.equal('rejected');
    });

    for (const how of ['writable.close()', 'readable.cancel()'] as const) {
      it(`${how} closes the connection without a code (the peer sees 1005), after the writes before it`, async () => {
        const got: unknown[] = [];
        const url = await server((ws) => {
          ws.on('message', (data: string) => got.push(data));
          ws.on('close', (code: number) => got.push(code));
        });
        const wss = new WebSocketStream(url);
        const { readable, writable } = await wss.opened;
        const writer = writable.getWriter();
        void writer.write('last words');
        if (how === 'writable.close()') await writer.close();
        else await readable.cancel();
        expect(await wss.closed).to.deep.equal({ closeCode: 1005, reason: '' });
        await Promise.all(closing);
        expect(got).to.deep.equal(['last words', 1005]);
      });
    }

    it('writable.abort() and readable.cancel() with a reason that has a closeCode close with that code', async () => {
      const codes: unknown[] = [];
      const url = await server((ws) => ws.on('close', (code: number, reason: string) => codes.push([code, reason])));
      const a = new WebSocketStream(url);
      await (await a.opened).writable.abort({ closeCode: 4001, reason: 'aborted' });
      expect(await a.closed).to.deep.equal({ closeCode: 4001, reason: 'aborted' });
      const b = new WebSocketStream(url);
      await (await b.opened).readable.cancel({ closeCode: 4002 });
      expect(await b.closed).to.deep.equal({ closeCode: 4002, reason: '' });
      await Promise.all(closing);
      expect(codes).to.deep.equal([
        [4001, 'aborted'],
        [4002, ''],
      ]);
    });

    it("the server's close: closed resolves, the readable is done after the messages sent before it, write() rejects", async () => {
      const url = await server((ws) => {
        ws.send('before');
        ws.close(1000, 'bye');
      });
      const wss = new WebSocketStream(url);
      const { readable, writable } = await wss.opened;
      expect(await wss.closed).to.deep.equal({ closeCode: 1000, reason: 'bye' });
      const reader = readable.getReader();
      expect(await reader.read()).to.deep.equal({ value: 'before', done: false });
      expect((await reader.read()).done).to.equal(true);
      const err: unknown = await writable
        .getWriter()
        .write('late')
        .then(() => null, (e: unknown) => e);
      expect(err).to.have.property('code', 'WS_ERR_INVALID_STATE');
    });

    it('a lost connection (no close frame) rejects closed with 1006 and errors both streams', async () => {
      const url = await server((ws) => ws.terminate());
      const wss = new WebSocketStream(url);
      const { readable, writable } = await wss.opened.catch(() => ({ readable: null, writable: null }));
      const err: unknown = await wss.closed.then(() => null, (e: unknown) => e);
      expect(err).to.include({ name: 'WebSocketError', closeCode: 1006 });
      if (readable !== null) {
        expect(await readable.getReader().read().then(() => null, (e: unknown) => e)).to.equal(err);
        expect(await writable.getWriter().write('x').then(() => null, (e: unknown) => e)).to.equal(err);
      }
    });

    it('a connection we fail (a message over maxPayload: 1009) is not clean: closed rejects with the error, the readable is errored', async () => {
      const url = await server((ws) => ws.send(Buffer.alloc(2048)));
      const wss = new WebSocketStream(url, { maxPayload: 1024 });
      const { readable } = await wss.opened;
      const err: unknown = await wss.closed.then(() => null, (e: unknown) => e);
      expect(err).to.include({ name: 'WebSocketError', code: 'WS_ERR_PAYLOAD_TOO_BIG', closeCode: 1009 });
      expect(await readable.getReader().read().then(() => null, (e: unknown) => e)).to.equal(err);
    });

    it('no unhandled rejection when nobody awaits opened or closed', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      try {
        const wss = new WebSocketStream('ws://127.0.0.1:1/');
        await Promise.allSettled([wss.closed]);
        await turns(5);
        expect(unhandled).to.deep.equal([]);
      } finally {
        process.removeListener('unhandledRejection', onUnhandled);
      }
    });
  });

  describe('toWebSocketStream', () => {
    it("gives a server's connection the same face: the server reads, writes and closes through web streams", async () => {
      let serverSide: WebSocketStream | null = null;
      const url = await server((ws) => {
        serverSide = toWebSocketStream(ws);
        void serverSide.opened.then(async ({ readable, writable }) => {
          const reader = readable.getReader();
          const writer = writable.getWriter();
          const { value } = await reader.read();
          await writer.write(`server got ${String(value)}`);
          serverSide!.close({ closeCode: 4000, reason: 'done' });
        });
      });
      const client = connect(url);
      client.send('hi');
      const [message] = (await once(client, 'message')) as [string];
      expect(message).to.equal('server got hi');
      const [code, reason] = (await once(client, 'close')) as [number, string];
      expect([code, reason]).to.deep.equal([4000, 'done']);
      expect(await serverSide!.closed).to.deep.equal({ closeCode: 4000, reason: 'done' });
    });

    it('a connection made with streamMessages gives each message whole', async () => {
      const got: Array<string | Uint8Array> = [];
      let done: Promise<unknown> = Promise.resolve();
      const url = await server(
        (ws) => {
          const stream = toWebSocketStream(ws);
          done = stream.opened.then(async ({ readable }) => {
            for await (const message of readable) got.push(message);
          });
        },
        { streamMessages: true },
      );
      const client = connect(url);
      await once(client, 'open');
      client.send('x'.repeat(100000));
      client.send(Buffer.from([1, 2]));
      client.close();
      await done;
      expect(got.map((m) => (typeof m === 'string' ? m.length : [...m]))).to.deep.equal([100000, [1, 2]]);
    });

    it('refuses a connection that is already read in flowing mode', async () => {
      const url = await echoServer();
      const client = connect(url);
      await once(client, 'open');
      client.on('message', () => {});
      expect(() => toWebSocketStream(client)).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      client.close();
      await once(client, 'close');
    });
  });

  it('works over HTTP/2 (RFC 8441, cleartext h2c): { http2: true } is a connect() option like the others', async () => {
    const h2 = http2.createServer();
    const sessions: http2.ServerHttp2Session[] = [];
    h2.on('session', (session: http2.ServerHttp2Session) => sessions.push(session));
    wss = createServer({ server: h2, http2: true });
    const versions: string[] = [];
    wss.on('connection', (ws: WebSocket, req: { httpVersion: string }) => {
      versions.push(req.httpVersion);
      void toWebSocketStream(ws).opened.then(({ readable, writable }) => readable.pipeTo(writable).catch(() => {}));
    });
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    try {
      const client = new WebSocketStream(`ws://127.0.0.1:${(h2.address() as net.AddressInfo).port}/`, { http2: true });
      const { readable, writable } = await client.opened;
      await writable.getWriter().write('over h2');
      expect((await readable.getReader().read()).value).to.equal('over h2');
      client.close({ closeCode: 4000 });
      expect(await client.closed).to.deep.equal({ closeCode: 4000, reason: '' });
      expect(versions).to.deep.equal(['2.0']);
    } finally {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => wss!.close(() => resolve()));
      wss = null;
      await new Promise<void>((resolve) => h2.close(() => resolve()));
    }
  });

  describe('backpressure', () => {
    const CHUNK = 64 * 1024;

    it('an unread readable stops reading from the socket: the server queues, we hold at most the memory budget', async () => {
      const budget = 256 * 1024;
      const total = 512; // 32 MiB: more than loopback's socket buffers can take
      let sender: WebSocket | null = null;
      const url = await server((ws) => {
        sender = ws;
        for (let i = 0; i < total; i++) ws.send(Buffer.alloc(CHUNK, i & 0xff));
      });
      const client = connect(url, { memoryBudget: budget, perMessageDeflate: false });
      const { readable } = await toWebSocketStream(client).opened;
      await until(() => sender !== null && client.heldBytes >= budget - CHUNK);
      // Many I/O turns: a connection still reading would take in megabytes meanwhile.
      for (let i = 0; i < 200; i++) {
        await turn();
        expect(client.heldBytes).to.be.at.most(budget + CHUNK);
      }
      expect(sender!.bufferedAmount).to.be.above(16 * 1024 * 1024);
      // Reading drains it all, in order.
      const reader = readable.getReader();
      for (let i = 0; i < total; i++) {
        const { value } = await reader.read();
        expect((value as Uint8Array).length).to.equal(CHUNK);
        expect((value as Uint8Array)[0]).to.equal(i & 0xff);
      }
      await until(() => sender!.bufferedAmount === 0);
      client.close();
      await once(client, 'close');
    });

    it("a peer that does not read makes write() wait, and 'drain' resolves it", async () => {
      let receiver: WebSocket | null = null;
      const url = await server((ws) => (receiver = ws), { memoryBudget: 256 * 1024, perMessageDeflate: false });
      const client = connect(url, { writableHighWaterMarkBytes: 256 * 1024, perMessageDeflate: false });
      const { writable } = await toWebSocketStream(client).opened;
      const writer = writable.getWriter();
      let waiting: Promise<void> | null = null;
      for (let i = 0; i < 2000 && waiting === null; i++) {
        await writer.ready;
        const write = writer.write(new Uint8Array(CHUNK));
        if (!(await settled(write))) waiting = write;
      }
      expect(waiting, 'a write() that waits').to.not.equal(null);
      for (let i = 0; i < 200; i++) {
        await turn();
        expect(await settled(waiting!)).to.equal(false);
        expect(client.bufferedAmount).to.be.at.most(256 * 1024 + CHUNK);
      }
      receiver!.on('message', () => {});
      await waiting;
      await writer.close();
      await once(client, 'close');
    });
  });
});
