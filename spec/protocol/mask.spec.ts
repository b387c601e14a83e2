import { expect } from 'chai';
import { applyMask, maskUsesSimd, randomMask } from '../../lib/protocol/mask';

/** RFC 6455 §5.3 read literally: "octet i of the transformed data is the XOR of octet i of the
 * original data with octet at index i modulo 4 of the masking key", for data starting at `offset`. */
function naiveMask(data: Uint8Array, key: Uint8Array, offset: number): Buffer {
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! ^ key[(offset + i) % 4]!;
  return out;
}

function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 151 + seed * 17 + 3) & 0xff;
  return out;
}

describe('mask', () => {
  describe('applyMask (RFC 6455 §5.3)', () => {
    const KEYS = [Buffer.from([0x37, 0xfa, 0x21, 0x3d]), Buffer.from([0x01, 0x02, 0x04, 0x80]), Buffer.from([0xff, 0x00, 0xff, 0x00])];

    it('unmasks the §5.7 example', () => {
      const data = Buffer.from('7f9f4d5158', 'hex');
      applyMask(data, KEYS[0]!);
      expect(data.toString()).to.equal('Hello');
    });

    it('matches a byte loop at every offset 0..3, every length 0..140 and every byteOffset 0..3 (the byte loop, and the word loop from 128)', () => {
      for (const key of KEYS) {
        for (let offset = 0; offset < 4; offset++) {
          for (let length = 0; length <= 140; length++) {
            for (let byteOffset = 0; byteOffset < 4; byteOffset++) {
              const label = `key ${key.toString('hex')}, offset ${offset}, length ${length}, byteOffset ${byteOffset}`;
              // A view into a larger buffer, with guard bytes on both sides.
              const backing = Buffer.alloc(byteOffset + length + 8, 0xa5);
              const original = pattern(length, offset + byteOffset);
              original.copy(backing, byteOffset);
              const view = backing.subarray(byteOffset, byteOffset + length);
              applyMask(view, key, offset);
              const want = naiveMask(original, key, offset);
              if (!view.equals(want)) expect([...view], label).to.deep.equal([...want]);
              const guards = [...backing.subarray(0, byteOffset), ...backing.subarray(byteOffset + length)];
              expect(guards.every((b) => b === 0xa5), `${label}: bytes outside the view`).to.equal(true);
            }
          }
        }
      }
    });

    it('matches a byte loop on the word and SIMD paths: lengths around 512, 64 KiB and 200 KiB, every offset and byteOffset', () => {
      for (const length of [511, 512, 513, 527, 1000, 65535, 65536, 65553, 200_003]) {
        for (let offset = 0; offset < 4; offset++) {
          for (let byteOffset = 0; byteOffset < 4; byteOffset++) {
            const key = KEYS[(length + offset) % KEYS.length]!;
            const backing = Buffer.alloc(byteOffset + length + 8, 0xa5);
            const original = pattern(length, offset * 7 + byteOffset);
            original.copy(backing, byteOffset);
            const view = backing.subarray(byteOffset, byteOffset + length);
            applyMask(view, key, offset);
            const label = `length ${length}, offset ${offset}, byteOffset ${byteOffset}`;
            expect(view.equals(naiveMask(original, key, offset)), label).to.equal(true);
            expect(backing.subarray(0, byteOffset).every((b) => b === 0xa5), `${label}: head guard`).to.equal(true);
            expect(backing.subarray(byteOffset + length).every((b) => b === 0xa5), `${label}: tail guard`).to.equal(true);
          }
        }
      }
    });

    it('matches a byte loop wherever the data sits within its 4 KiB page (the wasm copies are shifted away from it)', () => {
      const backing = Buffer.alloc(80 * 1024 + 8192);
      for (const pageOffset of [0, 1, 15, 16, 17, 2047, 2048, 2049, 4080, 4095]) {
        const start = (4096 - (backing.byteOffset & 4095) + pageOffset) & 4095;
        for (const length of [512, 70_001]) {
          const original = pattern(length, pageOffset);
          const view = backing.subarray(start, start + length);
          original.copy(view);
          applyMask(view, KEYS[2]!, 1);
          expect(view.equals(naiveMask(original, KEYS[2]!, 1)), `page offset ${pageOffset}, length ${length}`).to.equal(true);
          const target = Buffer.alloc(length);
          applyMask(original, KEYS[1]!, 2, target);
          expect(target.equals(naiveMask(original, KEYS[1]!, 2)), `target, page offset ${pageOffset}`).to.equal(true);
        }
      }
    });

    it('masks into a separate target on every path, from byte `at` on (source unchanged, nothing else written)', () => {
      for (const length of [0, 1, 2, 3, 5, 31, 32, 33, 70, 127, 128, 129, 130, 131, 511, 512, 513, 527, 65536, 65553, 200_003]) {
        for (let offset = 0; offset < 4; offset++) {
          for (let byteOffset = 0; byteOffset < 4; byteOffset++) {
            for (const at of [0, 1, 6, 4099]) {
              const key = KEYS[(length + offset + byteOffset + at) % KEYS.length]!;
              const original = pattern(length, offset + 3 * byteOffset + at);
              const source = Buffer.from(original);
              const shift = (byteOffset + 1) & 3;
              const backing = Buffer.alloc(at + length + 8 + shift, 0xa5);
              const target = backing.subarray(shift, shift + at + length + 4);
              applyMask(source, key, offset, target, at);
              const label = `length ${length}, offset ${offset}, target byteOffset ${shift}, at ${at}`;
              expect(source.equals(original), `${label}: source`).to.equal(true);
              expect(target.subarray(at, at + length).equals(naiveMask(original, key, offset)), label).to.equal(true);
              expect(target.subarray(0, at).every((b) => b === 0xa5), `${label}: before at`).to.equal(true);
              expect(target.subarray(at + length).every((b) => b === 0xa5), `${label}: past the length`).to.equal(true);
            }
          }
        }
      }
    });

    it('uses WebAssembly SIMD on Node 20 (set WSPIPE_NO_SIMD=1 to test the JavaScript path)', () => {
      expect(maskUsesSimd).to.equal(process.env.WSPIPE_NO_SIMD !== '1');
    });

    it('is its own inverse', () => {
      const original = pattern(1000, 9);
      const data = Buffer.from(original);
      applyMask(data, KEYS[0]!, 3);
      expect(data.equals(original)).to.equal(false);
      applyMask(data, KEYS[0]!, 3);
      expect(data.equals(original)).to.equal(true);
    });

    it('masks a payload in pieces exactly as in one go', () => {
      const original = pattern(200, 4);
      const whole = naiveMask(original, KEYS[1]!, 0);
      for (let a = 0; a <= original.length; a += 7) {
        for (let b = a; b <= original.length; b += 13) {
          const data = Buffer.from(original);
          applyMask(data.subarray(0, a), KEYS[1]!, 0);
          applyMask(data.subarray(a, b), KEYS[1]!, a);
          applyMask(data.subarray(b), KEYS[1]!, b);
          if (!data.equals(whole)) expect.fail(`split at ${a} and ${b}`);
        }
      }
    });
  });

  describe('randomMask', () => {
    it('returns 4-byte keys', () => {
      for (let i = 0; i < 100; i++) expect(randomMask().length).to.equal(4);
    });

    it('returns distinct keys', () => {
      const seen = new Set<string>();
      const COUNT = 5000;
      for (let i = 0; i < COUNT; i++) seen.add(randomMask().toString('hex'));
      // 32-bit keys: a handful of birthday collisions at most, never a repeating pattern.
      expect(seen.size).to.be.greaterThan(COUNT - 5);
    });

    it('never changes keys already handed out, after many more draws', () => {
      const kept = Array.from({ length: 3000 }, () => randomMask());
      const copies = kept.map((key) => Buffer.from(key));
      // Far more draws than one pool holds, so the pool is replaced several times.
      for (let i = 0; i < 20000; i++) randomMask();
      kept.forEach((key, i) => {
        if (!key.equals(copies[i]!)) expect.fail(`key ${i} changed`);
      });
    });
  });
});
