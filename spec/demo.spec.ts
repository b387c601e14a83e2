/**
 * The demo (examples/demo.ts): its page over HTTP, its chat and upload endpoints driven by our
 * client with the messages the page sends, the frame lines it prints, `npm start` itself, and
 * the page in a real browser (Chromium via playwright-core) when one is installed.
 */
import { expect } from 'chai';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext } from 'playwright-core';
import { connect, makeFrame, Opcode, WebSocket } from '../lib';
import { Demo, describeFrame, startDemo } from '../examples/demo';
import { CHROMIUM_ARGS, findChromium, requirePeer } from './helpers/peers';
import { killGroup } from './helpers/processes';

const ROOT = path.resolve(__dirname, '..');

interface Peer {
  ws: WebSocket;
  /** Every message received, JSON-parsed. */
  got: Array<Record<string, unknown>>;
  closed: Promise<[number, string]>;
}

async function peer(url: string): Promise<Peer> {
  const ws = connect(url);
  const got: Array<Record<string, unknown>> = [];
  ws.on('message', (data: string | Buffer) => got.push(JSON.parse(String(data)) as Record<string, unknown>));
  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
  await once(ws, 'open');
  return { ws, got, closed };
}

async function waitFor(check: () => boolean, what: string, ms = 10000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('demo', function () {
  this.timeout(20000);
  let demo: Demo;
  let lines: string[];
  let wsBase: string;

  beforeEach(async () => {
    lines = [];
    demo = await startDemo({ port: 0, log: (line) => lines.push(line) });
    wsBase = demo.url.replace(/^http/, 'ws').replace(/\/$/, '');
  });

  afterEach(async () => {
    await demo.close();
  });

  describe('HTTP', () => {
    it('serves the page at / with the chat and the upload', async () => {
      const res = await fetch(demo.url);
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-type')).to.equal('text/html; charset=utf-8');
      const html = await res.text();
      for (const id of ['chat-log', 'chat-input', 'file', 'progress', 'percent', 'result']) expect(html).to.include(`id="${id}"`);
      expect(html).to.include("'/chat'").and.to.include("'/upload'");
    });

    it('answers 404 to other paths, and refuses WebSocket upgrades to them', async () => {
      expect((await fetch(`${demo.url}nope`)).status).to.equal(404);
      const ws = connect(`${wsBase}/nope`);
      ws.on('error', () => {});
      const code = await new Promise<number>((resolve) => ws.once('close', resolve));
      expect(code).to.equal(1006);
      expect(ws.error?.message).to.include('404 Not Found');
    });
  });

  describe('chat (/chat)', () => {
    it('names each tab and relays every line to every tab, sender included', async () => {
      const a = await peer(`${wsBase}/chat`);
      const b = await peer(`${wsBase}/chat`);
      await waitFor(() => a.got.length === 3 && b.got.length === 2, 'welcomes and presence');
      expect(a.got).to.deep.equal([
        { type: 'welcome', name: 'tab 1', room: 'lobby' },
        { type: 'presence', text: 'tab 1 joined', online: 1 },
        { type: 'presence', text: 'tab 2 joined', online: 2 },
      ]);
      expect(b.got[0]).to.deep.equal({ type: 'welcome', name: 'tab 2', room: 'lobby' });
      a.ws.send('héllo from 1');
      await waitFor(() => a.got.length === 4 && b.got.length === 3, 'the chat line');
      expect(a.got[3]).to.deep.equal({ type: 'chat', from: 'tab 1', text: 'héllo from 1' });
      expect(b.got[2]).to.deep.equal(a.got[3]);
      b.ws.close(1000);
      await waitFor(() => a.got.length === 5, 'the departure');
      expect(a.got[4]).to.deep.equal({ type: 'presence', text: 'tab 2 left', online: 1 });
    });

    it('keeps each room (?room=NAME, a topic) to itself', async () => {
      const a = await peer(`${wsBase}/chat?room=red`);
      const b = await peer(`${wsBase}/chat?room=blue`);
      const c = await peer(`${wsBase}/chat?room=red`);
      await waitFor(() => a.got.length === 3 && b.got.length === 2 && c.got.length === 2, 'welcomes and presence');
      expect(b.got[0]).to.deep.equal({ type: 'welcome', name: 'tab 2', room: 'blue' });
      b.ws.send('in blue');
      c.ws.send('in red');
      await waitFor(() => a.got.length === 4 && c.got.length === 3 && b.got.length === 3, 'the lines');
      expect(a.got[3]).to.deep.equal({ type: 'chat', from: 'tab 3', text: 'in red' });
      expect(b.got[2]).to.deep.equal({ type: 'chat', from: 'tab 2', text: 'in blue' });
      expect(c.got[2]).to.deep.equal({ type: 'chat', from: 'tab 3', text: 'in red' });
    });

    it('closes with 1003 on a binary message and 1009 on a line over 16 KiB', async () => {
      const a = await peer(`${wsBase}/chat`);
      a.ws.send(Buffer.from([1, 2]));
      expect(await a.closed).to.deep.equal([1003, 'text only']);
      const b = await peer(`${wsBase}/chat`);
      b.ws.on('error', () => {});
      b.ws.send('x'.repeat(16 * 1024 + 1));
      expect((await b.closed)[0]).to.equal(1009);
    });

    it('prints one line per frame, both ways, payloads cut', async () => {
      const a = await peer(`${wsBase}/chat`);
      const long = 'a long line that goes on and on and on and on and on';
      a.ws.send(long);
      await waitFor(() => a.got.length === 3, 'the echo of the line');
      a.ws.close(1000, 'bye');
      await a.closed;
      await waitFor(() => lines.some((l) => l.startsWith('chat#1 -> close')), 'the close lines');
      expect(lines).to.include(`chat#1 <- text ${long.length} B "${long.slice(0, 40)}..."`);
      const welcome = JSON.stringify({ type: 'welcome', name: 'tab 1', room: 'lobby' });
      expect(lines).to.include(`chat#1 -> text ${welcome.length} B ${JSON.stringify(`${welcome.slice(0, 40)}...`)}`);
      expect(lines).to.include('chat#1 <- close 5 B 1000 "bye"');
      expect(lines).to.include('chat#1 -> close 5 B 1000 "bye"'); // the echo: the code and the reason
    });
  });

  describe('upload (/upload)', () => {
    it('receives a file sent as one binary message, acknowledges progress and reports size and sha256', async () => {
      const file = randomBytes(5 * 1024 * 1024 + 7);
      const up = await peer(`${wsBase}/upload`);
      up.ws.send(JSON.stringify({ name: 'big.bin', size: file.length }));
      up.ws.send(file);
      await waitFor(() => up.got.some((m) => m.type === 'done'), 'the result');
      const progress = up.got.filter((m) => m.type === 'progress').map((m) => m.received as number);
      expect(progress.length).to.be.within(2, 101);
      for (let i = 1; i < progress.length; i++) expect(progress[i]!).to.be.above(progress[i - 1]!);
      expect(progress[progress.length - 1]!).to.be.at.most(file.length);
      expect(up.got[up.got.length - 1]).to.deep.equal({ type: 'done', name: 'big.bin', size: file.length, sha256: sha256(file) });
      expect(lines).to.include(`upload#1 received "big.bin": ${file.length} bytes, sha256 ${sha256(file)}`);
      expect(lines.some((l) => l.startsWith(`upload#1 <- binary ${file.length} B `))).to.equal(true);
    });

    it('takes several uploads on one connection, streamed in fragments or empty', async () => {
      const up = await peer(`${wsBase}/upload`);
      const file = randomBytes(300 * 1024);
      up.ws.send(JSON.stringify({ name: 'parts.bin', size: file.length }));
      const stream = up.ws.createMessageStream({ binary: true });
      for (let at = 0; at < file.length; at += 64 * 1024) stream.write(file.subarray(at, at + 64 * 1024));
      stream.end();
      up.ws.send(JSON.stringify({ name: 'empty', size: 0 }));
      up.ws.send(Buffer.alloc(0));
      await waitFor(() => up.got.filter((m) => m.type === 'done').length === 2, 'both results');
      const done = up.got.filter((m) => m.type === 'done');
      expect(done).to.deep.equal([
        { type: 'done', name: 'parts.bin', size: file.length, sha256: sha256(file) },
        { type: 'done', name: 'empty', size: 0, sha256: sha256(Buffer.alloc(0)) },
      ]);
      expect(lines.filter((l) => l.startsWith('upload#1 <- binary (more follows) 65536 B')).length).to.be.at.least(1);
    });

    it('closes with 1007 on a header that is not JSON', async () => {
      const up = await peer(`${wsBase}/upload`);
      up.ws.send('{not json');
      up.ws.send(Buffer.alloc(1000));
      expect(await up.closed).to.deep.equal([1007, 'bad upload header']);
    });
  });

  describe('describeFrame', () => {
    it('shows kind, FIN, declared length and a short preview', () => {
      expect(describeFrame('x', 'in', makeFrame(Opcode.Text, Buffer.from('hi')))).to.equal('x <- text 2 B "hi"');
      expect(describeFrame('x', 'out', makeFrame(Opcode.Binary, Buffer.from('0123456789'), { fin: false }))).to.equal(
        'x -> binary (more follows) 10 B 3031323334353637...',
      );
      expect(describeFrame('x', 'in', makeFrame(Opcode.Ping, Buffer.alloc(0)))).to.equal('x <- ping 0 B');
      // A first piece of a streamed frame: the declared length, the text cut.
      expect(describeFrame('x', 'in', makeFrame(Opcode.Text, Buffer.from('abc'), { length: 10 }))).to.equal('x <- text 10 B "abc..."');
    });
  });
});

describe('demo (as npm start runs it, and compiled)', function () {
  this.timeout(60000);
  const children: ChildProcess[] = [];

  afterEach(() => {
    for (const child of children.splice(0)) killGroup(child);
  });

  const compiled = path.join(ROOT, 'dist', 'examples', 'demo.js');
  for (const [label, command, args] of [
    ['ts-node, npm start', path.join(ROOT, 'node_modules', '.bin', 'ts-node'), ['examples/demo.ts']],
    ['compiled', 'node', [compiled]],
  ] as const) {
    it(`serves the page and the chat (${label}); SIGINT exits 0`, async function () {
      if (label === 'compiled' && !fs.existsSync(compiled)) spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
      const child = spawn(command, [...args, '--port', '0'], { cwd: ROOT, detached: true });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => /open http:\/\/127\.0\.0\.1:\d+\//.test(out), 'the demo to start', 30000);
      const url = /open (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)![1]!;
      expect((await fetch(url)).status).to.equal(200);
      const a = await peer(`${url.replace(/^http/, 'ws')}chat`);
      a.ws.send('over the wire');
      await waitFor(() => out.includes('chat#1 <- text 13 B "over the wire"'), 'the frame line');
      child.kill('SIGINT');
      expect((await a.closed)[0]).to.equal(1001);
      const [code] = (await once(child, 'close')) as [number];
      expect(code).to.equal(0);
    });
  }
});

describe('demo in chromium', function () {
  this.timeout(60000);
  let context: BrowserContext | null = null;
  let profile = '';
  let demo: Demo | null = null;

  before(async function () {
    const executablePath = requirePeer(this, findChromium());
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-demo-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    demo = await startDemo({ port: 0, log: () => {} });
  });

  after(async () => {
    await context?.close();
    await demo?.close();
    if (profile !== '') fs.rmSync(profile, { recursive: true, force: true });
  });

  it('two pages chat with each other; one uploads a file and sees 100% and the sha256', async () => {
    const one = await context!.newPage();
    const two = await context!.newPage();
    await one.setViewportSize({ width: 1100, height: 620 });
    await one.goto(demo!.url);
    await one.locator('#me').filter({ hasText: 'you are tab' }).waitFor();
    await two.goto(demo!.url);
    await two.locator('#me').filter({ hasText: 'you are tab' }).waitFor();

    await one.fill('#chat-input', 'hello from page one');
    await one.press('#chat-input', 'Enter');
    await two.locator('#chat-log').filter({ hasText: 'hello from page one' }).waitFor();
    await two.fill('#chat-input', 'and hello back');
    await two.click('#chat-send');
    await one.locator('#chat-log').filter({ hasText: 'and hello back' }).waitFor();
    expect(await two.locator('#chat-log').innerText()).to.include('hello from page one');

    const file = randomBytes(3 * 1024 * 1024 + 123);
    await one.setInputFiles('#file', { name: 'generated.bin', mimeType: 'application/octet-stream', buffer: file });
    await one.locator('#sha256').waitFor();
    expect(await one.locator('#sha256').innerText()).to.equal(sha256(file));
    expect(await one.locator('#percent').innerText()).to.match(/^100% /);
    expect(await one.locator('#result .ok').innerText()).to.include('matches');
    await one.screenshot({ path: path.join(os.tmpdir(), 'demo.png') });
  });
});
