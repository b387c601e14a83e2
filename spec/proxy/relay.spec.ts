/**
 * The relay bounded under attack (issue #21): a paused side is still watched for its peer
 * leaving, locally answered pongs count as queued bytes and pause the side that does not read,
 * relayed frames are charged per piece, and every relayed connection counts against the
 * proxy-wide memory budget.
 *
 * The proxy runs by hand (noServer) behind an http server, so that the spec holds the proxy's
 * own client-side sockets and waits for their 'pause' and 'close' events instead of sleeping.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocketServer as WsServer } from 'ws';
import { Opcode } from '../../lib';
import { WebSocketError } from '../../lib/protocol/errors';
import { buildAcceptResponse } from '../../lib/handshake/handshake';
import type { UpgradeRequest } from '../../lib/handshake/handshake-parser';
import { ProxyConnection, WebSocketProxy, createProxy } from '../../lib/proxy/proxy';
import { CLIENT_KEY, clientClose, clientFrame, closeOf, decodeFrames, DecodedFrame, upgradeRequest, wireFrame } from '../helpers/frames';
import { readResponseHead } from '../helpers/sockets';

const LOCAL = '127.0.0.1';

/** The next `event` of `emitter` (events.once would reject on an 'error' event first). */
function next(emitter: NodeJS.EventEmitter, event: 'close'): Promise<void> {
  return new Promise((resolve) => emitter.once(event, () => resolve()));
}

/** An upstream that accepts every handshake and then never reads (its sockets stay paused). */
async function deafUpstream(received?: Buffer[]): Promise<{ url: string; server: net.Server; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {}); // reset by the proxy at times: its 'close' follows
    let got = '';
    const onData = (chunk: Buffer): void => {
      got += chunk.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      socket.removeListener('data', onData);
      if (received !== undefined) {
        // Not deaf: keeps what comes after the request (the proxy sends no frame before it is answered).
        socket.on('data', (more: Buffer) => received.push(more));
      } else {
        socket.pause();
      }
      const key = /sec-websocket-key:\s*(\S+)/i.exec(got)![1]!;
      socket.write(buildAcceptResponse({ key }));
    };
    socket.on('data', onData);
  });
  server.listen(0, LOCAL);
  await once(server, 'listening');
  return { url: `ws://${LOCAL}:${(server.address() as net.AddressInfo).port}`, server, sockets };
}

/** The proxy behind an http server: the proxy-side socket of each client comes with its connection. */
interface Front {
  url: string;
  proxy: WebSocketProxy;
  /** The next relayed connection and the proxy's socket toward its client. */
  next(): Promise<{ conn: ProxyConnection; socket: net.Socket }>;
  close(): Promise<void>;
}

async function front(options: Omit<Parameters<typeof createProxy>[0], 'noServer'>): Promise<Front> {
  const proxy = createProxy({ ...options, noServer: true });
  const sockets: net.Socket[] = [];
  const httpServer = http.createServer();
  httpServer.on('upgrade', (req, socket, head) => {
    sockets.push(socket as net.Socket);
    proxy.relay(req as UpgradeRequest, socket as net.Socket, head);
  });
  httpServer.listen(0, LOCAL);
  await once(httpServer, 'listening');
  const waiting: Array<(v: { conn: ProxyConnection; socket: net.Socket }) => void> = [];
  const ready: Array<{ conn: ProxyConnection; socket: net.Socket }> = [];
  proxy.on('connection', (conn: ProxyConnection) => {
    // Connections start in the order of their upgrades (one client at a time below).
    const entry = { conn, socket: sockets.shift()! };
    const w = waiting.shift();
    if (w !== undefined) w(entry);
    else ready.push(entry);
  });
  return {
    url: `ws://${LOCAL}:${(httpServer.address() as net.AddressInfo).port}`,
    proxy,
    next: () => {
      const r = ready.shift();
      return r !== undefined ? Promise.resolve(r) : new Promise((resolve) => waiting.push(resolve));
    },
    close: async () => {
      await new Promise<void>((resolve) => proxy.close(resolve));
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}

/** An upstream that accepts every handshake and reads all that follows: its sockets, and the bytes after the handshake of each. */
async function readingUpstream(): Promise<{ url: string; server: net.Server; sockets: net.Socket[]; peers: Promise<{ socket: net.Socket; head: Buffer }>[] }> {
  const sockets: net.Socket[] = [];
  const peers: Array<Promise<{ socket: net.Socket; head: Buffer }>> = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    peers.push(
      new Promise((resolve) => {
        let got = Buffer.alloc(0);
        const onData = (chunk: Buffer): void => {
          got = Buffer.concat([got, chunk]);
          const end = got.indexOf('\r\n\r\n');
          if (end < 0) return;
          socket.removeListener('data', onData);
          socket.pause();
          const key = /sec-websocket-key:\s*(\S+)/i.exec(got.subarray(0, end).toString('latin1'))![1]!;
          socket.write(buildAcceptResponse({ key }));
          resolve({ socket, head: got.subarray(end + 4) });
        };
        socket.on('data', onData);
      }),
    );
  });
  server.listen(0, LOCAL);
  await once(server, 'listening');
  return { url: `ws://${LOCAL}:${(server.address() as net.AddressInfo).port}`, server, sockets, peers };
}

