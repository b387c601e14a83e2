/**
 * A WebSocket's inbound path (lib/connection/inbound.ts), what only it decides per chunk read:
 * the reads of a large message that lie inside the payload of the frame under way end no frame,
 * so they are neither timed (the time rule of turn.ts is for chunks of many frames) nor corked
 * (nothing is sent in answer to a piece). The chunk that ends the frame is both, as every chunk
 * that holds a frame's end is (the rule, insidePayload, is turn.ts's; the proxy's sides follow it too:
 * spec/proxy/turns.spec.ts). Fairness itself is specified in turn.spec.ts and websocket.spec.ts.
 */
import { expect } from 'chai';
import { WebSocket } from '../../lib';
import type { Transport } from '../../lib/connection/websocket-types';
import { NullTransport } from '../helpers/transports';
import { clientFrame } from '../helpers/frames';
import { clockReadings } from '../helpers/clock';

/** A transport that counts cork() and uncork() calls. */
class CountingTransport extends NullTransport {
  corks = 0;
  uncorks = 0;
  override cork(): void {
    this.corks++;
  }
  override uncork(): void {
    this.uncorks++;
  }
  override write(_chunk: Buffer, callback?: (err?: Error | null) => void): boolean {
    if (callback) process.nextTick(callback);
    return true;
  }
}

/** A server WebSocket on a CountingTransport, its messages kept, once attach()'s next tick has run. */
async function attached(): Promise<{ transport: CountingTransport; messages: Buffer[] }> {
  const transport = new CountingTransport();
  const ws = new WebSocket('server', {});
  ws.attach(transport as unknown as Transport, null, { protocol: '', extensions: '' });
  const messages: Buffer[] = [];
  ws.on('message', (data: Buffer | string) => messages.push(Buffer.from(data)));
  await new Promise((resolve) => setImmediate(resolve));
  return { transport, messages };
}

describe('connection/inbound: the reads of a large message', () => {
  it('a chunk inside the payload of the frame under way is neither timed nor corked; the chunk that ends the frame is both (spec first: every chunk was)', async () => {
    const { transport, messages } = await attached();

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
    const { transport, messages } = await attached();

    const big = clientFrame(0x1, 'x'.repeat(100 * 1024));
    const next = clientFrame(0x1, 'after');
    const wire = Buffer.concat([big, next]);
    transport.emit('data', wire.subarray(0, 40 * 1024));
    transport.emit('data', wire.subarray(40 * 1024, 80 * 1024));
    const corked = transport.corks;
    const readings = clockReadings(() => transport.emit('data', wire.subarray(80 * 1024)));
    expect(readings).to.be.greaterThan(0);
    expect(transport.corks).to.equal(corked + 1);
    expect(messages.map(String)).to.deep.equal(['x'.repeat(100 * 1024), 'after']);
  });
});
