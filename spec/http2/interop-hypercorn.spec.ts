/**
 * Our RFC 8441 client against an HTTP/2 server nobody here wrote: Hypercorn (Debian's
 * python3-hypercorn, on the h2 and wsproto libraries) running spec/fixtures/h2_echo_app.py over
 * TLS. The proof that the WebSocket went over HTTP/2 comes from Hypercorn's side: the ASGI
 * scope it hands the application says http_version "2".
 *
 * Without Hypercorn the suite is skipped locally and fails on CI (.ci/run installs it).
 */
import { expect } from 'chai';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, WebSocket } from '../../lib';
import { FIXTURES, type Peer, requirePeer } from '../helpers/peers';
import { hasOpenssl, selfSignedCert } from '../helpers/tls';

/** /usr/bin/python3 (or $WSPIPE_PYTHON) that can import hypercorn. */
function findHypercorn(): Peer {
  const file = process.env.WSPIPE_PYTHON ?? '/usr/bin/python3';
  const out = spawnSync(file, ['-c', 'import hypercorn, h2; print(h2.__version__)'], { encoding: 'utf8', timeout: 15000 });
  if (out.status !== 0) return { name: 'hypercorn', path: null, version: '', missing: `${file} cannot import hypercorn (apt-get install python3-hypercorn)` };
  return { name: 'hypercorn', path: file, version: out.stdout.trim(), missing: '' };
}

describe('interop: our RFC 8441 client with Hypercorn', function () {
  this.timeout(60000);
  let child: ChildProcess | null = null;
  let dir = '';
  let port = 0;
  let output = '';

  /** Resolves once Hypercorn's output has a line matching `pattern`. */
  function line(pattern: RegExp): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = pattern.exec(output);
        if (m === null) return;
        child!.stdout!.removeListener('data', check);
        child!.stderr!.removeListener('data', check);
        child!.removeListener('close', onExit);
        resolve(m);
      };
      const onExit = (): void => reject(new Error(`hypercorn exited: ${output}`));
      child!.stdout!.on('data', check);
      child!.stderr!.on('data', check);
      child!.once('close', onExit);
      check();
    });
  }

  before(async function () {
    const python = requirePeer(this, findHypercorn());
    if (!hasOpenssl()) this.skip();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-hypercorn-'));
    fs.writeFileSync(path.join(dir, 'cert.pem'), selfSignedCert().cert);
    fs.writeFileSync(path.join(dir, 'key.pem'), selfSignedCert().key);
    child = spawn(
      python,
      ['-m', 'hypercorn', '--certfile', path.join(dir, 'cert.pem'), '--keyfile', path.join(dir, 'key.pem'), '--bind', '127.0.0.1:0', 'h2_echo_app:app'],
      { cwd: FIXTURES, env: { ...process.env, PYTHONUNBUFFERED: '1' } },
    );
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    port = Number((await line(/Running on https:\/\/127\.0\.0\.1:(\d+)/))[1]);
  });

  after(async () => {
    if (child !== null && child.exitCode === null) {
      child.kill();
      await once(child, 'close');
    }
    if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
  });

  it('opens the WebSocket as an HTTP/2 stream, echoes text and 256 KiB binary with permessage-deflate, closes cleanly', async () => {
    const ws: WebSocket = connect(`wss://127.0.0.1:${port}/h2-echo`, { http2: true, tls: { ca: selfSignedCert().cert } });
    ws.on('error', () => {});
    const upgrade = new Promise<{ httpVersion: string; statusCode: number; headers: Record<string, unknown> }>((resolve) => ws.once('upgrade', resolve));
    await once(ws, 'open');
    const response = await upgrade;
    expect(response).to.include({ httpVersion: '2.0', statusCode: 200 });
    expect(response.headers.server).to.equal('hypercorn-h2');
    expect(ws.extensions).to.match(/^permessage-deflate/);
    // Hypercorn's side: the ASGI scope of this WebSocket says HTTP/2.
    await line(/^ws 2 \/h2-echo$/m);
    const text = once(ws, 'message');
    ws.send('hello hypercorn');
    expect((await text)[0]).to.equal('hello hypercorn');
    const big = Buffer.alloc(256 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const binary = once(ws, 'message');
    ws.send(big);
    expect(((await binary)[0] as Buffer).equals(big)).to.equal(true);
    const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
    ws.close(1000, 'done');
    expect((await closed)[0]).to.equal(1000);
  });
});
