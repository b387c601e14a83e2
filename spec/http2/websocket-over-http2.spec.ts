/**
 * WebSocket over HTTP/2 (RFC 8441) end to end on loopback: our server on node:http2 servers
 * (secure with and without allowHTTP1, cleartext, with Node's compatibility API), reached by
 * our client and by hand-made extended CONNECTs from node:http2's client.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect, createServer, WebSocket, WebSocketServer } from '../../lib';
import type { ClientOptions, ServerOptions } from '../../lib';
import type { UpgradeRequest } from '../../lib/handshake/handshake';
import { hasOpenssl, selfSignedCert } from '../helpers/tls';

type H2Server = http2.Http2SecureServer | http2.Http2Server;

interface Setup {
  h2: H2Server;
  wss: WebSocketServer;
  port: number;
  /** HTTP/2 sessions the server accepted. */
  sessions: http2.ServerHttp2Session[];
  /** Server-side connections with their request, in order. */
  accepted: Array<{ ws: WebSocket; req: UpgradeRequest }>;
}

const toClose: Array<() => Promise<void>> = [];

async function start(kind: 'secure' | 'h1+h2' | 'cleartext', wsOptions: ServerOptions = {}, http2Option = true): Promise<Setup> {
  const tlsOptions = kind === 'cleartext' ? {} : selfSignedCert();
  const h2: H2Server =
    kind === 'cleartext' ? http2.createServer() : http2.createSecureServer({ ...tlsOptions, allowHTTP1: kind === 'h1+h2' });
  const sessions: http2.ServerHttp2Session[] = [];
  h2.on('session', (session: http2.ServerHttp2Session) => sessions.push(session));
  const wss = createServer({ server: h2, http2: http2Option, ...wsOptions });
  const accepted: Setup['accepted'] = [];
  wss.on('connection', (ws, req) => {
    accepted.push({ ws, req });
    ws.on('error', () => {});
    ws.on('message', (data: string | Buffer, isBinary: boolean) => {
      if (ws.readyState === 1) ws.send(data, { binary: isBinary });
    });
  });
  h2.listen(0, '127.0.0.1');
  await once(h2, 'listening');
  toClose.push(async () => {
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    for (const session of sessions) session.destroy();
    await new Promise<void>((resolve) => h2.close(() => resolve()));
  });
  return { h2, wss, port: (h2.address() as AddressInfo).port, sessions, accepted };
}

function clientTls(): ClientOptions['tls'] {
  return { ca: selfSignedCert().cert };
}

/** Our client, opened; rejects on 'error' before 'open'. */
async function open(url: string, options: ClientOptions = {}): Promise<WebSocket> {
  const ws = connect(url, options);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.on('error', () => {});
  return ws;
}

async function echo(ws: WebSocket, data: string | Buffer): Promise<string | Buffer> {
  const reply = once(ws, 'message');
  ws.send(data);
  return (await reply)[0] as string | Buffer;
}

/** The code and reason of 'close' (events.once would reject on an 'error' before it). */
function closed(ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
}

/** A raw extended CONNECT with node:http2's client; resolves with the response headers and the stream. */
async function rawConnect(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
): Promise<{ stream: http2.ClientHttp2Stream; response: http2.IncomingHttpHeaders; body: string }> {
  if (!session.remoteSettings.enableConnectProtocol) await once(session, 'remoteSettings');
  const stream = session.request(
    { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': '/', ':authority': 'localhost', 'sec-websocket-version': '13', ...headers },
    { endStream: false },
  );
  const [response] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
  if (Number(response[':status']) === 200) return { stream, response, body: '' };
  let body = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (body += chunk));
  await once(stream, 'end');
  return { stream, response, body };
}

