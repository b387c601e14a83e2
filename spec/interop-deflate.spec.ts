/**
 * permessage-deflate (RFC 7692) between our server/client and the `ws` library, both ways, for
 * every combination of the four parameters: text and binary, small and 16 MiB messages,
 * fragmented messages, and a check on the wire that compression really happened. Plus the
 * connection-level behaviour: a decompression bomb sent to our server, the default (off) on our
 * server, and a clean fallback when the window asked for cannot be honoured.
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { constants as zlibConstants, createDeflateRaw } from 'node:zlib';
import { WebSocket as WsClient, WebSocketServer as WsServer, type PerMessageDeflateOptions as WsDeflateOptions } from 'ws';
import { CloseCode, connect, createServer, WebSocket, WebSocketServer } from '../lib';
import type { PerMessageDeflateOptions } from '../lib/deflate/permessage-deflate';
import { decodeFrames, wireFrame } from './helpers/frames';
import { closed as whenClosed } from './helpers/sockets';

const MIB = 1024 * 1024;

interface Combo {
  name: string;
  options: PerMessageDeflateOptions;
  /** The response the server must give to a ws client's default offer (with these options on the server). */
  response: string;
}

const COMBOS: Combo[] = [
  { name: 'defaults (context takeover both ways)', options: {}, response: 'permessage-deflate' },
  { name: 'server_no_context_takeover', options: { serverNoContextTakeover: true }, response: 'permessage-deflate; server_no_context_takeover' },
  { name: 'client_no_context_takeover', options: { clientNoContextTakeover: true }, response: 'permessage-deflate; client_no_context_takeover' },
  {
    name: 'both no_context_takeover',
    options: { serverNoContextTakeover: true, clientNoContextTakeover: true },
    response: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
  },
  { name: 'server_max_window_bits=10', options: { serverMaxWindowBits: 10 }, response: 'permessage-deflate; server_max_window_bits=10' },
  { name: 'client_max_window_bits=9', options: { clientMaxWindowBits: 9 }, response: 'permessage-deflate; client_max_window_bits=9' },
  {
    name: 'all four: windows 9/11, no context takeover',
    options: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 11 },
    response: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11',
  },
];

/** JSON-like text: compressible, as real traffic is. */
function json(size: number, seed = 0): string {
  let s = '';
  for (let i = 0; s.length < size; i++) s += `{"id":${i + seed},"name":"user ${(i * 7) % 101}","tags":["a","b${i % 13}"]},`;
  return s.slice(0, size);
}

type Sent = string | Buffer;

/** A Sec-WebSocket-Extensions value as its sorted parts, to compare answers whatever their order. */
function sortedParams(header: string): string[] {
  return header.split(';').map((part) => part.trim()).sort();
}

/** The messages each echo test sends: text and binary, small and large. */
function messages(big: boolean): Sent[] {
  const out: Sent[] = ['', 'Hello', json(125), json(5000, 1), randomBytes(3000), Buffer.alloc(70_000, 7), json(65_536, 2)];
  if (big) out.push(json(16 * MIB, 3), randomBytes(16 * MIB));
  return out;
}

/** Sends `list` (one by one, waiting for each echo) and checks each echo; returns nothing or throws. */
async function echoOurClient(ws: WebSocket, list: Sent[]): Promise<void> {
  const received: Array<string | Buffer> = [];
  ws.on('message', (data: string | Buffer) => received.push(data));
  for (const m of list) {
    const before = received.length;
    ws.send(m);
    while (received.length === before) await once(ws, 'message');
    expect(received[before], `echo of a ${m.length}-byte ${typeof m === 'string' ? 'text' : 'binary'} message`).to.deep.equal(m);
  }
}

async function echoWsClient(ws: WsClient, list: Sent[]): Promise<void> {
  for (const m of list) {
    const reply = once(ws, 'message') as Promise<[Buffer, boolean]>;
    ws.send(m);
    const [data, isBinary] = await reply;
    expect(isBinary).to.equal(typeof m !== 'string');
    expect(typeof m === 'string' ? data.toString() : data, `echo of a ${m.length}-byte message`).to.deep.equal(m);
  }
}

