/**
 * Interop with a real browser: Debian's Chromium, driven by playwright-core (no browser
 * download), talks to our server through its own WebSocket API, over ws:// and over wss://
 * (a certificate made now with openssl; Chromium runs with --ignore-certificate-errors), and
 * over ws:// with permessage-deflate accepted by our server.
 *
 * The page (spec/fixtures/interop-page.html) runs each case and returns JSON; the Node side
 * checks it against what our server recorded. Without Chromium (or openssl, for wss://) the
 * suite is skipped locally and fails on CI (see requirePeer in spec/helpers/peers.ts).
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, BrowserContext, Page } from 'playwright-core';
import {
  FIXTURES,
  NON_ASCII_TEXT,
  PeerServer,
  findChromium,
  findOpenssl,
  makeCertificate,
  newId,
  payload,
  CHROMIUM_ARGS,
  requirePeer,
  sha256,
  startPeerServer,
} from './helpers/peers';

/** The shared flags, and the wss:// suite's self-signed certificate accepted. */
const BROWSER_ARGS = [...CHROMIUM_ARGS, '--ignore-certificate-errors'];

const MIB = 1024 * 1024;
/** The largest message: 16 MiB, or 4 MiB with permessage-deflate (zlib both ways is slower). */
const LARGEST = { plain: 16 * MIB, deflate: 4 * MIB };
const arrayBufferSizes = (largest: number): number[] => [0, 125, 126, 65535, 65536, largest];
const blobSizes = (largest: number): number[] => [1, 70000, largest];
const LONG_TEXT = 'aé€😀'.repeat(30000); // 300 KB of UTF-8, characters of every length

interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** Runs window.runCase(name, args) in the page and returns its JSON result. */
async function runCase<T>(page: Page, name: string, args: Record<string, unknown>): Promise<T> {
  return (await page.evaluate(([n, a]) => (globalThis as unknown as PageWindow).runCase(n, a), [name, args] as const)) as T;
}

interface PageWindow {
  runCase(name: string, args: unknown): Promise<unknown>;
}

