/**
 * `npm run bench:fanout`: one publisher, many subscribers on loopback; our topics
 * (`server.publish`) against the ws way (`for (const c of wss.clients) c.send(data)`), side by
 * side in one run. Prints a Markdown table (and writes it to bench/results/fanout.md).
 *
 * Each case and each server is a fresh pair of processes: the server pinned to CPU 0, the
 * subscribers (raw TCP clients that only count frames, so that they cost little) to CPU 1
 * (taskset). The server publishes `burst` messages per turn of its event loop (then
 * setImmediate), the same pacing for both: a burst is what a publisher does when several
 * updates are ready at once; ours then writes each subscriber's frames of the turn in one socket
 * write, ws writes each message. Figures:
 * - deliveries/s: messages received by the reading subscribers, over the time from the first
 *   publish to the last of them received;
 * - server CPU per delivery (user + system, µs);
 * - the server's peak RSS (maxRSS) and its growth over the RSS with every client connected.
 * Ours subscribes everyone with policy 'drop-oldest' and a limit of 1 MiB (the default) in the cases with
 * stalled subscribers (10 % of them pause their socket after the handshake), and of 8 MiB in the
 * others: there the publisher goes as fast as the server does, faster than loopback's readers,
 * and 1 MiB would discard messages to readers that ws only buffers (what a limit is for, but
 * deliveries per second would then no longer compare the same work). Deflate cases: every
 * client offers permessage-deflate with server_no_context_takeover; the messages are JSON-like
 * and compressible (the clients count compressed frames, they do not inflate).
 *
 * BENCH_FANOUT_QUICK=1 runs smaller cases (a smoke test). Runs as compiled JS (dist/bench).
 * `--case <text>` runs only the case labelled <text>, or else every case whose label contains it
 * (and then writes no results file); `--impl ws|ours` only one side; `--cpu-prof <dir>` runs each server under
 * `node --cpu-prof` with its profile written to <dir>.
 */
import { ChildProcess, execFileSync, fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const SERVER_CPU = '0';
const CLIENT_CPU = '1';
const QUICK = process.env.BENCH_FANOUT_QUICK === '1';

/** The value after `--name` on the command line (main process only), or null. */
function option(name: string): string | null {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1) return null;
  const value = process.argv[i + 1];
  if (value === undefined) throw new Error(`--${name} needs a value`);
  return value;
}
const KiB = 1024;
const STALLED_LIMIT = 1024 * KiB;
const LIMIT = 8 * 1024 * KiB;

type Impl = 'ws' | 'ours';

interface Case {
  label: string;
  /** Messages published per turn of the server's event loop. */
  burst: number;
  /** Milliseconds between bursts (a paced publisher); 0: the next turn (setImmediate), as fast as the server goes. */
  interval: number;
  subscribers: number;
  size: number;
  messages: number;
  stalled: number;
  deflate: boolean;
}

