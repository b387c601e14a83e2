/**
 * Decompression bombs on the connection side, over real TCP (127.0.0.1): a raw client
 * negotiates permessage-deflate by hand, sends one small frame that inflates to far more than
 * the server keeps, and leaves at once (FIN, or a reset). While its frames are being inflated
 * the server reads ahead a bounded amount, so it sees the peer leave: the inflation stops there,
 * its zlib context and the inflated part are freed, and 'close' (1006) comes long before
 * maxMessageSize could have been inflated.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { constants as zlibConstants, createDeflateRaw, deflateRawSync } from 'node:zlib';
import { expect } from 'chai';
import { CloseCode } from '../../lib/protocol/constants';
import type { Receiver } from '../../lib/connection/receiver';
import { type Transport, WebSocket } from '../../lib/connection/websocket';
import { type WebSocketServer, createServer } from '../../lib/server/server';
import { clientClose, clientFrame, decodeFrames, wireFrame } from '../helpers/frames';
import { NullTransport } from '../helpers/transports';

const MiB = 1024 * 1024;

/**
 * `mebibytes` MiB of zeros, DEFLATEd, without the trailer (RFC 7692 §7.2.1): once zlib's window
 * is full of zeros each further MiB compresses to the same ~1 KB, so the bomb is the first MiB's
 * output plus copies of the second's.
 */
async function bomb(mebibytes: number): Promise<Buffer> {
  const deflate = createDeflateRaw({ level: 9 });
  const parts: Buffer[] = [];
  let current: Buffer[] = [];
  deflate.on('data', (chunk: Buffer) => current.push(chunk));
  for (let i = 0; i < 2; i++) {
    deflate.write(Buffer.alloc(MiB));
    await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
    parts.push(Buffer.concat(current));
    current = [];
  }
  deflate.destroy();
  const body = Buffer.concat([parts[0]!, ...Array.from({ length: mebibytes - 1 }, () => parts[1]!)]);
  return body.subarray(0, body.length - 4);
}

/** A raw client with permessage-deflate negotiated; resolves once the 101 has been read. */
async function deflateClient(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  socket.write(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n',
  );
  let head = '';
  while (!head.includes('\r\n\r\n')) head += ((await once(socket, 'data')) as [Buffer])[0].toString('latin1');
  expect(head).to.match(/^HTTP\/1\.1 101 /);
  expect(head).to.match(/Sec-WebSocket-Extensions: permessage-deflate\r\n/i);
  return socket;
}

interface Watched {
  ws: WebSocket;
  /** The most the connection held while inflating (sampled at every inflated chunk). */
  peak: () => number;
  closed: Promise<number>;
}

/** The server's next connection, with what it holds sampled at every inflated chunk. */
function nextConnection(server: WebSocketServer): Promise<Watched> {
  return new Promise((resolve) =>
    server.once('connection', (ws: WebSocket) => {
      ws.on('error', () => undefined);
      let peak = 0;
      const hooked = ws as unknown as { onInflatedFrame(): void };
      const original = hooked.onInflatedFrame.bind(ws);
      hooked.onInflatedFrame = () => {
        peak = Math.max(peak, ws.heldBytes);
        original();
      };
      const closed = new Promise<number>((done) => ws.once('close', (code: number) => done(code)));
      resolve({ ws, peak: () => peak, closed });
    }),
  );
}

/** A transport fed by hand that keeps what is written to it and whether it is read. */
class FedTransport extends NullTransport {
  readonly written: Buffer[] = [];
  reading = true;
  override write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean {
    this.written.push(Buffer.from(chunk));
    callback?.();
    return true;
  }
  override pause(): this {
    this.reading = false;
    return this;
  }
  override resume(): this {
    this.reading = true;
    return this;
  }
}

/** A server connection with permessage-deflate negotiated, on a transport fed by hand. */
function inflatingConnection(options: ConstructorParameters<typeof WebSocket>[1] = {}): { ws: WebSocket; transport: FedTransport } {
  const transport = new FedTransport();
  const ws = new WebSocket('server', options);
  ws.attach(transport as unknown as Transport, null, {
    protocol: '',
    extensions: 'permessage-deflate',
    deflate: { sides: { inflate: { windowBits: 15, noContextTakeover: false }, deflate: null }, options: {} },
  });
  return { ws, transport };
}

