/**
 * `npm run bench`: every server against the same load generator, then the client direction;
 * prints one Markdown table and writes it to bench/results/latest.md.
 *
 * Servers run pinned to CPU 0, the load generator and the clients to CPU 1. Each figure is the
 * median of BENCH_RUNS runs (default 3) with the spread (min-max); BENCH_QUICK=1 makes a short
 * smoke run (1 run, short windows, 1000 idle connections). Progress goes to stderr.
 *
 * To run a part only: BENCH_SERVERS=ours,ws (columns: ours, oursPipe, stages, ws, wsBufferutil,
 * raw) and BENCH_CASES=text (cases whose label contains the text, or one of several texts
 * separated by '|'; 'idle' and 'client' name those groups). To compare with another build in the
 * same run: BENCH_BASE=<its dist/bench folder> (and BENCH_BASE_NAME=<label>) adds it as column
 * 'base'. BENCH_WARMUP_MS and BENCH_MEASURE_MS set each case's warm-up and measured time (500
 * and 1500 ms).
 */
import { execSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ClientBench, LoadGenerator, ROOT, SERVER_CPU, CLIENT_CPU, Server } from './harness';
import type { ClientCommand, LoadCommand, Measurement } from './ipc';

const QUICK = process.env.BENCH_QUICK === '1';
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? (QUICK ? '1' : '3')));
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? (QUICK ? 200 : 500));
const DURATION_MS = Number(process.env.BENCH_MEASURE_MS ?? (QUICK ? 500 : 1500));
const IDLE_WANTED = QUICK ? 1000 : 10_000;
const KiB = 1024;
const MiB = 1024 * KiB;

type Column = 'ours' | 'oursPipe' | 'stages' | 'ws' | 'wsBufferutil' | 'raw' | 'base';

/**
 * BENCH_BASE: the compiled bench/ folder of another build of wspipe (e.g. an older commit's
 * `dist/bench`, built in its own checkout), run as one more column ('base') beside ours and ws,
 * in the same run: its ratios against ws and ours against it. BENCH_BASE_NAME titles it.
 */
const BASE = process.env.BENCH_BASE;

const COLUMN_TITLES: Record<Column, string> = {
  ours: 'ours',
  oursPipe: 'ours (pipe)',
  stages: 'stages pipe()',
  ws: 'ws',
  wsBufferutil: 'ws+bufferutil',
  raw: 'raw TCP',
  base: `ours at ${process.env.BENCH_BASE_NAME ?? 'base'}`,
};
const COLUMNS = (Object.keys(COLUMN_TITLES) as Column[]).filter((c) => c !== 'base' || BASE !== undefined);

const onlyServers = process.env.BENCH_SERVERS?.split(',').map((s) => s.trim());
const onlyCases = process.env.BENCH_CASES?.split('|');
const wanted = (column: Column): boolean =>
  column === 'base' ? BASE !== undefined : onlyServers === undefined || onlyServers.includes(column);
const wantedCase = (label: string): boolean => onlyCases === undefined || onlyCases.some((text) => label.includes(text));

/** Each server: its file in bench/servers and its environment. */
const ALL_SERVERS: Array<{ column: Column; file: string; env: Record<string, string> }> = [
  { column: 'ours', file: 'ours', env: {} },
  { column: 'oursPipe', file: 'ours-pipe', env: {} },
  { column: 'stages', file: 'stages', env: {} },
  { column: 'ws', file: 'ws', env: { WS_NO_BUFFER_UTIL: '1' } },
  { column: 'wsBufferutil', file: 'ws', env: {} },
  { column: 'raw', file: 'raw', env: {} },
  { column: 'base', file: path.join(BASE ?? '', 'servers/ours'), env: {} },
];
const SERVERS = ALL_SERVERS.filter((spec) => wanted(spec.column));

/** A table row: how its figure is read from a measurement. */
interface Row {
  label: string;
  lowerIsBetter: boolean;
  value(m: Measurement): number;
}

const perSecond = (m: Measurement): number => m.messages / m.seconds;
const megabytesPerSecond = (m: Measurement): number => m.bytes / m.seconds / 1e6;
const row = (label: string, value: (m: Measurement) => number, lowerIsBetter = false): Row => ({
  label,
  value,
  lowerIsBetter,
});

