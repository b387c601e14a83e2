/**
 * The `wspipe proxy` and `wspipe replay` commands, run as the real binary (dist/bin/wspipe.js):
 * relaying and recording a session, printing frames, shutting down on SIGINT with 1001,
 * replaying the recording, and the proxy's memory with a slow upstream.
 */
import { expect } from 'chai';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, createServer, WebSocket, WebSocketServer } from '../lib';
import { readFrameLog } from '../lib/capture/frame-log';
import { acceptKey } from '../lib/handshake/handshake';

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'dist', 'bin', 'wspipe.js');
const SOURCES = ['bin/wspipe.ts', 'bin/commands/proxy.ts', 'bin/commands/replay.ts', 'lib/proxy/proxy.ts', 'lib/proxy/listener.ts', 'lib/proxy/relay.ts', 'lib/proxy/observer.ts', 'lib/server/accept.ts', 'lib/client/dial.ts', 'lib/capture/frame-log.ts', 'lib/capture/replay.ts'];
const LOCAL = '127.0.0.1';

/** Builds dist/ when the compiled commands are missing or older than their sources. */
function ensureBuilt(): void {
  const built = (file: string): number => {
    try {
      return fs.statSync(path.join(ROOT, 'dist', file.replace(/\.ts$/, '.js'))).mtimeMs;
    } catch {
      return 0;
    }
  };
  const stale = SOURCES.some((file) => built(file) < fs.statSync(path.join(ROOT, file)).mtimeMs);
  if (!stale) return;
  try {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'pipe' });
  } catch {
    // Type errors elsewhere in the tree still emit JavaScript; what matters is that ours is there.
  }
  for (const file of SOURCES) if (built(file) === 0) throw new Error(`the build did not produce dist/${file}`);
}

interface Running {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exit: Promise<number | null>;
}

const children = new Set<ChildProcess>();

function start(args: string[]): Running {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (t: string) => stdout.push(t));
  child.stderr!.setEncoding('utf8').on('data', (t: string) => stderr.push(t));
  const exit = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  return { child, stdout, stderr, exit };
}

