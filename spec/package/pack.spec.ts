/**
 * The package as users get it: `npm pack`, the tarball installed into a fresh project (nothing
 * else: no @types/readable-stream, no @types/node of the project's own), then
 *
 * - TypeScript under `strict` (skipLibCheck off, `types: []`) with Node's module resolution
 *   (the exports map's `types`), CommonJS (.ts) and ESM (.mts) files, and again with the
 *   classic resolution of a `module: commonjs` project (package.json's `types`);
 * - small programs that start a server from the package, connect to it and echo a message:
 *   CommonJS (require), ESM (import, through Node's detection of CommonJS named exports), and
 *   the TypeScript ones compiled;
 * - every ts/js code block of README.md and docs/*.md, type-checked as an ES module of its own.
 *   A block that is not meant to compile is preceded by the line `<!-- not-compiled -->`.
 *
 * The pack and the install are done once for the file (about 10-30 s: npm takes the
 * dependencies from its cache, or the registry when they are not there yet).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
export const NOT_COMPILED = '<!-- not-compiled -->';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end ('close': its output is read to the end), bounded by `timeoutMs`. */
function run(command: string, args: string[], cwd: string, timeoutMs = 120000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, NODE_OPTIONS: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(path.join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/** README.md and the Markdown files of docs/. */
function documents(): string[] {
  const docs = path.join(ROOT, 'docs');
  const inDocs = fs.existsSync(docs) ? fs.readdirSync(docs).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`) : [];
  return ['README.md', ...inDocs];
}

export interface CodeBlock {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  compiled: boolean;
}

/** The fenced code blocks of a Markdown text (indented ones too, as in list items). */
export function codeBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]!);
    if (open === null) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j]!)) body.push(lines[j++]!.slice(indent));
    let k = i - 1;
    while (k >= 0 && lines[k]!.trim() === '') k--;
    blocks.push({ line: i + 1, lang: open[2]!, code: body.join('\n'), compiled: k < 0 || lines[k]!.trim() !== NOT_COMPILED });
    i = j;
  }
  return blocks;
}

const CJS_ECHO = `'use strict';
const { createServer, connect } = require('wspipe');

const server = createServer({ port: 0, host: '127.0.0.1' });
server.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
server.on('listening', () => {
  const ws = connect('ws://127.0.0.1:' + server.address().port);
  ws.on('open', () => ws.send('hello from CommonJS'));
  ws.on('message', (data) => {
    console.log('echo: ' + data);
    ws.close(1000, 'done');
  });
  ws.on('close', (code, reason) => {
    console.log('close ' + code + ' ' + reason);
    server.close();
  });
});
`;

const ESM_ECHO = `import wspipe, { createServer, connect, createProxy, FrameLogWriter, readFrameLog, replay, Tap, WebSocketStream, toWebSocketStream, composePipeline, reconnecting } from 'wspipe';

for (const f of [createProxy, FrameLogWriter, readFrameLog, replay, Tap, WebSocketStream, toWebSocketStream, composePipeline, reconnecting]) if (typeof f !== 'function') throw new Error('missing export');
if (wspipe.createServer !== createServer) throw new Error('the default import is not module.exports');

const server = createServer({ port: 0, host: '127.0.0.1' });
server.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
server.on('listening', () => {
  const ws = connect(\`ws://127.0.0.1:\${server.address().port}\`);
  ws.on('open', () => ws.send('hello from ESM'));
  ws.on('message', (data) => {
    console.log(\`echo: \${data}\`);
    ws.close(1000, 'done');
  });
  ws.on('close', (code, reason) => {
    console.log(\`close \${code} \${reason}\`);
    server.close();
  });
});
`;

/** TypeScript, strict: the event arguments must be inferred (the @ts-expect-error lines fail if they were any). */
const TS_ECHO = (label: string): string => `import { createServer, connect, WebSocket, WebSocketError, MessageReadable } from 'wspipe';
import type { WebSocketServer, WebSocketProxy, ControlFrameResponder, HandshakeParser, ProxyConnection } from 'wspipe';
import type { UpgradeRequest, ServerOptions } from 'wspipe';
import { pipeline, Writable } from 'node:stream';

const options: ServerOptions = { port: 0, host: '127.0.0.1', maxPayload: 1024 * 1024 };
const server = createServer(options);
server.on('connection', (ws: WebSocket, req: UpgradeRequest) => {
  const path: string = req.url;
  void path;
  ws.on('message', (data, isBinary) => {
    const payload: string | Buffer = data;
    const binary: boolean = isBinary;
    // @ts-expect-error data is string | Buffer, not any
    const wrong: number = data;
    void wrong;
    ws.send(payload, { binary });
  });
});
server.on('error', (err) => {
  const e: Error = err;
  throw e;
});
server.on('listening', () => {
  const ws = connect(\`ws://127.0.0.1:\${server.address()!.port}\`);
  ws.on('open', () => ws.send('hello from ${label}'));
  ws.on('message', (data) => {
    console.log(\`echo: \${data.toString()}\`);
    ws.close(1000, 'done');
  });
  ws.on('error', (err) => {
    if (err instanceof WebSocketError) console.error(err.code, err.closeCode);
  });
  ws.on('close', (code, reason) => {
    const c: number = code;
    const r: string = reason;
    // @ts-expect-error reason is a string, not any
    const n: number = reason;
    void n;
    console.log(\`close \${c} \${r}\`);
    server.close();
  });
});

// Our streams are Node streams to the type checker: they fit stream.pipeline().
export function drain(ws: WebSocket): void {
  pipeline(ws, new Writable({ objectMode: true, write: (_m, _e, cb) => cb() }), () => {});
}
export function streamed(stream: MessageReadable): boolean {
  return stream.binary;
}

// The server's, the proxy's and the stages' events are typed too (never called: types only).
export function listeners(server: WebSocketServer, proxy: WebSocketProxy, responder: ControlFrameResponder): void {
  server.on('connection', (ws, req) => {
    // @ts-expect-error req.url is a string
    const n: number = req.url;
    void n;
    ws.on('ping', (payload) => payload.length);
  });
  server.on('rejected', (err, req, status) => console.log(err.code, req?.url, status + 1));
  proxy.on('connection', (conn) => {
    conn.on('close', ({ client, upstream }) => console.log(client.code + upstream.code));
    conn.on('error', (err, side) => console.log(err.message, side === 'client' ? 'client' : 'upstream'));
  });
  responder.on('peerclose', (code, reason) => console.log(code + 1, reason.length));
}

// The listener methods keep their typing however they are reached (never called: types only).
export function typedListeners(ws: WebSocket, parser: HandshakeParser, responder: ControlFrameResponder, conn: ProxyConnection): void {
  // Chained, they return the class itself (not the Duplex it extends): send() is there.
  ws.on('open', () => {}).once('close', (code) => code).prependListener('message', () => {}).send('chained');
  const again: WebSocket = ws.addListener('ping', (p) => p.length).prependOnceListener('pong', (p) => p.length);
  void again;
  ws.once('close', (code, reason) => {
    // @ts-expect-error reason is a string, not any (once, as on)
    const n: number = reason;
    void n, code;
  });
  ws.prependListener('message', (data, isBinary) => {
    // @ts-expect-error isBinary is a boolean, not any (prependListener, as on)
    const s: string = isBinary;
    void s, data;
  });
  ws.on('error', (err) => {
    // @ts-expect-error err is an Error, not any
    const n: number = err;
    void n;
  });
  // Events the map does not name are still accepted (Node's catch-all).
  ws.on('not-an-event', (a: number, b: string) => console.log(a, b)).on(Symbol('s'), () => {});
  // Statics and instanceof are the class's own.
  const states: number[] = [WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED];
  void states;
  const maybe: unknown = ws;
  if (maybe instanceof WebSocket) maybe.send('narrowed');
  parser.on('handshake', (head) => {
    // @ts-expect-error head is an UpgradeRequest | UpgradeResponse, not any
    const n: number = head;
    void n;
  });
  const p: HandshakeParser = parser.once('handshake', () => {});
  void p;
  responder.on('ping', (payload) => {
    // @ts-expect-error payload is a Buffer, not any
    const n: number = payload;
    void n;
  });
  conn.on('error', (err, side) => {
    // @ts-expect-error side is 'client' | 'upstream'
    const s: 'neither' = side;
    void s, err;
  });
  const c: ProxyConnection = conn.once('close', () => {}).on('error', () => {});
  void c;
}
`;

describe('package: the packed tarball in a fresh project', function () {
  this.timeout(180000);
  let dir = '';
  let project = '';
  let files: string[] = [];
  let docBlocks: Array<CodeBlock & { file: string }> = [];

  before(async function () {
    this.timeout(300000);
    const built = path.join(ROOT, 'dist', 'lib', 'index.js');
    if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newestMtime(path.join(ROOT, 'lib'))) {
      const build = await run('npm', ['run', 'build'], ROOT);
      expect(build.code, build.stdout + build.stderr).to.equal(0);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-pack-'));
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
    expect(pack.code, pack.stderr).to.equal(0);
    const [info] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info!.files.map((f) => f.path);
    project = path.join(dir, 'consumer');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    const install = await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', path.join(dir, info!.filename)],
      project,
    );
    expect(install.code, install.stdout + install.stderr).to.equal(0);

    const write = (name: string, text: string): void => fs.writeFileSync(path.join(project, name), text);
    write('echo.cjs', CJS_ECHO);
    write('echo.mjs', ESM_ECHO);
    write('echo.ts', TS_ECHO('TypeScript'));
    write('echo-esm.mts', TS_ECHO('TypeScript ESM'));
    const strict = { strict: true, target: 'ES2022', skipLibCheck: false, types: [], outDir: 'out', noUnusedLocals: true };
    write('tsconfig.json', JSON.stringify({ compilerOptions: { ...strict, module: 'node16' }, files: ['echo.ts', 'echo-esm.mts'] }));
    // The published declarations themselves are checked once (skipLibCheck off, above); the two
    // programs below check only their own code against them, which is much faster.
    write(
      'tsconfig.node10.json',
      JSON.stringify({
        compilerOptions: { ...strict, skipLibCheck: true, module: 'commonjs', moduleResolution: 'node', esModuleInterop: true, noEmit: true },
        files: ['echo.ts'],
      }),
    );
    docBlocks = documents().flatMap((file) =>
      codeBlocks(fs.readFileSync(path.join(ROOT, file), 'utf8'))
        .filter((b) => ['ts', 'typescript', 'js', 'javascript'].includes(b.lang))
        .map((b) => ({ ...b, file })),
    );
    const names: string[] = [];
    for (const block of docBlocks.filter((b) => b.compiled)) {
      const name = `${block.file.replace(/[/.]/g, '_')}-line-${block.line}.mts`;
      names.push(name);
      write(name, `${block.code}\nexport {};\n`);
    }
    write('tsconfig.docs.json', JSON.stringify({ compilerOptions: { ...strict, skipLibCheck: true, noUnusedLocals: false, module: 'node16', noEmit: true }, files: names }));
  });

  after(() => {
    if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the tarball holds the build, README, LICENSE and CHANGELOG; no sources, specs or benchmarks', () => {
    for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/bin/wspipe.js']) {
      expect(files, f).to.include(f);
    }
    const stray = files.filter((f) => /^(lib|spec|bench|scripts|dist\/bench|dist\/spec)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')));
    expect(stray).to.deep.equal([]);
  });

  it('type-checks under strict with nothing but the package: CommonJS and ESM files (module node16, the exports map)', async () => {
    const tsc = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], project);
    expect(tsc.code, tsc.stdout + tsc.stderr).to.equal(0);
  });

  it('type-checks under strict with the classic resolution of a module: commonjs project', async () => {
    const tsc = await run(process.execPath, [TSC, '-p', 'tsconfig.node10.json'], project);
    expect(tsc.code, tsc.stdout + tsc.stderr).to.equal(0);
  });

  for (const [label, file] of [
    ['CommonJS (require)', 'echo.cjs'],
    ['ESM (import: named exports detected from CommonJS)', 'echo.mjs'],
    ['TypeScript compiled to CommonJS', 'out/echo.js'],
    ['TypeScript compiled to ESM', 'out/echo-esm.mjs'],
  ] as const) {
    it(`${label}: a server and a client from the package echo a message`, async () => {
      if (file.startsWith('out/') && !fs.existsSync(path.join(project, file))) {
        const tsc = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], project);
        expect(tsc.code, tsc.stdout).to.equal(0);
      }
      const result = await run(process.execPath, [file], project, 20000);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout).to.match(/^echo: hello from /m);
      expect(result.stdout).to.match(/^close 1000/m);
    });
  }

  it("every ts/js code block of README.md and docs/*.md compiles under strict (each an ES module; '<!-- not-compiled -->' opts out)", async () => {
    const compiled = docBlocks.filter((b) => b.compiled);
    expect(compiled.filter((b) => b.file === 'README.md').length).to.be.above(2);
    const tsc = await run(process.execPath, [TSC, '-p', 'tsconfig.docs.json'], project);
    const legend = "(a file FILE_md-line-N.mts is the block whose fence is on line N of FILE.md)";
    expect(tsc.code, `code blocks that do not compile ${legend}:\n${tsc.stdout}${tsc.stderr}`).to.equal(0);
  });
});
