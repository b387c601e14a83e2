import { expect } from 'chai';
import { Utf8Validator, isValidUtf8 } from '../../lib/protocol/utf8';
import { everyChunking } from '../helpers/chunks';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Runs the validator over `chunks`; returns each write's result and end(). */
function run(chunks: Buffer[]): { writes: boolean[]; end: boolean } {
  const v = new Utf8Validator();
  const writes = chunks.map((c) => v.write(c));
  return { writes, end: v.end() };
}

/** Whole-input verdict through the validator, for one chunking. */
function validIn(chunks: Buffer[]): boolean {
  const { writes, end } = run(chunks);
  return writes.every((w) => w) && end;
}

// Markus Kuhn's UTF-8 decoder capability and stress test, in the spirit of its sections.
const VALID: Array<[string, string]> = [
  ['empty', ''],
  ['ASCII', '48 65 6c 6c 6f'],
  ['NUL and DEL', '00 7f'],
  ['smallest 2-byte, U+0080', 'c2 80'],
  ['largest 2-byte, U+07FF', 'df bf'],
  ['smallest 3-byte, U+0800', 'e0 a0 80'],
  ['largest 3-byte, U+FFFF', 'ef bf bf'],
  ['last before the surrogates, U+D7FF', 'ed 9f bf'],
  ['first after the surrogates, U+E000', 'ee 80 80'],
  ['U+FFFD', 'ef bf bd'],
  ['smallest 4-byte, U+10000', 'f0 90 80 80'],
  ['largest valid, U+10FFFF', 'f4 8f bf bf'],
  ['Greek kosme', 'ce ba e1 bd b9 cf 83 ce bc ce b5'],
  ['mixed 1-4 byte', '41 c3 a9 e2 82 ac f0 9f 98 80 5a'],
];

const INVALID: Array<[string, string]> = [
  ['above U+10FFFF', 'f4 90 80 80'],
  ['F5 lead', 'f5 80 80 80'],
  ['FF byte', 'ff'],
  ['FE byte', 'fe'],
  ['C0 lead', 'c0 80'],
  ['overlong "/" in 2 bytes', 'c0 af'],
  ['overlong "/" in 3 bytes', 'e0 80 af'],
  ['overlong "/" in 4 bytes', 'f0 80 80 af'],
  ['overlong U+07FF in 3 bytes', 'e0 9f bf'],
  ['overlong U+FFFF in 4 bytes', 'f0 8f bf bf'],
  ['overlong NUL in 2 bytes', 'c1 80'],
  ['high surrogate U+D800', 'ed a0 80'],
  ['low surrogate U+DFFF', 'ed bf bf'],
  ['surrogate pair', 'ed a0 80 ed b0 80'],
  ['lone continuation byte', '80'],
  ['lone continuation byte after ASCII', '41 bf 41'],
  ['two continuation bytes', '80 bf'],
  ['2-byte lead followed by ASCII', 'c3 41'],
  ['3-byte lead, one tail, then ASCII', 'e2 82 41'],
  ['4-byte lead, two tails, then a lead', 'f0 9f 98 f0 9f 98 80'],
  ['invalid in the middle', '48 65 6c ff 6c 6f'],
  ['5-byte sequence (old RFC 2279)', 'f8 88 80 80 80'],
];

const TRUNCATED: Array<[string, string]> = [
  ['2-byte lead alone at the end', '41 c3'],
  ['3-byte sequence missing its last byte', '41 e2 82'],
  ['4-byte sequence missing its last byte', '41 f0 9f 98'],
  ['4-byte lead alone', 'f0'],
];

