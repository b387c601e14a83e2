/**
 * The migration promise of wspipe/ws: the same application code, written against ws's API,
 * runs against `ws` and against `wspipe/ws`, and what it observes (events, their arguments'
 * types and values, their order) is the same. Each scenario is an "application" taking the
 * module as a parameter and returning a trace; the two traces must be equal.
 *
 * Left out of the traces on purpose, because wspipe differs there (docs/migrating-from-ws.md):
 * error messages (wspipe's errors carry a code) and the body and content type of a refusal.
 */
import { expect } from 'chai';
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as ws from 'ws';
import * as wspipe from '../../lib/ws';

/** The parts of either module an application uses. */
interface Api {
  WebSocket: typeof ws.WebSocket;
  WebSocketServer: typeof ws.WebSocketServer;
  createWebSocketStream: typeof ws.createWebSocketStream;
}
const WS = ws as unknown as Api;
const WSPIPE = wspipe as unknown as Api;

/** A value in a trace: its type and content, comparable with deep equality. */
function describe_(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { Buffer: value.toString('hex') };
  if (value instanceof ArrayBuffer) return { ArrayBuffer: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) return { Array: Buffer.concat(value as Buffer[]).toString('hex'), buffers: value.every((v) => Buffer.isBuffer(v)) };
  return value;
}