describe('WebSocket over HTTP/2 (RFC 8441)', function () {
  this.timeout(20000);

  before(function () {
    if (!hasOpenssl()) this.skip();
  });

  afterEach(async () => {
    while (toClose.length > 0) await toClose.pop()!();
  });

  describe('opt-in: SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3)', () => {
    async function advertised(port: number): Promise<boolean> {
      const session = http2.connect(`https://127.0.0.1:${port}`, clientTls());
      try {
        const [settings] = (await once(session, 'remoteSettings')) as [http2.Settings];
        return settings.enableConnectProtocol === true;
      } finally {
        session.destroy();
      }
    }

    it('is advertised only with the http2 option, and no longer once the server is closed', async () => {
      const without = await start('secure', {}, false);
      expect(await advertised(without.port)).to.equal(false);
      const withIt = await start('secure');
      expect(await advertised(withIt.port)).to.equal(true);
      await new Promise<void>((resolve) => withIt.wss.close(() => resolve()));
      expect(await advertised(withIt.port)).to.equal(false);
    });

    it('refuses the option without a node:http2 server (ERR_INVALID_ARG_VALUE)', () => {
      expect(() => createServer({ noServer: true, http2: true })).to.throw(TypeError).with.property('code', 'ERR_INVALID_ARG_VALUE');
    });
  });

  describe('the server', () => {
    it('accepts an extended CONNECT with 200 and no Sec-WebSocket-Accept; the stream is the transport', async () => {
      const setup = await start('secure');
      const session = http2.connect(`https://127.0.0.1:${setup.port}`, clientTls());
      const { stream, response } = await rawConnect(session, { ':path': '/chat?x=1' });
      expect(response[':status']).to.equal(200);
      expect(response['sec-websocket-accept']).to.equal(undefined);
      expect(setup.accepted).to.have.length(1);
      expect(setup.accepted[0]!.req).to.include({ method: 'CONNECT', url: '/chat?x=1', httpVersion: '2.0' });
      // A masked text frame "Hi" (RFC 6455 §5.3: clients mask), echoed unmasked.
      const reply = once(stream, 'data');
      stream.write(Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x48 ^ 1, 0x69 ^ 2]));
      expect((await reply)[0]).to.deep.equal(Buffer.from([0x81, 0x02, 0x48, 0x69]));
      session.destroy();
    });

    it('refuses with the status: verifyClient 403, a wrong path 400, a wrong version 400 with Sec-WebSocket-Version', async () => {
      const setup = await start('secure', {
        path: '/ws',
        verifyClient: (req) => (req.headers.origin === 'https://evil.example' ? { status: 403, message: 'no' } : true),
      });
      const rejected: number[] = [];
      setup.wss.on('rejected', (_err, _req, status) => rejected.push(status));
      const session = http2.connect(`https://127.0.0.1:${setup.port}`, clientTls());
      const forbidden = await rawConnect(session, { ':path': '/ws', origin: 'https://evil.example' });
      expect(forbidden.response[':status']).to.equal(403);
      expect(forbidden.body).to.equal('no');
      expect((await rawConnect(session, { ':path': '/other' })).response[':status']).to.equal(400);
      const version = await rawConnect(session, { ':path': '/ws', 'sec-websocket-version': '8' });
      expect(version.response[':status']).to.equal(400);
      expect(version.response['sec-websocket-version']).to.equal('13');
      expect(rejected).to.deep.equal([403, 400, 400]);
      expect(setup.accepted).to.have.length(0);
      // The connection is still good for a valid request.
      expect((await rawConnect(session, { ':path': '/ws' })).response[':status']).to.equal(200);
      session.destroy();
    });

    it('an RST_STREAM is a 1006 for that WebSocket only', async () => {
      const setup = await start('secure');
      const session = http2.connect(`https://127.0.0.1:${setup.port}`, clientTls());
      const first = await rawConnect(session, {});
      const second = await rawConnect(session, {});
      const [a, b] = setup.accepted.map((one) => one.ws) as [WebSocket, WebSocket];
      const aClosed = closed(a);
      first.stream.close(http2.constants.NGHTTP2_CANCEL);
      expect((await aClosed)[0]).to.equal(1006);
      expect(b.readyState).to.equal(1);
      const reply = once(second.stream, 'data');
      second.stream.write(Buffer.from([0x81, 0x80, 0, 0, 0, 0]));
      expect((await reply)[0]).to.deep.equal(Buffer.from([0x81, 0x00]));
      session.destroy();
    });

    it('with Node\'s compatibility API (a request listener): WebSockets still come, other CONNECTs get 405', async () => {
      const setup = await start('h1+h2');
      setup.h2.on('request', (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => res.end('page'));
      const session = http2.connect(`https://127.0.0.1:${setup.port}`, clientTls());
      expect((await rawConnect(session, {})).response[':status']).to.equal(200);
      const plain = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' }, { endStream: false });
      const [response] = (await once(plain, 'response')) as [http2.IncomingHttpHeaders];
      expect(response[':status']).to.equal(405);
      const page = session.request({ ':path': '/' });
      let text = '';
      page.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      await once(page, 'end');
      expect(text).to.equal('page');
      session.destroy();
    });
  });

  describe('the client: connect(url, { http2 })', () => {
    it('opens many WebSockets as streams of one HTTP/2 connection; closing one leaves the others', async () => {
      const setup = await start('secure');
      const tls = clientTls();
      const url = `wss://127.0.0.1:${setup.port}/`;
      const clients = await Promise.all(Array.from({ length: 10 }, () => open(url, { http2: true, tls })));
      expect(setup.sessions).to.have.length(1);
      expect(setup.accepted.map((one) => one.req.httpVersion)).to.deep.equal(Array(10).fill('2.0'));
      const [first, ...others] = clients as [WebSocket, ...WebSocket[]];
      const firstClosed = Promise.all([closed(first), closed(setup.accepted[0]!.ws)]);
      first.close(1000, 'bye');
      // RFC 6455 §7.1.5: each side reports the close frame it received; the echo carries the
      // code, and the reason or not (§5.5.1 leaves it to the implementation).
      const [[clientCode, clientReason], serverSide] = await firstClosed;
      expect(serverSide).to.deep.equal([1000, 'bye']);
      expect(clientCode).to.equal(1000);
      expect(clientReason).to.be.oneOf(['', 'bye']);
      const replies = await Promise.all(others.map((ws, i) => echo(ws, `n${i}`)));
      expect(replies).to.deep.equal(others.map((_, i) => `n${i}`));
      expect(setup.sessions).to.have.length(1);
      await Promise.all(others.map((ws) => {
        const done = closed(ws);
        ws.close();
        return done;
      }));
      // The last one closed: the shared connection is closed too.
      if (!setup.sessions[0]!.closed) await once(setup.sessions[0]!, 'close');
    });

    it('the closing handshake and the close codes reach both sides', async () => {
      const setup = await start('secure');
      const ws = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls() });
      const server = setup.accepted[0]!.ws;
      const both = Promise.all([closed(ws), closed(server)]);
      server.close(4001, 'server says');
      // RFC 6455 §7.1.5: each side reports the close frame it received (the echo's reason may be
      // empty or the same, §5.5.1).
      const [clientSide, [serverCode, serverReason]] = await both;
      expect(clientSide).to.deep.equal([4001, 'server says']);
      expect(serverCode).to.equal(4001);
      expect(serverReason).to.be.oneOf(['', 'server says']);
    });

    it('negotiates subprotocols and permessage-deflate as over HTTP/1.1', async () => {
      const setup = await start('secure', { protocols: ['b', 'a'], perMessageDeflate: true });
      const ws = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls(), protocols: ['a', 'b'] });
      expect(ws.protocol).to.equal('b');
      expect(ws.extensions).to.match(/^permessage-deflate/);
      const big = 'compressible '.repeat(100000);
      expect(await echo(ws, big)).to.equal(big);
    });

    it('keeps the limits: a message over maxPayload closes that WebSocket with 1009', async () => {
      const setup = await start('secure', { maxPayload: 1024 });
      const ws = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls() });
      const done = closed(ws);
      ws.send(Buffer.alloc(2048));
      expect((await done)[0]).to.equal(1009);
    });

    it('backpressure: HTTP/2 flow control holds the sender while the reader does not read', async () => {
      const setup = await start('secure');
      const ws = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls() });
      const server = setup.accepted[0]!.ws;
      ws.removeAllListeners('message');
      ws.pause();
      const chunk = Buffer.alloc(64 * 1024);
      let sent = 0;
      // Bounded: 64 MiB at most; flow control must make write() say "wait" long before.
      while (sent < 1024 && server.write(chunk)) sent++;
      expect(sent).to.be.lessThan(1024);
      // The peer does not read: the server's bytes wait on its side, not in the client.
      expect(server.bufferedAmount).to.be.greaterThan(0);
      let received = 0;
      ws.on('data', (data: Buffer) => (received += data.length));
      ws.resume();
      await once(server, 'drain');
      expect(received).to.be.greaterThan(0);
    });

    it('passes an HTTP/1.1-shaped "upgrade" event (status 200, httpVersion 2.0) before open', async () => {
      const setup = await start('secure');
      const ws = connect(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls() });
      const events: string[] = [];
      let response: unknown = null;
      ws.on('upgrade', (head: unknown) => {
        events.push('upgrade');
        response = head;
      });
      await once(ws, 'open');
      events.push('open');
      expect(events).to.deep.equal(['upgrade', 'open']);
      expect(response).to.include({ statusCode: 200, httpVersion: '2.0' });
      ws.close();
      await closed(ws);
    });

    it('{ http2: session } opens the WebSocket on that session and leaves it open', async () => {
      const setup = await start('secure');
      const session = http2.connect(`https://127.0.0.1:${setup.port}`, clientTls());
      const a = await open(`wss://127.0.0.1:${setup.port}/a`, { http2: session });
      const b = await open(`wss://127.0.0.1:${setup.port}/b`, { http2: session });
      expect(setup.sessions).to.have.length(1);
      expect(await echo(b, 'x')).to.equal('x');
      await Promise.all([a, b].map((ws) => {
        const done = closed(ws);
        ws.close();
        return done;
      }));
      expect(session.closed).to.equal(false);
      session.destroy();
    });

    it('falls back to HTTP/1.1 when the server does not advertise the setting (allowHTTP1, no http2 option)', async () => {
      const setup = await start('h1+h2', {}, false);
      const ws = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls() });
      expect(setup.accepted[0]!.req.httpVersion).to.equal('1.1');
      expect(await echo(ws, 'over 1.1')).to.equal('over 1.1');
    });

    it('a session given after its SETTINGS came (without the setting): a PING tells, and HTTP/1.1 is used', async () => {
      const setup = await start('h1+h2', {}, false);
      const session = http2.connect(`https://127.0.0.1:${setup.port}`, clientTls());
      await once(session, 'remoteSettings');
      const ws = await open(`wss://127.0.0.1:${setup.port}/`, { http2: session, tls: clientTls() });
      expect(setup.accepted[0]!.req.httpVersion).to.equal('1.1');
      expect(await echo(ws, 'pinged')).to.equal('pinged');
      session.destroy();
    });

    it('falls back to HTTP/1.1 when the server does not speak HTTP/2 at all', async () => {
      const server = https.createServer(selfSignedCert());
      const wss = createServer({ server });
      wss.on('connection', (ws) => ws.on('message', (data: string | Buffer) => ws.send(data)));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      toClose.push(async () => {
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      });
      const ws = await open(`wss://127.0.0.1:${(server.address() as AddressInfo).port}/`, { http2: true, tls: clientTls() });
      expect(await echo(ws, 'still')).to.equal('still');
    });

    it('serves HTTP/1.1 upgrades and RFC 8441 streams on the same port (allowHTTP1)', async () => {
      const setup = await start('h1+h2');
      const tls = clientTls();
      const overH2 = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls });
      const overH1 = await open(`wss://127.0.0.1:${setup.port}/`, { tls });
      expect(setup.accepted.map((one) => one.req.httpVersion)).to.deep.equal(['2.0', '1.1']);
      expect(await echo(overH2, 'two')).to.equal('two');
      expect(await echo(overH1, 'one')).to.equal('one');
    });

    it('ws:// over cleartext HTTP/2 (h2c, prior knowledge)', async () => {
      const setup = await start('cleartext');
      const ws = await open(`ws://127.0.0.1:${setup.port}/`, { http2: true });
      expect(setup.accepted[0]!.req.headers[':scheme']).to.equal('http');
      expect(await echo(ws, Buffer.from([1, 2, 3]))).to.deep.equal(Buffer.from([1, 2, 3]));
    });

    it('a refusal fails the handshake with WS_ERR_HANDSHAKE_REJECTED and 1006', async () => {
      const setup = await start('secure', { verifyClient: () => false });
      const ws = connect(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls() });
      const errors: Array<Error & { code?: string }> = [];
      ws.on('error', (err: Error) => errors.push(err));
      expect((await closed(ws))[0]).to.equal(1006);
      expect(errors.map((err) => err.code)).to.deep.equal(['WS_ERR_HANDSHAKE_REJECTED']);
      expect(errors[0]!.message).to.contain('401');
    });

    it('an AbortSignal aborts the extended CONNECT: AbortError, the stream closed, the shared connection left to the others', async () => {
      const setup = await start('secure', { verifyClient: (req: UpgradeRequest) => (req.url === '/hang' ? new Promise<boolean>(() => {}) : true) });
      const tls = clientTls();
      const other = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls });
      const controller = new AbortController();
      const ws = connect(`wss://127.0.0.1:${setup.port}/hang`, { http2: true, tls, signal: controller.signal });
      const errors: Array<Error & { code?: string; cause?: unknown }> = [];
      ws.on('error', (err: Error) => errors.push(err));
      const [serverStream] = (await once(setup.h2, 'stream')) as [http2.ServerHttp2Stream];
      const streamClosed = serverStream.closed ? Promise.resolve() : once(serverStream, 'close');
      const done = closed(ws);
      controller.abort('enough');
      expect((await done)[0]).to.equal(1006);
      expect(errors.map((err) => [err.name, err.code, err.cause])).to.deep.equal([['AbortError', 'ABORT_ERR', 'enough']]);
      await streamClosed;
      expect(setup.sessions).to.have.length(1);
      expect(setup.sessions[0]!.closed).to.equal(false);
      expect(await echo(other, 'still here')).to.equal('still here');
      const otherClosed = closed(other);
      other.close();
      await otherClosed;
    });

    it('an AbortSignal aborts before the HTTP/2 connection is ready, and later connections to the origin still open', async () => {
      const setup = await start('secure');
      const tls = clientTls();
      const controller = new AbortController();
      const ws = connect(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls, signal: controller.signal });
      const errors: Array<Error & { code?: string }> = [];
      ws.on('error', (err: Error) => errors.push(err));
      const done = closed(ws);
      controller.abort();
      expect((await done)[0]).to.equal(1006);
      expect(errors.map((err) => err.code)).to.deep.equal(['ABORT_ERR']);
      expect(setup.accepted).to.have.length(0);
      const after = await open(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls });
      expect(await echo(after, 'next')).to.equal('next');
      expect(setup.accepted.map((one) => one.req.httpVersion)).to.deep.equal(['2.0']);
      const afterClosed = closed(after);
      after.close();
      await afterClosed;
    });

    it('an AbortSignal on a session of our own: the session stays open', async () => {
      const setup = await start('secure', { verifyClient: () => new Promise<boolean>(() => {}) });
      const session = http2.connect(`https://127.0.0.1:${setup.port}`, clientTls());
      const controller = new AbortController();
      const ws = connect(`wss://127.0.0.1:${setup.port}/`, { http2: session, signal: controller.signal });
      const errors: Array<Error & { code?: string }> = [];
      ws.on('error', (err: Error) => errors.push(err));
      await once(setup.h2, 'stream');
      const done = closed(ws);
      controller.abort();
      expect((await done)[0]).to.equal(1006);
      expect(errors.map((err) => err.code)).to.deep.equal(['ABORT_ERR']);
      expect(session.closed || session.destroyed).to.equal(false);
      session.destroy();
    });

    it('close() while connecting cancels the stream', async () => {
      const setup = await start('secure', { verifyClient: () => new Promise<boolean>(() => {}) });
      const ws = connect(`wss://127.0.0.1:${setup.port}/`, { http2: true, tls: clientTls() });
      ws.on('error', () => {});
      await once(setup.h2, 'stream');
      const done = closed(ws);
      ws.terminate();
      expect((await done)[0]).to.equal(1006);
    });
  });
});
