/**
 * WebSocket over HTTP/2 with a peer nobody here wrote: Debian's headless Chromium (driven by
 * playwright-core) loads an https:// page from a node:http2 server (allowHTTP1, our
 * WebSocketServer with `http2: true`) and opens wss:// WebSockets to the same origin from it.
 *
 * Chromium (shipped in 2018; 156 here) uses RFC 8441 by default, without a flag, when it already has
 * an HTTP/2 connection to the origin whose SETTINGS allowed extended CONNECT: the page's own
 * connection. The proof is on the server side: each WebSocket arrived as an extended CONNECT
 * stream (`:protocol` websocket) of the HTTP/2 session that served the page, never as an
 * HTTP/1.1 upgrade.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext, Page } from 'playwright-core';
import { createServer, WebSocket, WebSocketServer } from '../../lib';
import type { UpgradeRequest } from '../../lib/handshake/handshake';
import { CHROMIUM_ARGS, findChromium, requirePeer } from '../helpers/peers';
import { hasOpenssl, selfSignedCert } from '../helpers/tls';

const PAGE = `<!doctype html><meta charset="utf-8"><title>h2</title><script>
function openSocket(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(location.origin.replace('https', 'wss') + path);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error('error before open'));
  });
}
function next(ws) {
  return new Promise((resolve) => ws.addEventListener('message', (e) => resolve(e.data), { once: true }));
}
function closed(ws) {
  return new Promise((resolve) => ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean }), { once: true }));
}
</script>`;

/** The page's WebSocket, as far as these cases use it. */
interface BrowserSocket {
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  readonly extensions: string;
  readonly protocol: string;
}

interface Seen {
  /** The HTTP/2 session of each stream, by :method and :path. */
  streams: Array<{ method: string; path: string; protocol: string | undefined; session: http2.Http2Session }>;
  /** HTTP/1.1 upgrades: there must be none. */
  upgrades: number;
  accepted: Array<{ ws: WebSocket; req: UpgradeRequest; closed: Promise<[number, string]> }>;
}

