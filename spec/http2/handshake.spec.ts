/**
 * The RFC 8441 opening handshake as pure functions: the extended CONNECT a server accepts
 * (§4, §5), the answers it builds, and the client's request and its check of the answer.
 */
import { expect } from 'chai';
import {
  buildConnectAnswer,
  buildConnectRefusal,
  buildConnectRequest,
  isWebSocketConnect,
  toUpgradeRequest,
  validateConnectRequest,
  validateConnectResponse,
} from '../../lib/http2/handshake';
import { isWebSocketError, WebSocketError } from '../../lib';
import type { HeaderMap } from '../../lib/handshake/handshake-parser';

/** What Chromium 156 sent for `new WebSocket('wss://localhost:port/ws')` (seen in this session). */
function chromiumRequest(extra: HeaderMap = {}): HeaderMap {
  return {
    ':method': 'CONNECT',
    ':authority': 'localhost:8443',
    ':scheme': 'https',
    ':path': '/ws',
    ':protocol': 'websocket',
    origin: 'https://localhost:8443',
    'sec-websocket-version': '13',
    'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits',
    ...extra,
  };
}

function expectRefused(result: unknown, status: number, code = 'WS_ERR_INVALID_HANDSHAKE'): void {
  expect(isWebSocketError(result), String(result)).to.equal(true);
  expect((result as WebSocketError).code).to.equal(code);
  expect((result as WebSocketError).status).to.equal(status);
}

