/**
 * Server habits from ws: the request handed to 'connection' (and to verifyClient) carries the
 * socket in every mode, and a verifyClient written in ws's (info, cb) form fails loudly.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { connect, createServer, WebSocket, WebSocketError, WebSocketServer } from '../../lib';
import type { ServerRequest } from '../../lib/server/server';
import type { UpgradeRequest } from '../../lib/handshake/handshake';

function portOf(server: WebSocketServer | http.Server): number {
  return (server.address() as net.AddressInfo).port;
}

async function connected(url: string): Promise<WebSocket> {
  const ws = connect(url);
  await once(ws, 'open');
  return ws;
}

describe('WebSocketServer: the request carries its socket (req.socket)', () => {
  it('standalone: req.socket.remoteAddress is the client address, in verifyClient and in connection', async () => {
    const seen: string[] = [];
    const server = createServer({
      port: 0,
      host: '127.0.0.1',
      verifyClient: (req) => {
        seen.push(`verify ${req.socket.remoteAddress}`);
        return true;
      },
    });
    await once(server, 'listening');
    const connection = once(server, 'connection') as Promise<[WebSocket, ServerRequest]>;
    const client = await connected(`ws://127.0.0.1:${portOf(server)}/`);
    const [, req] = await connection;
    expect(req.socket).to.be.instanceOf(net.Socket);
    expect(req.socket.remoteAddress).to.equal('127.0.0.1');
    expect(req.socket.remotePort).to.equal((client as unknown as { transport: net.Socket }).transport.localPort);
    expect(seen).to.deep.equal(['verify 127.0.0.1']);
    client.terminate();
    await new Promise<void>((resolve) => server.close(resolve));
  });

  it('on an http server: req is the IncomingMessage, its socket as Node set it', async () => {
    const httpServer = http.createServer();
    httpServer.listen(0, '127.0.0.1');
    await once(httpServer, 'listening');
    const server = createServer({ server: httpServer });
    const connection = once(server, 'connection') as Promise<[WebSocket, ServerRequest]>;
    const client = await connected(`ws://127.0.0.1:${portOf(httpServer)}/`);
    const [, req] = await connection;
    expect(req).to.be.instanceOf(http.IncomingMessage);
    expect(req.socket.remoteAddress).to.equal('127.0.0.1');
    client.terminate();
    await new Promise<void>((resolve) => server.close(resolve));
    httpServer.close();
  });

  it('noServer: a request object without a socket gets the socket given to handleUpgrade', async () => {
    const server = createServer({ noServer: true });
    const raw = net.createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        const key = /sec-websocket-key: *(\S+)/i.exec(chunk.toString('latin1'))![1]!;
        const req: UpgradeRequest = {
          method: 'GET',
          url: '/',
          httpVersion: '1.1',
          headers: { host: 'x', upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': key, 'sec-websocket-version': '13' },
          rawHeaders: [],
        };
        server.handleUpgrade(req, socket, Buffer.alloc(0), (ws, upgraded) => server.emit('connection', ws, upgraded));
      });
    });
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    const connection = once(server, 'connection') as Promise<[WebSocket, ServerRequest]>;
    const client = await connected(`ws://127.0.0.1:${portOf(raw as unknown as http.Server)}/`);
    const [, req] = await connection;
    expect(req.socket.remoteAddress).to.equal('127.0.0.1');
    client.terminate();
    await new Promise<void>((resolve) => server.close(resolve));
    raw.close();
  });
});

describe("WebSocketServer: ws's verifyClient(info, cb) form fails loudly", () => {
  it('a verifyClient that returns nothing is refused with 500 and an error that names the two forms, and warns once', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    // What a ws user writes: (info, cb) => cb(true). Here info is the request and cb the
    // UpgradeInfo, so it throws or returns undefined; either way it must be said clearly.
    const wsStyle = ((_info: unknown, cb: unknown) => {
      if (typeof cb === 'function') cb(true);
    }) as unknown as NonNullable<Parameters<typeof createServer>[0]>['verifyClient'];
    const server = createServer({ port: 0, host: '127.0.0.1', verifyClient: wsStyle });
    await once(server, 'listening');
    const rejections: Array<[WebSocketError, number]> = [];
    server.on('rejected', (err: WebSocketError, _req: unknown, status: number) => rejections.push([err, status]));
    for (let i = 0; i < 2; i++) {
      const client = connect(`ws://127.0.0.1:${portOf(server)}/`);
      client.on('error', () => {});
      await new Promise((resolve) => client.once('close', resolve));
    }
    await new Promise((resolve) => setImmediate(resolve));
    process.removeListener('warning', onWarning);
    expect(rejections.map(([, status]) => status)).to.deep.equal([500, 500]);
    expect(rejections[0]![0].message).to.match(/verifyClient/).and.to.match(/wspipe\/ws/);
    const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'WSPIPE_VERIFY_CLIENT_FORM');
    expect(ours).to.have.length(1);
    await new Promise<void>((resolve) => server.close(resolve));
  });
});
