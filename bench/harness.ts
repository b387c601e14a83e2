/**
 * Child processes of the bench: servers pinned to CPU 0, the load generator and the clients
 * pinned to CPU 1 (taskset), each running a TypeScript file through ts-node and talking over IPC.
 */
import { ChildProcess, fork } from 'node:child_process';
import * as path from 'node:path';
import type { ChildReply, ClientCommand, LoadCommand, Measurement, MemoryFigures, ServerMessage } from './ipc';

/**
 * Compiled (dist/bench/*.js, as `npm run bench` runs it), the children are compiled files under
 * plain node. Under ts-node they load ts-node too, which is not free: it loads node:domain (every
 * EventEmitter and emit() pays for it) and source-map-support (every Error's stack), so it
 * weighs on a server that makes many emitters and errors more than on one that makes few.
 */
const COMPILED = __filename.endsWith('.js');
/** The project's root (this file is bench/harness.ts, or dist/bench/harness.js once compiled). */
export const ROOT = path.resolve(__dirname, COMPILED ? '../..' : '..');
export const SERVER_CPU = '0';
export const CLIENT_CPU = '1';

/** Starts `file` (relative to bench/, without extension) on `cpu` with an IPC channel. */
function start(file: string, cpu: string, env: Record<string, string>, nodeFlags: string[]): ChildProcess {
  const loader = COMPILED ? [] : ['-r', 'ts-node/register'];
  // `file` is relative to bench/, or absolute (another build's, see BENCH_BASE in bench/run.ts).
  return fork(path.resolve(__dirname, `${file}${COMPILED ? '.js' : '.ts'}`), [], {
    cwd: ROOT,
    execPath: 'taskset',
    execArgv: ['-c', cpu, process.execPath, ...nodeFlags, ...loader],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** The next IPC message from `child` (rejects if it exits first). */
function nextMessage<T>(child: ChildProcess, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T): void => {
      cleanup();
      resolve(message);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`child exited (${code}) before answering`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error('child did not answer in time'));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.removeListener('message', onMessage);
      child.removeListener('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Resolves once `child` has exited (asking it to first, if it is still connected). */
export function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    if (child.connected) child.send({ cmd: 'exit' });
    if (child.connected) child.disconnect();
  });
}

async function measure(child: ChildProcess, command: LoadCommand | ClientCommand): Promise<Measurement> {
  child.send(command);
  const reply = await nextMessage<ChildReply>(child);
  if (!reply.ok) throw new Error(reply.error);
  return reply.result;
}

export class Server {
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {}

  /** Starts bench/servers/<name> on the server CPU and waits until it listens. */
  static async start(name: string, env: Record<string, string> = {}, nodeFlags: string[] = []): Promise<Server> {
    const child = start(path.isAbsolute(name) ? name : `servers/${name}`, SERVER_CPU, env, ['--expose-gc', ...nodeFlags]);
    const message = await nextMessage<ServerMessage>(child);
    if (message.type !== 'ready') throw new Error(`server ${name} did not start`);
    return new Server(child, message.port);
  }

  /** Memory figures after a full GC. */
  async memory(): Promise<MemoryFigures> {
    this.child.send({ cmd: 'mem' });
    const message = await nextMessage<ServerMessage>(this.child);
    if (message.type !== 'mem') throw new Error('unexpected server message');
    return message.mem;
  }

  /** CPU time the server has used so far (user + system), in microseconds. */
  async cpu(): Promise<number> {
    this.child.send({ cmd: 'cpu' });
    const message = await nextMessage<ServerMessage>(this.child);
    if (message.type !== 'cpu') throw new Error('unexpected server message');
    return message.micros;
  }

  stop(): Promise<void> {
    return stop(this.child);
  }
}

/** The load generator (bench/loadgen.ts) on the client CPU. */
export class LoadGenerator {
  private constructor(private readonly child: ChildProcess) {}

  static async start(): Promise<LoadGenerator> {
    const child = start('loadgen', CLIENT_CPU, {}, []);
    await nextMessage<ServerMessage>(child);
    return new LoadGenerator(child);
  }

  run(command: LoadCommand): Promise<Measurement> {
    return measure(this.child, command);
  }

  stop(): Promise<void> {
    return stop(this.child);
  }
}

/** A client-direction bench process (bench/client-bench.ts) on the client CPU. */
export class ClientBench {
  private constructor(private readonly child: ChildProcess) {}

  /** BENCH_CLIENT=ours|ws in `env` picks the library; `file`: another build's client-bench. */
  static async start(env: Record<string, string>, file = 'client-bench'): Promise<ClientBench> {
    const child = start(file, CLIENT_CPU, env, []);
    await nextMessage<ServerMessage>(child);
    return new ClientBench(child);
  }

  run(command: ClientCommand): Promise<Measurement> {
    return measure(this.child, command);
  }

  stop(): Promise<void> {
    return stop(this.child);
  }
}
