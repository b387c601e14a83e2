/**
 * examples/echo-server with --cert, --key and --http2: wss:// over HTTP/2 (RFC 8441) and over
 * HTTP/1.1 on the same port, reached by our client both ways. Runs the compiled example
 * (dist/, which `npm test` builds first), as spec/examples.spec.ts does: ts-node takes seconds.
 */
import { expect } from 'chai';
import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, WebSocket } from '../../lib';
import type { ClientOptions } from '../../lib';
import { hasOpenssl, selfSignedCert } from '../helpers/tls';

const ROOT = path.join(__dirname, '..', '..');
const ECHO_SERVER = path.join(ROOT, 'dist', 'examples', 'echo-server.js');

/** Starts the echo server; resolves with its port once it printed its address. */
async function startEcho(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [ECHO_SERVER, '--port', '0', '--quiet', ...args], { cwd: ROOT });
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.resume();
  const port = await new Promise<number>((resolve, reject) => {
    child.once('close', (code) => reject(new Error(`echo server exited with ${String(code)}: ${out}`)));
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      const m = /listening on wss:\/\/[^:]+:(\d+)/.exec(out);
      if (m !== null) resolve(Number(m[1]));
    });
  });
  return { child, port };
}

/** One echo; `httpVersion` is the answer's ('2.0' over HTTP/2, '1.1' over HTTP/1.1). */
async function roundTrip(url: string, options: ClientOptions): Promise<{ reply: unknown; httpVersion: string }> {
  const ws: WebSocket = connect(url, options);
  let httpVersion = '';
  ws.on('upgrade', (response: { httpVersion: string }) => (httpVersion = response.httpVersion));
  await once(ws, 'open');
  const reply = once(ws, 'message');
  ws.send('over the wire');
  const [data] = await reply;
  const done = once(ws, 'close');
  ws.close();
  await done;
  return { reply: data, httpVersion };
}

describe('examples/echo-server --cert --key --http2', function () {
  this.timeout(60000);
  const children: ChildProcess[] = [];
  let dir = '';

  before(function () {
    if (!hasOpenssl()) this.skip();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-echo-tls-'));
    fs.writeFileSync(path.join(dir, 'cert.pem'), selfSignedCert().cert);
    fs.writeFileSync(path.join(dir, 'key.pem'), selfSignedCert().key);
  });

  after(async () => {
    for (const child of children) {
      if (child.exitCode === null) {
        child.kill();
        await once(child, 'close');
      }
    }
    if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves RFC 8441 and HTTP/1.1 upgrades on the same port', async () => {
    const { child, port } = await startEcho(['--cert', path.join(dir, 'cert.pem'), '--key', path.join(dir, 'key.pem'), '--http2']);
    children.push(child);
    const tls = { ca: selfSignedCert().cert };
    const url = `wss://127.0.0.1:${port}/`;
    const overH2 = await roundTrip(url, { http2: true, tls });
    const overH1 = await roundTrip(url, { tls });
    expect(overH2).to.deep.equal({ reply: 'over the wire', httpVersion: '2.0' });
    expect(overH1).to.deep.equal({ reply: 'over the wire', httpVersion: '1.1' });
  });

  it('without --http2 serves wss:// over HTTP/1.1 only (our http2 client falls back)', async () => {
    const { child, port } = await startEcho(['--cert', path.join(dir, 'cert.pem'), '--key', path.join(dir, 'key.pem')]);
    children.push(child);
    const result = await roundTrip(`wss://127.0.0.1:${port}/`, { http2: true, tls: { ca: selfSignedCert().cert } });
    expect(result).to.deep.equal({ reply: 'over the wire', httpVersion: '1.1' });
  });
});
