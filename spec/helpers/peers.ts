/**
 * Real peers for the interop specs (spec/interop-browser.spec.ts, spec/interop-python.spec.ts)
 * and for `npm run interop` (scripts/interop.ts, which runs those same specs):
 *
 * - finding the peers: Chromium (/usr/bin/chromium), python-websockets (for /usr/bin/python3)
 *   and openssl (for the wss:// certificate); WSPIPE_CHROMIUM / WSPIPE_PYTHON override the paths;
 * - the missing-peer rule: on CI (CI=true) a missing peer FAILS the suite; elsewhere the suite
 *   is skipped with a message saying what to install;
 * - child processes speaking JSON lines on stdin/stdout, all killed at the end;
 * - a recording server (our WebSocketServer on an http or https server) whose behaviour is
 *   chosen by the URL path and which records what it received, keyed by `?id=`.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createServer, WebSocket, WebSocketServer } from '../../lib';
import type { ServerOptions } from '../../lib';

/** True on CI, where a missing peer is a failure rather than a skip. */
export const ON_CI = process.env.CI === 'true';

/** The directory holding the page and the python scripts. */
export const FIXTURES = path.join(__dirname, '..', 'fixtures');

/** What the CI script installs; quoted in every missing-peer message. */
export const INSTALL_HINT =
  'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium python3-websockets openssl';

/** A peer program found (path set) or not (missing says why). */
export interface Peer {
  readonly name: string;
  readonly path: string | null;
  readonly version: string;
  readonly missing: string;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function found(name: string, file: string, version: string): Peer {
  return { name, path: file, version, missing: '' };
}

function notFound(name: string, why: string): Peer {
  return { name, path: null, version: '', missing: why };
}

const cache = new Map<string, Peer>();

function cached(name: string, find: () => Peer): Peer {
  let peer = cache.get(name);
  if (peer === undefined) {
    peer = find();
    cache.set(name, peer);
  }
  return peer;
}

/** Chromium: $WSPIPE_CHROMIUM, else Debian's /usr/bin/chromium. */
/** Flags for a headless Chromium that stays off this machine's closed network and out of any profile. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function findChromium(): Peer {
  return cached('chromium', () => {
    const file = process.env.WSPIPE_CHROMIUM ?? '/usr/bin/chromium';
    if (!isExecutable(file)) return notFound('chromium', `${file} not found`);
    const out = spawnSync(file, ['--version'], { encoding: 'utf8', timeout: 10000 });
    const version = /(\d+(?:\.\d+)+)/.exec(out.stdout ?? '')?.[1] ?? '?';
    return found('chromium', file, version);
  });
}

/** Oldest python-websockets whose API the fixtures use (async-iterator fragments, close_code). */
const MIN_WEBSOCKETS_MAJOR = 10;

/**
 * python3 with the websockets package: $WSPIPE_PYTHON, else /usr/bin/python3 (Debian's
 * python3-websockets installs for that interpreter, not for a pyenv python3 on PATH).
 */
export function findPython(): Peer {
  return cached('python-websockets', () => {
    const file = process.env.WSPIPE_PYTHON ?? '/usr/bin/python3';
    if (!isExecutable(file)) return notFound('python-websockets', `${file} not found`);
    const out = spawnSync(file, ['-c', 'import websockets; print(websockets.__version__)'], {
      encoding: 'utf8',
      timeout: 15000,
    });
    const version = (out.stdout ?? '').trim();
    if (out.status !== 0 || version === '') {
      return notFound('python-websockets', `${file} cannot import websockets`);
    }
    if (Number(version.split('.')[0]) < MIN_WEBSOCKETS_MAJOR) {
      return notFound('python-websockets', `websockets ${version} is older than ${MIN_WEBSOCKETS_MAJOR}.0`);
    }
    return found('python-websockets', file, version);
  });
}

/** openssl, to make the wss:// test certificate. */
export function findOpenssl(): Peer {
  return cached('openssl', () => {
    const out = spawnSync('openssl', ['version'], { encoding: 'utf8', timeout: 10000 });
    if (out.status !== 0) return notFound('openssl', 'the openssl command is not on PATH');
    return found('openssl', 'openssl', (out.stdout ?? '').trim().split(' ').slice(0, 2).join(' '));
  });
}

/** Suites skipped for a missing peer, with the reason (printed by scripts/interop.ts). */
export const skippedSuites: Array<{ suite: string; reason: string }> = [];

/**
 * The missing-peer rule, for a `before` hook: returns the peer's path when it is there.
 * When it is missing: on CI, throws (the hook fails, and so does the run); elsewhere, prints
 * why and skips every test of the suite.
 */
export function requirePeer(ctx: Mocha.Context, peer: Peer): string {
  if (peer.path !== null) return peer.path;
  const reason = `${peer.name} is missing (${peer.missing}); install it with: ${INSTALL_HINT}`;
  if (ON_CI) throw new Error(`CI=true and ${reason}`);
  const suite = ctx.test?.parent?.fullTitle() ?? peer.name;
  skippedSuites.push({ suite, reason });
  console.log(`      (skipped: ${reason})`);
  ctx.skip();
  throw new Error('unreachable: ctx.skip() throws');
}

// ---------------------------------------------------------------------------------------------
// Payloads

/** `size` bytes where byte i is (i * 31 + seed) & 0xff (the fixtures build the same bytes). */
export function payload(size: number, seed: number): Buffer {
  const period = Buffer.allocUnsafe(256);
  for (let i = 0; i < 256; i++) period[i] = (i * 31 + seed) & 0xff;
  return Buffer.alloc(size, period);
}

/** Hex SHA-256 of bytes, or of a string's UTF-8. */
export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Text with one-, two-, three- and four-byte UTF-8 characters, a NUL and a lone combining mark. */
export const NON_ASCII_TEXT = 'héllo wörld — € 😀 中文 \u0000 e\u0301 fin';

// ---------------------------------------------------------------------------------------------
// Child processes

const liveChildren = new Set<ChildProcess>();

// Whatever happens to the test run, no peer process outlives it.
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** A child process that reads and writes one JSON object per line. */
export class JsonLinesProcess {
  readonly child: ChildProcess;
  private readonly lines: Array<Record<string, unknown>> = [];
  private readonly waiters: Array<{
    match: (line: Record<string, unknown>) => boolean;
    resolve: (line: Record<string, unknown>) => void;
  }> = [];
  private stderr = '';
  private partial = '';
  private exited = false;
  private readonly exit: Promise<void>;

