/**
 * reconnecting(): the backoff arithmetic, and the iteration against real loopback servers (a
 * server that goes away with 1001, one that says 1000, a port nobody listens on), with the
 * timer and the random numbers injected.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { freePort } from '../helpers/sockets';
import { createServer, WebSocket, WebSocketServer } from '../../lib';
import { backoffDelay, reconnecting } from '../../lib/client/reconnect';

describe('client/reconnect', function () {
  this.timeout(10000);

  describe('backoffDelay', () => {
    it('doubles from minDelay up to maxDelay, without jitter', () => {
      const options = { minDelay: 100, maxDelay: 1000, jitter: 0 };
      expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options))).to.deep.equal([100, 200, 400, 800, 1000, 1000]);
    });

    it('makes a `jitter` fraction of the delay random: [base * (1 - jitter), base]', () => {
      const options = { minDelay: 1000, maxDelay: 30000, jitter: 0.5 };
      expect(backoffDelay(3, options, () => 0)).to.equal(2000);
      expect(backoffDelay(3, options, () => 0.5)).to.equal(3000);
      expect(backoffDelay(3, options, () => 0.999999)).to.equal(4000);
      expect(backoffDelay(1, { minDelay: 1000, jitter: 1 }, () => 0.25)).to.equal(250);
    });

    it('refuses negative or non-finite options (ERR_OUT_OF_RANGE)', () => {
      expect(() => reconnecting('ws://127.0.0.1:1', { reconnect: { minDelay: -1 } })).to.throw(RangeError).with.property('code', 'ERR_OUT_OF_RANGE');
      expect(() => reconnecting('ws://127.0.0.1:1', { reconnect: { maxDelay: Infinity } })).to.throw(RangeError);
      expect(() => reconnecting('ws://127.0.0.1:1', { reconnect: { retries: -1 } })).to.throw(RangeError);
    });
  });

  describe('the iteration', () => {
    let wss: WebSocketServer | null = null;

    afterEach(async () => {
      if (wss !== null) await new Promise<void>((resolve) => wss!.close(() => resolve()));
      wss = null;
    });

    async function server(onConnection: (ws: WebSocket, n: number) => void): Promise<number> {
      let n = 0;
      wss = createServer({ port: 0, host: '127.0.0.1' });
      wss.on('connection', (ws) => onConnection(ws, ++n));
      await once(wss, 'listening');
      return wss.address()!.port;
    }

    it('reconnects after the server goes away (1001) and after a lost connection (1006); our close() ends it', async () => {
      const port = await server((ws, n) => {
        if (n === 1) ws.close(1001, 'restarting');
        else if (n === 2) ws.terminate();
      });
      const connections = reconnecting(`ws://127.0.0.1:${port}`);
      const closes: Array<[number, boolean]> = [];
      connections.on('close', (code: number, _reason: string, again: boolean) => closes.push([code, again]));
      let turns = 0;
      for await (const ws of connections) {
        turns++;
        if (turns === 3) ws.close(1000, 'enough');
      }
      expect(turns).to.equal(3);
      expect(closes).to.deep.equal([
        [1001, true],
        [1006, true],
        [1000, false],
      ]);
    });

    it('the server\'s 1000 (normal closure) ends the iteration', async () => {
      const port = await server((ws) => ws.close(1000, 'done with you'));
      let turns = 0;
      for await (const ws of reconnecting(`ws://127.0.0.1:${port}`)) {
        turns++;
        await once(ws, 'close');
      }
      expect(turns).to.equal(1);
    });

    it('retries a failed attempt with backoff, then gives up with the last error after `retries`', async () => {
      // A port with nobody listening: every attempt is refused.
      const port = await freePort();
      const delays: number[] = [];
      const connections = reconnecting(`ws://127.0.0.1:${port}`, {
        reconnect: {
          retries: 3,
          minDelay: 100,
          maxDelay: 250,
          jitter: 0.5,
          random: () => 0.5,
          setTimer: (callback, ms) => {
            delays.push(ms);
            setImmediate(callback);
            return () => {};
          },
        },
      });
      const attempts: number[] = [];
      const retries: Array<[string, number, number]> = [];
      connections.on('attempt', (n: number) => attempts.push(n));
      connections.on('retry', (err: Error & { code?: string }, n: number, delay: number) => retries.push([err.code ?? '', n, delay]));
      let thrown: (Error & { code?: string }) | null = null;
      try {
        for await (const ws of connections) ws.terminate();
      } catch (err) {
        thrown = err as Error;
      }
      expect(thrown?.code).to.equal('ECONNREFUSED');
      expect(attempts).to.deep.equal([1, 2, 3, 4]);
      // 100, 200, 250 (capped) bases, three quarters each with random 0.5 and jitter 0.5.
      expect(delays).to.deep.equal([75, 150, 188]);
      expect(retries.map((one) => one[1])).to.deep.equal([1, 2, 3]);
    });

    it('close() from a retry listener ends the iteration before any wait', async () => {
      const port = await freePort();
      let waiting: (() => void) | null = null;
      const connections = reconnecting(`ws://127.0.0.1:${port}`, {
        reconnect: {
          setTimer: (callback) => {
            waiting = callback;
            return () => {
              waiting = null;
            };
          },
        },
      });
      let attempts = 0;
      connections.on('attempt', () => attempts++);
      connections.on('retry', () => connections.close());
      let turns = 0;
      for await (const ws of connections) {
        turns++;
        ws.terminate();
      }
      expect(turns).to.equal(0);
      expect(attempts).to.equal(1);
      expect(waiting).to.equal(null);
    });

    it('close() in the middle of a backoff wait cancels it and ends the iteration', async () => {
      const port = await freePort();
      let waiting: (() => void) | null = null;
      const connections = reconnecting(`ws://127.0.0.1:${port}`, {
        reconnect: {
          setTimer: (callback) => {
            waiting = callback;
            setImmediate(() => connections.close());
            return () => {
              waiting = null;
            };
          },
        },
      });
      let attempts = 0;
      connections.on('attempt', () => attempts++);
      let turns = 0;
      for await (const ws of connections) {
        turns++;
        ws.terminate();
      }
      expect(turns).to.equal(0);
      expect(attempts).to.equal(1);
      expect(waiting).to.equal(null);
    });
  });
});