async function ourServer(options: Parameters<typeof createServer>[0] = {}): Promise<{ server: WebSocketServer; url: string }> {
  const server = createServer({ port: 0, host: '127.0.0.1', maxPayload: 64 * MIB, maxMessageSize: 64 * MIB, ...options });
  await once(server, 'listening');
  server.on('connection', (ws: WebSocket) => {
    ws.on('error', () => {});
    ws.pipe(ws);
  });
  return { server, url: `ws://127.0.0.1:${server.address()!.port}` };
}

async function wsServer(perMessageDeflate: WsDeflateOptions | false): Promise<{ server: WsServer; url: string }> {
  const server = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate, maxPayload: 64 * MIB });
  await once(server, 'listening');
  server.on('connection', (ws) => {
    ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
  });
  return { server, url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
}

function closeWs(server: WsServer): Promise<void> {
  for (const client of server.clients) client.terminate();
  return new Promise((resolve) => server.close(() => resolve()));
}

function closeOurs(server: WebSocketServer): Promise<void> {
  for (const client of server.clients) client.terminate();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('permessage-deflate interop with ws', function () {
  this.timeout(60_000);

  describe('our server, ws client', () => {
    for (const combo of COMBOS) {
      const big = combo === COMBOS[0] || combo === COMBOS[3];
      it(`${combo.name}: negotiates, echoes text and binary${big ? ' up to 16 MiB' : ''}, compressed on the wire`, async () => {
        const { server, url } = await ourServer({ perMessageDeflate: { ...combo.options, threshold: 0 } });
        const client = new WsClient(url, { perMessageDeflate: { threshold: 0 }, maxPayload: 64 * MIB });
        const [[response]] = (await Promise.all([once(client, 'upgrade'), once(client, 'open')])) as [[{ headers: Record<string, string> }], unknown];
        expect(response.headers['sec-websocket-extensions']).to.equal(combo.response);
        await echoWsClient(client, messages(big));
        // A 1 MiB compressible message crosses the wire in far fewer bytes.
        const socket = (client as unknown as { _socket: net.Socket })._socket;
        const written = socket.bytesWritten;
        await echoWsClient(client, [json(MIB, 9)]);
        expect(socket.bytesWritten - written).to.be.lessThan(MIB / 4);
        client.close();
        await once(client, 'close');
        await closeOurs(server);
      });
    }

    it('fragmented compressed messages from ws (fin: false parts) arrive whole', async () => {
      const { server, url } = await ourServer({ perMessageDeflate: true });
      const client = new WsClient(url, { perMessageDeflate: { threshold: 0 } });
      await once(client, 'open');
      const reply = once(client, 'message') as Promise<[Buffer, boolean]>;
      const parts = [json(3000, 1), json(10, 2), json(70_000, 3)];
      client.send(parts[0]!, { fin: false });
      client.send(parts[1]!, { fin: false });
      client.send(parts[2]!, { fin: true });
      const [data] = await reply;
      expect(data.toString()).to.equal(parts.join(''));
      client.close();
      await closeOurs(server);
    });
  });

  describe('ws server, our client', () => {
    for (const combo of COMBOS) {
      const big = combo === COMBOS[0] || combo === COMBOS[3];
      it(`${combo.name}: negotiates, echoes text and binary${big ? ' up to 16 MiB' : ''}`, async () => {
        const { server, url } = await wsServer({ ...combo.options, threshold: 0 });
        const client = connect(url, { perMessageDeflate: { threshold: 0 }, maxPayload: 64 * MIB, maxMessageSize: 64 * MIB });
        client.on('error', () => {});
        await once(client, 'open');
        // ws orders the parameters its own way.
        expect(sortedParams(client.extensions)).to.deep.equal(sortedParams(combo.response));
        await echoOurClient(client, messages(big));
        const peer = [...server.clients][0]!;
        const socket = (peer as unknown as { _socket: net.Socket })._socket;
        const read = socket.bytesRead;
        await echoOurClient(client, [json(MIB, 9)]);
        expect(socket.bytesRead - read).to.be.lessThan(MIB / 4);
        client.close();
        await once(client, 'close');
        await closeWs(server);
      });
    }

    it('our client offering its own parameters: ws accepts them', async () => {
      const { server, url } = await wsServer({ threshold: 0 });
      const client = connect(url, {
        perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 12 },
      });
      client.on('error', () => {});
      await once(client, 'open');
      expect(client.extensions).to.contain('permessage-deflate').and.contain('server_no_context_takeover').and.contain('server_max_window_bits=10');
      await echoOurClient(client, [json(5000), randomBytes(5000), 'x']);
      client.close();
      await once(client, 'close');
      await closeWs(server);
    });

    it('fragmented messages from us (fragmentSize) arrive whole at ws', async () => {
      const { server, url } = await wsServer({ threshold: 0 });
      const client = connect(url, { fragmentSize: 1000 });
      client.on('error', () => {});
      await once(client, 'open');
      await echoOurClient(client, [json(10_000), randomBytes(4500)]);
      const stream = client.createMessageStream({ binary: false });
      const reply = once(client, 'message');
      stream.write(Buffer.from(json(2000, 1)));
      stream.write(Buffer.alloc(0));
      stream.end(Buffer.from(json(3000, 2)));
      const [data] = await reply;
      expect(data).to.equal(json(2000, 1) + json(3000, 2));
      client.close();
      await closeWs(server);
    });
  });

  describe('our server, our client', () => {
    it('every combination, both ways, context kept across many messages', async () => {
      for (const combo of COMBOS) {
        const { server, url } = await ourServer({ perMessageDeflate: { ...combo.options, threshold: 0 } });
        const client = connect(url, { perMessageDeflate: { threshold: 0 } });
        client.on('error', () => {});
        await once(client, 'open');
        expect(client.extensions, combo.name).to.equal(combo.response);
        const list: Sent[] = [];
        for (let i = 0; i < 30; i++) list.push(i % 3 === 0 ? randomBytes(200 + i) : json(100 + i * 37, i));
        await echoOurClient(client, list);
        client.close();
        await once(client, 'close');
        await closeOurs(server);
      }
    });

    it('a ping sent while a 16 MiB message is being compressed gets its pong first', async () => {
      const { server, url } = await ourServer({ perMessageDeflate: true });
      const client = connect(url, { perMessageDeflate: true, maxPayload: 64 * MIB, maxMessageSize: 64 * MIB });
      client.on('error', () => {});
      await once(client, 'open');
      const order: string[] = [];
      client.on('pong', () => order.push('pong'));
      client.on('message', () => order.push('message'));
      client.send(randomBytes(16 * MIB));
      client.ping();
      while (order.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(order).to.deep.equal(['pong', 'message']);
      client.close();
      await closeOurs(server);
    });
  });

  describe('defaults and fallbacks', () => {
    it('our server declines by default: a ws client offering it gets no extension and still talks', async () => {
      const { server, url } = await ourServer();
      const client = new WsClient(url, { perMessageDeflate: {} });
      const [[response]] = (await Promise.all([once(client, 'upgrade'), once(client, 'open')])) as [[{ headers: Record<string, string> }], unknown];
      expect(response.headers['sec-websocket-extensions']).to.equal(undefined);
      await echoWsClient(client, ['Hello', json(5000)]);
      client.close();
      await closeOurs(server);
    });

    it('our client offers by default; perMessageDeflate: false offers nothing', async () => {
      const { server, url } = await wsServer({});
      const on = connect(url);
      const off = connect(url, { perMessageDeflate: false });
      await Promise.all([once(on, 'open'), once(off, 'open')]);
      expect(on.extensions).to.equal('permessage-deflate');
      expect(off.extensions).to.equal('');
      on.close();
      off.close();
      await closeWs(server);
    });

    it('a client asking the server to compress with 8 bits is declined cleanly: no extension, no failure', async () => {
      const { server, url } = await ourServer({ perMessageDeflate: true });
      const client = new WsClient(url, { perMessageDeflate: { serverMaxWindowBits: 8 } });
      const failed = once(client, 'error').then(() => 'error');
      const upgrade = once(client, 'upgrade') as Promise<[{ headers: Record<string, string> }]>;
      const opened = once(client, 'open').then(() => 'open');
      // ws itself fails when a server ignores its server_max_window_bits; here it must not come to that:
      // our server declines the offer and ws goes on without compression.
      expect(await Promise.race([opened, failed])).to.equal('open');
      expect((await upgrade)[0].headers['sec-websocket-extensions']).to.equal(undefined);
      await echoWsClient(client, ['still works']);
      client.close();
      await closeOurs(server);
    });

    it('a server asking our client to compress with 8 bits: we keep the extension and send uncompressed', async () => {
      const { server, url } = await wsServer({ clientMaxWindowBits: 8, threshold: 0 });
      const client = connect(url);
      client.on('error', () => {});
      await once(client, 'open');
      expect(client.extensions).to.equal('permessage-deflate; client_max_window_bits=8');
      const peer = [...server.clients][0]!;
      const socket = (peer as unknown as { _socket: net.Socket })._socket;
      const read = socket.bytesRead;
      await echoOurClient(client, [json(100_000)]);
      // Sent uncompressed (ws would reject a 9-bit stream on an 8-bit agreement only by luck).
      expect(socket.bytesRead - read).to.be.greaterThan(100_000);
      client.close();
      await closeWs(server);
    });

    it('a server answering with a parameter we cannot accept fails the connection with 1010', async () => {
      const raw = net.createServer((socket) => {
        socket.once('data', (req: Buffer) => {
          const key = /sec-websocket-key: (.*)\r\n/i.exec(req.toString())![1]!;
          const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
          socket.write(
            `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n` +
              'Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n\r\n',
          );
        });
        socket.on('error', () => {});
      });
      raw.listen(0, '127.0.0.1');
      await once(raw, 'listening');
      const client = connect(`ws://127.0.0.1:${(raw.address() as net.AddressInfo).port}`);
      const [err] = (await once(client, 'error')) as [{ code: string; closeCode: number }];
      expect(err.code).to.equal('WS_ERR_INVALID_EXTENSION');
      expect(err.closeCode).to.equal(CloseCode.MandatoryExtension);
      raw.close();
    });
  });

  describe('decompression bomb against our server', () => {
    it('a ~1 MB message inflating to 1 GiB: closed with 1009 at maxMessageSize, RSS growth < 100 MiB', async () => {
      // 1 GiB of zeros, DEFLATEd: after the first MiB every MiB compresses to the same bytes.
      const deflate = createDeflateRaw({ level: 9 });
      const parts: Buffer[] = [];
      let current: Buffer[] = [];
      deflate.on('data', (c: Buffer) => current.push(c));
      for (let i = 0; i < 3; i++) {
        deflate.write(Buffer.alloc(MIB));
        await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
        parts.push(Buffer.concat(current));
        current = [];
      }
      deflate.destroy();
      const body = Buffer.concat([parts[0]!, ...Array.from({ length: 1023 }, () => parts[1]!)]);
      const bomb = body.subarray(0, body.length - 4);

      const { server } = await ourServer({ perMessageDeflate: true, maxPayload: 16 * MIB, maxMessageSize: 16 * MIB });
      const closed = new Promise<number>((resolve) => server.once('connection', (ws: WebSocket) => ws.once('close', resolve)));
      const before = process.memoryUsage().rss;
      const socket = net.connect(server.address()!.port, '127.0.0.1');
      socket.write(
        'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n',
      );
      const received: Buffer[] = [];
      socket.on('data', (c: Buffer) => received.push(c));
      socket.on('error', () => {});
      const socketClosed = whenClosed(socket);
      await once(socket, 'data');
      expect(Buffer.concat(received).toString()).to.match(/Sec-WebSocket-Extensions: permessage-deflate\r\n/);
      received.length = 0;
      socket.write(wireFrame({ opcode: 0x2, payload: bomb, rsv1: true }));
      const code = await closed;
      const growth = process.memoryUsage().rss - before;
      await socketClosed;
      const frames = decodeFrames(Buffer.concat(received)).frames;
      expect(frames.at(-1)!.opcode).to.equal(0x8);
      expect(frames.at(-1)!.payload.readUInt16BE(0)).to.equal(CloseCode.MessageTooBig);
      expect(code).to.equal(CloseCode.MessageTooBig);
      expect(growth, `RSS grew by ${(growth / MIB).toFixed(1)} MiB`).to.be.lessThan(100 * MIB);
      await closeOurs(server);
    });
  });
});
