import { expect } from 'chai';
import fc from 'fast-check';
import { Defaults } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import {
  HandshakeParser,
  HandshakeParserCore,
  HandshakeParserOptions,
  UpgradeRequest,
  UpgradeResponse,
} from '../../lib/handshake/handshake-parser';
import { collect, everyChunking, fromChunks, someChunkings } from '../helpers/chunks';

/**
 * The head grammar written the plain way (split on CRLF, regular expressions), as a reference
 * for the parser, which walks the characters by index: both must agree on every head, in the
 * result and in the error (code and message).
 */
function referenceParse(text: string, role: 'server' | 'client', maxHeaders: number): unknown {
  const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const invalid = (detail: string): WebSocketError => new WebSocketError('WS_ERR_INVALID_HANDSHAKE', detail);
  const lines = text.split('\r\n');
  if (lines.some((line) => line.includes('\r') || line.includes('\n'))) return invalid('a bare CR or LF in the head; only CRLF ends a line');
  if (lines.length - 1 > maxHeaders) {
    return new WebSocketError('WS_ERR_HEADER_TOO_LARGE', `${lines.length - 1} header lines, over the limit of ${maxHeaders}`);
  }
  const single = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
    'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization',
    'referer', 'retry-after', 'server', 'user-agent']);
  const headers: Record<string, string | string[]> = {};
  const rawHeaders: string[] = [];
  for (const line of lines.slice(1)) {
    if (line.length === 0 || line[0] === ' ' || line[0] === '\t') {
      return invalid(line.length === 0 ? 'an empty header line' : 'a folded header line (obs-fold)');
    }
    const colon = line.indexOf(':');
    if (colon === -1) return invalid(`a header line without a colon: ${JSON.stringify(line.slice(0, 64))}`);
    const name = line.slice(0, colon);
    if (!token.test(name)) return invalid(`an invalid header name: ${JSON.stringify(name.slice(0, 64))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+/, '').replace(/[ \t]+$/, '');
    if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) return invalid(`an invalid character in the value of ${name}`);
    const key = name.toLowerCase();
    const existing = Object.prototype.hasOwnProperty.call(headers, key) ? headers[key] : undefined;
    if (key === 'host' && existing !== undefined && role === 'server') return invalid('more than one Host header');
    rawHeaders.push(name, value);
    if (existing === undefined) headers[key] = key === 'set-cookie' ? [value] : value;
    else if (Array.isArray(existing)) existing.push(value);
    else if (key === 'cookie') headers[key] = `${existing}; ${value}`;
    else if (!single.has(key)) headers[key] = `${existing}, ${value}`;
  }
  const start = lines[0]!;
  if (role === 'server') {
    const m = /^([^ ]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/.exec(start);
    if (m === null || !token.test(m[1]!)) return invalid(`an invalid request line: ${JSON.stringify(start.slice(0, 64))}`);
    return { method: m[1]!, url: m[2]!, httpVersion: `${m[3]!}.${m[4]!}`, headers, rawHeaders };
  }
  const m = /^HTTP\/(\d)\.(\d) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(start);
  if (m === null) return invalid(`an invalid status line: ${JSON.stringify(start.slice(0, 64))}`);
  return { statusCode: Number(m[3]!), statusMessage: m[4] ?? '', httpVersion: `${m[1]!}.${m[2]!}`, headers, rawHeaders };
}

/** What the parser made of `text` + CRLFCRLF (whole), in the reference's terms. */
function parsed(text: string, role: 'server' | 'client', maxHeaders: number): unknown {
  const heads: unknown[] = [];
  const core = new HandshakeParserCore({ role, maxHeaders }, { onHead: (head) => heads.push(head), onData: () => {} });
  const err = core.write(Buffer.from(`${text}\r\n\r\n`, 'latin1'));
  if (err !== null) return err;
  const head = heads[0] as UpgradeRequest;
  return { ...head, headers: { ...head.headers } };
}

function outcome(value: unknown): unknown {
  return value instanceof WebSocketError ? { code: value.code, message: value.message } : value;
}

/** The client handshake of RFC 6455 §1.2. */
const RFC_REQUEST =
  'GET /chat HTTP/1.1\r\n' +
  'Host: server.example.com\r\n' +
  'Upgrade: websocket\r\n' +
  'Connection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Origin: http://example.com\r\n' +
  'Sec-WebSocket-Protocol: chat, superchat\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  '\r\n';

/** The server handshake of RFC 6455 §1.2. */
const RFC_RESPONSE =
  'HTTP/1.1 101 Switching Protocols\r\n' +
  'Upgrade: websocket\r\n' +
  'Connection: Upgrade\r\n' +
  'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n' +
  'Sec-WebSocket-Protocol: chat\r\n' +
  '\r\n';

/** RFC 6455 §5.7: a single-frame masked text message "Hello", then an unmasked one. */
const MASKED_HELLO = Buffer.from('818537fa213d7f9f4d5158', 'hex');
const UNMASKED_HELLO = Buffer.from('810548656c6c6f', 'hex');

interface Outcome {
  heads: Array<UpgradeRequest | UpgradeResponse>;
  data: Buffer[];
  /** The order of the callbacks: 'head' or 'data'. */
  order: string[];
  error: WebSocketError | null;
}

function run(chunks: Buffer[], options: HandshakeParserOptions): Outcome {
  const out: Outcome = { heads: [], data: [], order: [], error: null };
  const core = new HandshakeParserCore(options, {
    onHead(head) {
      out.heads.push(head);
      out.order.push('head');
    },
    onData(rest) {
      out.data.push(rest);
      out.order.push('data');
    },
  });
  for (const chunk of chunks) {
    const err = core.write(chunk);
    expect(err).to.equal(core.error);
    if (err !== null) {
      out.error = err;
      break;
    }
  }
  return out;
}

function expectError(err: WebSocketError | null, code: string, status: number): void {
  expect(err).to.be.instanceOf(WebSocketError);
  expect(err!.code).to.equal(code);
  expect(err!.closeCode).to.equal(1002);
  expect(err!.status).to.equal(status);
}

/** A request with `count` extra header lines whose whole head is exactly `size` bytes. */
function requestOfSize(size: number): Buffer {
  const start = 'GET / HTTP/1.1\r\nHost: a\r\n';
  const end = '\r\n';
  const pad = size - start.length - end.length - 'X-Pad: \r\n'.length;
  expect(pad).to.be.at.least(0);
  const head = `${start}X-Pad: ${'p'.repeat(pad)}\r\n${end}`;
  expect(head.length).to.equal(size);
  return Buffer.from(head, 'latin1');
}

function requestWithHeaders(count: number): Buffer {
  let head = 'GET / HTTP/1.1\r\n';
  for (let i = 0; i < count; i++) head += `X-H${i}: ${i}\r\n`;
  return Buffer.from(`${head}\r\n`, 'latin1');
}

describe('HandshakeParserCore', () => {
  describe('server role: the request of RFC 6455 §1.2', () => {
    for (const { name, chunks } of everyChunking(Buffer.from(RFC_REQUEST, 'latin1'))) {
      it(`parses it (${name})`, () => {
        const out = run(chunks, { role: 'server' });
        expect(out.error).to.equal(null);
        expect(out.heads).to.have.length(1);
        const req = out.heads[0] as UpgradeRequest;
        expect(req.method).to.equal('GET');
        expect(req.url).to.equal('/chat');
        expect(req.httpVersion).to.equal('1.1');
        expect({ ...req.headers }).to.deep.equal({
          host: 'server.example.com',
          upgrade: 'websocket',
          connection: 'Upgrade',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          origin: 'http://example.com',
          'sec-websocket-protocol': 'chat, superchat',
          'sec-websocket-version': '13',
        });
        expect(req.rawHeaders).to.deep.equal([
          'Host', 'server.example.com',
          'Upgrade', 'websocket',
          'Connection', 'Upgrade',
          'Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==',
          'Origin', 'http://example.com',
          'Sec-WebSocket-Protocol', 'chat, superchat',
          'Sec-WebSocket-Version', '13',
        ]);
        expect(out.data).to.have.length(0);
      });
    }
  });

  describe('bytes after the blank line', () => {
    const input = Buffer.concat([Buffer.from(RFC_REQUEST, 'latin1'), MASKED_HELLO, MASKED_HELLO]);
    for (const { name, chunks } of everyChunking(input)) {
      it(`reach onData untouched and in order, after onHead (${name})`, () => {
        const out = run(chunks, { role: 'server' });
        expect(out.error).to.equal(null);
        expect(out.heads).to.have.length(1);
        expect(out.order[0]).to.equal('head');
        expect(Buffer.concat(out.data)).to.deep.equal(Buffer.concat([MASKED_HELLO, MASKED_HELLO]));
        for (const piece of out.data) expect(piece.length).to.be.above(0);
      });
    }

    it('passes later chunks on as the very same Buffer objects', () => {
      const later = Buffer.from(MASKED_HELLO);
      const out = run([Buffer.from(RFC_REQUEST, 'latin1'), later], { role: 'server' });
      expect(out.data).to.have.length(1);
      expect(out.data[0]).to.equal(later);
    });

    it('passes the rest of the head chunk as a view, without copying', () => {
      const chunk = Buffer.concat([Buffer.from(RFC_REQUEST, 'latin1'), MASKED_HELLO]);
      const out = run([chunk], { role: 'server' });
      expect(out.data).to.have.length(1);
      expect(out.data[0]!.buffer).to.equal(chunk.buffer);
      expect(out.data[0]!.byteOffset).to.equal(chunk.byteOffset + RFC_REQUEST.length);
    });

    it('ignores empty chunks', () => {
      const out = run(
        [Buffer.alloc(0), Buffer.from(RFC_REQUEST, 'latin1'), Buffer.alloc(0), MASKED_HELLO],
        { role: 'server' },
      );
      expect(out.order).to.deep.equal(['head', 'data']);
    });
  });

  describe('client role: the response of RFC 6455 §1.2', () => {
    const input = Buffer.concat([Buffer.from(RFC_RESPONSE, 'latin1'), UNMASKED_HELLO]);
    for (const { name, chunks } of everyChunking(input)) {
      it(`parses it and passes on the frame after it (${name})`, () => {
        const out = run(chunks, { role: 'client' });
        expect(out.error).to.equal(null);
        expect(out.heads).to.have.length(1);
        const res = out.heads[0] as UpgradeResponse;
        expect(res.statusCode).to.equal(101);
        expect(res.statusMessage).to.equal('Switching Protocols');
        expect(res.httpVersion).to.equal('1.1');
        expect(res.headers['sec-websocket-accept']).to.equal('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
        expect(res.headers['sec-websocket-protocol']).to.equal('chat');
        expect(res.rawHeaders).to.have.length(8);
        expect(Buffer.concat(out.data)).to.deep.equal(UNMASKED_HELLO);
      });
    }

    it('accepts a status line without a reason phrase', () => {
      for (const line of ['HTTP/1.1 101 ', 'HTTP/1.1 101']) {
        const out = run([Buffer.from(`${line}\r\nUpgrade: websocket\r\n\r\n`)], { role: 'client' });
        expect(out.error).to.equal(null);
        const res = out.heads[0] as UpgradeResponse;
        expect(res.statusCode).to.equal(101);
        expect(res.statusMessage).to.equal('');
      }
    });

    it('keeps the reason phrase of a refusal', () => {
      const out = run([Buffer.from('HTTP/1.1 403 Forbidden here\r\nContent-Length: 0\r\n\r\n')], { role: 'client' });
      const res = out.heads[0] as UpgradeResponse;
      expect(res.statusCode).to.equal(403);
      expect(res.statusMessage).to.equal('Forbidden here');
    });

    for (const line of ['HTTP/1.1 1O1 Switching', 'HTTP/1.1 10 Switching', 'HTTP/1.1  101 x', 'HTTP/1.1', 'http/1.1 101 x', 'GET / HTTP/1.1']) {
      it(`refuses the status line ${JSON.stringify(line)}`, () => {
        const out = run([Buffer.from(`${line}\r\n\r\n`)], { role: 'client' });
        expectError(out.error, 'WS_ERR_INVALID_HANDSHAKE', 400);
        expect(out.heads).to.have.length(0);
      });
    }
  });

  describe('headers object (the rules of Node http.IncomingMessage.headers)', () => {
    function headersOf(lines: string[]): UpgradeRequest {
      const out = run([Buffer.from(`GET / HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`)], { role: 'server' });
      expect(out.error).to.equal(null);
      return out.heads[0] as UpgradeRequest;
    }

    it('lower-cases names and trims optional whitespace around values', () => {
      const req = headersOf(['UPGRADE:\t websocket \t', 'X-Empty:', 'X-Inner:  a  b ']);
      expect(req.headers.upgrade).to.equal('websocket');
      expect(req.headers['x-empty']).to.equal('');
      expect(req.headers['x-inner']).to.equal('a  b');
      expect(req.rawHeaders).to.deep.equal(['UPGRADE', 'websocket', 'X-Empty', '', 'X-Inner', 'a  b']);
    });

    it("joins repeated headers with ', '", () => {
      const req = headersOf(['Sec-WebSocket-Protocol: a', 'Sec-WebSocket-Protocol: b, c', 'Connection: keep-alive', 'connection: Upgrade']);
      expect(req.headers['sec-websocket-protocol']).to.equal('a, b, c');
      expect(req.headers.connection).to.equal('keep-alive, Upgrade');
    });

    it("keeps set-cookie as an array, joins cookie with '; ', keeps the first of single-valued headers", () => {
      const req = headersOf(['Set-Cookie: a=1', 'Set-Cookie: b=2', 'Cookie: x=1', 'Cookie: y=2', 'User-Agent: one', 'User-Agent: two']);
      expect(req.headers['set-cookie']).to.deep.equal(['a=1', 'b=2']);
      expect(req.headers.cookie).to.equal('x=1; y=2');
      expect(req.headers['user-agent']).to.equal('one');
      expect(req.rawHeaders).to.have.length(12);
    });

    it('is not confused by a header named __proto__', () => {
      const req = headersOf(['__proto__: x']);
      expect(req.headers['__proto__']).to.equal('x');
      expect(Object.keys(req.headers)).to.deep.equal(['__proto__']);
    });

    it('keeps bytes 0x80-0xFF of a value as latin1 (obs-text), like Node', () => {
      const out = run([Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nX-A: '), Buffer.from([0xe9, 0xff]), Buffer.from('\r\n\r\n')])], { role: 'server' });
      expect(out.error).to.equal(null);
      expect((out.heads[0] as UpgradeRequest).headers['x-a']).to.equal('\u00e9\u00ff');
    });
  });

  describe('malformed heads (RFC 9112) are refused with WS_ERR_INVALID_HANDSHAKE (400)', () => {
    const cases: Array<[string, string]> = [
      ['obs-fold (a line starting with SP)', 'GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n'],
      ['obs-fold (a line starting with HTAB)', 'GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n'],
      ['a header line without a colon', 'GET / HTTP/1.1\r\nX-A a\r\n\r\n'],
      ['whitespace between name and colon', 'GET / HTTP/1.1\r\nX-A : a\r\n\r\n'],
      ['an empty header name', 'GET / HTTP/1.1\r\n: a\r\n\r\n'],
      ['a separator in a header name', 'GET / HTTP/1.1\r\nX(A): a\r\n\r\n'],
      ['a control character in a value', 'GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n'],
      ['DEL in a value', 'GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n'],
      ['a bare LF inside the head', 'GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n'],
      ['a bare CR inside the head', 'GET / HTTP/1.1\r\nX-A: a\rX-B: b\r\n\r\n'],
      ['an empty line before the request line', '\r\nGET / HTTP/1.1\r\n\r\n'],
      ['two spaces in the request line', 'GET  / HTTP/1.1\r\n\r\n'],
      ['a request line without version', 'GET /\r\n\r\n'],
      ['a lower-case protocol name', 'GET / http/1.1\r\n\r\n'],
      ['a two-digit version', 'GET / HTTP/1.10\r\n\r\n'],
      ['a method that is not a token', 'G(T / HTTP/1.1\r\n\r\n'],
      ['a control character in the target', 'GET /a\x01b HTTP/1.1\r\n\r\n'],
      ['two Host headers (RFC 9112 §3.2)', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
      ['a status line on the server side', 'HTTP/1.1 101 Switching Protocols\r\n\r\n'],
    ];
    for (const [title, head] of cases) {
      for (const { name, chunks } of someChunkings(Buffer.from(head, 'latin1'), [1, 5])) {
        it(`${title} (${name})`, () => {
          const out = run(chunks, { role: 'server' });
          expectError(out.error, 'WS_ERR_INVALID_HANDSHAKE', 400);
          expect(out.heads).to.have.length(0);
        });
      }
    }

    it('refuses LF-only line endings at once, without waiting for CRLFCRLF', () => {
      const out = run([Buffer.from('GET / HTTP/1.1\nHost: a\n\n')], { role: 'server' });
      expectError(out.error, 'WS_ERR_INVALID_HANDSHAKE', 400);
    });

    it('refuses LF-only line endings fed byte by byte', () => {
      const bytes = Buffer.from('GET / HTTP/1.1\nHost: a\n\n');
      const chunks = [...bytes].map((b) => Buffer.from([b]));
      const out = run(chunks, { role: 'server' });
      expectError(out.error, 'WS_ERR_INVALID_HANDSHAKE', 400);
    });
  });

  describe('TLS on a plain port (RFC 8446 §5.1: a handshake record starts with 22)', () => {
    // The first bytes of a TLS 1.2/1.3 ClientHello record: handshake(22), legacy version 3.1, length.
    const clientHello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    for (const role of ['server', 'client'] as const) {
      it(`${role} role: refused at the first chunk, without waiting for a head end`, () => {
        const core = new HandshakeParserCore({ role }, { onHead: () => expect.fail('no head'), onData: () => expect.fail('no data') });
        const err = core.write(clientHello);
        expect(err).to.be.instanceOf(WebSocketError);
        expect(err!.code).to.equal('WS_ERR_INVALID_HANDSHAKE');
        expect(err!.message).to.match(role === 'server' ? /TLS handshake on a plain port/ : /answered with TLS/);
      });
    }
  });

  describe('limits', () => {
    const size = 300;
    it(`accepts a head of exactly maxHeaderSize bytes, in every chunking`, () => {
      for (const { name, chunks } of everyChunking(Buffer.concat([requestOfSize(size), MASKED_HELLO]))) {
        const out = run(chunks, { role: 'server', maxHeaderSize: size });
        expect(out.error, name).to.equal(null);
        expect(out.heads, name).to.have.length(1);
        expect(Buffer.concat(out.data), name).to.deep.equal(MASKED_HELLO);
      }
    });

    it(`refuses a head of maxHeaderSize + 1 bytes with WS_ERR_HEADER_TOO_LARGE (431), in every chunking`, () => {
      for (const { name, chunks } of everyChunking(requestOfSize(size + 1))) {
        const out = run(chunks, { role: 'server', maxHeaderSize: size });
        expectError(out.error, 'WS_ERR_HEADER_TOO_LARGE', 431);
        expect(out.heads, name).to.have.length(0);
      }
    });

    it('fails as soon as maxHeaderSize bytes came without CRLFCRLF (a peer that never ends its head)', () => {
      const core = new HandshakeParserCore({ role: 'server', maxHeaderSize: size }, { onHead() {}, onData() {} });
      const endless = Buffer.from('GET / HTTP/1.1\r\nX-A: ' + 'a'.repeat(size));
      for (let i = 0; i < size - 1; i++) expect(core.write(endless.subarray(i, i + 1))).to.equal(null);
      expectError(core.write(endless.subarray(size - 1, size)), 'WS_ERR_HEADER_TOO_LARGE', 431);
    });

    it('fails on one large chunk without CRLFCRLF in its first maxHeaderSize bytes, even if it comes later', () => {
      const big = Buffer.concat([requestOfSize(size + 1), Buffer.alloc(100000)]);
      const out = run([big], { role: 'server', maxHeaderSize: size });
      expectError(out.error, 'WS_ERR_HEADER_TOO_LARGE', 431);
    });

    it(`defaults maxHeaderSize to Defaults.maxHeaderSize (${Defaults.maxHeaderSize})`, () => {
      expect(run([requestOfSize(Defaults.maxHeaderSize)], { role: 'server' }).error).to.equal(null);
      expectError(run([requestOfSize(Defaults.maxHeaderSize + 1)], { role: 'server' }).error, 'WS_ERR_HEADER_TOO_LARGE', 431);
      const core = new HandshakeParserCore({ role: 'server' }, { onHead() {}, onData() {} });
      expect(core.write(Buffer.alloc(Defaults.maxHeaderSize - 1, 0x61))).to.equal(null);
      expectError(core.write(Buffer.alloc(1, 0x61)), 'WS_ERR_HEADER_TOO_LARGE', 431);
    });

    it('accepts maxHeaders header lines and refuses one more', () => {
      expect(run([requestWithHeaders(5)], { role: 'server', maxHeaders: 5 }).error).to.equal(null);
      expectError(run([requestWithHeaders(6)], { role: 'server', maxHeaders: 5 }).error, 'WS_ERR_HEADER_TOO_LARGE', 431);
    });

    it(`defaults maxHeaders to Defaults.maxHeaders (${Defaults.maxHeaders})`, () => {
      expect(run([requestWithHeaders(Defaults.maxHeaders)], { role: 'server' }).error).to.equal(null);
      expectError(run([requestWithHeaders(Defaults.maxHeaders + 1)], { role: 'server' }).error, 'WS_ERR_HEADER_TOO_LARGE', 431);
    });
  });

  describe('errors', () => {
    it('ignores all input after an error and keeps returning the first error', () => {
      const out: string[] = [];
      const core = new HandshakeParserCore({ role: 'server' }, { onHead: () => out.push('head'), onData: () => out.push('data') });
      const first = core.write(Buffer.from('BAD\r\n\r\n'));
      expectError(first, 'WS_ERR_INVALID_HANDSHAKE', 400);
      expect(core.write(Buffer.from(RFC_REQUEST))).to.equal(first);
      expect(out).to.deep.equal([]);
    });

    it('stops at once when fail() is called from onHead: the rest of the chunk is not passed on', () => {
      const data: Buffer[] = [];
      const stop = new WebSocketError('WS_ERR_INVALID_HANDSHAKE', 'refused by the server');
      const core: HandshakeParserCore = new HandshakeParserCore({ role: 'server' }, {
        onHead: () => core.fail(stop),
        onData: (rest) => data.push(rest),
      });
      expect(core.write(Buffer.concat([Buffer.from(RFC_REQUEST), MASKED_HELLO]))).to.equal(stop);
      expect(core.write(MASKED_HELLO)).to.equal(stop);
      expect(data).to.deep.equal([]);
    });

    it('fail() keeps the first error', () => {
      const core = new HandshakeParserCore({ role: 'server' }, { onHead() {}, onData() {} });
      const a = new WebSocketError('WS_ERR_HANDSHAKE_TIMEOUT');
      core.fail(a);
      core.fail(new WebSocketError('WS_ERR_CONNECTION_LOST'));
      expect(core.error).to.equal(a);
    });
  });
});

describe('HandshakeParserCore agrees with the plain regular-expression grammar (fast-check)', () => {
  /** Characters that matter to the grammar, and a few that do not. */
  const interesting = fc.constantFrom(
    'G', 'E', 'T', 'a', 'Z', 'x', '-', '/', ':', ' ', '\t', '\r', '\n', '\r\n', '\x00', '\x7f', '\xe9', '(', ',', '1', '0', '.', 'H',
    'HTTP/1.1', 'HTTP/', 'GET ', 'Host', 'host: a', 'Set-Cookie', 'cookie', 'user-agent', '__proto__',
  );
  const line = fc.array(interesting, { maxLength: 12 }).map((parts) => parts.join(''));
  const requestLine = fc.oneof(fc.constant('GET /chat HTTP/1.1'), fc.constant('GET / HTTP/1.0'), line);
  const statusLine = fc.oneof(fc.constant('HTTP/1.1 101 Switching Protocols'), fc.constant('HTTP/1.1 101'), line);
  const field = fc.oneof(
    fc.tuple(fc.constantFrom('Host', 'Upgrade', 'CONNECTION', 'x-a', 'Age', 'age', 'zZ', 'Cookie', 'Set-Cookie', 'X(A)', ''), fc.constantFrom(':', ': ', ' :', ':\t '), line)
      .map(([name, colon, value]) => `${name}${colon}${value}`),
    line,
  );
  for (const role of ['server', 'client'] as const) {
    it(`on random heads (${role} role)`, () => {
      fc.assert(
        fc.property(role === 'server' ? requestLine : statusLine, fc.array(field, { maxLength: 6 }), fc.integer({ min: 0, max: 6 }), (start, fields, maxHeaders) => {
          const input = [start, ...fields].join('\r\n');
          // The head is what comes before the first CRLFCRLF (a field may hold one).
          const end = `${input}\r\n\r\n`.indexOf('\r\n\r\n');
          const text = input.slice(0, end);
          expect(outcome(parsed(text, role, maxHeaders))).to.deep.equal(outcome(referenceParse(text, role, maxHeaders)));
        }),
        { seed: 6455, numRuns: 3000 },
      );
    });
  }

  it('on the heads of this file and typical browser requests', () => {
    const heads = [
      RFC_REQUEST.slice(0, -4),
      RFC_RESPONSE.slice(0, -4),
      'GET /ws?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits',
      'GET / HTTP/1.1\r\nX-A:\t \t',
      'GET / HTTP/1.1\r\nX-A: \xe9\xff',
    ];
    for (const text of heads) {
      for (const role of ['server', 'client'] as const) {
        expect(outcome(parsed(text, role, 128))).to.deep.equal(outcome(referenceParse(text, role, 128)));
      }
    }
  });
});

describe('HandshakeParser (stream)', () => {
  it("emits 'handshake' before pushing the bytes that follow, untouched", async () => {
    const input = Buffer.concat([Buffer.from(RFC_REQUEST), MASKED_HELLO, UNMASKED_HELLO]);
    for (const { name, chunks } of someChunkings(input, [1, 3, 17])) {
      const parser = new HandshakeParser({ role: 'server' });
      const events: string[] = [];
      let head: UpgradeRequest | undefined;
      parser.on('handshake', (h: UpgradeRequest) => {
        head = h;
        events.push('handshake');
      });
      parser.on('data', () => events.push('data'));
      const out = await collect<Buffer>(fromChunks(chunks).pipe(parser));
      expect(head?.url, name).to.equal('/chat');
      expect(events[0], name).to.equal('handshake');
      expect(Buffer.concat(out), name).to.deep.equal(Buffer.concat([MASKED_HELLO, UNMASKED_HELLO]));
      expect(parser.core.error).to.equal(null);
    }
  });

  it('passes the client role through to the core', async () => {
    const parser = new HandshakeParser({ role: 'client' });
    let status = 0;
    parser.on('handshake', (h: UpgradeResponse) => (status = h.statusCode));
    const out = await collect<Buffer>(fromChunks([Buffer.from(RFC_RESPONSE), UNMASKED_HELLO]).pipe(parser));
    expect(status).to.equal(101);
    expect(Buffer.concat(out)).to.deep.equal(UNMASKED_HELLO);
  });

  it('fails the stream with the WebSocketError', async () => {
    const parser = new HandshakeParser({ role: 'server', maxHeaderSize: 64 });
    parser.write(Buffer.alloc(65, 0x61));
    const err = await new Promise<unknown>((resolve) => parser.on('error', resolve));
    expectError(err as WebSocketError, 'WS_ERR_HEADER_TOO_LARGE', 431);
  });
});
