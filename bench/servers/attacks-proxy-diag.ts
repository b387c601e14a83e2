/**
 * BENCH_DIAG=1 for bench/servers/attacks-proxy.ts: where a canary's round trip goes in the
 * proxy during an attack. Written to stderr at exit (beside the upstream's own, attacks-diag.ts):
 * the event loop's delay, the 1 ms timer's period, the CPU time used, how long the relay's
 * 'data' handlers took (per chunk, and per side and turn of the event loop), and for the first
 * connection (the canary): the time from its message reaching the proxy to the echo coming back
 * from the upstream (the upstream's leg, with the proxy's own delay in reading it) and from the
 * echo to the canary's next message (the client's leg), and, sampled every millisecond the loop
 * allows, what holds its sides (paused, the peer wanting 'drain', the core's holds, the budget).
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type * as net from 'node:net';
import type { ProxyConnection, WebSocketProxy } from '../../lib/proxy/proxy';

interface SideInternals {
  socket: net.Socket;
  paused: boolean;
  needDrain: boolean;
  probeTimer: unknown;
  core: { holds: number };
}
interface ConnInternals {
  client: SideInternals;
  upstream: SideInternals;
  heldForBudget: boolean;
}

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function summary(values: number[]): string {
  const s = [...values].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return `n ${s.length} p50 ${pct(s, 0.5).toFixed(2)} p99 ${pct(s, 0.99).toFixed(2)} max ${(s.at(-1) ?? NaN).toFixed(2)} sum ${sum.toFixed(0)}`;
}

export function diagnoseProxy(proxy: WebSocketProxy): void {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  // The turn of the event loop, counted as turn.ts counts it (a setImmediate once per turn with reads).
  let turn = 0;
  let counting = false;
  const countTurn = (): void => {
    if (counting) return;
    counting = true;
    setImmediate(() => {
      turn++;
      counting = false;
    });
  };
  const chunkMs: number[] = [];
  const chunkBytes: number[] = [];
  /** Per turn: the time all 'data' handlers took, and the sides that read. */
  const turnMs = new Map<number, { ms: number; sides: number; bytes: number }>();
  const sideTurnMs: number[] = [];
  let canary: ConnInternals | null = null;
  let canaryIn = 0;
  let canaryBack = 0;
  const upLeg: number[] = [];
  const clientLeg: number[] = [];
  const states = new Map<string, number>();
  let samples = 0;
  const periods: number[] = [];
  let budgetHeldMax = 0;
  let budgetTotalMax = 0;
  const all = new Set<ConnInternals>();
  /** Every 100 ms: [ms since the first connection, connections open, sides paused, sides whose peer wants 'drain', sides probed]. */
  const series: number[][] = [];
  let firstAt = 0;
  const seriesTimer = setInterval(() => {
    if (firstAt === 0) return;
    let paused = 0;
    let peerDrain = 0;
    let probed = 0;
    for (const c of all) {
      for (const side of [c.client, c.upstream]) {
        if (side.paused) paused++;
        if (side.paused && (side === c.client ? c.upstream : c.client).needDrain) peerDrain++;
        if (side.probeTimer !== null) probed++;
      }
    }
    series.push([Math.round(performance.now() - firstAt), all.size, paused, peerDrain, probed]);
  }, 100);
  seriesTimer.unref();
  let prevTick = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    periods.push(now - prevTick);
    prevTick = now;
    const budget = proxy.memoryBudget?.core;
    if (budget !== undefined) {
      budgetHeldMax = Math.max(budgetHeldMax, budget.held);
      budgetTotalMax = Math.max(budgetTotalMax, budget.total);
    }
    if (canary === null) return;
    samples++;
    const side = (s: SideInternals): string =>
      `${s.paused ? 'P' : '-'}${s.needDrain ? 'D' : '-'}${s.core.holds}w${s.socket.writableLength > 0 ? '+' : '0'}r${s.socket.readableLength > 0 ? '+' : '0'}`;
    const key = `c:${side(canary.client)} u:${side(canary.upstream)}${canary.heldForBudget ? ' B' : ''}`;
    states.set(key, (states.get(key) ?? 0) + 1);
  }, 1);
  timer.unref();

  const watch = (socket: net.Socket): void => {
    let started = 0;
    let lastTurn = -1;
    let took = 0;
    socket.prependListener('data', () => {
      started = performance.now();
    });
    socket.on('data', (chunk: Buffer) => {
      const ms = performance.now() - started;
      chunkMs.push(ms);
      chunkBytes.push(chunk.length);
      countTurn();
      const t = turnMs.get(turn) ?? { ms: 0, sides: 0, bytes: 0 };
      t.ms += ms;
      t.bytes += chunk.length;
      if (lastTurn !== turn) {
        if (lastTurn >= 0) sideTurnMs.push(took);
        took = 0;
        lastTurn = turn;
        t.sides++;
      }
      took += ms;
      turnMs.set(turn, t);
    });
  };

  proxy.on('connection', (conn: ProxyConnection) => {
    const c = conn as unknown as ConnInternals;
    if (firstAt === 0) firstAt = performance.now();
    all.add(c);
    conn.on('close', () => all.delete(c));
    watch(c.client.socket);
    watch(c.upstream.socket);
    if (canary !== null) return;
    canary = c;
    c.client.socket.prependListener('data', () => {
      const now = performance.now();
      if (canaryBack !== 0) clientLeg.push(now - canaryBack);
      canaryIn = now;
    });
    c.upstream.socket.prependListener('data', () => {
      const now = performance.now();
      if (canaryIn !== 0) upLeg.push(now - canaryIn);
      canaryBack = now;
    });
    conn.on('close', () => {
      canary = null;
    });
  });

  process.on('exit', () => {
    loop.disable();
    const f = (n: number): string => (n / 1e6).toFixed(1);
    const turns = [...turnMs.values()];
    const lines = [
      `[proxy-diag] pid ${process.pid}; event-loop delay ms: p50 ${f(loop.percentile(50))} p99 ${f(loop.percentile(99))} max ${f(loop.max)} (n ${loop.count}); cpu ${(process.cpuUsage().user / 1000).toFixed(0)} ms user ${(process.cpuUsage().system / 1000).toFixed(0)} ms system`,
      `[proxy-diag] 1 ms timer period ms: ${summary(periods)}`,
      `[proxy-diag] 'data' handler per chunk ms: ${summary(chunkMs)}; bytes per chunk: ${summary(chunkBytes)}`,
      `[proxy-diag] per turn, all handlers ms: ${summary(turns.map((t) => t.ms))}; sides reading: ${summary(turns.map((t) => t.sides))}; KiB: ${summary(turns.map((t) => t.bytes / 1024))}`,
      `[proxy-diag] per side and turn ms: ${summary(sideTurnMs)}`,
      `[proxy-diag] canary upstream leg (its message in -> echo in) ms: ${summary(upLeg)}`,
      `[proxy-diag] canary client leg (echo in -> next message in) ms: ${summary(clientLeg)}`,
      `[proxy-diag] canary side states (P paused, D wants drain, holds, w/r queued) of ${samples}: ${JSON.stringify(Object.fromEntries([...states].sort((a, b) => b[1] - a[1]).slice(0, 8)))}`,
      `[proxy-diag] proxy budget: held max ${budgetHeldMax}, total max ${(budgetTotalMax / 2 ** 20).toFixed(1)} MiB`,
      `[proxy-diag] every 100 ms [ms, connections, sides paused, of which their peer wants 'drain', sides probed]: ${JSON.stringify(series.filter((_, i) => i % 5 === 0))}`,
    ];
    process.stderr.write(`${lines.join('\n')}\n`);
  });
}
