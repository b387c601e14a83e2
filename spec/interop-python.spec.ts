/**
 * Interop with python-websockets (10.x, Debian's python3-websockets for /usr/bin/python3), both
 * directions: its client against our server (spec/fixtures/py_client.py, driven by JSON lines
 * on stdin) and its server against our client (spec/fixtures/py_server.py, reporting on stdout).
 * Without python-websockets the suite is skipped locally and fails on CI (requirePeer).
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { connect, WebSocket } from '../lib';
import {
  JsonLinesProcess,
  NON_ASCII_TEXT,
  PeerServer,
  findPython,
  newId,
  payload,
  requirePeer,
  sha256,
  startPeerServer,
  startPython,
} from './helpers/peers';

const MIB = 1024 * 1024;
const BINARY_SIZES = [0, 125, 126, 65535, 65536, MIB + 1, 4 * MIB];
/** Over 1 MiB of UTF-8 text: python-websockets' default max_size, raised by the fixtures. */
const LONG_TEXT_UNIT = 'aé€😀';
const LONG_TEXT_REPEAT = 110000;
const LONG_TEXT = LONG_TEXT_UNIT.repeat(LONG_TEXT_REPEAT);

interface Described {
  binary: boolean;
  length: number;
  sha256: string;
  text?: string;
  intact?: boolean;
}

function described(data: string | Buffer): Described {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const out: Described = { binary: typeof data !== 'string', length: bytes.length, sha256: sha256(bytes) };
  if (typeof data === 'string' && data.length <= 256) out.text = data;
  return out;
}