/** Collects the frames `socket` receives (after `head`) until `done` says so, or it closes; `raw`: all the bytes that carried them. */
function framesUntil(socket: net.Socket, head: Buffer, done: (frames: DecodedFrame[]) => boolean): Promise<{ frames: DecodedFrame[]; raw: Buffer }> {
  let pending = head;
  const raw: Buffer[] = [head];
  const frames: DecodedFrame[] = [];
  return new Promise((resolve) => {
    const take = (): void => {
      const decoded = decodeFrames(pending);
      pending = Buffer.from(decoded.rest);
      frames.push(...decoded.frames);
      if (done(frames)) resolve({ frames, raw: Buffer.concat(raw) });
    };
    socket.on('data', (chunk: Buffer) => {
      raw.push(chunk);
      pending = Buffer.concat([pending, chunk]);
      take();
    });
    socket.once('close', () => resolve({ frames, raw: Buffer.concat(raw) }));
    socket.resume();
    take();
  });
}

/** The masking key of each frame in `bytes` (whole frames), null for an unmasked one. */
function keysOf(bytes: Buffer): Array<string | null> {
  const keys: Array<string | null> = [];
  let i = 0;
  while (i < bytes.length) {
    const length7 = bytes[i + 1]! & 0x7f;
    let at = i + 2;
    let length = length7;
    if (length7 === 126) {
      length = bytes.readUInt16BE(at);
      at += 2;
    } else if (length7 === 127) {
      length = Number(bytes.readBigUInt64BE(at));
      at += 8;
    }
    const masked = (bytes[i + 1]! & 0x80) !== 0;
    keys.push(masked ? bytes.subarray(at, at + 4).toString('hex') : null);
    i = at + (masked ? 4 : 0) + length;
  }
  return keys;
}

/** A raw client that did the opening handshake; `head`: bytes after the 101. */
async function rawClient(url: string): Promise<{ socket: net.Socket; head: Buffer }> {
  const { port } = new URL(url);
  const socket = net.connect(Number(port), LOCAL);
  socket.on('error', () => {}); // the proxy may reset it: its 'close' follows
  await once(socket, 'connect');
  socket.write(upgradeRequest(`${LOCAL}:${port}`));
  const { head } = await readResponseHead(socket);
  return { socket, head };
}

/**
 * Writes `chunk` over and over to `socket` until `paused` (the proxy's socket toward this client)
 * is paused, or `maxBytes` went out: each write waits for 'drain' when the client's buffer is
 * full, or for the proxy to pause. The proxy pauses and resumes while the buffers on the way to
 * a deaf upstream still take bytes; it stays paused once they are full and this stops only then
 * (when the client's own buffer is full too). Returns the bytes written.
 */
async function writeUntil(socket: net.Socket, chunk: Buffer, paused: net.Socket, maxBytes: number): Promise<number> {
  let written = 0;
  while (written < maxBytes) {
    if (paused.isPaused() && socket.writableLength > 0) return written;
    if (socket.destroyed || paused.destroyed || paused.readableEnded) return written; // cut by the proxy
    written += chunk.length;
    if (!socket.write(chunk)) {
      if (paused.isPaused()) return written;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          for (const [emitter, event] of waits) emitter.removeListener(event, done);
          resolve();
        };
        const waits: Array<[net.Socket, string]> = [[socket, 'drain'], [socket, 'close'], [paused, 'pause'], [paused, 'close']];
        for (const [emitter, event] of waits) emitter.once(event, done);
      });
    }
    else await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return written;
}

/** Decodes what `socket` receives; resolves with the frames once one of them is a close frame (or the socket closed). */
function untilClose(socket: net.Socket, head: Buffer): Promise<DecodedFrame[]> {
  return framesUntil(socket, head, (frames) => frames.some((fr) => fr.opcode === Opcode.Close)).then(({ frames }) => frames);
}

/**
 * Sends one binary message in 16 KiB fragments (whole frames, so that control frames may come
 * between them) until `stop` settles; the message is left open.
 */
