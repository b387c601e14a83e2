/**
 * One memory budget per connection (WebSocketOptions.memoryBudget): unread received data,
 * fragments being assembled and unsent data count against it; at the budget the connection stops
 * reading, so TCP slows the peer down, and nothing is lost or reordered.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { connect, createServer, MessageReadable, WebSocket, WebSocketServer } from '../lib';

const KiB = 1024;
const MiB = 1024 * KiB;

async function serverAndUrl(options = {}): Promise<{ server: WebSocketServer; url: string }> {
  const server = createServer({ port: 0, host: '127.0.0.1', ...options });
  await once(server, 'listening');
  return { server, url: `ws://127.0.0.1:${server.address()!.port}` };
}

/** Message `i` of `size` bytes: its index in the first 4 bytes, so order and identity show. */
function numbered(i: number, size: number): Buffer {
  const data = Buffer.alloc(size, i & 0xff);
  data.writeUInt32LE(i, 0);
  return data;
}

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends messages 0..count-1 honouring send()'s backpressure; resolves once all are handed over. */
async function sendAll(ws: WebSocket, count: number, size: number, onHeld?: () => void): Promise<void> {
  for (let i = 0; i < count; i++) {
    if (!ws.send(numbered(i, size))) {
      onHeld?.();
      await once(ws, 'drain');
    }
  }
}

