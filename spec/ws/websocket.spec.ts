/**
 * wspipe/ws WebSocket, written from ws's documentation (doc/ws.md, "Class: WebSocket"), as a
 * client of ws's own server (so this is also the interop of wspipe/ws's client with ws), and
 * as a server's connection (with ws's client).
 */
import { expect } from 'chai';
import { once } from 'node:events';
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as ws from 'ws';
import WebSocket, { createWebSocketStream, WebSocketServer } from '../../lib/ws';
import type { CloseEvent, MessageEvent } from '../../lib/ws';

type Code = Error & { code?: string; status?: number };

/** ws's server, echoing; `options` as ws takes them. */
async function wsServer(options: ws.ServerOptions = {}): Promise<{ server: ws.WebSocketServer; url: string }> {
  const server = new ws.WebSocketServer({ port: 0, host: '127.0.0.1', ...options });
  await once(server, 'listening');
  server.on('connection', (socket) => socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })));
  return { server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function stop(server: ws.WebSocketServer): Promise<void> {
  for (const client of server.clients) client.terminate();
  return new Promise((resolve) => server.close(() => resolve()));
}

function closed(client: WebSocket): Promise<[number, Buffer]> {
  return new Promise((resolve) => client.once('close', (code: number, reason: Buffer) => resolve([code, reason])));
}

describe('wspipe/ws WebSocket', () => {
  it('has the ready state constants on the class and on instances', () => {
    expect([WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED]).to.deep.equal([0, 1, 2, 3]);
    const client = new WebSocket('ws://127.0.0.1:1/');
    client.on('error', () => {});
    expect([client.CONNECTING, client.OPEN, client.CLOSING, client.CLOSED, client.readyState]).to.deep.equal([0, 1, 2, 3, 0]);
    client.terminate();
  });

  describe('as a client of ws', () => {
    it('new WebSocket(url, protocols, options): opens with the protocol and extension agreed, url as given', async () => {
      const { server, url } = await wsServer({ perMessageDeflate: true });
      const client = new WebSocket(`${url}/path?q=1`, 'chat', { headers: { 'X-Token': 't' } });
      const [, request] = (await once(server, 'connection')) as [ws.WebSocket, http.IncomingMessage];
      await once(client, 'open');
      expect(request.headers['x-token']).to.equal('t');
      expect(request.url).to.equal('/path?q=1');
      expect(client.url).to.equal(`${url}/path?q=1`);
      expect(client.protocol).to.equal('chat');
      expect(client.extensions).to.equal('permessage-deflate');
      expect(client.readyState).to.equal(WebSocket.OPEN);
      client.close();
      await closed(client);
      await stop(server);
    });

    it("'message' gives Buffers (text too) with isBinary; binaryType changes binary data only", async () => {
      const { server, url } = await wsServer();
      const client = new WebSocket(url);
      await once(client, 'open');
      const got: unknown[] = [];
      client.on('message', (data: unknown, isBinary: boolean) => got.push([Object.prototype.toString.call(data), isBinary]));
      client.send('text');
      client.send(new Uint8Array([1, 2]));
      await new Promise((resolve) => setTimeout(resolve, 0));
      while (got.length < 2) await once(client, 'message');
      client.binaryType = 'arraybuffer';
      client.send(new ArrayBuffer(2));
      await once(client, 'message');
      client.binaryType = 'fragments';
      client.send(Buffer.from([3]));
      await once(client, 'message');
      client.binaryType = 'blob' as 'nodebuffer';
      expect(client.binaryType).to.equal('fragments');
      expect(got).to.deep.equal([
        ['[object Uint8Array]', false],
        ['[object Uint8Array]', true],
        ['[object ArrayBuffer]', true],
        ['[object Array]', true],
      ]);
      client.terminate();
      await stop(server);
    });

    it('send() while CONNECTING throws; after close() its callback gets an error', async () => {
      const { server, url } = await wsServer();
      const client = new WebSocket(url);
      expect(() => client.send('too early')).to.throw(/CONNECTING/);
      await once(client, 'open');
      client.close();
      const err = await new Promise<Error | null | undefined>((resolve) => client.send('too late', resolve));
      expect((err as Code).code).to.equal('WS_ERR_INVALID_STATE');
      await closed(client);
      await stop(server);
    });

    it("ping(data, mask, cb) and 'pong'; ws's server pongs back the data", async () => {
      const { server, url } = await wsServer();
      const client = new WebSocket(url);
      await once(client, 'open');
      const sent = new Promise<Error | null | undefined>((resolve) => client.ping('beat', true, resolve));
      const [payload] = (await once(client, 'pong')) as [Buffer];
      expect(await sent).to.equal(null);
      expect(payload.toString()).to.equal('beat');
      client.terminate();
      await stop(server);
    });

    it("close(code, reason): 'close' gives the code and the reason as a Buffer", async () => {
      const { server, url } = await wsServer();
      server.on('connection', (socket) => socket.close(4001, 'server says bye'));
      const client = new WebSocket(url);
      const [code, reason] = await closed(client);
      expect(code).to.equal(4001);
      expect(Buffer.isBuffer(reason)).to.equal(true);
      expect(reason.toString()).to.equal('server says bye');
      await stop(server);
    });

    it('a refusal without an unexpected-response listener: an error with the status, then close 1006', async () => {
      const { server, url } = await wsServer({ verifyClient: () => false });
      const client = new WebSocket(url);
      const closing = closed(client);
      const [err] = (await once(client, 'error')) as [Code];
      expect(err.status).to.equal(401);
      expect((await closing)[0]).to.equal(1006);
      await stop(server);
    });

    it('refuses a 101 that selects none of the protocols offered (as ws and browsers do)', async () => {
      const { server, url } = await wsServer({ handleProtocols: () => false });
      const client = new WebSocket(url, ['chat']);
      const [err] = (await once(client, 'error')) as [Code];
      expect(err.code).to.equal('WS_ERR_INVALID_SUBPROTOCOL');
      await stop(server);
    });

    it('maxPayload bounds a whole message: over it, close 1009', async () => {
      const { server, url } = await wsServer();
      const client = new WebSocket(url, { maxPayload: 1024 });
      client.on('error', () => {});
      await once(client, 'open');
      client.send(Buffer.alloc(2048));
      expect((await closed(client))[0]).to.equal(1009);
      await stop(server);
    });

    it('throws at the constructor for options it cannot honour (followRedirects, protocolVersion 8)', () => {
      expect(() => new WebSocket('ws://127.0.0.1:1/', { followRedirects: true })).to.throw(TypeError, /followRedirects/);
      expect(() => new WebSocket('ws://127.0.0.1:1/', { protocolVersion: 8 })).to.throw(TypeError, /protocol version/);
    });

    it('the browser-style API: onopen, onmessage (event.data), addEventListener once, onclose (code, reason, wasClean)', async () => {
      const { server, url } = await wsServer();
      const client = new WebSocket(url);
      const seen: unknown[] = [];
      client.onopen = () => {
        seen.push('open');
        client.send('hi');
      };
      client.onmessage = (event: MessageEvent) => {
        seen.push(['message', (event.data as Buffer).toString()]);
        client.close(1000, 'done');
      };
      client.addEventListener('message', () => seen.push('once'), { once: true });
      const done = new Promise<void>((resolve) => {
        client.onclose = (event: CloseEvent) => {
          seen.push(['close', event.code, event.reason, event.wasClean]);
          resolve();
        };
      });
      await done;
      expect(typeof client.onmessage).to.equal('function');
      expect(seen).to.deep.equal(['open', ['message', 'hi'], 'once', ['close', 1000, 'done', true]]);
      await stop(server);
    });

    it('an AbortSignal (wspipe) aborts the handshake', async () => {
      const { server, url } = await wsServer();
      const client = new WebSocket(url, { signal: AbortSignal.abort() });
      const [err] = (await once(client, 'error')) as [Error];
      expect(err.name).to.equal('AbortError');
      await stop(server);
    });
  });

  describe("as a wspipe/ws server's connection, with ws's client", () => {
    it('echoes, pauses and resumes, reports bufferedAmount, and terminates', async () => {
      const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
      await once(server, 'listening');
      const client = new ws.WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
      const [connection] = (await once(server, 'connection')) as [WebSocket];
      expect(connection.url).to.equal(undefined);
      connection.pause();
      expect(connection.isPaused).to.equal(true);
      const received: string[] = [];
      connection.on('message', (data: Buffer) => received.push(data.toString()));
      await once(client, 'open');
      client.send('one');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(received).to.deep.equal([]);
      connection.resume();
      await once(connection, 'message');
      expect(received).to.deep.equal(['one']);
      expect(connection.bufferedAmount).to.equal(0);
      const clientClosed = once(client, 'close');
      connection.terminate();
      const [code] = (await clientClosed) as [number];
      expect(code).to.equal(1006);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it('createWebSocketStream: a Duplex over the connection (pipe an echo through it)', async () => {
      const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
      await once(server, 'listening');
      server.on('connection', (connection: WebSocket) => {
        const duplex = createWebSocketStream(connection);
        duplex.pipe(duplex);
      });
      const client = new ws.WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
      await once(client, 'open');
      client.send(Buffer.from('through the stream'));
      const [data] = (await once(client, 'message')) as [Buffer];
      expect(data.toString()).to.equal('through the stream');
      client.close();
      await once(client, 'close');
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
  });
});
