/**
 * Interop with the `ws` library, both directions: our server with ws's client, ws's server with
 * our client. Sizes around every length-encoding boundary, fragmented messages, ping/pong,
 * close codes and reasons.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as net from 'node:net';
import { WebSocket as WsClient, WebSocketServer as WsServer } from 'ws';
import { connect, createServer, WebSocket, WebSocketServer } from '../lib';

const SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024];

function payload(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function text(size: number): string {
  // Multi-byte characters included; cut to exactly `size` bytes on a character boundary.
  const unit = 'aé€😀';
  let s = unit.repeat(Math.ceil(size / 10) + 1);
  while (Buffer.byteLength(s) > size) s = s.slice(0, Math.max(0, s.length - Math.max(1, Buffer.byteLength(s) - size)));
  return s.padEnd(s.length + (size - Buffer.byteLength(s)), 'z');
}

async function ourServer(options = {}): Promise<{ server: WebSocketServer; url: string }> {
  const server = createServer({ port: 0, host: '127.0.0.1', ...options });
  await once(server, 'listening');
  return { server, url: `ws://127.0.0.1:${server.address()!.port}` };
}

async function wsServer(): Promise<{ server: WsServer; url: string }> {
  const server = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await once(server, 'listening');
  return { server, url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
}

describe('interop with ws', function () {
  this.timeout(60000);

  describe('our server, ws client', () => {
    let server: WebSocketServer;
    let url: string;
    before(async () => {
      ({ server, url } = await ourServer());
      server.on('connection', (ws: WebSocket) => {
        ws.on('error', () => {});
        ws.pipe(ws);
      });
    });
    after((done) => {
      server.close(done);
    });

    for (const size of SIZES) {
      it(`echoes binary and text of ${size} bytes`, async () => {
        const client = new WsClient(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
        await once(client, 'open');
        const bin = payload(size, size);
        const txt = text(Math.min(size, 70000));
        const got: Array<[Buffer, boolean]> = [];
        const done = new Promise<void>((resolve) =>
          client.on('message', (data: Buffer, isBinary: boolean) => {
            got.push([data, isBinary]);
            if (got.length === 2) resolve();
          }),
        );
        client.send(bin);
        client.send(txt);
        await done;
        expect(got[0]![1]).to.equal(true);
        expect(got[0]![0].equals(bin)).to.equal(true);
        expect(got[1]![1]).to.equal(false);
        expect(got[1]![0].toString()).to.equal(txt);
        client.close(1000);
        await once(client, 'close');
      });
    }

    it('reassembles a fragmented message sent by ws', async () => {
      const client = new WsClient(url, { perMessageDeflate: false });
      await once(client, 'open');
      const ponged = once(client, 'pong');
      const received = once(client, 'message');
      client.send('Hel', { fin: false });
      client.ping('between');
      client.send('lo w', { fin: false });
      client.send('orld', { fin: true });
      const [pong] = (await ponged) as [Buffer];
      expect(pong.toString()).to.equal('between');
      const [msg] = (await received) as [Buffer];
      expect(msg.toString()).to.equal('Hello world');
      client.terminate();
    });

    it('passes close codes and reasons both ways', async () => {
      const serverSide = new Promise<[number, string]>((resolve) =>
        server.once('connection', (ws: WebSocket) => ws.once('close', (code: number, reason: string) => resolve([code, reason]))),
      );
      const client = new WsClient(url, { perMessageDeflate: false });
      await once(client, 'open');
      client.close(4001, 'custom reason é');
      // RFC 6455 §5.5.1: the echo carries the status code received.
      const [code] = (await once(client, 'close')) as [number, Buffer];
      expect(code).to.equal(4001);
      expect(await serverSide).to.deep.equal([4001, 'custom reason é']);
    });
  });

  describe('ws server, our client', () => {
    let server: WsServer;
    let url: string;
    before(async () => {
      ({ server, url } = await wsServer());
      server.on('connection', (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        ws.on('ping', (data) => ws.send(`ping:${data.toString()}`));
      });
    });
    after((done) => {
      for (const c of server.clients) c.terminate();
      server.close(() => done());
    });

    for (const size of SIZES) {
      it(`echoes binary and text of ${size} bytes`, async () => {
        const client = connect(url);
        await once(client, 'open');
        const bin = payload(size, size + 1);
        const txt = text(Math.min(size, 70000));
        const got: Array<[string | Buffer, boolean]> = [];
        const done = new Promise<void>((resolve) =>
          client.on('message', (data: string | Buffer, isBinary: boolean) => {
            got.push([data, isBinary]);
            if (got.length === 2) resolve();
          }),
        );
        client.send(bin);
        client.send(txt);
        await done;
        expect(got[0]![1]).to.equal(true);
        expect((got[0]![0] as Buffer).equals(bin)).to.equal(true);
        expect(got[1]).to.deep.equal([txt, false]);
        client.close(1000);
        expect(await once(client, 'close')).to.deep.equal([1000, '']);
      });
    }

    it('sends fragmented messages that ws reassembles', async () => {
      const client = connect(url, { fragmentSize: 7 });
      await once(client, 'open');
      const message = 'a message cut into 7-byte fragments';
      client.send(message);
      const [data] = (await once(client, 'message')) as [string];
      expect(data).to.equal(message);
      client.close();
      await once(client, 'close');
    });

    it('pings, and ws answers with a pong', async () => {
      const client = connect(url);
      await once(client, 'open');
      client.ping('abc');
      const [pong] = (await once(client, 'pong')) as [Buffer];
      expect(pong.toString()).to.equal('abc');
      client.close();
      await once(client, 'close');
    });

    it('receives the close code and reason chosen by the ws server', async () => {
      const client = connect(url);
      await once(client, 'open');
      const serverSide = [...server.clients].at(-1)!;
      serverSide.close(4321, 'server says bye');
      expect(await once(client, 'close')).to.deep.equal([4321, 'server says bye']);
    });
  });
});
