/**
 * `npm run bench:attacks`: each attack of bench/attacks-kinds.ts against our echo server, ws's
 * echo server and our proxy in front of our echo server, one fresh server process per attack.
 * For each: the server's peak RSS (VmHWM), a well-behaved canary connection's echo round trip
 * (p50, p99) during the attack, how and when the attackers were cut off, the RSS after the
 * attack (after a full GC) against before it, and the file descriptors left open. Prints one
 * Markdown table and writes it to bench/results/attacks.md.
 *
 * Loopback only. Servers run pinned to CPU 0 (with --expose-gc), the attackers (this process,
 * pinned by the npm script) and the canary to CPU 1. Each attack lasts BENCH_ATTACK_MS (default
 * 2500 ms) and is bounded in count too. BENCH_TARGETS=ours,ws,proxy and BENCH_ATTACKS=<text>
 * pick a part. BENCH_SERVER_FLAGS adds node flags to the attacked server (e.g. '--cpu-prof
 * --cpu-prof-dir=/tmp/p', which NODE_OPTIONS refuses; for the proxy, to both its processes);
 * BENCH_DIAG=1 has our server write where the canary's time went (bench/servers/attacks-diag.ts)
 * to stderr as it exits, and the proxy too (bench/servers/attacks-proxy-diag.ts).
 */
import { ChildProcess, fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT, CLIENT_CPU, Server } from './harness';
import { ATTACKS, type AttackName, type AttackOutcome, runAttack } from './attacks-kinds';
import type { CanaryCommand, CanaryResult } from './attacks-canary';

const ATTACK_MS = Number(process.env.BENCH_ATTACK_MS ?? 2500);
/** Longest wait for a server to close the attackers' sockets after they left (ms). */
const SETTLE_MS = 3000;
const MiB = 1024 * 1024;
const COMPILED = __filename.endsWith('.js');
/** BENCH_SERVER_FLAGS: node flags for the attacked server (e.g. '--cpu-prof --trace-gc'), space-separated. */
const SERVER_FLAGS = process.env.BENCH_SERVER_FLAGS?.split(' ').filter((flag) => flag !== '') ?? [];

type Target = 'ours' | 'ws' | 'proxy';
const TARGETS = (process.env.BENCH_TARGETS?.split(',') ?? ['ours', 'ws', 'proxy']) as Target[];
const ATTACK_NAMES = (Object.keys(ATTACKS) as AttackName[]).filter((name) => process.env.BENCH_ATTACKS === undefined || name.includes(process.env.BENCH_ATTACKS));

interface Result {
  attack: AttackName;
  target: Target;
  peakRss: number;
  before: number;
  after: number;
  fdsLeft: number;
  /** ms from the attackers leaving to the server closing the last of their sockets (NaN: not within SETTLE_MS). */
  fdsClosedMs: number;
  canary: CanaryResult;
  outcome: AttackOutcome;
}

