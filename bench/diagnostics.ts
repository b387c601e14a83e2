/**
 * bench/diagnostics.ts: what diagnostics_channel publication costs. Echo throughput (64-byte
 * text messages, 64 in flight, one connection, server and client in one process pinned to one
 * CPU with taskset) in five cases, each in a fresh process, runs interleaved, median of 3:
 *
 *   ws          the ws package's server and client (the reference, same run)
 *   never       wspipe, no subscriber ever (the channels exist, nobody listens)
 *   unsubscribed  wspipe, every channel subscribed then unsubscribed before connecting
 *   lifecycle   wspipe, subscribers on open, close, error, ping, pong, handshake:rejected
 *   all         wspipe, subscribers on every channel, message and frame included
 *
 *   npm run build && node dist/bench/diagnostics.js        (BENCH_MS=2000, BENCH_RUNS=3)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as dc from 'node:diagnostics_channel';
import { once } from 'node:events';
import WsWebSocket, { WebSocketServer as WsServer } from 'ws';
import { connect, createServer } from '../lib';
import { echoRate } from './echo-rate';

const CASES = ['ws', 'never', 'unsubscribed', 'lifecycle', 'all'] as const;
type Case = (typeof CASES)[number];
const DURATION_MS = Number(process.env.BENCH_MS ?? 2000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const IN_FLIGHT = 64;
const PAYLOAD = 'x'.repeat(64);
const LIFECYCLE = ['open', 'close', 'error', 'ping', 'pong'].map((name) => `wspipe:websocket:${name}`).concat('wspipe:handshake:rejected');
const ALL = LIFECYCLE.concat('wspipe:websocket:message', 'wspipe:websocket:frame');

/** A subscriber that does as little as a real one could: counts. */
let seen = 0;
const subscriber = (): void => {
  seen++;
};

/** Echoes for DURATION_MS after a short warm-up; returns messages per second. */
function measure(send: (data: string) => void, onMessage: (listener: () => void) => void): Promise<number> {
  return echoRate([{ send, onMessage }], PAYLOAD, IN_FLIGHT, DURATION_MS);
}

async function runWs(): Promise<number> {
  const server = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await once(server, 'listening');
  server.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const ws = new WsWebSocket(`ws://127.0.0.1:${(server.address() as { port: number }).port}`, { perMessageDeflate: false });
  await once(ws, 'open');
  const rate = await measure((data) => ws.send(data), (listener) => ws.on('message', listener));
  ws.terminate();
  server.close();
  return rate;
}

async function runOurs(which: Exclude<Case, 'ws'>): Promise<number> {
  if (which === 'unsubscribed') {
    for (const name of ALL) dc.subscribe(name, subscriber);
    for (const name of ALL) dc.unsubscribe(name, subscriber);
  }
  if (which === 'lifecycle' || which === 'all') for (const name of which === 'all' ? ALL : LIFECYCLE) dc.subscribe(name, subscriber);
  const server = createServer({ port: 0, host: '127.0.0.1' });
  await once(server, 'listening');
  server.on('connection', (ws) => ws.on('message', (data: string | Buffer) => ws.send(data)));
  const ws = connect(`ws://127.0.0.1:${server.address()!.port}`, { perMessageDeflate: false });
  await once(ws, 'open');
  const rate = await measure((data) => ws.send(data), (listener) => ws.on('message', listener));
  ws.terminate();
  server.close();
  return rate;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function child(which: Case): Promise<void> {
  const rate = which === 'ws' ? await runWs() : await runOurs(which);
  process.stdout.write(`${JSON.stringify({ rate, seen })}\n`);
  process.exit(0);
}

function parent(): void {
  const cpu = process.env.BENCH_CPU ?? '1';
  const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
  const rates = new Map<Case, number[]>(CASES.map((one) => [one, []]));
  const published = new Map<Case, number>();
  for (let run = 0; run < RUNS; run++) {
    for (const which of CASES) {
      const args = [__filename, '--child', which];
      const out = hasTaskset ? execFileSync('taskset', ['-c', cpu, process.execPath, ...args], { encoding: 'utf8' }) : execFileSync(process.execPath, args, { encoding: 'utf8' });
      const result = JSON.parse(out.trim().split('\n').pop()!) as { rate: number; seen: number };
      rates.get(which)!.push(result.rate);
      published.set(which, result.seen);
      process.stderr.write(`run ${run + 1} ${which}: ${Math.round(result.rate)} msg/s\n`);
    }
  }
  const base = median(rates.get('never')!);
  const wsRate = median(rates.get('ws')!);
  console.log(`Echo, 64 B text, ${IN_FLIGHT} in flight, one connection, ${DURATION_MS} ms x ${RUNS} runs (median), ${hasTaskset ? `pinned to CPU ${cpu}` : 'not pinned'}`);
  console.log('');
  console.log('| case | msg/s (min-max) | vs never | vs ws | events published |');
  console.log('|---|---|---|---|---|');
  for (const which of CASES) {
    const values = rates.get(which)!;
    const m = median(values);
    console.log(
      `| ${which} | ${Math.round(m)} (${Math.round(Math.min(...values))}-${Math.round(Math.max(...values))}) | ${(m / base).toFixed(3)} | ${(m / wsRate).toFixed(2)} | ${which === 'ws' ? '-' : published.get(which)} |`,
    );
  }
}

const at = process.argv.indexOf('--child');
if (at > 0) void child(process.argv[at + 1] as Case);
else parent();
