/**
 * The NDJSON frame log: the record of each kind of frame, pieces joined into one line,
 * truncation, the parser at every chunking, errors, and the round trip.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { Frame, makeFrame } from '../../lib/protocol/frame';
import {
  FrameLogEntry,
  FrameLogInput,
  FrameLogParser,
  FrameLogParserCore,
  FrameLogRecord,
  FrameLogWriter,
  FrameLogWriterCore,
  formatFrameLogRecord,
  parseFrameLogLine,
  readFrameLog,
} from '../../lib/capture/frame-log';
import { FrameSplitterCore } from '../../lib/stages/frame-splitter';
import { collect, fromChunks, everyChunking, someChunkings } from '../helpers/chunks';
import { hex } from '../helpers/sockets';

const T0 = new Date('2024-05-01T12:00:00.000Z');

function records(inputs: FrameLogInput[], maxLoggedPayload?: number): FrameLogRecord[] {
  const out: FrameLogRecord[] = [];
  let tick = 0;
  const core = new FrameLogWriterCore(
    { maxLoggedPayload, now: () => new Date(T0.getTime() + 1000 * tick++) },
    { onRecord: (r) => out.push(r) },
  );
  for (const input of inputs) expect(core.write(input)).to.equal(null);
  return out;
}

/** The frames (pieces, with streaming) the splitter makes of wire bytes cut into `chunks`. */
function split(chunks: Buffer[], streaming = true): Frame[] {
  const frames: Frame[] = [];
  const splitter = new FrameSplitterCore({ streaming, rsv1: true }, { onFrame: (f) => frames.push(f) });
  for (const c of chunks) expect(splitter.write(c)).to.equal(null);
  return frames;
}