const CASES: Case[] = QUICK
  ? [
      { label: '64 B, 200 subscribers', burst: 10, interval: 0, subscribers: 200, size: 64, messages: 100, stalled: 0, deflate: false },
      { label: '16 KiB, 200 subscribers, 10 % stalled', burst: 10, interval: 0, subscribers: 200, size: 16 * KiB, messages: 100, stalled: 20, deflate: false },
      { label: '16 KiB deflate, 200 subscribers', burst: 10, interval: 0, subscribers: 200, size: 16 * KiB, messages: 20, stalled: 0, deflate: true },
    ]
  : [
      { label: '64 B, 1 000 subscribers, 1 message per turn', burst: 1, interval: 0, subscribers: 1000, size: 64, messages: 200, stalled: 0, deflate: false },
      { label: '64 B, 1 000 subscribers', burst: 10, interval: 0, subscribers: 1000, size: 64, messages: 300, stalled: 0, deflate: false },
      { label: '64 B, 10 000 subscribers', burst: 10, interval: 0, subscribers: 10_000, size: 64, messages: 50, stalled: 0, deflate: false },
      { label: '16 KiB, 1 000 subscribers', burst: 10, interval: 0, subscribers: 1000, size: 16 * KiB, messages: 300, stalled: 0, deflate: false },
      { label: '16 KiB, 10 000 subscribers', burst: 10, interval: 0, subscribers: 10_000, size: 16 * KiB, messages: 30, stalled: 0, deflate: false },
      { label: '64 B, 1 000 subscribers, 10 % stalled', burst: 10, interval: 0, subscribers: 1000, size: 64, messages: 300, stalled: 100, deflate: false },
      // Memory: each stalled subscriber is sent 64 MiB, many times what loopback's socket buffers take (about 4 MiB
      // each here) plus its limit; paced at 200 messages/s, which the readers follow (mostly: at 256 KiB, readers
      // starved of CPU by other work on the machine fell that far behind and were evicted too).
      { label: '16 KiB, 200 subscribers, 10 % stalled, 200 messages/s', burst: 10, interval: 50, subscribers: 200, size: 16 * KiB, messages: 4000, stalled: 20, deflate: false },
      { label: '16 KiB deflate (no context takeover), 1 000 subscribers', burst: 10, interval: 0, subscribers: 1000, size: 16 * KiB, messages: 30, stalled: 0, deflate: true },
    ];

/** A compressible payload of `size` bytes (JSON-like records) or random-ish bytes. */
function payload(size: number, compressible: boolean): Buffer {
  if (!compressible) {
    const b = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) b[i] = (i * 7919) & 0xff;
    return b;
  }
  let text = '';
  for (let i = 0; text.length < size; i++) text += JSON.stringify({ id: i, user: `user${i % 97}`, price: (i * 13) % 1000, side: i % 2 ? 'buy' : 'sell' });
  return Buffer.from(text.slice(0, size));
}

// ----- Server role -----

interface RunResult {
  cpuMicros: number;
  rssBefore: number;
  maxRss: number;
  dropped: number;
  /** ours with deflate: zlib compressions per published message (1: compressed once for every subscriber). */
  compressionsPerMessage: number | null;
}

function serverRole(): void {
  const impl = process.env.IMPL as Impl;
  const deflate = process.env.DEFLATE === '1';
  let publish: (data: Buffer) => void;
  let stats = (): number => 0;
  let compressions = 0;
  let publishedCount = 0;
  let port = 0;
  const listening = (p: number): void => {
    port = p;
    process.send!({ type: 'listening', port });
  };
  if (impl === 'ws') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { WebSocketServer } = require('ws') as typeof import('ws');
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: deflate ? { serverNoContextTakeover: true, threshold: 0 } : false });
    wss.on('connection', (c) => c.on('error', () => {}));
    wss.on('listening', () => listening((wss.address() as net.AddressInfo).port));
    publish = (data) => {
      for (const c of wss.clients) c.send(data);
    };
  } else {
    // Counts the compressions (Publication compresses with zlib.deflateRawSync, looked up at each call).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const zlib = require('node:zlib') as typeof import('node:zlib');
    const deflateRawSync = zlib.deflateRawSync;
    (zlib as { deflateRawSync: typeof deflateRawSync }).deflateRawSync = (...args: Parameters<typeof deflateRawSync>) => {
      compressions++;
      return deflateRawSync(...args);
    };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { createServer } = require('../lib') as typeof import('../lib');
    const server = createServer({
      host: '127.0.0.1',
      port: 0,
      perMessageDeflate: deflate ? { serverNoContextTakeover: true, threshold: 0 } : false,
      fanout: { defaults: { limit: process.env.STALLED === '0' ? LIMIT : STALLED_LIMIT, policy: 'drop-oldest' } },
    });
    server.on('connection', (ws) => {
      ws.on('error', () => {});
      ws.subscribe('t');
    });
    server.on('listening', () => listening(server.address()!.port));
    publish = (data) => void server.publish('t', data);
    stats = () => {
      const c = server.fanoutCounters;
      return c.dropped + c.evicted;
    };
  }
  let cpuStart: NodeJS.CpuUsage | null = null;
  let rssBefore = 0;
  process.on('message', (m: { cmd: string; size: number; messages: number; deflate: boolean; burst: number; interval: number }) => {
    if (m.cmd === 'run') {
      const data = payload(m.size, m.deflate);
      rssBefore = process.memoryUsage().rss;
      cpuStart = process.cpuUsage();
      let sent = 0;
      compressions = 0;
      const next = (): void => {
        // A fresh Buffer per message, as a real publisher's would be (one Buffer sent again and
        // again would let ws's queued frames all share one payload, hiding what queuing costs).
        for (let i = 0; i < m.burst && sent < m.messages; i++, sent++) publish(Buffer.from(data));
        publishedCount = sent;
        if (sent < m.messages) {
          if (m.interval === 0) setImmediate(next);
          else setTimeout(next, m.interval);
        }
      };
      next();
    } else if (m.cmd === 'stop') {
      const cpu = process.cpuUsage(cpuStart ?? undefined);
      const result: RunResult = {
        cpuMicros: cpu.user + cpu.system,
        rssBefore,
        maxRss: process.resourceUsage().maxRSS * 1024,
        dropped: stats(),
        compressionsPerMessage: impl === 'ours' && deflate ? compressions / publishedCount : null,
      };
      process.send!({ type: 'result', result }, () => process.exit(0));
    }
  });
  void port;
}