  constructor(command: string, args: string[], cwd: string) {
    this.child = spawn(command, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    liveChildren.add(this.child);
    this.exit = new Promise((resolve) =>
      this.child.once('close', () => {
        this.exited = true;
        liveChildren.delete(this.child);
        resolve();
      }),
    );
    this.child.on('error', (err) => {
      this.stderr += `\n${err.message}`;
    });
    this.child.stdin!.on('error', () => {}); // the child may be gone; stop() handles it
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (text: string) => this.onStdout(text));
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-4000);
    });
  }

  /** Writes one JSON line to the child's stdin. */
  send(value: unknown): void {
    this.child.stdin!.write(`${JSON.stringify(value)}\n`);
  }

  /** The first line (already read or still to come) that `match` accepts; consumes it. */
  next(match: (line: Record<string, unknown>) => boolean, timeoutMs = 20000): Promise<Record<string, unknown>> {
    const index = this.lines.findIndex(match);
    if (index >= 0) return Promise.resolve(this.lines.splice(index, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (line: Record<string, unknown>) => {
          clearTimeout(timer);
          clearInterval(watch);
          resolve(line);
        },
      };
      const fail = (why: string): void => {
        clearTimeout(timer);
        clearInterval(watch);
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        reject(new Error(`${why}; stderr: ${this.stderr.trim() || '(empty)'}`));
      };
      const timer = setTimeout(() => fail(`no matching line from the peer within ${timeoutMs} ms`), timeoutMs);
      const watch = setInterval(() => {
        if (this.exited) fail(`the peer exited (code ${this.child.exitCode})`);
      }, 50);
      this.waiters.push(waiter);
    });
  }

  /** Closes stdin (the fixtures exit on EOF), then kills the child if it has not exited in 3 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exit;
    clearTimeout(timer);
  }

  private onStdout(text: string): void {
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop()!;
    for (const part of parts) {
      if (part.trim() === '') continue;
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(part) as Record<string, unknown>;
      } catch {
        this.stderr += `\n(stdout, not JSON) ${part}`;
        continue;
      }
      const at = this.waiters.findIndex((w) => w.match(line));
      if (at >= 0) this.waiters.splice(at, 1)[0]!.resolve(line);
      else this.lines.push(line);
    }
  }
}

/** Starts a python fixture (spec/fixtures/NAME) with the python found by findPython(). */
export function startPython(python: string, script: string): JsonLinesProcess {
  // -B: no __pycache__ in spec/fixtures; -u: unbuffered stdout.
  return new JsonLinesProcess(python, ['-B', '-u', path.join(FIXTURES, script)], FIXTURES);
}

// ---------------------------------------------------------------------------------------------
// A self-signed certificate for wss://

/** A key and a certificate for 127.0.0.1, made now with openssl, valid for one day. */
export function makeCertificate(): { key: Buffer; cert: Buffer } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-cert-'));
  try {
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    const out = spawnSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyFile, '-out', certFile, '-days', '1',
        '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      ],
      { encoding: 'utf8', timeout: 20000 },
    );
    if (out.status !== 0) throw new Error(`openssl failed: ${out.stderr}`);
    return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The recording server (our side)

