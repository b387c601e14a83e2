/**
 * WebSocketServer over real loopback sockets (127.0.0.1, port 0). Requests are written as raw
 * HTTP bytes with node:net where the wire matters, so every status line and header of the
 * answer is checked as sent. Groups follow RFC 6455 §4.2 (the server's side of the opening
 * handshake) and §7 (closing).
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { connect, createServer, WebSocket, WebSocketError, WebSocketServer } from '../../lib';
import type { ServerOptions } from '../../lib/server/server';
import type { UpgradeRequest } from '../../lib/handshake/handshake';
import { REFUSED_LINGER_BYTES } from '../../lib/server/accept';
import { hex, readAll } from '../helpers/sockets';
import { hasOpenssl, selfSignedCert } from '../helpers/tls';

/** RFC 6455 §1.3: the sample nonce and the Sec-WebSocket-Accept the server must answer with. */
const RFC_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const RFC_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
/** RFC 6455 §5.7: a masked text frame "Hello" and a masked ping "Hello". */
const MASKED_HELLO = hex('81 85 37 fa 21 3d 7f 9f 4d 51 58');
const MASKED_PING_HELLO = hex('89 85 37 fa 21 3d 7f 9f 4d 51 58');
const UNMASKED_PONG_HELLO = hex('8a 05 48 65 6c 6c 6f');
const HEAD_END = '\r\n\r\n';

interface RequestSpec {
  method?: string;
  path?: string;
  version?: string;
  /** Replaces (string) or removes (null) a default header; other names are added. */
  headers?: Record<string, string | null>;
}

/** A client opening handshake as raw text (RFC 6455 §4.1), with the §1.3 sample key. */
function request(spec: RequestSpec = {}): string {
  const headers: Record<string, string | null> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': RFC_KEY,
    'Sec-WebSocket-Version': '13',
    ...spec.headers,
  };
  let text = `${spec.method ?? 'GET'} ${spec.path ?? '/'} HTTP/${spec.version ?? '1.1'}\r\n`;
  for (const [name, value] of Object.entries(headers)) if (value !== null) text += `${name}: ${value}\r\n`;
  return `${text}\r\n`;
}

interface Response {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Bytes after the head (frames, for a 101). */
  rest: Buffer;
}

function parseResponse(bytes: Buffer): Response {
  const end = bytes.indexOf(HEAD_END);
  if (end === -1) throw new Error(`no complete response head in ${JSON.stringify(bytes.toString('latin1'))}`);
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
  if (m === null) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const rest = bytes.subarray(end + HEAD_END.length);
  return { status: Number(m[1]), headers, body: rest.toString('utf8'), rest };
}

/** Reads from `socket` until a whole response head came (and `extra` more bytes after it). */
function readHead(socket: net.Socket, extra = 0): Promise<Response> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      const all = Buffer.concat(chunks);
      const end = all.indexOf(HEAD_END);
      if (end !== -1 && all.length >= end + HEAD_END.length + extra) {
        done();
        resolve(parseResponse(all));
      }
    };
    const onClose = (): void => {
      done();
      reject(new Error(`closed after ${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`));
    };
    const done = (): void => {
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
  });
}

