import { expect } from 'chai';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { maskSlots, SLOT_COUNT } from '../../lib/protocol/mask';
import { Sender } from '../../lib/connection/sender';
import { decodeFrames } from '../helpers/frames';
import { readBytes, socketPair } from '../helpers/sockets';

/** `size` bytes of a pattern that differs per message, so a reused slot would show. */
function message(size: number, seed: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + seed * 13) & 0xff;
  return data;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Sender', () => {
  describe('client role: masked payloads written from wasm slots (lib/protocol/mask.ts MaskSlots)', function () {
    before(function () {
      // Without WebAssembly SIMD (WSPIPE_NO_SIMD=1) there are no slots: every payload is a fresh buffer.
      if (maskSlots === null) this.skip();
    });

    it('sends the right bytes and gives every slot back once the socket called the writes back', async () => {
      const [server, client] = await socketPair();
      const before = maskSlots!.available;
      const sender = new Sender(client, 'client');
      const sent = [0, 1, 2, 3, 4, 5].map((seed) => message(200_000 + seed, seed));
      for (const m of sent) sender.sendMessage({ binary: true, data: m });
      expect(maskSlots!.available).to.be.below(before);
      const total = sent.reduce((n, m) => n + m.length + 14, 0);
      const bytes = await readBytes(server, total);
      const { frames, rest } = decodeFrames(bytes);
      expect(rest.length).to.equal(0);
      expect(frames.map((f) => f.payload.equals(sent[frames.indexOf(f)]!))).to.deep.equal(sent.map(() => true));
      while (maskSlots!.available < before && client.writableLength > 0) await once(client, 'drain');
      await tick();
      expect(maskSlots!.available).to.equal(before);
      sender.destroy();
      client.destroy();
      server.destroy();
    });

    it('gives back the slots of writes still queued when the connection is destroyed', async () => {
      const [server, client] = await socketPair();
      server.pause(); // never reads: the kernel buffers fill, writes stay queued
      try {
        // Fill the kernel's buffers first, so the masked writes below stay queued in the socket.
        client.write(Buffer.alloc(64 * 1024 * 1024));
        const before = maskSlots!.available;
        const sender = new Sender(client, 'client');
        for (let i = 0; i < 4; i++) sender.sendMessage({ binary: true, data: message(256 * 1024, i) });
        await tick();
        expect(client.writableLength).to.be.above(0);
        expect(maskSlots!.available).to.equal(before - 16);
        client.destroy();
        await once(client, 'close');
        sender.destroy(); // what the connection does on the socket's 'close'
        await tick();
        expect(maskSlots!.available).to.equal(before);
      } finally {
        client.destroy();
        server.destroy();
      }
    });

    it('masks a 16 MiB message into slots whole (no fresh buffer for any of it)', async () => {
      expect(SLOT_COUNT).to.be.at.least(256);
      const [server, client] = await socketPair();
      try {
        const before = maskSlots!.available;
        expect(before).to.be.at.least(256);
        const sender = new Sender(client, 'client');
        const sent = message(16 * 1024 * 1024, 3);
        const received = readBytes(server, sent.length + 14);
        sender.sendMessage({ binary: true, data: sent });
        // Every 64 KiB of the payload went into a slot of its own.
        expect(before - maskSlots!.available).to.equal(256);
        const { frames, rest } = decodeFrames(await received);
        expect(rest.length).to.equal(0);
        expect(frames.length).to.equal(1);
        expect(frames[0]!.masked && frames[0]!.payload.equals(sent)).to.equal(true);
        while (maskSlots!.available < before && client.writableLength > 0) await once(client, 'drain');
        await tick();
        expect(maskSlots!.available).to.equal(before);
        sender.destroy();
      } finally {
        client.destroy();
        server.destroy();
      }
    });

    it('hands a bytes tap copies, which stay right after the slots are reused', async () => {
      const [server, client] = await socketPair();
      const sender = new Sender(client, 'client');
      const tapped: Buffer[] = [];
      sender.taps = {
        frame: () => true,
        bytes: (chunk) => {
          tapped.push(chunk);
          return true;
        },
      };
      const sent = [7, 8, 9].map((seed) => message(150_000, seed));
      const total = sent.reduce((n, m) => n + m.length + 14, 0);
      const received = readBytes(server, total);
      for (const m of sent) {
        sender.sendMessage({ binary: true, data: m });
        if (client.writableLength > 0) await once(client, 'drain');
        await tick();
      }
      await received;
      const { frames } = decodeFrames(Buffer.concat(tapped));
      expect(frames.map((f) => f.payload.equals(sent[frames.indexOf(f)]!))).to.deep.equal([true, true, true]);
      sender.destroy();
      client.destroy();
      server.destroy();
    });

    it('never uses slots on a sink that is not a socket (it may keep the chunks it is given)', () => {
      const sink = new PassThrough({ highWaterMark: 1 << 30 });
      const chunks: Buffer[] = [];
      sink.on('data', (chunk: Buffer) => chunks.push(chunk));
      const before = maskSlots!.available;
      const sender = new Sender(sink, 'client');
      const sent = [1, 2].map((seed) => message(300_000, seed));
      for (const m of sent) sender.sendMessage({ binary: true, data: m });
      expect(maskSlots!.available).to.equal(before);
      const { frames } = decodeFrames(Buffer.concat(chunks));
      expect(frames.map((f) => f.masked && f.payload.equals(sent[frames.indexOf(f)]!))).to.deep.equal([true, true]);
    });
  });
});
