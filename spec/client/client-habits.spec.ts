/**
 * Client habits from ws and fetch: a refused handshake tells the status, headers and body
 * ('unexpected-response' and the error), and connect() honours an AbortSignal.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as net from 'node:net';
import { connect, createServer, WebSocket } from '../../lib';
import type { RefusedResponse } from '../../lib/client/client';

type Refusal = Error & { code?: string; status?: number; headers?: Record<string, unknown>; body?: Buffer };

/** A fake server that answers every request with `answer` (raw bytes), then ends. */
async function answering(answer: string | Buffer, end = true): Promise<{ port: number; server: net.Server; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.once('data', () => (end ? socket.end(answer) : socket.write(answer)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, server, sockets };
}

/** Resolves with the error (if any) and the close code. */
function outcome(ws: WebSocket): Promise<{ error: Error | null; code: number; events: string[] }> {
  const events: string[] = [];
  let error: Error | null = null;
  ws.on('unexpected-response', () => events.push('unexpected-response'));
  ws.on('open', () => events.push('open'));
  ws.on('error', (err: Error) => {
    error = err;
    events.push('error');
  });
  return new Promise((resolve) =>
    ws.once('close', (code: number) => {
      events.push('close');
      resolve({ error, code, events });
    }),
  );
}

describe('connect(): a refused handshake', () => {
  it("emits 'unexpected-response' with the status, headers and body, then an error carrying them", async () => {
    const body = 'no token, no socket';
    const { port, server } = await answering(
      `HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    const ws = connect(`ws://127.0.0.1:${port}/`);
    const responses: RefusedResponse[] = [];
    ws.on('unexpected-response', (res: RefusedResponse) => responses.push(res));
    const { error, code, events } = await outcome(ws);
    expect(events).to.deep.equal(['unexpected-response', 'error', 'close']);
    expect(responses[0]!.statusCode).to.equal(401);
    expect(responses[0]!.statusMessage).to.equal('Unauthorized');
    expect(responses[0]!.headers['www-authenticate']).to.equal('Bearer');
    expect(responses[0]!.body.toString()).to.equal(body);
    const refusal = error as Refusal;
    expect(refusal.code).to.equal('WS_ERR_HANDSHAKE_REJECTED');
    expect(refusal.status).to.equal(401);
    expect(refusal.headers!['www-authenticate']).to.equal('Bearer');
    expect(refusal.body!.toString()).to.equal(body);
    expect(code).to.equal(1006);
    server.close();
  });

  it('reads a body without Content-Length until the server closes', async () => {
    const { port, server } = await answering('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\ncome back later');
    const ws = connect(`ws://127.0.0.1:${port}/`);
    const { error } = await outcome(ws);
    expect((error as Refusal).status).to.equal(503);
    expect((error as Refusal).body!.toString()).to.equal('come back later');
    server.close();
  });

  it('keeps at most 64 KiB of a long body, and does not wait for more than Content-Length', async () => {
    const big = Buffer.alloc(200 * 1024, 0x61);
    const { port, server } = await answering(
      Buffer.concat([Buffer.from(`HTTP/1.1 400 Bad Request\r\nContent-Length: ${big.length}\r\n\r\n`), big]),
      false,
    );
    const ws = connect(`ws://127.0.0.1:${port}/`);
    const { error } = await outcome(ws);
    expect((error as Refusal).status).to.equal(400);
    expect((error as Refusal).body!.length).to.equal(64 * 1024);
    server.close();
  });

  it("our own server's refusal (verifyClient { status: 403 }) reaches the client with its message", async () => {
    const server = createServer({ port: 0, host: '127.0.0.1', verifyClient: () => ({ status: 403, message: 'not you' }) });
    await once(server, 'listening');
    const ws = connect(`ws://127.0.0.1:${server.address()!.port}/`);
    const { error } = await outcome(ws);
    expect((error as Refusal).status).to.equal(403);
    expect((error as Refusal).body!.toString()).to.equal('not you');
    await new Promise<void>((resolve) => server.close(resolve));
  });
});

describe('connect(url, { signal })', () => {
  it('an already aborted signal: AbortError and close 1006, nothing dialled', async () => {
    let dialled = 0;
    const server = net.createServer((socket) => {
      dialled++;
      socket.destroy();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const reason = new Error('changed my mind');
    const ws = connect(`ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, { signal: AbortSignal.abort(reason) });
    const { error, code, events } = await outcome(ws);
    expect(error!.name).to.equal('AbortError');
    expect((error as Refusal).code).to.equal('ABORT_ERR');
    expect((error as Error & { cause?: unknown }).cause).to.equal(reason);
    expect(code).to.equal(1006);
    expect(events).to.deep.equal(['error', 'close']);
    await new Promise((resolve) => setImmediate(resolve));
    expect(dialled).to.equal(0);
    server.close();
  });

  it('aborted during the handshake: AbortError, close 1006, and the socket is destroyed', async () => {
    const serverSide: net.Socket[] = [];
    const server = net.createServer((socket) => serverSide.push(socket)); // never answers
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const controller = new AbortController();
    const ws = connect(`ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, { signal: controller.signal });
    const result = outcome(ws);
    await once(server, 'connection');
    controller.abort();
    const { error, code } = await result;
    expect(error!.name).to.equal('AbortError');
    expect(code).to.equal(1006);
    // The server side sees the client's socket go away.
    await new Promise((resolve) => (serverSide[0]!.closed ? resolve(null) : serverSide[0]!.once('close', resolve)));
    server.close();
  });

  it('aborting after open changes nothing', async () => {
    const server = createServer({ port: 0, host: '127.0.0.1' });
    await once(server, 'listening');
    const controller = new AbortController();
    const ws = connect(`ws://127.0.0.1:${server.address()!.port}/`, { signal: controller.signal });
    await once(ws, 'open');
    controller.abort();
    ws.send('still here');
    const connection = [...server.clients][0]!;
    const [data] = (await once(connection, 'message')) as [string];
    expect(data).to.equal('still here');
    ws.close();
    await once(ws, 'close');
    await new Promise<void>((resolve) => server.close(resolve));
  });
});