/** A compressed message of `bytes` zeros, as one masked wire frame (RFC 7692 §7.2.1: trailer removed). */
function compressedFrame(bytes: number): Buffer {
  const body = deflateRawSync(Buffer.alloc(bytes), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
  return wireFrame({ opcode: 0x2, payload: body.subarray(0, body.length - 4), rsv1: true });
}

describe('reading ahead while a message is being inflated', () => {
  it('what comes meanwhile is kept aside, counted, and parsed once the message is through, in order; a ping among it is answered', async () => {
    const { ws, transport } = inflatingConnection();
    const messages: Array<string | number> = [];
    ws.on('message', (data: Buffer | string) => messages.push(typeof data === 'string' ? data : data.length));
    transport.emit('data', compressedFrame(8 * MiB));
    // zlib works in the thread pool: nothing of it can be through yet.
    expect(ws.core.readingAhead).to.equal(true);
    const behind = Buffer.concat([clientFrame(0x1, 'one'), clientFrame(0x9, 'are you there'), clientFrame(0x1, 'two')]);
    transport.emit('data', behind);
    expect(transport.reading, 'still reading').to.equal(true);
    expect(ws.core.aheadBytes).to.equal(behind.length);
    expect(ws.heldBytes).to.be.at.least(behind.length);
    expect(messages).to.deep.equal([]);
    while (messages.length < 3) await once(ws, 'message');
    expect(messages).to.deep.equal([8 * MiB, 'one', 'two']);
    expect(ws.core.aheadBytes).to.equal(0);
    expect(ws.core.readingAhead).to.equal(false);
    const sent = decodeFrames(Buffer.concat(transport.written)).frames;
    expect(sent.map((f) => [f.opcode, f.payload.toString()])).to.deep.equal([[0xa, 'are you there']]);
    ws.terminate();
  });

  it('reading stops once 1 MiB is kept aside, and goes on once the message is through', async () => {
    const { ws, transport } = inflatingConnection();
    let count = 0;
    ws.on('message', () => count++);
    transport.emit('data', compressedFrame(8 * MiB));
    const small = clientFrame(0x2, Buffer.alloc(64 * 1024 - 8));
    for (let i = 0; i < 16; i++) transport.emit('data', small);
    expect(ws.core.aheadBytes).to.equal(16 * small.length);
    expect(transport.reading, 'held: 1 MiB read ahead').to.equal(false);
    while (count < 17) await once(ws, 'message');
    // Parsing the 1 MiB kept aside ended the connection's turn (TURN_BYTES): reading goes on at the next.
    await new Promise((resolve) => setImmediate(resolve));
    expect(transport.reading).to.equal(true);
    expect(ws.core.aheadBytes).to.equal(0);
    ws.terminate();
  });

  it('the peer leaving without a close drops what was kept aside and stops the inflation: zlib freed, nothing delivered, nothing reported', async () => {
    const { ws, transport } = inflatingConnection();
    const messages: unknown[] = [];
    const errors: unknown[] = [];
    ws.on('message', (m) => messages.push(m));
    ws.on('error', (e) => errors.push(e));
    transport.emit('data', compressedFrame(8 * MiB));
    transport.emit('data', clientFrame(0x1, 'behind'));
    transport.emit('end');
    expect(ws.core.aheadBytes).to.equal(0);
    expect(ws.core.readingAhead).to.equal(false);
    const receiver = (ws as unknown as { receiver: Receiver }).receiver;
    expect(receiver.inflater!.hasContext).to.equal(false);
    expect(receiver.assembler.heldBytes).to.equal(0);
    const closing = once(ws, 'close');
    transport.emit('close');
    expect((await closing)[0]).to.equal(CloseCode.Abnormal);
    expect(messages).to.deep.equal([]);
    expect(errors).to.deep.equal([]);
  });
  it("a peer that closed properly before leaving (its close frame behind what is being inflated) has its messages delivered, then 'close' with its code", async () => {
    const { ws, transport } = inflatingConnection();
    const messages: Array<string | number> = [];
    ws.on('message', (data: Buffer | string) => messages.push(typeof data === 'string' ? data : data.length));
    transport.emit('data', compressedFrame(8 * MiB));
    transport.emit('data', Buffer.concat([clientFrame(0x1, 'last'), clientClose(CloseCode.Normal, 'bye')]));
    transport.emit('end');
    const closing = once(ws, 'close');
    transport.emit('close');
    expect(await closing).to.deep.equal([CloseCode.Normal, 'bye']);
    expect(messages).to.deep.equal([8 * MiB, 'last']);
  });
});

describe('decompression bombs whose sender leaves (connection side)', function () {
  this.timeout(60_000);
  let server: WebSocketServer;
  let payload: Buffer;

  before(async () => {
    // 512 MiB inflated from about 530 KB; the server keeps up to 256 MiB of one message.
    payload = await bomb(512);
    server = createServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true, maxPayload: 256 * MiB, maxMessageSize: 256 * MiB, serverMemoryBudget: Infinity });
    await once(server, 'listening');
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  for (const [how, leave] of [
    ['FIN', (socket: net.Socket) => socket.end()],
    ['a reset', (socket: net.Socket) => socket.resetAndDestroy()],
  ] as const) {
    it(`a sender that leaves with ${how} right behind its bomb: inflation stops there, zlib and the inflated part freed, 'close' 1006`, async () => {
      const accepted = nextConnection(server);
      const socket = await deflateClient(server.address()!.port);
      const { ws, peak, closed } = await accepted;
      socket.write(wireFrame({ opcode: 0x2, payload, rsv1: true }), () => leave(socket));
      const code = await closed;
      // Inflating up to maxMessageSize (256 MiB) would have ended in 1009; the peer's leaving was seen first.
      expect(code).to.equal(CloseCode.Abnormal);
      expect(peak(), `held at most ${(peak() / MiB).toFixed(1)} MiB while inflating`).to.be.below(64 * MiB);
      const receiver = (ws as unknown as { receiver: Receiver | null }).receiver;
      expect(receiver?.inflater?.hasContext ?? false, 'zlib freed').to.equal(false);
      expect(receiver?.assembler.heldBytes ?? 0, 'inflated part freed').to.equal(0);
      expect(ws.heldBytes).to.equal(0);
      expect(server.clients.size).to.equal(0);
    });
  }
});

describe('decompression bombs on many connections at once: the server-wide budget', function () {
  this.timeout(60_000);

  it('4 bombs that stay, each allowed 256 MiB: what they inflate counts in serverMemoryBudget (32 MiB); each is cut with 1008, the sum never far over it', async () => {
    const budget = 32 * MiB;
    const server = createServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true, maxPayload: 256 * MiB, maxMessageSize: 256 * MiB, serverMemoryBudget: budget });
    await once(server, 'listening');
    try {
      const payload = await bomb(512);
      let peak = 0;
      const conns: Watched[] = [];
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 4; i++) {
        const accepted = nextConnection(server);
        sockets.push(await deflateClient(server.address()!.port));
        const conn = await accepted;
        // The sum over the server's connections, at every inflated chunk of any of them.
        const hooked = conn.ws as unknown as { onInflatedFrame(): void };
        const own = hooked.onInflatedFrame;
        hooked.onInflatedFrame = () => {
          let sum = 0;
          for (const ws of server.clients) sum += ws.heldBytes;
          peak = Math.max(peak, sum);
          own();
        };
        conns.push(conn);
      }
      const frame = wireFrame({ opcode: 0x2, payload, rsv1: true });
      for (const socket of sockets) socket.write(frame);
      const codes = await Promise.all(conns.map((c) => c.closed));
      expect(codes).to.deep.equal([CloseCode.PolicyViolation, CloseCode.PolicyViolation, CloseCode.PolicyViolation, CloseCode.PolicyViolation]);
      for (const { ws } of conns) expect((ws.error as { code?: string }).code).to.equal('WS_ERR_SERVER_MEMORY');
      expect(peak, `peak ${(peak / MiB).toFixed(1)} MiB held by the server`).to.be.below(budget + MiB);
      expect(server.memoryBudget!.core.total).to.equal(0);
      for (const socket of sockets) socket.destroy();
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("a bomb cut by the server-wide budget while the budget held its reading: the peer's leaving is still read, not waited out (closeTimeout)", async () => {
    const budget = 8 * MiB;
    const server = createServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true, maxPayload: 256 * MiB, maxMessageSize: 256 * MiB, serverMemoryBudget: budget, closeTimeout: 10_000 });
    await once(server, 'listening');
    try {
      const payload = await bomb(512);
      const accepted = nextConnection(server);
      const socket = await deflateClient(server.address()!.port);
      const { ws, closed } = await accepted;
      let held = false;
      let timedOut = false;
      const hooked = ws as unknown as { holdForServer(hold: boolean): void; destroyTransport(): void };
      const own = hooked.holdForServer.bind(ws);
      hooked.holdForServer = (hold) => {
        held ||= hold;
        own(hold);
      };
      const destroy = hooked.destroyTransport.bind(ws);
      hooked.destroyTransport = () => {
        timedOut = true;
        destroy();
      };
      let received = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
      socket.write(wireFrame({ opcode: 0x2, payload, rsv1: true }));
      // The server's close (1008); the peer answers it and leaves.
      while (!decodeFrames(received).frames.some((f) => f.opcode === 0x8)) await once(socket, 'data');
      const close = decodeFrames(received).frames.find((f) => f.opcode === 0x8)!;
      expect(close.payload.readUInt16BE(0)).to.equal(CloseCode.PolicyViolation);
      socket.end(clientClose(CloseCode.PolicyViolation));
      expect(await closed).to.equal(CloseCode.PolicyViolation);
      expect(held, 'the budget held it (over 3/4) before cutting it').to.equal(true);
      expect(timedOut, 'destroyed at closeTimeout').to.equal(false);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