describe('memory budget per connection', function () {
  this.timeout(60000);

  let server: WebSocketServer;
  let url: string;
  const clients: WebSocket[] = [];
  afterEach((done) => {
    for (const c of clients.splice(0)) c.terminate();
    server.close(() => done());
  });

  /** A server with `options` and one open connection: our client and the server's side of it. */
  async function connected(options: object): Promise<{ client: WebSocket; peer: WebSocket }> {
    ({ server, url } = await serverAndUrl(options));
    const accepted = once(server, 'connection') as Promise<[WebSocket]>;
    const client = connect(url);
    clients.push(client);
    await once(client, 'open');
    const [peer] = await accepted;
    return { client, peer };
  }

  it('stops reading at the budget while the application does not read, then delivers every message in order', async () => {
    const budget = 4 * MiB;
    const size = 256 * KiB;
    const count = 96; // 24 MiB, six budgets
    const { client, peer } = await connected({ memoryBudget: budget, readableHighWaterMark: 10_000 });
    // The server's application reads nothing for a while: no 'message' listener, paused.
    let maxHeld = 0;
    // unref: a failing expect before clearInterval must not keep mocha from exiting.
    const sampler = setInterval(() => (maxHeld = Math.max(maxHeld, peer.heldBytes)), 5).unref();
    let senderHeld = 0;
    const sending = sendAll(client, count, size, () => senderHeld++);
    await wait(800);
    const heldWhilePaused = peer.heldBytes;
    expect(senderHeld, 'the sender was held back (send() returned false)').to.be.above(0);
    expect(peer.readableLength, 'messages buffered unread').to.be.below(count);
    // At most the budget plus what one socket read can bring (64 KiB chunks) and one message.
    expect(heldWhilePaused).to.be.at.least(budget - size);
    expect(maxHeld).to.be.at.most(budget + size + 64 * KiB);
    // Now it reads: everything arrives, in order, and the sender finishes.
    const got: number[] = [];
    peer.on('message', (data: Buffer) => {
      expect(data.length).to.equal(size);
      got.push(data.readUInt32LE(0));
    });
    await sending;
    while (got.length < count) await once(peer, 'message');
    clearInterval(sampler);
    expect(got).to.deep.equal([...Array(count).keys()]);
    expect(peer.heldBytes).to.equal(0);
    expect(maxHeld).to.be.at.most(budget + size + 64 * KiB);
  });

  it('an echo server whose peer does not read slows that peer down instead of queueing without end', async () => {
    const budget = 2 * MiB;
    const size = 64 * KiB;
    const count = 400; // 25 MiB each way
    ({ server, url } = await serverAndUrl({ memoryBudget: budget }));
    server.on('connection', (ws: WebSocket) => {
      // A naive echo: ignores send()'s return value. The budget still holds its memory.
      ws.on('message', (data: Buffer) => ws.send(data));
    });
    const [peerReady] = [once(server, 'connection') as Promise<[WebSocket]>];
    const client = connect(url);
    clients.push(client);
    await once(client, 'open');
    const [peer] = await peerReady;
    // The client does not read its echoes for a while: no 'message' listener, and paused.
    client.pause();
    let maxServerHeld = 0;
    const sampler = setInterval(() => (maxServerHeld = Math.max(maxServerHeld, peer.heldBytes)), 5).unref();
    const sending = sendAll(client, count, size);
    await wait(1000);
    // The server stopped reading once its unsent echoes reached the budget: the client's sends wait.
    expect(client.bufferedAmount + client.readableLength * size, 'client side holds the rest').to.be.above(0);
    const echoedSoFar = peer.heldBytes;
    expect(echoedSoFar).to.be.at.most(budget + 2 * size + 64 * KiB);
    const got: number[] = [];
    client.on('message', (data: Buffer) => got.push(data.readUInt32LE(0)));
    client.resume();
    await sending;
    while (got.length < count) await once(client, 'message');
    clearInterval(sampler);
    expect(got).to.deep.equal([...Array(count).keys()]);
    // The server's queue never grew far past its budget (a few socket reads of echoes at most).
    expect(maxServerHeld).to.be.at.most(budget + 4 * size + 256 * KiB);
  });

  it('still delivers a whole message larger than the budget (reading never waits for the message being assembled alone)', async () => {
    ({ server, url } = await serverAndUrl({ memoryBudget: 1 * MiB }));
    const received = new Promise<Buffer>((resolve) => server.on('connection', (ws: WebSocket) => ws.once('message', resolve)));
    const client = connect(url);
    clients.push(client);
    await once(client, 'open');
    const big = numbered(7, 5 * MiB);
    client.send(big);
    expect((await received).equals(big)).to.equal(true);
  });

  it('counts streamed messages the application has not read, and gets the bytes back when they are read or destroyed', async () => {
    const { client, peer } = await connected({ memoryBudget: 1 * MiB, streamMessages: true });
    const streams: MessageReadable[] = [];
    peer.on('message', (m: MessageReadable) => streams.push(m));
    client.send(numbered(1, 40 * KiB));
    client.send(numbered(2, 40 * KiB));
    while (streams.length < 2 || peer.heldBytes < 80 * KiB) await wait(10);
    expect(peer.heldBytes).to.equal(80 * KiB);
    streams[0]!.destroy();
    expect(peer.heldBytes).to.equal(40 * KiB);
    const chunks: Buffer[] = [];
    for await (const chunk of streams[1]!) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(numbered(2, 40 * KiB))).to.equal(true);
    expect(peer.heldBytes).to.equal(0);
  });

  it('does not take a peer for dead while we are the ones not reading (heartbeat)', async () => {
    const { client, peer } = await connected({ memoryBudget: 256 * KiB, heartbeat: { interval: 40, timeout: 80 } });
    const errors: Error[] = [];
    peer.on('error', (err: Error) => errors.push(err));
    // 1 MiB unread on the server: reading stops, so the client's pongs wait in the socket.
    for (let i = 0; i < 16; i++) client.send(numbered(i, 64 * KiB));
    await wait(600);
    expect(errors).to.deep.equal([]);
    expect(peer.readyState).to.equal(WebSocket.OPEN);
    const got: number[] = [];
    peer.on('message', (data: Buffer) => got.push(data.readUInt32LE(0)));
    while (got.length < 16) await once(peer, 'message');
    expect(got).to.deep.equal([...Array(16).keys()]);
  });
});
