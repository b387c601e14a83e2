/**
 * Where the proxy connects: the configured target decides scheme, host and port; the client's
 * request-target contributes at most a path and a query (origin-form, RFC 9112 §3.2.1), and any
 * other form is refused before an upstream is dialled.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { isWebSocketError } from '../../lib/protocol/errors';
import { resolveUpstream } from '../../lib/proxy/target';

const CONFIGURED = new URL('ws://upstream.test:9000/');

describe('proxy request-target (resolveUpstream)', () => {
  describe('a target with path "/" and no query takes the client\'s path and query', () => {
    for (const [requestTarget, path] of [
      ['/', '/'],
      ['/chat', '/chat'],
      ['/chat?room=1&x=%20', '/chat?room=1&x=%20'],
      ['//', '//'],
      ['//evil.test:1/p', '//evil.test:1/p'],
      ['/a/../b', '/a/../b'],
      ['/@evil.test', '/@evil.test'],
    ] as const) {
      it(`${JSON.stringify(requestTarget)} -> upstream.test:9000 ${JSON.stringify(path)}`, () => {
        const got = resolveUpstream(CONFIGURED, requestTarget, true);
        if (isWebSocketError(got)) throw got;
        expect(got.url.host).to.equal('upstream.test:9000');
        expect(got.url.protocol).to.equal('ws:');
        expect(got.path).to.equal(path);
      });
    }
  });

  describe('any request-target that is not origin-form is refused with 400', () => {
    for (const requestTarget of [
      'ws://evil.test:1/p',
      'wss://evil.test/p',
      'http://evil.test:1/p',
      'HTTP://evil.test/p',
      'evil.test:1',
      '*',
      '',
      'chat',
      '/chat#frag',
      '/ch at',
      '/\\evil.test/p',
      '/caf\u00e9',
      '/a\u0000b',
    ]) {
      it(JSON.stringify(requestTarget), () => {
        const got = resolveUpstream(CONFIGURED, requestTarget, true);
        expect(isWebSocketError(got)).to.equal(true);
        if (!isWebSocketError(got)) return;
        expect(got.code).to.equal('WS_ERR_INVALID_HANDSHAKE');
        expect(got.status).to.equal(400);
      });
    }
  });

  it("a target with its own path keeps it, and still refuses a request-target that is not origin-form", () => {
    const fixed = new URL('wss://upstream.test/api/ws?v=2');
    const got = resolveUpstream(fixed, '/other?q', false);
    if (isWebSocketError(got)) throw got;
    expect(got.url.host).to.equal('upstream.test');
    expect(got.path).to.equal('/api/ws?v=2');
    expect(isWebSocketError(resolveUpstream(fixed, 'ws://evil.test/', false))).to.equal(true);
  });

  it("a target that is not ws:// or wss:// is the application's error (WS_ERR_INVALID_ARGUMENT), whatever the client sent", () => {
    const got = resolveUpstream(new URL('http://upstream.test/'), '/', true);
    expect(isWebSocketError(got) && got.code).to.equal('WS_ERR_INVALID_ARGUMENT');
  });

  it('fuzz: whatever the request-target, the upstream is the configured scheme, host and port, and the path is the target itself', () => {
    const targetChar = fc.constantFrom(...'/?#@:\\%.-_~!$&\'()*+,;=[] \t\u0000azAZ09'.split(''), 'ws://', 'http://', '//', '\u00e9');
    fc.assert(
      fc.property(fc.array(targetChar, { maxLength: 24 }).map((a) => a.join('')), fc.boolean(), (requestTarget, append) => {
        for (const configured of [CONFIGURED, new URL('wss://[::1]:8443/'), new URL('ws://upstream.test/fixed?x=1')]) {
          const got = resolveUpstream(configured, requestTarget, append);
          if (isWebSocketError(got)) {
            expect(got.code).to.equal('WS_ERR_INVALID_HANDSHAKE');
            continue;
          }
          expect(got.url.protocol).to.equal(configured.protocol);
          expect(got.url.host).to.equal(configured.host);
          expect(got.url.port).to.equal(configured.port);
          expect(requestTarget.startsWith('/')).to.equal(true);
          expect(got.path).to.equal(append ? requestTarget : `${configured.pathname}${configured.search}`);
          expect(got.path).to.match(/^\/[\x21-\x7e]*$/);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