const timing = { warmupMs: WARMUP_MS, durationMs: DURATION_MS };

/** Cases the load generator runs against every server. */
const ALL_LOAD_CASES: Array<{ command(port: number): LoadCommand; rows: Row[] }> = [
  {
    command: (port) => ({ cmd: 'echo', port, conns: 1, inflight: 1, size: 64, latency: true, ...timing }),
    rows: [
      row('echo 64 B, 1 conn, 1 in flight: p50 round trip, µs (lower is better)', (m) => m.p50 ?? NaN, true),
      row('echo 64 B, 1 conn, 1 in flight: p99 round trip, µs (lower is better)', (m) => m.p99 ?? NaN, true),
    ],
  },
  {
    command: (port) => ({ cmd: 'echo', port, conns: 100, inflight: 1, size: 64, latency: false, ...timing }),
    rows: [row('echo 64 B, 100 conns, 1 in flight each: msgs/s', perSecond)],
  },
  {
    command: (port) => ({ cmd: 'echo', port, conns: 1, inflight: 64, size: 64, latency: false, ...timing }),
    rows: [row('echo 64 B, 1 conn, 64 in flight: msgs/s', perSecond)],
  },
  {
    command: (port) => ({ cmd: 'echo', port, conns: 1, inflight: 16, size: 16 * KiB, latency: false, ...timing }),
    rows: [row('echo 16 KiB, 1 conn, 16 in flight: MB/s echoed', megabytesPerSecond)],
  },
  {
    command: (port) => ({ cmd: 'bulk', port, size: 64 * KiB, inflight: 16, ...timing }),
    rows: [row('one-way 64 KiB msgs, 16 in flight: MB/s', megabytesPerSecond)],
  },
  {
    command: (port) => ({ cmd: 'bulk', port, size: 16 * MiB, inflight: 2, ...timing }),
    rows: [row('one-way 16 MiB msgs, 2 in flight: MB/s', megabytesPerSecond)],
  },
  {
    command: (port) => ({ cmd: 'handshakes', port, concurrency: 32, ...timing }),
    rows: [row('handshakes/s (32 concurrent, then RST)', perSecond)],
  },
];
const LOAD_CASES = ALL_LOAD_CASES.filter((c) => wantedCase(c.rows[0]!.label));

/** Client direction: each client library echoes against the ws+bufferutil server. */
const ALL_CLIENTS: Array<{ column: Column; env: Record<string, string>; file?: string }> = [
  { column: 'ours', env: { BENCH_CLIENT: 'ours' } },
  { column: 'base', env: { BENCH_CLIENT: 'ours' }, file: path.join(BASE ?? '', 'client-bench') },
  { column: 'ws', env: { BENCH_CLIENT: 'ws', WS_NO_BUFFER_UTIL: '1' } },
  { column: 'wsBufferutil', env: { BENCH_CLIENT: 'ws' } },
];
const CLIENTS = ALL_CLIENTS.filter((spec) => wanted(spec.column));
const ALL_CLIENT_CASES: Array<{ command(port: number): ClientCommand; rows: Row[] }> = [
  {
    command: (port) => ({ cmd: 'client-echo', port, size: 64, inflight: 64, ...timing }),
    rows: [row('client: echo 64 B, 64 in flight: msgs/s', perSecond)],
  },
  {
    command: (port) => ({ cmd: 'client-echo', port, size: 16 * KiB, inflight: 16, ...timing }),
    rows: [row('client: echo 16 KiB, 16 in flight: MB/s', megabytesPerSecond)],
  },
];
const CLIENT_CASES = ALL_CLIENT_CASES.filter((c) => wantedCase(c.rows[0]!.label));

/** Figures by row label, then column, then run number (a failed run leaves a gap). */
type Results = Map<string, Map<Column, Map<number, number>>>;
const results: Results = new Map();
/** The same throughput figures divided by the server's CPU share during the run. */
const efficiency: Results = new Map();

function record(label: string, column: Column, run: number, value: number, into: Results = results): void {
  let byColumn = into.get(label);
  if (byColumn === undefined) {
    byColumn = new Map();
    into.set(label, byColumn);
  }
  const byRun = byColumn.get(column) ?? new Map<number, number>();
  byRun.set(run, value);
  byColumn.set(column, byRun);
}

