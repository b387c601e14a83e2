/**
 * `wspipe connect --reconnect`: the built command against a loopback server that drops the
 * first connection; each attempt is on stderr, stdin goes on over the new connection, and the
 * user's deliberate close (end of input, Ctrl-C) is never followed by a reconnection.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { createServer, WebSocket, WebSocketServer } from '../lib';
import { ensureBuilt, killAll, waitFor, wspipe } from './helpers/cli';

describe('cli: connect --reconnect', function () {
  this.timeout(60000);
  let wss: WebSocketServer | null = null;
  const closes: Array<[number, number]> = [];

  before(() => ensureBuilt());

  afterEach(async () => {
    killAll();
    if (wss !== null) await new Promise<void>((resolve) => wss!.close(() => resolve()));
    wss = null;
    closes.length = 0;
  });

  /** A server that answers each message with "N: message" (N: the connection's number) and drops connection 1 after its first message. */
  async function droppingServer(): Promise<string> {
    let n = 0;
    wss = createServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (ws: WebSocket) => {
      const number = ++n;
      ws.on('error', () => {});
      ws.on('close', (code: number) => closes.push([number, code]));
      ws.on('message', (data: string) => {
        ws.send(`${number}: ${data}`, () => {
          if (number === 1) ws.terminate();
        });
      });
    });
    await once(wss, 'listening');
    return `ws://127.0.0.1:${wss.address()!.port}`;
  }

  it('comes back after the server drops the connection, says so on stderr, and stops at the end of input', async () => {
    const url = await droppingServer();
    const run = wspipe(['connect', '--reconnect', '--quiet', '0', url]);
    run.child.stdin!.write('one\n');
    await waitFor(() => run.stdout().includes('1: one\n'), 'the first answer');
    await waitFor(() => /connected to .* \(attempt 1\)[\s\S]*connection closed with 1006; reconnecting[\s\S]*connected to/.test(run.stderr()), 'the second connection');
    run.child.stdin!.write('two\n');
    await waitFor(() => run.stdout().includes('2: two\n'), 'the answer over the new connection');
    run.child.stdin!.end();
    expect(await run.closed, run.stderr()).to.equal(0);
    expect(run.stdout()).to.equal('1: one\n2: two\n');
    await waitFor(() => closes.length === 2, 'both closes on the server');
    // The end of input closed with 1000, and nothing came back after it.
    expect(closes).to.deep.equal([
      [1, 1006],
      [2, 1000],
    ]);
    expect(wss!.clients.size).to.equal(0);
  });

  it('Ctrl-C is a deliberate close: no reconnection', async () => {
    const url = await droppingServer();
    const run = wspipe(['connect', '--reconnect', url]);
    await waitFor(() => run.stderr().includes('connected to'), 'the connection');
    run.child.kill('SIGINT');
    expect(await run.closed, run.stderr()).to.equal(0);
    await waitFor(() => closes.length === 1, 'the close on the server');
    expect(closes).to.deep.equal([[1, 1000]]);
    expect(run.stderr()).to.not.include('reconnecting');
  });

  it('reports each failed attempt with its delay, and gives up after --retries', async () => {
    const spare = createServer({ port: 0, host: '127.0.0.1' });
    await once(spare, 'listening');
    const port = spare.address()!.port;
    await new Promise<void>((resolve) => spare.close(() => resolve())); // a port nobody listens on now
    const run = wspipe(['connect', '--reconnect', '--retries', '2', `ws://127.0.0.1:${port}`]);
    expect(await run.closed).to.equal(1);
    const stderr = run.stderr();
    expect(stderr.match(/attempt \d failed: .*ECONNREFUSED.*; retrying in \d+ ms/g), stderr).to.have.length(2);
    expect(stderr).to.match(/giving up after 3 attempts/);
  });

  it('refuses --reconnect with --one-message (usage error)', async () => {
    const run = wspipe(['connect', '--reconnect', '--one-message', 'ws://127.0.0.1:1']);
    expect(await run.closed).to.equal(2);
    expect(run.stderr()).to.include('--reconnect');
  });
});
