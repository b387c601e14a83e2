import { expect } from 'chai';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { WEBSOCKET_GUID } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import {
  ExtensionOffer,
  UpgradeInfo,
  acceptKey,
  buildAcceptResponse,
  buildClientRequest,
  buildRejectResponse,
  formatExtensions,
  generateKey,
  hasToken,
  headerValue,
  parseExtensions,
  parseTokenList,
  selectProtocol,
  validateUpgradeRequest,
  validateUpgradeResponse,
} from '../../lib/handshake/handshake';
import { HandshakeParserCore, HeaderMap, UpgradeRequest, UpgradeResponse } from '../../lib/handshake/handshake-parser';

/** RFC 6455 §1.3 / §4.2.2: the sample nonce and the accept value derived from it. */
const RFC_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const RFC_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

function parseHead(text: string, role: 'server' | 'client'): UpgradeRequest | UpgradeResponse {
  let head: UpgradeRequest | UpgradeResponse | undefined;
  const core = new HandshakeParserCore({ role }, { onHead: (h) => (head = h), onData() {} });
  expect(core.write(Buffer.from(text, 'latin1'))).to.equal(null);
  return head!;
}

function request(headers: Record<string, string | string[]>, overrides: Partial<UpgradeRequest> = {}): UpgradeRequest {
  const base: Record<string, string | string[]> = {
    host: 'server.example.com',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': RFC_KEY,
    'sec-websocket-version': '13',
  };
  const merged: HeaderMap = { ...base, ...headers };
  for (const [k, v] of Object.entries(headers)) if (v === '\0delete') delete merged[k];
  return { method: 'GET', url: '/chat', httpVersion: '1.1', headers: merged, rawHeaders: [], ...overrides };
}

function expectError(result: unknown, code: string, closeCode: number, status: number | undefined, detail?: RegExp): void {
  expect(result).to.be.instanceOf(WebSocketError);
  const err = result as WebSocketError;
  expect(err.code).to.equal(code);
  expect(err.closeCode).to.equal(closeCode);
  expect(err.status).to.equal(status);
  if (detail !== undefined) expect(err.message).to.match(detail);
}

function b64(bytes: number): string {
  return Buffer.alloc(bytes, 0x41).toString('base64');
}