/** The canary child, on the client CPU. */
function startCanary(): ChildProcess {
  const loader = COMPILED ? [] : ['-r', 'ts-node/register'];
  return fork(path.join(__dirname, `attacks-canary${COMPILED ? '.js' : '.ts'}`), [], {
    cwd: ROOT,
    execPath: 'taskset',
    execArgv: ['-c', CLIENT_CPU, process.execPath, ...loader],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function next<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} from the canary`)), 30_000);
    const listener = (message: { type: string }): void => {
      if (message.type !== type) return;
      clearTimeout(timer);
      child.removeListener('message', listener);
      resolve(message as T);
    };
    child.on('message', listener);
  });
}

/** The peak resident set of process `pid` so far (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? NaN : Number(match[1]) * 1024;
}

function fds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** The servers of a target: the one attacked first (measured), and the upstream for the proxy. */
async function startTarget(target: Target): Promise<Server[]> {
  if (target === 'ws') return [await Server.start('attacks-ws', {}, SERVER_FLAGS)];
  const ours = await Server.start('attacks-ours', {}, SERVER_FLAGS);
  if (target === 'ours') return [ours];
  return [await Server.start('attacks-proxy', { UPSTREAM_PORT: String(ours.port) }, SERVER_FLAGS), ours];
}

async function measure(attack: AttackName, target: Target, canary: ChildProcess): Promise<Result> {
  const servers = await startTarget(target);
  const server = servers[0]!;
  const pid = server.child.pid!;
  try {
    const before = (await server.memory()).rss;
    const fds0 = fds(pid);
    canary.send({ cmd: 'start', port: server.port } satisfies CanaryCommand);
    await next(canary, 'ready');
    const outcome = await runAttack(attack, server.port, performance.now() + ATTACK_MS);
    // runAttack destroys the attackers' sockets as it returns.
    const left = performance.now();
    canary.send({ cmd: 'stop' } satisfies CanaryCommand);
    const { result } = await next<{ result: CanaryResult }>(canary, 'canary');
    const peak = peakRss(pid);
    // The attackers are gone: give the server a bounded time to close their sockets.
    const settle = performance.now() + SETTLE_MS;
    while (fds(pid) > fds0 && performance.now() < settle) await new Promise((resolve) => setTimeout(resolve, 10));
    const fdsClosedMs = fds(pid) > fds0 ? NaN : performance.now() - left;
    const after = (await server.memory()).rss;
    return { attack, target, peakRss: peak, before, after, fdsLeft: fds(pid) - fds0, fdsClosedMs, canary: result, outcome };
  } finally {
    for (const s of servers) await s.stop();
  }
}

const mib = (bytes: number): string => (bytes / MiB).toFixed(0);
const ms = (value: number): string => (Number.isNaN(value) ? 'n/a' : value < 10 ? value.toFixed(1) : value.toFixed(0));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)]!;
}

function cutCell(o: AttackOutcome): string {
  if (o.note !== '') return o.note;
  if (o.cutMs.length === 0) return `none of ${o.attackers} within ${ATTACK_MS} ms`;
  const how = Object.entries(o.how)
    .map(([k, n]) => `${k} ×${n}`)
    .join(', ');
  return `${o.cutMs.length}/${o.attackers}: median ${ms(median(o.cutMs))} ms, last ${ms(Math.max(...o.cutMs))} ms (${how})`;
}

function table(results: Result[]): string {
  const lines = [
    '| attack | server | peak RSS MiB | canary echo p50 / p99 ms | attackers cut off (ms after each started; how) | RSS after - before, MiB (after GC) | fds left (closed how long after the attackers left) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of results) {
    const canary = `${ms(r.canary.p50)} / ${ms(r.canary.p99)}${r.canary.lost ? ' (lost)' : ''} (${r.canary.count} echoes)`;
    const peak = r.target === 'ours' ? ratioTo(r, results) : mib(r.peakRss);
    lines.push(`| ${r.attack} | ${r.target} | ${peak} | ${canary} | ${cutCell(r.outcome)} | ${mib(r.after - r.before)} (${mib(r.before)} → ${mib(r.after)}) | ${r.fdsLeft} (${Number.isNaN(r.fdsClosedMs) ? `not within ${SETTLE_MS} ms` : `${ms(r.fdsClosedMs)} ms`}) |`);
  }
  return lines.join('\n');
}

/** Our peak, with its ratio to ws's in the same run. */
function ratioTo(r: Result, results: Result[]): string {
  const ws = results.find((o) => o.attack === r.attack && o.target === 'ws');
  return ws === undefined ? mib(r.peakRss) : `${mib(r.peakRss)} (${(r.peakRss / ws.peakRss).toFixed(2)}x ws)`;
}

async function main(): Promise<void> {
  const started = performance.now();
  const canary = startCanary();
  await next(canary, 'ready');
  const results: Result[] = [];
  try {
    for (const attack of ATTACK_NAMES) {
      for (const target of TARGETS) {
        process.stderr.write(`${attack} against ${target}...\n`);
        results.push(await measure(attack, target, canary));
      }
    }
  } finally {
    canary.send({ cmd: 'exit' } satisfies CanaryCommand);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  const header = [
    `npm run bench:attacks: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} CPUs, Node ${process.version}, ${new Date().toISOString()}, ${seconds} s.`,
    `Each attack for ${ATTACK_MS} ms against a fresh server process; the attacks:`,
    '',
    ...ATTACK_NAMES.map((name) => `- ${name}: ${ATTACKS[name]}`),
    '',
  ].join('\n');
  const out = `${header}\n${table(results)}\n`;
  process.stdout.write(out);
  fs.mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
  fs.writeFileSync(path.join(ROOT, 'bench', 'results', 'attacks.md'), out);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err instanceof Error ? err.stack : err)}\n`);
  process.exit(1);
});
