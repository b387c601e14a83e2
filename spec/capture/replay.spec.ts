/**
 * replay(): the client -> server frames of a log played back against an echo server.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { createServer, Frame, Opcode, WebSocket, WebSocketServer } from '../../lib';
import { FrameLogRecord } from '../../lib/capture/frame-log';
import { replay } from '../../lib/capture/replay';

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
});
