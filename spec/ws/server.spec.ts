/**
 * wspipe/ws WebSocketServer, written from ws's documentation (doc/ws.md, "Class:
 * WebSocketServer"): the three modes, verifyClient's two forms, handleProtocols,
 * clientTracking, handleUpgrade, shouldHandle, 'headers', 'wsClientError', close().
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocket as WsClient } from 'ws';
import WebSocket, { WebSocketServer } from '../../lib/ws';
import type { ServerOptions } from '../../lib/ws';
import { socketPair } from '../helpers/sockets';

async function start(options: ServerOptions = {}): Promise<{ server: WebSocketServer; url: string }> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options });
  await once(server, 'listening');
  return { server, url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
}

function stop(server: WebSocketServer): Promise<void> {
  for (const ws of server.clients ?? []) ws.terminate();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Connects with ws's own client; resolves with how the handshake ended. */
function tryConnect(url: string, protocols: string[] = [], options: object = {}): Promise<{ open: boolean; status?: number; protocol?: string; client: WsClient }> {
  return new Promise((resolve) => {
    const client = new WsClient(url, protocols, options);
    client.on('open', () => resolve({ open: true, protocol: client.protocol, client }));
    client.on('unexpected-response', (_req, res) => {
      resolve({ open: false, status: res.statusCode, client });
      client.terminate();
    });
    client.on('error', () => resolve({ open: false, client }));
  });
}

/** A raw HTTP exchange: the whole answer as text. */
async function raw(url: string, request: string): Promise<string> {
  const { port } = new URL(url);
  const socket = net.connect(Number(port), '127.0.0.1');
  socket.write(request);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((resolve) => socket.once('close', resolve));
  return Buffer.concat(chunks).toString('latin1');
}

