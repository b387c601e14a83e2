/**
 * The frame-level proxy: handshake relay (offers, forwarded headers, the upstream's decision),
 * transparent relaying (fragmentation, RSV1/compression, masking by role), backpressure with a
 * slow upstream, closing both ways, failures, ping/pong modes and taps.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocket as WsClient, WebSocketServer as WsServer } from 'ws';
import { connect, createServer, Frame, Opcode, WebSocket, WebSocketServer } from '../../lib';
import { buildAcceptResponse, validateUpgradeRequest } from '../../lib/handshake/handshake';
import { HandshakeParserCore, UpgradeRequest } from '../../lib/handshake/handshake-parser';
import { ProxyConnection, ProxyMessage, WebSocketProxy, createProxy } from '../../lib/proxy/proxy';
import { clientFrame, decodeFrames, DecodedFrame, upgradeRequest, wireFrame } from '../helpers/frames';
import { hex, readResponseHead } from '../helpers/sockets';

const LOCAL = '127.0.0.1';

async function listening(proxy: WebSocketProxy): Promise<string> {
  if (proxy.address() === null) await once(proxy, 'listening');
  return `ws://${LOCAL}:${proxy.address()!.port}`;
}

async function ourServer(options = {}): Promise<{ server: WebSocketServer; url: string }> {
  const server = createServer({ port: 0, host: LOCAL, ...options });
  await once(server, 'listening');
  return { server, url: `ws://${LOCAL}:${server.address()!.port}` };
}

async function wsServer(options = {}): Promise<{ server: WsServer; url: string }> {
  const server = new WsServer({ port: 0, host: LOCAL, perMessageDeflate: false, ...options });
  await once(server, 'listening');
  return { server, url: `ws://${LOCAL}:${(server.address() as net.AddressInfo).port}` };
}

/** An upstream that answers the handshake by hand and then hands out the raw socket. */
interface RawUpstream {
  url: string;
  server: net.Server;
  next(): Promise<{ socket: net.Socket; request: UpgradeRequest; head: Buffer }>;
}

async function rawUpstream(extraHead = ''): Promise<RawUpstream> {
  const waiting: Array<(v: { socket: net.Socket; request: UpgradeRequest; head: Buffer }) => void> = [];
  const server = net.createServer((socket) => {
    const rest: Buffer[] = [];
    let request: UpgradeRequest | null = null;
    const parser = new HandshakeParserCore(
      { role: 'server' },
      { onHead: (h) => (request = h as UpgradeRequest), onData: (b: Buffer) => rest.push(b) },
    );
    const onData = (chunk: Buffer): void => {
      parser.write(chunk);
      if (request === null) return;
      socket.removeListener('data', onData);
      socket.pause();
      const info = validateUpgradeRequest(request);
      if (info instanceof Error) throw info;
      const accept = buildAcceptResponse({ key: info.key });
      socket.write(extraHead === '' ? accept : accept.replace(/\r\n\r\n$/, `\r\n${extraHead}\r\n\r\n`));
      waiting.shift()!({ socket, request, head: Buffer.concat(rest) });
    };
    socket.on('data', onData);
  });
  server.listen(0, LOCAL);
  await once(server, 'listening');
  return {
    url: `ws://${LOCAL}:${(server.address() as net.AddressInfo).port}`,
    server,
    next: () => new Promise((resolve) => waiting.push(resolve)),
  };
}

/** A raw TCP client that did the opening handshake through the proxy; `head` holds bytes after the 101. */
async function rawClient(url: string, extraHeaders = '', requestTarget = '/'): Promise<{ socket: net.Socket; response: string; head: Buffer }> {
  const { port } = new URL(url);
  const socket = net.connect(Number(port), LOCAL);
  await once(socket, 'connect');
  const request = upgradeRequest(`${LOCAL}:${port}`)
    .toString('latin1')
    .replace(/^GET \/ /, `GET ${requestTarget} `)
    .replace(/\r\n\r\n$/, `\r\n${extraHeaders}\r\n`);
  socket.write(request);
  return { socket, ...(await readResponseHead(socket)) };
}

