/**
 * Call forms that users bring from ws (its doc/ws.md) and from the browser: each one works, or
 * fails at the call with a clear error; none is silently ignored.
 */
import { expect } from 'chai';
import * as net from 'node:net';
import { WebSocketError } from '../../lib';
import { Transport, WebSocket } from '../../lib/connection/websocket';
import { hex, readBytes, socketPair } from '../helpers/sockets';

const UNMASKED_PING_HELLO = hex('89 05 48 65 6c 6c 6f');
const UNMASKED_PONG_HELLO = hex('8a 05 48 65 6c 6c 6f');
const UNMASKED_TEXT_HELLO = hex('81 05 48 65 6c 6c 6f');

async function serverSide(): Promise<{ ws: WebSocket; peer: net.Socket }> {
  const [a, b] = await socketPair();
  const ws = new WebSocket('server', {});
  ws.attach(a as Transport, null, { protocol: '', extensions: '' });
  return { ws, peer: b };
}

function callback(): { promise: Promise<Error | null | undefined>; cb: (err?: Error | null) => void } {
  let cb!: (err?: Error | null) => void;
  const promise = new Promise<Error | null | undefined>((resolve) => {
    cb = resolve;
  });
  return { promise, cb };
}

describe('WebSocket: call forms from ws', () => {
  it('send(data, cb): the callback as second argument is called once the message is out', async () => {
    const { ws, peer } = await serverSide();
    const bytes = readBytes(peer, UNMASKED_TEXT_HELLO.length);
    const { promise, cb } = callback();
    ws.send('Hello', cb);
    expect(await promise).to.equal(null);
    expect(await bytes).to.deep.equal(UNMASKED_TEXT_HELLO);
    ws.terminate();
  });

  it('send(data, options, cb) still works', async () => {
    const { ws, peer } = await serverSide();
    const bytes = readBytes(peer, 7);
    const { promise, cb } = callback();
    ws.send('Hello', { binary: true }, cb);
    expect(await promise).to.equal(null);
    expect((await bytes)[0]).to.equal(0x82);
    ws.terminate();
  });

  it('send(data, cb) after close(): the callback gets an error', async () => {
    const { ws } = await serverSide();
    ws.close();
    const { promise, cb } = callback();
    ws.send('late', cb);
    const err = await promise;
    expect(err).to.be.instanceOf(WebSocketError);
    expect((err as WebSocketError).code).to.equal('WS_ERR_INVALID_STATE');
    ws.terminate();
  });

  for (const kind of ['ping', 'pong'] as const) {
    const expected = kind === 'ping' ? UNMASKED_PING_HELLO : UNMASKED_PONG_HELLO;

    it(`${kind}(data, mask, cb) sends the frame and calls cb`, async () => {
      const { ws, peer } = await serverSide();
      const bytes = readBytes(peer, expected.length);
      const { promise, cb } = callback();
      ws[kind]('Hello', false, cb);
      expect(await promise).to.equal(null);
      expect(await bytes).to.deep.equal(expected);
      ws.terminate();
    });

    it(`${kind}(data, cb) and ${kind}(cb) call cb`, async () => {
      const { ws, peer } = await serverSide();
      const bytes = readBytes(peer, expected.length + 2);
      const first = callback();
      const second = callback();
      ws[kind]('Hello', first.cb);
      ws[kind](second.cb);
      expect(await first.promise).to.equal(null);
      expect(await second.promise).to.equal(null);
      expect(await bytes).to.deep.equal(Buffer.concat([expected, Buffer.from([expected[0]!, 0])]));
      ws.terminate();
    });

    it(`${kind}(data, mask, cb) once closing: cb gets an error instead of a throw`, async () => {
      const { ws } = await serverSide();
      ws.close();
      const { promise, cb } = callback();
      expect(() => ws[kind]('x', undefined, cb)).not.to.throw();
      const err = await promise;
      expect((err as WebSocketError).code).to.equal('WS_ERR_INVALID_STATE');
      ws.terminate();
    });

    it(`${kind}() over 125 bytes throws at the call, even with a callback`, async () => {
      const { ws } = await serverSide();
      expect(() => ws[kind](Buffer.alloc(126), false, () => {})).to.throw(WebSocketError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      ws.terminate();
    });
  }

  describe('new WebSocket(url)', () => {
    for (const url of ['ws://127.0.0.1:1/', new URL('ws://127.0.0.1:1/')]) {
      it(`throws a TypeError naming connect() for ${typeof url === 'string' ? 'a URL string' : 'a URL object'}`, () => {
        const make = (): unknown => new WebSocket(url as unknown as 'client');
        expect(make).to.throw(TypeError, /connect\(\)/).with.property('code', 'ERR_INVALID_ARG_VALUE');
        expect(make).to.throw(/wspipe\/ws/);
      });
    }

    it("keeps the library's own role form", () => {
      expect(new WebSocket('client').role).to.equal('client');
      expect(new WebSocket('server').role).to.equal('server');
    });
  });
});
