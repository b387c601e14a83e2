import { expect } from 'chai';
import { CloseCode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { MAX_CLOSE_REASON, checkCloseArgs, encodeClosePayload, parseClosePayload } from '../../lib/protocol/close';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** RFC 6455 §7.4.1 / §7.4.2 and the IANA registry: codes an endpoint may put in a close frame. */
const VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
/** Reserved, never on the wire, or unassigned. */
const INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];

function codePayload(code: number, reason: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(code, 0);
  return Buffer.concat([head, reason]);
}

function expectError(value: unknown, code: string, closeCode: number): void {
  expect(value).to.be.instanceOf(WebSocketError);
  const err = value as WebSocketError;
  expect(err.code).to.equal(code);
  expect(err.closeCode).to.equal(closeCode);
}

describe('close payloads (RFC 6455 §5.5.1, §7.4)', () => {
  describe('parseClosePayload', () => {
    it('reads an empty payload as 1005 (no status) with an empty reason (§7.1.5)', () => {
      expect(parseClosePayload(Buffer.alloc(0))).to.deep.equal({ code: CloseCode.NoStatus, reason: '' });
    });

    it('rejects a 1-byte payload with WS_ERR_INVALID_CLOSE_PAYLOAD (1002)', () => {
      expectError(parseClosePayload(hex('03')), 'WS_ERR_INVALID_CLOSE_PAYLOAD', 1002);
    });

    it('reads a code in network byte order: 03 e8 is 1000', () => {
      expect(parseClosePayload(hex('03 e8'))).to.deep.equal({ code: 1000, reason: '' });
    });

    for (const code of VALID_CODES) {
      it(`accepts code ${code}`, () => {
        expect(parseClosePayload(codePayload(code, Buffer.from('bye')))).to.deep.equal({ code, reason: 'bye' });
      });
    }
    for (const code of INVALID_CODES) {
      it(`rejects code ${code} with WS_ERR_INVALID_CLOSE_CODE (1002)`, () => {
        expectError(parseClosePayload(codePayload(code)), 'WS_ERR_INVALID_CLOSE_CODE', 1002);
      });
    }

    it('decodes a UTF-8 reason', () => {
      expect(parseClosePayload(codePayload(1001, Buffer.from('départ 😀')))).to.deep.equal({ code: 1001, reason: 'départ 😀' });
    });

    for (const [name, bytes] of [
      ['a lone continuation byte', '80'],
      ['an overlong "/"', 'c0 af'],
      ['a surrogate', 'ed a0 80'],
      ['a truncated 3-byte character', 'e2 82'],
      ['a code point above U+10FFFF', 'f4 90 80 80'],
    ] as const) {
      it(`rejects a reason with ${name} with WS_ERR_INVALID_UTF8 (1007)`, () => {
        expectError(parseClosePayload(codePayload(1000, Buffer.concat([Buffer.from('ok'), hex(bytes)]))), 'WS_ERR_INVALID_UTF8', 1007);
      });
    }

    it('checks the code before the reason', () => {
      expectError(parseClosePayload(codePayload(1005, hex('ff'))), 'WS_ERR_INVALID_CLOSE_CODE', 1002);
    });
  });

  describe('checkCloseArgs', () => {
    it('accepts no code and no reason', () => {
      expect(checkCloseArgs()).to.equal(null);
      expect(checkCloseArgs(undefined, '')).to.equal(null);
    });
    it('rejects a reason without a code', () => {
      expectError(checkCloseArgs(undefined, 'why'), 'WS_ERR_INVALID_ARGUMENT', 1011);
    });
    for (const code of VALID_CODES) {
      it(`accepts code ${code}`, () => expect(checkCloseArgs(code, 'r')).to.equal(null));
    }
    for (const code of [...INVALID_CODES, 1000.5, NaN, -1000]) {
      it(`rejects code ${code} with WS_ERR_INVALID_ARGUMENT`, () => {
        expectError(checkCloseArgs(code), 'WS_ERR_INVALID_ARGUMENT', 1011);
      });
    }
    it(`accepts a reason of exactly ${MAX_CLOSE_REASON} UTF-8 bytes, rejects one more`, () => {
      expect(MAX_CLOSE_REASON).to.equal(123);
      expect(checkCloseArgs(1000, 'a'.repeat(123))).to.equal(null);
      expectError(checkCloseArgs(1000, 'a'.repeat(124)), 'WS_ERR_INVALID_ARGUMENT', 1011);
    });
    it('counts the reason in UTF-8 bytes, not characters', () => {
      // 41 three-byte characters are 123 bytes; one more ASCII byte is 124.
      expect(checkCloseArgs(1000, '€'.repeat(41))).to.equal(null);
      expectError(checkCloseArgs(1000, '€'.repeat(41) + 'a'), 'WS_ERR_INVALID_ARGUMENT', 1011);
    });
    it('rejects values of the wrong type (from untyped callers)', () => {
      expectError(checkCloseArgs('1000' as unknown as number), 'WS_ERR_INVALID_ARGUMENT', 1011);
      expectError(checkCloseArgs(1000, 42 as unknown as string), 'WS_ERR_INVALID_ARGUMENT', 1011);
    });
  });

  describe('encodeClosePayload', () => {
    it('is empty without a code', () => {
      expect(encodeClosePayload().length).to.equal(0);
    });
    it('is the code alone without a reason: 1000 -> 03 e8', () => {
      expect(encodeClosePayload(1000).toString('hex')).to.equal('03e8');
    });
    it('puts the code in network byte order, then the reason in UTF-8', () => {
      expect(encodeClosePayload(4001, 'é!').toString('hex')).to.equal('0fa1' + 'c3a921');
    });
    for (const code of VALID_CODES) {
      it(`round-trips code ${code} with a reason`, () => {
        const reason = `closing ${code} ✓`;
        expect(parseClosePayload(encodeClosePayload(code, reason))).to.deep.equal({ code, reason });
      });
    }
    it('round-trips the longest reason', () => {
      const reason = '€'.repeat(41);
      const payload = encodeClosePayload(1000, reason);
      expect(payload.length).to.equal(125);
      expect(parseClosePayload(payload)).to.deep.equal({ code: 1000, reason });
    });
  });
});