async function listening(api: Api, options: ws.ServerOptions): Promise<{ server: ws.WebSocketServer; url: string }> {
  return new Promise((resolve) => {
    const server: ws.WebSocketServer = new api.WebSocketServer({ ...options, port: 0, host: '127.0.0.1' }, () =>
      resolve({ server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` }),
    );
  });
}

function closeServer(server: ws.WebSocketServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Echo with a twist: text comes back upper-cased, binary reversed; the client closes. */
async function echoApp(api: Api, binaryType: 'nodebuffer' | 'arraybuffer' | 'fragments'): Promise<unknown[]> {
  const trace: unknown[] = [];
  const { server, url } = await listening(api, {});
  server.on('connection', (socket, req) => {
    trace.push(['server connection', req.url, typeof req.socket.remoteAddress, socket.readyState, socket.protocol]);
    socket.on('message', (data, isBinary) => {
      trace.push(['server message', describe_(data), isBinary]);
      const bytes = data as Buffer;
      if (isBinary) socket.send(Buffer.from(bytes).reverse());
      else socket.send(bytes.toString().toUpperCase());
    });
    socket.on('ping', (payload) => trace.push(['server ping', describe_(payload)]));
    socket.on('close', (code, reason) => trace.push(['server close', code, describe_(reason)]));
  });
  const client = new api.WebSocket(`${url}/echo?x=1`);
  client.binaryType = binaryType;
  trace.push(['client created', client.readyState, client.url.replace(/:\d+\//, ':PORT/'), client.binaryType]);
  await new Promise<void>((resolve) => {
    client.on('open', () => {
      trace.push(['client open', client.readyState, client.protocol, client.bufferedAmount]);
      client.send('héllo', (err) => trace.push(['send callback', err ?? null]));
      client.send(Buffer.from([1, 2, 3]));
      client.ping('are you there', undefined, (err) => trace.push(['ping callback', err ?? null]));
    });
    let received = 0;
    client.on('message', (data, isBinary) => {
      trace.push(['client message', describe_(data), isBinary]);
      if (++received === 2) client.close(4000, 'bye');
    });
    client.on('pong', (payload) => trace.push(['client pong', describe_(payload)]));
    client.on('close', (code) => {
      trace.push(['client close', code, client.readyState]);
      resolve();
    });
  });
  await closeServer(server);
  // The server's 'close' may come before or after the client's: sort it to one place.
  return [...trace.filter((t) => (t as unknown[])[0] !== 'server close'), ...trace.filter((t) => (t as unknown[])[0] === 'server close')];
}

/** verifyClient refuses (ws's callback form), the client listens for 'unexpected-response'. */
async function refusalApp(api: Api): Promise<unknown[]> {
  const trace: unknown[] = [];
  const { server, url } = await listening(api, {
    verifyClient: (info: { origin?: string; req: http.IncomingMessage }, cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => {
      trace.push(['verify', info.origin, info.req.url]);
      cb(false, 403, 'Forbidden', { 'X-Why': 'no' });
    },
  });
  const client = new api.WebSocket(`${url}/private`, { origin: 'https://example.com' });
  await new Promise<void>((resolve) => {
    client.on('unexpected-response', (_req, res) => {
      trace.push(['unexpected-response', res.statusCode, res.headers['x-why']]);
      client.terminate();
    });
    client.on('open', () => trace.push(['open']));
    // (The messages differ: wspipe's errors carry a code, e.g. WS_ERR_INVALID_STATE.)
    client.on('error', (err) => trace.push(['error', err instanceof Error]));
    client.on('close', (code) => {
      trace.push(['close', code]);
      resolve();
    });
  });
  await closeServer(server);
  return trace;
}

/** Subprotocols (handleProtocols and the default), 'headers', the client's 'upgrade'. */
async function handshakeApp(api: Api, handle: boolean): Promise<unknown[]> {
  const trace: unknown[] = [];
  const { server, url } = await listening(api, handle ? { handleProtocols: (protocols: Set<string>) => (protocols.has('b') ? 'b' : false) } : {});
  server.on('headers', (headers) => {
    trace.push(['headers', headers[0]]);
    headers.push('X-Extra: 1');
  });
  server.on('connection', (socket) => {
    trace.push(['connection', socket.protocol]);
    socket.close();
  });
  const client = new api.WebSocket(url, ['a', 'b']);
  await new Promise<void>((resolve) => {
    client.on('upgrade', (res: http.IncomingMessage) => trace.push(['upgrade', res.statusCode, res.headers['x-extra']]));
    client.on('open', () => trace.push(['open', client.protocol]));
    client.on('close', (code) => {
      trace.push(['close', code]);
      resolve();
    });
  });
  await closeServer(server);
  return trace;
}

/** createWebSocketStream: bytes written become messages, messages become bytes. */
async function streamApp(api: Api): Promise<unknown[]> {
  const trace: unknown[] = [];
  const { server, url } = await listening(api, {});
  server.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => {
      trace.push(['server message', describe_(data), isBinary]);
      socket.send(data, { binary: isBinary });
      if (trace.length === 2) socket.close(1000);
    });
  });
  const client = new api.WebSocket(url);
  const duplex = api.createWebSocketStream(client);
  duplex.write(Buffer.from('one'));
  duplex.write(Buffer.from('two'));
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    duplex.on('data', (chunk: Buffer) => chunks.push(chunk));
    duplex.on('end', () => resolve());
  });
  trace.push(['stream read', Buffer.concat(chunks).toString()]);
  duplex.destroy();
  await closeServer(server);
  return trace;
}

describe('wspipe/ws: the same application against ws and against wspipe/ws', () => {
  for (const binaryType of ['nodebuffer', 'arraybuffer', 'fragments'] as const) {
    it(`echo with binaryType ${binaryType}: the same events, arguments and order`, async () => {
      const expected = await echoApp(WS, binaryType);
      const actual = await echoApp(WSPIPE, binaryType);
      expect(actual).to.deep.equal(expected);
    });
  }

  it("a refusal by verifyClient(info, cb): the same 'unexpected-response' and close", async () => {
    expect(await refusalApp(WSPIPE)).to.deep.equal(await refusalApp(WS));
  });

  for (const handle of [false, true]) {
    it(`subprotocols ${handle ? 'with handleProtocols' : 'by default (the first offered)'}, 'headers' and 'upgrade'`, async () => {
      expect(await handshakeApp(WSPIPE, handle)).to.deep.equal(await handshakeApp(WS, handle));
    });
  }

  it('createWebSocketStream', async () => {
    expect(await streamApp(WSPIPE)).to.deep.equal(await streamApp(WS));
  });
});
