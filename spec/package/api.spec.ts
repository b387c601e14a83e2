/**
 * The public API is a decision: lib/index.ts (and every other entry point of package.json's
 * `exports`) names each export, and the names and published declarations are compared with the
 * committed snapshot spec/package/api.md. After a deliberate change: `npm run api:update`, review
 * the diff of spec/package/api.md, commit it with the change.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, SNAPSHOT, Surface, UPDATE_COMMAND, apiSurface, renderSnapshot } from './api-surface';

/** What the README and docs document, by name (they must be importable from 'wspipe'). */
const DOCUMENTED = [
  'WebSocket', 'WebSocketServer', 'createServer', 'connect', 'WebSocketError', 'isWebSocketError', 'ERROR_TABLE',
  'CloseCode', 'Opcode', 'MessageReadable', 'MessageWritable', 'Tap',
  'createProxy', 'WebSocketProxy', 'ProxyConnection',
  'FrameLogWriter', 'readFrameLog', 'replay',
  'HandshakeParser', 'FrameSplitter', 'Unmasker', 'FragmentAssembler', 'ControlFrameResponder', 'MessageFramer', 'Masker',
  'FrameSerializer', 'Inflater', 'Deflater', 'validateUpgradeRequest', 'buildAcceptResponse', 'buildRejectResponse',
];
/** Internals that once leaked through `export *` (issue #19): they must stay unexported. */
const INTERNAL = [
  'ZlibLimiter', 'attachZlib', 'discardZlib', 'sharedLimiter', 'FrameQueue', 'COALESCE_LIMIT', 'unmaskFrame', 'maskingError',
  'toMessage', 'applyMask', 'randomMask', 'MaskSlots', 'Utf8Validator', 'isValidUtf8', 'checkCloseArgs', 'Stage',
  'StageOutput', 'emitIfFlowing', 'writableIdle', 'Receiver', 'Sender', 'closeFrame', 'headerValue', 'parseTokenList',
  'hasToken', 'checkDeflateOptions', 'DEFLATE_TRAILER', 'resolveUpstream', 'TapPoint', 'MESSAGE_STREAM_HIGH_WATER_MARK',
];

function firstDifference(actual: string, expected: string): string {
  const a = actual.split('\n');
  const e = expected.split('\n');
  for (let i = 0; i < Math.max(a.length, e.length); i++) {
    if (a[i] !== e[i]) return `line ${i + 1}:\n  snapshot: ${e[i] ?? '(end of file)'}\n  now:      ${a[i] ?? '(end of file)'}`;
  }
  return '(none)';
}

describe('package: the public API', function () {
  this.timeout(120000);
  let surface: Surface;

  before(() => {
    surface = apiSurface();
  });

  it("lib/index.ts names every export (no `export *`)", () => {
    const source = fs.readFileSync(path.join(ROOT, 'lib', 'index.ts'), 'utf8');
    expect(source).not.to.match(/^\s*export\s+\*/m);
  });

  it('the names and declarations match the snapshot spec/package/api.md', () => {
    const now = renderSnapshot(surface);
    const committed = fs.existsSync(SNAPSHOT) ? fs.readFileSync(SNAPSHOT, 'utf8') : '';
    if (now !== committed) {
      expect.fail(
        `The public API differs from spec/package/api.md (first difference at ${firstDifference(now, committed)}).\n` +
          `If the change is deliberate, run \`${UPDATE_COMMAND}\`, review the diff of spec/package/api.md and commit it.`,
      );
    }
  });

  it('what runs is what is declared: the run-time exports are the declared values', () => {
    for (const entry of surface.entries) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const runtime = Object.keys(require(path.join(ROOT, entry.source)) as object).filter((k) => k !== '__esModule').sort();
      const declared = entry.names.filter((n) => n.kind === 'value').map((n) => n.name).sort();
      expect(runtime, entry.subpath).to.deep.equal(declared);
    }
  });

  it('exports what the README documents, and not the internals', () => {
    const main = surface.entries.find((e) => e.subpath === '.')!;
    const names = new Set(main.names.map((n) => n.name));
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const imported = [...readme.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*'wspipe'/g)].flatMap((m) =>
      m[1]!.split(',').map((n) => n.trim().replace(/^type\s+/, '').split(/\s+as\s+/)[0]!).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n)),
    );
    for (const name of [...DOCUMENTED, ...imported]) expect(names.has(name), `${name} is exported`).to.equal(true);
    for (const name of INTERNAL) expect(names.has(name), `${name} is not exported`).to.equal(false);
  });

  it('every value export has its declaration (a class, function, const or enum), not only a merged interface', () => {
    for (const entry of surface.entries) {
      for (const { name, kind } of entry.names) {
        if (kind !== 'value' || name === 'default') continue; // declared by an export default statement
        const declared = new RegExp(`^export declare (?:abstract )?(?:class|function|const|enum) ${name}\\b`, 'm');
        expect(declared.test(entry.declarations), `${entry.subpath}: ${name} is declared`).to.equal(true);
      }
    }
  });

  it("the declarations need no @types/readable-stream (lib imports readable-stream only through lib/stages/streams.ts)", () => {
    const users = [...surface.files].filter(([, text]) => /from ['"]readable-stream['"]/.test(text)).map(([file]) => file);
    expect(users).to.deep.equal([]);
  });

  it('no @internal member reaches the published declarations (stripInternal)', () => {
    expect(surface.files.size).to.be.above(10);
    const leaks = [...surface.files].filter(([, text]) => text.includes('@internal')).map(([file]) => file);
    expect(leaks).to.deep.equal([]);
  });
});