describe('interop: WebSocket over HTTP/2 with Chromium', function () {
  this.timeout(60000);
  let context: BrowserContext | null = null;
  let profile = '';
  let h2: http2.Http2SecureServer | null = null;
  let wss: WebSocketServer | null = null;
  let page: Page | null = null;
  let origin = '';
  let seen: Seen = { streams: [], upgrades: 0, accepted: [] };
  const sockets: Socket[] = [];

  before(async function () {
    const executablePath = requirePeer(this, findChromium());
    if (!hasOpenssl()) this.skip();
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-chromium-h2-'));
    // No flag asks for RFC 8441: what Chromium does by default is what is tested.
    context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: [...CHROMIUM_ARGS, '--ignore-certificate-errors'] });
  });

  after(async () => {
    await context?.close();
    context = null;
    if (profile !== '') fs.rmSync(profile, { recursive: true, force: true });
  });

  beforeEach(async () => {
    seen = { streams: [], upgrades: 0, accepted: [] };
    h2 = http2.createSecureServer({ ...selfSignedCert(), allowHTTP1: true });
    h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      const method = String(headers[':method']);
      seen.streams.push({ method, path: String(headers[':path']), protocol: headers[':protocol'] as string | undefined, session: stream.session! });
      if (method === 'GET') {
        stream.respond({ ':status': 200, 'content-type': 'text/html; charset=utf-8' });
        stream.end(headers[':path'] === '/' ? PAGE : '');
      }
    });
    h2.on('upgrade', () => seen.upgrades++);
    // Chromium may hold extra (preconnected) sockets: all are destroyed at the end.
    h2.on('connection', (socket: Socket) => sockets.push(socket));
    wss = createServer({ server: h2, http2: true, perMessageDeflate: true });
    wss.on('connection', (ws, req) => {
      ws.on('error', () => {});
      const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
      seen.accepted.push({ ws, req, closed });
      ws.on('message', (data: string | Buffer, isBinary: boolean) => {
        if (ws.readyState === 1) ws.send(data, { binary: isBinary });
      });
    });
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    origin = `https://localhost:${(h2.address() as AddressInfo).port}`;
    page = await context!.newPage();
    await page.goto(`${origin}/`);
  });

  afterEach(async () => {
    await page?.close();
    page = null;
    await new Promise<void>((resolve) => wss!.close(() => resolve()));
    for (const socket of sockets.splice(0)) socket.destroy();
    await new Promise<void>((resolve) => h2!.close(() => resolve()));
  });

  it('opens wss:// as extended CONNECT streams of the page\'s HTTP/2 connection, by default', async () => {
    const result = await page!.evaluate(async () => {
      const w = globalThis as unknown as { openSocket(p: string): Promise<BrowserSocket>; next(ws: BrowserSocket): Promise<unknown> };
      const ws = await w.openSocket('/echo?n=1');
      const reply = w.next(ws);
      ws.send('hello over h2');
      return { reply: await reply, extensions: ws.extensions, protocol: ws.protocol };
    });
    expect(result.reply).to.equal('hello over h2');
    // permessage-deflate negotiated on the stream as over HTTP/1.1.
    expect(result.extensions).to.match(/^permessage-deflate/);
    expect(seen.upgrades).to.equal(0);
    const pageStream = seen.streams.find((one) => one.method === 'GET' && one.path === '/')!;
    const wsStream = seen.streams.find((one) => one.method === 'CONNECT')!;
    expect(wsStream).to.include({ path: '/echo?n=1', protocol: 'websocket' });
    expect(wsStream.session).to.equal(pageStream.session);
    expect(seen.accepted[0]!.req).to.include({ method: 'CONNECT', httpVersion: '2.0' });
  });

  it('many WebSockets on the one connection; closing one leaves the others; large messages cross flow control', async () => {
    const result = await page!.evaluate(async () => {
      const w = globalThis as unknown as {
        openSocket(p: string): Promise<BrowserSocket>;
        next(ws: BrowserSocket): Promise<unknown>;
        closed(ws: BrowserSocket): Promise<{ code: number; reason: string; wasClean: boolean }>;
      };
      const sockets = await Promise.all([1, 2, 3, 4, 5].map((i) => w.openSocket(`/many?i=${i}`)));
      const first = sockets[0]!;
      const firstClosed = w.closed(first);
      first.close(4000, 'only this one');
      const closeEvent = await firstClosed;
      // 256 KiB each way, more than HTTP/2's default 64 KiB window: flow control is exercised.
      const big = new Uint8Array(256 * 1024).map((_, i) => (i * 31) & 0xff);
      const replies = await Promise.all(
        sockets.slice(1).map(async (ws) => {
          const reply = w.next(ws);
          ws.send(big);
          const data = new Uint8Array((await reply) as ArrayBuffer);
          return data.length === big.length && data.every((b, i) => b === big[i]);
        }),
      );
      return { closeEvent, replies };
    });
    // The page reports our echo: its code, and a reason we may or may not echo (RFC 6455 §5.5.1).
    expect(result.closeEvent).to.include({ code: 4000, wasClean: true });
    expect(result.closeEvent.reason).to.be.oneOf(['', 'only this one']);
    expect(result.replies).to.deep.equal([true, true, true, true]);
    const connects = seen.streams.filter((one) => one.method === 'CONNECT');
    expect(connects).to.have.length(5);
    expect(new Set(seen.streams.map((one) => one.session)).size).to.equal(1);
    expect(seen.upgrades).to.equal(0);
    // The server saw the browser's close code and reason on that WebSocket only.
    const closedOne = seen.accepted.find((one) => one.req.url === '/many?i=1')!;
    expect(await closedOne.closed).to.deep.equal([4000, 'only this one']);
    expect(seen.accepted.filter((one) => one.ws.readyState === 1)).to.have.length(4);
  });

  it('a server-side close reaches the page with its code and reason', async () => {
    const closing = page!.evaluate(async () => {
      const w = globalThis as unknown as {
        openSocket(p: string): Promise<BrowserSocket>;
        closed(ws: BrowserSocket): Promise<{ code: number; reason: string; wasClean: boolean }>;
      };
      const ws = await w.openSocket('/closing');
      const done = w.closed(ws);
      ws.send('close me');
      return done;
    });
    while (seen.accepted.length === 0) await once(wss!, 'connection');
    const server = seen.accepted[0]!.ws;
    await once(server, 'message');
    server.close(4321, 'server closes');
    expect(await closing).to.deep.equal({ code: 4321, reason: 'server closes', wasClean: true });
  });
});
