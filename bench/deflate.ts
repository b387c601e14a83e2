/**
 * permessage-deflate benchmark: our server against ws's, both with compression on, in one run.
 *
 *   npx ts-node bench/deflate.ts            (BENCH_SECONDS=3 per case by default; DEFLATE_PROFILE=DIR
 *                                            writes each server's CPU profile into DIR)
 *
 * The server (ours or ws, an echo with permessage-deflate, threshold 1024, zlib's default level,
 * context takeover) runs pinned to CPU 0; the client (ws's, compression on, the same for both
 * servers) runs pinned to CPU 1 and keeps 32 compressible JSON messages in flight, counting
 * echoes per second and the bytes its socket wrote and read per echo. Then the idle memory of
 * compressed connections: 1000 clients each echo one 2 KiB message and stay open; the server's
 * RSS growth per connection is reported, with and without context takeover.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

const SERVER_CPU = '0';
const CLIENT_CPU = '1';
const SECONDS = Number(process.env.BENCH_SECONDS ?? '3');
const IN_FLIGHT = 32;
const IDLE_CONNECTIONS = Number(process.env.BENCH_IDLE ?? '1000');
const SELF = path.resolve(__filename);

type Impl = 'ours' | 'ws';
type Mode = 'takeover' | 'no-takeover' | 'off';

/**
 * Compressible JSON of exactly `size` bytes: records that repeat their shape, with values that
 * differ from one message (`seed`) to the next, so that context takeover helps as it would on
 * real traffic but does not turn every message into a back-reference to the previous one.
 */
function json(size: number, seed = 0): string {
  let s = '[';
  let x = seed * 7919 + 1;
  for (let i = 0; s.length < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    s += `{"id":${x % 100000},"user":"user${x % 997}","score":${(x >> 8) % 1000},"active":${x % 2 === 0}},`;
  }
  return s.slice(0, size);
}

// ----- server process -----

async function server(impl: Impl, mode: Mode): Promise<void> {
  const noTakeover = mode === 'no-takeover';
  const onConnection = (ws: { on(event: string, fn: (...args: never[]) => void): void }): void => {
    ws.on('error', () => {});
  };
  let port: number;
  if (impl === 'ours') {
    const { createServer } = await import('../lib');
    const deflate = mode === 'off' ? false : { serverNoContextTakeover: noTakeover, clientNoContextTakeover: noTakeover };
    const s = createServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate });
    await once(s, 'listening');
    s.on('connection', (ws) => {
      onConnection(ws as never);
      ws.pipe(ws);
    });
    port = s.address()!.port;
  } else {
    const { WebSocketServer } = await import('ws');
    const deflate = mode === 'off' ? false : { serverNoContextTakeover: noTakeover, clientNoContextTakeover: noTakeover };
    const s = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate });
    await once(s, 'listening');
    s.on('connection', (ws) => {
      onConnection(ws as never);
      ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
    });
    port = (s.address() as { port: number }).port;
  }
  // Killed by the driver: exit normally, so that --cpu-prof writes its profile.
  process.on('SIGTERM', () => process.exit(0));
  console.log(`port ${port}`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'mem') {
      global.gc?.();
      await new Promise((resolve) => setTimeout(resolve, 200));
      global.gc?.();
      console.log(`mem ${process.memoryUsage().rss}`);
    }
  }
}

// ----- client process -----

async function throughput(port: number, size: number): Promise<void> {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: {} });
  await once(ws, 'open');
  const socket = (ws as unknown as { _socket: { bytesWritten: number; bytesRead: number } })._socket;
  const pool = Array.from({ length: 64 }, (_, i) => json(size, i));
  let next = 0;
  const message = (): string => pool[next++ & 63]!;
  let echoes = 0;
  let measuring = false;
  let counted = 0;
  ws.on('message', () => {
    echoes++;
    if (measuring) counted++;
    ws.send(message());
  });
  for (let i = 0; i < IN_FLIGHT; i++) ws.send(message());
  await new Promise((resolve) => setTimeout(resolve, 500));
  const start = { w: socket.bytesWritten, r: socket.bytesRead, t: performance.now() };
  measuring = true;
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  measuring = false;
  const seconds = (performance.now() - start.t) / 1000;
  const wire = (socket.bytesWritten - start.w + socket.bytesRead - start.r) / Math.max(1, counted) / 2;
  console.log(JSON.stringify({ rate: counted / seconds, wire, extensions: ws.extensions, echoes }));
  ws.terminate();
  process.exit(0);
}