async function rawConnect(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

/** Sends `bytes` and reads everything until the server closes the connection. */
async function refused(port: number, bytes: string | Buffer): Promise<Response> {
  const socket = await rawConnect(port);
  const all = readAll(socket);
  socket.write(bytes);
  const response = parseResponse(await all);
  expect(socket.destroyed || socket.readableEnded, 'the server closed the socket').to.equal(true);
  return response;
}

/** Sends a request and resolves with the 101 answer, the socket, and the server's WebSocket. */
async function accepted(
  server: WebSocketServer,
  port: number,
  bytes: string | Buffer = request(),
): Promise<{ response: Response; socket: net.Socket; ws: WebSocket; req: UpgradeRequest }> {
  const socket = await rawConnect(port);
  const connection = once(server, 'connection') as Promise<[WebSocket, UpgradeRequest]>;
  const head = readHead(socket);
  socket.write(bytes);
  const response = await head;
  expect(response.status).to.equal(101);
  const [ws, req] = await connection;
  return { response, socket, ws, req };
}

async function standalone(options: ServerOptions = {}): Promise<{ server: WebSocketServer; port: number }> {
  const server = createServer({ port: 0, host: '127.0.0.1', ...options });
  await once(server, 'listening');
  return { server, port: server.address()!.port };
}

function closeServer(server: WebSocketServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Server-side sockets still open (standalone mode): a refused socket must not linger. */
function connections(server: WebSocketServer): Promise<number> {
  const netServer = (server as unknown as { netServer: net.Server }).netServer;
  return new Promise((resolve, reject) => netServer.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** Waits until the server has `left` sockets open (none by default). */
async function untilNoConnections(server: WebSocketServer, left = 0): Promise<void> {
  while ((await connections(server)) > left) await new Promise((r) => setTimeout(r, 10));
}

function closed(ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
}

/** Reads the close frame a server sent unmasked to a raw client: [code, reason]. */
function closeOf(frame: Buffer): [number, string] {
  expect(frame[0]).to.equal(0x88);
  const length = frame[1]!;
  return [frame.readUInt16BE(2), frame.toString('utf8', 4, 2 + length)];
}

describe('WebSocketServer', () => {
  describe('opening handshake, RFC 6455 §4.2 (standalone, raw TCP)', () => {
    let server: WebSocketServer;
    let port: number;
    const rejections: WebSocketError[] = [];

    beforeEach(async () => {
      ({ server, port } = await standalone({ maxHeaderSize: 1024 }));
      rejections.length = 0;
      server.on('rejected', (err: WebSocketError) => rejections.push(err));
    });
    afterEach(async () => {
      for (const ws of server.clients) ws.terminate();
      await closeServer(server);
    });

    it('answers a valid request with 101 and the Sec-WebSocket-Accept of RFC 6455 §1.3', async () => {
      const { response, ws, req, socket } = await accepted(server, port);
      expect(response.headers['upgrade']!.toLowerCase()).to.equal('websocket');
      expect(response.headers['connection']!.toLowerCase()).to.equal('upgrade');
      expect(response.headers['sec-websocket-accept']).to.equal(RFC_ACCEPT);
      expect(response.headers).not.to.have.property('sec-websocket-protocol');
      expect(response.headers).not.to.have.property('sec-websocket-extensions');
      expect(req.url).to.equal('/');
      expect(ws.readyState).to.equal(WebSocket.OPEN);
      const message = once(ws, 'message');
      socket.write(MASKED_HELLO);
      expect(await message).to.deep.equal(['Hello', false]);
      socket.destroy();
    });

    const accepts: Array<[string, RequestSpec]> = [
      ['Upgrade in another case ("WebSocket")', { headers: { Upgrade: 'WebSocket' } }],
      ['Connection "keep-alive, Upgrade"', { headers: { Connection: 'keep-alive, Upgrade' } }],
      ['Connection "UPGRADE" in capitals', { headers: { Connection: 'UPGRADE' } }],
      ['Connection "Upgrade,keep-alive" without a space', { headers: { Connection: 'Upgrade,keep-alive' } }],
      ['header names in lower case', { headers: { Upgrade: null, upgrade: 'websocket' } }],
    ];
    for (const [name, spec] of accepts) {
      it(`accepts ${name}`, async () => {
        const { response, socket } = await accepted(server, port, request(spec));
        expect(response.headers['sec-websocket-accept']).to.equal(RFC_ACCEPT);
        socket.destroy();
      });
    }

    // RFC 6455 §4.2.1: a request that is not a valid handshake gets "an appropriate error code
    // (such as 400 Bad Request)"; §4.2.2: a version we do not speak gets 426 and the versions we
    // do speak in Sec-WebSocket-Version.
    const refusals: Array<[string, RequestSpec, number, string]> = [
      ['POST', { method: 'POST' }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['HTTP/1.0', { version: '1.0' }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['no Upgrade header', { headers: { Upgrade: null } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['Upgrade: h2c', { headers: { Upgrade: 'h2c' } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['no Connection header', { headers: { Connection: null } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['Connection: keep-alive only', { headers: { Connection: 'keep-alive' } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['no Host header', { headers: { Host: null } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['no Sec-WebSocket-Key', { headers: { 'Sec-WebSocket-Key': null } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['a key of 15 bytes', { headers: { 'Sec-WebSocket-Key': Buffer.alloc(15, 1).toString('base64') } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['a key of 17 bytes', { headers: { 'Sec-WebSocket-Key': Buffer.alloc(17, 1).toString('base64') } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['a key that is not base64', { headers: { 'Sec-WebSocket-Key': '!!!!!!!!!!!!!!!!!!!!!!==' } }, 400, 'WS_ERR_INVALID_HANDSHAKE'],
      ['Sec-WebSocket-Version: 8', { headers: { 'Sec-WebSocket-Version': '8' } }, 426, 'WS_ERR_UNSUPPORTED_VERSION'],
      ['no Sec-WebSocket-Version', { headers: { 'Sec-WebSocket-Version': null } }, 426, 'WS_ERR_UNSUPPORTED_VERSION'],
    ];
    for (const [name, spec, status, code] of refusals) {
      it(`refuses ${name} with ${status}, closes the socket and keeps serving`, async () => {
        const response = await refused(port, request(spec));
        expect(response.status).to.equal(status);
        expect(response.headers['connection']).to.equal(status === 426 ? 'Upgrade, close' : 'close');
        expect(Number(response.headers['content-length'])).to.equal(Buffer.byteLength(response.body));
        if (status === 426) {
          expect(response.headers['sec-websocket-version']).to.equal('13');
          expect(response.headers['upgrade']).to.equal('websocket');
        }
        expect(rejections.map((e) => e.code)).to.deep.equal([code]);
        await untilNoConnections(server);
        const next = await accepted(server, port);
        next.socket.destroy();
      });
    }

    it('answers a plain browser GET (no Upgrade) with 400, as RFC 6455 §4.2.1 says', async () => {
      // 400, not 426: RFC 6455 §4.2.1 asks for "an appropriate error code (such as 400 Bad
      // Request)" for any request that is not a WebSocket handshake; a 426 would have to carry
      // an Upgrade header and "Connection: upgrade" (RFC 9110 §15.5.22, §7.8).
      const browser =
        'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nUser-Agent: Mozilla/5.0\r\nConnection: keep-alive\r\n\r\n';
      const response = await refused(port, browser);
      expect(response.status).to.equal(400);
      expect(rejections.map((e) => e.code)).to.deep.equal(['WS_ERR_INVALID_HANDSHAKE']);
    });

    it('answers a header block over maxHeaderSize with 431, then closes the socket', async () => {
      const big = request({ headers: { 'X-Padding': 'a'.repeat(2000) } });
      const response = await refused(port, big);
      expect(response.status).to.equal(431);
      expect(rejections.map((e) => e.code)).to.deep.equal(['WS_ERR_HEADER_TOO_LARGE']);
      await untilNoConnections(server);
    });

    it('answers 431 as soon as maxHeaderSize bytes came without the end of the head', async () => {
      const socket = await rawConnect(port);
      const all = readAll(socket);
      // The request never ends: only the limit can stop it.
      socket.write(`GET / HTTP/1.1\r\nX-Padding: ${'a'.repeat(1100)}`);
      const response = parseResponse(await all);
      expect(response.status).to.equal(431);
      await untilNoConnections(server);
    });

    it('destroys a refused socket whose peer never closes its side', async () => {
      // allowHalfOpen: this client reads our answer and FIN but never sends its own FIN.
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await once(socket, 'connect');
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', () => {});
      socket.write(request({ method: 'POST' }));
      await once(socket, 'end');
      expect(parseResponse(Buffer.concat(chunks)).status).to.equal(400);
      await untilNoConnections(server);
      socket.destroy();
    });

    it('destroys a refused socket whose peer keeps sending, after dropping REFUSED_LINGER_BYTES', async () => {
      // A header flood: the refusal (431) is sent at maxHeaderSize; the peer goes on sending
      // 8 MiB and never closes. Reading and dropping all of it until the linger timer costs the
      // server the whole flood; it must stop after a bounded number of dropped bytes.
      const netServer = (server as unknown as { netServer: net.Server }).netServer;
      const accepted = once(netServer, 'connection') as Promise<[net.Socket]>;
      const socket = await rawConnect(port);
      const [serverSide] = await accepted;
      const serverClosed = once(serverSide, 'close');
      socket.on('error', () => {});
      socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
      const line = `X-Flood: ${'a'.repeat(1014)}\r\n`;
      const flood = Buffer.from(line.repeat(64));
      for (let i = 0; i < 128 && !socket.destroyed; i++) {
        // once() rejects on the EPIPE or ECONNRESET that ends the flood.
        if (!socket.write(flood)) await Promise.race([once(socket, 'drain'), once(socket, 'close')]).catch(() => {});
      }
      await serverClosed;
      // maxHeaderSize (1 KiB here) + REFUSED_LINGER_BYTES, plus what the socket had read
      // ahead (reads of up to 64 KiB): far from the 8 MiB it would drop until the linger timer.
      expect(serverSide.bytesRead).to.be.at.most(1024 + REFUSED_LINGER_BYTES + 2 * 65536);
      expect(rejections.map((e) => e.code)).to.deep.equal(['WS_ERR_HEADER_TOO_LARGE']);
      socket.destroy();
    });

    it('refuses a bare-LF request with 400', async () => {
      const response = await refused(port, request().replace(/\r\n/g, '\n'));
      expect(response.status).to.equal(400);
    });

    it('delivers frames sent in the same TCP write as the request (the head)', async () => {
      const bytes = Buffer.concat([Buffer.from(request()), MASKED_HELLO, MASKED_PING_HELLO, MASKED_HELLO]);
      const socket = await rawConnect(port);
      const connection = once(server, 'connection') as Promise<[WebSocket]>;
      const head = readHead(socket, UNMASKED_PONG_HELLO.length);
      socket.write(bytes);
      const [ws] = await connection;
      const got: string[] = [];
      ws.on('message', (data: string) => got.push(data));
      const response = await head;
      expect(response.status).to.equal(101);
      // The ping in the head was answered right after the 101.
      expect(response.rest).to.deep.equal(UNMASKED_PONG_HELLO);
      while (got.length < 2) await once(ws, 'message');
      expect(got).to.deep.equal(['Hello', 'Hello']);
      socket.destroy();
    });

    it('delivers frames sent right after a request that came byte by byte', async () => {
      const bytes = Buffer.concat([Buffer.from(request()), MASKED_HELLO]);
      const socket = await rawConnect(port);
      const connection = once(server, 'connection') as Promise<[WebSocket]>;
      const head = readHead(socket);
      for (let i = 0; i < bytes.length; i++) {
        socket.write(bytes.subarray(i, i + 1));
        await new Promise((r) => setImmediate(r));
      }
      const [ws] = await connection;
      expect((await head).status).to.equal(101);
      expect(await once(ws, 'message')).to.deep.equal(['Hello', false]);
      socket.destroy();
    });
  });

  describe('handshakeTimeout', () => {
    it('drops a connection whose request is not complete in time, and keeps serving', async () => {
      const { server, port } = await standalone({ handshakeTimeout: 100 });
      const socket = await rawConnect(port);
      const all = readAll(socket);
      socket.write(request().slice(0, 40));
      // Nothing is answered: the socket is closed.
      expect((await all).length).to.equal(0);
      await untilNoConnections(server);
      const next = await accepted(server, port);
      next.socket.destroy();
      next.ws.terminate();
      await closeServer(server);
    });

    it('cuts off every client that keeps its request incomplete, while complete ones get through; then stops checking', async () => {
      const { server, port } = await standalone({ handshakeTimeout: 80 });
      const slow: net.Socket[] = [];
      const closed: Array<Promise<Buffer>> = [];
      for (let i = 0; i < 3; i++) {
        const socket = await rawConnect(port);
        closed.push(readAll(socket));
        socket.write(request().slice(0, 10 + i));
        slow.push(socket);
        await new Promise((r) => setTimeout(r, 30));
      }
      const open = await accepted(server, port);
      // Each slow client is closed without an answer; the complete one stays open past the timeout.
      for (const all of closed) expect((await all).length).to.equal(0);
      await untilNoConnections(server, 1);
      await new Promise((r) => setTimeout(r, 100));
      expect(open.ws.readyState).to.equal(WebSocket.OPEN);
      expect(server.clients.size).to.equal(1);
      // No handshake pending: no timer left checking deadlines (the RequestReader of lib/server/accept.ts).
      expect((server as unknown as { handshaking: { sweepTimer: unknown } }).handshaking.sweepTimer).to.equal(null);
      const message = once(open.ws, 'message');
      open.socket.write(MASKED_HELLO);
      expect(await message).to.deep.equal(['Hello', false]);
      const gone = once(open.ws, 'close');
      open.socket.destroy();
      await gone;
      expect(server.clients.size).to.equal(0);
      await closeServer(server);
    });

    it('does not drop a connection once it is open', async () => {
      const { server, port } = await standalone({ handshakeTimeout: 50 });
      const { ws, socket } = await accepted(server, port);
      await new Promise((r) => setTimeout(r, 150));
      expect(ws.readyState).to.equal(WebSocket.OPEN);
      const message = once(ws, 'message');
      socket.write(MASKED_HELLO);
      expect(await message).to.deep.equal(['Hello', false]);
      socket.destroy();
      await closeServer(server);
    });
  });

  describe('verifyClient', () => {
    const cases: Array<[string, ServerOptions['verifyClient'], number, string]> = [
      ['false', () => false, 401, 'Unauthorized'],
      ['{ status: 403, message }', () => ({ status: 403, message: 'not from here' }), 403, 'not from here'],
      ['a Promise of { status: 403 }', async () => ({ status: 403 }), 403, 'Forbidden'],
      ['a Promise of false', () => Promise.resolve(false), 401, 'Unauthorized'],
    ];
    for (const [name, verifyClient, status, body] of cases) {
      it(`refuses with ${status} when it returns ${name}`, async () => {
        const { server, port } = await standalone({ verifyClient });
        const rejected = once(server, 'rejected') as Promise<[WebSocketError, UpgradeRequest]>;
        const response = await refused(port, request());
        expect(response.status).to.equal(status);
        expect(response.body).to.equal(body);
        const [err, req, answered] = (await rejected) as unknown as [WebSocketError, UpgradeRequest, number];
        expect(err.code).to.equal('WS_ERR_HANDSHAKE_REJECTED');
        expect(req.url).to.equal('/');
        expect(answered).to.equal(status);
        await untilNoConnections(server);
        await closeServer(server);
      });
    }

    it('loses no frame sent with the request while an async verifyClient decides', async () => {
      const { server, port } = await standalone({
        verifyClient: () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 50)),
      });
      const socket = await rawConnect(port);
      const connection = once(server, 'connection') as Promise<[WebSocket]>;
      const head = readHead(socket);
      socket.write(Buffer.concat([Buffer.from(request()), MASKED_HELLO]));
      // More frames while the hook is still deciding.
      await new Promise((r) => setTimeout(r, 10));
      socket.write(MASKED_HELLO);
      const [ws] = await connection;
      expect((await head).status).to.equal(101);
      const got: string[] = [];
      ws.on('message', (data: string) => got.push(data));
      while (got.length < 2) await once(ws, 'message');
      expect(got).to.deep.equal(['Hello', 'Hello']);
      socket.destroy();
      await closeServer(server);
    });

    it('passes extra headers of a refusal through (e.g. WWW-Authenticate)', async () => {
      const { server, port } = await standalone({
        verifyClient: () => ({ status: 401, headers: { 'WWW-Authenticate': 'Basic realm="ws"' } }),
      });
      const response = await refused(port, request());
      expect(response.status).to.equal(401);
      expect(response.headers['www-authenticate']).to.equal('Basic realm="ws"');
      await closeServer(server);
    });

    for (const [name, verifyClient] of [
      ['true', () => true],
      ['a Promise of true', () => new Promise<boolean>((r) => setTimeout(() => r(true), 10))],
    ] as Array<[string, ServerOptions['verifyClient']]>) {
      it(`accepts when it returns ${name}, and sees the request and what it offered`, async () => {
        const seen: Array<[string | undefined, string[]]> = [];
        const { server, port } = await standalone({
          verifyClient: async (req, info) => {
            seen.push([info.origin, info.protocols]);
            expect(req.headers['x-token']).to.equal('t1');
            return verifyClient!(req, info);
          },
        });
        const bytes = Buffer.concat([
          Buffer.from(
            request({ headers: { Origin: 'https://example.com', 'Sec-WebSocket-Protocol': 'chat', 'X-Token': 't1' } }),
          ),
          MASKED_HELLO,
        ]);
        const { ws, socket } = await accepted(server, port, bytes);
        // Frames that came with the request wait for the (async) verdict and are not lost.
        expect(await once(ws, 'message')).to.deep.equal(['Hello', false]);
        expect(seen).to.deep.equal([['https://example.com', ['chat']]]);
        socket.destroy();
        await closeServer(server);
      });
    }

    for (const [name, verifyClient] of [
      ['throws', () => {
        throw new Error('bug in the hook');
      }],
      ['returns a rejected Promise', () => Promise.reject(new Error('bug in the hook'))],
    ] as Array<[string, ServerOptions['verifyClient']]>) {
      it(`answers 500 when it ${name}, without crashing (no 'error' listener)`, async () => {
        const { server, port } = await standalone({ verifyClient });
        const rejected = once(server, 'rejected') as Promise<[WebSocketError]>;
        const response = await refused(port, request());
        expect(response.status).to.equal(500);
        const [err] = await rejected;
        expect(err.code).to.equal('WS_ERR_HANDSHAKE_REJECTED');
        expect(err.message).to.contain('bug in the hook');
        await untilNoConnections(server);
        // The hook fails for the next client too, but the server is up and answers it.
        expect((await refused(port, request())).status).to.equal(500);
        await closeServer(server);
      });
    }
  });

  describe('subprotocols, RFC 6455 §4.2.2 /subprotocol/', () => {
    async function negotiate(protocols: ServerOptions['protocols'], offered: string | null): Promise<string | undefined> {
      const { server, port } = await standalone({ protocols });
      const headers: Record<string, string> = offered === null ? {} : { 'Sec-WebSocket-Protocol': offered };
      const { response, ws, socket } = await accepted(server, port, request({ headers }));
      expect(ws.protocol).to.equal(response.headers['sec-websocket-protocol'] ?? '');
      socket.destroy();
      await closeServer(server);
      return response.headers['sec-websocket-protocol'];
    }

    it("picks by the server's order of preference when several match", async () => {
      // The list option is the server's order of preference (the RFC lets the server choose
      // among the offered ones); the client's order only breaks no ties.
      expect(await negotiate(['b', 'a'], 'a, b')).to.equal('b');
      expect(await negotiate(['a', 'b'], 'b, a')).to.equal('a');
    });

    it('answers the one protocol both speak', async () => {
      expect(await negotiate(['chat', 'superchat'], 'v2.other, superchat')).to.equal('superchat');
    });

    it('sends no Sec-WebSocket-Protocol when none matches, or none was offered', async () => {
      expect(await negotiate(['chat'], 'other')).to.equal(undefined);
      expect(await negotiate(['chat'], null)).to.equal(undefined);
    });

    it('takes the offered list from several header lines', async () => {
      const { server, port } = await standalone({ protocols: ['b'] });
      const text = request().replace(/\r\n\r\n$/, '\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n\r\n');
      const { response, socket } = await accepted(server, port, text);
      expect(response.headers['sec-websocket-protocol']).to.equal('b');
      socket.destroy();
      await closeServer(server);
    });

    it('asks a function, which gets the offered list and the request', async () => {
      const calls: Array<[string[], string]> = [];
      const pick = (offered: string[], req: UpgradeRequest): string => {
        calls.push([offered, req.url]);
        return offered[offered.length - 1]!;
      };
      expect(await negotiate(pick, 'x, y, z')).to.equal('z');
      expect(calls).to.deep.equal([[['x', 'y', 'z'], '/']]);
    });

    it('never answers a protocol the client did not offer, even when a function returns one', async () => {
      expect(await negotiate(() => 'not-offered', 'x, y')).to.equal(undefined);
      expect(await negotiate(() => false, 'x, y')).to.equal(undefined);
    });

    it('refuses an invalid Sec-WebSocket-Protocol list with 400', async () => {
      const { server, port } = await standalone({ protocols: ['a'] });
      const response = await refused(port, request({ headers: { 'Sec-WebSocket-Protocol': 'a, a' } }));
      expect(response.status).to.equal(400);
      await closeServer(server);
    });
  });

  describe('path option', () => {
    let server: WebSocketServer;
    let port: number;
    before(async () => ({ server, port } = await standalone({ path: '/ws' })));
    after(() => closeServer(server));

    it('accepts the path, with or without a query', async () => {
      for (const path of ['/ws', '/ws?token=1']) {
        const { req, socket } = await accepted(server, port, request({ path }));
        expect(req.url).to.equal(path);
        socket.destroy();
      }
    });

    it('refuses another path with 400', async () => {
      for (const path of ['/', '/ws/', '/wsx', '/other?x=/ws']) {
        const response = await refused(port, request({ path }));
        expect(response.status, path).to.equal(400);
      }
    });
  });

  describe('modes', () => {
    it('attached to an http.Server: upgrades, and the http server still serves normal requests', async () => {
      const httpServer = http.createServer((_req, res) => res.end('plain http'));
      httpServer.listen(0, '127.0.0.1');
      await once(httpServer, 'listening');
      const port = (httpServer.address() as net.AddressInfo).port;
      const server = createServer({ server: httpServer });
      server.on('connection', (ws: WebSocket) => ws.pipe(ws));

      const body = await new Promise<string>((resolve, reject) => {
        http.get(`http://127.0.0.1:${port}/`, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve(text));
        }).on('error', reject);
      });
      expect(body).to.equal('plain http');

      const { response, socket } = await accepted(server, port, Buffer.concat([Buffer.from(request()), MASKED_HELLO]));
      expect(response.headers['sec-websocket-accept']).to.equal(RFC_ACCEPT);
      // The echo of the frame that came in the same write as the request.
      const echo = response.rest.length >= 7 ? response.rest : await new Promise<Buffer>((r) => socket.once('data', r));
      expect(echo).to.deep.equal(hex('81 05 48 65 6c 6c 6f'));

      // Our client too.
      const client = connect(`ws://127.0.0.1:${port}/`);
      await once(client, 'open');
      client.send('round trip');
      expect(await once(client, 'message')).to.deep.equal(['round trip', false]);
      client.close();
      await closed(client);
      socket.destroy();

      // A refusal goes through the same socket the http server handed over.
      const bad = await refused(port, request({ headers: { 'Sec-WebSocket-Version': '8' } }));
      expect(bad.status).to.equal(426);
      await closeServer(server);
      httpServer.closeAllConnections();
      await new Promise((r) => httpServer.close(r));
    });

    it('noServer + handleUpgrade: completes upgrades handed over by hand', async () => {
      const server = createServer({ noServer: true });
      expect(server.address()).to.equal(null);
      const httpServer = http.createServer();
      httpServer.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        if (req.url === '/ws') server.handleUpgrade(req as UpgradeRequest, socket, head, (ws) => server.emit('connection', ws, req));
        else socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      });
      httpServer.listen(0, '127.0.0.1');
      await once(httpServer, 'listening');
      const port = (httpServer.address() as net.AddressInfo).port;

      const { ws, socket } = await accepted(server, port, Buffer.concat([Buffer.from(request({ path: '/ws' })), MASKED_HELLO]));
      expect(await once(ws, 'message')).to.deep.equal(['Hello', false]);
      expect(server.clients.has(ws)).to.equal(true);
      socket.destroy();
      await closed(ws);
      expect(server.clients.has(ws)).to.equal(false);

      expect((await refused(port, request({ path: '/elsewhere' }))).status).to.equal(404);
      expect((await refused(port, request({ path: '/ws', method: 'POST', headers: { 'Content-Length': '0' } }))).status).to.be.oneOf([
        400, 404,
      ]);

      await closeServer(server);
      // Once closed, handleUpgrade refuses with 503 instead of opening a connection.
      expect((await refused(port, request({ path: '/ws' }))).status).to.equal(503);
      await new Promise((r) => httpServer.close(r));
    });

    (hasOpenssl() ? it : it.skip)('on an https.Server: wss:// with our client', async () => {
      const { key, cert } = selfSignedCert();
      const httpsServer = https.createServer({ key, cert });
      httpsServer.listen(0, '127.0.0.1');
      await once(httpsServer, 'listening');
      const port = (httpsServer.address() as net.AddressInfo).port;
      const server = createServer({ server: httpsServer as unknown as http.Server });
      server.on('connection', (ws: WebSocket) => ws.pipe(ws));
      const client = connect(`wss://127.0.0.1:${port}/`, { tls: { ca: cert } });
      await once(client, 'open');
      client.send(Buffer.from([1, 2, 3]));
      expect(await once(client, 'message')).to.deep.equal([Buffer.from([1, 2, 3]), true]);
      client.close(1000, 'bye');
      // 'close' reports the server's close frame: the echo of our code.
      expect((await closed(client))[0]).to.equal(1000);
      await closeServer(server);
      await new Promise((r) => httpsServer.close(r));
    });
  });

  describe('close(), RFC 6455 §7.4.1 1001 going away', () => {
    it('sends 1001 to open clients, stops accepting, and calls back', async () => {
      const { server, port } = await standalone();
      const ours = connect(`ws://127.0.0.1:${port}`);
      await once(ours, 'open');
      const raw = await accepted(server, port);
      const rawClose = new Promise<Buffer>((resolve) => raw.socket.once('data', resolve));
      expect(server.clients.size).to.equal(2);

      let calledBack = false;
      const done = new Promise<void>((resolve) =>
        server.close(() => {
          calledBack = true;
          resolve();
        }),
      );
      const [code] = closeOf(await rawClose);
      expect(code).to.equal(1001);
      expect((await closed(ours))[0]).to.equal(1001);
      // The raw client answers the close (masked, empty), as a client must.
      raw.socket.end(hex('88 80 00 00 00 00'));
      await done;
      expect(calledBack).to.equal(true);
      expect(server.clients.size).to.equal(0);

      // No longer accepting: the port is closed.
      const late = connect(`ws://127.0.0.1:${port}`);
      const errors: Array<Error & { code?: string }> = [];
      late.on('error', (err: Error) => errors.push(err));
      expect((await closed(late))[0]).to.equal(1006);
      expect(errors.map((e) => e.code)).to.deep.equal(['ECONNREFUSED']);
      // A second close() still calls back.
      await closeServer(server);
    });

    it('drops requests still being read', async () => {
      const { server, port } = await standalone();
      const socket = await rawConnect(port);
      const errors: Error[] = [];
      socket.on('error', (err: Error) => errors.push(err)); // the drop may come as a reset
      const all = readAll(socket);
      socket.write(request().slice(0, 20));
      await new Promise((r) => setTimeout(r, 20));
      await closeServer(server);
      expect((await all).length).to.equal(0);
      expect(socket.destroyed || socket.readableEnded).to.equal(true);
    });

    it('refuses with 503 a handshake whose verifyClient answers after close()', async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const { server, port } = await standalone({ verifyClient: () => gate.then(() => true) });
      const socket = await rawConnect(port);
      const all = readAll(socket);
      socket.write(request());
      await new Promise((r) => setTimeout(r, 20));
      const done = closeServer(server);
      release();
      expect(parseResponse(await all).status).to.equal(503);
      await done;
    });

    it('emits an error for a port already in use (with a listener, it does not crash)', async () => {
      const { server, port } = await standalone();
      const second = createServer({ port, host: '127.0.0.1' });
      const [err] = (await once(second, 'error')) as [Error & { code?: string }];
      expect(err.code).to.equal('EADDRINUSE');
      await closeServer(server);
    });
  });
});

describe('WebSocketServer maxConnections', () => {
  const refusal = (ws: WebSocket): Promise<WebSocketError> =>
    new Promise((resolve) => ws.once('error', (err: WebSocketError) => resolve(err)));

  it('answers 503 over the limit, and accepts again once a connection has closed', async () => {
    const server = createServer({ port: 0, host: '127.0.0.1', maxConnections: 2 });
    await once(server, 'listening');
    const url = `ws://127.0.0.1:${server.address()!.port}`;
    const statuses: number[] = [];
    server.on('rejected', (_err: WebSocketError, _req: unknown, status: number) => statuses.push(status));
    const first = connect(url);
    const second = connect(url);
    await Promise.all([once(first, 'open'), once(second, 'open')]);
    const third = connect(url);
    const err = await refusal(third);
    expect(err.code).to.equal('WS_ERR_HANDSHAKE_REJECTED');
    expect(err.message).to.match(/503/);
    expect(statuses).to.deep.equal([503]);
    first.close();
    await new Promise((r) => first.once('close', r));
    while (server.clients.size > 1) await new Promise((r) => setTimeout(r, 10));
    const fourth = connect(url);
    await once(fourth, 'open');
    for (const ws of [second, fourth]) ws.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('counts connections attached to an http server too', async () => {
    const httpServer = http.createServer();
    httpServer.listen(0, '127.0.0.1');
    await once(httpServer, 'listening');
    const server = createServer({ server: httpServer, maxConnections: 1 });
    const url = `ws://127.0.0.1:${(httpServer.address() as net.AddressInfo).port}`;
    const first = connect(url);
    await once(first, 'open');
    const err = await refusal(connect(url));
    expect(err.message).to.match(/503/);
    first.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise((r) => httpServer.close(r));
  });
});