describe('utf8', () => {
  describe('isValidUtf8', () => {
    for (const [name, bytes] of VALID) {
      it(`accepts ${name}`, () => expect(isValidUtf8(hex(bytes))).to.equal(true));
    }
    for (const [name, bytes] of [...INVALID, ...TRUNCATED]) {
      it(`rejects ${name}`, () => expect(isValidUtf8(hex(bytes))).to.equal(false));
    }
    it('respects byteOffset of a view into a larger buffer', () => {
      const big = hex('ff 41 42 ff');
      expect(isValidUtf8(big.subarray(1, 3))).to.equal(true);
      expect(isValidUtf8(big)).to.equal(false);
    });
  });

  describe('Utf8Validator (RFC 3629 §4)', () => {
    for (const [name, bytes] of VALID) {
      it(`accepts ${name}, at every chunking`, () => {
        for (const c of everyChunking(hex(bytes))) expect(validIn(c.chunks), c.name).to.equal(true);
      });
    }
    for (const [name, bytes] of INVALID) {
      it(`rejects ${name} in the write that holds the first bad byte, at every chunking`, () => {
        const input = hex(bytes);
        // The first byte at which no valid continuation exists: the shortest invalid prefix.
        let bad = 1;
        while (isValidPrefix(input.subarray(0, bad))) bad++;
        for (const c of everyChunking(input)) {
          const { writes } = run(c.chunks);
          let seen = 0;
          const failing = c.chunks.findIndex((chunk) => (seen += chunk.length) >= bad);
          expect(writes.slice(0, failing).every((w) => w), `${c.name}: earlier writes`).to.equal(true);
          expect(writes[failing], `${c.name}: the write with byte ${bad - 1}`).to.equal(false);
          expect(writes.slice(failing).every((w) => !w), `${c.name}: it stays failed`).to.equal(true);
        }
      });
    }
    for (const [name, bytes] of TRUNCATED) {
      it(`accepts every write but not end() for ${name}`, () => {
        for (const c of everyChunking(hex(bytes))) {
          const { writes, end } = run(c.chunks);
          expect(writes.every((w) => w), c.name).to.equal(true);
          expect(end, c.name).to.equal(false);
        }
      });
    }

    it('keeps every valid multi-byte character valid when split at every offset across writes', () => {
      // A sample of each length and of each special lead byte (E0, ED, F0, F4).
      const chars = ['c2 80', 'df bf', 'c3 a9', 'e0 a0 80', 'e2 82 ac', 'ed 9f bf', 'ef bf bf', 'f0 90 80 80', 'f0 9f 98 80', 'f3 bf bf bf', 'f4 8f bf bf'];
      for (const ch of chars) {
        const bytes = hex(ch);
        for (let at = 1; at < bytes.length; at++) {
          const v = new Utf8Validator();
          expect(v.write(bytes.subarray(0, at)), `${ch} first ${at}`).to.equal(true);
          expect(v.end(), `${ch} cut at ${at}`).to.equal(false);
          expect(v.write(bytes.subarray(at)), `${ch} rest from ${at}`).to.equal(true);
          expect(v.end(), `${ch} whole`).to.equal(true);
        }
      }
    });

    it('validates every code point, each split at every offset, with long ASCII around (native path)', () => {
      const pad = 'x'.repeat(40);
      for (let cp = 0x80; cp <= 0x10ffff; cp += cp < 0x10000 ? 0x3f : 0x3fff) {
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        const bytes = Buffer.from(pad + String.fromCodePoint(cp) + pad);
        for (const at of [pad.length + 1, pad.length + 2, pad.length + 3, bytes.length - pad.length]) {
          const v = new Utf8Validator();
          const ok = v.write(bytes.subarray(0, at)) && v.write(bytes.subarray(at)) && v.end();
          expect(ok, `U+${cp.toString(16)} split at ${at}`).to.equal(true);
        }
      }
    });

    it('finds each invalid sequence inside long text, whole and split around it', () => {
      const pad = Buffer.from('y'.repeat(50));
      for (const [name, bytes] of INVALID) {
        const input = Buffer.concat([pad, hex(bytes), pad]);
        expect(validIn([input]), `${name} whole`).to.equal(false);
        for (let at = pad.length - 2; at <= pad.length + 6; at++) {
          expect(validIn([input.subarray(0, at), input.subarray(at)]), `${name} split at ${at}`).to.equal(false);
        }
      }
    });

    it('fails fast: a bad byte in a long first chunk fails that write', () => {
      const first = Buffer.concat([Buffer.from('a'.repeat(1000)), hex('c0 af'), Buffer.from('b'.repeat(1000))]);
      const v = new Utf8Validator();
      expect(v.write(first)).to.equal(false);
      expect(v.write(Buffer.from('valid'))).to.equal(false);
      expect(v.end()).to.equal(false);
    });

    it('a long chunk ending in a cut character is accepted, then completed', () => {
      const text = Buffer.from('z'.repeat(100) + '😀');
      const v = new Utf8Validator();
      expect(v.write(text.subarray(0, text.length - 1))).to.equal(true);
      expect(v.end()).to.equal(false);
      expect(v.write(text.subarray(text.length - 1))).to.equal(true);
      expect(v.end()).to.equal(true);
    });

    it('four tail bytes at the end of a long chunk are rejected', () => {
      const v = new Utf8Validator();
      expect(v.write(Buffer.concat([Buffer.from('q'.repeat(60)), hex('80 80 80 80')]))).to.equal(false);
    });

    it('agrees with isValidUtf8 on random mixed bytes, at several chunkings', () => {
      let seed = 12345;
      const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
      const alphabet = ['a', 'é', '€', '😀', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\u{10ffff}'].map((s) => Buffer.from(s));
      const junk = [hex('80'), hex('c0'), hex('ed a0'), hex('f4 90'), hex('ff'), hex('e0 80')];
      for (let trial = 0; trial < 300; trial++) {
        const parts: Buffer[] = [];
        const n = Math.floor(rand() * 60);
        for (let i = 0; i < n; i++) parts.push(rand() < 0.02 ? junk[Math.floor(rand() * junk.length)]! : alphabet[Math.floor(rand() * alphabet.length)]!);
        const input = Buffer.concat(parts);
        const expected = isValidUtf8(input);
        for (const size of [1, 3, 7, 33, 1000]) {
          const chunks: Buffer[] = [];
          for (let i = 0; i < input.length; i += size) chunks.push(input.subarray(i, i + size));
          expect(validIn(chunks), `trial ${trial} size ${size}: ${input.toString('hex')}`).to.equal(expected);
        }
      }
    });

    it('reset() clears both a failure and a cut character', () => {
      const v = new Utf8Validator();
      expect(v.write(hex('ff'))).to.equal(false);
      v.reset();
      expect(v.write(hex('e2 82'))).to.equal(true);
      v.reset();
      expect(v.end()).to.equal(true);
      expect(v.write(hex('41'))).to.equal(true);
    });
  });
});

/**
 * Reference check, independent of the validator: can `prefix` be extended to valid UTF-8?
 * (Tries appending every possible completion of at most three bytes of the RFC 3629 tail range.)
 */
function isValidPrefix(prefix: Buffer): boolean {
  if (isValidUtf8(prefix)) return true;
  for (let extra = 1; extra <= 3; extra++) {
    const candidate = Buffer.alloc(prefix.length + extra);
    prefix.copy(candidate);
    for (let k = 0; k < 64 ** extra; k++) {
      let rest = k;
      for (let j = 0; j < extra; j++) {
        candidate[prefix.length + j] = 0x80 + (rest % 64);
        rest = Math.floor(rest / 64);
      }
      if (isValidUtf8(candidate)) return true;
    }
  }
  return false;
}
