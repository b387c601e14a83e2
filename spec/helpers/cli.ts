/**
 * Running the built `wspipe` binary (dist/bin/wspipe.js) in specs: build it when a source under
 * lib/ or bin/ is newer, spawn it with stdin, collect its output, wait for 'close' (the process
 * has exited and its stdio is flushed).
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.join(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'dist', 'bin', 'wspipe.js');

function newest(dir: string): number {
  let time = 0;
  for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) time = Math.max(time, fs.statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return time;
}

/** Builds dist/ when it is missing or older than lib/ and bin/. */
export function ensureBuilt(): void {
  const built = fs.existsSync(BIN) ? fs.statSync(BIN).mtimeMs : 0;
  if (built >= Math.max(newest('lib'), newest('bin'))) return;
  try {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'pipe' });
  } catch {
    // Type errors elsewhere in the tree still emit JavaScript; what matters is that the binary is there.
  }
  if (!fs.existsSync(BIN)) throw new Error(`the build did not produce ${BIN}`);
  fs.utimesSync(BIN, new Date(), new Date());
}

export interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The exit status once the process closed (null: killed by a signal). */
  closed: Promise<number | null>;
}

const children = new Set<ChildProcess>();

/** Starts `wspipe ...args`; `input` is written to its stdin and stdin ended (undefined: stdin left open). */
export function wspipe(args: string[], input?: string | Buffer): Running {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  child.stdin!.on('error', () => {});
  if (input !== undefined) child.stdin!.end(input);
  const closed = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  return { child, stdout: () => Buffer.concat(out).toString('utf8'), stderr: () => Buffer.concat(err).toString('utf8'), closed };
}

/** Kills what is still running (afterEach). */
export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}

/** Polls `check` every 20 ms until it is true; fails after `ms`. */
export async function waitFor(check: () => boolean, what: string, ms = 10000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits for a "listening on [ws://]HOST:PORT" line on stderr; returns the port. */
export async function listeningPort(run: Running): Promise<number> {
  let port = 0;
  await waitFor(() => {
    const m = /listening on (?:wss?:\/\/)?[^:\s]+:(\d+)/.exec(run.stderr());
    if (m !== null) port = Number(m[1]);
    return port !== 0 || run.child.exitCode !== null;
  }, 'the listening line');
  if (port === 0) throw new Error(`did not start: ${run.stderr()}`);
  return port;
}