/** One message as our server received it. */
export interface ReceivedMessage {
  binary: boolean;
  length: number;
  sha256: string;
  /** The text itself, for text messages of at most 256 characters. */
  text?: string;
}

/** What our server saw of one connection (named by `?id=` in its URL). */
export interface ConnectionRecord {
  path: string;
  /** The subprotocol our server chose ('' for none). */
  protocol: string;
  /** The Sec-WebSocket-Extensions the client offered ('' for none). */
  offeredExtensions: string;
  /** The extensions our server agreed to ('' for none). */
  extensions: string;
  messages: ReceivedMessage[];
  /** Settles with the code and reason our 'close' event reported. */
  closed: Promise<{ code: number; reason: string }>;
}

/** Describes a message the way the fixtures do (py_common.describe, the page's describe). */
export function describeMessage(data: string | Buffer, binary: boolean): ReceivedMessage {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const out: ReceivedMessage = { binary, length: bytes.length, sha256: sha256(bytes) };
  if (typeof data === 'string' && data.length <= 256) out.text = data;
  return out;
}

/** Our WebSocketServer on an http(s) server, with the behaviours the interop cases need. */
export interface PeerServer {
  /** ws://127.0.0.1:port or wss://127.0.0.1:port */
  readonly url: string;
  /** http://... or https://..., where the page is served. */
  readonly httpUrl: string;
  readonly wss: WebSocketServer;
  /** The record of connection `id`, once it has opened. */
  connection(id: string, timeoutMs?: number): Promise<ConnectionRecord>;
  /** Closes open connections and both servers. */
  close(): Promise<void>;
}

export interface PeerServerOptions {
  /** Serve https and wss with this key and certificate. */
  tls?: { key: Buffer; cert: Buffer };
  /** HTML served at `/` (the browser's page). */
  page?: string;
  /** Passed to createServer (e.g. fragmentSize). */
  server?: ServerOptions;
}

/**
 * Starts our server on 127.0.0.1, port 0. The path picks what it does with a connection:
 *
 *   /echo                      echoes every message (text as text, binary as binary)
 *   /close?code=c&reason=r     sends "last words", then closes with c and r (no code: an empty close)
 *
 * Subprotocols: it picks 'b' when offered, else none.
 */
export async function startPeerServer(options: PeerServerOptions = {}): Promise<PeerServer> {
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.url === '/' && options.page !== undefined) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(options.page);
    } else {
      res.writeHead(404).end();
    }
  };
  const httpServer: http.Server =
    options.tls === undefined ? http.createServer(onRequest) : https.createServer(options.tls, onRequest);
  const wss = createServer({
    ...options.server,
    server: httpServer,
    protocols: (offered) => (offered.includes('b') ? 'b' : false),
  });
  const records = new Map<string, ConnectionRecord>();
  const waiting = new Map<string, (record: ConnectionRecord) => void>();

  wss.on('connection', (ws: WebSocket, req) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const id = url.searchParams.get('id') ?? '';
    const offered = req.headers['sec-websocket-extensions'];
    const record: ConnectionRecord = {
      path: url.pathname,
      protocol: ws.protocol,
      offeredExtensions: Array.isArray(offered) ? offered.join(', ') : (offered ?? ''),
      extensions: ws.extensions,
      messages: [],
      closed: new Promise((resolve) => ws.once('close', (code: number, reason: string) => resolve({ code, reason }))),
    };
    ws.on('error', () => {}); // a protocol error still ends in 'close', whose code the cases check
    ws.on('message', (data: string | Buffer, isBinary: boolean) => {
      record.messages.push(describeMessage(data, isBinary));
      if (url.pathname === '/echo') ws.send(data, { binary: isBinary });
    });
    if (url.pathname === '/close') {
      const code = url.searchParams.get('code');
      ws.send('last words');
      if (code === null) ws.close();
      else ws.close(Number(code), url.searchParams.get('reason') ?? '');
    }
    records.set(id, record);
    waiting.get(id)?.(record);
    waiting.delete(id);
  });

  httpServer.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    httpServer.once('listening', resolve);
    httpServer.once('error', reject);
  });
  const { port } = httpServer.address() as AddressInfo;
  const secure = options.tls !== undefined;
  return {
    url: `${secure ? 'wss' : 'ws'}://127.0.0.1:${port}`,
    httpUrl: `${secure ? 'https' : 'http'}://127.0.0.1:${port}`,
    wss,
    connection(id: string, timeoutMs = 10000): Promise<ConnectionRecord> {
      const record = records.get(id);
      if (record !== undefined) return Promise.resolve(record);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`no connection with id ${id} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, (r) => {
          clearTimeout(timer);
          resolve(r);
        });
      });
    },
    async close(): Promise<void> {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}

let nextId = 0;

/** A fresh connection id for `?id=`. */
export function newId(label: string): string {
  nextId += 1;
  return `${label}-${nextId}`;
}