// ----- Clients role -----

function clientsRole(): void {
  const port = Number(process.env.PORT);
  const total = Number(process.env.SUBSCRIBERS);
  const stalled = Number(process.env.STALLED);
  const deflate = process.env.DEFLATE === '1';
  const ext = deflate ? 'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n' : '';
  const request = Buffer.from(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${ext}\r\n`,
  );
  let received = 0;
  let lastAt = 0;
  const sockets: net.Socket[] = [];
  // The subscribers' CPU time from their first message on (user + system, µs).
  let cpuAtFirst: NodeJS.CpuUsage | null = null;
  const cpuMicros = (): number => {
    if (cpuAtFirst === null) return 0;
    const u = process.cpuUsage(cpuAtFirst);
    return u.user + u.system;
  };

  /** Counts whole data messages in the frames of one connection (server frames: never masked). */
  function counter(): (chunk: Buffer) => void {
    const head = Buffer.alloc(10);
    let headLength = 0;
    let skip = 0;
    let countAtEnd = false;
    return (chunk) => {
      cpuAtFirst ??= process.cpuUsage();
      let i = 0;
      while (i < chunk.length) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - i);
          skip -= n;
          i += n;
          if (skip === 0 && countAtEnd) {
            received++;
            lastAt = performance.timeOrigin + performance.now();
          }
          continue;
        }
        head[headLength++] = chunk[i++]!;
        if (headLength < 2) continue;
        const len7 = head[1]! & 0x7f;
        const need = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
        if (headLength < need) continue;
        const length = len7 === 126 ? head.readUInt16BE(2) : len7 === 127 ? head.readUInt32BE(6) : len7;
        const data = (head[0]! & 0x0f) < 8;
        countAtEnd = data && (head[0]! & 0x80) !== 0;
        headLength = 0;
        skip = length;
        if (skip === 0 && countAtEnd) {
          received++;
          lastAt = performance.timeOrigin + performance.now();
        }
      }
    };
  }

  function open(index: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      let head = Buffer.alloc(0);
      const count = counter();
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!head.subarray(0, 12).toString().includes('101')) {
          reject(new Error(`handshake refused: ${head.toString()}`));
          return;
        }
        socket.removeListener('data', onData);
        const rest = head.subarray(end + 4);
        if (index < stalled) {
          socket.pause();
        } else {
          socket.on('data', count);
          if (rest.length > 0) count(rest);
        }
        resolve();
      };
      socket.on('data', onData);
      socket.on('error', reject);
      socket.on('connect', () => socket.write(request));
      sockets.push(socket);
    });
  }

  void (async () => {
    for (let i = 0; i < total; i += 250) {
      const batch: Array<Promise<void>> = [];
      for (let j = i; j < Math.min(total, i + 250); j++) batch.push(open(j));
      await Promise.all(batch);
    }
    process.send!({ type: 'connected' });
  })().catch((err: Error) => {
    process.send!({ type: 'failed', error: err.message });
  });
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'progress') process.send!({ type: 'progress', received, lastAt, cpuMicros: cpuMicros() });
    if (m.cmd === 'stop') {
      for (const s of sockets) s.destroy();
      process.exit(0);
    }
  });
}

// ----- Main -----

const SELF = __filename;

function child(role: string, cpu: string, env: Record<string, string>, nodeArgs: string[] = []): ChildProcess {
  return fork(SELF, [role], {
    execPath: 'taskset',
    execArgv: ['-c', cpu, process.execPath, ...nodeArgs],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function next<T extends { type: string }>(proc: ChildProcess, type: string, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: T): void => {
      if (m.type === 'failed') {
        clearTimeout(timer);
        proc.removeListener('message', onMessage);
        reject(new Error(JSON.stringify(m)));
      }
      if (m.type !== type) return;
      clearTimeout(timer);
      proc.removeListener('message', onMessage);
      resolve(m);
    };
    proc.on('message', onMessage);
  });
}

interface Figures {
  deliveriesPerSecond: number;
  /** The subscribers' process: CPU time over the measured time (near 100 %: it, not the server, sets the pace). */
  clientBusy: number;
  cpuPerDelivery: number;
  maxRss: number;
  rssGrowth: number;
  delivered: number;
  expected: number;
  discarded: number;
  compressionsPerMessage: number | null;
}

async function runCase(c: Case, impl: Impl, profileDir: string | null): Promise<Figures> {
  const deflate = c.deflate ? '1' : '0';
  const nodeArgs = profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${impl}-${c.label.replace(/[^a-zA-Z0-9]+/g, '-')}.cpuprofile`];
  const server = child('server', SERVER_CPU, { IMPL: impl, DEFLATE: deflate, STALLED: String(c.stalled) }, nodeArgs);
  const { port } = await next<{ type: string; port: number }>(server, 'listening');
  const clients = child('clients', CLIENT_CPU, { PORT: String(port), SUBSCRIBERS: String(c.subscribers), STALLED: String(c.stalled), DEFLATE: deflate });
  await next(clients, 'connected', 180_000);
  // Let the server settle (the last handshakes, the clients' set) before measuring.
  await new Promise((r) => setTimeout(r, 300));
  const expected = (c.subscribers - c.stalled) * c.messages;
  const start = performance.timeOrigin + performance.now();
  server.send({ cmd: 'run', size: c.size, messages: c.messages, deflate: c.deflate, burst: c.burst, interval: c.interval });
  let progress = { received: 0, lastAt: start, cpuMicros: 0 };
  let unchangedSince = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 50));
    clients.send({ cmd: 'progress' });
    const p = await next<{ type: string; received: number; lastAt: number; cpuMicros: number }>(clients, 'progress');
    if (p.received !== progress.received) unchangedSince = Date.now();
    progress = p;
    if (p.received >= expected || Date.now() - unchangedSince > 3000) break;
  }
  const resultAt = next<{ type: string; result: RunResult }>(server, 'result');
  server.send({ cmd: 'stop' });
  const { result } = await resultAt;
  clients.send({ cmd: 'stop' });
  await Promise.all([server, clients].map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('close', r)))));
  const seconds = (progress.lastAt - start) / 1000;
  return {
    clientBusy: progress.cpuMicros / 1e6 / seconds,
    deliveriesPerSecond: progress.received / seconds,
    cpuPerDelivery: result.cpuMicros / Math.max(1, progress.received),
    maxRss: result.maxRss,
    rssGrowth: result.maxRss - result.rssBefore,
    delivered: progress.received,
    expected,
    discarded: result.dropped,
    compressionsPerMessage: result.compressionsPerMessage,
  };
}

