/**
 * bench/http2.ts: WebSocket over HTTP/2 (RFC 8441) against HTTP/1.1. Echo throughput over TLS,
 * 16 WebSockets each with 16 messages in flight, server and client in one process pinned to one
 * CPU with taskset, each case in a fresh process, runs interleaved, median of 3:
 *
 *   ws h1      the ws package, 16 wss:// connections (HTTP/1.1, one TLS connection each)
 *   ours h1    wspipe, 16 wss:// connections (HTTP/1.1)
 *   ours h2    wspipe, 16 WebSockets as streams of ONE HTTP/2 connection (one TLS connection)
 *
 * for 64-byte and 16 KiB binary messages (permessage-deflate off).
 *
 *   npm run build && node dist/bench/http2.js          (BENCH_MS=2000, BENCH_RUNS=3, BENCH_SIZES=64,16384)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import WsWebSocket, { WebSocketServer as WsServer } from 'ws';
import { connect, createServer } from '../lib';
import { type EchoEndpoint, echoRate } from './echo-rate';

const ALL_CASES = ['ws h1', 'ours h1', 'ours h2', 'ours h2 64K'] as const;
type Case = (typeof ALL_CASES)[number];
/**
 * 'ours h2 64K': as 'ours h2' on a session the bench opens itself with node:http2's default
 * windows (64 KiB per stream and per connection), for comparison with the windows connect()
 * sets (lib/http2/client.ts, Http2Windows). Run only with BENCH_H2_COMPARE=1.
 */
const CASES: readonly Case[] = process.env.BENCH_H2_COMPARE === '1' ? ALL_CASES : ALL_CASES.slice(0, 3);
/** BENCH_SIZES=16384 (comma-separated) runs only those sizes (of 64 and 16384). */
const SIZES = process.env.BENCH_SIZES === undefined ? [64, 16 * 1024] : process.env.BENCH_SIZES.split(',').map(Number);
const SOCKETS = 16;
const IN_FLIGHT = 16;
const DURATION_MS = Number(process.env.BENCH_MS ?? 2000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);

/** All endpoints echo for DURATION_MS after a warm-up; returns messages per second (all sockets). */
function measure(endpoints: Array<EchoEndpoint<Buffer>>, size: number): Promise<number> {
  return echoRate(endpoints, Buffer.alloc(size, 7), IN_FLIGHT, DURATION_MS);
}

