/**
 * The wspipe command line, run as users run it: `node dist/bin/wspipe.js ...` as a child
 * process, talking to our server and client over real sockets (127.0.0.1 only).
 */
import { expect } from 'chai';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ClientOptions, connect, createServer, ServerOptions, WebSocket, WebSocketServer } from '../lib';
import type { UpgradeRequest } from '../lib';
import { freePort } from './helpers/sockets';
import { hasOpenssl, selfSignedCert } from './helpers/tls';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'dist', 'bin', 'wspipe.js');
const COMMANDS = ['connect', 'listen', 'proxy', 'replay'];

/** Newest modification time of the TypeScript files under `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stdoutBytes: () => Buffer;
  stderr: () => string;
  exit: Promise<number>;
}

const running: ChildProcess[] = [];

function wspipe(args: string[], input?: string | Buffer): Run {
  const child = spawn('node', [BIN, ...args], { cwd: ROOT });
  running.push(child);
  const out: Buffer[] = [];
  let err = '';
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number>((resolve) => child.once('close', (code, signal) => resolve(code ?? (signal === null ? -1 : -2))));
  if (input !== undefined) child.stdin!.end(input);
  return { child, stdout: () => Buffer.concat(out).toString(), stdoutBytes: () => Buffer.concat(out), stderr: () => err, exit };
}

async function waitFor(check: () => boolean, what: string, ms = 10000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `wspipe listen --port 0 ...` and waits for the address it prints. */
async function listen(args: string[]): Promise<{ run: Run; port: number }> {
  const run = wspipe(['listen', '--port', '0', ...args]);
  let port = 0;
  await waitFor(() => {
    const match = /listening on wss?:\/\/127\.0\.0\.1:(\d+)/.exec(run.stderr());
    if (match !== null) port = Number(match[1]);
    return port !== 0 || run.child.exitCode !== null;
  }, 'wspipe listen');
  expect(port, run.stderr()).to.be.above(0);
  return { run, port };
}

/** A client of ours that records what it receives and how it closes. */
interface Peer {
  ws: WebSocket;
  got: Array<string | Buffer>;
  closed: Promise<[number, string]>;
}

async function peer(url: string, options: ClientOptions = {}): Promise<Peer> {
  const ws = connect(url, options);
  const got: Array<string | Buffer> = [];
  ws.on('message', (data: string | Buffer) => got.push(data));
  const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code: number, reason: string) => resolve([code, reason])));
  await once(ws, 'open');
  return { ws, got, closed };
}

/** Our server on a free port; `onConnection` gets each connection and its request. */
async function server(onConnection: (ws: WebSocket, req: UpgradeRequest) => void, options: ServerOptions = {}): Promise<{ wss: WebSocketServer; url: string }> {
  const wss = createServer({ port: 0, host: '127.0.0.1', ...options });
  wss.on('connection', onConnection);
  await once(wss, 'listening');
  return { wss, url: `ws://127.0.0.1:${wss.address()!.port}` };
}