/** The commit measured (with a note when the tree has changes). */
function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    // This file's own results (bench/results) do not count: a run rewrites them.
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':!bench/results'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head} (with uncommitted changes)` : head;
  } catch {
    return 'an unknown commit';
  }
}

function ulimit(): string {
  try {
    return execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const mib = (n: number): string => `${fmt(n / (1024 * 1024), 1)} MiB`;

async function main(): Promise<void> {
  const only = option('case');
  const impls = (option('impl') ?? 'ws,ours').split(',') as Impl[];
  if (impls.some((i) => i !== 'ws' && i !== 'ours')) throw new Error('--impl takes ws, ours or ws,ours');
  const profileDir = option('cpu-prof');
  // A label given whole selects that case alone; otherwise every label containing the text.
  const exact = CASES.filter((c) => c.label === only);
  const cases = only === null ? CASES : exact.length > 0 ? exact : CASES.filter((c) => c.label.includes(only));
  if (cases.length === 0) throw new Error(`no case matches ${JSON.stringify(only)}; the cases: ${CASES.map((c) => c.label).join('; ')}`);
  const began = Date.now();
  const lines: string[] = [];
  lines.push(`# Fan-out: one publisher, many subscribers (${new Date().toISOString().slice(0, 10)})`, '');
  lines.push(
    `Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} CPUs (shared with other work while measured); server on CPU ${SERVER_CPU}, subscribers on CPU ${CLIENT_CPU}.`,
    `Measured at ${commit()} with \`${['node', ...process.argv.slice(1).map((a) => path.relative(process.cwd(), a) || a)].join(' ')}\` (ulimit -n ${ulimit()}); load average of the machine at the start ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')} (1 / 5 / 15 min): other work shared it.`,
    `ours: server.publish(topic, data), subscribers { limit: 1 MiB with stalled subscribers, else 8 MiB, policy: 'drop-oldest' }; ws: for (const c of wss.clients) c.send(data). 10 messages published per turn of the event loop unless the case says otherwise. One run per cell.`,
    '',
    '| case | server | deliveries/s | ratio | CPU µs/delivery | peak RSS | RSS growth | delivered / expected | discarded (ours) | compressions per message (ours) | subscribers\' CPU |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const c of cases) {
    const figures: Partial<Record<Impl, Figures>> = {};
    for (const impl of impls) {
      process.stderr.write(`${c.label}: ${impl}...\n`);
      figures[impl] = await runCase(c, impl, profileDir);
    }
    for (const impl of impls) {
      const f = figures[impl]!;
      const ws = figures.ws;
      const ratio = ws === undefined ? '-' : impl === 'ours' ? `${fmt(f.deliveriesPerSecond / ws.deliveriesPerSecond, 2)}x` : '1.00x';
      lines.push(
        `| ${c.label} | ${impl} | ${fmt(f.deliveriesPerSecond)} | ${ratio} | ${fmt(f.cpuPerDelivery, 2)} | ${mib(f.maxRss)} | ${mib(f.rssGrowth)} | ${fmt(f.delivered)} / ${fmt(f.expected)} | ${impl === 'ours' ? fmt(f.discarded) : '-'} | ${f.compressionsPerMessage === null ? '-' : fmt(f.compressionsPerMessage, 2)} | ${fmt(f.clientBusy * 100)} % |`,
      );
    }
  }
  lines.push('', `Whole run: ${fmt((Date.now() - began) / 1000, 1)} s; load average at the end ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')}.`);
  const table = lines.join('\n');
  console.log(table);
  if (!QUICK && only === null && impls.length === 2 && profileDir === null) fs.writeFileSync(path.join(__dirname, '..', '..', 'bench', 'results', 'fanout.md'), `${table}\n`);
}

const role = process.argv[2];
if (role === 'server') serverRole();
else if (role === 'clients') clientsRole();
else
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