/**
 * `list` turned by `by` places: run r takes its turns in the order rotate(list, r), so that each
 * server (or client) goes first as often as the others. In a fixed order the first one always
 * followed the last one's load, and rows moved with their place in it.
 */
function rotate<T>(list: T[], by: number): T[] {
  if (list.length === 0) return list;
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** The load generator's CPU share in each load-case window (to show it was not the bottleneck). */
const loadCpu: number[] = [];
/** The share of the server's CPU the hypervisor took (steal time) in each load-case window. */
const serverSteal: number[] = [];

/** Jiffies of one CPU from /proc/stat: all of them, and those stolen by the hypervisor. */
interface CpuTicks {
  total: number;
  steal: number;
}

/** The counters of CPU `cpu` (null where /proc/stat is not there, e.g. not Linux). */
function cpuTicks(cpu: string): CpuTicks | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const line = new RegExp(`^cpu${cpu} (.*)$`, 'm').exec(text)?.[1];
  if (line === undefined) return null;
  // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
  const fields = line.trim().split(/\s+/).map(Number).slice(0, 8);
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}

/** The share of the window between `before` and `after` that the hypervisor took. */
function stealShare(before: CpuTicks | null, after: CpuTicks | null): number {
  if (before === null || after === null || after.total === before.total) return NaN;
  return (after.steal - before.steal) / (after.total - before.total);
}

function percent(share: number): string {
  return `${Math.round(share * 100)}%`;
}

function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How many idle connections the file-descriptor limit allows (each side needs one per connection). */
function idleConnections(): number {
  let limit = Infinity;
  try {
    limit = Number(execSync('ulimit -n', { shell: '/bin/sh' }).toString().trim());
  } catch {
    // keep Infinity: an unknown limit is tried as is
  }
  if (Number.isFinite(limit) && limit < IDLE_WANTED + 200) {
    progress(`ulimit -n is ${limit}: using ${limit - 200} idle connections instead of ${IDLE_WANTED}`);
    return limit - 200;
  }
  return IDLE_WANTED;
}

/**
 * Each run of each case gets fresh server processes. On glibc, processes of the same build
 * differ, and each keeps its lot: fed the same 40 000 messages of 64 KiB (a sink on a fake
 * transport), one process takes 17-20 000 page faults and about 19 µs a message, another 60-90 000
 * and 30-60 µs, from malloc trimming the top of its heap and growing it again (never with
 * MALLOC_TRIM_THRESHOLD_ set). With one process per library for the whole bench, a column drew
 * one lot for all its runs, and its median was one sample; started afresh, each run draws its own.
 */
async function loadCases(load: LoadGenerator): Promise<void> {
  if (LOAD_CASES.length === 0 || SERVERS.length === 0) return;
  for (const c of LOAD_CASES) {
    for (let run = 0; run < RUNS; run++) {
      const servers = new Map<Column, Server>();
      try {
        for (const spec of SERVERS) servers.set(spec.column, await Server.start(spec.file, spec.env));
        // Servers take turns within each run, so that drift over time touches them alike.
        for (const spec of rotate(SERVERS, run)) {
          const server = servers.get(spec.column)!;
          const label = c.rows[0]!.label;
          try {
            const cpuBefore = await server.cpu();
            const ticksBefore = cpuTicks(SERVER_CPU);
            const wallBefore = performance.now();
            const m = await load.run(c.command(server.port));
            const steal = stealShare(ticksBefore, cpuTicks(SERVER_CPU));
            const serverCpu = (await server.cpu()) - cpuBefore;
            const serverShare = serverCpu / 1000 / (performance.now() - wallBefore);
            for (const r of c.rows) record(r.label, spec.column, run, r.value(m));
            if (!c.rows[0]!.lowerIsBetter) {
              // Per server CPU-second: steadier than the rate when other processes share the CPUs.
              record(c.rows[0]!.label, spec.column, run, c.rows[0]!.value(m) / serverShare, efficiency);
            }
            loadCpu.push(m.cpu ?? NaN);
            serverSteal.push(steal);
            progress(
              `${label} | ${spec.column} | run ${run + 1}: ${format(c.rows[0]!.value(m))}` +
                ` (server CPU ${percent(serverShare)}, load generator CPU ${percent(m.cpu ?? NaN)},` +
                ` steal on CPU ${SERVER_CPU} ${percent(steal)})`,
            );
          } catch (err) {
            progress(`${label} | ${spec.column} | run ${run + 1} FAILED: ${(err as Error).message}`);
          }
          await sleep(100);
        }
      } finally {
        for (const server of servers.values()) await server.stop();
      }
    }
  }
}

