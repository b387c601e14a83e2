/**
 * RefusalBody (lib/handshake/refusal-body.ts): the body of a refused opening handshake, framed as
 * HTTP frames it (RFC 9112 §6.3, §7.1), fed at every chunk boundary.
 */
import { expect } from 'chai';
import { RefusalBody } from '../../lib/handshake/refusal-body';

/** Feeds `wire` cut at `at` (two writes); returns the body, whether done, and when it became done. */
function feedSplit(headers: Record<string, string>, wire: string, at: number, max = 65536): { body: string; done: boolean; doneAfter: number } {
  const r = new RefusalBody(headers, max);
  const bytes = Buffer.from(wire, 'latin1');
  let doneAfter = -1;
  for (const [from, to] of [
    [0, at],
    [at, bytes.length],
  ] as const) {
    if (r.write(bytes.subarray(from, to)) && doneAfter === -1) doneAfter = to;
  }
  return { body: r.body.toString('latin1'), done: r.done, doneAfter };
}

/** Feeds one byte at a time; returns the number of bytes taken when it became done (-1: never). */
function doneAt(headers: Record<string, string>, wire: string, max = 65536): { body: string; at: number } {
  const r = new RefusalBody(headers, max);
  const bytes = Buffer.from(wire, 'latin1');
  for (let i = 0; i < bytes.length; i++) if (r.write(bytes.subarray(i, i + 1))) return { body: r.body.toString('latin1'), at: i + 1 };
  return { body: r.body.toString('latin1'), at: -1 };
}

describe('RefusalBody', () => {
  const chunked = { 'transfer-encoding': 'chunked' };

  it("chunked (Node's http server: res.writeHead(403); res.end('no')): complete at the empty line after the last chunk, at every cut", () => {
    const wire = '2\r\nno\r\n0\r\n\r\n';
    for (let at = 0; at <= wire.length; at++) {
      expect(feedSplit(chunked, wire, at), `cut at ${at}`).to.deep.equal({ body: 'no', done: true, doneAfter: wire.length });
    }
    expect(doneAt(chunked, wire)).to.deep.equal({ body: 'no', at: wire.length });
  });

  it('chunked with chunk extensions and trailers (RFC 9112 §7.1.1, §7.1.2), hex sizes, at every cut', () => {
    const wire = '5;name=value\r\nhello\r\n9\r\n world, 1\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n';
    for (let at = 0; at <= wire.length; at++) {
      expect(feedSplit({ 'transfer-encoding': 'gzip, Chunked' }, wire, at), `cut at ${at}`).to.deep.equal({ body: 'hello world, 1', done: true, doneAfter: wire.length });
    }
  });

  it('chunked: at most max bytes are kept, and the body is complete then', () => {
    expect(doneAt(chunked, '5\r\nhello\r\n0\r\n\r\n', 3)).to.deep.equal({ body: 'hel', at: 6 });
  });

  it('chunked with broken framing ends there, keeping what was decoded before', () => {
    expect(doneAt(chunked, '2\r\nno\r\nzz\r\nmore')).to.deep.equal({ body: 'no', at: 11 });
    expect(doneAt(chunked, '2\r\nnoX\r\n')).to.deep.equal({ body: 'no', at: 8 });
  });

  it('Content-Length: complete after that many bytes; bytes after it are not kept', () => {
    expect(doneAt({ 'content-length': '5' }, 'hello, and more')).to.deep.equal({ body: 'hello', at: 5 });
    expect(new RefusalBody({ 'content-length': '0' }, 100).done).to.equal(true);
  });

  it('neither: runs to the end of the connection, up to max', () => {
    expect(doneAt({}, 'all of it')).to.deep.equal({ body: 'all of it', at: -1 });
    expect(doneAt({}, 'all of it', 3)).to.deep.equal({ body: 'all', at: 3 });
    // Transfer-Encoding whose last coding is not chunked: to the end (RFC 9112 §6.3 item 4, for a response).
    expect(doneAt({ 'transfer-encoding': 'gzip' }, '2\r\nno\r\n0\r\n\r\n').at).to.equal(-1);
  });
});
