/**
 * The ways ws is imported all work with 'wspipe/ws', resolved by Node through package.json's
 * exports map (in a throwaway project whose node_modules/wspipe links to this checkout's
 * build, `npm run build`): CommonJS `const WebSocket = require('wspipe/ws')` with
 * `WebSocket.Server`, `WebSocket.WebSocketServer`, destructuring; ES modules' default and
 * named imports.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

describe("wspipe/ws entry points (package.json exports './ws')", function () {
  this.timeout(30000);
  let project = '';

  before(function () {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'lib', 'ws', 'esm.mjs'))) {
      throw new Error('dist/lib/ws is not built: run npm run build (npm test does)');
    }
    project = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-ws-entry-'));
    fs.mkdirSync(path.join(project, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(project, 'node_modules', 'wspipe'), 'dir');
  });

  after(() => {
    if (project !== '') fs.rmSync(project, { recursive: true, force: true });
  });

  function run(file: string, source: string): string {
    fs.writeFileSync(path.join(project, file), source);
    return execFileSync(process.execPath, [file], { cwd: project, encoding: 'utf8', timeout: 20000 }).trim();
  }

  const report = `[typeof WebSocket, WebSocket.name, WebSocket.OPEN, typeof WebSocketServer, WebSocketServer.name, typeof createWebSocketStream].join(' ')`;
  const expected = 'function WebSocket 1 function WebSocketServer function';

  it("CommonJS: const WebSocket = require('wspipe/ws'), with WebSocket.Server and WebSocket.WebSocketServer", () => {
    const out = run(
      'a.cjs',
      `const WebSocket = require('wspipe/ws');
       const WebSocketServer = WebSocket.WebSocketServer, createWebSocketStream = WebSocket.createWebSocketStream;
       if (WebSocket.Server !== WebSocketServer) throw new Error('Server alias');
       console.log(${report});`,
    );
    expect(out).to.equal(expected);
  });

  it("CommonJS: const { WebSocket, WebSocketServer, createWebSocketStream } = require('wspipe/ws')", () => {
    const out = run('b.cjs', `const { WebSocket, WebSocketServer, createWebSocketStream } = require('wspipe/ws'); console.log(${report});`);
    expect(out).to.equal(expected);
  });

  it("ES module: import WebSocket, { WebSocketServer, createWebSocketStream } from 'wspipe/ws'", () => {
    const out = run(
      'c.mjs',
      `import WebSocket, { WebSocket as Named, WebSocketServer, createWebSocketStream } from 'wspipe/ws';
       if (Named !== WebSocket) throw new Error('default and named differ');
       console.log(${report});`,
    );
    expect(out).to.equal(expected);
  });

  it('an ES module application runs: a server and a client talk', () => {
    const out = run(
      'd.mjs',
      `import WebSocket, { WebSocketServer } from 'wspipe/ws';
       const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' }, () => {
         const ws = new WebSocket('ws://127.0.0.1:' + wss.address().port);
         ws.on('open', () => ws.send('ping'));
         ws.on('message', (data) => { console.log(data.toString()); ws.close(); });
         ws.on('close', () => wss.close());
       });
       wss.on('connection', (socket) => socket.on('message', (data) => socket.send(data.toString() + ' pong')));`,
    );
    expect(out).to.equal('ping pong');
  });
});