async function fragmentsUntil(socket: net.Socket, paused: net.Socket): Promise<number> {
  socket.write(clientFrame(Opcode.Binary, Buffer.alloc(16 * 1024), { fin: false }));
  return writeUntil(socket, clientFrame(Opcode.Continuation, Buffer.alloc(16 * 1024), { fin: false }), paused, 256 * 1024 * 1024);
}

/** The proxy's socket toward the upstream of `conn` (a private field: the spec waits for its events). */
function upstreamSocketOf(conn: ProxyConnection): net.Socket {
  return (conn as unknown as { upstream: { socket: net.Socket } }).upstream.socket;
}

/** `promise`, failing the spec when it takes `ms` or more: a deadline on an event, never a wait. */
async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Both proxy sockets of a pair and the connection close, promptly (well under the specs' 30 s
 * closeTimeout), and the connection's 'close' comes once.
 */
async function pairCloses(f: Front, conn: ProxyConnection, clientSide: net.Socket): Promise<void> {
  let closes = 0;
  conn.on('close', () => closes++);
  const upSide = upstreamSocketOf(conn);
  await within(PROMPTLY, Promise.all([next(clientSide, 'close'), next(upSide, 'close'), next(conn, 'close')]), 'both sockets closed');
  expect(clientSide.destroyed && upSide.destroyed).to.equal(true);
  expect(f.proxy.connections.has(conn)).to.equal(false);
  await new Promise<void>((resolve) => setImmediate(resolve));
  expect(closes).to.equal(1);
}

/** A server frame (unmasked) of `opcode`. */
function serverFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  return wireFrame({ opcode, payload, fin, mask: null });
}

/** Decodes what `socket` receives; once a close frame came, answers it with `reply` and ends. */
function answerClose(socket: net.Socket, head: Buffer, reply: (code: number | undefined) => Buffer): Promise<number | undefined> {
  return untilClose(socket, head).then((frames) => {
    const { code } = closeOf(frames.find((fr) => fr.opcode === Opcode.Close)!);
    socket.end(reply(code));
    return code;
  });
}

/** How long a pair may take to close once one side left (the specs' closeTimeout is 30 s). */
const PROMPTLY = 5000;

