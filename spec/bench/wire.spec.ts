/**
 * The load generator's and bench:bulk's frame counter (bench/wire.ts): it reads headers only,
 * so a miscount would quietly skew every figure that counts frames or payload bytes with it.
 * Fed whole, byte by byte and in pieces of several sizes.
 */
import { expect } from 'chai';
import { FrameCounter, maskedBinaryFrame } from '../../bench/wire';
import { someChunkings } from '../helpers/chunks';
import { wireFrame } from '../helpers/frames';

/** Payloads of every length form: empty, 7-bit, 16-bit and 64-bit. */
const SIZES = [0, 1, 125, 126, 300, 65535, 65536];
const payloadOf = (size: number, seed: number): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + seed) & 0xff));

describe('bench/wire maskedBinaryFrame', () => {
  for (const size of SIZES) {
    it(`builds the frame the specs' own fixture builds, for ${size} payload bytes`, () => {
      const pattern = Buffer.from(Array.from({ length: size }, (_, i) => i & 0x7f));
      expect(maskedBinaryFrame(size).toString('hex')).to.equal(wireFrame({ opcode: 0x2, payload: pattern }).toString('hex'));
    });
  }
});

describe('bench/wire FrameCounter', () => {
  for (const masked of [false, true]) {
    const payloads = SIZES.map((size, seed) => payloadOf(size, seed));
    const frames = payloads.map((payload) => wireFrame({ opcode: 0x2, payload, mask: masked ? undefined : null }));
    const stream = Buffer.concat(frames);
    for (const { name, chunks } of someChunkings(stream, [1, 2, 3, 13, 4096, 65537])) {
      it(`${masked ? 'masked' : 'unmasked'} frames, ${name}: counts frames and payload bytes, and hands over every payload run in place`, () => {
        const counter = new FrameCounter();
        // The runs, joined into one payload per frame: a run at payload offset 0 starts the next one.
        const rebuilt: Buffer[][] = [];
        let soFar = 0;
        const offsets: string[] = [];
        let completed = 0;
        for (const chunk of chunks) {
          completed += counter.feed(chunk, (buf, start, end, payloadOffset) => {
            if (payloadOffset === 0) {
              rebuilt.push([]);
              soFar = 0;
            }
            if (payloadOffset !== soFar) offsets.push(`${payloadOffset} where ${soFar} was due`);
            soFar += end - start;
            rebuilt[rebuilt.length - 1]!.push(Buffer.from(buf.subarray(start, end)));
          });
        }
        expect(offsets).to.deep.equal([]);
        expect(completed).to.equal(frames.length);
        expect(counter.frames).to.equal(frames.length);
        expect(counter.payloadBytes).to.equal(SIZES.reduce((a, b) => a + b, 0));
        // Empty payloads have no runs; every other one comes as it is on the wire (masked or not).
        const onWire = frames.flatMap((f, i) => (SIZES[i] === 0 ? [] : [f.subarray(f.length - SIZES[i]!)]));
        expect(rebuilt.map((runs) => Buffer.concat(runs).toString('hex'))).to.deep.equal(onWire.map((b) => b.toString('hex')));
      });
    }
  }
});

