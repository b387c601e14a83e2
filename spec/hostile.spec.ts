/**
 * Hostile peers over real TCP connections (127.0.0.1, port 0): a raw net client does a valid
 * opening handshake by hand and then sends what a fuzzer, a broken client or an attacker would.
 * The server must answer each violation with the close code RFC 6455 names, allocate nothing
 * for lengths it refuses, bound what floods cost it, and keep serving everyone else.
 */
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { expect } from 'chai';
import fc from 'fast-check';
import { connect } from '../lib/client/client';
import { Readable } from 'readable-stream';
import { CloseCode, Defaults, Opcode, isValidWireCloseCode } from '../lib/protocol/constants';
import type { Message } from '../lib/protocol/frame';
import { FragmentAssembler } from '../lib/stages/fragment-assembler';
import { FrameSplitter } from '../lib/stages/frame-splitter';
import { Unmasker } from '../lib/stages/unmasker';
import { WebSocketError } from '../lib/protocol/errors';
import { Receiver } from '../lib/connection/receiver';
import { WebSocketServer, createServer, type ServerOptions } from '../lib/server/server';
import { ReadyState, type WebSocket } from '../lib/connection/websocket';
import { type DecodedFrame, clientClose, clientFrame, closeOf, decodeFrames, expectedAccept, upgradeRequest, wireFrame } from './helpers/frames';
import { closed } from './helpers/sockets';

// ----- A server that echoes, and remembers how each connection ended -----

interface Connection {
  ws: WebSocket;
  /** Resolves with the code and reason of the WebSocket's 'close'. */
  closed: Promise<[number, string]>;
}

interface TestServer {
  server: WebSocketServer;
  port: number;
  /** The next connection the server accepts (call before the client connects; tests run one at a time). */
  nextConnection(): Promise<Connection>;
  stop(): Promise<void>;
}