/** Waits for the proxy's "listening on HOST:PORT" line; returns the port. */
async function proxyPort(run: Running): Promise<number> {
  for (let i = 0; i < 400; i++) {
    const m = /listening on [^:]+:(\d+)/.exec(run.stderr.join(''));
    if (m !== null) return Number(m[1]);
    if (run.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the proxy did not start: ${run.stderr.join('')}`);
}

function closed(ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
}

describe('wspipe proxy and replay (the binary)', function () {
  this.timeout(20000);
  let server: WebSocketServer;
  let url: string;
  let dir: string;

  before(function () {
    this.timeout(120000);
    ensureBuilt();
  });
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-cli-proxy-'));
    server = createServer({ port: 0, host: LOCAL });
    server.on('connection', (ws: WebSocket) => ws.on('message', (d: string | Buffer, binary: boolean) => ws.send(d, { binary })));
    await once(server, 'listening');
    url = `ws://${LOCAL}:${server.address()!.port}`;
  });
  afterEach(async () => {
    for (const child of children) child.kill('SIGKILL');
    await new Promise<void>((resolve) => server.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('relays, records with --tap, prints with --print, and closes both sides with 1001 on SIGINT; replay plays the recording', async () => {
    const log = path.join(dir, 'session.ndjson');
    const proxy = start(['proxy', '--port', '0', '--to', url, '--tap', log, '--print']);
    const port = await proxyPort(proxy);
    const serverSide = once(server, 'connection') as Promise<[WebSocket]>;
    const client = connect(`ws://${LOCAL}:${port}/`);
    const got: Array<string | Buffer> = [];
    client.on('message', (d: string | Buffer) => got.push(d));
    await once(client, 'open');
    const [upstream] = await serverSide;
    client.send('hello');
    client.send(Buffer.from([1, 2, 3]));
    while (got.length < 2) await once(client, 'message');
    expect(got).to.deep.equal(['hello', Buffer.from([1, 2, 3])]);

    const bothClosed = Promise.all([closed(client), closed(upstream)]);
    proxy.child.kill('SIGINT');
    const [[clientCode], [upstreamCode]] = await bothClosed;
    expect([clientCode, upstreamCode]).to.deep.equal([1001, 1001]);
    expect(await proxy.exit).to.equal(0);

    const printed = proxy.stdout.join('');
    expect(printed).to.match(/> upstream text fin len=5 "hello"/);
    expect(printed).to.match(/< downstream text fin len=5 "hello"/);
    const entries = readFrameLog(log);
    const summary = entries.map((e) => `${e.dir} ${e.frame.opcode} ${e.frame.payload.toString('hex')}`);
    expect(summary).to.include.members(['upstream 1 68656c6c6f', 'downstream 1 68656c6c6f', 'upstream 2 010203', 'downstream 2 010203']);
    expect(entries.filter((e) => e.frame.opcode === 8).map((e) => e.dir)).to.include('downstream');

    // The recording played back against the echo server gives the same answers.
    const replayed = start(['replay', log, '--to', url]);
    expect(await replayed.exit).to.equal(0);
    expect(replayed.stdout.join('')).to.equal(`hello\n<binary 3 bytes> ${Buffer.from([1, 2, 3]).toString('base64')}\n`);
  });

  it('usage errors exit 2; an unreachable server makes replay exit 1', async () => {
    const noTarget = start(['proxy', '--port', '0']);
    expect(await noTarget.exit).to.equal(2);
    expect(noTarget.stderr.join('')).to.match(/--to URL is required/);
    const log = path.join(dir, 'one.ndjson');
    fs.writeFileSync(log, `${JSON.stringify({ t: new Date().toISOString(), dir: 'upstream', opcode: 'text', fin: true, rsv1: false, rsv2: false, rsv3: false, len: 1, text: 'x' })}\n`);
    const dead = start(['replay', log, '--to', `ws://${LOCAL}:1`]);
    expect(await dead.exit).to.equal(1);
    const help = start(['proxy', '--help']);
    expect(await help.exit).to.equal(0);
    expect(help.stdout.join('')).to.match(/^usage: wspipe proxy/);
  });

  it('limit flags reach the proxy: --max-payload refuses a larger frame with 1009; a bad value is a usage error naming the flag', async () => {
    const bad = start(['proxy', '--port', '0', '--to', url, '--max-payload', '12x']);
    expect(await bad.exit).to.equal(2);
    expect(bad.stderr.join('')).to.match(/--max-payload/);
    const badBudget = start(['proxy', '--port', '0', '--to', url, '--memory-budget', '0']);
    expect(await badBudget.exit).to.equal(2);
    expect(badBudget.stderr.join('')).to.match(/--memory-budget/);
    const run = start(['proxy', '--port', '0', '--to', url, '--max-payload', '1k', '--max-message-size', '64k', '--memory-budget', '64m', '--close-timeout', '2000', '--paused-ping-interval', 'Infinity']);
    const port = await proxyPort(run);
    const client = connect(`ws://${LOCAL}:${port}/`);
    await once(client, 'open');
    // 1 KiB passes; one byte more is refused by the proxy itself.
    const echoed = once(client, 'message');
    client.send(Buffer.alloc(1024));
    expect((await echoed)[0]).to.have.length(1024);
    const closing = closed(client);
    client.on('error', () => {});
    client.send(Buffer.alloc(1025));
    expect((await closing)[0]).to.equal(1009);
    run.child.kill('SIGINT');
    expect(await run.exit).to.equal(0);
  });

  it('a slow upstream does not grow the proxy process (RSS) with the amount sent', async function () {
    // 256 MiB sent: 15 s on a shared two-core machine under load, 20 s is too tight.
    this.timeout(60000);
    if (!fs.existsSync('/proc/self/status')) this.skip();
    // An upstream that accepts and then reads nothing until told.
    const sockets: net.Socket[] = [];
    const raw = net.createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        socket.pause();
        const text = chunk.toString('latin1');
        const key = /Sec-WebSocket-Key: (.+)\r\n/i.exec(text)![1]!;
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
        sockets.push(socket);
      });
    });
    raw.listen(0, LOCAL);
    await once(raw, 'listening');
    const proxy = start(['proxy', '--port', '0', '--to', `ws://${LOCAL}:${(raw.address() as net.AddressInfo).port}`]);
    const port = await proxyPort(proxy);
    const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${proxy.child.pid}/status`, 'utf8'))![1]) * 1024;
    const client = connect(`ws://${LOCAL}:${port}/`);
    await once(client, 'open');
    const before = rss();
    const MiB = 1024 * 1024;
    const TOTAL = 256;
    for (let i = 0; i < TOTAL; i++) client.send(Buffer.alloc(MiB, i));
    // Let everything that can move move.
    let last = -1;
    for (let i = 0, still = 0; i < 500 && still < 10; i++) {
      await new Promise((r) => setTimeout(r, 20));
      still = client.bufferedAmount === last ? still + 1 : 0;
      last = client.bufferedAmount;
    }
    const during = rss();
    expect(client.bufferedAmount).to.be.greaterThan(128 * MiB); // the sender holds it: backpressure reached the client
    expect(during - before).to.be.lessThan(64 * MiB);
    client.terminate();
    for (const s of sockets) s.destroy();
    proxy.child.kill('SIGINT');
    expect(await proxy.exit).to.equal(0);
    raw.close();
  });
});