describe('wspipe (command line)', function () {
  this.timeout(20000);
  const servers: WebSocketServer[] = [];

  before(function () {
    this.timeout(120000);
    const built = fs.existsSync(BIN) ? fs.statSync(BIN).mtimeMs : 0;
    if (built < newestSource(path.join(ROOT, 'bin'))) {
      // tsc emits even when another file has a type error; the check below is what matters.
      spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
    }
    expect(fs.existsSync(BIN), `${BIN} (npm run build)`).to.equal(true);
  });

  afterEach(async () => {
    for (const child of running.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(servers.splice(0).map((wss) => new Promise<void>((r) => wss.close(() => r()))));
  });

  async function echoServer(options: ServerOptions = {}): Promise<string> {
    const { wss, url } = await server((ws) => ws.pipe(ws), options);
    servers.push(wss);
    return url;
  }

  describe('dispatcher', () => {
    it('--help lists every command on stdout and exits 0', async () => {
      const run = wspipe(['--help']);
      expect(await run.exit).to.equal(0);
      for (const name of COMMANDS) expect(run.stdout()).to.match(new RegExp(`^  ${name} `, 'm'));
    });

    for (const name of COMMANDS) {
      it(`${name} --help (and help ${name}) prints the command's usage and exits 0`, async function () {
        if (!fs.existsSync(path.join(ROOT, 'dist', 'bin', 'commands', `${name}.js`))) this.skip();
        const run = wspipe([name, '--help']);
        const viaHelp = wspipe(['help', name]);
        expect(await run.exit).to.equal(0);
        expect(run.stdout()).to.match(new RegExp(`^usage: wspipe ${name}`));
        expect(await viaHelp.exit).to.equal(0);
        expect(viaHelp.stdout()).to.equal(run.stdout());
      });
    }

    it('--version prints the package version', async () => {
      const run = wspipe(['--version']);
      expect(await run.exit).to.equal(0);
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
      expect(run.stdout()).to.equal(`${pkg.version}\n`);
    });

    it('an unknown command or none says so in one line on stderr, naming the commands, and exits 2', async () => {
      for (const run of [wspipe(['frobnicate']), wspipe([])]) {
        expect(await run.exit).to.equal(2);
        expect(run.stdout()).to.equal('');
        expect(run.stderr()).to.match(/^wspipe: (unknown command 'frobnicate'|a command is required) \(one of connect, listen, proxy, replay, bridge; see 'wspipe --help'\)\n$/);
      }
    });

    it('usage errors of the commands exit 2 with a message on stderr', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['connect'], /a URL is required/],
        [['connect', '--nope', 'ws://127.0.0.1:1'], /Unknown option '--nope'/],
        [['connect', 'http://127.0.0.1:1'], /unsupported scheme 'http:'/],
        [['connect', '-H', 'no colon', 'ws://127.0.0.1:1'], /bad header/],
        [['connect', '--wait', 'soon', 'ws://127.0.0.1:1'], /bad --wait 'soon'/],
        [['connect', '--ca', '/nonexistent/ca.pem', 'wss://127.0.0.1:1'], /cannot read --ca/],
        [['listen'], /--port is required/],
        [['listen', '--port', 'http'], /bad port/],
        [['listen', '--port', '0', '--echo', '--broadcast'], /choose one of/],
        [['listen', '--port', '0', '--cert', 'x.pem'], /--cert and --key go together/],
      ];
      const runs = cases.map(([args]) => wspipe(args));
      for (const [i, [args, message]] of cases.entries()) {
        expect(await runs[i]!.exit, args.join(' ')).to.equal(2);
        expect(runs[i]!.stderr(), args.join(' ')).to.match(message);
      }
    });
  });

  describe('connect', () => {
    it('sends stdin lines as text messages and prints the echoes, then closes with 1000 and exits 0', async () => {
      const url = await echoServer();
      let closeCode = 0;
      const seen: string[] = [];
      servers[0]!.on('connection', (ws: WebSocket) => {
        ws.on('data', (d: string | Buffer) => seen.push(typeof d === 'string' ? `text:${d}` : 'binary'));
        ws.on('close', (code: number) => (closeCode = code));
      });
      const run = wspipe(['connect', url], 'one\ntwo\r\n\nthrée\nlast without newline');
      expect(await run.exit, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal('one\ntwo\n\nthrée\nlast without newline\n');
      expect(run.stderr()).to.equal('');
      await waitFor(() => closeCode !== 0, 'the close on the server');
      expect(closeCode).to.equal(1000);
      expect(seen).to.deep.equal(['text:one', 'text:two', 'text:', 'text:thrée', 'text:last without newline']);
    });

    it('--binary sends stdin as binary messages and writes binary messages raw', async () => {
      const url = await echoServer();
      const data = randomBytes(300 * 1024);
      const run = wspipe(['connect', '--binary', url], data);
      expect(await run.exit, run.stderr()).to.equal(0);
      expect(run.stdoutBytes().equals(data)).to.equal(true);
    });

    it('without --binary, a binary message is printed as <binary N bytes>', async () => {
      const { wss, url } = await server((ws) => {
        ws.send(Buffer.from([1, 2, 3]));
        ws.send('then text');
      });
      servers.push(wss);
      const run = wspipe(['connect', url], '');
      expect(await run.exit, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal('<binary 3 bytes>\nthen text\n');
    });

    it('offers --subprotocol values and sends -H headers', async () => {
      const { wss, url } = await server(
        (ws, req) => {
          ws.send(`protocol=${ws.protocol} x-token=${String(req.headers['x-token'])}`);
          ws.pipe(ws);
        },
        { protocols: ['v2.chat'] },
      );
      servers.push(wss);
      const run = wspipe(['connect', '-p', 'v1.chat', '--subprotocol', 'v2.chat', '-H', 'X-Token: abc def', url]);
      await waitFor(() => run.stdout().includes('\n'), 'the first message');
      run.child.stdin!.end();
      expect(await run.exit, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal('protocol=v2.chat x-token=abc def\n');
    });

    it('--echo sends every received message back', async () => {
      const back: Array<string | Buffer> = [];
      const { wss, url } = await server((ws) => {
        ws.on('data', (d: string | Buffer) => {
          back.push(d);
          if (back.length === 2) ws.close(1000, 'done');
        });
        ws.send('hello');
        ws.send(Buffer.from('bin'));
      });
      servers.push(wss);
      const run = wspipe(['connect', '--echo', url]);
      expect(await run.exit, run.stderr()).to.equal(0);
      expect(back).to.deep.equal(['hello', Buffer.from('bin')]);
      expect(run.stdout()).to.equal('hello\n<binary 3 bytes>\n');
    });

    it('exits 1 when the connection is refused', async () => {
      const port = await freePort();
      const run = wspipe(['connect', `ws://127.0.0.1:${port}`], 'unsent\n');
      expect(await run.exit).to.equal(1);
      expect(run.stderr()).to.match(/cannot connect to ws:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    });

    it('exits 1 when the server refuses the handshake', async () => {
      const { wss, url } = await server(() => {}, { verifyClient: () => ({ status: 403, message: 'Forbidden' }) });
      servers.push(wss);
      const run = wspipe(['connect', url], '');
      expect(await run.exit).to.equal(1);
      expect(run.stderr()).to.include('cannot connect');
    });

    it('exits 1 when the connection is dropped or closed with an error code', async () => {
      const { wss, url } = await server((ws) => {
        ws.on('data', (d: string) => (d === 'drop' ? ws.terminate() : ws.close(1011, 'oops')));
      });
      servers.push(wss);
      const dropped = wspipe(['connect', url]);
      const failed = wspipe(['connect', url]);
      dropped.child.stdin!.write('drop\n');
      failed.child.stdin!.write('fail\n');
      expect(await dropped.exit).to.equal(1);
      expect(dropped.stderr()).to.include('closed with 1006');
      expect(await failed.exit).to.equal(1);
      expect(failed.stderr()).to.include('closed with 1011 oops');
    });

    it('--wait: after the end of input, the peer may still answer (and close first)', async () => {
      const { wss, url } = await server((ws) => {
        // A slow answer: without --wait, the client's close (at the end of input) comes first.
        ws.once('data', (d: string) =>
          setTimeout(() => {
            ws.send(`answer to ${d}`);
            ws.close(1000);
          }, 200),
        );
      });
      servers.push(wss);
      const run = wspipe(['connect', '-q', '30', url], 'question\n');
      expect(await run.exit, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal('answer to question\n');
    });

    it('exits 0 when the server closes with 1000', async () => {
      const { wss, url } = await server((ws) => ws.close(1000));
      servers.push(wss);
      const run = wspipe(['connect', url]);
      expect(await run.exit, run.stderr()).to.equal(0);
    });

    it('Ctrl-C (SIGINT) closes with 1000 and exits 0', async () => {
      let closeCode = 0;
      let opened = false;
      const { wss, url } = await server((ws) => {
        opened = true;
        ws.on('close', (code: number) => (closeCode = code));
        ws.resume();
      });
      servers.push(wss);
      const run = wspipe(['connect', url]);
      await waitFor(() => opened, 'the connection');
      run.child.kill('SIGINT');
      expect(await run.exit, run.stderr()).to.equal(0);
      await waitFor(() => closeCode !== 0, 'the close on the server');
      expect(closeCode).to.equal(1000);
    });
  });

  describe('listen', () => {
    it('--echo echoes text and binary; SIGINT closes clients with 1001 and exits 0', async () => {
      const { run, port } = await listen(['--echo']);
      const client = await peer(`ws://127.0.0.1:${port}`);
      client.ws.send('héllo');
      client.ws.send(Buffer.from([0, 1, 2, 255]));
      await waitFor(() => client.got.length === 2, 'the echoes');
      expect(client.got).to.deep.equal(['héllo', Buffer.from([0, 1, 2, 255])]);
      expect(run.stderr()).to.match(/client #1 connected from 127\.0\.0\.1:\d+/);
      run.child.kill('SIGINT');
      expect((await client.closed)[0]).to.equal(1001);
      expect(await run.exit, run.stderr()).to.equal(0);
    });

    it('answers a plain HTTP request with 426', async () => {
      const { port } = await listen(['--echo']);
      const res = await fetch(`http://127.0.0.1:${port}/`);
      expect(res.status).to.equal(426);
      expect(res.headers.get('upgrade')).to.equal('websocket');
    });

    it('--subprotocol picks the server preference among those offered', async () => {
      const { port } = await listen(['--echo', '-p', 'b', '-p', 'a']);
      const client = await peer(`ws://127.0.0.1:${port}`, { protocols: ['a', 'b'] });
      expect(client.ws.protocol).to.equal('b');
    });

    it('--broadcast sends each message to every other client, not back to its sender', async () => {
      const { port } = await listen(['--broadcast']);
      const a = await peer(`ws://127.0.0.1:${port}`);
      const b = await peer(`ws://127.0.0.1:${port}`);
      const c = await peer(`ws://127.0.0.1:${port}`);
      a.ws.send('from a');
      await waitFor(() => b.got.length === 1 && c.got.length === 1, 'the broadcast of a');
      b.ws.send(Buffer.from('from b'));
      await waitFor(() => a.got.length === 1 && c.got.length === 2, 'the broadcast of b');
      expect(a.got).to.deep.equal([Buffer.from('from b')]);
      expect(b.got).to.deep.equal(['from a']);
      expect(c.got).to.deep.equal(['from a', Buffer.from('from b')]);
    });

    it('--exec runs one child per connection, killed when its connection closes', async () => {
      const { port } = await listen(['--exec', 'echo "pid $$"; while read -r line; do echo "$line" | tr a-z A-Z; done']);
      const a = await peer(`ws://127.0.0.1:${port}`);
      const b = await peer(`ws://127.0.0.1:${port}`);
      await waitFor(() => a.got.length === 1 && b.got.length === 1, 'the greetings');
      const pidA = Number(/^pid (\d+)$/.exec(a.got[0] as string)![1]);
      const pidB = Number(/^pid (\d+)$/.exec(b.got[0] as string)![1]);
      expect(pidA).to.not.equal(pidB);
      a.ws.send('hello');
      b.ws.send('world');
      await waitFor(() => a.got.length === 2 && b.got.length === 2, 'the answers');
      expect([a.got[1], b.got[1]]).to.deep.equal(['HELLO', 'WORLD']);
      a.ws.close(1000);
      expect((await a.closed)[0]).to.equal(1000);
      await waitFor(() => !alive(pidA), 'the end of child A');
      expect(alive(pidB)).to.equal(true);
      b.ws.close(1000);
      await b.closed;
      await waitFor(() => !alive(pidB), 'the end of child B');
    });

    it('--exec cat: each text message comes back as a text message', async () => {
      const { port } = await listen(['--exec', 'cat']);
      const client = await peer(`ws://127.0.0.1:${port}`);
      client.ws.send('one');
      await waitFor(() => client.got.length === 1, 'the first line');
      client.ws.send('two\nthree');
      await waitFor(() => client.got.length === 3, 'the next lines');
      expect(client.got).to.deep.equal(['one', 'two', 'three']);
    });

    it('--exec: the child exiting closes the connection (1000 on success, 1011 otherwise)', async () => {
      const { port } = await listen(['--exec', 'read line; echo "got $line"; test "$line" = ok']);
      const good = await peer(`ws://127.0.0.1:${port}`);
      good.ws.send('ok');
      expect(await good.closed).to.deep.equal([1000, '']);
      expect(good.got).to.deep.equal(['got ok']);
      const bad = await peer(`ws://127.0.0.1:${port}`);
      bad.ws.send('not ok');
      expect(await bad.closed).to.deep.equal([1011, 'command exited with 1']);
      expect(bad.got).to.deep.equal(['got not ok']);
    });

    it('--exec --binary: binary messages to the child, its output back as binary messages', async () => {
      const { port } = await listen(['--binary', '--exec', 'head -c 5']);
      const client = await peer(`ws://127.0.0.1:${port}`);
      client.ws.send(Buffer.from([1, 2, 3, 4, 5, 6, 7]));
      expect((await client.closed)[0]).to.equal(1000);
      expect(Buffer.concat(client.got as Buffer[])).to.deep.equal(Buffer.from([1, 2, 3, 4, 5]));
      for (const piece of client.got) expect(Buffer.isBuffer(piece)).to.equal(true);
    });

    it('stdio (default): messages of every client to stdout, stdin lines to every client', async () => {
      const { run, port } = await listen([]);
      const a = await peer(`ws://127.0.0.1:${port}`);
      const b = await peer(`ws://127.0.0.1:${port}`);
      a.ws.send('from a');
      await waitFor(() => run.stdout() === 'from a\n', 'the message on stdout');
      b.ws.send(Buffer.alloc(3));
      await waitFor(() => run.stdout() === 'from a\n<binary 3 bytes>\n', 'the binary line on stdout');
      run.child.stdin!.write('to everyone\nsecond');
      run.child.stdin!.write(' line\n');
      await waitFor(() => a.got.length === 2 && b.got.length === 2, 'the stdin lines');
      expect(a.got).to.deep.equal(['to everyone', 'second line']);
      expect(b.got).to.deep.equal(['to everyone', 'second line']);
      run.child.kill('SIGINT');
      expect((await a.closed)[0]).to.equal(1001);
      expect(await run.exit).to.equal(0);
    });

    it('stdio: stdin waits for the first client', async () => {
      const { run, port } = await listen([]);
      run.child.stdin!.write('early\n');
      await new Promise((r) => setTimeout(r, 100));
      const client = await peer(`ws://127.0.0.1:${port}`);
      await waitFor(() => client.got.length === 1, 'the early line');
      expect(client.got).to.deep.equal(['early']);
    });

    it('exits 1 when the port is taken', async () => {
      const { port } = await listen(['--echo']);
      const second = wspipe(['listen', '--port', String(port), '--echo']);
      expect(await second.exit).to.equal(1);
      expect(second.stderr()).to.match(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    });
  });

  describe('TLS (a certificate made now with openssl)', () => {
    let dir = '';
    let certFile = '';
    let keyFile = '';

    before(function () {
      if (!hasOpenssl()) this.skip();
      const { cert, key } = selfSignedCert();
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-cli-tls-'));
      certFile = path.join(dir, 'cert.pem');
      keyFile = path.join(dir, 'key.pem');
      fs.writeFileSync(certFile, cert);
      fs.writeFileSync(keyFile, key, { mode: 0o600 });
    });

    after(() => {
      if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
    });

    it('listen --cert --key serves wss://; connect --insecure and --ca talk to it, plain connect refuses it', async () => {
      const { run, port } = await listen(['--echo', '--cert', certFile, '--key', keyFile]);
      expect(run.stderr()).to.include(`listening on wss://127.0.0.1:${port}`);
      const insecure = wspipe(['connect', '--insecure', `wss://127.0.0.1:${port}`], 'over tls\n');
      const trusted = wspipe(['connect', '--ca', certFile, `wss://localhost:${port}`], 'trusted\n');
      const refused = wspipe(['connect', `wss://127.0.0.1:${port}`], 'never\n');
      expect(await insecure.exit, insecure.stderr()).to.equal(0);
      expect(insecure.stdout()).to.equal('over tls\n');
      expect(await trusted.exit, trusted.stderr()).to.equal(0);
      expect(trusted.stdout()).to.equal('trusted\n');
      // Without --insecure or --ca, the self-signed certificate is refused.
      expect(await refused.exit).to.equal(1);
      expect(refused.stderr()).to.match(/cannot connect.*self[- ]signed/i);
    });

    it('our client reaches listen over wss:// with the certificate as CA', async () => {
      const { port } = await listen(['--broadcast', '--cert', certFile, '--key', keyFile]);
      const tls = { ca: fs.readFileSync(certFile) };
      const a = await peer(`wss://localhost:${port}`, { tls });
      const b = await peer(`wss://localhost:${port}`, { tls });
      a.ws.send('secret');
      await waitFor(() => b.got.length === 1, 'the broadcast');
      expect(b.got).to.deep.equal(['secret']);
    });
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