describe('acceptKey (RFC 6455 §4.2.2)', () => {
  it('gives the RFC sample value', () => {
    expect(acceptKey(RFC_KEY)).to.equal(RFC_ACCEPT);
  });

  it('is base64 of SHA-1 over key + GUID', () => {
    const key = generateKey();
    expect(acceptKey(key)).to.equal(createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64'));
  });

  it('hashes the key as latin1, also when it is not ASCII (the one-shot hash is for ASCII keys only)', () => {
    for (const key of ['caf\u00e9', '\u00ff\u0080x', '', 'dGhlIHNhbXBsZSBub25jZQ==']) {
      expect(acceptKey(key), JSON.stringify(key)).to.equal(createHash('sha1').update(key + WEBSOCKET_GUID, 'latin1').digest('base64'));
    }
  });
});

describe('generateKey (RFC 6455 §4.1)', () => {
  it('is 16 random bytes in base64, different each time', () => {
    const a = generateKey();
    const b = generateKey();
    expect(Buffer.from(a, 'base64')).to.have.length(16);
    expect(a).to.match(/^[A-Za-z0-9+/]{22}==$/);
    expect(a).to.not.equal(b);
    expect(validateUpgradeRequest(request({ 'sec-websocket-key': a }))).to.not.be.instanceOf(WebSocketError);
  });
});

describe('header helpers', () => {
  it('headerValue looks names up case-insensitively and joins arrays', () => {
    const headers: HeaderMap = { 'x-a': 'one', 'set-cookie': ['a=1', 'b=2'] };
    expect(headerValue(headers, 'X-A')).to.equal('one');
    expect(headerValue(headers, 'set-cookie')).to.equal('a=1, b=2');
    expect(headerValue(headers, 'x-missing')).to.equal(undefined);
  });

  it('parseTokenList trims elements and skips empty ones (RFC 9110 §5.6.1)', () => {
    expect(parseTokenList(' a ,b,\t, ,c\t')).to.deep.equal(['a', 'b', 'c']);
    expect(parseTokenList('')).to.deep.equal([]);
    expect(parseTokenList(',,')).to.deep.equal([]);
  });

  it('hasToken matches whole elements case-insensitively', () => {
    expect(hasToken('keep-alive, Upgrade', 'upgrade')).to.equal(true);
    expect(hasToken('UPGRADE', 'upgrade')).to.equal(true);
    expect(hasToken('upgrades', 'upgrade')).to.equal(false);
    expect(hasToken('keep-alive', 'upgrade')).to.equal(false);
    expect(hasToken(undefined, 'upgrade')).to.equal(false);
  });
});

describe('parseExtensions / formatExtensions (RFC 6455 §9.1)', () => {
  it('parses several offers with bare and quoted parameters', () => {
    const list = parseExtensions('permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits="10"');
    expect(list).to.deep.equal([
      { name: 'permessage-deflate', params: [['client_max_window_bits', true]] },
      { name: 'permessage-deflate', params: [['server_max_window_bits', '10']] },
    ]);
  });

  it('keeps repeated parameters in order and allows whitespace around separators', () => {
    const list = parseExtensions(' foo ;a = 1 ;\tb; a="x\\yz" ,bar');
    expect(list).to.deep.equal([
      { name: 'foo', params: [['a', '1'], ['b', true], ['a', 'xyz']] },
      { name: 'bar', params: [] },
    ]);
  });

  it('skips empty list elements', () => {
    expect(parseExtensions(', foo,, bar ,')).to.deep.equal([
      { name: 'foo', params: [] },
      { name: 'bar', params: [] },
    ]);
    expect(parseExtensions('')).to.deep.equal([]);
  });

  const invalid: string[] = [
    'foo;',
    'foo; =1',
    'foo; a=',
    'foo; a=1 2',
    'foo bar',
    'fo(o)',
    'foo; a="1',
    'foo; a="a b"',
    'foo; a=""',
    'foo; a="\\',
    'foo; a="x\\',
    ';a',
    'foo; a==1',
    'foo, ; a',
  ];
  for (const header of invalid) {
    it(`refuses ${JSON.stringify(header)} with WS_ERR_INVALID_EXTENSION`, () => {
      expectError(parseExtensions(header), 'WS_ERR_INVALID_EXTENSION', 1010, undefined);
    });
  }

  it('formats what it parses', () => {
    const list: ExtensionOffer[] = [
      { name: 'permessage-deflate', params: [['client_max_window_bits', true], ['server_max_window_bits', '10']] },
      { name: 'x-other', params: [] },
    ];
    const text = formatExtensions(list);
    expect(text).to.equal('permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-other');
    expect(parseExtensions(text)).to.deep.equal(list);
  });

  it('refuses to format a name or value that is not a token (TypeError)', () => {
    expect(() => formatExtensions([{ name: 'a b', params: [] }])).to.throw(TypeError);
    expect(() => formatExtensions([{ name: 'a', params: [['p', 'x\r\nEvil: 1']] }])).to.throw(TypeError);
    expect(() => formatExtensions([{ name: 'a', params: [['p;', true]] }])).to.throw(TypeError);
  });
});

describe('validateUpgradeRequest (RFC 6455 §4.2.1)', () => {
  it('accepts the RFC 6455 §1.2 request parsed by HandshakeParser', () => {
    const req = parseHead(
      'GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${RFC_KEY}\r\nOrigin: http://example.com\r\n` +
        'Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n',
      'server',
    ) as UpgradeRequest;
    const info = validateUpgradeRequest(req) as UpgradeInfo;
    expect(info).to.deep.equal({
      key: RFC_KEY,
      version: 13,
      protocols: ['chat', 'superchat'],
      extensions: [],
      origin: 'http://example.com',
      host: 'server.example.com',
    });
  });

  it('accepts the shape of a Node http.IncomingMessage', () => {
    const msg = { method: 'GET', httpVersion: '1.1', headers: request({}).headers, rawHeaders: [] } as unknown as IncomingMessage;
    expect(validateUpgradeRequest(msg)).to.not.be.instanceOf(WebSocketError);
  });

  it("validates what Node's http server hands to an 'upgrade' listener for buildClientRequest", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const got = new Promise<IncomingMessage>((resolve) =>
        server.once('upgrade', (req: IncomingMessage, socket: Socket) => {
          socket.destroy();
          resolve(req);
        }),
      );
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(buildClientRequest({ host: `127.0.0.1:${port}`, path: '/x', key: RFC_KEY, protocols: ['a', 'b'], origin: 'http://o' }));
      const info = validateUpgradeRequest(await got) as UpgradeInfo;
      socket.destroy();
      expect(info).to.deep.equal({
        key: RFC_KEY,
        version: 13,
        protocols: ['a', 'b'],
        extensions: [],
        origin: 'http://o',
        host: `127.0.0.1:${port}`,
      });
    } finally {
      server.close();
    }
  });

  it('gathers protocols from several headers, in order, and parses extensions', () => {
    const req = parseHead(
      'GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n` +
        'Sec-WebSocket-Protocol: b\r\nSec-WebSocket-Protocol: a, c\r\n' +
        'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Extensions: x-y\r\n\r\n',
      'server',
    ) as UpgradeRequest;
    const info = validateUpgradeRequest(req) as UpgradeInfo;
    expect(info.protocols).to.deep.equal(['b', 'a', 'c']);
    expect(info.extensions).to.deep.equal([
      { name: 'permessage-deflate', params: [['client_max_window_bits', true]] },
      { name: 'x-y', params: [] },
    ]);
    expect(info.origin).to.equal(undefined);
  });

  it('accepts Connection "keep-alive, Upgrade", "UPGRADE", and Upgrade "WebSocket" or in a list', () => {
    for (const connection of ['keep-alive, Upgrade', 'UPGRADE', 'upgrade', 'Upgrade,keep-alive']) {
      expect(validateUpgradeRequest(request({ connection })), connection).to.not.be.instanceOf(WebSocketError);
    }
    for (const upgrade of ['WebSocket', 'WEBSOCKET', 'h2c, websocket']) {
      expect(validateUpgradeRequest(request({ upgrade })), upgrade).to.not.be.instanceOf(WebSocketError);
    }
  });

  it('accepts HTTP versions above 1.1', () => {
    expect(validateUpgradeRequest(request({}, { httpVersion: '1.2' }))).to.not.be.instanceOf(WebSocketError);
  });

  const D = '\0delete';
  const failures: Array<[string, UpgradeRequest, string, number, number, RegExp]> = [
    ['method POST', request({}, { method: 'POST' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /method/i],
    ['method get (methods are case-sensitive)', request({}, { method: 'get' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /method/i],
    ['HTTP/1.0', request({}, { httpVersion: '1.0' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /HTTP\/1\.1/],
    ['HTTP/0.9', request({}, { httpVersion: '0.9' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /HTTP\/1\.1/],
    ['no Host', request({ host: D }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Host/],
    ['no Upgrade', request({ upgrade: D }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Upgrade/],
    ['Upgrade: h2c', request({ upgrade: 'h2c' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Upgrade/],
    ['Upgrade: websockets', request({ upgrade: 'websockets' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Upgrade/],
    ['no Connection', request({ connection: D }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Connection/],
    ['Connection: keep-alive', request({ connection: 'keep-alive' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Connection/],
    ['no Sec-WebSocket-Version', request({ 'sec-websocket-version': D }), 'WS_ERR_UNSUPPORTED_VERSION', 1002, 426, /Version/],
    ['Sec-WebSocket-Version: 8', request({ 'sec-websocket-version': '8' }), 'WS_ERR_UNSUPPORTED_VERSION', 1002, 426, /8/],
    ['Sec-WebSocket-Version: 13, 8', request({ 'sec-websocket-version': '13, 8' }), 'WS_ERR_UNSUPPORTED_VERSION', 1002, 426, /Version/],
    ['Sec-WebSocket-Version: 013', request({ 'sec-websocket-version': '013' }), 'WS_ERR_UNSUPPORTED_VERSION', 1002, 426, /Version/],
    ['no Sec-WebSocket-Key', request({ 'sec-websocket-key': D }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/],
    ['a 15-byte key', request({ 'sec-websocket-key': b64(15) }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/],
    ['a 17-byte key', request({ 'sec-websocket-key': b64(17) }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/],
    ['a key that is not base64', request({ 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ!=' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/],
    ['a key without padding', request({ 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/],
    ['a key with non-zero pad bits', request({ 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZR==' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/],
    ['two keys (joined by the header rules)', request({ 'sec-websocket-key': `${RFC_KEY}, ${RFC_KEY}` }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/],
    ['an invalid subprotocol token', request({ 'sec-websocket-protocol': 'chat, super chat' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Protocol/],
    ['a repeated subprotocol', request({ 'sec-websocket-protocol': 'chat, chat' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Protocol/],
    ['an invalid extension list', request({ 'sec-websocket-extensions': 'permessage-deflate; =' }), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Extensions/],
  ];
  for (const [title, req, code, closeCode, status, detail] of failures) {
    it(`refuses ${title} with ${code} (${status})`, () => {
      expectError(validateUpgradeRequest(req), code, closeCode, status, detail);
    });
  }

  it('accepts a key exactly when it is canonical base64 of 16 bytes (decoding and encoding gives it back)', () => {
    const canonical = (key: string): boolean => /^[A-Za-z0-9+/]{22}==$/.test(key) && Buffer.from(key, 'base64').toString('base64') === key;
    const accepted = (key: string): boolean => !(validateUpgradeRequest(request({ 'sec-websocket-key': key })) instanceof WebSocketError);
    // Every last digit: only those with zero pad bits (A, Q, g, w) are canonical.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const lastDigits = [...alphabet].filter((digit) => accepted(`${'A'.repeat(21)}${digit}==`));
    expect(lastDigits).to.deep.equal(['A', 'Q', 'g', 'w']);
    const chars = fc.constantFrom(...alphabet, '=', '-', '_', ' ', '\u00e9', '\u0100', 'A', 'Q', 'g', 'w');
    fc.assert(
      fc.property(fc.array(chars, { minLength: 20, maxLength: 26 }), fc.boolean(), (digits, pad) => {
        const key = pad ? `${digits.slice(0, 22).join('')}==` : digits.join('');
        expect(accepted(key), JSON.stringify(key)).to.equal(canonical(key));
      }),
      { seed: 6455, numRuns: 2000 },
    );
  });

  it('treats Upgrade and Connection values case-insensitively, as one token or in a list', () => {
    const pairs: Array<[string, string]> = [['WebSocket', 'upgrade'], ['websocket', 'keep-alive, Upgrade'], ['h2c, websocket', 'UPGRADE'], [' websocket ', 'Upgrade\t']];
    for (const [upgrade, connection] of pairs) {
      expect(validateUpgradeRequest(request({ upgrade, connection })), `${upgrade} / ${connection}`).to.not.be.instanceOf(WebSocketError);
    }
  });

  it('accepts HTTP/1.2 and HTTP/2.0 request versions (1.1 or later)', () => {
    for (const httpVersion of ['1.2', '2.0', '10.0']) {
      expect(validateUpgradeRequest(request({}, { httpVersion }))).to.not.be.instanceOf(WebSocketError);
    }
  });

  it('refuses two Sec-WebSocket-Key lines seen in rawHeaders', () => {
    const req = request({});
    req.rawHeaders = ['Sec-WebSocket-Key', RFC_KEY, 'sec-websocket-key', RFC_KEY];
    expectError(validateUpgradeRequest(req), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Sec-WebSocket-Key/);
  });
});

describe('buildAcceptResponse (RFC 6455 §4.2.2)', () => {
  it('builds the RFC 6455 §1.2 response', () => {
    expect(buildAcceptResponse({ key: RFC_KEY, protocol: 'chat' })).to.equal(
      'HTTP/1.1 101 Switching Protocols\r\n' +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${RFC_ACCEPT}\r\n` +
        'Sec-WebSocket-Protocol: chat\r\n' +
        '\r\n',
    );
  });

  it('adds extensions and extra headers, repeating array values', () => {
    const text = buildAcceptResponse({
      key: RFC_KEY,
      extensions: 'permessage-deflate; server_max_window_bits=10',
      headers: { 'Set-Cookie': ['a=1', 'b=2'], 'X-Server': 'wspipe' },
    });
    expect(text).to.equal(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${RFC_ACCEPT}\r\n` +
        'Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n' +
        'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Server: wspipe\r\n\r\n',
    );
  });

  it('is accepted by validateUpgradeResponse once parsed', () => {
    const res = parseHead(buildAcceptResponse({ key: RFC_KEY, protocol: 'chat' }), 'client') as UpgradeResponse;
    expect(validateUpgradeResponse(res, { key: RFC_KEY, protocols: ['superchat', 'chat'], extensions: [] })).to.deep.equal({
      protocol: 'chat',
      extensions: [],
    });
  });

  it('refuses header injection with a TypeError', () => {
    expect(() => buildAcceptResponse({ key: RFC_KEY, protocol: 'chat\r\nX-Evil: 1' })).to.throw(TypeError);
    expect(() => buildAcceptResponse({ key: RFC_KEY, extensions: 'a\nb' })).to.throw(TypeError);
    expect(() => buildAcceptResponse({ key: RFC_KEY, headers: { 'X-A': 'ok\r\n\r\nHTTP/1.1 200' } })).to.throw(TypeError);
    expect(() => buildAcceptResponse({ key: RFC_KEY, headers: { 'X-A\r\nX-B': 'v' } })).to.throw(TypeError);
    expect(() => buildAcceptResponse({ key: RFC_KEY, headers: { 'X-A': ['ok', 'bad\r'] } })).to.throw(TypeError);
  });
});

describe('buildRejectResponse', () => {
  it('builds a complete response that closes the connection', () => {
    const text = buildRejectResponse(400, { message: 'Missing Sec-WebSocket-Key' });
    expect(text).to.equal(
      'HTTP/1.1 400 Bad Request\r\n' +
        'Connection: close\r\n' +
        'Content-Type: text/plain; charset=utf-8\r\n' +
        'Content-Length: 25\r\n' +
        '\r\n' +
        'Missing Sec-WebSocket-Key',
    );
  });

  it('defaults the body to the reason phrase and counts bytes, not characters', () => {
    expect(buildRejectResponse(403)).to.match(/^HTTP\/1\.1 403 Forbidden\r\n[^]*Content-Length: 9\r\n\r\nForbidden$/);
    expect(buildRejectResponse(400, { message: 'é' })).to.match(/Content-Length: 2\r\n\r\né$/);
  });

  it('includes Sec-WebSocket-Version: 13 in a 426 (RFC 6455 §4.2.2, §4.4)', () => {
    const text = buildRejectResponse(426);
    expect(text).to.match(/^HTTP\/1\.1 426 Upgrade Required\r\n/);
    const res = parseHead(text.slice(0, text.indexOf('\r\n\r\n') + 4), 'client') as UpgradeResponse;
    expect(res.headers['sec-websocket-version']).to.equal('13');
    // RFC 9110 §15.5.22: a 426 MUST send Upgrade; §7.8: Connection then lists "upgrade".
    expect(res.headers['upgrade']).to.equal('websocket');
    expect(res.headers['connection']).to.equal('Upgrade, close');
    expect(buildRejectResponse(400)).to.not.match(/Sec-WebSocket-Version|Upgrade:/);
  });

  it('builds the answer to each handshake error from its status', () => {
    const err = validateUpgradeRequest(request({ 'sec-websocket-version': '8' })) as WebSocketError;
    const text = buildRejectResponse(err.status!, { message: err.message });
    expect(text).to.match(/^HTTP\/1\.1 426 /);
    expect(text).to.match(/Sec-WebSocket-Version: 13\r\n/);
  });

  it('adds extra headers and refuses injection', () => {
    expect(buildRejectResponse(401, { headers: { 'WWW-Authenticate': 'Basic' } })).to.match(/\r\nWWW-Authenticate: Basic\r\n/);
    expect(() => buildRejectResponse(401, { headers: { 'X-A': 'a\r\nb' } })).to.throw(TypeError);
    expect(() => buildRejectResponse(40)).to.throw(TypeError);
    expect(() => buildRejectResponse(400.5)).to.throw(TypeError);
  });
});

describe('extra headers that the builders set themselves', () => {
  it('buildRejectResponse lets Content-Type and Sec-WebSocket-Version be replaced, not Connection or Content-Length', () => {
    const text = buildRejectResponse(426, { message: '{}', headers: { 'Content-Type': 'application/json', 'Sec-WebSocket-Version': '13, 8' } });
    expect(text.match(/Content-Type/g)).to.have.length(1);
    expect(text).to.match(/\r\nContent-Type: application\/json\r\n/);
    expect(text.match(/Sec-WebSocket-Version/g)).to.have.length(1);
    expect(text).to.match(/\r\nSec-WebSocket-Version: 13, 8\r\n/);
    expect(() => buildRejectResponse(400, { headers: { connection: 'keep-alive' } })).to.throw(TypeError);
    expect(() => buildRejectResponse(400, { headers: { 'Content-Length': '0' } })).to.throw(TypeError);
  });

  it('buildAcceptResponse and buildClientRequest refuse duplicates of their own headers', () => {
    expect(() => buildAcceptResponse({ key: RFC_KEY, headers: { 'Sec-WebSocket-Accept': 'x' } })).to.throw(TypeError);
    expect(() => buildAcceptResponse({ key: RFC_KEY, headers: { upgrade: 'h2c' } })).to.throw(TypeError);
    expect(() => buildClientRequest({ host: 'h', path: '/', key: RFC_KEY, headers: { Host: 'other' } })).to.throw(TypeError);
    expect(() => buildClientRequest({ host: 'h', path: '/', key: RFC_KEY, headers: { 'sec-websocket-key': 'x' } })).to.throw(TypeError);
  });
});

describe('selectProtocol', () => {
  it('picks the first offered protocol the server supports', () => {
    expect(selectProtocol(['superchat', 'chat'], ['chat', 'superchat'])).to.equal('chat'); // the server's order
    expect(selectProtocol(['a', 'chat'], ['chat'])).to.equal('chat');
    expect(selectProtocol(['a'], ['chat'])).to.equal(undefined);
    expect(selectProtocol([], ['chat'])).to.equal(undefined);
  });

  it('is case-sensitive', () => {
    expect(selectProtocol(['Chat'], ['chat'])).to.equal(undefined);
  });

  it('uses a callback but never returns a protocol that was not offered', () => {
    expect(selectProtocol(['a', 'b'], (offered) => offered[1])).to.equal('b');
    expect(selectProtocol(['a', 'b'], () => 'c')).to.equal(undefined);
    expect(selectProtocol(['a', 'b'], () => false)).to.equal(undefined);
    expect(selectProtocol([], () => 'c')).to.equal(undefined);
  });
});

describe('buildClientRequest (RFC 6455 §4.1)', () => {
  it('builds a request that validateUpgradeRequest accepts', () => {
    const text = buildClientRequest({
      host: 'server.example.com:8080',
      path: '/chat?x=1',
      key: RFC_KEY,
      protocols: ['chat', 'superchat'],
      extensions: 'permessage-deflate; client_max_window_bits',
      origin: 'http://example.com',
      headers: { 'X-Client': 'wspipe' },
    });
    expect(text).to.equal(
      'GET /chat?x=1 HTTP/1.1\r\n' +
        'Host: server.example.com:8080\r\n' +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${RFC_KEY}\r\n` +
        'Sec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Protocol: chat, superchat\r\n' +
        'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' +
        'Origin: http://example.com\r\n' +
        'X-Client: wspipe\r\n' +
        '\r\n',
    );
    const info = validateUpgradeRequest(parseHead(text, 'server') as UpgradeRequest) as UpgradeInfo;
    expect(info.protocols).to.deep.equal(['chat', 'superchat']);
    expect(info.host).to.equal('server.example.com:8080');
    expect(info.extensions).to.deep.equal([{ name: 'permessage-deflate', params: [['client_max_window_bits', true]] }]);
  });

  it('omits empty optional headers', () => {
    const text = buildClientRequest({ host: 'h', path: '/', key: RFC_KEY, protocols: [] });
    expect(text).to.not.match(/Sec-WebSocket-Protocol|Extensions|Origin/);
  });

  it('refuses injection and invalid values with a TypeError', () => {
    const base = { host: 'h', path: '/', key: RFC_KEY };
    expect(() => buildClientRequest({ ...base, path: '/a b' })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, path: '/\r\nX: 1' })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, path: 'a' })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, host: 'h\r\nX: 1' })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, host: '' })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, origin: 'o\n' })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, protocols: ['a b'] })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, protocols: ['a', 'a'] })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, extensions: 'x\r\n' })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, headers: { 'X-A': 'a\rb' } })).to.throw(TypeError);
    expect(() => buildClientRequest({ ...base, headers: { 'X A': 'v' } })).to.throw(TypeError);
  });
});

describe('validateUpgradeResponse (RFC 6455 §4.1, client side)', () => {
  function response(lines: string[], status = '101 Switching Protocols'): UpgradeResponse {
    return parseHead(`HTTP/1.1 ${status}\r\n${lines.join('\r\n')}\r\n\r\n`, 'client') as UpgradeResponse;
  }
  const good = ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${RFC_ACCEPT}`];
  const offer = { key: RFC_KEY, protocols: ['chat', 'superchat'], extensions: [] as ExtensionOffer[] };

  it('accepts the RFC 6455 §1.2 response', () => {
    expect(validateUpgradeResponse(response([...good, 'Sec-WebSocket-Protocol: chat']), offer)).to.deep.equal({
      protocol: 'chat',
      extensions: [],
    });
  });

  it('accepts no subprotocol when some were offered', () => {
    expect(validateUpgradeResponse(response(good), offer)).to.deep.equal({ protocol: undefined, extensions: [] });
  });

  it('accepts token lists and any case in Upgrade and Connection', () => {
    const res = response(['Upgrade: WebSocket', 'Connection: keep-alive, UPGRADE', `Sec-WebSocket-Accept: ${RFC_ACCEPT}`]);
    expect(validateUpgradeResponse(res, offer)).to.not.be.instanceOf(WebSocketError);
  });

  it('returns the extensions the server accepted among those offered', () => {
    const offered = parseExtensions('permessage-deflate; client_max_window_bits, x-other') as ExtensionOffer[];
    const res = response([...good, 'Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10']);
    expect(validateUpgradeResponse(res, { ...offer, extensions: offered })).to.deep.equal({
      protocol: undefined,
      extensions: [{ name: 'permessage-deflate', params: [['server_max_window_bits', '10']] }],
    });
  });

  it('refuses a status other than 101 with WS_ERR_HANDSHAKE_REJECTED, naming the status', () => {
    expectError(validateUpgradeResponse(response(good, '200 OK'), offer), 'WS_ERR_HANDSHAKE_REJECTED', 1002, undefined, /200/);
    expectError(
      validateUpgradeResponse(response(['Sec-WebSocket-Version: 13'], '426 Upgrade Required'), offer),
      'WS_ERR_HANDSHAKE_REJECTED', 1002, undefined, /426/,
    );
  });

  it('refuses a missing or wrong Upgrade or Connection', () => {
    const accept = `Sec-WebSocket-Accept: ${RFC_ACCEPT}`;
    expectError(validateUpgradeResponse(response(['Connection: Upgrade', accept]), offer), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Upgrade/);
    expectError(validateUpgradeResponse(response(['Upgrade: h2c', 'Connection: Upgrade', accept]), offer), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Upgrade/);
    expectError(validateUpgradeResponse(response(['Upgrade: websocket', accept]), offer), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Connection/);
    expectError(validateUpgradeResponse(response(['Upgrade: websocket', 'Connection: close', accept]), offer), 'WS_ERR_INVALID_HANDSHAKE', 1002, 400, /Connection/);
  });

  it('refuses a missing or wrong Sec-WebSocket-Accept with WS_ERR_INVALID_ACCEPT', () => {
    expectError(validateUpgradeResponse(response(good.slice(0, 2)), offer), 'WS_ERR_INVALID_ACCEPT', 1002, undefined);
    expectError(
      validateUpgradeResponse(response(good), { ...offer, key: generateKey() }),
      'WS_ERR_INVALID_ACCEPT', 1002, undefined,
    );
    expectError(
      validateUpgradeResponse(response([...good, `Sec-WebSocket-Accept: ${RFC_ACCEPT}`]), offer),
      'WS_ERR_INVALID_ACCEPT', 1002, undefined,
    );
  });

  it('refuses a subprotocol that was not offered with WS_ERR_INVALID_SUBPROTOCOL', () => {
    expectError(validateUpgradeResponse(response([...good, 'Sec-WebSocket-Protocol: other']), offer), 'WS_ERR_INVALID_SUBPROTOCOL', 1002, undefined, /other/);
    expectError(
      validateUpgradeResponse(response([...good, 'Sec-WebSocket-Protocol: chat']), { ...offer, protocols: [] }),
      'WS_ERR_INVALID_SUBPROTOCOL', 1002, undefined,
    );
    expectError(
      validateUpgradeResponse(response([...good, 'Sec-WebSocket-Protocol: chat, superchat']), offer),
      'WS_ERR_INVALID_SUBPROTOCOL', 1002, undefined,
    );
    expectError(validateUpgradeResponse(response([...good, 'Sec-WebSocket-Protocol: CHAT']), offer), 'WS_ERR_INVALID_SUBPROTOCOL', 1002, undefined);
  });

  it('refuses an extension that was not offered, or an invalid extension header, with WS_ERR_INVALID_EXTENSION', () => {
    expectError(
      validateUpgradeResponse(response([...good, 'Sec-WebSocket-Extensions: permessage-deflate']), offer),
      'WS_ERR_INVALID_EXTENSION', 1010, undefined, /permessage-deflate/,
    );
    expectError(
      validateUpgradeResponse(response([...good, 'Sec-WebSocket-Extensions: permessage-deflate; a=']), {
        ...offer,
        extensions: [{ name: 'permessage-deflate', params: [] }],
      }),
      'WS_ERR_INVALID_EXTENSION', 1010, undefined,
    );
  });
});

describe('errors: a peer\'s bad input is a WebSocketError, an application\'s bad argument throws with a code', () => {
  const headerMap = fc.dictionary(
    fc.constantFrom('upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions', 'sec-websocket-accept', 'host', 'origin'),
    fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 3 })),
  );

  it('validateUpgradeRequest, validateUpgradeResponse and parseExtensions never throw on what a peer sends (fast-check)', () => {
    fc.assert(
      fc.property(headerMap, fc.string(), fc.string(), fc.integer({ min: 100, max: 599 }), (headers, method, url, status) => {
        const req = validateUpgradeRequest({ method, httpVersion: url === '' ? '1.0' : '1.1', headers: headers as HeaderMap });
        expect(req instanceof WebSocketError || typeof req === 'object').to.equal(true);
        const offer = { key: RFC_KEY, protocols: ['chat'], extensions: [{ name: 'permessage-deflate', params: [] }] };
        const res = validateUpgradeResponse({ statusCode: status, statusMessage: '', headers: headers as HeaderMap }, offer);
        expect(res instanceof WebSocketError || typeof res === 'object').to.equal(true);
        for (const value of Object.values(headers)) {
          for (const one of typeof value === 'string' ? [value] : value) {
            const parsed = parseExtensions(one);
            expect(parsed instanceof WebSocketError || Array.isArray(parsed)).to.equal(true);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('the HandshakeParser core returns a WebSocketError for any bytes, never throws (fast-check)', () => {
    fc.assert(
      fc.property(fc.constantFrom<'server' | 'client'>('server', 'client'), fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (role, chunks) => {
        const core = new HandshakeParserCore({ role, maxHeaderSize: 256 }, { onHead: () => {}, onData: () => {} });
        for (const chunk of chunks) {
          const err = core.write(Buffer.from(chunk));
          expect(err === null || err instanceof WebSocketError).to.equal(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('the builders throw a TypeError with the code WS_ERR_INVALID_ARGUMENT for values the application passed', () => {
    const calls: Array<() => unknown> = [
      () => buildAcceptResponse({ key: RFC_KEY, protocol: 'chat\r\nX-Evil: 1' }),
      () => buildAcceptResponse({ key: RFC_KEY, headers: { 'X-A': 'a\r\nb' } }),
      () => buildAcceptResponse({ key: RFC_KEY, headers: { Upgrade: 'x' } }),
      () => buildRejectResponse(40),
      () => buildClientRequest({ host: 'a b', path: '/', key: RFC_KEY }),
      () => buildClientRequest({ host: 'h', path: 'x', key: RFC_KEY }),
      () => buildClientRequest({ host: 'h', path: '/', key: RFC_KEY, protocols: ['a', 'a'] }),
      () => formatExtensions([{ name: 'a b', params: [] }]),
    ];
    for (const call of calls) {
      expect(call).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
    }
  });
});
