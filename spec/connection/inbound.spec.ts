/**
 * A WebSocket's inbound path (lib/connection/inbound.ts), what only it decides per chunk read:
 * the reads of a large message that lie inside the payload of the frame under way end no frame,
 * so they are neither timed (the time rule of turn.ts is for chunks of many frames) nor corked
 * (nothing is sent in answer to a piece). The chunk that ends the frame is both, as every chunk
 * that holds a frame's end is. Fairness itself is specified in turn.spec.ts and websocket.spec.ts.
 */
import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import { WebSocket } from '../../lib';
import type { Transport } from '../../lib/connection/websocket-types';
import { NullTransport } from '../helpers/transports';
import { clientFrame } from '../helpers/frames';

/** A transport that counts cork() calls and keeps what is written. */
class CountingTransport extends NullTransport {
  corks = 0;
  uncorks = 0;
  written: Buffer[] = [];
  override cork(): void {
    this.corks++;
  }
  override uncork(): void {
    this.uncorks++;
  }
  override write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean {
    this.written.push(Buffer.from(chunk));
    if (callback) process.nextTick(callback);
    return true;
  }
}

/** Calls of performance.now() while `run` runs (turnClock and turnTookLong read that clock). */
function clockReadings(run: () => void): number {
  const now = performance.now;
  let readings = 0;
  performance.now = function (this: typeof performance): number {
    readings++;
    return now.call(this);
  };
  try {
    run();
  } finally {
    performance.now = now;
  }
  return readings;
}

describe('connection/inbound: the reads of a large message', () => {
  it('a chunk inside the payload of the frame under way is neither timed nor corked; the chunk that ends the frame is both (spec first: every chunk was)', async () => {
    const transport = new CountingTransport();
    const ws = new WebSocket('server', {});
    ws.attach(transport as unknown as Transport, null, { protocol: '', extensions: '' });
    const messages: Buffer[] = [];
    ws.on('message', (data: Buffer) => messages.push(data));
    await new Promise((resolve) => setImmediate(resolve));

    // Four reads of 64 KiB and one of about 32 KiB (over the size from which reads are timed).
    const payload = Buffer.alloc(4 * 64 * 1024 + 32 * 1024, 0x61);
    const wire = clientFrame(0x2, payload);
    const read = 64 * 1024;
    // The first read holds the frame's header: it begins a frame, timed and corked as usual.
    const first = clockReadings(() => transport.emit('data', wire.subarray(0, read)));
    expect(first).to.be.greaterThan(0);
    const corked = transport.corks;
    expect(corked).to.equal(1);
    // The next reads lie inside the payload (each well over the timed size).
    let inside = 0;
    let at = read;
    for (; at + read < wire.length; at += read) inside += clockReadings(() => transport.emit('data', wire.subarray(at, at + read)));
    expect(inside).to.equal(0);
    expect(transport.corks).to.equal(corked);
    expect(messages).to.have.length(0);
    // The last read ends the frame (and the message).
    const last = clockReadings(() => transport.emit('data', wire.subarray(at)));
    expect(last).to.be.greaterThan(0);
    expect(transport.corks).to.equal(corked + 1);
    expect(transport.uncorks).to.equal(transport.corks);
    expect(messages).to.have.length(1);
    expect(messages[0]!.equals(payload)).to.equal(true);
  });

  it('a chunk that ends the frame under way and begins the next is timed and corked, and both frames are delivered', async () => {
    const transport = new CountingTransport();
    const ws = new WebSocket('server', {});
    ws.attach(transport as unknown as Transport, null, { protocol: '', extensions: '' });
    const messages: string[] = [];
    ws.on('message', (data: Buffer | string) => messages.push(data.toString()));
    await new Promise((resolve) => setImmediate(resolve));

    const big = clientFrame(0x1, 'x'.repeat(100 * 1024));
    const next = clientFrame(0x1, 'after');
    const wire = Buffer.concat([big, next]);
    transport.emit('data', wire.subarray(0, 40 * 1024));
    transport.emit('data', wire.subarray(40 * 1024, 80 * 1024));
    const corked = transport.corks;
    const readings = clockReadings(() => transport.emit('data', wire.subarray(80 * 1024)));
    expect(readings).to.be.greaterThan(0);
    expect(transport.corks).to.equal(corked + 1);
    expect(messages).to.deep.equal(['x'.repeat(100 * 1024), 'after']);
  });
});
