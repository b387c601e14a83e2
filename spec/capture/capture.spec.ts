/**
 * ConnectionCapture: records and messages of a proxied connection, compressed traffic shown
 * inflated beside its wire facts, and the per-frame limit said, never silent.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { connect, createServer, WebSocket, WebSocketServer } from '../../lib';
import { CapturedClose, CapturedMessage, ConnectionCapture } from '../../lib/capture/capture';
import { FrameLogRecord, parseFrameLogLine } from '../../lib/capture/frame-log';
import { ProxyConnection, WebSocketProxy, createProxy } from '../../lib/proxy/proxy';

const LOCAL = '127.0.0.1';

interface Captured {
  records: FrameLogRecord[];
  messages: CapturedMessage[];
  closed: Promise<CapturedClose>;
}

describe('ConnectionCapture', function () {
  this.timeout(10000);
  let server: WebSocketServer;
  let proxy: WebSocketProxy;
  let proxyUrl: string;
  let captures: Captured[];

  async function setUp(serverOptions: object, proxyOptions: object = {}, maxLoggedPayload?: number): Promise<void> {
    server = createServer({ port: 0, host: LOCAL, ...serverOptions });
    server.on('connection', (ws: WebSocket) => ws.on('message', (d: string | Buffer, binary: boolean) => ws.send(d, { binary })));
    await once(server, 'listening');
    proxy = createProxy({ target: `ws://${LOCAL}:${server.address()!.port}`, port: 0, host: LOCAL, ...proxyOptions });
    await once(proxy, 'listening');
    proxyUrl = `ws://${LOCAL}:${proxy.address()!.port}`;
    captures = [];
    let id = 0;
    proxy.on('connection', (conn: ProxyConnection) => {
      const capture = new ConnectionCapture(conn, ++id, { maxLoggedPayload });
      const c: Captured = { records: [], messages: [], closed: once(capture, 'close').then(([close]) => close as CapturedClose) };
      capture.on('record', (r) => c.records.push(r));
      capture.on('message', (m) => c.messages.push(m));
      captures.push(c);
    });
  }

  afterEach(async () => {
    await new Promise<void>((resolve) => proxy.close(resolve));
    await new Promise<void>((resolve) => server.close(resolve));
  });

  async function session(clientOptions: object, send: (ws: WebSocket) => void, answers: number): Promise<WebSocket> {
    const ws = connect(proxyUrl, clientOptions);
    await once(ws, 'open');
    let got = 0;
    const all = new Promise<void>((resolve) => ws.on('message', () => ++got === answers && resolve()));
    send(ws);
    await all;
    ws.close(1000, 'bye');
    await once(ws, 'close');
    return ws;
  }

  it('records every frame with the connection number, and each data message', async () => {
    await setUp({});
    await session({}, (ws) => {
      ws.send('hello');
      ws.send(Buffer.from([1, 2, 3]));
    }, 2);
    const c = captures[0]!;
    const close = await c.closed;
    expect(close.client.code).to.equal(1000);
    expect(c.records.every((r) => r.conn === 1)).to.equal(true);
    const way = (dir: string): string[] => c.records.filter((r) => r.dir === dir).map((r) => `${r.opcode} ${r.text ?? r.base64}`);
    expect(way('upstream')).to.deep.equal(['text hello', 'binary AQID', 'close A+hieWU=']);
    expect(way('downstream')).to.deep.equal(['text hello', 'binary AQID', 'close A+hieWU=']); // our server echoes the code and the reason
    expect(c.messages.filter((m) => m.dir === 'upstream').map((m) => [m.data.toString('latin1'), m.size, m.compressed])).to.deep.equal([
      ['hello', 5, false],
      ['\x01\x02\x03', 3, false],
    ]);
    expect(c.messages.filter((m) => m.dir === 'downstream')).to.have.length(2);
  });

  it('permessage-deflate: a compressed message is one record, inflated, with rsv1, wireLen and frames', async () => {
    await setUp({ perMessageDeflate: { threshold: 0 } });
    const text = 'compress me, compress me, compress me! '.repeat(50);
    const big = Buffer.alloc(5000, 0x61);
    await session({ perMessageDeflate: { threshold: 0 }, fragmentSize: 16 }, (ws) => {
      ws.send(text);
      ws.send(big);
    }, 2);
    const c = captures[0]!;
    await c.closed;
    const data = c.records
      .filter((r) => r.opcode === 'text' || r.opcode === 'binary' || r.opcode === 'continuation')
      .sort((a, b) => (a.dir === b.dir ? 0 : a.dir === 'upstream' ? -1 : 1));
    expect(data.map((r) => [r.dir, r.opcode, r.inflated, r.rsv1, r.len])).to.deep.equal([
      ['upstream', 'text', true, true, text.length],
      ['upstream', 'binary', true, true, 5000],
      ['downstream', 'text', true, true, text.length],
      ['downstream', 'binary', true, true, 5000],
    ]);
    const up = data[0]!;
    expect(up.text).to.equal(text);
    expect(up.wireLen).to.be.below(text.length);
    // The client cut its compressed payload into 16-byte frames.
    expect(up.frames).to.equal(Math.ceil(up.wireLen! / 16));
    expect(Buffer.from(data[1]!.base64!, 'base64').equals(big)).to.equal(true);
    const sizes = c.messages.map((m) => [m.compressed, m.size, m.wireSize < m.size] as const).sort((a, b) => a[1] - b[1]);
    expect(sizes).to.deep.equal([
      [true, text.length, true],
      [true, text.length, true],
      [true, 5000, true],
      [true, 5000, true],
    ]);
    // The lines read back: the inflated message, marked compressed.
    const entry = parseFrameLogLine(JSON.stringify(up));
    if (entry instanceof Error) throw entry;
    expect(entry.compressed).to.equal(true);
    expect(entry.frame.rsv1).to.equal(false);
    expect(entry.frame.payload.toString()).to.equal(text);
    expect(entry.conn).to.equal(1);
  });

  it('stripDeflate: nothing is compressed, every frame is readable', async () => {
    await setUp({ perMessageDeflate: { threshold: 0 } }, { stripDeflate: true });
    await session({ perMessageDeflate: { threshold: 0 } }, (ws) => ws.send('plain please'), 1);
    const c = captures[0]!;
    await c.closed;
    const texts = c.records.filter((r) => r.opcode === 'text');
    expect(texts.map((r) => [r.rsv1, r.inflated, r.text])).to.deep.equal([
      [false, undefined, 'plain please'],
      [false, undefined, 'plain please'],
    ]);
  });

  it('a payload over the limit is cut and says so, in the record and in the message', async () => {
    await setUp({}, {}, 10);
    await session({}, (ws) => ws.send('0123456789abcdef'), 1);
    const c = captures[0]!;
    await c.closed;
    const up = c.records.find((r) => r.opcode === 'text')!;
    expect([up.text, up.len, up.truncated]).to.deep.equal(['0123456789', 16, true]);
    expect([c.messages[0]!.data.toString(), c.messages[0]!.size, c.messages[0]!.truncated]).to.deep.equal(['0123456789', 16, true]);
  });
});
