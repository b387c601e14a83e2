/**
 * examples/chat-cluster.ts as its header says to run it: two processes, one (real) Redis, a
 * client on each process; lines typed on one reach the other. Ctrl-C (SIGINT) stops them all.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { WebSocket as WsClient } from 'ws';
import { ON_CI } from '../helpers/peers';
import { RedisProcess, hasRedis } from '../helpers/redis';

const ROOT = path.resolve(__dirname, '..', '..');
const TS_NODE = path.join(ROOT, 'node_modules', '.bin', 'ts-node');

interface ChatClient {
  ws: WsClient;
  lines: Array<{ type: string; from?: string; text?: string; via?: string; name?: string }>;
}

async function chatClient(url: string): Promise<ChatClient> {
  const ws = new WsClient(url);
  const client: ChatClient = { ws, lines: [] };
  ws.on('message', (data: Buffer) => client.lines.push(JSON.parse(data.toString()) as ChatClient['lines'][number]));
  await once(ws, 'open');
  return client;
}

async function waitFor(check: () => boolean, what: string, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('examples/chat-cluster.ts (two processes, one Redis)', function () {
  this.timeout(300_000);
  let redis: RedisProcess | undefined;

  before(async function () {
    if (!hasRedis()) {
      if (ON_CI) throw new Error('redis-server is missing: apt-get install -y redis-server');
      this.skip();
    }
    redis = await RedisProcess.start();
  });
  after(async () => {
    await redis?.stop();
  });

  it('browsers on different processes chat together; SIGINT stops every process', async () => {
    const child = spawn(TS_NODE, ['examples/chat-cluster.ts', '--redis', redis!.url, '--ports', '0,0'], {
      cwd: ROOT,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
    });
    const closed = once(child, 'close');
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => (out.match(/chat node: open /g) ?? []).length === 2, 'two chat processes');
      const urls = [...out.matchAll(/chat node: open (http:\/\/127\.0\.0\.1:\d+\/)/g)].map((m) => m[1]!);
      expect(new Set(urls).size).to.equal(2);
      const [a, b] = await Promise.all(urls.map((u) => chatClient(`${u.replace(/^http/, 'ws')}chat`)));
      await waitFor(() => a!.lines.length > 0 && b!.lines.length > 0, 'the welcomes');
      // Each process subscribes to Redis once its first client has: until then a line may not
      // cross (at most once). Say hello until one does, then chat.
      for (let i = 0; i < 200 && !b!.lines.some((l) => l.text?.startsWith('hello ')); i++) {
        a!.ws.send(`hello ${i}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(b!.lines.some((l) => l.type === 'chat' && l.text?.startsWith('hello '))).to.equal(true);
      a!.ws.send('from the first process');
      b!.ws.send('from the second process');
      for (const c of [a!, b!]) {
        await waitFor(() => c.lines.some((l) => l.text === 'from the first process') && c.lines.some((l) => l.text === 'from the second process'), 'the lines');
      }
      const line = b!.lines.find((l) => l.text === 'from the first process')!;
      expect(line.via).to.not.equal(b!.lines.find((l) => l.text === 'from the second process')!.via);
      child.kill('SIGINT');
      const [code] = (await closed) as [number];
      expect(code).to.equal(0);
      for (const c of [a!, b!]) if (c.ws.readyState !== WsClient.CLOSED) await once(c.ws, 'close');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