describe('interop with chromium', function () {
  this.timeout(60000);
  let context: BrowserContext | null = null;
  let profile = '';

  before(async function () {
    const executablePath = requirePeer(this, findChromium());
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wspipe-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: BROWSER_ARGS,
    });
  });

  after(async () => {
    await context?.close();
    context = null;
    if (profile !== '') fs.rmSync(profile, { recursive: true, force: true });
  });

  // Every case runs over ws://, over wss://, and over ws:// with permessage-deflate accepted.
  const variants = [
    { scheme: 'ws', deflate: false },
    { scheme: 'wss', deflate: false },
    { scheme: 'ws', deflate: true },
  ] as const;
  for (const { scheme, deflate } of variants) {
    describe(`our server${deflate ? ' with permessage-deflate' : ''}, chromium client (${scheme}://)`, () => {
      let server: PeerServer;
      let page: Page;

      before(async function () {
        if (scheme === 'wss') requirePeer(this, findOpenssl());
        const html = fs.readFileSync(path.join(FIXTURES, 'interop-page.html'), 'utf8');
        server = await startPeerServer({
          page: html,
          tls: scheme === 'wss' ? makeCertificate() : undefined,
          server: { perMessageDeflate: deflate },
        });
        page = await context!.newPage();
        await page.goto(`${server.httpUrl}/`);
      });

      after(async () => {
        await page?.close();
        await server?.close();
      });

      it('echoes text with non-ASCII characters intact', async () => {
        const id = newId('text');
        const result = await runCase<{ echoes: Array<{ kind: string; text: string }>; close: CloseInfo }>(page, 'echoText', {
          id,
          texts: [NON_ASCII_TEXT, LONG_TEXT],
        });
        expect(result.echoes).to.deep.equal([
          { kind: 'string', text: NON_ASCII_TEXT },
          { kind: 'string', text: LONG_TEXT },
        ]);
        const record = await server.connection(id);
        expect(record.messages.map((m) => [m.binary, m.sha256])).to.deep.equal([
          [false, sha256(NON_ASCII_TEXT)],
          [false, sha256(LONG_TEXT)],
        ]);
        expect(record.messages[0]!.text).to.equal(NON_ASCII_TEXT);
      });

      for (const [as, sizes] of [
        ['arraybuffer', arrayBufferSizes(deflate ? LARGEST.deflate : LARGEST.plain)],
        ['blob', blobSizes(deflate ? LARGEST.deflate : LARGEST.plain)],
      ] as const) {
        for (const size of sizes) {
          it(`echoes binary sent as ${as === 'blob' ? 'a Blob' : 'an ArrayBuffer'} of ${size} bytes intact`, async () => {
            const id = newId(as);
            const seed = size % 251;
            const expected = sha256(payload(size, seed));
            const result = await runCase<{
              echo: { kind: string; length: number; sha256: string; intact: boolean };
              close: CloseInfo;
            }>(page, 'echoBinary', { id, size, seed, as });
            expect(result.echo).to.deep.equal({
              kind: as === 'blob' ? 'Blob' : 'ArrayBuffer',
              length: size,
              sha256: expected,
              intact: true,
            });
            const record = await server.connection(id);
            expect(record.messages).to.deep.equal([{ binary: true, length: size, sha256: expected }]);
            expect(await record.closed).to.deep.equal({ code: 1000, reason: '' });
          });
        }
      }

      it("selects the subprotocol: the page offers ['a', 'b'], the server picks 'b'", async () => {
        const id = newId('protocol');
        const result = await runCase<{ protocol: string }>(page, 'subprotocol', { id, protocols: ['a', 'b'] });
        expect(result.protocol).to.equal('b');
        expect((await server.connection(id)).protocol).to.equal('b');
      });

      it('reports the code and reason of a close started by the page, on both sides', async () => {
        const id = newId('page-close');
        const reason = 'bye from the page: é€😀';
        const result = await runCase<{ close: CloseInfo }>(page, 'pageCloses', { id, code: 4001, reason });
        // RFC 6455 §5.5.1: the endpoint answering a close "typically echos the status code it
        // received"; our echo carries the reason too, so the page's CloseEvent has it.
        expect(result.close).to.deep.equal({ code: 4001, reason, wasClean: true });
        expect(await (await server.connection(id)).closed).to.deep.equal({ code: 4001, reason });
      });

      it('reports 1005 on both sides when the page closes without a code', async () => {
        const id = newId('page-close-empty');
        const result = await runCase<{ close: CloseInfo }>(page, 'pageCloses', { id });
        expect(result.close).to.deep.equal({ code: 1005, reason: '', wasClean: true });
        expect(await (await server.connection(id)).closed).to.deep.equal({ code: 1005, reason: '' });
      });

      it('delivers a server-initiated close with 4000 and a reason (wasClean) after the last message', async () => {
        const id = newId('server-close');
        const reason = 'server says bye: ünïcödé';
        const result = await runCase<{ messages: unknown[]; close: CloseInfo }>(page, 'serverCloses', {
          id,
          code: 4000,
          reason,
        });
        expect(result).to.deep.equal({ messages: ['last words'], close: { code: 4000, reason, wasClean: true } });
        expect(await (await server.connection(id)).closed).to.deep.equal({ code: 4000, reason });
      });

      it('delivers a server-initiated empty close as 1005 (wasClean)', async () => {
        const id = newId('server-close-empty');
        const result = await runCase<{ messages: unknown[]; close: CloseInfo }>(page, 'serverCloses', { id });
        expect(result).to.deep.equal({ messages: ['last words'], close: { code: 1005, reason: '', wasClean: true } });
      });

      // ---- permessage-deflate (RFC 7692) -------------------------------------------------------
      // Chromium always offers permessage-deflate. Without the perMessageDeflate option our
      // server declines it and the connection works uncompressed; with it, the agreement shows
      // on both sides and every case above ran compressed (up to 4 MiB).
      it(`${deflate ? 'agrees on' : 'works without'} permessage-deflate, which Chromium offers`, async () => {
        const id = newId('deflate');
        const result = await runCase<{ extensions: string; echo: string; close: CloseInfo }>(page, 'extensions', { id });
        const record = await server.connection(id);
        expect(record.offeredExtensions).to.match(/permessage-deflate/);
        if (deflate) {
          expect(record.extensions).to.match(/^permessage-deflate/);
          expect(result.extensions).to.match(/^permessage-deflate/);
        } else {
          expect(record.extensions).to.equal('');
          expect(result.extensions).to.equal('');
        }
        expect(result.echo).to.equal('deflate me deflate me deflate me');
        expect(result.close).to.deep.equal({ code: 1000, reason: '', wasClean: true });
      });
      // ---- end of permessage-deflate ------------------------------------------------------------
    });
  }
});
