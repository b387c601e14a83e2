import { expect } from 'chai';
import { CloseCode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { ExtensionOffer, formatExtensions, parseExtensions } from '../../lib/handshake/handshake';
import {
  DeflateAgreement,
  PerMessageDeflateOptions,
  ZlibLimiter,
  acceptDeflateOffer,
  acceptDeflateResponse,
  buildDeflateOffer,
  checkDeflateOptions,
  deflateSides,
  sharedLimiter,
} from '../../lib/deflate/permessage-deflate';

/** Parses a Sec-WebSocket-Extensions value written as a browser or ws would send it. */
function offers(header: string): ExtensionOffer[] {
  const parsed = parseExtensions(header);
  if (parsed instanceof WebSocketError) throw parsed;
  return parsed;
}

/** The server's answer to `header`, formatted as it goes on the wire ('' when declined). */
function answer(header: string, options: PerMessageDeflateOptions = {}): string {
  const agreement = acceptDeflateOffer(offers(header), options);
  return agreement === null ? '' : formatExtensions([agreement.response]);
}

function clientAccepts(header: string, options: PerMessageDeflateOptions = {}): DeflateAgreement | null | WebSocketError {
  return acceptDeflateResponse(offers(header), options);
}

function expectInvalid(result: unknown): void {
  expect(result).to.be.instanceOf(WebSocketError);
  expect((result as WebSocketError).code).to.equal('WS_ERR_INVALID_EXTENSION');
  expect((result as WebSocketError).closeCode).to.equal(CloseCode.MandatoryExtension);
}

describe('permessage-deflate negotiation (RFC 7692 §5, §7.1)', () => {
  describe('server: accepting offers', () => {
    it('accepts a bare offer with no parameters', () => {
      expect(answer('permessage-deflate')).to.equal('permessage-deflate');
    });

    it("accepts Chrome's offer (client_max_window_bits without a value) without naming a window", () => {
      expect(answer('permessage-deflate; client_max_window_bits')).to.equal('permessage-deflate');
    });

    it('ignores other extensions and picks permessage-deflate wherever it is in the list', () => {
      expect(answer('x-webkit-deflate-frame, permessage-deflate; client_max_window_bits, foo')).to.equal('permessage-deflate');
      expect(answer('x-webkit-deflate-frame')).to.equal('');
    });

    it('§7.1.1.1: echoes server_no_context_takeover when offered', () => {
      const agreement = acceptDeflateOffer(offers('permessage-deflate; server_no_context_takeover'))!;
      expect(formatExtensions([agreement.response])).to.equal('permessage-deflate; server_no_context_takeover');
      expect(agreement.serverNoContextTakeover).to.equal(true);
      expect(agreement.clientNoContextTakeover).to.equal(false);
    });

    it('§7.1.1.2: echoes client_no_context_takeover when offered, and adds it when configured', () => {
      expect(answer('permessage-deflate; client_no_context_takeover')).to.equal('permessage-deflate; client_no_context_takeover');
      expect(answer('permessage-deflate', { clientNoContextTakeover: true })).to.equal('permessage-deflate; client_no_context_takeover');
      expect(answer('permessage-deflate', { serverNoContextTakeover: true })).to.equal('permessage-deflate; server_no_context_takeover');
    });

    it('§7.1.2.1: answers an offered server_max_window_bits with a value no larger', () => {
      expect(answer('permessage-deflate; server_max_window_bits=10')).to.equal('permessage-deflate; server_max_window_bits=10');
      expect(answer('permessage-deflate; server_max_window_bits=12', { serverMaxWindowBits: 10 })).to.equal(
        'permessage-deflate; server_max_window_bits=10',
      );
      expect(answer('permessage-deflate; server_max_window_bits=9', { serverMaxWindowBits: 11 })).to.equal(
        'permessage-deflate; server_max_window_bits=9',
      );
      // A quoted value is the same value (RFC 6455 §9.1).
      expect(answer('permessage-deflate; server_max_window_bits="11"')).to.equal('permessage-deflate; server_max_window_bits=11');
    });

    it('announces its own smaller window when configured and not asked', () => {
      const agreement = acceptDeflateOffer(offers('permessage-deflate'), { serverMaxWindowBits: 12 })!;
      expect(formatExtensions([agreement.response])).to.equal('permessage-deflate; server_max_window_bits=12');
      expect(agreement.serverMaxWindowBits).to.equal(12);
    });

    it('§7.1.2.2: names client_max_window_bits only when the client offered it', () => {
      expect(answer('permessage-deflate; client_max_window_bits', { clientMaxWindowBits: 10 })).to.equal(
        'permessage-deflate; client_max_window_bits=10',
      );
      expect(answer('permessage-deflate; client_max_window_bits=12', { clientMaxWindowBits: 10 })).to.equal(
        'permessage-deflate; client_max_window_bits=10',
      );
      expect(answer('permessage-deflate; client_max_window_bits=9', { clientMaxWindowBits: 10 })).to.equal(
        'permessage-deflate; client_max_window_bits=9',
      );
      expect(answer('permessage-deflate; client_max_window_bits=8')).to.equal('permessage-deflate; client_max_window_bits=8');
      // Not offered: the response MUST NOT include it; the option is not a requirement.
      const agreement = acceptDeflateOffer(offers('permessage-deflate'), { clientMaxWindowBits: 10 })!;
      expect(formatExtensions([agreement.response])).to.equal('permessage-deflate');
      expect(agreement.clientMaxWindowBits).to.equal(15);
    });

    it('accepts all four parameters together', () => {
      const agreement = acceptDeflateOffer(
        offers('permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11'),
      )!;
      expect(agreement).to.deep.include({
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 11,
      });
    });

    describe('§7: declines an invalid offer and tries the next one', () => {
      const invalid = [
        ['an unknown parameter', 'permessage-deflate; foo'],
        ['an unknown parameter with a value', 'permessage-deflate; foo=1'],
        ['a repeated parameter', 'permessage-deflate; server_no_context_takeover; server_no_context_takeover'],
        ['a repeated window parameter', 'permessage-deflate; client_max_window_bits=10; client_max_window_bits=11'],
        ['a value on server_no_context_takeover', 'permessage-deflate; server_no_context_takeover=1'],
        ['a value on client_no_context_takeover', 'permessage-deflate; client_no_context_takeover=true'],
        ['server_max_window_bits without a value', 'permessage-deflate; server_max_window_bits'],
        ['server_max_window_bits=7', 'permessage-deflate; server_max_window_bits=7'],
        ['server_max_window_bits=16', 'permessage-deflate; server_max_window_bits=16'],
        ['server_max_window_bits with a leading zero', 'permessage-deflate; server_max_window_bits=09'],
        ['client_max_window_bits=abc', 'permessage-deflate; client_max_window_bits=abc'],
        ['client_max_window_bits=0', 'permessage-deflate; client_max_window_bits=0'],
      ];
      for (const [what, header] of invalid) {
        it(`declines ${what}`, () => {
          expect(answer(header!)).to.equal('');
          expect(answer(`${header!}, permessage-deflate; client_no_context_takeover`)).to.equal(
            'permessage-deflate; client_no_context_takeover',
          );
        });
      }
    });

    it('takes offers in order of preference: the first acceptable one wins', () => {
      expect(answer('permessage-deflate; server_max_window_bits=10, permessage-deflate')).to.equal(
        'permessage-deflate; server_max_window_bits=10',
      );
      expect(answer('permessage-deflate, permessage-deflate; server_max_window_bits=10')).to.equal('permessage-deflate');
    });

    it('declines an offer that needs the server to compress with an 8-bit window (zlib cannot), falling back to the next', () => {
      expect(answer('permessage-deflate; server_max_window_bits=8')).to.equal('');
      expect(answer('permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9')).to.equal(
        'permessage-deflate; server_max_window_bits=9',
      );
    });
  });

  describe('client: the offer', () => {
    it('offers client_max_window_bits without a value by default', () => {
      expect(formatExtensions([buildDeflateOffer()])).to.equal('permessage-deflate; client_max_window_bits');
    });

    it('carries every configured parameter', () => {
      expect(
        formatExtensions([
          buildDeflateOffer({
            serverNoContextTakeover: true,
            clientNoContextTakeover: true,
            serverMaxWindowBits: 10,
            clientMaxWindowBits: 12,
          }),
        ]),
      ).to.equal(
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12',
      );
    });

    it('round-trips: our server accepts our client offer for every option combination', () => {
      for (const serverNoContextTakeover of [false, true]) {
        for (const clientNoContextTakeover of [false, true]) {
          for (const serverMaxWindowBits of [undefined, 9, 12]) {
            for (const clientMaxWindowBits of [undefined, 9, 13]) {
              const options = { serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits };
              const server = acceptDeflateOffer([buildDeflateOffer(options)]);
              expect(server, JSON.stringify(options)).to.not.equal(null);
              const client = acceptDeflateResponse(offers(formatExtensions([server!.response])), options);
              expect(client, JSON.stringify(options)).to.not.be.instanceOf(WebSocketError);
              expect(client, JSON.stringify(options)).to.deep.include({
                serverNoContextTakeover: server!.serverNoContextTakeover,
                serverMaxWindowBits: server!.serverMaxWindowBits,
                clientMaxWindowBits: server!.clientMaxWindowBits,
              });
            }
          }
        }
      }
    });
  });

  describe('client: checking the response', () => {
    it('no permessage-deflate in the response: null (no compression)', () => {
      expect(acceptDeflateResponse([])).to.equal(null);
      expect(clientAccepts('x-other')).to.equal(null);
    });

    it('reads every parameter of an acceptable response', () => {
      const agreement = clientAccepts(
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11',
      ) as DeflateAgreement;
      expect(agreement).to.deep.include({
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 11,
      });
      expect(clientAccepts('permessage-deflate')).to.deep.include({ serverMaxWindowBits: 15, clientMaxWindowBits: 15 });
    });

    const failing = [
      ['an unknown parameter', 'permessage-deflate; foo', {}],
      ['a repeated parameter', 'permessage-deflate; client_no_context_takeover; client_no_context_takeover', {}],
      ['client_max_window_bits without a value', 'permessage-deflate; client_max_window_bits', {}],
      ['server_max_window_bits=16', 'permessage-deflate; server_max_window_bits=16', {}],
      ['a value on server_no_context_takeover', 'permessage-deflate; server_no_context_takeover=x', {}],
      ['permessage-deflate twice', 'permessage-deflate, permessage-deflate', {}],
      ['server_no_context_takeover requested and missing', 'permessage-deflate', { serverNoContextTakeover: true }],
      ['server_max_window_bits requested and missing', 'permessage-deflate', { serverMaxWindowBits: 10 }],
      ['server_max_window_bits over the one offered', 'permessage-deflate; server_max_window_bits=11', { serverMaxWindowBits: 10 }],
      ['client_max_window_bits over the one offered', 'permessage-deflate; client_max_window_bits=12', { clientMaxWindowBits: 10 }],
    ] as const;
    for (const [what, header, options] of failing) {
      it(`fails with WS_ERR_INVALID_EXTENSION (1010) on ${what}`, () => {
        expectInvalid(clientAccepts(header, options));
      });
    }

    it('a response asking us to compress with 8 bits keeps the extension but sends uncompressed (zlib cannot)', () => {
      const agreement = clientAccepts('permessage-deflate; client_max_window_bits=8') as DeflateAgreement;
      const sides = deflateSides(agreement, 'client');
      expect(sides.deflate).to.equal(null);
      expect(sides.inflate.windowBits).to.equal(15);
    });
  });

  describe('deflateSides', () => {
    const agreement: DeflateAgreement = {
      response: { name: 'permessage-deflate', params: [] },
      serverNoContextTakeover: true,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 8,
    };
    it('server: deflates with the server parameters, inflates with the client ones (8 inflated as 9)', () => {
      expect(deflateSides(agreement, 'server')).to.deep.equal({
        inflate: { windowBits: 9, noContextTakeover: false },
        deflate: { windowBits: 10, noContextTakeover: true },
      });
    });
    it('client: the other way round; cannot compress with 8', () => {
      expect(deflateSides(agreement, 'client')).to.deep.equal({
        inflate: { windowBits: 10, noContextTakeover: true },
        deflate: null,
      });
    });
  });

  describe('checkDeflateOptions', () => {
    it('refuses an 8-bit window for the side that compresses, allows it for the side that inflates', () => {
      expect(() => checkDeflateOptions({ serverMaxWindowBits: 8 }, 'server')).to.throw(RangeError);
      expect(() => checkDeflateOptions({ clientMaxWindowBits: 8 }, 'client')).to.throw(RangeError);
      expect(() => checkDeflateOptions({ clientMaxWindowBits: 8 }, 'server')).to.not.throw();
      expect(() => checkDeflateOptions({ serverMaxWindowBits: 8 }, 'client')).to.not.throw();
    });
    it('refuses out-of-range values', () => {
      expect(() => checkDeflateOptions({ serverMaxWindowBits: 16 }, 'server')).to.throw(RangeError);
      expect(() => checkDeflateOptions({ level: 10 }, 'server')).to.throw(RangeError);
      expect(() => checkDeflateOptions({ memLevel: 0 }, 'server')).to.throw(RangeError);
      expect(() => checkDeflateOptions({ threshold: -1 }, 'server')).to.throw(RangeError);
      expect(() => checkDeflateOptions({ maxConcurrency: 0 }, 'server')).to.throw(RangeError);
      expect(() => checkDeflateOptions({ threshold: 0, level: 9, memLevel: 9, maxConcurrency: 1 }, 'client')).to.not.throw();
    });
  });

  describe('ZlibLimiter', () => {
    it('runs at most `concurrency` tasks, the rest in arrival order as slots are released', () => {
      const limiter = new ZlibLimiter(2);
      const ran: number[] = [];
      for (let i = 0; i < 5; i++) limiter.acquire(() => ran.push(i));
      expect(ran).to.deep.equal([0, 1]);
      expect(limiter.active).to.equal(2);
      expect(limiter.waiting).to.equal(3);
      limiter.release();
      expect(ran).to.deep.equal([0, 1, 2]);
      limiter.release();
      limiter.release();
      expect(ran).to.deep.equal([0, 1, 2, 3, 4]);
      limiter.release();
      limiter.release();
      expect(limiter.active).to.equal(0);
      expect(limiter.waiting).to.equal(0);
    });
    it('sharedLimiter gives one limiter per concurrency value', () => {
      expect(sharedLimiter(3)).to.equal(sharedLimiter(3));
      expect(sharedLimiter(3)).to.not.equal(sharedLimiter(4));
      expect(sharedLimiter().concurrency).to.equal(10);
    });
  });
});