async function idle(port: number): Promise<void> {
  const { WebSocket } = await import('ws');
  const message = json(2048);
  const clients = [];
  for (let i = 0; i < IDLE_CONNECTIONS; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: {} });
    clients.push(ws);
    await once(ws, 'open');
    const echo = once(ws, 'message');
    ws.send(message);
    await echo;
  }
  console.log('ready');
  await once(process.stdin, 'data');
  process.exit(0);
}

// ----- driver -----

/** DEFLATE_PROFILE=DIR: each server writes a V8 CPU profile (node --cpu-prof) into DIR. */
function profileArgs(args: string[]): string[] {
  const dir = process.env.DEFLATE_PROFILE;
  if (dir === undefined || dir === '' || args[0] !== 'server') return [];
  return ['--cpu-prof', '--cpu-prof-dir', path.resolve(dir), '--cpu-prof-name', `${args.slice(1).join('-')}-${Date.now()}.cpuprofile`];
}

function pinned(cpu: string, args: string[]): ChildProcess {
  const node = [...profileArgs(args), '--expose-gc', '-r', 'ts-node/register/transpile-only'];
  return spawn('taskset', ['-c', cpu, process.execPath, ...node, SELF, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
  });
}

async function line(child: ChildProcess, prefix: string): Promise<string> {
  for await (const text of createInterface({ input: child.stdout! })) {
    if (text.startsWith(prefix)) return text.slice(prefix.length).trim();
  }
  throw new Error(`no "${prefix}" line`);
}

async function startServer(impl: Impl, mode: Mode): Promise<{ child: ChildProcess; port: number; out: AsyncIterator<string> }> {
  const child = pinned(SERVER_CPU, ['server', impl, mode]);
  const out = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await out.next();
  return { child, port: Number(String(first.value).split(' ')[1]), out };
}

async function memory(server: { child: ChildProcess; out: AsyncIterator<string> }): Promise<number> {
  server.child.stdin!.write('mem\n');
  const next = await server.out.next();
  return Number(String(next.value).split(' ')[1]);
}

async function main(): Promise<void> {
  execFileSync('taskset', ['-c', SERVER_CPU, 'true']);
  const rows: string[] = [];
  rows.push(`| message | server | echoes/s | wire bytes per message (each way) |`, '| --- | --- | --- | --- |');
  for (const size of [1024, 64 * 1024]) {
    for (const impl of ['ours', 'ws'] as Impl[]) {
      const server = await startServer(impl, 'takeover');
      const client = pinned(CLIENT_CPU, ['throughput', String(server.port), String(size)]);
      const result = JSON.parse(await line(client, '{').then((rest) => `{${rest}`)) as { rate: number; wire: number; extensions: string };
      rows.push(`| ${size / 1024} KiB JSON | ${impl} | ${Math.round(result.rate)} | ${Math.round(result.wire)} (${((100 * result.wire) / size).toFixed(1)} %) |`);
      process.stderr.write(`${size} ${impl} ${JSON.stringify(result)}\n`);
      server.child.kill();
    }
  }
  rows.push('', `| idle connections (${IDLE_CONNECTIONS}, one 2 KiB echo each) | server | RSS per connection |`, '| --- | --- | --- |');
  for (const mode of ['off', 'takeover', 'no-takeover'] as Mode[]) {
    for (const impl of ['ours', 'ws'] as Impl[]) {
      const server = await startServer(impl, mode);
      const before = await memory(server);
      const client = pinned(CLIENT_CPU, ['idle', String(server.port)]);
      await line(client, 'ready');
      const after = await memory(server);
      rows.push(`| permessage-deflate ${mode} | ${impl} | ${((after - before) / IDLE_CONNECTIONS / 1024).toFixed(1)} KiB |`);
      process.stderr.write(`idle ${mode} ${impl} ${after - before}\n`);
      client.stdin!.write('x');
      client.kill();
      server.child.kill();
    }
  }
  console.log(rows.join('\n'));
}

const [role, a, b] = process.argv.slice(2);
if (role === 'server') void server(a as Impl, b as Mode);
else if (role === 'throughput') void throughput(Number(a), Number(b));
else if (role === 'idle') void idle(Number(a));
else void main();
