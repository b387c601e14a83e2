/**
 * The one place that reads readable-stream's internal state objects (`_readableState`,
 * `_writableState`). The fast paths of Stage and WebSocket (emitIfFlowing, writableIdle) read
 * them to skip the streams' per-chunk bookkeeping only when doing so changes nothing anyone can
 * observe (lib/stages/stage.ts says when).
 *
 * Those fields are not readable-stream's public API, and a release may rename or change them.
 * So package.json pins readable-stream exactly (the version spec/stages/stage.spec.ts and
 * spec/stages/stream-internals.spec.ts were run on), and this module checks, when it is first
 * loaded, that the fields are there and behave as the fast paths assume. If they do not (an
 * `overrides` entry in an application's package.json forced another version), loading wspipe
 * throws WS_ERR_STREAM_INTERNALS at once, naming the fields and the versions, instead of
 * reordering or losing data later.
 */
import { Duplex, type Readable, type Writable } from './streams';

/** The fields of ReadableState that the fast paths read or set. */
export interface ReadableStateView {
  flowing: boolean | null;
  length: number;
  highWaterMark: number;
  objectMode: boolean;
  sync: boolean;
  ended: boolean;
  destroyed: boolean;
  errored: Error | null;
  decoder: unknown;
  awaitDrainWriters: unknown;
  dataEmitted: boolean;
  reading: boolean;
}

/** The fields of WritableState that the fast paths read. */
export interface WritableStateView {
  length: number;
  writing: boolean;
  corked: number;
  ending: boolean;
  destroyed: boolean;
  errored: Error | null;
  constructed: boolean;
  objectMode: boolean;
  needDrain: boolean;
  highWaterMark: number;
}

/** The version of readable-stream these fields were checked on; package.json pins the same. */
export const READABLE_STREAM_VERSION = '4.8.0';

export function readableState(stream: Readable): ReadableStateView {
  return (stream as unknown as { _readableState: ReadableStateView })._readableState;
}

export function writableState(stream: Writable): WritableStateView {
  return (stream as unknown as { _writableState: WritableStateView })._writableState;
}

const READABLE_FIELDS: ReadonlyArray<[keyof ReadableStateView, string]> = [
  ['flowing', 'boolean'],
  ['length', 'number'],
  ['highWaterMark', 'number'],
  ['objectMode', 'boolean'],
  ['sync', 'boolean'],
  ['ended', 'boolean'],
  ['destroyed', 'boolean'],
  ['errored', 'object'],
  ['decoder', 'object'],
  ['awaitDrainWriters', 'object'],
  ['dataEmitted', 'boolean'],
  ['reading', 'boolean'],
];

const WRITABLE_FIELDS: ReadonlyArray<[keyof WritableStateView, string]> = [
  ['length', 'number'],
  ['writing', 'boolean'],
  ['corked', 'number'],
  ['ending', 'boolean'],
  ['destroyed', 'boolean'],
  ['errored', 'object'],
  ['constructed', 'boolean'],
  ['objectMode', 'boolean'],
  ['needDrain', 'boolean'],
  ['highWaterMark', 'number'],
];

/**
 * What is wrong with the internals of this readable-stream, as a list of findings (empty: all
 * is as the fast paths assume). `make` builds the probe stream (a test passes another).
 */
export function findInternalsMismatch(make: () => Duplex = probeStream): string[] {
  const found: string[] = [];
  const d = make();
  const r = (d as unknown as { _readableState?: Record<string, unknown> })._readableState;
  const w = (d as unknown as { _writableState?: Record<string, unknown> })._writableState;
  if (r === undefined || r === null || typeof r !== 'object') return ['_readableState is missing'];
  if (w === undefined || w === null || typeof w !== 'object') return ['_writableState is missing'];
  for (const [name, type] of READABLE_FIELDS) {
    if (!(name in r)) found.push(`_readableState.${name} is missing`);
    else if (r[name] !== null && typeof r[name] !== type) found.push(`_readableState.${name} is a ${typeof r[name]}`);
  }
  for (const [name, type] of WRITABLE_FIELDS) {
    if (!(name in w)) found.push(`_writableState.${name} is missing`);
    else if (typeof w[name] !== type && !(type === 'object' && w[name] === null)) found.push(`_writableState.${name} is a ${typeof w[name]}`);
  }
  if (found.length > 0) return found;
  // What the fields mean, not only that they exist: a 'data' listener makes the side flowing at
  // once; cork() counts; an idle stream holds nothing.
  d.on('data', ignore);
  if (r.flowing !== true) found.push(`_readableState.flowing is ${String(r.flowing)} after on('data'), not true`);
  if (r.length !== 0 || w.length !== 0) found.push('a new stream holds data');
  d.cork();
  if (w.corked !== 1) found.push(`_writableState.corked is ${String(w.corked)} after cork(), not 1`);
  d.uncork();
  if (w.corked !== 0) found.push(`_writableState.corked is ${String(w.corked)} after uncork(), not 0`);
  d.destroy();
  return found;
}

function probeStream(): Duplex {
  return new Duplex({ read: ignore, write: (_c, _e, cb) => cb() });
}

function ignore(): void {}

/** Throws WS_ERR_STREAM_INTERNALS when findInternalsMismatch() finds anything. */
export function checkStreamInternals(make?: () => Duplex): void {
  const found = findInternalsMismatch(make);
  if (found.length === 0) return;
  const err = new Error(
    `wspipe cannot run on the readable-stream installed: its fast paths read internal fields that ` +
      `it does not have as readable-stream ${READABLE_STREAM_VERSION} has them (${found.join('; ')}). ` +
      `wspipe pins readable-stream ${READABLE_STREAM_VERSION}; remove the override that installs another.`,
  ) as Error & { code: string };
  err.code = 'WS_ERR_STREAM_INTERNALS';
  throw err;
}

checkStreamInternals();