describe('proxy relay under attack', function () {
  this.timeout(20000);
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A deaf upstream (it reads nothing once told) and a proxy in front of it, both closed after the case. */
  async function deafFront(options: Omit<Parameters<typeof front>[0], 'target'>): Promise<{ up: Awaited<ReturnType<typeof deafUpstream>>; f: Front }> {
    const up = await deafUpstream();
    cleanups.push(() => {
      for (const s of up.sockets) s.destroy();
      up.server.close();
    });
    const f = await front({ target: up.url, ...options });
    cleanups.push(() => f.close());
    return { up, f };
  }

  describe('a paused side is still watched for its peer leaving', () => {
    it('clients that leave while paused by a deaf upstream: both sockets of every pair close', async () => {
      const { f } = await deafFront({ pausedPingInterval: 50, closeTimeout: 200 });
      const PAIRS = 6;
      const closes: Array<Promise<unknown>> = [];
      const clientCloses: Array<Promise<unknown>> = [];
      for (let i = 0; i < PAIRS; i++) {
        const client = await rawClient(f.url);
        const { conn, socket } = await f.next();
        closes.push(next(conn, 'close'));
        clientCloses.push(next(socket, 'close'));
        // The upstream reads nothing: the proxy's buffers toward it fill, and it pauses the client.
        await fragmentsUntil(client.socket, socket);
        expect(socket.isPaused()).to.equal(true);
        // Then the client leaves: half of them close, half reset.
        if (i % 2 === 0) client.socket.destroy();
        else client.socket.resetAndDestroy();
      }
      await Promise.all(clientCloses);
      await Promise.all(closes);
      expect(f.proxy.connections.size).to.equal(0);
    });

    it("the proxy's own pings to a paused side are answered, and the answering pongs are not relayed", async () => {
      const { up, f } = await deafFront({ pausedPingInterval: 20 });
      const client = await rawClient(f.url);
      const { socket } = await f.next();
      const upSocket = up.sockets[up.sockets.length - 1]!;
      await fragmentsUntil(client.socket, socket);
      expect(socket.isPaused()).to.equal(true);
      // The client reads the proxy's pings and answers one with a pong of the same payload.
      let pending = client.head;
      const ping = new Promise<Buffer>((resolve) => {
        client.socket.on('data', (chunk: Buffer) => {
          pending = Buffer.concat([pending, chunk]);
          const found = decodeFrames(pending).frames.find((fr) => fr.opcode === Opcode.Ping);
          if (found !== undefined) resolve(found.payload);
        });
      });
      client.socket.resume();
      const payload = await ping;
      client.socket.write(clientFrame(Opcode.Pong, payload));
      client.socket.write(clientFrame(Opcode.Continuation, 'end', { fin: true }));
      // Now the upstream reads everything: the message arrives, and no pong with it.
      const opcodes: number[] = [];
      let rest = Buffer.alloc(0);
      const ended = new Promise<void>((resolve) => {
        upSocket.on('data', (chunk: Buffer) => {
          const decoded = decodeFrames(rest.length === 0 ? chunk : Buffer.concat([rest, chunk]));
          rest = Buffer.from(decoded.rest);
          for (const fr of decoded.frames) {
            opcodes.push(fr.opcode);
            if (fr.fin) resolve();
          }
        });
      });
      upSocket.resume();
      await ended;
      expect(opcodes).to.not.include(Opcode.Pong);
      expect(opcodes.filter((o) => o === Opcode.Continuation).length).to.be.greaterThan(1);
      client.socket.destroy();
    });
  });

  describe('one side gone without a closing handshake: the other is closed promptly', () => {
    // closeTimeout is 30 s and probes are off unless the case needs them: a pass proves the new path, not a timer.
    const SLOW = { closeTimeout: 30000, pausedPingInterval: Infinity };

    it('the client resets while the upstream is paused behind data the client did not read: the upstream gets 1001, its answer is found behind that data', async () => {
      const { up, f } = await deafFront(SLOW);
      const client = await rawClient(f.url); // never reads
      const { conn, socket } = await f.next();
      const upSocket = up.sockets[up.sockets.length - 1]!;
      const proxyUp = upstreamSocketOf(conn);
      // The upstream sends until the proxy stops reading it (the client does not read).
      await writeUntil(upSocket, serverFrame(Opcode.Binary, Buffer.alloc(64 * 1024)), proxyUp, 256 * 1024 * 1024);
      expect(proxyUp.isPaused(), 'the upstream was paused').to.equal(true);
      const answered = answerClose(upSocket, Buffer.alloc(0), (code) => serverFrame(Opcode.Close, Buffer.from([code! >> 8, code! & 0xff])));
      const done = pairCloses(f, conn, socket);
      client.socket.resetAndDestroy();
      expect(await answered).to.equal(1001);
      await done;
    });

    it('the client resets in the middle of a frame relayed to the upstream: no close can follow it, the upstream socket is destroyed at once', async () => {
      const { up, f } = await deafFront(SLOW);
      const client = await rawClient(f.url);
      const { conn, socket } = await f.next();
      const upSocket = up.sockets[up.sockets.length - 1]!;
      // All but the last byte of a 1 MiB frame go out; once its first 64 KiB reached the upstream
      // it stops reading, with the rest unread before a FIN (as an upstream held by its budget).
      const PART = 14 + 64 * 1024;
      const relayed = new Promise<void>((resolve) => {
        let got = 0;
        upSocket.on('data', (chunk: Buffer) => {
          got += chunk.length;
          if (got < PART) return;
          upSocket.pause();
          resolve();
        });
      });
      upSocket.resume();
      const frame = clientFrame(Opcode.Binary, Buffer.alloc(1024 * 1024));
      client.socket.write(frame.subarray(0, frame.length - 1));
      await relayed;
      const done = pairCloses(f, conn, socket);
      client.socket.resetAndDestroy();
      await done;
    });

    it('the upstream resets while the client is paused behind data the upstream did not read: the client gets 1014, its answer is found behind that data', async () => {
      const { up, f } = await deafFront(SLOW);
      const client = await rawClient(f.url);
      const { conn, socket } = await f.next();
      const upSocket = up.sockets[up.sockets.length - 1]!;
      await fragmentsUntil(client.socket, socket);
      expect(socket.isPaused(), 'the client was paused').to.equal(true);
      const answered = answerClose(client.socket, client.head, (code) => clientClose(code));
      const done = pairCloses(f, conn, socket);
      upSocket.resetAndDestroy();
      expect(await answered).to.equal(1014);
      await done;
    });

    it('a client that leaves while paused is noticed by the probe pings; the upstream that does not read is closed within the short bound', async () => {
      const { f } = await deafFront({ closeTimeout: 30000, pausedPingInterval: 50 });
      for (const leave of ['destroy', 'resetAndDestroy'] as const) {
        const client = await rawClient(f.url);
        const { conn, socket } = await f.next();
        await fragmentsUntil(client.socket, socket);
        expect(socket.isPaused(), 'the client was paused').to.equal(true);
        const done = pairCloses(f, conn, socket);
        client.socket[leave]();
        await done;
      }
    });

    it('the client ends TCP without a close (its socket from an http server allows half-open) and the upstream never answers the 1001: it is destroyed within the short bound, not the close timeout', async () => {
      const { f } = await deafFront(SLOW);
      const client = await rawClient(f.url);
      const { conn, socket } = await f.next();
      const done = pairCloses(f, conn, socket);
      client.socket.destroy();
      await done;
      expect(conn.error).to.equal(null);
    });
  });

  describe("'local' ping/pong", () => {
    it('a client that pings and never reads is paused once its pongs fill its socket, and they stay bounded', async () => {
      const { f } = await deafFront({ pingPong: 'local', pausedPingInterval: 50, closeTimeout: 200 });
      const client = await rawClient(f.url);
      const { conn, socket } = await f.next();
      const pings = Buffer.concat(Array.from({ length: 256 }, () => clientFrame(Opcode.Ping, Buffer.alloc(125, 1))));
      // Bounded: 64 MiB of pings (65 MiB of pongs) if the proxy never pauses the client.
      await writeUntil(client.socket, pings, socket, 64 * 1024 * 1024);
      expect(socket.isPaused(), 'the client was paused').to.equal(true);
      expect(socket.writableLength).to.be.lessThan(1024 * 1024);
      client.socket.destroy();
      await next(conn, 'close');
    });
  });

  describe('per-frame cost and the proxy-wide budget', () => {
    it('a flood of empty fragments is cut with 1009 after maxMessageSize / frameOverhead frames, as the server does', async () => {
      const { f } = await deafFront({ maxMessageSize: 64 * 1024, closeTimeout: 200 });
      const client = await rawClient(f.url);
      const { conn } = await f.next();
      const closed = next(conn, 'close');
      const frames = untilClose(client.socket, client.head);
      // 64 KiB / 256 bytes a frame: the 258th frame of the message is one too many.
      const flood = [clientFrame(Opcode.Binary, Buffer.alloc(0), { fin: false })];
      for (let i = 0; i < 300; i++) flood.push(clientFrame(Opcode.Continuation, Buffer.alloc(0), { fin: false }));
      client.socket.write(Buffer.concat(flood));
      const got = await frames;
      const close = got.find((fr) => fr.opcode === Opcode.Close)!;
      expect(closeOf(close).code).to.equal(1009);
      expect(conn.error).to.have.property('code', 'WS_ERR_TOO_MANY_FRAGMENTS');
      await closed;
    });

    // RFC 6455 §5.4: a continuation frame continues an open message; a new text or binary frame
    // may not start while one is open. An intermediary relaying frames one by one checks it as
    // an endpoint would: the sender is failed with 1002, and nothing of the frame is relayed.
    // (Spec first: the proxy relayed them as they came.)
    for (const [title, frames, code] of [
      ['a small continuation frame with no message open', [clientFrame(Opcode.Continuation, 'x')], 'WS_ERR_UNEXPECTED_CONTINUATION'],
      ['a large continuation frame with no message open', [clientFrame(Opcode.Continuation, Buffer.alloc(4096, 1))], 'WS_ERR_UNEXPECTED_CONTINUATION'],
      [
        'a continuation after a message that ended',
        [clientFrame(Opcode.Text, 'a'), clientFrame(Opcode.Continuation, 'b')],
        'WS_ERR_UNEXPECTED_CONTINUATION',
      ],
      [
        'a small binary frame while a message is open',
        [clientFrame(Opcode.Text, 'a', { fin: false }), clientFrame(Opcode.Binary, 'b')],
        'WS_ERR_EXPECTED_CONTINUATION',
      ],
      [
        'a large text frame while a message is open',
        [clientFrame(Opcode.Binary, Buffer.alloc(4096, 1), { fin: false }), clientFrame(Opcode.Text, Buffer.alloc(4096, 0x61))],
        'WS_ERR_EXPECTED_CONTINUATION',
      ],
    ] as const) {
      it(`fragments out of order: ${title} fails its sender with 1002 (${code})`, async () => {
        const received: Buffer[] = [];
        const up = await deafUpstream(received);
        cleanups.push(() => {
          for (const sock of up.sockets) sock.destroy();
          up.server.close();
        });
        const f = await front({ target: up.url, closeTimeout: 200 });
        cleanups.push(() => f.close());
        const client = await rawClient(f.url);
        const { conn } = await f.next();
        const closed = next(conn, 'close');
        const got = untilClose(client.socket, client.head);
        // (Listened for now: the proxy may close it before the client's close is read.)
        const upClosed = once(up.sockets[0]!, 'close');
        client.socket.write(Buffer.concat([...frames]));
        const close = (await got).find((fr) => fr.opcode === Opcode.Close)!;
        expect(closeOf(close).code).to.equal(1002);
        expect(conn.error).to.have.property('code', code);
        await closed;
        // The upstream got the frames before the bad one, and none of it (then a close).
        await upClosed;
        const relayed = decodeFrames(Buffer.concat(received)).frames.filter((fr) => fr.opcode !== Opcode.Close);
        expect(relayed.length).to.equal(frames.length - 1);
      });
    }

    it('relayed small frames are written in one piece per received chunk, not one write each', async () => {
      const up = await deafUpstream();
      cleanups.push(() => {
        for (const s of up.sockets) s.destroy();
        up.server.close();
      });
      const f = await front({ target: up.url });
      cleanups.push(() => f.close());
      const client = await rawClient(f.url);
      const { conn, socket } = await f.next();
      const upSocket = up.sockets[up.sockets.length - 1]!;
      let writes = 0;
      const write = socket.write.bind(socket) as (chunk: Buffer) => boolean;
      socket.write = ((chunk: Buffer) => {
        writes++;
        return write(chunk);
      }) as typeof socket.write;
      // 2000 empty fragments from the upstream, in one write (a few TCP reads at most).
      const COUNT = 2000;
      const flood = [Buffer.from([0x02, 0x00])];
      for (let i = 1; i < COUNT; i++) flood.push(Buffer.from([0x00, 0x00]));
      flood.push(Buffer.from([0x80, 0x00]));
      let received = 0;
      const all = new Promise<void>((resolve) => {
        client.socket.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received >= 2 * (COUNT + 1)) resolve();
        });
      });
      client.socket.resume();
      upSocket.write(Buffer.concat(flood));
      await all;
      expect(received).to.equal(2 * (COUNT + 1));
      expect(conn.frames.downstream).to.equal(COUNT + 1);
      expect(writes).to.be.lessThan(20);
      client.socket.destroy();
    });

    it('every relayed connection counts against serverMemoryBudget: over 3/4 of it the largest is held; a cut closes both sides with 1008', async () => {
      const up = await deafUpstream();
      cleanups.push(() => {
        for (const s of up.sockets) s.destroy();
        up.server.close();
      });
      // The proxy pauses the client once 16 KiB (the socket's highWaterMark) wait for the upstream.
      const BUDGET = 16 * 1024;
      const f = await front({ target: up.url, serverMemoryBudget: BUDGET, closeTimeout: 200 });
      cleanups.push(() => f.close());
      const budget = f.proxy.memoryBudget!;
      const client = await rawClient(f.url);
      const { conn, socket } = await f.next();
      const closed = next(conn, 'close');
      // The upstream reads nothing: what the proxy queues toward it passes 3/4 of the budget.
      await fragmentsUntil(client.socket, socket);
      if (conn.error === null) {
        expect(budget.core.total).to.be.greaterThan(BUDGET * 0.75);
        expect(budget.core.held).to.equal(1);
        // What the budget does to a connection that still grows (the policy: MemoryBudgetCore, spec/server/memory-budget.spec.ts).
        const frames = untilClose(client.socket, client.head);
        conn.failForServer(new WebSocketError('WS_ERR_SERVER_MEMORY'));
        const got = await frames;
        expect(closeOf(got.find((fr) => fr.opcode === Opcode.Close)!).code).to.equal(1008);
      }
      // Else it was cut already, having grown past the budget within one received chunk.
      expect(conn.error).to.have.property('code', 'WS_ERR_SERVER_MEMORY');
      await closed;
      expect(budget.core.total).to.equal(0);
      expect(budget.core.held).to.equal(0);
      client.socket.destroy();
    });
  });

  describe('small frames written straight into the output block', () => {
    /** Sizes around every boundary of the path: empty, the 7-bit and 16-bit forms, COALESCE_BELOW (1024) and above. */
    const SIZES = [0, 1, 2, 3, 4, 5, 7, 125, 126, 127, 128, 500, 1023, 1024, 1025, 3000];
    /** Chunk sizes the sender writes in, in turn (a turn of the event loop between writes). */
    const CHUNKS = [1, 2, 7, 13, 100, 1000, 5000, 20_000, 70_000];

    /** A deterministic mix of data frames (messages of 1 to 4 frames) and pings, over about 1 MB. */
    function traffic(): Array<{ opcode: number; fin: boolean; payload: Buffer }> {
      // First pings alone, more than a block's worth (64 KiB) of pongs: the block fills up with
      // buffers the serializer gathers (not frames written straight into it).
      const out: Array<{ opcode: number; fin: boolean; payload: Buffer }> = [];
      for (let i = 0; i < 600; i++) out.push({ opcode: Opcode.Ping, fin: true, payload: Buffer.alloc(120, i & 0xff) });
      let seed = 7;
      const pick = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      for (let m = 0; m < 1000; m++) {
        const count = 1 + pick(4);
        for (let f = 0; f < count; f++) {
          const size = SIZES[pick(SIZES.length)]!;
          const payload = Buffer.alloc(size);
          for (let i = 0; i < size; i++) payload[i] = (m * 31 + f * 7 + i) & 0xff;
          out.push({ opcode: f === 0 ? Opcode.Binary : Opcode.Continuation, fin: f === count - 1, payload });
          if (pick(3) === 0) out.push({ opcode: Opcode.Ping, fin: true, payload: Buffer.from(`ping ${out.length}`) });
        }
      }
      return out;
    }

    /** Writes `bytes` to `socket` in CHUNKS' sizes, a turn of the event loop between writes. */
    async function writeInChunks(socket: net.Socket, bytes: Buffer): Promise<void> {
      let at = 0;
      for (let i = 0; at < bytes.length; i++) {
        const size = CHUNKS[i % CHUNKS.length]!;
        socket.write(bytes.subarray(at, at + size));
        at += size;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }

    it("each way, at every chunking: data frames relayed unchanged (opcode, FIN, payload), each toward the upstream with a fresh key of the proxy's; the local pongs to the sender, written into the same block, come in order", async () => {
      const up = await readingUpstream();
      cleanups.push(() => {
        for (const s of up.sockets) s.destroy();
        up.server.close();
      });
      const f = await front({ target: up.url, pingPong: 'local' });
      cleanups.push(() => f.close());
      const client = await rawClient(f.url);
      await f.next();
      const peer = await up.peers[0]!;
      const sent = traffic();
      const data = sent.filter((fr) => fr.opcode !== Opcode.Ping);
      const pings = sent.filter((fr) => fr.opcode === Opcode.Ping);
      const same = (got: DecodedFrame[], want: typeof sent): void => {
        expect(got.length).to.equal(want.length);
        for (let i = 0; i < want.length; i++) {
          const [g, w] = [got[i]!, want[i]!];
          if (g.opcode !== w.opcode || g.fin !== w.fin || g.rsv !== 0 || !g.payload.equals(w.payload)) {
            expect({ i, opcode: g.opcode, fin: g.fin, rsv: g.rsv, payload: g.payload.toString('hex') }).to.deep.equal({
              i,
              opcode: w.opcode,
              fin: w.fin,
              rsv: 0,
              payload: w.payload.toString('hex'),
            });
          }
        }
      };
      const isData = (fr: DecodedFrame): boolean => fr.opcode === Opcode.Binary || fr.opcode === Opcode.Continuation;
      const isPong = (fr: DecodedFrame): boolean => fr.opcode === Opcode.Pong;
      // Each side gets the other's data frames and the pongs to its own pings; anything else ends the wait.
      const all = (frames: DecodedFrame[]): boolean =>
        frames.some((fr) => !isData(fr) && !isPong(fr)) || (frames.filter(isData).length >= data.length && frames.filter(isPong).length >= pings.length);
      const atUpstream = framesUntil(peer.socket, peer.head, all);
      const atClient = framesUntil(client.socket, client.head, all);
      await writeInChunks(client.socket, Buffer.concat(sent.map((fr) => clientFrame(fr.opcode, fr.payload, { fin: fr.fin }))));
      await writeInChunks(peer.socket, Buffer.concat(sent.map((fr) => wireFrame({ opcode: fr.opcode, payload: fr.payload, fin: fr.fin, mask: null }))));
      const [toUpstream, toClient] = await Promise.all([atUpstream, atClient]);
      same(toUpstream.frames.filter(isData), data);
      same(toClient.frames.filter(isData), data);
      // The pongs answer the pings in order, each side its own.
      for (const got of [toUpstream.frames, toClient.frames]) {
        expect(got.filter(isPong).map((fr) => fr.payload.toString())).to.deep.equal(pings.map((fr) => fr.payload.toString()));
      }
      // Toward the upstream every frame is masked, never with the client's key, and no two frames in a row share one.
      const keys = keysOf(toUpstream.raw);
      expect(keys.length).to.equal(toUpstream.frames.length);
      expect(keys.every((k) => k !== null && k !== CLIENT_KEY.toString('hex'))).to.equal(true);
      for (let i = 1; i < keys.length; i++) expect(keys[i]).to.not.equal(keys[i - 1]);
      // Toward the client nothing is masked.
      expect(keysOf(toClient.raw).every((k) => k === null)).to.equal(true);
      client.socket.destroy();
    });
  });

  describe('fairness between connections', () => {
    /**
     * One client floods 1-byte fragments through an echo upstream while another sends one
     * message: the flooder's side yields turns (its socket pauses with nothing queued toward the
     * upstream, and resumes), and the other's echo comes before the flood's. `tapped`: a frames
     * tap observes the flood (each frame a Frame offered to it: milliseconds per 64 KiB read);
     * else its frames take the relay's fast path (a fraction of a millisecond per read).
     */
    async function floodAndCanary(tapped: boolean, minTurns: number): Promise<void> {
      // An echo upstream that reads everything (ws's, not ours: the upstream's own fairness is not under test).
      const upstream = new WsServer({ port: 0, host: LOCAL, maxFragments: 0 });
      await once(upstream, 'listening');
      upstream.on('connection', (peer) => peer.on('message', (data, binary) => peer.send(data, { binary })));
      cleanups.push(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
      cleanups.push(() => {
        for (const peer of upstream.clients) peer.terminate();
      });
      const f = await front({ target: `ws://${LOCAL}:${(upstream.address() as net.AddressInfo).port}` });
      cleanups.push(() => f.close());
      const flooder = await rawClient(f.url);
      const { conn, socket } = await f.next();
      // (The tap drops what it cannot hold.)
      if (tapped) conn.tap('frames', 'upstream');
      const other = await rawClient(f.url);
      await f.next();
      const upSide = upstreamSocketOf(conn);
      // The proxy's socket toward the flooder: its pauses with nothing queued toward the
      // upstream (not backpressure) are the turns it yielded; the other client's message goes
      // out at the first of them.
      const order: string[] = [];
      let turns = 0;
      const pause = socket.pause.bind(socket);
      const resume = socket.resume.bind(socket);
      socket.pause = () => {
        if (!upSide.writableNeedDrain) {
          turns++;
          if (turns === 1) other.socket.write(clientFrame(Opcode.Text, 'canary'));
        }
        order.push('pause');
        return pause();
      };
      socket.resume = () => {
        order.push('resume');
        return resume();
      };
      const echoed = (client: { socket: net.Socket; head: Buffer }, name: string): Promise<void> => {
        let pending = client.head;
        return new Promise((resolve) => {
          client.socket.on('data', (chunk: Buffer) => {
            pending = Buffer.concat([pending, chunk]);
            const { frames, rest } = decodeFrames(pending);
            pending = Buffer.from(rest);
            if (frames.some((fr) => fr.fin && fr.opcode !== Opcode.Close)) {
              order.push(name);
              resolve();
            }
          });
          client.socket.resume();
        });
      };
      const otherEcho = echoed(other, 'other echoed');
      const floodEcho = echoed(flooder, 'flood echoed');
      // 300 000 masked 1-byte fragments of one text message (2.1 MB): a 64 KiB read holds about
      // 9 000 of them, milliseconds of relaying each.
      const count = 300_000;
      const fragment = (opcode: number, fin: boolean): Buffer => clientFrame(opcode, 'a', { fin });
      const frames = [fragment(Opcode.Text, false)];
      for (let i = 1; i < count - 1; i++) frames.push(fragment(Opcode.Continuation, false));
      frames.push(fragment(Opcode.Continuation, true));
      flooder.socket.write(Buffer.concat(frames));
      await floodEcho;
      expect(conn.frames.upstream).to.equal(count);
      // The flooder's reading was held for a turn, and went on at the next turn.
      expect(turns).to.be.at.least(minTurns);
      expect(order.indexOf('resume', order.indexOf('pause'))).to.be.greaterThan(order.indexOf('pause'));
      // The other connection got its echo before the flood was through.
      await otherEcho;
      expect(order.indexOf('other echoed')).to.be.lessThan(order.indexOf('flood echoed'));
      await new Promise((resolve) => setImmediate(resolve));
      expect(socket.isPaused()).to.equal(false);
      flooder.socket.destroy();
      other.socket.destroy();
    }

    it("a chunk that keeps the relay long (a flood of 1-byte fragments, observed by a frames tap) ends its side's turn: reading it pauses with nothing else holding it and resumes at the next turn, and another connection is relayed meanwhile", () =>
      floodAndCanary(true, 2));

    it('reads that are quick one by one (the fast path of small frames) but long together within one turn of the event loop end the turn as well', () =>
      floodAndCanary(false, 1));
  });
});
