/**
 * RefusalBody: the body of a response that refused an opening handshake (any status but 101),
 * read as HTTP frames it (RFC 9112 §6.3), without I/O: bytes in, "complete" out.
 *
 * - Transfer-Encoding chunked (what Node's http server sends for `res.writeHead(403);
 *   res.end('no')`): the chunks are decoded, and the body is complete at the last chunk and the
 *   empty line after its trailers, not when the server closes a kept-alive connection seconds
 *   later.
 * - Content-Length: complete after that many bytes.
 * - Neither: the body runs to the end of the connection (the caller says when: end()).
 *
 * At most `max` bytes of body are kept; the body is complete once that many are (the rest is not
 * read). A chunked body that breaks its framing ends there, with what was decoded before.
 */
import { Buffer } from 'node:buffer';

const enum Step {
  Size,
  Data,
  DataEnd,
  Trailers,
  Done,
}

const CRLF = 0x0a;

export class RefusalBody {
  private readonly parts: Buffer[] = [];
  private kept = 0;
  private readonly limit: number;
  private readonly chunked: boolean;
  private step = Step.Size;
  /** Bytes of the current chunk still to come (Data), or of a line being read. */
  private remaining = 0;
  private line = '';
  private complete = false;

  constructor(headers: Readonly<Record<string, string | string[] | undefined>>, max: number) {
    const te = headers['transfer-encoding'];
    const codings = (Array.isArray(te) ? te.join(',') : (te ?? '')).toLowerCase().split(',').map((s) => s.trim());
    this.chunked = codings[codings.length - 1] === 'chunked';
    const declared = Number(headers['content-length']);
    const length = !this.chunked && Number.isSafeInteger(declared) && declared >= 0 ? declared : Infinity;
    this.limit = Math.min(max, length);
    if (this.limit === 0) this.complete = true;
  }

  /** Whether the body is complete (nothing more needs reading). */
  get done(): boolean {
    return this.complete;
  }

  /** The body so far (all of it once done). */
  get body(): Buffer {
    return Buffer.concat(this.parts, this.kept);
  }

  /** Takes bytes of the response after its head; returns done. */
  write(bytes: Buffer): boolean {
    if (this.complete) return true;
    if (!this.chunked) this.keep(bytes);
    else this.decode(bytes);
    return this.complete;
  }

  private keep(bytes: Buffer): void {
    const room = this.limit - this.kept;
    const kept = bytes.length > room ? bytes.subarray(0, room) : bytes;
    if (kept.length > 0) {
      this.parts.push(kept);
      this.kept += kept.length;
    }
    if (this.kept >= this.limit) this.complete = true;
  }

  private decode(bytes: Buffer): void {
    let i = 0;
    while (i < bytes.length && !this.complete) {
      if (this.step === Step.Data) {
        const n = Math.min(this.remaining, bytes.length - i);
        this.keep(bytes.subarray(i, i + n));
        this.remaining -= n;
        i += n;
        if (this.remaining === 0) this.step = Step.DataEnd;
        continue;
      }
      // A line: the chunk size (with extensions), the CRLF after the data, or a trailer.
      const end = bytes.indexOf(CRLF, i);
      const piece = bytes.toString('latin1', i, end === -1 ? bytes.length : end);
      if (this.line.length + piece.length > 4096) {
        this.complete = true; // no sane chunk line or trailer is that long: stop here
        return;
      }
      this.line += piece;
      if (end === -1) return;
      i = end + 1;
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    switch (this.step) {
      case Step.Size: {
        const size = /^([0-9a-fA-F]{1,8})[ \t]*(;.*)?$/.exec(line);
        if (size === null) {
          this.complete = true; // broken framing: keep what was decoded
          return;
        }
        this.remaining = parseInt(size[1]!, 16);
        this.step = this.remaining === 0 ? Step.Trailers : Step.Data;
        return;
      }
      case Step.DataEnd:
        this.step = Step.Size;
        if (line !== '') this.complete = true;
        return;
      case Step.Trailers:
        if (line === '') {
          this.step = Step.Done;
          this.complete = true;
        }
        return;
      default:
        return;
    }
  }
}
