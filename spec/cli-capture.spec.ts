/**
 * Capture and replay from the command line (the built binary): `proxy --tap/--print/--har`
 * with connection numbers, compressed traffic captured inflated, `--no-deflate`, `--log-max`,
 * `replay` of every connection, of one, of stdin, and of a HAR.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, createServer, WebSocket, WebSocketServer } from '../lib';
import { readFrameLog } from '../lib/capture/frame-log';
import { checkHar, readHar, webSocketEntries } from '../lib/capture/har';
import { ensureBuilt, killAll, listeningPort, Running, wspipe } from './helpers/cli';

const LOCAL = '127.0.0.1';

describe('wspipe proxy and replay: capture', function () {
  this.timeout(30000);
  let server: WebSocketServer;
  let url: string;
  let dir: string;

  before(function () {
    this.timeout(180000);
    ensureBuilt();
  });

  async function echoServer(options: object = {}): Promise<void> {
    server = createServer({ port: 0, host: LOCAL, ...options });
    server.on('connection', (ws: WebSocket) => ws.on('message', (d: string | Buffer, binary: boolean) => ws.send(d, { binary })));
    await once(server, 'listening');
    url = `ws://${LOCAL}:${server.address()!.port}`;
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-cli-capture-'));
  });
  afterEach(async () => {
    killAll();
    await new Promise<void>((resolve) => server.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A client through the proxy that sends `messages`, waits for as many answers, and closes. */
  async function talk(port: number, messages: Array<string | Buffer>, options: object = {}): Promise<Array<string | Buffer>> {
    const ws = connect(`ws://${LOCAL}:${port}/chat?x=1`, options);
    const got: Array<string | Buffer> = [];
    const all = new Promise<void>((resolve) =>
      ws.on('message', (d: string | Buffer) => {
        got.push(d);
        if (got.length === messages.length) resolve();
      }),
    );
    await once(ws, 'open');
    for (const m of messages) ws.send(m);
    await all;
    ws.close(1000);
    await once(ws, 'close');
    return got;
  }

  async function stop(proxy: Running): Promise<void> {
    proxy.child.kill('SIGINT');
    expect(await proxy.closed).to.equal(0);
  }

  it('--tap and --print carry the connection number; replay plays every connection and says so', async () => {
    await echoServer();
    const log = path.join(dir, 'log.ndjson');
    const proxy = wspipe(['proxy', '--port', '0', '--to', url, '--tap', log, '--print']);
    const port = await listeningPort(proxy);
    await Promise.all([talk(port, ['one-a', 'one-b']), talk(port, ['two-a'])]);
    await stop(proxy);
    expect(proxy.stdout()).to.match(/#1 > upstream text fin len=5 "one-a"|#2 > upstream text fin len=5 "one-a"/);
    const entries = readFrameLog(log);
    expect(new Set(entries.map((e) => e.conn))).to.deep.equal(new Set([1, 2]));

    const replayed = wspipe(['replay', log, '--to', url]);
    expect(await replayed.closed).to.equal(0);
    const lines = replayed.stdout().trim().split('\n').sort();
    expect(lines).to.have.length(3);
    expect(lines.map((l) => l.replace(/^\[\d\] /, ''))).to.have.members(['one-a', 'one-b', 'two-a']);
    expect(replayed.stderr()).to.match(/played 2 connections, 5 frames sent/);

    const one = wspipe(['replay', log, '--to', url, '--connection', String(entries.find((e) => e.frame.payload.toString() === 'two-a')!.conn)]);
    expect(await one.closed).to.equal(0);
    expect(one.stdout()).to.equal('two-a\n');
    expect(one.stderr()).to.match(/played 1 connection/);
  });

  it('replay - reads the log from stdin; an unknown connection fails', async () => {
    await echoServer();
    const line = JSON.stringify({ t: new Date().toISOString(), conn: 7, dir: 'upstream', opcode: 'text', fin: true, rsv1: false, rsv2: false, rsv3: false, len: 5, text: 'stdin' });
    const run = wspipe(['replay', '-', '--to', url], `${line}\n`);
    expect(await run.closed).to.equal(0);
    expect(run.stdout()).to.equal('stdin\n');
    const missing = wspipe(['replay', '-', '--to', url, '--connection', '8'], `${line}\n`);
    expect(await missing.closed).to.equal(1);
    expect(missing.stderr()).to.match(/no connection 8/);
  });

  it('compressed traffic is logged inflated, and the log replays; --no-deflate keeps it uncompressed', async () => {
    await echoServer({ perMessageDeflate: { threshold: 0 } });
    const text = 'squeeze '.repeat(100);
    const log = path.join(dir, 'deflate.ndjson');
    const proxy = wspipe(['proxy', '--port', '0', '--to', url, '--tap', log]);
    const port = await listeningPort(proxy);
    expect(await talk(port, [text], { perMessageDeflate: { threshold: 0 } })).to.deep.equal([text]);
    await stop(proxy);
    const records = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const up = records.find((r) => r.dir === 'upstream' && r.opcode === 'text')!;
    expect([up.text, up.rsv1, up.inflated, up.len]).to.deep.equal([text, true, true, text.length]);
    expect(up.wireLen).to.be.below(text.length);
    const replayed = wspipe(['replay', log, '--to', url]);
    expect(await replayed.closed).to.equal(0);
    expect(replayed.stdout()).to.equal(`${text}\n`);

    const plainLog = path.join(dir, 'plain.ndjson');
    const plain = wspipe(['proxy', '--port', '0', '--to', url, '--tap', plainLog, '--no-deflate']);
    const plainPort = await listeningPort(plain);
    await talk(plainPort, [text], { perMessageDeflate: { threshold: 0 } });
    await stop(plain);
    const plainUp = readFrameLog(plainLog).find((e) => e.dir === 'upstream' && e.frame.opcode === 1)!;
    expect([plainUp.frame.rsv1, plainUp.compressed, plainUp.frame.payload.toString()]).to.deep.equal([false, false, text]);
  });

  it('--log-max cuts long payloads and the line says so; a bad value is a usage error', async () => {
    await echoServer();
    const log = path.join(dir, 'cut.ndjson');
    const proxy = wspipe(['proxy', '--port', '0', '--to', url, '--tap', log, '--print', '--log-max', '4']);
    const port = await listeningPort(proxy);
    await talk(port, ['abcdefgh']);
    await stop(proxy);
    const up = (fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) as Array<Record<string, unknown>>).find((r) => r.opcode === 'text')!;
    expect([up.text, up.len, up.truncated]).to.deep.equal(['abcd', 8, true]);
    expect(proxy.stdout()).to.match(/"abcd" \(truncated: 4 of 8 bytes shown\)/);
    const bad = wspipe(['proxy', '--port', '0', '--to', url, '--log-max', 'lots']);
    expect(await bad.closed).to.equal(2);
    expect(bad.stderr()).to.equal("wspipe proxy: --log-max must be a number of bytes (see 'wspipe proxy --help')\n");
  });

  it('--har writes one entry per connection, valid HAR 1.2 after SIGINT; replay FILE.har plays its sent messages', async () => {
    await echoServer();
    const har = path.join(dir, 'session.har');
    const proxy = wspipe(['proxy', '--port', '0', '--to', url, '--har', har]);
    const port = await listeningPort(proxy);
    await talk(port, ['hello', Buffer.from([0, 1, 2])]);
    // Open while the proxy stops: closed by the shutdown, still written.
    const open = connect(`ws://${LOCAL}:${port}/late`);
    await once(open, 'open');
    open.send('late');
    await once(open, 'message');
    const openClosed = once(open, 'close');
    await stop(proxy);
    await openClosed;
    const value = JSON.parse(fs.readFileSync(har, 'utf8')) as unknown;
    expect(checkHar(value)).to.deep.equal([]);
    const entries = webSocketEntries(readHar(har));
    expect(entries).to.have.length(2);
    const first = entries.find((e) => e.request.url.endsWith('/chat?x=1'))!;
    expect(first.request.url).to.equal(`ws://${LOCAL}:${port}/chat?x=1`);
    expect(first.request.queryString).to.deep.equal([{ name: 'x', value: '1' }]);
    expect(first.response.status).to.equal(101);
    expect(first._resourceType).to.equal('websocket');
    const messages = first._webSocketMessages!;
    expect(messages.filter((m) => m.type === 'send').map((m) => [m.opcode, m.data])).to.deep.equal([
      [1, 'hello'],
      [2, 'AAEC'],
    ]);
    expect(messages.filter((m) => m.type === 'receive').map((m) => [m.opcode, m.data])).to.deep.equal([
      [1, 'hello'],
      [2, 'AAEC'],
    ]);
    const now = Date.now() / 1000;
    expect(messages.every((m) => m.time > now - 60 && m.time <= now)).to.equal(true);
    const late = entries.find((e) => e.request.url.endsWith('/late'))!;
    expect(late._webSocketClose!.client.code).to.equal(1001);

    const replayed = wspipe(['replay', har, '--to', url, '--connection', String(entries.indexOf(first))]);
    expect(await replayed.closed).to.equal(0);
    expect(replayed.stdout()).to.equal(`hello\n<binary 3 bytes> AAEC\n`);
    expect(replayed.stderr()).to.match(/played 1 HAR entry/);
  });
});