describe('wspipe/ws WebSocketServer', () => {
  describe('constructor', () => {
    for (const [name, options] of [
      ['none of port, server, noServer', {}],
      ['port and noServer', { port: 0, noServer: true }],
      ['server and noServer', { server: http.createServer(), noServer: true }],
    ] as Array<[string, ServerOptions]>) {
      it(`throws a TypeError for ${name}`, () => {
        expect(() => new WebSocketServer(options)).to.throw(TypeError, /One and only one/);
      });
    }

    it('port: answers a plain HTTP request with 426, and calls the callback once listening', async () => {
      let called = false;
      const server = new WebSocketServer({ port: 0, host: '127.0.0.1' }, () => {
        called = true;
      });
      await once(server, 'listening');
      expect(called).to.equal(true);
      const { port } = server.address() as net.AddressInfo;
      const answer = await raw(`ws://127.0.0.1:${port}`, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(answer).to.match(/^HTTP\/1\.1 426 /);
      await stop(server);
    });

    it('address() throws in noServer mode', () => {
      expect(() => new WebSocketServer({ noServer: true }).address()).to.throw(/noServer/);
    });
  });

  describe('verifyClient', () => {
    it('(info) => false refuses with 401; info has origin, secure and req', async () => {
      const infos: Array<{ origin: string | undefined; secure: boolean; url: string | undefined }> = [];
      const { server, url } = await start({
        verifyClient: (info: { origin: string | undefined; secure: boolean; req: http.IncomingMessage }) => {
          infos.push({ origin: info.origin, secure: info.secure, url: info.req.url });
          return false;
        },
      });
      expect(await tryConnect(`${url}/a`, [], { origin: 'https://o.example' })).to.include({ open: false, status: 401 });
      expect(infos).to.deep.equal([{ origin: 'https://o.example', secure: false, url: '/a' }]);
      await stop(server);
    });

    it('(info, cb): cb(true) accepts, cb(false, code, message, headers) refuses with them, even later', async () => {
      let allow = true;
      const { server, url } = await start({
        verifyClient: (_info: unknown, cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => {
          setImmediate(() => (allow ? cb(true) : cb(false, 429, 'Slow down', { 'Retry-After': '5' })));
        },
      });
      const accepted = await tryConnect(url);
      expect(accepted.open).to.equal(true);
      accepted.client.terminate();
      allow = false;
      const refused = await new Promise<http.IncomingMessage>((resolve) => {
        const client = new WsClient(url);
        client.on('unexpected-response', (_req, res) => {
          resolve(res);
          client.terminate();
        });
        client.on('error', () => {});
      });
      expect(refused.statusCode).to.equal(429);
      expect(refused.headers['retry-after']).to.equal('5');
      await stop(server);
    });
  });

  describe('subprotocols', () => {
    it('selects the first protocol offered by default', async () => {
      const { server, url } = await start();
      const result = await tryConnect(url, ['b', 'a']);
      expect(result).to.include({ open: true, protocol: 'b' });
      result.client.terminate();
      await stop(server);
    });

    it('handleProtocols(protocols: Set, req) picks; false selects none, which ws clients refuse', async () => {
      const seen: string[][] = [];
      const { server, url } = await start({
        handleProtocols: (protocols: Set<string>) => {
          seen.push([...protocols]);
          return protocols.has('b') ? 'b' : false;
        },
      });
      const picked = await tryConnect(url, ['a', 'b']);
      expect(picked).to.include({ open: true, protocol: 'b' });
      picked.client.terminate();
      expect((await tryConnect(url, ['a'])).open).to.equal(false);
      expect(seen).to.deep.equal([['a', 'b'], ['a']]);
      // Without an offer, handleProtocols is not asked.
      const none = await tryConnect(url);
      expect(none).to.include({ open: true, protocol: '' });
      none.client.terminate();
      expect(seen).to.have.length(2);
      await stop(server);
    });
  });

  describe('clientTracking', () => {
    it('clients holds the open connections (wspipe/ws WebSockets) and forgets closed ones', async () => {
      const { server, url } = await start();
      const connected = once(server, 'connection') as Promise<[WebSocket]>;
      const { client } = await tryConnect(url);
      const [ws] = await connected;
      expect(ws).to.be.instanceOf(WebSocket);
      expect([...server.clients!]).to.deep.equal([ws]);
      const closed = once(ws, 'close');
      client.close();
      await closed;
      expect(server.clients!.size).to.equal(0);
      await stop(server);
    });

    it('clientTracking: false leaves clients undefined', async () => {
      const { server } = await start({ clientTracking: false });
      expect(server.clients).to.equal(undefined);
      await stop(server);
    });
  });

  describe('noServer, handleUpgrade and shouldHandle', () => {
    it('routes upgrades of one http server to two servers by path, as ws documents', async () => {
      const one = new WebSocketServer({ noServer: true });
      const two = new WebSocketServer({ noServer: true });
      const httpServer = http.createServer();
      httpServer.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        const target = req.url === '/one' ? one : req.url === '/two' ? two : null;
        if (target === null) socket.destroy();
        else target.handleUpgrade(req, socket, head, (ws, request) => target.emit('connection', ws, request));
      });
      httpServer.listen(0, '127.0.0.1');
      await once(httpServer, 'listening');
      const base = `ws://127.0.0.1:${(httpServer.address() as net.AddressInfo).port}`;
      const seen: string[] = [];
      one.on('connection', (_ws: WebSocket, req: http.IncomingMessage) => seen.push(`one ${req.url}`));
      two.on('connection', (_ws: WebSocket, req: http.IncomingMessage) => seen.push(`two ${req.url}`));
      for (const path of ['/two', '/one']) (await tryConnect(`${base}${path}`)).client.terminate();
      expect(seen).to.deep.equal(['two /two', 'one /one']);
      await Promise.all([stop(one), stop(two)]);
      httpServer.close();
    });

    it('path: another path is refused with 400; shouldHandle says so', async () => {
      const { server, url } = await start({ path: '/ws' });
      expect(server.shouldHandle({ url: '/ws?x=1' } as http.IncomingMessage)).to.equal(true);
      expect(server.shouldHandle({ url: '/other' } as http.IncomingMessage)).to.equal(false);
      expect(await tryConnect(`${url}/other`)).to.include({ open: false, status: 400 });
      const ok = await tryConnect(`${url}/ws`);
      expect(ok.open).to.equal(true);
      ok.client.terminate();
      await stop(server);
    });
  });

  it("'headers' gets the lines of the 101 before they are sent, and may add some", async () => {
    const { server, url } = await start();
    server.on('headers', (headers: string[], req: http.IncomingMessage) => {
      expect(headers[0]).to.equal('HTTP/1.1 101 Switching Protocols');
      expect(req.url).to.equal('/');
      headers.push('Set-Cookie: a=1');
    });
    const client = new WsClient(url);
    const [response] = (await once(client, 'upgrade')) as [http.IncomingMessage];
    expect(response.headers['set-cookie']).to.deep.equal(['a=1']);
    client.terminate();
    await stop(server);
  });

  it("'wsClientError' (err, socket, req) gets an invalid request when listened for; the application answers", async () => {
    const { server, url } = await start();
    server.on('wsClientError', (err: Error, socket: net.Socket, req: http.IncomingMessage) => {
      expect(err).to.be.instanceOf(Error);
      expect(req.headers['sec-websocket-version']).to.equal('7');
      socket.end('HTTP/1.1 418 I\'m a teapot\r\nConnection: close\r\n\r\n');
    });
    const answer = await raw(url, 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n');
    expect(answer).to.match(/^HTTP\/1\.1 418 /);
    await stop(server);
  });

  describe('close()', () => {
    it("stops accepting, leaves open connections open, and emits 'close' once they have closed", async () => {
      const { server, url } = await start();
      const connected = once(server, 'connection') as Promise<[WebSocket]>;
      const { client } = await tryConnect(url);
      const [ws] = await connected;
      let closed = false;
      server.close(() => {
        closed = true;
      });
      // Still open: messages still flow.
      ws.send('after close()');
      const [data] = (await once(client, 'message')) as [Buffer];
      expect(data.toString()).to.equal('after close()');
      expect(closed).to.equal(false);
      const done = new Promise<void>((resolve) => server.once('close', () => resolve()));
      client.close();
      await done;
      expect(closed).to.equal(true);
    });

    it('handleUpgrade after close() answers 503; close() again calls back with an error', async () => {
      const server = new WebSocketServer({ noServer: true });
      await new Promise<void>((resolve) => server.close(() => resolve()));
      const [a, b] = await socketPair();
      const answer: Buffer[] = [];
      b.on('data', (c: Buffer) => answer.push(c));
      server.handleUpgrade({ url: '/', headers: {} } as http.IncomingMessage, a, Buffer.alloc(0), () => expect.fail('no connection'));
      await new Promise((resolve) => b.once('close', resolve));
      expect(Buffer.concat(answer).toString('latin1')).to.match(/^HTTP\/1\.1 503 /);
      const err = await new Promise<Error | undefined>((resolve) => server.close(resolve));
      expect(err).to.be.instanceOf(Error);
    });
  });
});