async function idleCases(load: LoadGenerator): Promise<void> {
  if (!wantedCase('idle conns') || SERVERS.length === 0) return;
  const n = idleConnections();
  const rss = `${n} idle conns: server RSS per conn, KiB (lower is better)`;
  const heap = `${n} idle conns: server heap+external per conn, KiB (lower is better)`;
  // Part of the RSS: V8 grows its young generation while the connections open (the garbage of
  // the handshakes), and a full GC empties it but keeps it committed.
  const young = `${n} idle conns: of the RSS, V8's young generation (empty, committed) per conn, KiB`;
  for (let run = 0; run < RUNS; run++) {
    for (const spec of rotate(SERVERS, run)) {
      // A fresh server each time: a heap that earlier cases grew would hide the cost.
      const server = await Server.start(spec.file, spec.env);
      try {
        // Warm up (code loaded, first allocations made), then the baseline.
        await load.run({ cmd: 'idle-open', port: server.port, n: 100, concurrency: 10 });
        await load.run({ cmd: 'idle-close' });
        await sleep(300);
        await server.memory();
        const before = await server.memory();
        await load.run({ cmd: 'idle-open', port: server.port, n, concurrency: 100 });
        await sleep(300);
        const after = await server.memory();
        await load.run({ cmd: 'idle-close' });
        record(rss, spec.column, run, (after.rss - before.rss) / n / KiB);
        const heapDelta = after.heapUsed + after.external - (before.heapUsed + before.external);
        record(heap, spec.column, run, heapDelta / n / KiB);
        record(young, spec.column, run, (after.newSpace - before.newSpace) / n / KiB);
        progress(`${rss} | ${spec.column} | run ${run + 1}: ${format((after.rss - before.rss) / n / KiB)}`);
      } catch (err) {
        progress(`idle | ${spec.column} | run ${run + 1} FAILED: ${(err as Error).message}`);
      } finally {
        await server.stop();
      }
    }
  }
}

async function clientCases(): Promise<void> {
  if (CLIENT_CASES.length === 0 || CLIENTS.length === 0) return;
  const server = await Server.start('ws', {});
  const clients = new Map<Column, ClientBench>();
  try {
    for (const spec of CLIENTS) clients.set(spec.column, await ClientBench.start(spec.env, spec.file));
    for (const c of CLIENT_CASES) {
      for (let run = 0; run < RUNS; run++) {
        for (const spec of rotate(CLIENTS, run)) {
          const label = c.rows[0]!.label;
          try {
            const m = await clients.get(spec.column)!.run(c.command(server.port));
            for (const r of c.rows) record(r.label, spec.column, run, r.value(m));
            // The server is shared by the three clients and may be what sets the rate; what each
            // client spends per message is its own.
            const clientShare = m.cpu ?? NaN;
            if (clientShare > 0) record(label, spec.column, run, c.rows[0]!.value(m) / clientShare, efficiency);
            progress(`${label} | ${spec.column} | run ${run + 1}: ${format(c.rows[0]!.value(m))} (client CPU ${percent(clientShare)})`);
          } catch (err) {
            progress(`${label} | ${spec.column} | run ${run + 1} FAILED: ${(err as Error).message}`);
          }
          await sleep(100);
        }
      }
    }
  } finally {
    for (const client of clients.values()) await client.stop();
    await server.stop();
  }
}

