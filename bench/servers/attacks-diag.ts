/**
 * BENCH_DIAG=1 for bench/servers/attacks-ours.ts: where a canary's round trip goes during an
 * attack. Written to stderr at exit: the event loop's delay (monitorEventLoopDelay, 1 ms
 * resolution), GC pauses (PerformanceObserver 'gc'), the gaps between the canary's messages
 * as the server sees them, and, sampled every millisecond the loop allows, the canary's
 * ReadHold bits and the server-wide budget's state.
 */
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { WebSocket } from '../../lib';

interface Internals {
  core: { holds: number; heldBytes: number };
  options: { heldBytesObserver?: { core: { total: number; held: number } } };
}

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

export function diagnose(): { connection(ws: WebSocket): void } {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const gcs: Array<{ kind: number; ms: number }> = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push({ kind: ((e as unknown as { detail: { kind: number } }).detail).kind, ms: e.duration });
  });
  observer.observe({ entryTypes: ['gc'] });
  let canary: WebSocket | null = null;
  let taken = false;
  let messages = 0;
  let bytes = 0;
  const gaps: number[] = [];
  let last = 0;
  const holdSamples = new Map<number, number>();
  let samples = 0;
  let budgetHeldMax = 0;
  let budgetTotalMax = 0;
  const turns: number[] = [];
  /** Canary gaps and timer periods over 30 ms, as [from, to] on the monotonic clock in µs (a --cpu-prof profile's clock). */
  const stalls: Array<[number, number]> = [];
  const loopStalls: Array<[number, number]> = [];
  const hrUs = (): number => Number(process.hrtime.bigint() / 1000n);
  let prevTick = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    turns.push(now - prevTick);
    if (now - prevTick > 30) loopStalls.push([hrUs() - (now - prevTick) * 1000, hrUs()]);
    prevTick = now;
    if (canary === null) return;
    const internals = canary as unknown as Internals;
    samples++;
    const holds = internals.core.holds;
    holdSamples.set(holds, (holdSamples.get(holds) ?? 0) + 1);
    const budget = internals.options.heldBytesObserver?.core;
    if (budget !== undefined) {
      budgetHeldMax = Math.max(budgetHeldMax, budget.held);
      budgetTotalMax = Math.max(budgetTotalMax, budget.total);
    }
  }, 1);
  timer.unref();
  process.on('exit', () => {
    loop.disable();
    const f = (n: number): string => (n / 1e6).toFixed(1);
    const lines = [
      `[diag] pid ${process.pid}; event-loop delay ms: p50 ${f(loop.percentile(50))} p99 ${f(loop.percentile(99))} max ${f(loop.max)} mean ${f(loop.mean)} (n ${loop.count})`,
    ];
    lines.push(`[diag] messages received: ${messages}, ${(bytes / 2 ** 20).toFixed(0)} MiB; cpu ${(process.cpuUsage().user / 1000).toFixed(0)} ms user ${(process.cpuUsage().system / 1000).toFixed(0)} ms system`);
    const sortedGc = gcs.map((g) => g.ms).sort((a, b) => a - b);
    const byKind: Record<number, { n: number; ms: number; max: number }> = {};
    for (const g of gcs) {
      const k = (byKind[g.kind] ??= { n: 0, ms: 0, max: 0 });
      k.n++;
      k.ms += g.ms;
      k.max = Math.max(k.max, g.ms);
    }
    lines.push(
      `[diag] gc: ${gcs.length} pauses, total ${sortedGc.reduce((a, b) => a + b, 0).toFixed(0)} ms, p99 ${pct(sortedGc, 0.99).toFixed(1)} max ${(sortedGc.at(-1) ?? NaN).toFixed(1)} ms; by kind ${JSON.stringify(byKind, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v))}`,
    );
    const sortedGaps = [...gaps].sort((a, b) => a - b);
    lines.push(`[diag] canary gaps between messages (server view) ms: n ${gaps.length} p50 ${pct(sortedGaps, 0.5).toFixed(1)} p99 ${pct(sortedGaps, 0.99).toFixed(1)} max ${(sortedGaps.at(-1) ?? NaN).toFixed(1)}`);
    const sortedTurns = [...turns].sort((a, b) => a - b);
    lines.push(`[diag] 1 ms timer period ms: n ${turns.length} p50 ${pct(sortedTurns, 0.5).toFixed(1)} p99 ${pct(sortedTurns, 0.99).toFixed(1)} max ${(sortedTurns.at(-1) ?? NaN).toFixed(1)}`);
    lines.push(`[diag] canary holds (bits: samples of ${samples}) ${JSON.stringify(Object.fromEntries(holdSamples))}; server budget: held max ${budgetHeldMax}, total max ${(budgetTotalMax / 2 ** 20).toFixed(0)} MiB`);
    lines.push(`[diag] canary stalls (µs) ${JSON.stringify(stalls.map(([a, b]) => [Math.round(a), Math.round(b)]))}`);
    lines.push(`[diag] loop stalls (µs) ${JSON.stringify(loopStalls.map(([a, b]) => [Math.round(a), Math.round(b)]))}`);
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    const m = process.memoryUsage();
    const mib = (n: number): string => (n / 2 ** 20).toFixed(0);
    lines.push(`[diag] at exit after GC, MiB: rss ${mib(m.rss)} heapTotal ${mib(m.heapTotal)} heapUsed ${mib(m.heapUsed)} external ${mib(m.external)} arrayBuffers ${mib(m.arrayBuffers)}`);
    process.stderr.write(`${lines.join('\n')}\n`);
  });
  return {
    connection(ws: WebSocket): void {
      ws.on('message', (data: Buffer | string) => {
        messages++;
        bytes += data.length;
      });
      if (taken) return;
      taken = true;
      canary = ws;
      ws.on('message', () => {
        const now = performance.now();
        if (last !== 0) gaps.push(now - last);
        if (last !== 0 && now - last > 30) stalls.push([hrUs() - (now - last) * 1000, hrUs()]);
        last = now;
      });
      ws.on('close', () => {
        canary = null;
      });
    },
  };
}
