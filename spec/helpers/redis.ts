/**
 * A real redis-server for the fan-out specs: started on a free port on 127.0.0.1 without
 * persistence (`--save '' --appendonly no`), stopped after (waiting for 'close'), and restartable
 * on the same port. Missing redis-server: on CI (CI=true) the specs fail, elsewhere they skip
 * (install with `apt-get install -y redis-server`, as .ci/run does).
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { freePort } from './sockets';
import { once } from 'node:events';

export const REDIS_SERVER = process.env.WSPIPE_REDIS_SERVER ?? '/usr/bin/redis-server';

export function hasRedis(): boolean {
  try {
    fs.accessSync(REDIS_SERVER, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export { freePort };

export class RedisProcess {
  private child: ChildProcess | null = null;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts redis-server and resolves once it accepts connections (at most 10 s). */
  async start(): Promise<void> {
    const child = spawn(REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
      const onData = (chunk: Buffer): void => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          child.stdout!.removeListener('data', onData);
          child.stdout!.resume();
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.resume();
      child.once('close', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${out}`));
      });
    });
  }

  /** Stops redis-server (SIGTERM) and resolves once it has closed. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const closed = once(child, 'close');
    child.kill('SIGTERM');
    await closed;
  }

  static async start(): Promise<RedisProcess> {
    const redis = new RedisProcess(await freePort());
    await redis.start();
    return redis;
  }
}