async function runCase(which: Case, size: number, tls: { key: string; cert: string }): Promise<number> {
  if (which === 'ws h1') {
    const server = https.createServer(tls);
    const wss = new WsServer({ server, perMessageDeflate: false });
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const clients = await Promise.all(
      Array.from({ length: SOCKETS }, async () => {
        const ws = new WsWebSocket(`wss://127.0.0.1:${port}`, { perMessageDeflate: false, ca: tls.cert });
        await once(ws, 'open');
        return ws;
      }),
    );
    const rate = await measure(clients.map((ws) => ({ send: (data) => ws.send(data), onMessage: (listener) => ws.on('message', listener) })), size);
    for (const ws of clients) ws.terminate();
    server.closeAllConnections();
    server.close();
    return rate;
  }
  const h2 = which === 'ours h2' || which === 'ours h2 64K';
  // BENCH_H2_SERVER_WINDOWS=1: the server's windows as docs/http2.md suggests ("Flow control").
  const serverWindows = process.env.BENCH_H2_SERVER_WINDOWS === '1';
  const server = h2 ? http2.createSecureServer({ ...tls, ...(serverWindows ? { settings: { initialWindowSize: 1024 * 1024 } } : {}) }) : https.createServer(tls);
  if (h2 && serverWindows) server.on('session', (session: http2.ServerHttp2Session) => session.setLocalWindowSize(16 * 1024 * 1024));
  const wss = createServer({ server, http2: h2 });
  wss.on('connection', (ws) => ws.on('message', (data: Buffer) => ws.send(data)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const tlsOptions = { ca: tls.cert };
  const own = which === 'ours h2 64K' ? http2.connect(`https://127.0.0.1:${port}`, tlsOptions) : null;
  const clients = await Promise.all(
    Array.from({ length: SOCKETS }, async () => {
      const ws = connect(`wss://127.0.0.1:${port}`, { perMessageDeflate: false, tls: tlsOptions, http2: own ?? h2 });
      await once(ws, 'open');
      return ws;
    }),
  );
  const rate = await measure(clients.map((ws) => ({ send: (data) => ws.send(data), onMessage: (listener) => ws.on('message', listener) })), size);
  for (const ws of clients) ws.terminate();
  own?.destroy();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  return rate;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function makeCert(): { key: string; cert: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-bench-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', path.join(dir, 'k'), '-out', path.join(dir, 'c')], { stdio: 'ignore' });
    return { key: fs.readFileSync(path.join(dir, 'k'), 'utf8'), cert: fs.readFileSync(path.join(dir, 'c'), 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function child(which: Case, size: number): Promise<void> {
  const tls = JSON.parse(process.env.BENCH_TLS!) as { key: string; cert: string };
  const rate = await runCase(which, size, tls);
  process.stdout.write(`${JSON.stringify({ rate })}\n`);
  process.exit(0);
}

function parent(): void {
  const cpu = process.env.BENCH_CPU ?? '1';
  const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
  const env = { ...process.env, BENCH_TLS: JSON.stringify(makeCert()) };
  const rates = new Map<string, number[]>();
  for (let run = 0; run < RUNS; run++) {
    for (const size of SIZES) {
      for (const which of CASES) {
        const args = [__filename, '--child', which, String(size)];
        const out = hasTaskset
          ? execFileSync('taskset', ['-c', cpu, process.execPath, ...args], { encoding: 'utf8', env })
          : execFileSync(process.execPath, args, { encoding: 'utf8', env });
        const { rate } = JSON.parse(out.trim().split('\n').pop()!) as { rate: number };
        const key = `${which}|${size}`;
        rates.set(key, [...(rates.get(key) ?? []), rate]);
        process.stderr.write(`run ${run + 1} ${which} ${size} B: ${Math.round(rate)} msg/s\n`);
      }
    }
  }
  console.log(`Echo over TLS, ${SOCKETS} WebSockets x ${IN_FLIGHT} in flight, ${DURATION_MS} ms x ${RUNS} runs (median, min-max), ${hasTaskset ? `pinned to CPU ${cpu}` : 'not pinned'}`);
  console.log('');
  console.log('| size | ws h1 msg/s | ours h1 msg/s | ours h2 msg/s | h2 / h1 (ours) | h2 / ws h1 |');
  console.log('|---|---|---|---|---|---|');
  for (const size of SIZES) {
    const cell = (which: Case): string => {
      const values = rates.get(`${which}|${size}`)!;
      return `${Math.round(median(values))} (${Math.round(Math.min(...values))}-${Math.round(Math.max(...values))})`;
    };
    const m = (which: Case): number => median(rates.get(`${which}|${size}`)!);
    console.log(`| ${size === 64 ? '64 B' : '16 KiB'} | ${cell('ws h1')} | ${cell('ours h1')} | ${cell('ours h2')} | ${(m('ours h2') / m('ours h1')).toFixed(2)} | ${(m('ours h2') / m('ws h1')).toFixed(2)} |`);
  }
  if (CASES.includes('ours h2 64K')) {
    console.log('');
    console.log('| size | ours h2, 64 KiB windows msg/s | ours h2 msg/s | ratio | per run: h2 / h2 64K |');
    console.log('|---|---|---|---|---|');
    for (const size of SIZES) {
      const small = rates.get(`ours h2 64K|${size}`)!;
      const big = rates.get(`ours h2|${size}`)!;
      const cell = (values: number[]): string => `${Math.round(median(values))} (${Math.round(Math.min(...values))}-${Math.round(Math.max(...values))})`;
      const perRun = big.map((rate, i) => (rate / small[i]!).toFixed(2)).join(', ');
      console.log(`| ${size === 64 ? '64 B' : '16 KiB'} | ${cell(small)} | ${cell(big)} | ${(median(big) / median(small)).toFixed(2)} | ${perRun} |`);
    }
  }
}

const at = process.argv.indexOf('--child');
if (at > 0) void child(process.argv[at + 1] as Case, Number(process.argv[at + 2]));
else parent();