describe('interop with python-websockets', function () {
  this.timeout(30000);
  let python = '';

  before(function () {
    python = requirePeer(this, findPython());
  });

  describe('our server, python client', () => {
    let server: PeerServer;
    let fragmenting: PeerServer;
    let deflating: PeerServer;
    let client: JsonLinesProcess;
    let commandId = 0;

    /** Runs one case of py_client.py and returns its result line (failing on ok: false). */
    async function run(command: Record<string, unknown>): Promise<Record<string, unknown>> {
      commandId += 1;
      const id = commandId;
      client.send({ id, ...command });
      const line = await client.next((l) => l.id === id);
      expect(line.error, 'python client').to.equal(undefined);
      expect(line.ok).to.equal(true);
      return line;
    }

    before(async () => {
      server = await startPeerServer();
      fragmenting = await startPeerServer({ server: { fragmentSize: 4096 } });
      deflating = await startPeerServer({ server: { perMessageDeflate: true } });
      client = startPython(python, 'py_client.py');
      await client.next((l) => l.event === 'ready');
    });

    after(async () => {
      await client?.stop();
      await server?.close();
      await fragmenting?.close();
      await deflating?.close();
    });

    it('echoes text with non-ASCII characters, and over 1 MiB of text', async () => {
      const id = newId('py-text');
      const result = await run({
        case: 'echo',
        url: `${server.url}/echo?id=${id}`,
        messages: [{ text: NON_ASCII_TEXT }, { text: LONG_TEXT_UNIT, repeat: LONG_TEXT_REPEAT }],
      });
      expect(Buffer.byteLength(LONG_TEXT)).to.be.above(MIB);
      expect(result.received).to.deep.equal([
        { ...described(NON_ASCII_TEXT), intact: true },
        { ...described(LONG_TEXT), intact: true },
      ]);
      const record = await server.connection(id);
      expect(record.messages).to.deep.equal([described(NON_ASCII_TEXT), described(LONG_TEXT)]);
      expect(await record.closed).to.deep.equal({ code: 1000, reason: '' });
    });

    it(`echoes binary of ${BINARY_SIZES.join(', ')} bytes`, async () => {
      const id = newId('py-binary');
      const result = await run({
        case: 'echo',
        url: `${server.url}/echo?id=${id}`,
        messages: BINARY_SIZES.map((size) => ({ size, seed: size % 251 })),
      });
      const expected = BINARY_SIZES.map((size) => described(payload(size, size % 251)));
      expect(result.received).to.deep.equal(expected.map((d) => ({ ...d, intact: true })));
      expect((await server.connection(id)).messages).to.deep.equal(expected);
    });

    it('reassembles a text message python sends as fragments from an async iterator', async () => {
      const id = newId('py-frag-text');
      const pieces = ['Hel', 'lo, ', 'wörld ', '😀', ''];
      const result = await run({ case: 'fragmented', url: `${server.url}/echo?id=${id}`, fragments: pieces.map((text) => ({ text })) });
      const whole = pieces.join('');
      expect(result.received).to.deep.equal([{ ...described(whole), intact: true }]);
      expect((await server.connection(id)).messages).to.deep.equal([described(whole)]);
    });

    it('reassembles a binary message of 2 MiB python sends as 3 fragments', async () => {
      const id = newId('py-frag-binary');
      const sizes = [MIB, 1, MIB - 1];
      const result = await run({
        case: 'fragmented',
        url: `${server.url}/echo?id=${id}`,
        fragments: sizes.map((size, seed) => ({ size, seed })),
      });
      const whole = Buffer.concat(sizes.map((size, seed) => payload(size, seed)));
      expect(result.received).to.deep.equal([{ ...described(whole), intact: true }]);
      expect((await server.connection(id)).messages).to.deep.equal([described(whole)]);
    });

    it('sends messages cut into 4096-byte fragments that python reassembles', async () => {
      const id = newId('py-our-frags');
      const result = await run({
        case: 'echo',
        url: `${fragmenting.url}/echo?id=${id}`,
        messages: [{ size: MIB + 1, seed: 7 }, { text: LONG_TEXT_UNIT, repeat: 3000 }],
      });
      expect(result.received).to.deep.equal([
        { ...described(payload(MIB + 1, 7)), intact: true },
        { ...described(LONG_TEXT_UNIT.repeat(3000)), intact: true },
      ]);
    });

    it("selects the subprotocol: python offers ['a', 'b'], our server picks 'b'", async () => {
      const id = newId('py-protocol');
      const result = await run({ case: 'echo', url: `${server.url}/echo?id=${id}`, subprotocols: ['a', 'b'], messages: [] });
      expect(result.subprotocol).to.equal('b');
      expect((await server.connection(id)).protocol).to.equal('b');
    });

    // ---- permessage-deflate (RFC 7692): python offers it by default ----
    it('declines the permessage-deflate python offers when perMessageDeflate is off (the default)', async () => {
      const id = newId('py-deflate-off');
      const result = await run({ case: 'echo', url: `${server.url}/echo?id=${id}`, messages: [{ text: 'plain' }] });
      expect((await server.connection(id)).offeredExtensions).to.match(/permessage-deflate/);
      expect(result.extensions).to.deep.equal([]);
    });

    it('agrees on permessage-deflate with python and echoes compressed text and binary intact', async () => {
      const id = newId('py-deflate-on');
      const result = await run({
        case: 'echo',
        url: `${deflating.url}/echo?id=${id}`,
        messages: [{ text: LONG_TEXT_UNIT, repeat: LONG_TEXT_REPEAT }, { size: MIB + 1, seed: 11 }, { text: NON_ASCII_TEXT }],
      });
      expect(result.extensions).to.deep.equal(['permessage-deflate']);
      expect((await deflating.connection(id)).extensions).to.match(/^permessage-deflate/);
      const sent = [LONG_TEXT, payload(MIB + 1, 11), NON_ASCII_TEXT];
      expect(result.received).to.deep.equal(sent.map((m) => ({ ...described(m), intact: true })));
      expect((await deflating.connection(id)).messages).to.deep.equal(sent.map(described));
    });

    it('answers python pings with pongs carrying the same payload', async () => {
      const result = await run({ case: 'ping', url: `${server.url}/echo?id=${newId('py-ping')}`, payload: 'ping é' });
      expect(result.ponged).to.equal(true);
    });

    it('receives the close code and reason python sends, and echoes the code and reason', async () => {
      const id = newId('py-close');
      const reason = 'python says bye: é€😀';
      const result = await run({ case: 'close', url: `${server.url}/echo?id=${id}`, code: 4001, reason });
      expect(await (await server.connection(id)).closed).to.deep.equal({ code: 4001, reason });
      // The echo carries the code and the reason (RFC 6455 §5.5.1), as python-websockets' own does.
      expect(result).to.include({ close_code: 4001, close_reason: reason });
    });

    it('closes with 4000 and a reason after a last message, as python reports it', async () => {
      const id = newId('py-server-close');
      const reason = 'server says bye: ünïcödé';
      const result = await run({
        case: 'receive_until_closed',
        url: `${server.url}/close?id=${id}&code=4000&reason=${encodeURIComponent(reason)}`,
      });
      expect(result.received).to.deep.equal([described('last words')]);
      expect(result).to.include({ close_code: 4000, close_reason: reason });
      expect(await (await server.connection(id)).closed).to.deep.equal({ code: 4000, reason });
    });
  });

  describe('python server, our client', () => {
    let pyServer: JsonLinesProcess;
    let base = '';

    /** Our client connected to the python server at `path` (?id= added). */
    async function open(path: string, id: string, options = {}): Promise<WebSocket> {
      const sep = path.includes('?') ? '&' : '?';
      const ws = connect(`${base}${path}${sep}id=${id}`, { maxPayload: 64 * MIB, ...options });
      await once(ws, 'open');
      return ws;
    }

    /** The next `n` messages our client receives. */
    function messages(ws: WebSocket, n: number): Promise<Array<string | Buffer>> {
      return new Promise((resolve) => {
        const got: Array<string | Buffer> = [];
        const onMessage = (data: string | Buffer): void => {
          got.push(data);
          if (got.length === n) {
            ws.removeListener('message', onMessage);
            resolve(got);
          }
        };
        ws.on('message', onMessage);
      });
    }

    /** What the python server reported receiving on connection `id`, `n` messages. */
    async function pythonReceived(id: string, n: number): Promise<Described[]> {
      const out: Described[] = [];
      for (let i = 0; i < n; i++) {
        const { event: _e, id: _i, ...message } = await pyServer.next((l) => l.event === 'message' && l.id === id);
        out.push(message as unknown as Described);
      }
      return out;
    }

    function pythonClosed(id: string): Promise<Record<string, unknown>> {
      return pyServer.next((l) => l.event === 'closed' && l.id === id);
    }

    before(async () => {
      pyServer = startPython(python, 'py_server.py');
      const listening = await pyServer.next((l) => l.event === 'listening');
      base = `ws://127.0.0.1:${String(listening.port)}`;
    });

    after(async () => {
      await pyServer?.stop();
    });

    it('echoes text with non-ASCII characters, over 1 MiB of text, and binary of every length encoding', async () => {
      const id = newId('pys-echo');
      const ws = await open('/echo', id, { perMessageDeflate: false });
      expect(ws.extensions).to.equal('');
      const sent: Array<string | Buffer> = [NON_ASCII_TEXT, LONG_TEXT, ...BINARY_SIZES.map((size) => payload(size, size % 251))];
      const echoes = messages(ws, sent.length);
      for (const message of sent) ws.send(message);
      const got = await echoes;
      expect(got.map(described)).to.deep.equal(sent.map(described));
      expect(got[0]).to.equal(NON_ASCII_TEXT);
      expect(await pythonReceived(id, sent.length)).to.deep.equal(sent.map(described));
      ws.close(1000);
      expect(await once(ws, 'close')).to.deep.equal([1000, '']);
    });

    it('agrees on permessage-deflate with python (our client offers it by default) and echoes intact', async () => {
      const id = newId('pys-deflate');
      const ws = await open('/echo', id);
      expect(ws.extensions).to.match(/^permessage-deflate/);
      const sent: Array<string | Buffer> = [NON_ASCII_TEXT, LONG_TEXT, payload(2 * MIB, 13)];
      const echoes = messages(ws, sent.length);
      for (const message of sent) ws.send(message);
      expect((await echoes).map(described)).to.deep.equal(sent.map(described));
      expect(await pythonReceived(id, sent.length)).to.deep.equal(sent.map(described));
      ws.close(1000);
      expect(await once(ws, 'close')).to.deep.equal([1000, '']);
    });

    it('sends messages cut into fragments that python reassembles', async () => {
      const id = newId('pys-our-frags');
      const ws = await open('/echo', id, { fragmentSize: 1000 });
      const sent: Array<string | Buffer> = [payload(MIB + 1, 3), LONG_TEXT_UNIT.repeat(5000)];
      const echoes = messages(ws, sent.length);
      for (const message of sent) ws.send(message);
      expect((await echoes).map(described)).to.deep.equal(sent.map(described));
      expect(await pythonReceived(id, sent.length)).to.deep.equal(sent.map(described));
      ws.close();
      await once(ws, 'close');
    });

    it('reassembles messages python sends as fragments from an async iterator', async () => {
      const id = newId('pys-frags');
      const ws = await open('/echo-fragmented?size=4096', id);
      const sent: Array<string | Buffer> = [payload(2 * MIB + 5, 9), NON_ASCII_TEXT.repeat(500)];
      const echoes = messages(ws, sent.length);
      for (const message of sent) ws.send(message);
      expect((await echoes).map(described)).to.deep.equal(sent.map(described));
      ws.close();
      await once(ws, 'close');
    });

    it('gets the subprotocol python picks', async () => {
      const ws = await open('/echo', newId('pys-protocol'), { protocols: ['a', 'b'] });
      expect(ws.protocol).to.equal('b');
      ws.close();
      await once(ws, 'close');
    });

    it('sends the close code and reason, which python receives', async () => {
      const id = newId('pys-close');
      const reason = 'our client says bye: é€😀';
      const ws = await open('/echo', id);
      ws.close(4001, reason);
      const [code] = (await once(ws, 'close')) as [number, string];
      expect(code).to.equal(4001); // python-websockets echoes the code
      expect(await pythonClosed(id)).to.include({ code: 4001, reason });
    });

    it('receives a close code and reason chosen by the python server, after its last message', async () => {
      const id = newId('pys-server-close');
      const reason = 'python server says bye: ünïcödé';
      const ws = connect(`${base}/close?id=${id}&code=4002&reason=${encodeURIComponent(reason)}`);
      const got: Array<string | Buffer> = [];
      ws.on('message', (data: string | Buffer) => got.push(data));
      expect(await once(ws, 'close')).to.deep.equal([4002, reason]);
      expect(got).to.deep.equal(['last words']);
    });

    it('receives binary and text the python server sends first', async () => {
      const id = newId('pys-send');
      const ws = await open(`/send?size=${3 * MIB}&seed=5`, id);
      const got = await messages(ws, 2);
      expect(got.map(described)).to.deep.equal([described(payload(3 * MIB, 5)), described('données envoyées')]);
      ws.close(1000, 'done');
      await once(ws, 'close');
      expect(await pythonClosed(id)).to.include({ code: 1000, reason: 'done' });
    });
  });
});
