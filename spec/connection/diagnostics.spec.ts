/**
 * diagnostics_channel publication (lib/connection/diagnostics.ts): each channel's events and
 * payloads on real loopback connections, and nothing published (nor built) without subscribers.
 */
import { expect } from 'chai';
import * as dc from 'node:diagnostics_channel';
import { once } from 'node:events';
import * as net from 'node:net';
import { connect, createServer, Opcode, WebSocket, WebSocketServer } from '../../lib';
import type { Frame } from '../../lib';
import { channels } from '../../lib/connection/diagnostics';

type Payload = Record<string, unknown>;

/** Subscribes to `name` for one test; returns the payloads seen. */
function record(name: string, subscriptions: Array<() => void>): Payload[] {
  const seen: Payload[] = [];
  const listener = (message: unknown): void => {
    seen.push(message as Payload);
  };
  dc.subscribe(name, listener);
  subscriptions.push(() => dc.unsubscribe(name, listener));
  return seen;
}

function closed(ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
}

describe('diagnostics_channel (wspipe:*)', function () {
  this.timeout(10000);
  let wss: WebSocketServer;
  let port = 0;
  let serverSide: WebSocket[] = [];
  const subscriptions: Array<() => void> = [];

  beforeEach(async () => {
    serverSide = [];
    wss = createServer({ port: 0, host: '127.0.0.1', verifyClient: (req) => req.url !== '/refuse' });
    wss.on('connection', (ws) => {
      serverSide.push(ws);
      ws.on('error', () => {});
      ws.on('message', (data: string | Buffer) => ws.send(data));
    });
    await once(wss, 'listening');
    port = wss.address()!.port;
  });

  afterEach(async () => {
    for (const unsubscribe of subscriptions.splice(0)) unsubscribe();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });

  async function openClient(path = '/'): Promise<WebSocket> {
    const ws = connect(`ws://127.0.0.1:${port}${path}`);
    ws.on('error', () => {});
    await once(ws, 'open');
    return ws;
  }

  it('open: { websocket, role, address, protocol, extensions } for both ends', async () => {
    const opened = record('wspipe:websocket:open', subscriptions);
    const ws = await openClient();
    while (opened.length < 2) await once(wss, 'connection');
    const client = opened.find((one) => one.role === 'client')!;
    const server = opened.find((one) => one.role === 'server')!;
    expect(client.websocket).to.equal(ws);
    expect(server.websocket).to.equal(serverSide[0]);
    expect(client.address).to.deep.equal({ address: '127.0.0.1', family: 'IPv4', port });
    expect(client).to.include({ protocol: '', extensions: '' });
    ws.terminate();
  });

  it('close: { websocket, code, reason } as in the \'close\' events', async () => {
    const closes = record('wspipe:websocket:close', subscriptions);
    const ws = await openClient();
    const done = Promise.all([closed(ws), closed(serverSide[0]!)]);
    ws.close(4000, 'done here');
    const [clientClose, serverClose] = await done;
    expect(closes).to.have.length(2);
    const byWebSocket = new Map(closes.map((one) => [one.websocket, [one.code, one.reason]]));
    expect(byWebSocket.get(ws)).to.deep.equal(clientClose);
    expect(byWebSocket.get(serverSide[0]!)).to.deep.equal(serverClose);
    expect(serverClose).to.deep.equal([4000, 'done here']);
  });

  it('ping and pong: { websocket, payload } on the side that received them', async () => {
    const pings = record('wspipe:websocket:ping', subscriptions);
    const pongs = record('wspipe:websocket:pong', subscriptions);
    const ws = await openClient();
    const pong = once(ws, 'pong');
    ws.ping(Buffer.from('are you there'));
    await pong;
    expect(pings).to.deep.equal([{ websocket: serverSide[0], payload: Buffer.from('are you there') }]);
    expect(pongs).to.deep.equal([{ websocket: ws, payload: Buffer.from('are you there') }]);
    ws.terminate();
  });

  it('error: { websocket, error } for a protocol error (an unmasked frame from a client: 1002)', async () => {
    const errors = record('wspipe:websocket:error', subscriptions);
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    await once(wss, 'connection');
    const done = closed(serverSide[0]!);
    socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
    socket.resume();
    expect((await done)[0]).to.equal(1002);
    expect(errors).to.have.length(1);
    expect(errors[0]!.websocket).to.equal(serverSide[0]);
    expect((errors[0]!.error as { code: string }).code).to.equal('WS_ERR_EXPECTED_MASK');
    socket.destroy();
  });

  it('handshake rejected: the server\'s { side, error, request, status } and the client\'s { side, error, websocket }', async () => {
    const rejected = record('wspipe:handshake:rejected', subscriptions);
    const ws = connect(`ws://127.0.0.1:${port}/refuse`);
    ws.on('error', () => {});
    await closed(ws);
    const server = rejected.find((one) => one.side === 'server')!;
    const client = rejected.find((one) => one.side === 'client')!;
    expect(server.status).to.equal(401);
    expect((server.request as { url: string }).url).to.equal('/refuse');
    expect((server.error as { code: string }).code).to.equal('WS_ERR_HANDSHAKE_REJECTED');
    expect(client.websocket).to.equal(ws);
    expect((client.error as { message: string }).message).to.contain('401');
  });

  it('message (opt-in): { websocket, data, binary } for whole messages received', async () => {
    const messages = record('wspipe:websocket:message', subscriptions);
    const ws = await openClient();
    const echo = once(ws, 'message');
    ws.send('text one');
    await echo;
    const binaryEcho = once(ws, 'message');
    ws.send(Buffer.from([1, 2]));
    await binaryEcho;
    expect(messages.map((one) => [one.websocket === ws ? 'client' : 'server', one.data, one.binary])).to.deep.equal([
      ['server', 'text one', false],
      ['client', 'text one', false],
      ['server', Buffer.from([1, 2]), true],
      ['client', Buffer.from([1, 2]), true],
    ]);
    ws.terminate();
  });

  it('frame (opt-in): every frame both ways, unmasked, on connections opened while subscribed', async () => {
    const frames = record('wspipe:websocket:frame', subscriptions);
    const ws = await openClient();
    const echo = once(ws, 'message');
    ws.send('hi');
    await echo;
    const done = closed(ws);
    ws.close(1000);
    await done;
    const clientView = frames.filter((one) => one.websocket === ws).map((one) => `${String(one.direction)} ${Opcode[(one.frame as Frame).opcode]}`);
    expect(clientView).to.deep.equal(['out Text', 'in Text', 'out Close', 'in Close']);
    const serverIn = frames.find((one) => one.websocket === serverSide[0] && one.direction === 'in')!;
    expect((serverIn.frame as Frame).payload.toString()).to.equal('hi');
  });

  it('frame: a connection opened before the subscription is not hooked (cheap when nobody listened at open)', async () => {
    const ws = await openClient();
    const frames = record('wspipe:websocket:frame', subscriptions);
    const echo = once(ws, 'message');
    ws.send('unseen');
    await echo;
    expect(frames).to.deep.equal([]);
    ws.terminate();
  });

  it('publishes nothing, and builds no payload, when nobody subscribes', async () => {
    const published: string[] = [];
    const originals = new Map<string, (message: unknown) => void>();
    for (const [name, channel] of Object.entries(channels)) {
      originals.set(name, channel.publish.bind(channel));
      channel.publish = (): void => {
        published.push(name);
      };
    }
    try {
      const ws = await openClient();
      ws.ping();
      const echo = once(ws, 'message');
      ws.send('quiet');
      await echo;
      const done = closed(ws);
      ws.close();
      await done;
      const refused = connect(`ws://127.0.0.1:${port}/refuse`);
      refused.on('error', () => {});
      await closed(refused);
    } finally {
      for (const [name, channel] of Object.entries(channels)) channel.publish = originals.get(name)!;
    }
    expect(published).to.deep.equal([]);
  });
});