// ----- the table -----

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Three significant figures, k and M for large values. */
function format(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  const abs = Math.abs(value);
  if (abs >= 1e7) return `${(value / 1e6).toPrecision(3)}M`;
  if (abs >= 1e4) return `${(value / 1e3).toPrecision(3)}k`;
  if (abs >= 100) return Math.round(value).toString();
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function cell(byRun: Map<number, number> | undefined): string {
  const values = byRun === undefined ? [] : [...byRun.values()];
  if (values.length === 0) return '–';
  const m = format(median(values));
  if (values.length === 1) return m;
  return `${m} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
}

/**
 * ours over another column, run by run (both measured in the same run, minutes apart at most),
 * as the median of those ratios with their range: under drift in the machine's speed, steadier
 * than a ratio of two medians whose runs the drift touched differently.
 */
function ratio(a: Map<number, number> | undefined, b: Map<number, number> | undefined): string {
  const ratios: number[] = [];
  for (const [run, value] of a ?? []) {
    const other = b?.get(run);
    if (other !== undefined) ratios.push(value / other);
  }
  const finite = ratios.filter(Number.isFinite);
  if (finite.length === 0) return ratios.length === 0 ? '–' : 'n/a';
  const m = median(finite).toFixed(2);
  if (finite.length === 1) return m;
  return `${m} (${Math.min(...finite).toFixed(2)}–${Math.max(...finite).toFixed(2)})`;
}

function header(): string {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown CPU';
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim();
  } catch {
    // not a git checkout
  }
  return [
    '# wspipe benchmark',
    '',
    `Machine: ${model}, ${os.cpus().length} cores; Node ${process.version}; commit ${commit}; ${new Date().toISOString()}.`,
    `Pinning: servers \`taskset -c ${SERVER_CPU}\`, load generator and clients \`taskset -c ${CLIENT_CPU}\`.`,
    `Each cell: median of ${RUNS} run(s) (min–max); warm-up ${WARMUP_MS} ms, measured ${DURATION_MS} ms${QUICK ? ' (BENCH_QUICK)' : ''}.`,
    'Binary messages. MB = 10^6 bytes of payload.',
    'Servers (and clients) take turns within each run, each going first in turn. Ratios: ours over the other in each run, the median of those (min–max): above 1 is better except where lower is better.',
    'Client rows: our client vs ws client (without / with bufferutil), all against the ws+bufferutil server.',
    loadCpu.length === 0
      ? ''
      : `Load generator CPU during the server windows: median ${percent(median(loadCpu))}, max ${percent(Math.max(...loadCpu))} of one core.`,
    serverSteal.filter(Number.isFinite).length === 0
      ? ''
      : `Time the hypervisor took from the server's CPU (steal) during those windows: median ${percent(median(serverSteal.filter(Number.isFinite)))},` +
        ` max ${percent(Math.max(...serverSteal.filter(Number.isFinite)))}.`,
  ]
    .filter((line) => line !== '')
    .join('\n');
}

function table(rows: Results): string {
  const baseTitles = BASE === undefined ? [] : ['base/ws', 'base/ws+bufferutil', 'ours/base'];
  const titles = [...COLUMNS.map((c) => COLUMN_TITLES[c]), 'ours/ws', 'ours/ws+bufferutil', ...baseTitles];
  const lines = [`| case | ${titles.join(' | ')} |`, `| --- |${titles.map(() => ' ---: |').join('')}`];
  for (const [label, byColumn] of rows) {
    const cells = COLUMNS.map((c) => cell(byColumn.get(c)));
    const ours = byColumn.get('ours');
    cells.push(ratio(ours, byColumn.get('ws')), ratio(ours, byColumn.get('wsBufferutil')));
    if (BASE !== undefined) {
      const base = byColumn.get('base');
      cells.push(ratio(base, byColumn.get('ws')), ratio(base, byColumn.get('wsBufferutil')), ratio(ours, base));
    }
    lines.push(`| ${label} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const started = Date.now();
  const load = await LoadGenerator.start();
  try {
    await loadCases(load);
    await idleCases(load);
  } finally {
    await load.stop();
  }
  await clientCases();
  let text = `${header()}\n\n${table(results)}\n`;
  if (efficiency.size > 0) {
    text +=
      '\nThe throughput rows again, per second of server CPU time (rate divided by the server\'s CPU share over' +
      ' the run, warm-up included): less disturbed by other processes on the machine. Client rows: per second' +
      ' of the client\'s CPU time (the server is the same ws+bufferutil for all three clients).\n\n' +
      `${table(efficiency)}\n`;
  }
  const out = path.join(ROOT, 'bench', 'results', 'latest.md');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, text);
  process.stdout.write(text);
  progress(`done in ${Math.round((Date.now() - started) / 1000)} s; written to ${path.relative(ROOT, out)}`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
