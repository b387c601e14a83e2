/**
 * Messages as streams: bounded memory end to end, backpressure both ways, nothing lost.
 */
import { expect } from 'chai';
import { createHash, randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable as NodeReadable, Writable as NodeWritable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { connect, createServer, MessageReadable, WebSocket, WebSocketServer } from '../../lib';

const MiB = 1024 * 1024;

async function serverAndUrl(options = {}): Promise<{ server: WebSocketServer; url: string }> {
  const server = createServer({ port: 0, host: '127.0.0.1', ...options });
  await once(server, 'listening');
  return { server, url: `ws://127.0.0.1:${server.address()!.port}` };
}

/** A Readable that makes `total` pseudo-random bytes lazily, counting what was pulled from it. */
function generator(total: number, chunk = 64 * 1024): NodeReadable & { produced: number; hash: () => string } {
  const hash = createHash('sha256');
  let produced = 0;
  const block = randomFillSync(Buffer.alloc(chunk));
  const stream = new NodeReadable({
    highWaterMark: chunk,
    read() {
      if (produced >= total) {
        this.push(null);
        return;
      }
      const n = Math.min(chunk, total - produced);
      const piece = Buffer.from(block.subarray(0, n));
      piece.writeUInt32LE(produced >>> 0, 0); // every chunk differs, so order matters
      hash.update(piece);
      produced += n;
      this.push(piece);
    },
  }) as NodeReadable & { produced: number; hash: () => string };
  Object.defineProperty(stream, 'produced', { get: () => produced });
  stream.hash = () => hash.digest('hex');
  return stream;
}

function firstStream(ws: WebSocket): Promise<MessageReadable> {
  return new Promise((resolve) => ws.once('message', (m: MessageReadable) => resolve(m)));
}

describe('messages as streams (bulk transfer)', function () {
  this.timeout(60000);

  let server: WebSocketServer;
  let url: string;
  afterEach((done) => {
    server.close(() => done());
  });

  it('delivers a message as a stream before it has ended, with its kind known at the start', async () => {
    ({ server, url } = await serverAndUrl({ streamMessages: true }));
    const accepted = once(server, 'connection') as Promise<[WebSocket]>;
    const client = connect(url);
    await once(client, 'open');
    const [ws] = await accepted;
    const out = client.createMessageStream({ binary: false });
    out.write('first part, ');
    const stream = await firstStream(ws);
    expect(stream.binary).to.equal(false);
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    expect(chunk.toString()).to.equal('first part, ');
    out.end('second part');
    const rest: Buffer[] = [];
    for await (const c of stream) rest.push(c as Buffer);
    expect(Buffer.concat(rest).toString()).to.equal('second part');
    client.close();
    await once(client, 'close');
  });

  it('sends a file as ONE message from fs.createReadStream().pipe(createMessageStream())', async () => {
    ({ server, url } = await serverAndUrl());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-'));
    const file = path.join(dir, 'data.bin');
    fs.writeFileSync(file, randomFillSync(Buffer.alloc(5 * MiB + 123)));
    const received = new Promise<[Buffer, boolean]>((resolve) =>
      server.once('connection', (ws: WebSocket) => ws.once('message', (d: Buffer, b: boolean) => resolve([d, b]))),
    );
    const client = connect(url);
    await once(client, 'open');
    await pipeline(fs.createReadStream(file), client.createMessageStream({ binary: true }));
    const [data, isBinary] = await received;
    expect(isBinary).to.equal(true);
    expect(data.equals(fs.readFileSync(file))).to.equal(true);
    client.close();
    fs.rmSync(dir, { recursive: true });
  });

  it('256 MiB to a receiver that stops reading: bounded buffers, then every byte in order', async () => {
    // The receiver's buffers are bounded by its memory budget (a full reader alone does not stop
    // reading: control frames must still be read).
    const budget = 2 * MiB;
    ({ server, url } = await serverAndUrl({ streamMessages: true, memoryBudget: budget }));
    const accepted = once(server, 'connection') as Promise<[WebSocket]>;
    const client = connect(url);
    await once(client, 'open');
    const [ws] = await accepted;
    const total = 256 * MiB;
    const source = generator(total);
    const sending = pipeline(source, client.createMessageStream({ binary: true }));
    const stream = await firstStream(ws);
    // The receiver does not read for a while: everything in between must stop growing.
    await new Promise((r) => setTimeout(r, 1500));
    const inFlight = source.produced;
    expect(inFlight).to.be.lessThan(32 * MiB, 'the sender kept reading its source although nobody read');
    expect(stream.readableLength).to.be.at.most(budget + 64 * 1024);
    expect(ws.heldBytes).to.be.at.most(budget + 64 * 1024);
    const hash = createHash('sha256');
    let got = 0;
    await pipeline(
      stream,
      new NodeWritable({
        write(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          got += chunk.length;
          cb();
        },
      }),
    );
    await sending;
    expect(got).to.equal(total);
    expect(hash.digest('hex')).to.equal(source.hash());
    client.close();
  });

  it('a slow reader pauses the file stream that feeds the sender', async () => {
    ({ server, url } = await serverAndUrl({ streamMessages: true }));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-'));
    const file = path.join(dir, 'big.bin');
    fs.writeFileSync(file, Buffer.alloc(64 * MiB, 7));
    const accepted = once(server, 'connection') as Promise<[WebSocket]>;
    const client = connect(url);
    await once(client, 'open');
    const [ws] = await accepted;
    const fileStream = fs.createReadStream(file);
    const sending = pipeline(fileStream, client.createMessageStream());
    const stream = await firstStream(ws);
    let received = 0;
    let maxAhead = 0;
    // Read 256 KiB every 20 ms: about 12 MiB/s, far slower than loopback.
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        let chunk: Buffer | null;
        let budget = 256 * 1024;
        while (budget > 0 && (chunk = stream.read() as Buffer | null) !== null) {
          received += chunk.length;
          budget -= chunk.length;
        }
        maxAhead = Math.max(maxAhead, fileStream.bytesRead - received);
        if (received >= 16 * MiB) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
      stream.once('error', reject);
    });
    expect(maxAhead).to.be.lessThan(24 * MiB, 'the file was read ahead into memory');
    stream.resume();
    await once(stream, 'end');
    await sending;
    client.close();
    fs.rmSync(dir, { recursive: true });
  });

  it('pongs and a close get through while a long message is being streamed out', async () => {
    ({ server, url } = await serverAndUrl({ streamMessages: true }));
    const accepted = once(server, 'connection') as Promise<[WebSocket]>;
    const client = connect(url);
    await once(client, 'open');
    const [ws] = await accepted;
    const out = client.createMessageStream();
    out.write(Buffer.alloc(1024));
    const stream = await firstStream(ws);
    stream.resume();
    // The message is open (no FIN yet); the server pings and must get its pong now.
    ws.ping('are you there');
    const [pong] = (await once(ws, 'pong')) as [Buffer];
    expect(pong.toString()).to.equal('are you there');
    out.write(Buffer.alloc(1024));
    // The server closes in the middle of the message: the client hears it at once.
    const clientClosed = new Promise<number>((resolve) => client.once('close', (code: number) => resolve(code)));
    ws.close(4002, 'enough');
    expect(await clientClosed).to.equal(4002);
    // The unfinished message ends with an error on the receiving side, not as complete.
    const ended = await new Promise<string>((resolve) => {
      stream.once('end', () => resolve('end'));
      stream.once('close', () => resolve('close'));
    });
    expect(ended).to.equal('close');
    out.destroy();
  });

  it('whole messages written while a streamed one is open wait until it ends (no interleaving)', async () => {
    ({ server, url } = await serverAndUrl());
    const got: Array<string | Buffer> = [];
    const done = new Promise<void>((resolve) =>
      server.once('connection', (ws: WebSocket) =>
        ws.on('message', (d: string | Buffer) => {
          got.push(d);
          if (got.length === 2) resolve();
        }),
      ),
    );
    const client = connect(url);
    await once(client, 'open');
    const out = client.createMessageStream({ binary: false });
    out.write('streamed ');
    client.send('whole');
    out.end('message');
    await done;
    expect(got).to.deep.equal(['streamed message', 'whole']);
    client.close();
  });
  it('a streamed message that ends while its reader is behind does not stop the socket for good (the close after it gets through)', async () => {
    ({ server, url } = await serverAndUrl({ streamMessages: true, closeTimeout: 3000 }));
    const chunk = 64 * 1024;
    const chunks = 16;
    // The receiving side as examples/file-transfer.ts has it: the first message, written out by
    // a reader slower than the socket, then a close from the server. If the server had stopped
    // reading for good, it would never see the client's close echo: closeTimeout would destroy
    // the socket and the server would report 1006.
    const serverSide = new Promise<{ bytes: number; code: number }>((resolve) =>
      server.once('connection', (ws: WebSocket) => {
        ws.once('message', (stream: MessageReadable) => {
          let bytes = 0;
          const slow = new NodeWritable({
            highWaterMark: 16 * 1024,
            write(data: Buffer, _enc, cb) {
              bytes += data.length;
              setTimeout(cb, 1);
            },
          });
          void pipeline(stream, slow).then(() => {
            ws.once('close', (code: number) => resolve({ bytes, code }));
            ws.close(1000, 'got it');
          });
        });
      }),
    );
    const client = connect(url);
    await once(client, 'open');
    const clientClosed = once(client, 'close');
    const out = client.createMessageStream({ binary: true });
    for (let i = 0; i < chunks; i++) out.write(Buffer.alloc(chunk, i));
    out.end();
    const { bytes, code } = await serverSide;
    expect(bytes).to.equal(chunk * chunks);
    expect(code).to.equal(1000);
    expect((await clientClosed)[0]).to.equal(1000);
  });
});
