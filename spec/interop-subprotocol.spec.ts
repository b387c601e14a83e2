/**
 * Subprotocols against the echo example (examples/echo-server.ts, run as users run it), with
 * the clients people point at it: Chromium (through its own WebSocket API) and ws.
 *
 * RFC 6455 §4.1 lets a server answer without a subprotocol, but browsers follow the WHATWG
 * WebSockets standard ("establish a WebSocket connection": "If protocols is not the empty list
 * and extracting header list values given `Sec-WebSocket-Protocol` and response's header list
 * results in null, failure, or the empty byte sequence, then fail the WebSocket connection"),
 * and ws's client does the same. So a server that selects none locks out every browser that
 * offers one: the echo server selects the first protocol offered (an echo speaks them all).
 */
import { expect } from 'chai';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext } from 'playwright-core';
import { WebSocket as WsClient } from 'ws';
import { CHROMIUM_ARGS, findChromium, requirePeer } from './helpers/peers';

const ROOT = path.join(__dirname, '..');
const TS_NODE = path.join(ROOT, 'node_modules', '.bin', 'ts-node');

interface Outcome {
  opened: boolean;
  protocol: string;
  echo: string | null;
}

/** Connects with ws, offering `protocols`; sends one text message once open; reports what happened. */
function wsClient(url: string, protocols: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const ws = new WsClient(url, protocols);
    let opened = false;
    ws.on('open', () => {
      opened = true;
      ws.send('hello');
    });
    ws.on('message', (data: Buffer) => {
      resolve({ opened, protocol: ws.protocol, echo: data.toString() });
      ws.close();
    });
    ws.on('error', () => resolve({ opened, protocol: ws.protocol, echo: null }));
  });
}

describe('subprotocols with the echo example (Chromium and ws clients)', function () {
  this.timeout(60000);
  let child: ChildProcess | null = null;
  let url = '';

  before(async function () {
    child = spawn(TS_NODE, ['examples/echo-server.ts', '--port', '0', '--quiet'], {
      cwd: ROOT,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
    });
    let out = '';
    url = await new Promise<string>((resolve, reject) => {
      child!.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const m = /listening on (ws:\/\/[\d.]+:\d+)/.exec(out);
        if (m !== null) resolve(m[1]!);
      });
      child!.once('close', (code) => reject(new Error(`echo server exited with ${code}: ${out}`)));
    });
  });

  after(async () => {
    if (child !== null && child.exitCode === null) {
      const closed = new Promise((resolve) => child!.once('close', resolve));
      child.kill('SIGTERM');
      await closed;
    }
  });

  it('a ws client offering chat connects, gets chat, and is echoed', async () => {
    expect(await wsClient(url, ['chat'])).to.deep.equal({ opened: true, protocol: 'chat', echo: 'hello' });
  });

  it('a ws client offering two gets the first it offered', async () => {
    expect(await wsClient(url, ['chat', 'superchat'])).to.deep.equal({ opened: true, protocol: 'chat', echo: 'hello' });
  });

  it('a ws client offering none gets none', async () => {
    expect(await wsClient(url, [])).to.deep.equal({ opened: true, protocol: '', echo: 'hello' });
  });

  describe('Chromium', () => {
    let context: BrowserContext | null = null;
    let profile = '';

    before(async function () {
      const executablePath = requirePeer(this, findChromium());
      profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-chromium-'));
      context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: CHROMIUM_ARGS });
    });

    after(async () => {
      await context?.close();
      context = null;
      if (profile !== '') fs.rmSync(profile, { recursive: true, force: true });
    });

    for (const protocols of [['chat'], ['chat', 'superchat'], []]) {
      it(`new WebSocket(url, ${JSON.stringify(protocols)}) opens and is echoed`, async () => {
        const page = await context!.newPage();
        const outcome = await page.evaluate(
          ([target, offered]) =>
            new Promise<Outcome>((resolve) => {
              const ws = new WebSocket(target, offered);
              let opened = false;
              ws.onopen = () => {
                opened = true;
                ws.send('hello');
              };
              ws.onmessage = (event) => {
                resolve({ opened, protocol: ws.protocol, echo: String(event.data) });
                ws.close();
              };
              ws.onerror = () => resolve({ opened, protocol: ws.protocol, echo: null });
            }),
          [url, protocols] as const,
        );
        await page.close();
        expect(outcome).to.deep.equal({ opened: true, protocol: protocols[0] ?? '', echo: 'hello' });
      });
    }
  });
});