async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const server = createServer({ host: '127.0.0.1', port: 0, ...options });
  await once(server, 'listening');
  const waiting: Array<(c: Connection) => void> = [];
  server.on('connection', (ws: WebSocket) => {
    // Not events.once(): it listens for 'error' too, and a WebSocket only emits 'error' to listeners.
    const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
    ws.on('message', (data: string | Buffer, isBinary: boolean) => {
      if (ws.readyState === ReadyState.OPEN) ws.send(data, { binary: isBinary });
    });
    // Connections nobody waits for (lib clients, the flood of hostile ones) are not tracked.
    waiting.shift()?.({ ws, closed });
  });
  return {
    server,
    port: server.address()!.port,
    nextConnection: () => new Promise((resolve) => waiting.push(resolve)),
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// ----- A raw client that speaks bytes -----

class RawClient {
  readonly socket: net.Socket;
  /** Bytes received after the 101 response. */
  private data: Buffer = Buffer.alloc(0);
  private readonly waiters: Array<() => void> = [];
  readonly closed: Promise<void>;
  isClosed = false;

  private constructor(socket: net.Socket, rest: Buffer) {
    this.socket = socket;
    this.data = rest;
    // A server that destroys the socket may reset it; that is an outcome, not a failure.
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  /** Connects and completes the opening handshake by hand, checking the 101 answer. */
  static async open(port: number): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await once(socket, 'connect');
    socket.write(upgradeRequest(`127.0.0.1:${port}`));
    let head = Buffer.alloc(0);
    for (;;) {
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) continue;
      socket.pause();
      const text = head.subarray(0, end).toString('latin1');
      expect(text.split('\r\n')[0]).to.match(/^HTTP\/1\.1 101 /);
      expect(text.toLowerCase()).to.include(`sec-websocket-accept: ${expectedAccept().toLowerCase()}`);
      const client = new RawClient(socket, head.subarray(end + 4));
      socket.resume();
      return client;
    }
  }

  /** Frames received so far (complete ones). */
  get frames(): DecodedFrame[] {
    return decodeFrames(this.data).frames;
  }

  send(bytes: Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.write(bytes, () => resolve());
    });
  }

  /** Resolves once `found` returns a value for the frames received, or with undefined when the socket closes first. */
  async waitFor<T>(found: (frames: DecodedFrame[]) => T | undefined): Promise<T | undefined> {
    for (;;) {
      const value = found(this.frames);
      if (value !== undefined || this.isClosed) return value;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The server's close frame (code and reason), or undefined when the connection ended without one. */
  closeFrame(): Promise<{ code: number | undefined; reason: string } | undefined> {
    return this.waitFor((frames) => {
      const close = frames.find((f) => f.opcode === Opcode.Close);
      return close === undefined ? undefined : closeOf(close);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Sends `bytes` on a fresh connection; expects the server's close frame and 'close' to carry `err`'s code. */
async function expectFailure(t: TestServer, bytes: Buffer, code: WebSocketError['code'], closeCode: CloseCode): Promise<void> {
  const accepted = t.nextConnection();
  const client = await RawClient.open(t.port);
  const conn = await accepted;
  await client.send(bytes);
  const close = await client.closeFrame();
  expect(close, 'a close frame').to.deep.equal({ code: closeCode, reason: code });
  expect(await conn.closed).to.deep.equal([closeCode, '']);
  expect((conn.ws.error as WebSocketError).code).to.equal(code);
  await client.closed;
}

/** Bytes of ArrayBuffers the process holds now (Buffers live there, not on the V8 heap). */
function arrayBufferBytes(): number {
  return process.memoryUsage().arrayBuffers;
}
const MiB = 1024 * 1024;

describe('hostile peers over TCP', function () {
  this.timeout(20_000);
  let t: TestServer;

  before(async () => {
    t = await startServer();
  });
  after(async () => {
    await t.stop();
  });

  describe('random bytes after the handshake', () => {
    // Uniformly random bytes, and random payloads behind valid masked headers (so that the
    // UTF-8, close-payload and sequencing checks are reached too).
    const inputs = [
      ...fc.sample(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { seed: 7, numRuns: 15 }).map((b) => Buffer.from(b)),
      ...fc
        .sample(fc.tuple(fc.constantFrom(0x0, 0x1, 0x2, 0x8, 0x9, 0xa), fc.boolean(), fc.uint8Array({ maxLength: 125 })), { seed: 8, numRuns: 15 })
        .map(([opcode, fin, payload]) => clientFrame(opcode, Buffer.from(payload), { fin: fin || opcode >= 0x8 })),
    ];

    /** What the server's receiver makes of `bytes`: the same cores, run here as an oracle. */
    function predict(bytes: Buffer): { error: WebSocketError | null; closed: boolean } {
      let closed = false;
      const receiver = new Receiver('server', {}, {
        onMessage: () => undefined,
        onPing: () => undefined,
        onPong: () => undefined,
        onClose: () => {
          closed = true;
        },
        onReply: () => undefined,
      });
      return { error: receiver.write(Buffer.from(bytes)), closed };
    }

    inputs.forEach((bytes, i) => {
      it(`input ${i} (${bytes.length} bytes, ${bytes.subarray(0, 4).toString('hex')}...): a close frame with an RFC 6455 code, or 1006 at EOF`, async () => {
        const expected = predict(bytes);
        const accepted = t.nextConnection();
        const client = await RawClient.open(t.port);
        const conn = await accepted;
        await client.send(bytes);
        if (expected.error !== null) {
          const close = await client.closeFrame();
          expect(close?.code).to.satisfy((c: number) => isValidWireCloseCode(c));
          expect(close).to.deep.equal({ code: expected.error.closeCode, reason: expected.error.code });
          expect([CloseCode.ProtocolError, CloseCode.InvalidPayload, CloseCode.MessageTooBig]).to.include(close!.code);
          expect((await conn.closed)[0]).to.equal(expected.error.closeCode);
        } else if (expected.closed) {
          // The bytes held a valid close frame: it is echoed.
          expect((await client.closeFrame())?.code).to.satisfy((c: number | undefined) => c === undefined || isValidWireCloseCode(c));
        } else {
          // Valid so far, waiting for more: EOF ends it without a close handshake.
          client.socket.end();
          expect((await conn.closed)[0]).to.equal(CloseCode.Abnormal);
        }
        await client.closed;
      });
    });

    it('the server keeps serving a well-behaved client afterwards', async () => {
      const ws = connect(`ws://127.0.0.1:${t.port}/`);
      await once(ws, 'open');
      ws.send('still here');
      const [data] = (await once(ws, 'message')) as [string];
      expect(data).to.equal('still here');
      ws.close(1000);
      expect((await once(ws, 'close'))[0]).to.equal(1000);
    });
  });

  describe('truncated frames, then EOF', () => {
    const full = clientFrame(Opcode.Binary, Buffer.alloc(300, 7)); // 16-bit length: 2 + 2 + 4 + 300 bytes
    const long = clientFrame(Opcode.Binary, Buffer.alloc(70_000, 7)); // 64-bit length: 2 + 8 + 4 + 70000 bytes
    const cases: Array<[string, Buffer]> = [
      ['one header byte', full.subarray(0, 1)],
      ['inside the 16-bit length', full.subarray(0, 3)],
      ['inside the 64-bit length', long.subarray(0, 6)],
      ['inside the masking key', full.subarray(0, 6)],
      ['inside the payload', full.subarray(0, 100)],
      ['inside a large payload', long.subarray(0, 40_000)],
      ['a first fragment, then half a continuation', Buffer.concat([clientFrame(Opcode.Text, 'ab', { fin: false }), clientFrame(Opcode.Continuation, 'cd').subarray(0, 4)])],
      ['inside a close frame', clientClose(1000, 'bye').subarray(0, 8)],
    ];
    for (const [name, bytes] of cases) {
      it(`${name}: no crash, 'close' 1006, no close frame`, async () => {
        const accepted = t.nextConnection();
        const client = await RawClient.open(t.port);
        const conn = await accepted;
        await client.send(bytes);
        client.socket.end();
        expect(await conn.closed).to.deep.equal([CloseCode.Abnormal, '']);
        await client.closed;
        expect(client.frames.filter((f) => f.opcode === Opcode.Close)).to.have.length(0);
      });
    }
  });

  describe('declared lengths the server refuses, before allocating anything', () => {
    const header64 = (length: bigint): Buffer => wireFrame({ opcode: Opcode.Binary, length, lengthForm: 64 });
    const cases: Array<[string, Buffer, Array<[WebSocketError['code'], CloseCode]>]> = [
      // §5.2: "the most significant bit MUST be 0".
      ['2^63 bytes (most significant bit set)', header64(2n ** 63n), [['WS_ERR_INVALID_LENGTH', CloseCode.ProtocolError]]],
      ['2^64 - 1 bytes', header64(2n ** 64n - 1n), [['WS_ERR_INVALID_LENGTH', CloseCode.ProtocolError]]],
      // A legal length no implementation can hold: refused as too big (1009) or as a length a
      // number cannot hold exactly (1002); either way with nothing allocated.
      ['2^62 bytes', header64(2n ** 62n), [['WS_ERR_PAYLOAD_TOO_BIG', CloseCode.MessageTooBig]]],
      ['maxPayload + 1 bytes (default maxPayload, 100 MiB)', header64(BigInt(100 * MiB + 1)), [['WS_ERR_PAYLOAD_TOO_BIG', CloseCode.MessageTooBig]]],
    ];
    for (const [name, header, outcomes] of cases) {
      it(`${name}: ${outcomes.map(([, c]) => c).join(' or ')}, arrayBuffers do not grow`, async () => {
        const accepted = t.nextConnection();
        const client = await RawClient.open(t.port);
        const conn = await accepted;
        const before = arrayBufferBytes();
        // The header, then 256 KiB of would-be payload that must be ignored, not kept.
        await client.send(Buffer.concat([header, Buffer.alloc(256 * 1024, 0x61)]));
        const close = await client.closeFrame();
        const grown = arrayBufferBytes() - before;
        expect(outcomes.map(([code, closeCode]) => ({ code: closeCode, reason: code }))).to.deep.include(close);
        expect((await conn.closed)[0]).to.equal(close!.code);
        expect(grown, `arrayBuffers grew by ${grown} bytes`).to.be.below(16 * MiB);
        await client.closed;
      });
    }

    it('maxPayload itself is accepted and maxPayload + 1 refused with 1009 (maxPayload 1000)', async () => {
      const small = await startServer({ maxPayload: 1000 });
      try {
        const accepted = small.nextConnection();
        const client = await RawClient.open(small.port);
        await accepted;
        await client.send(clientFrame(Opcode.Binary, Buffer.alloc(1000, 1)));
        const echo = await client.waitFor((frames) => frames.find((f) => f.opcode === Opcode.Binary));
        expect(echo?.payload.length).to.equal(1000);
        client.socket.destroy();
        await expectFailure(small, clientFrame(Opcode.Binary, Buffer.alloc(1001, 1)), 'WS_ERR_PAYLOAD_TOO_BIG', CloseCode.MessageTooBig);
      } finally {
        await small.stop();
      }
    });
  });

  describe('fragment floods', () => {
    /** Sends a fragmented message's frames, `batch` at a time, until the server's close frame comes or `count` are sent. */
    async function flood(client: RawClient, count: number, payload: Buffer): Promise<number> {
      const first = clientFrame(Opcode.Binary, payload, { fin: false });
      const next = clientFrame(Opcode.Continuation, payload, { fin: false });
      const batch = 8192;
      const block = Buffer.concat(Array.from({ length: batch }, () => next));
      let sent = 0;
      let closed = false;
      void client.closeFrame().then(() => {
        closed = true;
      });
      await client.send(first);
      sent++;
      while (sent < count && !closed && !client.socket.destroyed) {
        const n = Math.min(batch, count - sent);
        await client.send(n === batch ? block : block.subarray(0, n * next.length));
        sent += n;
      }
      return sent;
    }

    for (const [name, payload, count] of [
      ['a million 1-byte fragments', Buffer.from('x'), 1_000_000],
      ['500k empty fragments', Buffer.alloc(0), 500_000],
    ] as const) {
      it(`${name}: 1009 once the frames' overhead (256 bytes each) passes maxMessageSize, bounded memory`, async () => {
        const accepted = t.nextConnection();
        const client = await RawClient.open(t.port);
        const conn = await accepted;
        const before = arrayBufferBytes();
        const sent = await flood(client, count, payload);
        const close = await client.closeFrame();
        const grown = arrayBufferBytes() - before;
        expect(sent).to.be.greaterThan(Math.floor(Defaults.maxMessageSize / (Defaults.frameOverhead + payload.length)));
        expect(close).to.deep.equal({ code: CloseCode.MessageTooBig, reason: 'WS_ERR_TOO_MANY_FRAGMENTS' });
        expect((await conn.closed)[0]).to.equal(CloseCode.MessageTooBig);
        expect(grown, `arrayBuffers grew by ${grown} bytes`).to.be.below(32 * MiB);
        await client.closed;
      });
    }

    /** 4 MiB in 65 536 fragments of 64 bytes (Autobahn 9.3.1 text, 9.4.1 binary), as client frames. */
    function tinyFragments(opcode: Opcode.Text | Opcode.Binary, count = 65536): { wire: Buffer; payload: Buffer } {
      const payload = Buffer.alloc(count * 64, 0x2a);
      const frames: Buffer[] = [];
      for (let at = 0; at < payload.length; at += 64) {
        frames.push(clientFrame(at === 0 ? opcode : Opcode.Continuation, payload.subarray(at, at + 64), { fin: at + 64 === payload.length }));
      }
      return { wire: Buffer.concat(frames), payload };
    }

    for (const [name, opcode, count] of [
      ['4 MiB text (Autobahn 9.3.1) in 65 536', Opcode.Text, 65536],
      ['4 MiB binary (Autobahn 9.4.1) in 65 536', Opcode.Binary, 65536],
      ['6.25 MiB binary in 102 400', Opcode.Binary, 102400],
    ] as const) {
      it(`${name} fragments of 64 bytes arrives whole with the default options (WebSocket)`, async () => {
        const { wire, payload } = tinyFragments(opcode, count);
        const accepted = t.nextConnection();
        const client = await RawClient.open(t.port);
        await accepted;
        await client.send(wire);
        const echo = await client.waitFor((frames) => frames.find((f) => f.opcode === opcode));
        expect(echo?.payload.equals(payload)).to.equal(true);
        client.socket.destroy();
        await client.closed;
      });
    }

    it('4 MiB in 65 536 fragments of 64 bytes arrives whole through the stages with their default options', async () => {
      const { wire, payload } = tinyFragments(Opcode.Binary);
      const assembler = new FragmentAssembler();
      Readable.from([wire], { objectMode: false }).pipe(new FrameSplitter()).pipe(new Unmasker({ role: 'server' })).pipe(assembler);
      const [message] = (await once(assembler, 'data')) as [Message];
      expect(message.binary).to.equal(true);
      expect(message.data.equals(payload)).to.equal(true);
    });

    it('exactly at maxFragments (100): a message of 100 frames is delivered; frame 101 of one fails with 1009', async () => {
      const small = await startServer({ maxFragments: 100 });
      try {
        const accepted = small.nextConnection();
        const client = await RawClient.open(small.port);
        const conn = await accepted;
        const frames = (n: number, fin: boolean): Buffer[] =>
          Array.from({ length: n }, (_, i) => clientFrame(i === 0 ? Opcode.Text : Opcode.Continuation, 'a', { fin: fin && i === n - 1 }));
        await client.send(Buffer.concat(frames(100, true)));
        const echo = await client.waitFor((fs) => fs.find((f) => f.opcode === Opcode.Text));
        expect(echo?.payload.toString()).to.equal('a'.repeat(100));
        // 100 frames of an unfinished message, then a ping: the pong proves all 100 were taken.
        await client.send(Buffer.concat([...frames(100, false), clientFrame(Opcode.Ping, 'p')]));
        const pong = await client.waitFor((fs) => fs.find((f) => f.opcode === Opcode.Pong));
        expect(pong?.payload.toString()).to.equal('p');
        await client.send(clientFrame(Opcode.Continuation, 'a', { fin: false }));
        expect(await client.closeFrame()).to.deep.equal({ code: CloseCode.MessageTooBig, reason: 'WS_ERR_TOO_MANY_FRAGMENTS' });
        expect((await conn.closed)[0]).to.equal(CloseCode.MessageTooBig);
      } finally {
        await small.stop();
      }
    });
  });

  describe('protocol violations: 1002 each', () => {
    const cases: Array<[string, Buffer, WebSocketError['code']]> = [
      ['a ping of 126 bytes', clientFrame(Opcode.Ping, Buffer.alloc(126)), 'WS_ERR_CONTROL_FRAME_TOO_LONG'],
      ['a close of 200 bytes', clientFrame(Opcode.Close, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.alloc(198, 0x61)])), 'WS_ERR_CONTROL_FRAME_TOO_LONG'],
      ['a pong with a 64-bit length', wireFrame({ opcode: Opcode.Pong, payload: 'x', lengthForm: 64 }), 'WS_ERR_CONTROL_FRAME_TOO_LONG'],
      ['a fragmented ping (FIN clear)', clientFrame(Opcode.Ping, 'ping', { fin: false }), 'WS_ERR_FRAGMENTED_CONTROL_FRAME'],
      ['a fragmented close (FIN clear)', clientFrame(Opcode.Close, Buffer.from([0x03, 0xe8]), { fin: false }), 'WS_ERR_FRAGMENTED_CONTROL_FRAME'],
      ['RSV1 on a text frame', clientFrame(Opcode.Text, 'x', { rsv1: true }), 'WS_ERR_UNEXPECTED_RSV'],
      ['RSV2 on a binary frame', clientFrame(Opcode.Binary, 'x', { rsv2: true }), 'WS_ERR_UNEXPECTED_RSV'],
      ['RSV3 on a continuation', Buffer.concat([clientFrame(Opcode.Text, 'x', { fin: false }), clientFrame(Opcode.Continuation, 'y', { rsv3: true })]), 'WS_ERR_UNEXPECTED_RSV'],
      ['RSV1 on a ping', clientFrame(Opcode.Ping, '', { rsv1: true }), 'WS_ERR_UNEXPECTED_RSV'],
      ['an unmasked frame from the client', clientFrame(Opcode.Text, 'x', { mask: null }), 'WS_ERR_EXPECTED_MASK'],
      ['a continuation with no message open', clientFrame(Opcode.Continuation, 'x'), 'WS_ERR_UNEXPECTED_CONTINUATION'],
      ['a new message inside a fragmented one', Buffer.concat([clientFrame(Opcode.Text, 'x', { fin: false }), clientFrame(Opcode.Binary, 'y')]), 'WS_ERR_EXPECTED_CONTINUATION'],
      ['a close with a 1-byte payload', clientFrame(Opcode.Close, Buffer.from([0x03])), 'WS_ERR_INVALID_CLOSE_PAYLOAD'],
      ['a close with code 1005', clientClose(1005), 'WS_ERR_INVALID_CLOSE_CODE'],
    ];
    for (const opcode of [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      cases.push([`reserved opcode 0x${opcode.toString(16)}`, clientFrame(opcode, 'x'), 'WS_ERR_INVALID_OPCODE']);
    }
    // After a valid message, so that a violation is also caught mid-connection.
    cases.push(['reserved opcode 0xb after a valid message', Buffer.concat([clientFrame(Opcode.Text, 'ok'), clientFrame(0xb, '')]), 'WS_ERR_INVALID_OPCODE']);
    for (const [name, bytes, code] of cases) {
      it(`${name}: close frame 1002 ${code}`, () => expectFailure(t, bytes, code, CloseCode.ProtocolError));
    }
  });

  describe('invalid UTF-8 in a fragmented text message: 1007 before the final fragment is sent', () => {
    const cases: Array<[string, Buffer[]]> = [
      ['0xff in the second fragment', [Buffer.from('hello '), Buffer.from([0x61, 0xff, 0x62])]],
      ['an overlong C0 80', [Buffer.from('hello '), Buffer.from([0xc0, 0x80])]],
      ['a surrogate ED A0 80', [Buffer.from('hello '), Buffer.from([0xed, 0xa0, 0x80])]],
      ['a code point over U+10FFFF', [Buffer.from('x'), Buffer.from([0xf4, 0x90, 0x80, 0x80])]],
      ['E0 ending one fragment, 80 starting the next (overlong)', [Buffer.from([0x61, 0xe0]), Buffer.from([0x80, 0x80])]],
      ['a 64 KiB fragment with one bad byte in its middle', [Buffer.from('a'), Buffer.concat([Buffer.alloc(32 * 1024, 0x61), Buffer.from([0xfe]), Buffer.alloc(32 * 1024, 0x61)])]],
    ];
    for (const [name, fragments] of cases) {
      it(name, async () => {
        const accepted = t.nextConnection();
        const client = await RawClient.open(t.port);
        const conn = await accepted;
        for (let i = 0; i < fragments.length; i++) {
          await client.send(clientFrame(i === 0 ? Opcode.Text : Opcode.Continuation, fragments[i]!, { fin: false }));
        }
        // The final fragment is never sent: the close must come without it.
        expect(await client.closeFrame()).to.deep.equal({ code: CloseCode.InvalidPayload, reason: 'WS_ERR_INVALID_UTF8' });
        expect((await conn.closed)[0]).to.equal(CloseCode.InvalidPayload);
        await client.closed;
      });
    }

    it('a character split across fragments is valid (RFC 6455 §5.6): echoed whole', async () => {
      const accepted = t.nextConnection();
      const client = await RawClient.open(t.port);
      await accepted;
      const text = Buffer.from('caf\u00e9 \u{1f600}');
      const parts = [text.subarray(0, 4), text.subarray(4, 8), text.subarray(8)]; // cuts inside é and inside the emoji
      for (let i = 0; i < parts.length; i++) {
        await client.send(clientFrame(i === 0 ? Opcode.Text : Opcode.Continuation, parts[i]!, { fin: i === parts.length - 1 }));
      }
      const echo = await client.waitFor((fs) => fs.find((f) => f.opcode === Opcode.Text));
      expect(echo?.payload.equals(text)).to.equal(true);
      expect(client.frames.some((f) => f.opcode === Opcode.Close)).to.equal(false);
      client.socket.destroy();
    });
  });

  describe('slowloris', () => {
    it('a client sending its request one byte per 100 ms is dropped at handshakeTimeout (500 ms)', async () => {
      const slow = await startServer({ handshakeTimeout: 500 });
      let rejected = 0;
      slow.server.on('rejected', () => rejected++);
      try {
        const request = upgradeRequest(`127.0.0.1:${slow.port}`);
        const socket = net.connect(slow.port, '127.0.0.1');
        socket.on('error', () => undefined);
        let received = 0;
        socket.on('data', (chunk: Buffer) => {
          received += chunk.length;
        });
        await once(socket, 'connect');
        let sent = 0;
        const timer = setInterval(() => {
          if (sent < request.length && !socket.destroyed) socket.write(request.subarray(sent, ++sent));
        }, 100);
        try {
          // The server may reset rather than close (a byte of ours can arrive as it hangs up).
          await closed(socket);
        } finally {
          clearInterval(timer);
        }
        // ~150 bytes at 10 a second would take 15 s; the server hung up long before.
        expect(sent).to.be.below(request.length);
        expect(received, 'no 101 (nor anything else) was answered').to.equal(0);
        expect(slow.server.clients.size).to.equal(0);
        expect(rejected).to.equal(0);
      } finally {
        await slow.stop();
      }
    });
  });

  describe('amplification', () => {
    // A client that sends pings and never reads makes the server queue a pong per ping: unless
    // the server stops reading once its outbound buffer is over its mark, the attacker grows the
    // server's memory without bound (measured before the fix: 178 MiB queued after 8 s).
    it('a ping flood from a client that never reads keeps the server\'s outbound buffer bounded', async () => {
      const httpServer = http.createServer();
      httpServer.listen(0, '127.0.0.1');
      await once(httpServer, 'listening');
      const server = createServer({ server: httpServer });
      let serverSocket: net.Socket | null = null;
      httpServer.on('upgrade', (_req: http.IncomingMessage, socket: net.Socket) => {
        serverSocket = socket;
      });
      let serverWs: WebSocket | null = null;
      server.on('connection', (ws: WebSocket) => {
        serverWs = ws;
      });
      const port = (httpServer.address() as net.AddressInfo).port;
      try {
        const client = await RawClient.open(port);
        client.socket.pause(); // never read: the pongs pile up on the server
        const ws = serverWs! as WebSocket;
        const socket = serverSocket! as net.Socket;
        const stopped = new Promise<'stopped'>((resolve) => {
          socket.once('pause', () => resolve('stopped'));
          ws.once('close', () => resolve('stopped'));
        });
        const block = Buffer.concat(Array.from({ length: 4096 }, () => clientFrame(Opcode.Ping, Buffer.alloc(125, 0x70))));
        const limit = 16 * MiB;
        let sent = 0;
        let outcome: 'sent' | 'stopped' = 'sent';
        while (sent < 4 * limit && outcome === 'sent') {
          outcome = await Promise.race([client.send(block).then(() => 'sent' as const), stopped]);
          sent += block.length;
          expect(ws.bufferedAmount, `after ${sent} bytes of pings`).to.be.below(limit);
        }
        expect(outcome, 'the server stopped reading or closed').to.equal('stopped');
        client.socket.destroy();
      } finally {
        server.close();
        httpServer.closeAllConnections();
        await new Promise((resolve) => httpServer.close(resolve));
      }
    });
  });

  describe('hostile opening handshakes', () => {
    it('a request head over maxHeaderSize is answered 431 and closed', async () => {
      const socket = net.connect(t.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      const hungUp = closed(socket);
      const filler = Array.from({ length: 100 }, (_, i) => `X-Filler-${i}: ${'a'.repeat(200)}\r\n`).join('');
      socket.write(`GET / HTTP/1.1\r\nHost: x\r\n${filler}`);
      await hungUp;
      expect(Buffer.concat(chunks).toString('latin1')).to.match(/^HTTP\/1\.1 431 /);
    });

    it('garbage instead of a request is answered 400 and closed', async () => {
      const socket = net.connect(t.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      const hungUp = closed(socket);
      socket.write(Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n', 'latin1'));
      await hungUp;
      expect(Buffer.concat(chunks).toString('latin1')).to.match(/^HTTP\/1\.1 400 /);
    });
  });

  describe('many hostile connections at once', () => {
    it('50 connections sending garbage do not disturb a well-behaved client echoing at the same time', async () => {
      const garbage = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 4000 }), { seed: 99, numRuns: 50 }).map((b) => Buffer.from(b));
      const good = connect(`ws://127.0.0.1:${t.port}/`);
      await once(good, 'open');
      const echoed: Array<string | Buffer> = [];
      good.on('message', (data: string | Buffer) => echoed.push(data));
      const sentMessages: Array<string | Buffer> = [];

      const hostile = garbage.map(async (bytes, i) => {
        const socket = net.connect(t.port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.resume();
        await once(socket, 'connect');
        if (i % 2 === 0) {
          // Garbage instead of an HTTP request.
          socket.end(bytes);
        } else {
          // A valid handshake, then garbage frames, then EOF.
          socket.write(Buffer.concat([upgradeRequest(`127.0.0.1:${t.port}`), bytes]));
          socket.end();
        }
        await closed(socket);
      });

      for (let i = 0; i < 200; i++) {
        const message = i % 2 === 0 ? `message ${i} \u{1f600}` : Buffer.from([i, i >> 8, 0xff, 0x00]);
        sentMessages.push(message);
        good.send(message);
        if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      await Promise.all(hostile);
      while (echoed.length < sentMessages.length) await once(good, 'message');
      expect(echoed).to.deep.equal(sentMessages);
      good.close(1000, 'done');
      expect((await once(good, 'close'))[0]).to.equal(1000);
    });
  });

  describe('the server-wide memory budget (serverMemoryBudget)', () => {
    /** The sum of what the server's connections hold now. */
    function held(server: WebSocketServer): number {
      let sum = 0;
      for (const ws of server.clients) sum += ws.heldBytes;
      return sum;
    }

    /** A canary's echo round trip works: `count` messages sent one at a time, each echoed. */
    async function canaryEchoes(canary: WebSocket, count: number): Promise<void> {
      for (let i = 0; i < count; i++) {
        canary.send(`ping ${i}`);
        const [data] = (await once(canary, 'data')) as [string];
        expect(data).to.equal(`ping ${i}`);
      }
    }

    it('8 slow readers of an echo server (each allowed 16 MiB): the sum stays near 8 MiB, the largest are held or cut with 1008, a canary keeps its echo', async function () {
      this.timeout(60_000);
      const budget = 8 * MiB;
      const small = await startServer({ serverMemoryBudget: budget });
      try {
        const canary = connect(`ws://127.0.0.1:${small.port}/`);
        await once(canary, 'open');
        const message = clientFrame(Opcode.Binary, Buffer.alloc(64 * 1024, 7));
        const attackers = await Promise.all(
          Array.from({ length: 8 }, async () => {
            const accepted = small.nextConnection();
            const client = await RawClient.open(small.port);
            const conn = await accepted;
            // Never reads again: the echoes pile up in the server.
            client.socket.pause();
            return { client, conn };
          }),
        );
        let peak = 0;
        const sample = setInterval(() => (peak = Math.max(peak, held(small.server))), 5);
        try {
          // Each sends 12 MiB of 64 KiB messages (bounded), without waiting: what the server does not read waits in TCP.
          for (let round = 0; round < 192; round++) {
            for (const { client } of attackers) client.socket.write(message);
            if (round % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
          }
          // The budget reacts: some attackers held, others cut; the canary is served meanwhile.
          await canaryEchoes(canary, 50);
          const deadline = Date.now() + 10_000;
          while (small.server.memoryBudget!.core.held === 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
          await canaryEchoes(canary, 50);
          peak = Math.max(peak, held(small.server));
        } finally {
          clearInterval(sample);
        }
        const core = small.server.memoryBudget!.core;
        expect(core.held + attackers.filter((a) => a.conn.ws.readyState !== ReadyState.OPEN).length, 'attackers held or cut').to.be.greaterThan(0);
        // Over the budget by at most what the connections still growing add before they are cut.
        expect(peak, `peak ${(peak / MiB).toFixed(1)} MiB held`).to.be.below(budget + 4 * MiB);
        for (const { conn } of attackers) {
          if (conn.ws.readyState !== ReadyState.OPEN) expect((conn.ws.error as WebSocketError).code).to.equal('WS_ERR_SERVER_MEMORY');
        }
        for (const { client } of attackers) client.socket.destroy();
        await Promise.all(attackers.map((a) => a.conn.closed));
        canary.close(1000);
        await once(canary, 'close');
        expect(core.total).to.equal(0);
        expect(core.held).to.equal(0);
      } finally {
        await small.stop();
      }
    });

    it('a compressed message inflating past the budget is cut with 1008 at once, its zlib freed; others keep working', async function () {
      this.timeout(60_000);
      const budget = 8 * MiB;
      const small = await startServer({ serverMemoryBudget: budget, perMessageDeflate: true });
      try {
        const canary = connect(`ws://127.0.0.1:${small.port}/`, { perMessageDeflate: true });
        await once(canary, 'open');
        const accepted = small.nextConnection();
        const bomber = connect(`ws://127.0.0.1:${small.port}/`, { perMessageDeflate: true });
        bomber.on('error', () => undefined);
        await once(bomber, 'open');
        const { ws, closed } = await accepted;
        let peak = 0;
        const sample = setInterval(() => (peak = Math.max(peak, ws.heldBytes)), 1);
        // 64 MiB of zeros: about 64 KiB on the wire, 64 MiB once inflated (under maxMessageSize).
        bomber.send(Buffer.alloc(64 * MiB));
        const [code] = await closed;
        clearInterval(sample);
        expect(code).to.equal(CloseCode.PolicyViolation);
        expect((ws.error as WebSocketError).code).to.equal('WS_ERR_SERVER_MEMORY');
        const inflater = (ws as unknown as { receiver: Receiver }).receiver.inflater;
        expect(inflater?.hasContext, 'zlib freed').to.equal(false);
        expect(peak, `peak ${(peak / MiB).toFixed(1)} MiB`).to.be.below(budget + 2 * MiB);
        await canaryEchoes(canary, 20);
        canary.close(1000);
        await once(canary, 'close');
      } finally {
        await small.stop();
      }
    });

    it('bombs whose senders leave at once: each is cut at maxMessageSize, its zlib freed and its socket closed; a compressed canary keeps its echo', async function () {
      this.timeout(60_000);
      const BOMBS = 4;
      const small = await startServer({ perMessageDeflate: true, maxMessageSize: 8 * MiB, serverMemoryBudget: Infinity });
      try {
        const canary = connect(`ws://127.0.0.1:${small.port}/`, { perMessageDeflate: true });
        await once(canary, 'open');
        const accepted: Array<Promise<{ ws: WebSocket; closed: Promise<[number, string]> }>> = [];
        const bombers: WebSocket[] = [];
        for (let i = 0; i < BOMBS; i++) {
          accepted.push(small.nextConnection());
          const bomber = connect(`ws://127.0.0.1:${small.port}/`, { perMessageDeflate: true });
          bomber.on('error', () => undefined);
          await once(bomber, 'open');
          bombers.push(bomber);
        }
        const conns = await Promise.all(accepted);
        // 32 MiB of zeros each (about 32 KiB on the wire, 4x the limit), and the sender leaves as soon as it is written.
        for (const bomber of bombers) bomber.send(Buffer.alloc(32 * MiB), () => bomber.terminate());
        // Meanwhile the canary's compressed messages are inflated too.
        await canaryEchoes(canary, 20);
        const codes = await Promise.all(conns.map((c) => c.closed.then(([code]) => code)));
        for (const [i, { ws }] of conns.entries()) {
          // 1009 when the peer was still there to be told, 1006 when its socket had gone first.
          expect([CloseCode.MessageTooBig, CloseCode.Abnormal], `bomb ${i}: ${codes[i]}`).to.include(codes[i]);
          const inflater = (ws as unknown as { receiver: Receiver | null }).receiver?.inflater;
          expect(inflater?.hasContext ?? false, `bomb ${i}: zlib freed`).to.equal(false);
        }
        expect(small.server.clients.size, 'only the canary is left').to.equal(1);
        await canaryEchoes(canary, 5);
        canary.close(1000);
        await once(canary, 'close');
      } finally {
        await small.stop();
      }
    });
  });
});