/** Collects bytes from a socket and decodes the frames as they complete. */
function frameReader(socket: net.Socket, head: Buffer = Buffer.alloc(0)): { frames: DecodedFrame[]; bytes: Buffer[]; until(n: number): Promise<DecodedFrame[]> } {
  let pending = head;
  const frames: DecodedFrame[] = [];
  const bytes: Buffer[] = head.length > 0 ? [head] : [];
  const waiters: Array<() => void> = [];
  const take = (): void => {
    const { frames: done, rest } = decodeFrames(pending);
    frames.push(...done);
    pending = Buffer.from(rest);
    for (const w of waiters.splice(0)) w();
  };
  socket.on('data', (chunk: Buffer) => {
    bytes.push(chunk);
    pending = Buffer.concat([pending, chunk]);
    take();
  });
  socket.resume();
  take();
  return {
    frames,
    bytes,
    until: async (n) => {
      while (frames.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
      return frames;
    },
  };
}

function opened(ws: WebSocket): Promise<void> {
  return ws.readyState === WebSocket.OPEN ? Promise.resolve() : (once(ws, 'open') as Promise<unknown>).then(() => undefined);
}

/** The close code and reason (events.once would reject on an 'error' event first). */
function closed(ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
}

function nextConnection(proxy: WebSocketProxy): Promise<ProxyConnection> {
  return (once(proxy, 'connection') as Promise<[ProxyConnection]>).then(([c]) => c);
}

describe('proxy', function () {
  this.timeout(20000);
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  function proxyTo(target: string, options: Partial<Parameters<typeof createProxy>[0]> = {}): WebSocketProxy {
    const proxy = createProxy({ target, port: 0, host: LOCAL, ...options });
    cleanups.push(() => new Promise<void>((resolve) => proxy.close(resolve)));
    return proxy;
  }

  /** A raw client and a raw upstream relayed by a proxy, with readers of the frames each gets. */
  async function rawPair(): Promise<{
    conn: ProxyConnection;
    client: { socket: net.Socket };
    socket: net.Socket;
    upReader: ReturnType<typeof frameReader>;
    downReader: ReturnType<typeof frameReader>;
  }> {
    const up = await rawUpstream();
    cleanups.push(() => up.server.close());
    const proxy = proxyTo(up.url);
    const proxyUrl = await listening(proxy);
    const upstream = up.next();
    const connection = nextConnection(proxy);
    const client = await rawClient(proxyUrl);
    const { socket, head } = await upstream;
    const conn = await connection;
    return { conn, client, socket, upReader: frameReader(socket, head), downReader: frameReader(client.socket, client.head) };
  }

  describe('our client -> proxy -> ws server', () => {
    it('relays text and binary messages both ways and the subprotocol the upstream chose', async () => {
      const { server, url } = await wsServer({ handleProtocols: (offered: Set<string>) => (offered.has('b') ? 'b' : false) });
      cleanups.push(() => new Promise((r) => server.close(r)));
      server.on('connection', (ws, req) => {
        ws.send(`protocol:${ws.protocol} path:${req.url}`);
        ws.on('message', (data, binary) => ws.send(data, { binary }));
      });
      const proxyUrl = await listening(proxyTo(url));
      const client = connect(`${proxyUrl}/chat?room=1`, { protocols: ['a', 'b'] });
      const got: Array<string | Buffer> = [];
      client.on('message', (d) => got.push(d));
      await opened(client);
      expect(client.protocol).to.equal('b');
      client.send('héllo');
      client.send(Buffer.from([1, 2, 3]));
      const big = Buffer.alloc(300_000, 7);
      client.send(big);
      while (got.length < 4) await once(client, 'message');
      expect(got[0]).to.equal('protocol:b path:/chat?room=1');
      expect(got[1]).to.equal('héllo');
      expect(got[2]).to.deep.equal(Buffer.from([1, 2, 3]));
      expect(Buffer.compare(got[3] as Buffer, big)).to.equal(0);
      client.close(1000, 'done');
      expect(await closed(client)).to.deep.equal([1000, 'done']);
    });

    it('forwards the listed request headers and not the others', async () => {
      const { server, url } = await wsServer();
      cleanups.push(() => new Promise((r) => server.close(r)));
      const seen = once(server, 'connection') as Promise<[unknown, http.IncomingMessage]>;
      const proxyUrl = await listening(proxyTo(url, { forwardHeaders: ['authorization', 'x-kept'] }));
      const client = connect(proxyUrl, { headers: { Authorization: 'Bearer t', 'X-Kept': 'yes', 'X-Dropped': 'no' } });
      const [, req] = await seen;
      expect(req.headers.authorization).to.equal('Bearer t');
      expect(req.headers['x-kept']).to.equal('yes');
      expect(req.headers['x-dropped']).to.equal(undefined);
      await opened(client);
      client.close();
      await closed(client);
    });
  });

  describe('ws client -> proxy -> our server', () => {
    it('relays messages both ways', async () => {
      const { server, url } = await ourServer();
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      const serverSide = once(server, 'connection') as Promise<[WebSocket]>;
      server.on('connection', (ws: WebSocket) => ws.on('message', (d: string | Buffer) => ws.send(d)));
      const proxyUrl = await listening(proxyTo(url));
      const client = new WsClient(proxyUrl);
      const [ws] = await serverSide;
      await once(client, 'open');
      expect(client.extensions).to.equal(''); // our server declines permessage-deflate: so does the proxy
      client.send('one');
      const [data, binary] = (await once(client, 'message')) as [Buffer, boolean];
      expect(binary).to.equal(false);
      expect(data.toString()).to.equal('one');
      client.close(4000, 'bye');
      expect(await closed(ws)).to.deep.equal([4000, 'bye']);
      const [code] = (await once(client, 'close')) as [number, Buffer];
      expect(code).to.equal(4000);
    });

    it('passes permessage-deflate through: RSV1 frames relayed unchanged; messages taps see them inflated', async () => {
      const { server, url } = await wsServer({ perMessageDeflate: { threshold: 0 } });
      cleanups.push(() => new Promise((r) => server.close(r)));
      server.on('connection', (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })));
      const proxy = proxyTo(url);
      const proxyUrl = await listening(proxy);
      const conn = nextConnection(proxy);
      const client = new WsClient(proxyUrl, { perMessageDeflate: { threshold: 0 } });
      const c = await conn;
      expect(c.extensions).to.match(/permessage-deflate/);
      const frames = c.tap('frames', 'upstream');
      const up = c.tap('messages', 'upstream');
      await once(client, 'open');
      expect(client.extensions).to.match(/permessage-deflate/);
      const text = 'abc'.repeat(1000);
      client.send(text);
      const [data] = (await once(client, 'message')) as [Buffer];
      expect(data.toString()).to.equal(text);
      const [frame] = (await once(frames, 'data')) as [Frame];
      expect(frame.rsv1).to.equal(true);
      expect(frame.length).to.be.lessThan(text.length);
      const [inflated] = (await once(up, 'data')) as [ProxyMessage];
      expect(inflated).to.deep.equal({ binary: false, data: Buffer.from(text), compressed: false });
      // A tap added after compressed messages went by (context takeover): shown compressed.
      const late = c.tap('messages', 'downstream');
      client.send(text);
      const [message] = (await once(late, 'data')) as [ProxyMessage];
      expect(message.compressed).to.equal(true);
      expect(message.data.length).to.be.lessThan(text.length);
      client.close();
      await once(client, 'close');
    });
  });

  describe('transparency', () => {
    it('keeps fragmentation: "Hel" + "lo" reaches the upstream as the same two frames', async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      const proxyUrl = await listening(proxyTo(up.url));
      const upstream = up.next();
      const client = await rawClient(proxyUrl);
      expect(client.response).to.match(/^HTTP\/1\.1 101/);
      const { socket, head } = await upstream;
      const reader = frameReader(socket, head);
      client.socket.write(clientFrame(Opcode.Text, 'Hel', { fin: false }));
      client.socket.write(clientFrame(Opcode.Ping, 'p'));
      client.socket.write(clientFrame(Opcode.Continuation, 'lo'));
      const frames = await reader.until(3);
      expect(frames.map((f) => [f.opcode, f.fin, f.masked, f.payload.toString()])).to.deep.equal([
        [Opcode.Text, false, true, 'Hel'],
        [Opcode.Ping, true, true, 'p'],
        [Opcode.Continuation, true, true, 'lo'],
      ]);
      client.socket.destroy();
      socket.destroy();
    });

    it('relays the upstream frames to the client byte for byte (RFC 6455 §5.7 vectors, RSV bits of a negotiated extension)', async () => {
      const up = await rawUpstream('Sec-WebSocket-Extensions: x-test');
      cleanups.push(() => up.server.close());
      const proxyUrl = await listening(proxyTo(up.url));
      const upstream = up.next();
      const client = await rawClient(proxyUrl, 'Sec-WebSocket-Extensions: x-test\r\n');
      expect(client.response).to.match(/Sec-WebSocket-Extensions: x-test/i);
      const { socket } = await upstream;
      const wire = Buffer.concat([
        hex('81 05 48 65 6c 6c 6f'),
        hex('01 03 48 65 6c'),
        hex('89 05 48 65 6c 6c 6f'),
        hex('80 02 6c 6f'),
        hex('f2 03 01 02 03'), // FIN, RSV1-3 (the extension's), binary
        Buffer.concat([hex('82 7E 0100'), Buffer.alloc(256, 9)]),
        Buffer.concat([hex('82 7F 0000000000010000'), Buffer.alloc(65536, 3)]),
      ]);
      // Every way of cutting the bytes gives the same bytes at the client: send them in odd pieces.
      for (let i = 0; i < wire.length; i += 7777) socket.write(wire.subarray(i, i + 7777));
      const reader = frameReader(client.socket, client.head);
      await reader.until(7);
      expect(Buffer.compare(Buffer.concat(reader.bytes), wire)).to.equal(0);
      client.socket.destroy();
      socket.destroy();
    });

    it('taps never change the traffic: same frames upstream and same bytes downstream with and without taps', async () => {
      const run = async (withTaps: boolean): Promise<{ up: DecodedFrame[]; down: Buffer }> => {
        const up = await rawUpstream();
        const proxy = createProxy({ target: up.url, port: 0, host: LOCAL });
        const proxyUrl = await listening(proxy);
        proxy.on('connection', (c: ProxyConnection) => {
          if (!withTaps) return;
          for (const dir of ['upstream', 'downstream'] as const) {
            c.tap('bytes', dir).resume();
            c.tap('frames', dir, { policy: 'block' }).resume();
            c.tap('messages', dir).resume();
            c.tap('frames', dir, { policy: 'drop', highWaterMark: 1 }); // never read
          }
        });
        const upstream = up.next();
        const client = await rawClient(proxyUrl);
        const { socket, head } = await upstream;
        const upReader = frameReader(socket, head);
        const downReader = frameReader(client.socket, client.head);
        const big = Buffer.alloc(200_000);
        for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
        client.socket.write(clientFrame(Opcode.Text, 'Hel', { fin: false }));
        client.socket.write(clientFrame(Opcode.Continuation, 'lo'));
        client.socket.write(clientFrame(Opcode.Binary, big));
        socket.write(Buffer.concat([hex('81 05 48 65 6c 6c 6f'), hex('82 7E 0100'), Buffer.alloc(256, 1), hex('01 01 61 80 01 62')]));
        await upReader.until(3);
        await downReader.until(4);
        client.socket.destroy();
        socket.destroy();
        await new Promise<void>((r) => proxy.close(r));
        up.server.close();
        return { up: upReader.frames, down: Buffer.concat(downReader.bytes) };
      };
      const plain = await run(false);
      const tapped = await run(true);
      expect(tapped.up).to.deep.equal(plain.up);
      expect(Buffer.compare(tapped.down, plain.down)).to.equal(0);
      expect(plain.up[2]!.payload.length).to.equal(200_000);
    });
  });

  describe('backpressure', () => {
    it('a slow upstream: the client sees backpressure and the proxy buffers stay bounded', async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      const proxy = proxyTo(up.url);
      const proxyUrl = await listening(proxy);
      const conn = nextConnection(proxy);
      const upstream = up.next();
      const client = connect(proxyUrl);
      await opened(client);
      const c = await conn;
      const { socket, head } = await upstream; // paused: reads nothing for now
      const MESSAGE = 1024 * 1024;
      const COUNT = 64;
      let refused = 0;
      for (let i = 0; i < COUNT; i++) if (!client.send(Buffer.alloc(MESSAGE, i))) refused++;
      // Wait until nothing moves any more (every buffer on the way is full).
      let last = -1;
      let still = 0;
      for (let i = 0; i < 500 && still < 10; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const now = client.bufferedAmount + c.bufferedBytes;
        still = now === last ? still + 1 : 0;
        last = now;
      }
      expect(refused).to.be.greaterThan(0);
      expect(client.bufferedAmount).to.be.greaterThan(16 * MESSAGE); // held by the sender, not the proxy
      expect(c.bufferedBytes).to.be.lessThan(2 * MESSAGE);
      // Now the upstream reads: every byte arrives (each frame: 2 + 8 header bytes, 4 of mask, the payload).
      const expected = COUNT * (MESSAGE + 14);
      let received = head.length;
      const done = new Promise<void>((resolve) => {
        socket.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received >= expected) resolve();
        });
      });
      socket.resume();
      await done;
      expect(received).to.equal(expected);
      client.terminate();
      socket.destroy();
    });

    it('a slow tap with the drop policy never slows the relay and counts its drops', async () => {
      const { server, url } = await ourServer();
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      const received: string[] = [];
      server.on('connection', (ws: WebSocket) => ws.on('message', (d: string) => received.push(d)));
      const proxy = proxyTo(url);
      const proxyUrl = await listening(proxy);
      const conn = nextConnection(proxy);
      const client = connect(proxyUrl);
      const c = await conn;
      const tap = c.tap('frames', 'upstream', { policy: 'drop', highWaterMark: 4 }); // never read
      await opened(client);
      for (let i = 0; i < 200; i++) client.send(`m${i}`);
      while (received.length < 200) await new Promise((r) => setTimeout(r, 10));
      expect(received[199]).to.equal('m199');
      expect(tap.readableLength).to.equal(4);
      expect(tap.dropped).to.be.at.least(196);
      client.close();
      await closed(client);
    });
  });

  describe('closing', () => {
    it('relays close codes and reasons client -> upstream and back', async () => {
      const { server, url } = await ourServer();
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      const serverSide = once(server, 'connection') as Promise<[WebSocket]>;
      const proxy = proxyTo(url);
      const proxyUrl = await listening(proxy);
      const conn = nextConnection(proxy);
      const client = connect(proxyUrl);
      const [ws] = await serverSide;
      const c = await conn;
      await opened(client);
      const upstreamClosed = closed(ws);
      const clientClosed = closed(client);
      const proxyClosed = once(c, 'close') as Promise<[{ client: { code: number; reason: string }; upstream: { code: number } }]>;
      client.close(4001, 'client says bye');
      expect(await upstreamClosed).to.deep.equal([4001, 'client says bye']);
      // Our server echoes the code and the reason; the proxy relays the echo as it is.
      expect(await clientClosed).to.deep.equal([4001, 'client says bye']);
      const [info] = await proxyClosed;
      expect(info.client).to.deep.equal({ code: 4001, reason: 'client says bye' });
      expect(info.upstream).to.deep.equal({ code: 4001, reason: 'client says bye' });
    });

    it('relays close codes and reasons upstream -> client', async () => {
      const { server, url } = await wsServer();
      cleanups.push(() => new Promise((r) => server.close(r)));
      server.on('connection', (ws) => ws.close(4002, 'server says later'));
      const proxyUrl = await listening(proxyTo(url));
      const client = connect(proxyUrl);
      expect(await closed(client)).to.deep.equal([4002, 'server says later']);
    });

    it('the upstream dropping the TCP connection closes the client with 1001', async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      const proxyUrl = await listening(proxyTo(up.url));
      const upstream = up.next();
      const client = connect(proxyUrl);
      await opened(client);
      (await upstream).socket.destroy();
      const [code] = await closed(client);
      expect(code).to.equal(1001);
    });

    it('the client dropping the TCP connection closes the upstream with 1001', async () => {
      const { server, url } = await ourServer();
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      const serverSide = once(server, 'connection') as Promise<[WebSocket]>;
      const proxyUrl = await listening(proxyTo(url));
      const client = connect(proxyUrl);
      const [ws] = await serverSide;
      await opened(client);
      client.terminate();
      const [code] = await closed(ws);
      expect(code).to.equal(1001);
    });

    it('a reset by the upstream after its closing handshake completed is not an error', async () => {
      const { conn, client, socket, upReader, downReader } = await rawPair();
      const errors: Error[] = [];
      conn.on('error', (err: Error) => errors.push(err));
      const proxyClosed = once(conn, 'close') as Promise<[{ upstream: { code: number; reason: string } }]>;
      client.socket.write(clientFrame(Opcode.Close, hex('03 e8')));
      const [toUpstream] = await upReader.until(1);
      expect(toUpstream!.payload.readUInt16BE(0)).to.equal(1000);
      socket.write(hex('88 02 03 e8'));
      // The upstream's close reached the client: close frames went both ways on the upstream side.
      const [toClient] = await downReader.until(1);
      expect(toClient!.payload.readUInt16BE(0)).to.equal(1000);
      socket.resetAndDestroy();
      const [info] = await proxyClosed;
      expect(info.upstream).to.deep.equal({ code: 1000, reason: '' });
      expect(errors).to.deep.equal([]);
      expect(conn.error).to.equal(null);
      client.socket.destroy();
    });

    it('proxy.close() closes both sides with 1001', async () => {
      const { server, url } = await ourServer();
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      const serverSide = once(server, 'connection') as Promise<[WebSocket]>;
      const proxy = createProxy({ target: url, port: 0, host: LOCAL });
      const proxyUrl = await listening(proxy);
      const client = connect(proxyUrl);
      const [ws] = await serverSide;
      await opened(client);
      const both = Promise.all([closed(client), closed(ws)]);
      await new Promise<void>((r) => proxy.close(r));
      const [[clientCode], [upstreamCode]] = await both;
      expect([clientCode, upstreamCode]).to.deep.equal([1001, 1001]);
    });
  });

  describe('failures', () => {
    it('an unreachable upstream gives the client 502', async () => {
      const dead = net.createServer();
      dead.listen(0, LOCAL);
      await once(dead, 'listening');
      const port = (dead.address() as net.AddressInfo).port;
      await new Promise((r) => dead.close(r));
      const proxy = proxyTo(`ws://${LOCAL}:${port}`);
      const proxyUrl = await listening(proxy);
      const rejected = once(proxy, 'rejected') as Promise<[Error, unknown, number]>;
      const client = connect(proxyUrl);
      const errors: Error[] = [];
      client.on('error', (e) => errors.push(e));
      const [code] = await closed(client);
      expect(code).to.equal(1006);
      expect(errors[0]!.message).to.match(/502/);
      expect((await rejected)[2]).to.equal(502);
    });

    it("the upstream's refusal reaches the client as its HTTP status", async () => {
      const { server, url } = await ourServer({ path: '/only' });
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      const proxyUrl = await listening(proxyTo(url));
      const client = await rawClient(proxyUrl);
      expect(client.response).to.match(/^HTTP\/1\.1 400 /);
      client.socket.destroy();
    });

    it('an invalid client request is refused with 400 and the upstream is never contacted', async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      let contacted = false;
      up.server.on('connection', () => (contacted = true));
      const proxyUrl = await listening(proxyTo(up.url));
      const socket = net.connect(Number(new URL(proxyUrl).port), LOCAL);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n');
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      expect(chunk.toString('latin1')).to.match(/^HTTP\/1\.1 400 /);
      expect(contacted).to.equal(false);
      socket.destroy();
    });

    describe('the client never chooses the upstream: a request-target other than a path and query is refused with 400 before any upstream connection', () => {
      for (const form of ['//HOST/p', 'ws://HOST/p', 'http://HOST/p', 'HOST', '/p#x']) {
        it(form, async () => {
          const up = await rawUpstream();
          const victim = await rawUpstream();
          cleanups.push(() => up.server.close(), () => victim.server.close());
          let contacted = 0;
          up.server.on('connection', () => contacted++);
          victim.server.on('connection', () => contacted++);
          const proxyUrl = await listening(proxyTo(`${up.url}/`));
          const requestTarget = form.replace('HOST', new URL(victim.url).host);
          if (requestTarget.startsWith('//')) {
            // '//HOST/p' is origin-form: a path. It reaches the configured upstream as that path.
            const next = up.next();
            const client = await rawClient(proxyUrl, '', requestTarget);
            expect(client.response).to.match(/^HTTP\/1\.1 101 /);
            expect((await next).request.url).to.equal(requestTarget);
            client.socket.destroy();
            expect(contacted).to.equal(1);
            return;
          }
          const client = await rawClient(proxyUrl, '', requestTarget);
          expect(client.response).to.match(/^HTTP\/1\.1 400 /);
          expect(contacted).to.equal(0);
          client.socket.destroy();
        });
      }

      it("'GET //' (libwebsockets' client sends it) reaches the upstream as '//'", async () => {
        const up = await rawUpstream();
        cleanups.push(() => up.server.close());
        const proxyUrl = await listening(proxyTo(up.url));
        const next = up.next();
        const client = await rawClient(proxyUrl, '', '//');
        expect(client.response).to.match(/^HTTP\/1\.1 101 /);
        expect((await next).request.url).to.equal('//');
        client.socket.destroy();
      });

      it('on an http server too (the request-target as Node parsed it)', async () => {
        const up = await rawUpstream();
        const victim = await rawUpstream();
        cleanups.push(() => up.server.close(), () => victim.server.close());
        let contacted = 0;
        victim.server.on('connection', () => contacted++);
        const httpServer = http.createServer();
        httpServer.listen(0, LOCAL);
        await once(httpServer, 'listening');
        cleanups.push(() => new Promise<void>((r) => httpServer.close(() => r())));
        const proxy = createProxy({ target: up.url, server: httpServer });
        cleanups.push(() => new Promise<void>((resolve) => proxy.close(resolve)));
        const client = await rawClient(`ws://${LOCAL}:${(httpServer.address() as net.AddressInfo).port}`, '', `ws://${new URL(victim.url).host}/p`);
        expect(client.response).to.match(/^HTTP\/1\.1 400 /);
        expect(contacted).to.equal(0);
        client.socket.destroy();
      });
    });

    it('a protocol error by the client: 1002 to the client, 1001 to the upstream', async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      const proxyUrl = await listening(proxyTo(up.url));
      const upstream = up.next();
      const client = await rawClient(proxyUrl);
      const { socket, head } = await upstream;
      const upReader = frameReader(socket, head);
      const downReader = frameReader(client.socket, client.head);
      client.socket.write(wireFrame({ opcode: Opcode.Text, payload: 'unmasked', mask: null })); // §5.1: must be masked
      const [toClient] = await downReader.until(1);
      const [toUpstream] = await upReader.until(1);
      expect(toClient!.opcode).to.equal(Opcode.Close);
      expect(toClient!.payload.readUInt16BE(0)).to.equal(1002);
      expect(toUpstream!.opcode).to.equal(Opcode.Close);
      expect(toUpstream!.masked).to.equal(true);
      expect(toUpstream!.payload.readUInt16BE(0)).to.equal(1001);
      client.socket.destroy();
      socket.destroy();
    });

    it('a protocol error by the upstream: 1002 to the upstream, 1014 to the client', async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      const proxyUrl = await listening(proxyTo(up.url));
      const upstream = up.next();
      const client = connect(proxyUrl);
      await opened(client);
      const { socket, head } = await upstream;
      const upReader = frameReader(socket, head);
      socket.write(hex('83 00')); // reserved opcode 0x3
      const [code] = await closed(client);
      expect(code).to.equal(1014);
      const [toUpstream] = await upReader.until(1);
      expect(toUpstream!.payload.readUInt16BE(0)).to.equal(1002);
      socket.destroy();
    });
    it('a close frame the RFC forbids (code 1005) fails its sender: 1002 with the error code as reason to it, 1001 to the other side', async () => {
      const { conn, client, socket, upReader, downReader } = await rawPair();
      client.socket.write(clientFrame(Opcode.Close, hex('03 ed'))); // §7.4.1: 1005 is never sent
      const [toClient] = await downReader.until(1);
      const [toUpstream] = await upReader.until(1);
      expect(toClient!.opcode).to.equal(Opcode.Close);
      expect(toClient!.payload.readUInt16BE(0)).to.equal(1002);
      expect(toClient!.payload.subarray(2).toString()).to.equal('WS_ERR_INVALID_CLOSE_CODE');
      expect(toUpstream!.opcode).to.equal(Opcode.Close);
      expect(toUpstream!.payload.readUInt16BE(0)).to.equal(1001);
      expect(conn.error).to.have.property('code', 'WS_ERR_INVALID_CLOSE_CODE');
      client.socket.destroy();
      socket.destroy();
    });

    it('close() with a code that may not be on the wire throws WS_ERR_INVALID_ARGUMENT and sends nothing', async () => {
      const { conn, client, socket, upReader, downReader } = await rawPair();
      expect(() => conn.close(1005)).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      conn.close(4000, 'x'.repeat(200)); // a reason over 123 bytes is cut
      const [toClient] = await downReader.until(1);
      const [toUpstream] = await upReader.until(1);
      for (const frame of [toClient!, toUpstream!]) {
        expect(frame.opcode).to.equal(Opcode.Close);
        expect(frame.payload.readUInt16BE(0)).to.equal(4000);
        expect(frame.payload.length).to.equal(125);
      }
      client.socket.destroy();
      socket.destroy();
    });
  });

  describe('ping and pong', () => {
    it("'relay' (default): the upstream sees the client's ping and answers it", async () => {
      const { server, url } = await ourServer();
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      const serverSide = once(server, 'connection') as Promise<[WebSocket]>;
      const proxyUrl = await listening(proxyTo(url));
      const client = connect(proxyUrl);
      const [ws] = await serverSide;
      await opened(client);
      const pinged = once(ws, 'ping') as Promise<[Buffer]>;
      const ponged = once(client, 'pong') as Promise<[Buffer]>;
      client.ping('are you there');
      expect((await pinged)[0].toString()).to.equal('are you there');
      expect((await ponged)[0].toString()).to.equal('are you there');
      client.close();
      await closed(client);
    });

    it("'local': the proxy answers each side's pings and relays none", async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      const proxyUrl = await listening(proxyTo(up.url, { pingPong: 'local' }));
      const upstream = up.next();
      const client = await rawClient(proxyUrl);
      const { socket, head } = await upstream;
      const upReader = frameReader(socket, head);
      const downReader = frameReader(client.socket, client.head);
      client.socket.write(clientFrame(Opcode.Ping, 'c'));
      client.socket.write(clientFrame(Opcode.Text, 'after'));
      socket.write(hex('89 01 75')); // ping "u" from the upstream
      socket.write(hex('81 01 7a'));
      const down = await downReader.until(2);
      const upFrames = await upReader.until(2);
      expect(down.map((f) => [f.opcode, f.payload.toString()])).to.have.deep.members([
        [Opcode.Pong, 'c'],
        [Opcode.Text, 'z'],
      ]);
      expect(upFrames.map((f) => [f.opcode, f.masked, f.payload.toString()])).to.have.deep.members([
        [Opcode.Pong, true, 'u'],
        [Opcode.Text, true, 'after'],
      ]);
      client.socket.destroy();
      socket.destroy();
    });
  });

  describe('taps and modes', () => {
    it("a 'messages' tap reassembles a copy of a fragmented message while the frames pass as they are", async () => {
      const up = await rawUpstream();
      cleanups.push(() => up.server.close());
      const proxy = proxyTo(up.url);
      const proxyUrl = await listening(proxy);
      const conn = nextConnection(proxy);
      const upstream = up.next();
      const client = await rawClient(proxyUrl);
      const c = await conn;
      const messages = c.tap('messages', 'upstream');
      const frames = c.tap('frames', 'upstream');
      const { socket, head } = await upstream;
      const upReader = frameReader(socket, head);
      client.socket.write(clientFrame(Opcode.Text, 'Hel', { fin: false }));
      client.socket.write(clientFrame(Opcode.Continuation, 'lo'));
      const [message] = (await once(messages, 'data')) as [ProxyMessage];
      expect(message).to.deep.equal({ binary: false, data: Buffer.from('Hello'), compressed: false });
      await upReader.until(2);
      const seen: Frame[] = [frames.read() as Frame, frames.read() as Frame];
      expect(seen.map((f) => [f.opcode, f.fin, f.mask, f.payload.toString()])).to.deep.equal([
        [Opcode.Text, false, null, 'Hel'],
        [Opcode.Continuation, true, null, 'lo'],
      ]);
      socket.destroy();
      client.socket.destroy();
    });

    it('runs on an http server and by hand with relay()', async () => {
      const { server, url } = await ourServer();
      cleanups.push(() => new Promise<void>((r) => server.close(r)));
      server.on('connection', (ws: WebSocket) => ws.on('message', (d: string) => ws.send(`echo ${d}`)));
      const httpServer = http.createServer();
      httpServer.listen(0, LOCAL);
      await once(httpServer, 'listening');
      cleanups.push(() => new Promise((r) => httpServer.close(r)));
      const viaServer = createProxy({ target: url, server: httpServer });
      cleanups.push(() => new Promise<void>((r) => viaServer.close(r)));
      const byHand = createProxy({ target: url, noServer: true });
      cleanups.push(() => new Promise<void>((r) => byHand.close(r)));
      const httpServer2 = http.createServer();
      httpServer2.on('upgrade', (req, socket, head) => byHand.relay(req as UpgradeRequest, socket as net.Socket, head));
      httpServer2.listen(0, LOCAL);
      await once(httpServer2, 'listening');
      cleanups.push(() => new Promise((r) => httpServer2.close(r)));
      for (const s of [httpServer, httpServer2]) {
        const client = connect(`ws://${LOCAL}:${(s.address() as net.AddressInfo).port}/`);
        await opened(client);
        client.send('x');
        const [data] = (await once(client, 'message')) as [string];
        expect(data).to.equal('echo x');
        client.close();
        await closed(client);
      }
    });
  });
});
