/**
 * Top functions by self time in a V8 .cpuprofile (as written by `node --cpu-prof`).
 *
 *   npx ts-node bench/profile-summary.ts file.cpuprofile [count] [fromUs toUs]
 *
 * count defaults to 15; fromUs and toUs keep only the samples taken in that window of the
 * monotonic clock (microseconds, the clock of the profile's startTime), e.g. the measured window
 * of a load run, leaving out start-up and warm-up.
 *
 * Self time of a function = the time of the samples taken while it was on top of the stack,
 * summed over every node of the call tree for that function (same name, file and line). Note
 * that V8 inlines small callees: their time then counts as their caller's self time.
 *
 * Line numbers of .ts files: the profile gives lines of the JavaScript that ts-node ran; they
 * are mapped back to TypeScript lines by transpiling the file again with a source map.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  location: string;
  /** Milliseconds. */
  self: number;
}

/** A window of the monotonic clock, in microseconds. */
export type Window = [number, number];

/**
 * The profile's functions by self time, largest first, plus the total and idle sampled time
 * (ms), counting only the samples within `window` when one is given.
 */
export function selfTimes(profile: CpuProfile, window?: Window): { total: number; idle: number; functions: SelfTime[] } {
  const keyOf = new Map<number, string>();
  const byKey = new Map<string, SelfTime>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName === '' ? '(anonymous)' : functionName;
    const location = url === '' ? '' : where(url, lineNumber);
    const key = `${name} ${location}`;
    keyOf.set(node.id, key);
    if (!byKey.has(key)) byKey.set(key, { name, location, self: 0 });
  }
  let total = 0;
  let at = profile.startTime;
  // timeDeltas[i] is the time between sample i-1 and sample i: charge it to sample i.
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window !== undefined && (at < window[0] || at > window[1])) continue;
    const ms = delta / 1000;
    total += ms;
    byKey.get(keyOf.get(profile.samples[i]!)!)!.self += ms;
  }
  const idle = byKey.get('(idle) ')?.self ?? 0;
  const functions = [...byKey.values()].filter((f) => f.self > 0 && f.name !== '(idle)').sort((a, b) => b.self - a.self);
  return { total, idle, functions };
}

const ROOT = path.resolve(__dirname, '..');

/** "file:line" with the path relative to the repository and, for TypeScript, the TypeScript line. */
function where(url: string, jsLine: number): string {
  const file = url.startsWith('file://') ? url.slice('file://'.length) : url;
  const shown = file.startsWith(ROOT) ? path.relative(ROOT, file) : file;
  const line = file.endsWith('.ts') ? (tsLine(file, jsLine) ?? jsLine) : jsLine;
  return `${shown}:${line + 1}`;
}

/** For each line of a .ts file's transpiled JavaScript, the TypeScript line it came from (0-based). */
const lineMaps = new Map<string, number[] | null>();

function tsLine(file: string, jsLine: number): number | null {
  if (!lineMaps.has(file)) lineMaps.set(file, buildLineMap(file));
  const line = lineMaps.get(file)?.[jsLine];
  return line === undefined || line < 0 ? null : line;
}

function buildLineMap(file: string): number[] | null {
  let source: string;
  try {
    source = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  // The options that matter for line layout are those of tsconfig.json (ES2022, CommonJS).
  const output = ts.transpileModule(source, {
    fileName: file,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, esModuleInterop: true, sourceMap: true },
  });
  if (output.sourceMapText === undefined) return null;
  const mappings = (JSON.parse(output.sourceMapText) as { mappings: string }).mappings;
  const lines: number[] = [];
  let sourceLine = 0;
  for (const generated of mappings.split(';')) {
    let first = -1;
    for (const segment of generated.split(',')) {
      if (segment === '') continue;
      const fields = decodeVlq(segment);
      if (fields.length < 4) continue;
      sourceLine += fields[2]!;
      if (first < 0) first = sourceLine;
    }
    lines.push(first);
  }
  return lines;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** The numbers of one source-map segment (base64 VLQ: 5 bits a digit, sign in the lowest bit). */
function decodeVlq(segment: string): number[] {
  const values: number[] = [];
  let value = 0;
  let shift = 0;
  for (const char of segment) {
    const digit = BASE64.indexOf(char);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      values.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return values;
}

/** A Markdown table of the top `count` functions of the profile in `file` (within `window`, if given). */
export function summarise(file: string, count = 15, window?: Window): string {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  let { total, idle, functions } = selfTimes(profile, window);
  let scope = window === undefined ? 'whole profile' : 'measured window only';
  if (window !== undefined && total === 0) {
    // The window missed every sample (another clock?): fall back to the whole profile.
    ({ total, idle, functions } = selfTimes(profile));
    scope = 'whole profile: no sample in the window';
  }
  const busy = total - idle;
  const lines = [
    `${path.basename(file)} (${scope}): ${Math.round(total)} ms sampled, ${Math.round(idle)} ms idle; % of busy time`,
    '',
    '| # | self ms | self % | function | where |',
    '| ---: | ---: | ---: | --- | --- |',
  ];
  functions.slice(0, count).forEach((f, i) => {
    const share = busy > 0 ? ((100 * f.self) / busy).toFixed(1) : 'n/a';
    lines.push(`| ${i + 1} | ${f.self.toFixed(1)} | ${share} | ${f.name} | ${f.location} |`);
  });
  return lines.join('\n');
}

if (require.main === module) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: profile-summary.ts file.cpuprofile [count]\n');
    process.exit(2);
  }
  const [from, to] = [process.argv[4], process.argv[5]];
  const window: Window | undefined = from !== undefined && to !== undefined ? [Number(from), Number(to)] : undefined;
  process.stdout.write(`${summarise(file, Number(process.argv[3] ?? '15'), window)}\n`);
}
