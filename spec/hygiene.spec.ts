/**
 * Hygiene: connections that come and go, cleanly or abruptly, leave nothing behind: no client
 * entries, no sockets or timers, no listeners on the server, no heap growth.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as net from 'node:net';
import { connect, createServer, WebSocket, WebSocketServer } from '../lib';

const CYCLES = Number(process.env.HYGIENE_CYCLES ?? 10000);
const PARALLEL = 50;

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) throw new Error('run mocha with --expose-gc (see .mocharc.json)');
  for (let i = 0; i < 3; i++) collect();
}

/** Active handles (sockets, servers, timers) as Node counts them. */
function handles(): number {
  return (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
}

async function settle(server: WebSocketServer): Promise<void> {
  for (let i = 0; i < 200 && server.clients.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
}

async function cycles(count: number, one: () => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

describe(`hygiene (${CYCLES} cycles each)`, function () {
  this.timeout(180000);
  let server: WebSocketServer;
  let url: string;
  let port: number;

  before(async () => {
    server = createServer({ port: 0, host: '127.0.0.1', heartbeat: { interval: 60000, timeout: 60000 } });
    await once(server, 'listening');
    port = server.address()!.port;
    url = `ws://127.0.0.1:${port}`;
    server.on('connection', (ws: WebSocket) => {
      ws.on('error', () => {});
      ws.on('message', (d: string | Buffer) => ws.send(d));
    });
  });
  after((done) => {
    server.close(() => done());
  });

  /** Runs `one` CYCLES times (after a warm-up) and checks that nothing was left behind. */
  async function expectNothingLeft(one: () => Promise<void>): Promise<void> {
    await cycles(200, one); // warm up: JIT, pools
    await settle(server);
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const handlesBefore = handles();
    await cycles(CYCLES, one);
    await settle(server);
    gc();
    expect(server.clients.size).to.equal(0);
    expect(handles()).to.be.at.most(handlesBefore);
    expect(server.listenerCount('connection')).to.equal(1);
    const growth = process.memoryUsage().heapUsed - heapBefore;
    expect(growth, `heap grew by ${growth} bytes`).to.be.lessThan(8 * 1024 * 1024);
  }

  it('connect, exchange a message, close: nothing left behind', async () => {
    const one = async (): Promise<void> => {
      const ws = connect(url);
      await once(ws, 'open');
      ws.send('ping');
      await once(ws, 'message');
      ws.close(1000);
      await new Promise((r) => ws.once('close', r));
    };
    await expectNothingLeft(one);
  });

  it('connections that die abruptly (TCP reset mid-frame): nothing left behind', async () => {
    const one = async (): Promise<void> => {
      const ws = connect(url);
      ws.on('error', () => {});
      await once(ws, 'open');
      // A partial frame, then the socket is destroyed under the connection.
      const socket = (ws as unknown as { transport: net.Socket }).transport;
      socket.write(Buffer.from([0x82, 0xfe, 0x10, 0x00, 1, 2, 3, 4, 5]));
      socket.resetAndDestroy();
      await new Promise((r) => ws.once('close', r));
    };
    await expectNothingLeft(one);
  });
});
