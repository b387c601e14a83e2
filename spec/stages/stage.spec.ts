import { expect } from 'chai';
import { PassThrough, Readable, Writable } from 'readable-stream';
import { WebSocketError } from '../../lib/protocol/errors';
import { Stage, emitIfFlowing } from '../../lib/stages/stage';

/**
 * A Stage for the specs: each input `{ n, id }` gives n outputs `{ id, i }`; `{ fail: true }`
 * fails the stage. `seen` records, for each step, how many writes the writable side counted while
 * the step ran (0: write() ran it itself; 1: Transform's usual path).
 */
class Repeat extends Stage {
  readonly seen: number[] = [];

  constructor(options: { readableHighWaterMark?: number } = {}) {
    super({ objectMode: true, ...options });
  }

  protected override step(chunk: { n?: number; id?: number; fail?: boolean }): WebSocketError | null {
    this.seen.push(this.writableLength);
    if (chunk.fail === true) return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'told to fail');
    for (let i = 0; i < (chunk.n ?? 1); i++) this.deliver({ id: chunk.id, i });
    return null;
  }
}

/** Bytes in, bytes out: each chunk comes out as is (and an empty chunk as nothing). */
class Echo extends Stage {
  protected override step(chunk: Buffer): WebSocketError | null {
    this.deliver(chunk);
    return null;
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A Writable in object mode that records what it gets and holds each callback until release(). */
function slowSink(highWaterMark: number): { sink: Writable; got: unknown[]; release(): void } {
  const got: unknown[] = [];
  let held: Array<() => void> = [];
  const sink = new Writable({
    objectMode: true,
    highWaterMark,
    write(chunk: unknown, _enc: BufferEncoding, cb: () => void) {
      got.push(chunk);
      held.push(cb);
    },
  });
  return {
    sink,
    got,
    release(): void {
      const callbacks = held;
      held = [];
      for (const cb of callbacks) cb();
    },
  };
}

describe('Stage', () => {
  it('piped and flowing, runs each step inside write() (the fast path) and delivers in order', async () => {
    const stage = new Repeat();
    const got: unknown[] = [];
    stage.on('data', (out) => got.push(out));
    await tick(); // flowing starts on the next tick
    for (let id = 0; id < 3; id++) expect(stage.write({ n: 2, id })).to.equal(true);
    // Delivered before write() returned, and no write was counted as pending while its step ran:
    // this fails if readable-stream's state no longer looks as Stage expects.
    expect(got).to.deep.equal([
      { id: 0, i: 0 },
      { id: 0, i: 1 },
      { id: 1, i: 0 },
      { id: 1, i: 1 },
      { id: 2, i: 0 },
      { id: 2, i: 1 },
    ]);
    expect(stage.seen).to.deep.equal([0, 0, 0]);
  });

  it('piped stage to stage, each output of either skips push(), also after the next stage ran its own step inside it', async () => {
    const first = new Repeat();
    const second = new Repeat();
    first.pipe(second);
    const got: unknown[] = [];
    second.on('data', (out) => got.push(out));
    await tick();
    const pushes = { first: 0, second: 0 };
    for (const [name, stage] of [['first', first], ['second', second]] as const) {
      const push = stage.push.bind(stage);
      stage.push = (chunk: unknown): boolean => {
        pushes[name]++;
        return push(chunk);
      };
    }
    // first's two outputs each run second's step inside first's step: second delivers, returns,
    // and first's next output must still go out directly.
    expect(first.write({ n: 2, id: 7 })).to.equal(true);
    expect(got).to.deep.equal([
      { id: 7, i: 0 },
      { id: 7, i: 0 },
    ]);
    expect(pushes).to.deep.equal({ first: 0, second: 0 });
    expect(first.seen).to.deep.equal([0]);
    expect(second.seen).to.deep.equal([0, 0]);
  });

  it('a write with a callback, a corked stage or a queue takes the usual path, in order', async () => {
    const stage = new Repeat();
    const got: Array<{ id: number }> = [];
    stage.on('data', (out: { id: number }) => got.push(out));
    await tick();
    let called = false;
    stage.write({ id: 0 }, () => (called = true));
    expect(called).to.equal(false); // the usual path calls back later
    stage.cork();
    stage.write({ id: 1 });
    stage.write({ id: 2 });
    expect(got.map((o) => o.id)).to.deep.equal([0]);
    stage.uncork();
    stage.write({ id: 3 });
    await tick();
    expect(called).to.equal(true);
    expect(got.map((o) => o.id)).to.deep.equal([0, 1, 2, 3]);
    expect(stage.seen.slice(0, 1)).to.deep.equal([1]);
  });

  it('keeps backpressure: a slow consumer fills the readable side, then write() returns false and waits for drain', async () => {
    const stage = new Repeat({ readableHighWaterMark: 4 });
    const { sink, got, release } = slowSink(1);
    stage.pipe(sink);
    await tick();
    let accepted = 0;
    let id = 0;
    while (stage.write({ n: 3, id: id++ })) {
      accepted++;
      if (accepted > 100) break;
    }
    expect(accepted).to.be.lessThan(40); // bounded: false comes after a few writes, not never
    // Nothing beyond the readable side's mark plus one step's outputs piles up there.
    expect(stage.readableLength).to.be.at.most(4 + 3);
    const written = id;
    let drained = false;
    stage.once('drain', () => (drained = true));
    for (let round = 0; round < 200 && got.length < written * 3; round++) {
      release();
      await tick();
    }
    expect(drained).to.equal(true);
    expect(got).to.have.length(written * 3);
    // Every output once, in order.
    got.forEach((out, k) => expect(out).to.deep.equal({ id: Math.floor(k / 3), i: k % 3 }));
  });

  it('a failing step destroys the stage with its WebSocketError; later writes fail without throwing', async () => {
    const stage = new Repeat();
    stage.resume();
    await tick();
    const errors: Error[] = [];
    stage.on('error', (err: Error) => errors.push(err));
    expect(stage.write({ fail: true })).to.equal(false);
    expect(stage.destroyed).to.equal(true);
    stage.write({ id: 1 });
    await tick();
    expect(errors).to.have.length(1);
    expect(errors[0]).to.be.instanceOf(WebSocketError);
    expect((errors[0] as WebSocketError).code).to.equal('WS_ERR_INVALID_ARGUMENT');
    expect(stage.seen).to.have.length(1); // the write after the failure never reached the core
  });

  it('after end(), a write is refused as by any Writable', async () => {
    const stage = new Repeat();
    stage.resume();
    const errors: Error[] = [];
    stage.on('error', (err: Error) => errors.push(err));
    stage.end();
    stage.write({ id: 1 });
    await tick();
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).to.deep.equal(['ERR_STREAM_WRITE_AFTER_END']);
    expect(stage.seen).to.deep.equal([]);
  });

  it('bytes: chunks of any size pass at once, strings and an encoding take the usual path, setEncoding is honoured', async () => {
    const stage = new Echo();
    const out = new PassThrough();
    stage.pipe(out);
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    await tick();
    expect(stage.write(Buffer.alloc(100_000, 1))).to.equal(true); // past the 16 KiB mark, yet consumed
    stage.write(Buffer.alloc(0));
    stage.write('abc');
    stage.write('6465', 'hex');
    await tick();
    expect(Buffer.concat(chunks).equals(Buffer.concat([Buffer.alloc(100_000, 1), Buffer.from('abcde')]))).to.equal(true);

    const decoding = new Echo();
    decoding.setEncoding('utf8');
    const text: string[] = [];
    decoding.on('data', (s: string) => text.push(s));
    await tick();
    decoding.write(Buffer.from([0xe2, 0x82]));
    decoding.write(Buffer.from([0xac]));
    await tick();
    expect(text.join('')).to.equal('€');
  });

  it('paused (read() consumers): outputs wait in the readable side and come out in order', async () => {
    const stage = new Repeat();
    stage.write({ n: 2, id: 0 });
    stage.write({ n: 1, id: 1 });
    await tick();
    expect(stage.read()).to.deep.equal({ id: 0, i: 0 });
    expect(stage.read()).to.deep.equal({ id: 0, i: 1 });
    expect(stage.read()).to.deep.equal({ id: 1, i: 0 });
    expect(stage.read()).to.equal(null);
  });

  it('emitIfFlowing: emits only where push() would emit at once, and leaves the stream as push() would', async () => {
    let reads = 0;
    const stream = new Readable({ objectMode: true, read: () => void reads++ });
    expect(emitIfFlowing(stream, 'early')).to.equal(false); // not flowing yet
    const got: unknown[] = [];
    stream.on('data', (v) => got.push(v));
    await tick(); // flowing starts (and a first read() asks _read for data)
    const askedBefore = reads;
    expect(emitIfFlowing(stream, 'a')).to.equal(true);
    expect(got).to.deep.equal(['a']);
    expect(stream.readableLength).to.equal(0);
    // As push() does: the outstanding _read() was answered, so the next read() may ask again.
    expect((stream as unknown as { _readableState: { reading: boolean } })._readableState.reading).to.equal(false);
    stream.read(0);
    expect(reads).to.equal(askedBefore + 1);
    stream.pause();
    expect(emitIfFlowing(stream, 'b')).to.equal(false);
    stream.push('b');
    stream.resume();
    expect(emitIfFlowing(stream, 'c')).to.equal(false); // 'b' still buffered until the resume's tick
    await tick();
    expect(got).to.deep.equal(['a', 'b']);

    const bytes = new Readable({ read() {} });
    bytes.on('data', () => undefined);
    await tick();
    expect(emitIfFlowing(bytes, Buffer.alloc(0))).to.equal(false); // push() drops an empty chunk
    bytes.setEncoding('utf8');
    expect(emitIfFlowing(bytes, Buffer.from('x'))).to.equal(false); // a decoder must see it
  });
});
