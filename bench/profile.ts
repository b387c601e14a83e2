/**
 * Profiles an echo server (bench/servers/ours.ts, or another with PROFILE_SERVER) under
 * `node --cpu-prof` while the load generator runs one case, for each case below; prints the top
 * self-time functions of each profile and writes them to bench/results/profile.md (the
 * .cpuprofile files stay in bench/results/, ignored by git; open them in Chrome DevTools for the
 * call tree).
 *
 *   npm run build && node dist/bench/profile.js
 *
 * Run it compiled: under `npx ts-node bench/profile.ts` the server loads ts-node too.
 * BENCH_PROFILE_MS sets the measured time (default 4000); PROFILE_CASES=oneway-64k,echo-16k picks
 * cases; PROFILE_ONE_SERVER=1 runs them all on one server; PROFILE_SERVER=stages profiles
 * bench/servers/stages.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoadGenerator, ROOT, Server } from './harness';
import type { LoadCommand, Measurement } from './ipc';
import { summarise } from './profile-summary';

const DURATION_MS = Number(process.env.BENCH_PROFILE_MS ?? '4000');
const OUT = path.join(ROOT, 'bench', 'results');
/** Which of bench/servers/ to profile. */
const SERVER = process.env.PROFILE_SERVER ?? 'ours';

const CASES: Array<{ name: string; title: string; command(port: number): LoadCommand }> = [
  {
    name: 'echo-64-latency',
    title: 'echo 64 B, 1 connection, 1 in flight (latency)',
    command: (port) => ({ cmd: 'echo', port, conns: 1, inflight: 1, size: 64, latency: true, warmupMs: 500, durationMs: DURATION_MS }),
  },
  {
    name: 'echo-64-100conns',
    title: 'echo 64 B, 100 connections, 1 in flight each',
    command: (port) => ({ cmd: 'echo', port, conns: 100, inflight: 1, size: 64, latency: false, warmupMs: 500, durationMs: DURATION_MS }),
  },
  {
    name: 'echo-64-64inflight',
    title: 'echo 64 B, 1 connection, 64 in flight',
    command: (port) => ({ cmd: 'echo', port, conns: 1, inflight: 64, size: 64, latency: false, warmupMs: 500, durationMs: DURATION_MS }),
  },
  {
    name: 'echo-16k',
    title: 'echo 16 KiB, 1 connection, 16 in flight',
    command: (port) => ({ cmd: 'echo', port, conns: 1, inflight: 16, size: 16 * 1024, latency: false, warmupMs: 500, durationMs: DURATION_MS }),
  },
  {
    name: 'oneway-64k',
    title: 'one-way 64 KiB messages, 16 in flight',
    command: (port) => ({ cmd: 'bulk', port, size: 64 * 1024, inflight: 16, warmupMs: 500, durationMs: DURATION_MS }),
  },
  {
    name: 'oneway-16m',
    title: 'one-way 16 MiB messages, 2 in flight',
    command: (port) => ({ cmd: 'bulk', port, size: 16 * 1024 * 1024, inflight: 2, warmupMs: 500, durationMs: DURATION_MS }),
  },
  {
    name: 'handshakes',
    title: 'handshakes, 32 concurrent, then RST',
    command: (port) => ({ cmd: 'handshakes', port, concurrency: 32, warmupMs: 500, durationMs: DURATION_MS }),
  },
];

/** PROFILE_CASES=name,name: only these cases. */
const SELECTED = process.env.PROFILE_CASES?.split(',').map((s) => s.trim());

async function main(): Promise<void> {
  fs.mkdirSync(OUT, { recursive: true });
  const load = await LoadGenerator.start();
  const sections: string[] = [`# CPU profiles of bench/servers/${SERVER}.ts (Node ${process.version}, server on CPU 0)`];
  const cases = CASES.filter((k) => SELECTED === undefined || SELECTED.includes(k.name));
  try {
    if (process.env.PROFILE_ONE_SERVER === '1') {
      // One server for all the cases, in order, as `npm run bench` runs them: each case's window
      // summarised from the one profile (shows what a long-running server does differently).
      const file = `${SERVER}-one-server.cpuprofile`;
      const server = await Server.start(SERVER, {}, ['--cpu-prof', `--cpu-prof-dir=${OUT}`, `--cpu-prof-name=${file}`]);
      const runs: Array<{ c: (typeof cases)[number]; m: Awaited<ReturnType<typeof load.run>> }> = [];
      for (const c of cases) {
        runs.push({ c, m: await load.run(c.command(server.port)) });
        process.stderr.write(`ran ${c.name}\n`);
      }
      await server.stop();
      for (const { c, m } of runs) sections.push(section(c.title, m, path.join(OUT, file)));
    } else {
      for (const c of cases) {
        const file = `${SERVER}-${c.name}.cpuprofile`;
        const server = await Server.start(SERVER, {}, ['--cpu-prof', `--cpu-prof-dir=${OUT}`, `--cpu-prof-name=${file}`]);
        const m = await load.run(c.command(server.port));
        await server.stop();
        sections.push(section(c.title, m, path.join(OUT, file)));
        process.stderr.write(`profiled ${c.name}\n`);
      }
    }
  } finally {
    await load.stop();
  }
  const text = `${sections.join('\n\n')}\n`;
  fs.writeFileSync(path.join(OUT, 'profile.md'), text);
  process.stdout.write(text);
}

function section(title: string, m: Measurement, file: string): string {
  const rate = `${Math.round(m.messages / m.seconds)} msgs/s, ${(m.bytes / m.seconds / 1e6).toFixed(1)} MB/s`;
  return `## ${title} (${rate})\n\n${summarise(file, 15, m.windowUs)}`;
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
