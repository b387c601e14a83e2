/**
 * replay(): the client -> server frames of a log played back against an echo server.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { createServer, Frame, Opcode, WebSocket, WebSocketServer } from '../../lib';
import { FrameLogRecord } from '../../lib/capture/frame-log';
import { replay, replayAll } from '../../lib/capture/replay';

const LOCAL = '127.0.0.1';

function line(fields: Partial<FrameLogRecord> & { opcode: FrameLogRecord['opcode'] }, t = '2024-05-01T12:00:00.000Z'): string {
  return JSON.stringify({ t, dir: 'upstream', fin: true, rsv1: false, rsv2: false, rsv3: false, len: 0, ...fields });
}

function text(s: string, fin = true, opcode: FrameLogRecord['opcode'] = 'text', t?: string): string {
  return line({ opcode, fin, len: Buffer.byteLength(s), text: s }, t);
}

describe('replay', function () {
  this.timeout(10000);
  let server: WebSocketServer;
  let url: string;
  let serverFrames: Frame[];

  beforeEach(async () => {
    serverFrames = [];
    server = createServer({ port: 0, host: LOCAL });
    server.on('connection', (ws: WebSocket) => {
      ws.tap('frames', 'in').on('data', (f: Frame) => serverFrames.push(f));
      ws.on('message', (data: string | Buffer, binary: boolean) => ws.send(data, { binary }));
    });
    await once(server, 'listening');
    url = `ws://${LOCAL}:${server.address()!.port}`;
  });
  afterEach(() => new Promise<void>((resolve) => server.close(resolve)));

  it('plays the upstream frames with their fragmentation, skips the downstream ones, and resolves with the answers', async () => {
    const log = [
      text('Hel', false),
      text('lo', true, 'continuation'),
      JSON.stringify({ ...JSON.parse(text('not sent')), dir: 'downstream' }),
      line({ opcode: 'binary', len: 3, base64: Buffer.from([1, 2, 3]).toString('base64') }),
      line({ opcode: 'ping', len: 4, text: 'ping' }),
      line({ opcode: 'close', len: 6, base64: Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('done')]).toString('base64') }),
    ];
    const result = await replay(log, url);
    expect(result.sent).to.equal(5);
    expect(result.messages).to.deep.equal([
      { binary: false, data: Buffer.from('Hello') },
      { binary: true, data: Buffer.from([1, 2, 3]) },
    ]);
    expect(result.pongs.map(String)).to.deep.equal(['ping']);
    expect(result.code).to.equal(4000);
    expect(serverFrames.map((f) => [f.opcode, f.fin, f.payload.toString('latin1')])).to.deep.equal([
      [Opcode.Text, false, 'Hel'],
      [Opcode.Continuation, true, 'lo'],
      [Opcode.Binary, true, '\x01\x02\x03'],
      [Opcode.Ping, true, 'ping'],
      [Opcode.Close, true, '\x0f\xa0done'],
    ]);
  });

  it('closes with 1000 after the last frame when the log has no close, still collecting the answers', async () => {
    const result = await replay([text('a'), text('b')], url);
    expect(result.messages.map((m) => m.data.toString())).to.deep.equal(['a', 'b']);
    expect(result.code).to.equal(1000);
  });

  it('keeps the original gaps with timing', async () => {
    const log = [text('1', true, 'text', '2024-05-01T12:00:00.000Z'), text('2', true, 'text', '2024-05-01T12:00:00.300Z')];
    const start = Date.now();
    const result = await replay(log, url, { timing: true });
    expect(Date.now() - start).to.be.at.least(290); // a timer never fires early
    expect(result.messages).to.have.length(2);
  });

  it('refuses logs it cannot play: RSV bits, truncated frames', async () => {
    const rsv = line({ opcode: 'text', rsv1: true, len: 1, base64: 'AA==' });
    const truncated = JSON.stringify({ ...JSON.parse(text('ab')), len: 10, truncated: true });
    for (const log of [[rsv], [truncated]]) {
      let err: unknown = null;
      await replay(log, url).catch((e: unknown) => (err = e));
      expect((err as { code: string }).code).to.equal('WS_ERR_INVALID_ARGUMENT');
    }
    const cut = await replay([truncated], url, { allowTruncated: true });
    expect(cut.messages.map((m) => m.data.toString())).to.deep.equal(['ab']);
  });

  it('rejects when the handshake fails', async () => {
    let err: unknown = null;
    await replay([text('x')], `${url.replace(/:\d+$/, ':1')}`).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(Error);
  });

  describe('connections (conn)', () => {
    const tagged = (conn: number, s: string, t?: string): string => JSON.stringify({ ...JSON.parse(text(s, true, 'text', t)), conn });

    it('replayAll plays every connection of the log, each on its own connection, at the same time', async () => {
      let open = 0;
      let most = 0;
      const perConnection: string[][] = [];
      server.on('connection', (ws: WebSocket) => {
        most = Math.max(most, ++open);
        const got: string[] = [];
        perConnection.push(got);
        ws.on('message', (d: string | Buffer) => got.push(String(d)));
        ws.on('close', () => open--);
      });
      // With timing, each connection stays open 200 ms: played one after the other, never two at once.
      const log = [
        tagged(1, 'a1', '2024-05-01T12:00:00.000Z'),
        tagged(2, 'b1', '2024-05-01T12:00:00.000Z'),
        tagged(1, 'a2', '2024-05-01T12:00:00.200Z'),
        tagged(2, 'b2', '2024-05-01T12:00:00.200Z'),
      ];
      const results = await replayAll(log, url, { timing: true });
      expect(results.map((r) => [r.connection, r.frames])).to.deep.equal([[1, 2], [2, 2]]);
      for (const r of results) expect((r.result as { code: number }).code).to.equal(1000);
      expect(results.map((r) => (r.result as { messages: Array<{ data: Buffer }> }).messages.map((m) => String(m.data)))).to.deep.equal([
        ['a1', 'a2'],
        ['b1', 'b2'],
      ]);
      expect(perConnection.map((got) => got.join()).sort()).to.deep.equal(['a1,a2', 'b1,b2']);
      expect(most).to.equal(2);
    });

    it('replay plays the connection asked for, and refuses to guess among several', async () => {
      const log = [tagged(1, 'one'), tagged(2, 'two')];
      const result = await replay(log, url, { connection: 2 });
      expect(result.messages.map((m) => String(m.data))).to.deep.equal(['two']);
      let err: unknown = null;
      await replay(log, url).catch((e: unknown) => (err = e));
      expect((err as Error).message).to.match(/2 connections \(1, 2\)/);
      err = null;
      await replay(log, url, { connection: 3 }).catch((e: unknown) => (err = e));
      expect((err as Error).message).to.match(/no connection 3/);
    });

    it('replayAll reports a connection that cannot be played as an Error and still plays the others', async () => {
      const truncated = JSON.stringify({ ...JSON.parse(tagged(1, 'ab')), len: 10, truncated: true });
      const results = await replayAll([truncated, tagged(2, 'fine')], url);
      expect(results[0]!.result).to.be.instanceOf(Error);
      expect((results[1]!.result as { messages: unknown[] }).messages).to.have.length(1);
    });
  });

  describe('compressed messages (logged inflated)', () => {
    it('sends them as messages, compressed again when the server accepts permessage-deflate', async () => {
      const deflating = createServer({ port: 0, host: LOCAL, perMessageDeflate: true });
      await once(deflating, 'listening');
      const frames: Frame[] = [];
      deflating.on('connection', (ws: WebSocket) => {
        ws.tap('frames', 'in').on('data', (f: Frame) => frames.push(f));
        ws.on('message', (data: string | Buffer, binary: boolean) => ws.send(data, { binary }));
      });
      // Over the client's default threshold (1024 bytes): it compresses.
      const long = 'hello '.repeat(400);
      const inflated = line({ opcode: 'text', rsv1: true, len: long.length, text: long, inflated: true, wireLen: 30, frames: 1 });
      const plain = text('plain');
      try {
        const result = await replay([inflated, plain], `ws://${LOCAL}:${deflating.address()!.port}`);
        expect(result.messages.map((m) => String(m.data))).to.deep.equal([long, 'plain']);
        const data = frames.filter((f) => f.opcode !== Opcode.Close);
        expect(data.map((f) => [f.opcode, f.rsv1])).to.deep.equal([
          [Opcode.Text, true],
          [Opcode.Text, false],
        ]);
      } finally {
        await new Promise<void>((resolve) => deflating.close(resolve));
      }
    });

    it('sends them uncompressed to a server without permessage-deflate', async () => {
      const inflated = line({ opcode: 'binary', rsv1: true, len: 3, base64: 'AQID', inflated: true, wireLen: 5, frames: 2 });
      const result = await replay([inflated], url);
      expect(result.messages).to.deep.equal([{ binary: true, data: Buffer.from([1, 2, 3]) }]);
      expect(serverFrames.filter((f) => f.opcode === Opcode.Binary).map((f) => f.rsv1)).to.deep.equal([false]);
    });
  });
});
