/**
 * HAR with the real thing: headless Chromium (Debian's, driven by playwright-core) opens a page
 * whose WebSocket goes through `wspipe proxy --har` to an echo server, while Playwright records
 * its own HAR (recordHar). Both HARs are read by our parser; Playwright's is replayed by
 * replayHar against another server, which must receive the page's messages; wspipe's must
 * pass the HAR 1.2 structural check and hold the same messages as Playwright's.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { createServer, WebSocket, WebSocketServer } from '../../lib';
import { checkHar, harTime, readHar, replayHar, webSocketEntries } from '../../lib/capture/har';
import { CHROMIUM_ARGS, findChromium, requirePeer } from '../helpers/peers';
import { ensureBuilt, killAll, listeningPort, wspipe } from '../helpers/cli';

const LOCAL = '127.0.0.1';

/** The page's script: connect, send text, JSON and binary, wait for the three echoes, close. */
const PAGE = `<!doctype html><title>har</title><script>
window.talk = (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  let got = 0;
  ws.onopen = () => {
    ws.send('hello from chromium');
    ws.send(JSON.stringify({ kind: 'json', n: 1 }));
    ws.send(new Uint8Array([0, 1, 2, 255]));
  };
  ws.onmessage = () => { if (++got === 3) ws.close(1000, 'done'); };
  ws.onclose = (e) => resolve(e.code);
});
</script>`;

describe('HAR with Chromium (recordHar, wspipe proxy --har, replayHar)', function () {
  this.timeout(60000);
  let dir = '';
  let echo: WebSocketServer;
  let page: http.Server;

  before(function () {
    this.timeout(180000);
    requirePeer(this, findChromium());
    ensureBuilt();
  });

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-har-'));
    echo = createServer({ port: 0, host: LOCAL });
    echo.on('connection', (ws: WebSocket) => ws.on('message', (d: string | Buffer, binary: boolean) => ws.send(d, { binary })));
    await once(echo, 'listening');
    page = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(PAGE);
    });
    page.listen(0, LOCAL);
    await once(page, 'listening');
  });

  afterEach(async () => {
    killAll();
    await new Promise<void>((resolve) => echo.close(resolve));
    await new Promise<void>((resolve) => page.close(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('records a page WebSocket both ways, replays the browser HAR, and reads wspipe\'s HAR back', async () => {
    const ourHar = path.join(dir, 'wspipe.har');
    const theirHar = path.join(dir, 'playwright.har');
    const proxy = wspipe(['proxy', '--port', '0', '--to', `ws://${LOCAL}:${echo.address()!.port}`, '--har', ourHar]);
    const proxyPort = await listeningPort(proxy);

    const browser = await chromium.launch({ executablePath: findChromium().path!, args: CHROMIUM_ARGS });
    try {
      const context = await browser.newContext({ recordHar: { path: theirHar } });
      const tab = await context.newPage();
      await tab.goto(`http://${LOCAL}:${(page.address() as { port: number }).port}/`);
      const code = await tab.evaluate((url) => (globalThis as unknown as { talk(u: string): Promise<number> }).talk(url), `ws://${LOCAL}:${proxyPort}/live?room=7`);
      expect(code).to.equal(1000);
      await context.close(); // writes Playwright's HAR
    } finally {
      await browser.close();
    }
    proxy.child.kill('SIGINT');
    expect(await proxy.closed).to.equal(0);

    // Playwright's HAR: one WebSocket entry with the page's messages (Playwright writes
    // _webSocketMessages; its times are milliseconds, see harTime).
    const theirs = webSocketEntries(readHar(theirHar));
    expect(theirs).to.have.length(1);
    const sent = theirs[0]!._webSocketMessages!.filter((m) => m.type === 'send');
    expect(sent.map((m) => [m.opcode, m.data])).to.deep.equal([
      [1, 'hello from chromium'],
      [1, '{"kind":"json","n":1}'],
      [2, 'AAEC/w=='],
    ]);
    const now = Date.now();
    for (const m of theirs[0]!._webSocketMessages!) expect(harTime(m.time)).to.be.within(now - 60000, now);

    // wspipe's HAR: valid HAR 1.2, the same conversation.
    const ours = JSON.parse(fs.readFileSync(ourHar, 'utf8')) as unknown;
    expect(checkHar(ours)).to.deep.equal([]);
    const entries = webSocketEntries(readHar(ourHar));
    expect(entries).to.have.length(1);
    const entry = entries[0]!;
    expect(entry.request.url).to.equal(`ws://${LOCAL}:${proxyPort}/live?room=7`);
    expect(entry.request.headers.find((h) => h.name.toLowerCase() === 'user-agent')?.value).to.match(/Chrome/);
    expect(entry.response.status).to.equal(101);
    const pick = (type: string, list: typeof sent): Array<[number, string]> => list.filter((m) => m.type === type).map((m) => [m.opcode, m.data]);
    expect(pick('send', entry._webSocketMessages!)).to.deep.equal(pick('send', theirs[0]!._webSocketMessages!));
    expect(pick('receive', entry._webSocketMessages!)).to.deep.equal(pick('receive', theirs[0]!._webSocketMessages!));
    expect(entry._webSocketClose!.client).to.deep.equal({ code: 1000, reason: 'done' });

    // The browser's HAR replayed against another server: it receives what the page sent.
    const target = createServer({ port: 0, host: LOCAL });
    const received: Array<string | Buffer> = [];
    let path_ = '';
    target.on('connection', (ws: WebSocket, req: http.IncomingMessage) => {
      path_ = req.url ?? '';
      ws.on('message', (d: string | Buffer) => received.push(d));
    });
    await once(target, 'listening');
    try {
      const played = await replayHar(theirHar, { url: `ws://${LOCAL}:${target.address()!.port}/replayed` });
      expect(played).to.have.length(1);
      const result = played[0]!.result;
      if (result instanceof Error) throw result;
      expect(result.code).to.equal(1000);
      expect(received).to.deep.equal(['hello from chromium', '{"kind":"json","n":1}', Buffer.from([0, 1, 2, 255])]);
      expect(path_).to.equal('/replayed');

      // And with the command, keeping the page's timing 4 times faster.
      received.length = 0;
      const cli = wspipe(['replay', theirHar, '--to', `ws://${LOCAL}:${target.address()!.port}/cli`, '--speed', '4']);
      expect(await cli.closed, cli.stderr()).to.equal(0);
      expect(cli.stderr()).to.match(/entry 0: sent 3 frames, got 0 messages; closed 1000\n.*played 1 HAR entry, 3 frames sent/s);
      expect(received).to.deep.equal(['hello from chromium', '{"kind":"json","n":1}', Buffer.from([0, 1, 2, 255])]);
    } finally {
      await new Promise<void>((resolve) => target.close(resolve));
    }
  });
});