describe('frame log', () => {
  describe('FrameLogWriterCore', () => {
    it('writes one record per frame with every field (RFC 6455 §5.7 "Hello")', () => {
      const [r] = records([{ dir: 'upstream', frame: split([hex('81 05 48 65 6c 6c 6f')])[0]! }]);
      expect(r).to.deep.equal({
        t: T0.toISOString(),
        dir: 'upstream',
        opcode: 'text',
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        len: 5,
        text: 'Hello',
      });
    });

    it('logs the continuation of a text message as text and binary payloads as base64', () => {
      const frames = split([hex('01 03 48 65 6c 80 02 6c 6f 82 03 00 ff 10')]);
      const out = records(frames.map((frame) => ({ dir: 'in' as const, frame })));
      expect(out.map((r) => [r.opcode, r.fin, r.text, r.base64])).to.deep.equal([
        ['text', false, 'Hel', undefined],
        ['continuation', true, 'lo', undefined],
        ['binary', true, undefined, Buffer.from([0x00, 0xff, 0x10]).toString('base64')],
      ]);
    });

    it('logs compressed text (RSV1) as base64, and close frames with their code and reason', () => {
      const close = Buffer.concat([hex('88 05 03 e8'), Buffer.from('bye')]);
      const out = records(split([hex('c1 02 f2 48'), close]).map((frame) => ({ dir: 'downstream' as const, frame })));
      expect(out[0]).to.include({ opcode: 'text', rsv1: true, base64: Buffer.from([0xf2, 0x48]).toString('base64') });
      expect(out[0]!.text).to.equal(undefined);
      expect(out[1]).to.include({ opcode: 'close', code: 1000, reason: 'bye', len: 5 });
    });

    it('joins the pieces of a streamed frame into one line at every chunking, keeping the time of its first piece', () => {
      const payload = Buffer.from('a longer text frame, cut anywhere');
      const wire = Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
      for (const { name, chunks } of everyChunking(wire)) {
        const out = records(split(chunks).map((frame) => ({ dir: 'out' as const, frame })));
        expect(out, name).to.have.length(1);
        expect(out[0]!.text, name).to.equal(payload.toString());
        expect(out[0]!.t, name).to.equal(T0.toISOString());
      }
    });

    it('cuts payloads over maxLoggedPayload and marks them truncated, at every chunking', () => {
      const payload = Buffer.alloc(256);
      for (let i = 0; i < 256; i++) payload[i] = i;
      const wire = Buffer.concat([hex('82 7E 0100'), payload]);
      for (const { name, chunks } of someChunkings(wire)) {
        const [r] = records(split(chunks).map((frame) => ({ dir: 'out' as const, frame })), 10);
        expect(r!.len, name).to.equal(256);
        expect(r!.truncated, name).to.equal(true);
        expect(Buffer.from(r!.base64!, 'base64'), name).to.deep.equal(payload.subarray(0, 10));
      }
    });

    it('keeps the state of each direction apart (interleaved pieces)', () => {
      const a = split([hex('81 05 48 65'), hex('6c 6c 6f')]);
      const b = split([hex('81 02 68'), hex('69')]);
      const out = records([
        { dir: 'upstream', frame: a[0]! },
        { dir: 'downstream', frame: b[0]! },
        { dir: 'upstream', frame: a[1]! },
        { dir: 'downstream', frame: b[1]! },
      ]);
      expect(out.map((r) => [r.dir, r.text])).to.deep.equal([
        ['upstream', 'Hello'],
        ['downstream', 'hi'],
      ]);
    });

    it('fails on an unknown direction', () => {
      const core = new FrameLogWriterCore({}, { onRecord: () => {} });
      const err = core.write({ dir: 'sideways' as 'in', frame: makeFrame(Opcode.Text, Buffer.from('x')) });
      expect(err).to.be.instanceOf(WebSocketError);
      expect(err!.code).to.equal('WS_ERR_INVALID_ARGUMENT');
      expect(err!.closeCode).to.equal(1011);
    });
  });

  describe('parsing', () => {
    const line = JSON.stringify({ t: T0.toISOString(), dir: 'upstream', opcode: 'text', fin: false, rsv1: false, rsv2: false, rsv3: false, len: 3, text: 'Hel' });
    const line2 = JSON.stringify({ t: T0.toISOString(), dir: 'downstream', opcode: 'ping', fin: true, rsv1: false, rsv2: false, rsv3: false, len: 2, base64: 'AP8=' });

    it('reads a line back into a frame', () => {
      const entry = parseFrameLogLine(line) as FrameLogEntry;
      expect(entry.dir).to.equal('upstream');
      expect(entry.truncated).to.equal(false);
      expect(entry.frame).to.deep.equal(makeFrame(Opcode.Text, Buffer.from('Hel'), { fin: false }));
    });

    it('refuses bad lines with WS_ERR_INVALID_ARGUMENT', () => {
      const base = JSON.parse(line) as Record<string, unknown>;
      const bad = [
        'not json',
        '[1]',
        JSON.stringify({ ...base, opcode: 'shout' }),
        JSON.stringify({ ...base, dir: 'left' }),
        JSON.stringify({ ...base, fin: 'yes' }),
        JSON.stringify({ ...base, len: 4 }), // 3 bytes logged, not truncated
        JSON.stringify({ ...base, text: undefined }),
        JSON.stringify({ ...base, t: 'yesterday' }),
      ];
      for (const text of bad) {
        const err = parseFrameLogLine(text);
        expect(err, text).to.be.instanceOf(WebSocketError);
        expect((err as WebSocketError).code, text).to.equal('WS_ERR_INVALID_ARGUMENT');
      }
    });

    it('FrameLogParserCore reads the same entries at every chunking (blank lines skipped, last line without newline)', () => {
      const input = Buffer.from(`${line}\n\n${line2}`);
      for (const { name, chunks } of someChunkings(input, [1, 2, 3, 7, 50, 100])) {
        const entries: FrameLogEntry[] = [];
        const core = new FrameLogParserCore({}, { onEntry: (e) => entries.push(e) });
        for (const c of chunks) expect(core.write(c), name).to.equal(null);
        expect(core.end(), name).to.equal(null);
        expect(entries.map((e) => [e.dir, e.frame.opcode, e.frame.payload]), name).to.deep.equal([
          ['upstream', Opcode.Text, Buffer.from('Hel')],
          ['downstream', Opcode.Ping, Buffer.from([0, 255])],
        ]);
      }
    });

    it('bounds the line length', () => {
      const core = new FrameLogParserCore({ maxLineLength: 10 }, { onEntry: () => {} });
      const err = core.write(Buffer.from('{"t": "a very long line without its end'));
      expect(err?.code).to.equal('WS_ERR_INVALID_ARGUMENT');
    });

    it('reads a file, text or lines with readFrameLog', () => {
      const dir = mkdtempSync(join(tmpdir(), 'wspipe-log-'));
      try {
        const file = join(dir, 'log.ndjson');
        writeFileSync(file, `${line}\n${line2}\n`);
        for (const source of [file, `${line}\n${line2}\n`, [line, line2]]) {
          expect(readFrameLog(source).map((e) => e.frame.opcode)).to.deep.equal([Opcode.Text, Opcode.Ping]);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('round trip', () => {
    it('frames -> FrameLogWriter -> FrameLogParser gives the same frames', async () => {
      const frames: Array<[FrameLogInput['dir'], Frame]> = [
        ['upstream', makeFrame(Opcode.Text, Buffer.from('héllo 😀'), { fin: false })],
        ['upstream', makeFrame(Opcode.Continuation, Buffer.from(' wörld'))],
        ['downstream', makeFrame(Opcode.Binary, Buffer.from([0, 1, 2, 250]), { rsv1: true })],
        ['downstream', makeFrame(Opcode.Ping, Buffer.alloc(0))],
        ['upstream', makeFrame(Opcode.Pong, Buffer.from('p'))],
        ['in', makeFrame(Opcode.Binary, Buffer.alloc(70_000, 5), { rsv2: true, rsv3: true })],
        ['out', makeFrame(Opcode.Close, hex('0f a0 62 79 65'))],
      ];
      const writer = new FrameLogWriter({ now: () => T0, maxLoggedPayload: 1 << 20 });
      const lines = fromChunks(frames.map(([dir, frame]) => ({ dir, frame })), true).pipe(writer);
      const text = (await collect<Buffer | string>(lines)).map(String).join('');
      expect(text.split('\n')).to.have.length(frames.length + 1);
      const parser = new FrameLogParser();
      const entries = await collect<FrameLogEntry>(fromChunks([Buffer.from(text)]).pipe(parser));
      expect(entries.map((e) => [e.dir, e.frame])).to.deep.equal(frames);
      expect(entries.map((e) => e.truncated)).to.deep.equal(frames.map(() => false));
    });
  });

  it('formats a readable line for --print', () => {
    const [r] = records([{ dir: 'upstream', frame: makeFrame(Opcode.Text, Buffer.from('Hello')) }]);
    expect(formatFrameLogRecord(r!)).to.equal(`${T0.toISOString()} > upstream text fin len=5 "Hello"`);
    const [c] = records([{ dir: 'downstream', frame: makeFrame(Opcode.Close, hex('03 e8 6f 6b')) }]);
    expect(formatFrameLogRecord(c!)).to.equal(`${T0.toISOString()} < downstream close fin len=4 1000 "ok"`);
  });
});
