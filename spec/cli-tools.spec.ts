/**
 * The command line's rough edges, as a websocat user meets them (the built binary): answers
 * after the end of input, JSON-lines output, multi-line messages, one-line usage errors, wss://
 * to a plain port, --origin, --no-deflate, --ping-interval, --one-message, client
 * certificates, and `wspipe bridge` between a WebSocket and TCP both ways.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { connect, createServer, ServerOptions, WebSocket } from '../lib';
import { ensureBuilt, killAll, listeningPort, wspipe } from './helpers/cli';
import { hasOpenssl, selfSignedCert } from './helpers/tls';

const LOCAL = '127.0.0.1';

describe('wspipe command line: connect, listen and bridge details', function () {
  this.timeout(30000);
  const closers: Array<() => Promise<unknown>> = [];

  before(function () {
    this.timeout(180000);
    ensureBuilt();
  });
  afterEach(async () => {
    killAll();
    while (closers.length > 0) await closers.pop()!();
  });

  async function server(onConnection: (ws: WebSocket, req: http.IncomingMessage) => void, options: ServerOptions = {}): Promise<string> {
    const wss = createServer({ port: 0, host: LOCAL, ...options });
    wss.on('connection', onConnection);
    await once(wss, 'listening');
    closers.push(() => new Promise<void>((r) => wss.close(() => r())));
    return `ws://${LOCAL}:${wss.address()!.port}`;
  }

  async function tcpServer(onSocket: (socket: net.Socket) => void): Promise<number> {
    const srv = net.createServer(onSocket);
    srv.listen(0, LOCAL);
    await once(srv, 'listening');
    closers.push(() => new Promise<void>((r) => srv.close(() => r())));
    return (srv.address() as net.AddressInfo).port;
  }

  describe('connect', () => {
    it('prints what a slow server answers after the end of input, then closes with 1000', async () => {
      // The server's side of the close, awaited: the process may exit before it is seen.
      let closed: (code: number) => void = () => undefined;
      const closeCode = new Promise<number>((resolve) => (closed = resolve));
      const url = await server((ws) => {
        ws.on('data', (d: string) => setTimeout(() => ws.readyState === 1 && ws.send(`slow answer to ${d}`), 300));
        ws.on('close', (code: number) => closed(code));
      });
      const run = wspipe(['connect', url], 'question\n');
      expect(await run.closed, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal('slow answer to question\n');
      expect(await closeCode).to.equal(1000);
    });

    it('--quiet 0 closes at once at the end of input (as before)', async () => {
      const url = await server((ws) => ws.on('data', (d: string) => setTimeout(() => ws.readyState === 1 && ws.send(`late ${d}`), 300)));
      const run = wspipe(['connect', '--quiet', '0', url], 'q\n');
      expect(await run.closed, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal('');
    });

    it('a text message with line breaks stays one line; --json writes one JSON object per message', async () => {
      const url = await server((ws) => {
        ws.send('line one\nline two\r\nthree');
        ws.send(Buffer.from([1, 2, 3]));
        ws.close(1000);
      });
      const plain = wspipe(['connect', url], '');
      const json = wspipe(['connect', '--json', url], '');
      expect(await plain.closed, plain.stderr()).to.equal(0);
      expect(plain.stdout()).to.equal('line one\\nline two\\nthree\n<binary 3 bytes>\n');
      expect(await json.closed, json.stderr()).to.equal(0);
      const records = json.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.map(({ t: _t, ...rest }) => rest)).to.deep.equal([
        { type: 'text', data: 'line one\nline two\r\nthree' },
        { type: 'binary', base64: 'AQID' },
      ]);
      expect(Number.isNaN(Date.parse(records[0]!.t as string))).to.equal(false);
    });

    it('--origin, --no-deflate and --ping-interval reach the server', async () => {
      const seen: Array<{ origin: string | undefined; extensions: string | undefined }> = [];
      let pinged = false;
      const url = await server((ws, req) => {
        seen.push({ origin: req.headers.origin, extensions: req.headers['sec-websocket-extensions'] as string | undefined });
        ws.on('ping', () => {
          pinged = true;
          ws.close(1000);
        });
      });
      const run = wspipe(['connect', '--origin', 'https://example.test', '--no-deflate', '--ping-interval', '0.2', url]);
      expect(await run.closed, run.stderr()).to.equal(0);
      expect(pinged).to.equal(true);
      const offered = wspipe(['connect', url], '');
      expect(await offered.closed).to.equal(0);
      expect(seen[0]).to.deep.equal({ origin: 'https://example.test', extensions: undefined });
      expect(seen[1]!.extensions).to.match(/permessage-deflate/);
    });

    it('--one-message sends all of stdin as one message and prints the first answer', async () => {
      const got: string[] = [];
      const url = await server((ws) =>
        ws.on('data', (d: string) => {
          got.push(d);
          ws.send(`1:${d}`);
          ws.send('2: not printed');
        }),
      );
      const run = wspipe(['connect', '--one-message', url], 'a\nb\nc\n');
      expect(await run.closed, run.stderr()).to.equal(0);
      expect(got).to.deep.equal(['a\nb\nc']);
      expect(run.stdout()).to.equal('1:a\\nb\\nc\n');
    });

    it('wss:// to a plain port fails at once and says the server does not speak TLS', async () => {
      const url = await server(() => {});
      const started = Date.now();
      const run = wspipe(['connect', url.replace('ws:', 'wss:')], '');
      expect(await run.closed).to.equal(1);
      expect(Date.now() - started).to.be.below(8000); // the handshake timeout is 10 s
      expect(run.stderr()).to.match(/does not speak TLS on this port .*: is it ws:\/\/127\.0\.0\.1:\d+\?/);
    });

    it('--cert/--key present a client certificate', async function () {
      if (!hasOpenssl()) this.skip();
      const { key, cert } = selfSignedCert();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-client-cert-'));
      closers.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
      fs.writeFileSync(path.join(dir, 'key.pem'), key);
      fs.writeFileSync(path.join(dir, 'cert.pem'), cert);
      const web = https.createServer({ key, cert, ca: [cert], requestCert: true, rejectUnauthorized: true });
      const wss = createServer({ server: web as unknown as http.Server });
      wss.on('connection', (ws: WebSocket, req: http.IncomingMessage) => {
        const socket = req.socket as tls.TLSSocket;
        ws.send(`authorized=${socket.authorized} cn=${String(socket.getPeerCertificate().subject?.CN)}`);
        ws.close(1000);
      });
      web.listen(0, LOCAL);
      await once(web, 'listening');
      closers.push(() => new Promise<void>((r) => web.close(() => r())));
      const port = (web.address() as net.AddressInfo).port;
      const files = ['--ca', path.join(dir, 'cert.pem'), '--cert', path.join(dir, 'cert.pem'), '--key', path.join(dir, 'key.pem')];
      const run = wspipe(['connect', ...files, `wss://localhost:${port}`], '');
      expect(await run.closed, run.stderr()).to.equal(0);
      expect(run.stdout()).to.equal('authorized=true cn=localhost\n');
      const without = wspipe(['connect', '--ca', path.join(dir, 'cert.pem'), `wss://localhost:${port}`], '');
      expect(await without.closed).to.equal(1);
    });
  });

  describe('usage errors', () => {
    it('exit 2 with one line on stderr', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['frobnicate'], /^wspipe: unknown command 'frobnicate' \(one of .*bridge.*\)$/],
        [[], /^wspipe: a command is required/],
        [['connect'], /^wspipe connect: a URL is required \(see 'wspipe connect --help'\)$/],
        [['connect', '--quiet', 'x', 'ws://h'], /bad --quiet 'x'/],
        [['connect', '--cert', 'c.pem', 'wss://h'], /--cert and --key go together/],
        [['listen', '--port', '0', '--json', '--echo'], /--json is for the default stdio mode/],
        [['replay', 'f.ndjson', '--connection', 'x'], /--connection must be a number/],
        [['replay', 'f.ndjson', '--to', 'http://h'], /--to needs a ws:\/\/ or wss:\/\/ URL/],
        [['bridge', 'ws://h'], /a ws:\/\/ URL and a tcp:HOST:PORT are required/],
        [['bridge', 'ws://h', 'udp:h:1'], /expected tcp:HOST:PORT, not 'udp:h:1'/],
        [['proxy', '--port', '0', '--to', 'ws://h', '--forwarded', 'maybe'], /unknown --forwarded 'maybe'/],
      ];
      const runs = cases.map(([args]) => wspipe(args, ''));
      for (const [i, [args, message]] of cases.entries()) {
        expect(await runs[i]!.closed, args.join(' ')).to.equal(2);
        const err = runs[i]!.stderr();
        expect(err.endsWith('\n') && err.indexOf('\n') === err.length - 1, `${args.join(' ')}: ${err}`).to.equal(true);
        expect(err.trim(), args.join(' ')).to.match(message);
      }
    });
  });

  describe('listen --json', () => {
    it('writes each message as a JSON line with the client number', async () => {
      const run = wspipe(['listen', '--port', '0', '--json']);
      const port = await listeningPort(run);
      const ws = connect(`ws://${LOCAL}:${port}`);
      await once(ws, 'open');
      ws.send('two\nlines');
      ws.send(Buffer.from([9]));
      const until = Date.now() + 10000;
      while (run.stdout().split('\n').length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      ws.close(1000);
      await once(ws, 'close');
      run.child.kill('SIGINT');
      expect(await run.closed).to.equal(0);
      const records = run.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.map(({ t: _t, ...rest }) => rest)).to.deep.equal([
        { client: 1, type: 'text', data: 'two\nlines' },
        { client: 1, type: 'binary', base64: 'CQ==' },
      ]);
    });
  });

  describe('bridge', () => {
    it('as a client: TCP bytes go to the WebSocket and back, with backpressure; the TCP end closes with 1000', async () => {
      // The server's side of the close, awaited: the bridge's process may exit before it is seen.
      let closed: (code: number) => void = () => undefined;
      const closeCode = new Promise<number>((resolve) => (closed = resolve));
      const url = await server((ws) => {
        ws.on('message', (d: Buffer, binary: boolean) => ws.send(d, { binary }));
        ws.on('close', (code: number) => closed(code));
      });
      const data = randomBytes(4 * 1024 * 1024);
      const back: Buffer[] = [];
      let total = 0;
      const tcpPort = await tcpServer((socket) => {
        socket.on('data', (chunk: Buffer) => {
          back.push(chunk);
          total += chunk.length;
          if (total === data.length) socket.end();
        });
        socket.write(data);
      });
      const run = wspipe(['bridge', url, `tcp:${LOCAL}:${tcpPort}`]);
      expect(await run.closed, run.stderr()).to.equal(0);
      expect(Buffer.concat(back).equals(data)).to.equal(true);
      expect(await closeCode).to.equal(1000);
    });

    it('a TCP side that does not read holds the WebSocket peer back (backpressure), not the bridge\'s memory', async function () {
      if (!fs.existsSync('/proc/self/status')) this.skip();
      const MiB = 1024 * 1024;
      let sender: WebSocket | null = null;
      const url = await server((ws) => (sender = ws));
      const sockets: net.Socket[] = [];
      const tcpPort = await tcpServer((socket) => {
        socket.pause(); // reads nothing
        sockets.push(socket);
      });
      const run = wspipe(['bridge', url, `tcp:${LOCAL}:${tcpPort}`]);
      const until = Date.now() + 10000;
      while ((sender === null || sockets.length === 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      const ws = sender! as WebSocket;
      const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${run.child.pid}/status`, 'utf8'))![1]) * 1024;
      const before = rss();
      for (let i = 0; i < 128; i++) ws.send(Buffer.alloc(MiB, i));
      // Let everything that can move move (bounded: 10 s).
      let last = -1;
      for (let i = 0, still = 0; i < 500 && still < 10; i++) {
        await new Promise((r) => setTimeout(r, 20));
        still = ws.bufferedAmount === last ? still + 1 : 0;
        last = ws.bufferedAmount;
      }
      expect(ws.bufferedAmount).to.be.above(64 * MiB); // held at the sender: backpressure reached it
      expect(rss() - before).to.be.below(48 * MiB);
      ws.terminate();
      for (const socket of sockets) socket.destroy();
      await run.closed;
    });

    it('as a server (--port): each WebSocket client gets its own TCP connection', async () => {
      const tcpPort = await tcpServer((socket) => {
        socket.setEncoding('utf8');
        socket.on('data', (text: string) => socket.write(text.toUpperCase()));
      });
      const run = wspipe(['bridge', '--port', '0', `tcp:${LOCAL}:${tcpPort}`]);
      const port = await listeningPort(run);
      const clients = [connect(`ws://${LOCAL}:${port}`), connect(`ws://${LOCAL}:${port}`)];
      const answers = await Promise.all(
        clients.map(async (ws, i) => {
          await once(ws, 'open');
          ws.send(`client ${i}`);
          const [data] = (await once(ws, 'message')) as [Buffer];
          ws.close(1000);
          await once(ws, 'close');
          return data.toString();
        }),
      );
      expect(answers).to.deep.equal(['CLIENT 0', 'CLIENT 1']);
      run.child.kill('SIGINT');
      expect(await run.closed).to.equal(0);
    });

    it('a TCP server that cannot be reached closes the WebSocket with 1014 and exits 1', async () => {
      let closed: [number, string] | null = null;
      const url = await server((ws) => ws.on('close', (code: number, reason: string) => (closed = [code, reason])));
      // A port nothing listens on: listened on, then closed.
      const probe = net.createServer().listen(0, LOCAL);
      await once(probe, 'listening');
      const free = (probe.address() as net.AddressInfo).port;
      await new Promise<void>((r) => probe.close(() => r()));
      const run = wspipe(['bridge', url, `tcp:${LOCAL}:${free}`]);
      expect(await run.closed).to.equal(1);
      expect(run.stderr()).to.match(/ECONNREFUSED/);
      const until = Date.now() + 5000;
      while (closed === null && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(closed).to.deep.equal([1014, 'cannot reach the TCP server']);
    });
  });
});
