/**
 * connect() over real loopback sockets (127.0.0.1, port 0): against our server, and against
 * fake servers written with node:net that answer exact bytes, so that every check the client
 * MUST make on the server's answer (RFC 6455 §4.1) is exercised. TLS with a certificate made
 * at test time.
 */
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { connect, createServer, WebSocket, WebSocketServer } from '../../lib';
import type { ClientOptions } from '../../lib/client/client';
import type { UpgradeRequest } from '../../lib/handshake/handshake';
import { freePort, hex } from '../helpers/sockets';
import { hasOpenssl, selfSignedCert } from '../helpers/tls';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** RFC 6455 §5.7: an unmasked text frame "Hello" and an unmasked ping "Hello". */
const UNMASKED_HELLO = hex('81 05 48 65 6c 6c 6f');
const UNMASKED_PING_HELLO = hex('89 05 48 65 6c 6c 6f');
const HEAD_END = '\r\n\r\n';

type ErrorWithCode = Error & { code?: string; closeCode?: number };

/** Sec-WebSocket-Accept computed here, independently of lib/handshake/handshake.ts (RFC 6455 §4.2.2). */
function accept(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** The request head a fake server received, by lower-case header name. */
interface SeenRequest {
  line: string;
  headers: Record<string, string>;
}

function parseRequest(text: string): SeenRequest {
  const [line, ...rest] = text.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of rest) {
    const colon = l.indexOf(':');
    const name = l.slice(0, colon).toLowerCase();
    const value = l.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { line: line!, headers };
}

interface Fake {
  port: number;
  url: string;
  requests: SeenRequest[];
  /** Server-side sockets, to see what became of them. */
  sockets: net.Socket[];
  close(): Promise<void>;
}

/**
 * A fake WebSocket server: reads each request head, then calls `answer` with it and the socket
 * (which may write anything, or nothing).
 */
async function fakeServer(answer: (req: SeenRequest, socket: net.Socket) => void): Promise<Fake> {
  const requests: SeenRequest[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const end = text.indexOf(HEAD_END);
      if (end === -1) return;
      socket.removeListener('data', onData);
      const req = parseRequest(text.slice(0, end));
      requests.push(req);
      answer(req, socket);
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/`,
    requests,
    sockets,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A correct 101 for `req`, with extra header lines. */
function switching(req: SeenRequest, extra = ''): string {
  return (
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept(req.headers['sec-websocket-key']!)}\r\n${extra}\r\n`
  );
}

interface Outcome {
  errors: ErrorWithCode[];
  close: [number, string];
  opened: boolean;
}

/** Waits for 'close', recording the errors and whether 'open' came. */
async function outcome(ws: WebSocket, listenForErrors = true): Promise<Outcome> {
  const errors: ErrorWithCode[] = [];
  let opened = false;
  ws.on('open', () => (opened = true));
  if (listenForErrors) ws.on('error', (err: ErrorWithCode) => errors.push(err));
  const close = await new Promise<[number, string]>((resolve) =>
    ws.once('close', (code: number, reason: string) => resolve([code, reason])),
  );
  return { errors, close, opened };
}

/** Expects the connection to have failed before opening, with one error of `code`. */
function expectFailed(result: Outcome, ws: WebSocket, code: string, closeCode?: number): ErrorWithCode {
  expect(result.errors.map((e) => e.code)).to.deep.equal([code]);
  const err = result.errors[0]!;
  if (closeCode !== undefined) expect(err.closeCode).to.equal(closeCode);
  expect(result.opened).to.equal(false);
  expect(result.close[0]).to.equal(1006);
  expect(ws.readyState).to.equal(WebSocket.CLOSED);
  expect(ws.error).to.equal(err);
  return err;
}

async function ourServer(options = {}): Promise<{ server: WebSocketServer; port: number; url: string }> {
  const server = createServer({ port: 0, host: '127.0.0.1', ...options });
  await once(server, 'listening');
  const port = server.address()!.port;
  return { server, port, url: `ws://127.0.0.1:${port}` };
}

function closeServer(server: WebSocketServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('connect()', () => {
  describe('to our server', () => {
    let server: WebSocketServer;
    let url: string;
    const seen: UpgradeRequest[] = [];
    before(async () => {
      ({ server, url } = await ourServer({
        protocols: ['chat.v2', 'chat.v1'],
        verifyClient: (req: UpgradeRequest) => {
          seen.push(req);
          return true;
        },
      }));
      server.on('connection', (ws: WebSocket) => {
        ws.on('error', () => {});
        ws.pipe(ws);
      });
    });
    beforeEach(() => (seen.length = 0));
    after(() => closeServer(server));

    it('opens, echoes text and binary, and closes with 1000', async () => {
      const ws = connect(url);
      expect(ws.readyState).to.equal(WebSocket.CONNECTING);
      const upgrade = once(ws, 'upgrade') as Promise<[{ statusCode: number }]>;
      await once(ws, 'open');
      expect((await upgrade)[0].statusCode).to.equal(101);
      expect(ws.readyState).to.equal(WebSocket.OPEN);
      expect(ws.protocol).to.equal('');
      ws.send('héllo');
      expect(await once(ws, 'message')).to.deep.equal(['héllo', false]);
      ws.send(Buffer.from([0, 255]));
      expect(await once(ws, 'message')).to.deep.equal([Buffer.from([0, 255]), true]);
      const result = outcome(ws);
      ws.close(1000);
      expect((await result).close[0]).to.equal(1000);
      expect((await result).errors).to.deep.equal([]);
    });

    it('offers its protocols; ws.protocol is the one the server chose', async () => {
      const ws = connect(url, { protocols: ['chat.v1', 'chat.v2', 'other'] });
      await once(ws, 'open');
      expect(seen[0]!.headers['sec-websocket-protocol']).to.equal('chat.v1, chat.v2, other');
      // The server's list is in its order of preference.
      expect(ws.protocol).to.equal('chat.v2');
      ws.terminate();
      await once(ws, 'close');
    });

    it('has no protocol when the server speaks none of those offered', async () => {
      const ws = connect(url, { protocols: ['x'] });
      await once(ws, 'open');
      expect(ws.protocol).to.equal('');
      ws.terminate();
      await once(ws, 'close');
    });

    it('sends custom headers, Origin, the path and the query', async () => {
      const ws = connect(new URL(`${url}/room/1?user=a%20b`), {
        headers: { Authorization: 'Bearer xyz', 'X-Custom': 'v' },
        origin: 'https://app.example',
      });
      await once(ws, 'open');
      const req = seen[0]!;
      expect(req.url).to.equal('/room/1?user=a%20b');
      expect(req.headers['authorization']).to.equal('Bearer xyz');
      expect(req.headers['x-custom']).to.equal('v');
      expect(req.headers['origin']).to.equal('https://app.example');
      ws.terminate();
      await once(ws, 'close');
    });

    it('sends messages written while CONNECTING once open, in order', async () => {
      const ws = connect(url);
      const got: Array<string | Buffer> = [];
      ws.on('message', (data: string | Buffer) => got.push(data));
      const sent: Array<string | Buffer> = ['one', Buffer.from('two'), 'three', ''];
      for (const m of sent) expect(ws.send(m)).to.be.a('boolean');
      expect(ws.readyState).to.equal(WebSocket.CONNECTING);
      expect(ws.bufferedAmount).to.equal(11);
      while (got.length < sent.length) await once(ws, 'message');
      expect(got).to.deep.equal(sent);
      ws.close();
      await once(ws, 'close');
    });

    it('close() while CONNECTING: one error, close 1006, no open, no crash', async () => {
      const ws = connect(url);
      const result = outcome(ws);
      ws.close();
      const { close, opened, errors } = await result;
      expect(close[0]).to.equal(1006);
      expect(opened).to.equal(false);
      expect(ws.readyState).to.equal(WebSocket.CLOSED);
      await new Promise((r) => setTimeout(r, 20));
      expect(errors.map((e) => e.code)).to.deep.equal(['WS_ERR_INVALID_STATE']);
    });

    it('close() while CONNECTING fails a queued send through its callback, with one error', async () => {
      const ws = connect(url);
      const callbacks: Array<Error | null | undefined> = [];
      ws.send('never sent', {}, (err) => callbacks.push(err));
      const closing = outcome(ws);
      ws.close();
      const { errors } = await closing;
      await new Promise((r) => setTimeout(r, 20));
      expect(callbacks.length).to.equal(1);
      expect((callbacks[0] as ErrorWithCode).code).to.equal('WS_ERR_INVALID_STATE');
      expect(errors.map((e) => e.code)).to.deep.equal(['WS_ERR_INVALID_STATE']);
    });

    // A listener attached right after close() must still hear 'close'.
    it("close() while CONNECTING emits 'close' after the call returns", async () => {
      const ws = connect(url);
      let duringCall = false;
      ws.once('close', () => (duringCall = true));
      ws.on('error', () => {});
      ws.close();
      expect(duringCall).to.equal(false);
      await outcome(ws);
    });

    it('terminate() while CONNECTING, without an error listener: close 1006', async () => {
      const ws = connect(url);
      const result = outcome(ws, false);
      ws.terminate();
      const { close, opened } = await result;
      expect(close[0]).to.equal(1006);
      expect(opened).to.equal(false);
    });

    it('a server-side refusal (426 for a version, 403 from verifyClient) is WS_ERR_HANDSHAKE_REJECTED', async () => {
      const { server: strict, url: strictUrl } = await ourServer({ verifyClient: () => ({ status: 403 }) });
      const ws = connect(strictUrl);
      const err = expectFailed(await outcome(ws), ws, 'WS_ERR_HANDSHAKE_REJECTED');
      expect(err.message).to.contain('403');
      await closeServer(strict);
    });
  });

  describe("the server's answer, RFC 6455 §4.1 (fake servers)", () => {
    let fake: Fake | null = null;
    afterEach(async () => {
      await fake?.close();
      fake = null;
    });

    it('sends a well-formed request with a fresh 16-byte key each time', async () => {
      fake = await fakeServer((req, socket) => socket.write(switching(req)));
      const a = connect(`ws://127.0.0.1:${fake.port}/p?q=1`, { protocols: ['a', 'b'], origin: 'http://o' });
      await once(a, 'open');
      const b = connect(`ws://127.0.0.1:${fake.port}`);
      await once(b, 'open');
      const [ra, rb] = fake.requests as [SeenRequest, SeenRequest];
      expect(ra.line).to.equal('GET /p?q=1 HTTP/1.1');
      expect(rb.line).to.equal('GET / HTTP/1.1');
      expect(ra.headers['host']).to.equal(`127.0.0.1:${fake.port}`);
      expect(ra.headers['upgrade']!.toLowerCase()).to.equal('websocket');
      expect(ra.headers['connection']!.toLowerCase()).to.equal('upgrade');
      expect(ra.headers['sec-websocket-version']).to.equal('13');
      expect(ra.headers['sec-websocket-protocol']).to.equal('a, b');
      expect(ra.headers['origin']).to.equal('http://o');
      expect(rb.headers).not.to.have.property('sec-websocket-protocol');
      expect(rb.headers).not.to.have.property('origin');
      for (const r of [ra, rb]) expect(Buffer.from(r.headers['sec-websocket-key']!, 'base64').length).to.equal(16);
      expect(ra.headers['sec-websocket-key']).not.to.equal(rb.headers['sec-websocket-key']);
      a.terminate();
      b.terminate();
    });

    it('delivers frames sent in the same chunk as the 101', async () => {
      fake = await fakeServer((req, socket) =>
        socket.write(Buffer.concat([Buffer.from(switching(req)), UNMASKED_HELLO, UNMASKED_PING_HELLO, UNMASKED_HELLO])),
      );
      const ws = connect(fake.url);
      const got: string[] = [];
      ws.on('message', (data: string) => got.push(data));
      const pinged = once(ws, 'ping');
      await once(ws, 'open');
      expect(((await pinged) as [Buffer])[0].toString()).to.equal('Hello');
      while (got.length < 2) await once(ws, 'message');
      expect(got).to.deep.equal(['Hello', 'Hello']);
      // The pong went back masked (RFC 6455 §5.3): 8a 85, a key, then 5 masked bytes.
      const socket = fake.sockets[0]!;
      const pong = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
      expect(pong.subarray(0, 2)).to.deep.equal(hex('8a 85'));
      const masked = pong.subarray(6, 11);
      for (let i = 0; i < 5; i++) masked[i] = masked[i]! ^ pong[2 + (i & 3)]!;
      expect(masked.toString()).to.equal('Hello');
      ws.terminate();
    });

    it('delivers a 101 and a frame that come byte by byte', async () => {
      fake = await fakeServer(async (req, socket) => {
        const bytes = Buffer.concat([Buffer.from(switching(req)), UNMASKED_HELLO]);
        for (let i = 0; i < bytes.length; i++) {
          socket.write(bytes.subarray(i, i + 1));
          await new Promise((r) => setImmediate(r));
        }
      });
      const ws = connect(fake.url);
      expect(await once(ws, 'message')).to.deep.equal(['Hello', false]);
      ws.terminate();
    });

    const failures: Array<[string, (req: SeenRequest) => string, string, number, ClientOptions?]> = [
      [
        'a wrong Sec-WebSocket-Accept',
        (req) => switching(req).replace(accept(req.headers['sec-websocket-key']!), accept('x'.repeat(24))),
        'WS_ERR_INVALID_ACCEPT',
        1002,
      ],
      [
        'no Sec-WebSocket-Accept',
        (req) => switching(req).replace(/Sec-WebSocket-Accept: .*\r\n/, ''),
        'WS_ERR_INVALID_ACCEPT',
        1002,
      ],
      [
        'the accept of the key itself (no GUID)',
        (req) =>
          switching(req).replace(
            accept(req.headers['sec-websocket-key']!),
            createHash('sha1').update(req.headers['sec-websocket-key']!).digest('base64'),
          ),
        'WS_ERR_INVALID_ACCEPT',
        1002,
      ],
      ['no Upgrade header', (req) => switching(req).replace('Upgrade: websocket\r\n', ''), 'WS_ERR_INVALID_HANDSHAKE', 1002],
      ['Connection: close', (req) => switching(req).replace('Connection: Upgrade', 'Connection: close'), 'WS_ERR_INVALID_HANDSHAKE', 1002],
      [
        'a subprotocol that was not offered',
        (req) => switching(req, 'Sec-WebSocket-Protocol: b\r\n'),
        'WS_ERR_INVALID_SUBPROTOCOL',
        1002,
        { protocols: ['a'] },
      ],
      [
        'a subprotocol when none was offered',
        (req) => switching(req, 'Sec-WebSocket-Protocol: a\r\n'),
        'WS_ERR_INVALID_SUBPROTOCOL',
        1002,
      ],
      [
        'an extension that was not offered',
        (req) => switching(req, 'Sec-WebSocket-Extensions: x-never-offered\r\n'),
        'WS_ERR_INVALID_EXTENSION',
        1010,
      ],
      ['a status line that is not HTTP', () => 'SSH-2.0-OpenSSH\r\n\r\n', 'WS_ERR_INVALID_HANDSHAKE', 1002],
      [
        'a head over maxHeaderSize',
        (req) => switching(req, `X-Padding: ${'a'.repeat(600)}\r\n`),
        'WS_ERR_HEADER_TOO_LARGE',
        1002,
        { maxHeaderSize: 512 },
      ],
    ];
    for (const [name, answer, code, closeCode, options] of failures) {
      it(`fails on ${name}: ${code}, close 1006`, async () => {
        fake = await fakeServer((req, socket) => socket.write(answer(req)));
        const ws = connect(fake.url, options);
        expectFailed(await outcome(ws), ws, code, closeCode);
        // The client dropped the connection.
        const socket = fake.sockets[0]!;
        if (!socket.destroyed && !socket.readableEnded) await once(socket, 'end');
      });
    }

    for (const status of [403, 200, 302]) {
      it(`fails on a ${status} answer: WS_ERR_HANDSHAKE_REJECTED with the status in the message`, async () => {
        fake = await fakeServer((_req, socket) =>
          socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno`),
        );
        const ws = connect(fake.url);
        const err = expectFailed(await outcome(ws), ws, 'WS_ERR_HANDSHAKE_REJECTED');
        expect(err.message).to.contain(String(status));
      });
    }

    it("a refusal with a chunked body on a kept-alive connection (Node's http server: res.writeHead(403); res.end('no')) fails as soon as the body is complete", async () => {
      const server = http.createServer((_req, res) => {
        res.writeHead(403, { 'Content-Type': 'text/plain' });
        res.end('not here');
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      try {
        // The kept-alive connection stays open after the body (Keep-Alive: timeout=5): the
        // client must not wait for its end. handshakeTimeout bounds the wait if it does.
        const ws = connect(`ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, { handshakeTimeout: 2000 });
        const bodies: string[] = [];
        ws.on('unexpected-response', (res: { statusCode: number; body: Buffer }) => bodies.push(`${res.statusCode} ${res.body.toString()}`));
        const started = Date.now();
        const err = expectFailed(await outcome(ws), ws, 'WS_ERR_HANDSHAKE_REJECTED');
        expect(Date.now() - started).to.be.below(1500);
        expect(err.message).to.contain('403');
        expect(bodies).to.deep.equal(['403 not here']);
      } finally {
        server.closeAllConnections();
        server.close();
      }
    });

    it('fails without an error listener too: the error is kept in ws.error, no crash', async () => {
      fake = await fakeServer((req, socket) => socket.write(switching(req, 'Sec-WebSocket-Protocol: z\r\n')));
      const ws = connect(fake.url);
      const result = await outcome(ws, false);
      expect(result.close[0]).to.equal(1006);
      expect((ws.error as ErrorWithCode).code).to.equal('WS_ERR_INVALID_SUBPROTOCOL');
    });

    it('fails with WS_ERR_HANDSHAKE_TIMEOUT when the server never answers, and drops the socket', async () => {
      fake = await fakeServer(() => {});
      const ws = connect(fake.url, { handshakeTimeout: 100 });
      expectFailed(await outcome(ws), ws, 'WS_ERR_HANDSHAKE_TIMEOUT', 1006);
      const socket = fake.sockets[0]!;
      if (!socket.destroyed && !socket.readableEnded) await once(socket, 'end');
    });

    it('fails when the server closes the connection without answering', async () => {
      fake = await fakeServer((_req, socket) => socket.end());
      const ws = connect(fake.url);
      expectFailed(await outcome(ws), ws, 'WS_ERR_HANDSHAKE_REJECTED');
    });

    it('reports 1006 when the server drops the connection right after its 101', async () => {
      fake = await fakeServer((req, socket) => socket.end(switching(req)));
      const ws = connect(fake.url);
      const result = await outcome(ws);
      expect(result.opened).to.equal(true);
      expect(result.close[0]).to.equal(1006);
    });
  });

  describe('failures before any answer', () => {
    it('connection refused: the socket error, then close 1006, no crash', async () => {
      const ws = connect(`ws://127.0.0.1:${await freePort()}/`);
      const result = await outcome(ws);
      expectFailed(result, ws, 'ECONNREFUSED');
    });

    it('connection refused without an error listener: close 1006, ws.error set', async () => {
      const ws = connect(`ws://127.0.0.1:${await freePort()}/`);
      const result = await outcome(ws, false);
      expect(result.close[0]).to.equal(1006);
      expect((ws.error as ErrorWithCode).code).to.equal('ECONNREFUSED');
    });

    const badUrls = ['not a url', 'http://127.0.0.1:1/', 'https://127.0.0.1:1/', 'ftp://127.0.0.1/', 'ws://127.0.0.1:1/#fragment'];
    for (const url of badUrls) {
      it(`an invalid URL (${JSON.stringify(url)}) is an error event, not a throw`, async () => {
        let ws: WebSocket | null = null;
        expect(() => (ws = connect(url))).not.to.throw();
        const err = expectFailed(await outcome(ws!), ws!, 'WS_ERR_INVALID_ARGUMENT', 1011);
        expect(err.message).to.contain('URL');
      });
    }

    const badOptions: Array<[string, ClientOptions]> = [
      ['a header value with CRLF', { headers: { 'X-Evil': 'a\r\nInjected: 1' } }],
      ['a header the handshake sets itself', { headers: { 'Sec-WebSocket-Key': 'x' } }],
      ['a repeated subprotocol', { protocols: ['a', 'a'] }],
      ['a subprotocol that is not a token', { protocols: ['a b'] }],
      ['an Origin with CRLF', { origin: 'http://a\r\nX: y' }],
    ];
    for (const [name, options] of badOptions) {
      it(`${name} is an error event, not a throw, and nothing is sent`, async () => {
        const fake = await fakeServer(() => {});
        let ws: WebSocket | null = null;
        expect(() => (ws = connect(fake.url, options))).not.to.throw();
        expectFailed(await outcome(ws!), ws!, 'WS_ERR_INVALID_ARGUMENT', 1011);
        await new Promise((r) => setTimeout(r, 20));
        expect(fake.requests).to.deep.equal([]);
        await fake.close();
      });
    }
  });

  (hasOpenssl() ? describe : describe.skip)('wss:// (TLS)', () => {
    let httpsServer: https.Server;
    let server: WebSocketServer;
    let port: number;
    let cert: string;
    const servernames: Array<string | false | null> = [];

    before(async () => {
      const pair = selfSignedCert();
      cert = pair.cert;
      httpsServer = https.createServer({ key: pair.key, cert: pair.cert });
      httpsServer.on('secureConnection', (socket: tls.TLSSocket) => servernames.push(socket.servername));
      httpsServer.on('tlsClientError', () => {});
      httpsServer.listen(0, '127.0.0.1');
      await once(httpsServer, 'listening');
      port = (httpsServer.address() as net.AddressInfo).port;
      server = createServer({ server: httpsServer as unknown as http.Server });
      server.on('connection', (ws: WebSocket) => ws.pipe(ws));
    });
    beforeEach(() => (servernames.length = 0));
    after(async () => {
      await closeServer(server);
      httpsServer.closeAllConnections();
      await new Promise((r) => httpsServer.close(r));
    });

    async function echo(ws: WebSocket): Promise<void> {
      await once(ws, 'open');
      ws.send('over tls');
      expect(await once(ws, 'message')).to.deep.equal(['over tls', false]);
      ws.close();
      await once(ws, 'close');
    }

    it('works with the certificate as ca', async () => {
      await echo(connect(`wss://127.0.0.1:${port}/`, { tls: { ca: cert } }));
    });

    it('fails without a ca (rejectUnauthorized stays true): the TLS error, close 1006', async () => {
      const ws = connect(`wss://127.0.0.1:${port}/`);
      expectFailed(await outcome(ws), ws, 'DEPTH_ZERO_SELF_SIGNED_CERT');
    });

    it('fails when the name does not match the certificate', async () => {
      const ws = connect(`wss://127.0.0.1:${port}/`, { tls: { ca: cert, servername: 'example.com' } });
      expectFailed(await outcome(ws), ws, 'ERR_TLS_CERT_ALTNAME_INVALID');
    });

    it('works with rejectUnauthorized: false', async () => {
      await echo(connect(`wss://127.0.0.1:${port}/`, { tls: { rejectUnauthorized: false } }));
    });

    it('sends the host name as SNI for a hostname URL, none for an IP address', async () => {
      await echo(connect(`wss://localhost:${port}/`, { tls: { ca: cert } }));
      await echo(connect(`wss://127.0.0.1:${port}/`, { tls: { ca: cert } }));
      // RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in "HostName"."
      expect(servernames).to.deep.equal(['localhost', false]);
    });

    it('a wss:// connection to a plain TCP server fails with an error, close 1006', async () => {
      const plain = net.createServer((socket) => {
        socket.on('error', () => {});
        socket.resume(); // read (and drop) the ClientHello, and see the client's FIN
        socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      });
      plain.listen(0, '127.0.0.1');
      await once(plain, 'listening');
      const ws = connect(`wss://127.0.0.1:${(plain.address() as net.AddressInfo).port}/`, { tls: { ca: cert } });
      const result = await outcome(ws);
      expect(result.errors.length).to.equal(1);
      expect(result.close[0]).to.equal(1006);
      expect(result.opened).to.equal(false);
      await new Promise((r) => plain.close(r));
    });
  });
});