describe('http2/handshake', () => {
  describe('RFC 8441 §4: the extended CONNECT request', () => {
    it('accepts what Chromium sends: no key, the offer as in HTTP/1.1', () => {
      const info = validateConnectRequest(chromiumRequest({ 'sec-websocket-protocol': 'chat, superchat' }));
      if (isWebSocketError(info)) throw info;
      expect(info.key).to.equal('');
      expect(info.version).to.equal(13);
      expect(info.protocols).to.deep.equal(['chat', 'superchat']);
      expect(info.extensions).to.deep.equal([{ name: 'permessage-deflate', params: [['client_max_window_bits', true]] }]);
      expect(info.origin).to.equal('https://localhost:8443');
      expect(info.host).to.equal('localhost:8443');
    });

    it('§5: ignores a Sec-WebSocket-Key (not processed, superseded by :protocol)', () => {
      expect(isWebSocketError(validateConnectRequest(chromiumRequest({ 'sec-websocket-key': 'not even base64' })))).to.equal(false);
    });

    it('takes "websocket" in :protocol case-insensitively, as an upgrade token', () => {
      expect(isWebSocketConnect(chromiumRequest({ ':protocol': 'WebSocket' }))).to.equal(true);
      expect(isWebSocketError(validateConnectRequest(chromiumRequest({ ':protocol': 'WebSocket' })))).to.equal(false);
    });

    it('is not a WebSocket request without CONNECT or without :protocol websocket', () => {
      expect(isWebSocketConnect(chromiumRequest({ ':method': 'GET' }))).to.equal(false);
      expect(isWebSocketConnect(chromiumRequest({ ':protocol': 'webtransport' }))).to.equal(false);
      const plainConnect = chromiumRequest();
      delete plainConnect[':protocol'];
      expect(isWebSocketConnect(plainConnect)).to.equal(false);
    });

    it('refuses a method other than CONNECT, and a missing :protocol, with 400', () => {
      expectRefused(validateConnectRequest(chromiumRequest({ ':method': 'GET' })), 400);
      const noProtocol = chromiumRequest();
      delete noProtocol[':protocol'];
      expectRefused(validateConnectRequest(noProtocol), 400);
    });

    it('refuses another :protocol with 501', () => {
      expectRefused(validateConnectRequest(chromiumRequest({ ':protocol': 'connect-udp' })), 501);
    });

    it('"the :scheme and :path pseudo-header fields ... MUST also be included"', () => {
      for (const name of [':scheme', ':path', ':authority']) {
        const request = chromiumRequest();
        delete request[name];
        expectRefused(validateConnectRequest(request), 400);
      }
    });

    it('refuses a :path that is not a path, a :scheme other than http(s), userinfo in :authority', () => {
      expectRefused(validateConnectRequest(chromiumRequest({ ':path': '*' })), 400);
      expectRefused(validateConnectRequest(chromiumRequest({ ':path': 'ws' })), 400);
      expectRefused(validateConnectRequest(chromiumRequest({ ':path': '/a b' })), 400);
      expectRefused(validateConnectRequest(chromiumRequest({ ':scheme': 'wss' })), 400);
      expectRefused(validateConnectRequest(chromiumRequest({ ':authority': 'user@localhost' })), 400);
    });

    it('Sec-WebSocket-Version must still be 13 (missing or other: WS_ERR_UNSUPPORTED_VERSION)', () => {
      const missing = chromiumRequest();
      delete missing['sec-websocket-version'];
      expect((validateConnectRequest(missing) as WebSocketError).code).to.equal('WS_ERR_UNSUPPORTED_VERSION');
      expect((validateConnectRequest(chromiumRequest({ 'sec-websocket-version': '8' })) as WebSocketError).code).to.equal('WS_ERR_UNSUPPORTED_VERSION');
    });

    it('subprotocols and extensions follow RFC 6455: invalid or repeated elements are refused', () => {
      expectRefused(validateConnectRequest(chromiumRequest({ 'sec-websocket-protocol': 'chat, chat' })), 400);
      expectRefused(validateConnectRequest(chromiumRequest({ 'sec-websocket-protocol': 'a/b' })), 400);
      expectRefused(validateConnectRequest(chromiumRequest({ 'sec-websocket-extensions': 'permessage-deflate; =' })), 400);
    });

    it('toUpgradeRequest gives hooks an HTTP/1.1-shaped request: CONNECT, the :path, "2.0", a host', () => {
      const req = toUpgradeRequest(chromiumRequest(), [':method', 'CONNECT']);
      expect(req).to.include({ method: 'CONNECT', url: '/ws', httpVersion: '2.0' });
      expect(req.headers.host).to.equal('localhost:8443');
      expect(req.headers[':protocol']).to.equal('websocket');
      expect(req.rawHeaders).to.deep.equal([':method', 'CONNECT']);
    });
  });

  describe('RFC 8441 §5: the answers', () => {
    it('success is 200 with the chosen subprotocol and extensions, never Sec-WebSocket-Accept', () => {
      const answer = buildConnectAnswer({ protocol: 'chat', extensions: 'permessage-deflate' });
      expect(answer).to.deep.equal({ ':status': 200, 'sec-websocket-protocol': 'chat', 'sec-websocket-extensions': 'permessage-deflate' });
      expect(buildConnectAnswer({})).to.deep.equal({ ':status': 200 });
    });

    it('a refusal carries its status, and Sec-WebSocket-Version: 13 for a version error', () => {
      expect(buildConnectRefusal(403, { 'x-why': 'origin' })).to.deep.equal({ ':status': 403, 'content-type': 'text/plain; charset=utf-8', 'x-why': 'origin' });
      expect(buildConnectRefusal(400, undefined, true)).to.include({ ':status': 400, 'sec-websocket-version': '13' });
    });

    it('an extra header may not replace the handshake\'s own, nor carry CR/LF', () => {
      expect(() => buildConnectAnswer({ headers: { 'Sec-WebSocket-Protocol': 'x' } })).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => buildConnectAnswer({ headers: { 'x-a': 'b\r\nc: d' } })).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
    });
  });

  describe('the client', () => {
    it('sends CONNECT, :protocol websocket, :scheme, :authority, :path and version 13, no key', () => {
      const request = buildConnectRequest({
        scheme: 'https',
        authority: 'example.com:8443',
        path: '/chat?room=1',
        protocols: ['a', 'b'],
        extensions: 'permessage-deflate',
        origin: 'https://example.com',
        headers: { Authorization: 'Bearer x' },
      });
      expect(request).to.deep.equal({
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'https',
        ':authority': 'example.com:8443',
        ':path': '/chat?room=1',
        'sec-websocket-version': '13',
        'sec-websocket-protocol': 'a, b',
        'sec-websocket-extensions': 'permessage-deflate',
        origin: 'https://example.com',
        authorization: 'Bearer x',
      });
    });

    it('refuses connection-specific header fields (RFC 9113 §8.2.2) and a key', () => {
      for (const name of ['Connection', 'Upgrade', 'Sec-WebSocket-Key', 'Transfer-Encoding']) {
        expect(() => buildConnectRequest({ scheme: 'https', authority: 'a', path: '/', headers: { [name]: 'x' } }), name).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      }
      expect(() => buildConnectRequest({ scheme: 'https', authority: 'a', path: '/', protocols: ['x', 'x'] })).to.throw(TypeError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
    });

    it('takes any 2xx (RFC 9110 §9.3.6), refuses other statuses', () => {
      const offer = { protocols: [], extensions: [] };
      expect(isWebSocketError(validateConnectResponse({ ':status': '200' }, offer))).to.equal(false);
      expect(isWebSocketError(validateConnectResponse({ ':status': '204' }, offer))).to.equal(false);
      for (const status of ['101', '400', '403', '500']) {
        expect((validateConnectResponse({ ':status': status }, offer) as WebSocketError).code).to.equal('WS_ERR_HANDSHAKE_REJECTED');
      }
    });

    it('fails on a subprotocol or an extension that was not offered', () => {
      const offer = { protocols: ['chat'], extensions: [{ name: 'permessage-deflate', params: [] }] };
      const chosen = validateConnectResponse({ ':status': '200', 'sec-websocket-protocol': 'chat', 'sec-websocket-extensions': 'permessage-deflate' }, offer);
      expect(chosen).to.deep.equal({ protocol: 'chat', extensions: [{ name: 'permessage-deflate', params: [] }] });
      expect((validateConnectResponse({ ':status': '200', 'sec-websocket-protocol': 'other' }, offer) as WebSocketError).code).to.equal('WS_ERR_INVALID_SUBPROTOCOL');
      expect((validateConnectResponse({ ':status': '200', 'sec-websocket-extensions': 'x-other' }, offer) as WebSocketError).code).to.equal('WS_ERR_INVALID_EXTENSION');
    });
  });
});
