/**
 * The live inspector (`wspipe proxy --ui PORT`) in headless Chromium: connections and messages
 * appear as they pass (JSON pretty-printed, binary as hex), the filter narrows the messages,
 * pause freezes the view, the exported HAR parses and passes the HAR 1.2 check, and the feed
 * refuses another page's origin. Screenshots: docs/img/inspector.png with WSPIPE_SCREENSHOTS=1.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import { connect, createServer, WebSocket, WebSocketServer } from '../../lib';
import { checkHar, parseHar, webSocketEntries } from '../../lib/capture/har';
import { CHROMIUM_ARGS, findChromium, requirePeer } from '../helpers/peers';
import { ensureBuilt, killAll, listeningPort, Running, waitFor, wspipe } from '../helpers/cli';

const LOCAL = '127.0.0.1';
/** Screenshots: into docs/img with WSPIPE_SCREENSHOTS=1 (to update the docs), else a temporary directory. */
const SHOTS = process.env.WSPIPE_SCREENSHOTS === '1' ? path.join(__dirname, '..', '..', 'docs', 'img') : fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-inspector-'));

describe('inspector (wspipe proxy --ui) in Chromium', function () {
  this.timeout(90000);
  let echo: WebSocketServer;
  let proxy: Running;
  let proxyPort = 0;
  let uiPort = 0;
  let browser: Browser;

  before(async function () {
    this.timeout(180000);
    requirePeer(this, findChromium());
    ensureBuilt();
    browser = await chromium.launch({ executablePath: findChromium().path!, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    echo = createServer({ port: 0, host: LOCAL, protocols: ['chat.v1'] });
    echo.on('connection', (ws: WebSocket) => ws.on('message', (d: string | Buffer, binary: boolean) => ws.send(d, { binary })));
    await once(echo, 'listening');
    proxy = wspipe(['proxy', '--port', '0', '--to', `ws://${LOCAL}:${echo.address()!.port}`, '--ui', '0']);
    proxyPort = await listeningPort(proxy);
    await waitFor(() => /inspector on http:\/\/127\.0\.0\.1:\d+\//.test(proxy.stderr()), 'the inspector line');
    uiPort = Number(/inspector on http:\/\/127\.0\.0\.1:(\d+)\//.exec(proxy.stderr())![1]);
  });
  afterEach(async () => {
    proxy.child.kill('SIGINT');
    await proxy.closed;
    killAll();
    await new Promise<void>((resolve) => echo.close(resolve));
  });

  async function client(pathname: string): Promise<WebSocket> {
    const ws = connect(`ws://${LOCAL}:${proxyPort}${pathname}`, { protocols: ['chat.v1'] });
    await once(ws, 'open');
    return ws;
  }

  async function rows(page: Page): Promise<string[]> {
    return page.$$eval('#msgs tbody tr', (trs) => trs.map((tr) => (tr as unknown as { innerText: string }).innerText.replace(/\s+/g, ' ').trim()));
  }

  it('shows connections and messages live, filters, pauses, exports a HAR, and looks clean', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 }, bypassCSP: true }); // string predicates are evaluated
    await page.goto(`http://${LOCAL}:${uiPort}/`);
    await page.waitForSelector('#status.live');

    const a = await client('/chat?room=lobby');
    const b = await client('/feed/prices');
    a.send(JSON.stringify({ type: 'join', user: 'ada', rooms: ['lobby', 'dev'] }));
    a.send('hello, plain text');
    b.send(Buffer.from('\x00\x01binary\xff', 'latin1'));
    b.send(JSON.stringify({ symbol: 'WSP', bid: 1.25, ask: 1.27 }));
    // 4 sent, 4 echoed.
    await page.waitForFunction("document.querySelectorAll('#msgs tbody tr').length === 8");
    const conns = await page.$$eval('#conns tbody tr', (trs) => trs.map((tr) => (tr as unknown as { innerText: string }).innerText.replace(/\s+/g, ' ')));
    expect(conns).to.have.length(2);
    expect(conns[0]).to.match(/#1 ?\/chat\?room=lobby ?open ?chat\.v1 ?127\.0\.0\.1:\d+/);
    expect(conns[1]).to.match(/#2 ?\/feed\/prices ?open ?chat\.v1/);
    const shown = await rows(page);
    expect(shown.some((r) => r.startsWith('↑') && r.includes('"user": "ada"'))).to.equal(true); // JSON pretty-printed
    expect(shown.some((r) => r.startsWith('↓') && r.includes('000000 00 01 62 69 6e 61 72 79 ff'))).to.equal(true); // hex
    await page.screenshot({ path: path.join(SHOTS, 'inspector.png') });
    expect(fs.statSync(path.join(SHOTS, 'inspector.png')).size).to.be.above(10000);

    // The filter: a substring, then a regular expression.
    await page.fill('#filter', 'ada');
    expect(await rows(page)).to.have.length(2);
    await page.fill('#filter', '/"bid": 1\\.2[0-9]/');
    expect(await rows(page)).to.have.length(2);
    await page.fill('#filter', '');
    expect(await rows(page)).to.have.length(8);

    // Pause: the view stays, the news is counted; resume shows it.
    await page.click('#pause');
    a.send('while paused');
    await page.waitForFunction("/new while paused/.test(document.getElementById('counts').textContent)");
    expect(await rows(page)).to.have.length(8);
    await page.click('#pause');
    expect(await rows(page)).to.have.length(10);

    // Selecting a connection shows its messages only; closing shows the code.
    a.close(1000, 'bye');
    await once(a, 'close');
    await page.waitForFunction("/closed 1000/.test(document.querySelector('#conns tbody tr').textContent)");
    await page.click('#conns tbody tr:nth-child(2)');
    expect(await rows(page)).to.have.length(4);
    await page.screenshot({ path: path.join(SHOTS, 'inspector-selected.png') });
    await page.click('#conns tbody tr:nth-child(2)');

    // Export HAR: a download of what the page holds.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const file = await download.path();
    const value = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    expect(checkHar(value)).to.deep.equal([]);
    const entries = webSocketEntries(parseHar(value));
    expect(entries.map((e) => e.request.url)).to.deep.equal([`ws://${LOCAL}:${proxyPort}/chat?room=lobby`, `ws://${LOCAL}:${proxyPort}/feed/prices`]);
    expect(entries[0]!._webSocketMessages!.filter((m) => m.type === 'send').map((m) => m.data)).to.deep.equal([
      JSON.stringify({ type: 'join', user: 'ada', rooms: ['lobby', 'dev'] }),
      'hello, plain text',
      'while paused',
    ]);
    expect(entries[1]!._webSocketMessages![0]).to.include({ type: 'send', opcode: 2, data: Buffer.from('\x00\x01binary\xff', 'latin1').toString('base64') });
    b.close();
    await once(b, 'close');
    await page.close();
  });

  it('a page that joins late gets what the server holds; another origin is refused the feed', async () => {
    const a = await client('/late');
    a.send('before the page');
    await once(a, 'message');
    const page = await browser.newPage({ bypassCSP: true });
    await page.goto(`http://${LOCAL}:${uiPort}/`);
    await page.waitForFunction("document.querySelectorAll('#msgs tbody tr').length === 2");
    expect((await rows(page)).join('\n')).to.include('before the page');
    await page.close();

    // A page of another origin (http://127.0.0.1:PORT opening ws://localhost:PORT: another
    // host, as any site the user has open would be) cannot read the traffic.
    const elsewhere = await browser.newPage({ bypassCSP: true });
    try {
      await elsewhere.goto(`http://${LOCAL}:${uiPort}/nothing-here`);
      const outcome = await elsewhere.evaluate(
        `new Promise((resolve) => {
          const ws = new WebSocket('ws://localhost:${uiPort}/feed');
          ws.onopen = () => resolve('open');
          ws.onerror = () => resolve('refused');
        })`,
      );
      expect(outcome).to.equal('refused');
    } finally {
      await elsewhere.close();
    }
    a.close();
    await once(a, 'close');
  });
});
