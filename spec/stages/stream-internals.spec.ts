import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duplex } from 'readable-stream';
import { READABLE_STREAM_VERSION, checkStreamInternals, findInternalsMismatch } from '../../lib/stages/stream-internals';

const root = path.join(__dirname, '..', '..');

describe('stream-internals', () => {
  it('finds readable-stream as installed to be as the fast paths assume', () => {
    expect(findInternalsMismatch()).to.deep.equal([]);
    expect(() => checkStreamInternals()).not.to.throw();
  });

  it('package.json pins readable-stream exactly, to the version that was checked and is installed', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(pkg.dependencies['readable-stream']).to.equal(READABLE_STREAM_VERSION);
    const installed = JSON.parse(fs.readFileSync(require.resolve('readable-stream/package.json'), 'utf8')) as { version: string };
    expect(installed.version).to.equal(READABLE_STREAM_VERSION);
  });

  it('names a missing field, and checkStreamInternals throws WS_ERR_STREAM_INTERNALS with it', () => {
    const renamed = (): Duplex => {
      const d = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
      const w = (d as unknown as { _writableState: object })._writableState;
      // A release that renamed `corked` (as a release may: the field is internal).
      Object.defineProperty(d, '_writableState', { value: Object.assign(Object.create(null), { ...w, corked: undefined }) });
      delete (d as unknown as { _writableState: Record<string, unknown> })._writableState.corked;
      return d;
    };
    expect(findInternalsMismatch(renamed)).to.deep.equal(['_writableState.corked is missing']);
    expect(() => checkStreamInternals(renamed))
      .to.throw(/_writableState\.corked is missing/)
      .with.property('code', 'WS_ERR_STREAM_INTERNALS');
  });

  it('notices a field that is there but no longer means what the fast paths read', () => {
    const frozen = (): Duplex => {
      const d = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
      const r = (d as unknown as { _readableState: object })._readableState;
      // flowing kept as a plain field that nothing updates any more
      Object.defineProperty(d, '_readableState', { value: new Proxy(r, { get: (t, k) => (k === 'flowing' ? false : Reflect.get(t, k)) }) });
      return d;
    };
    expect(findInternalsMismatch(frozen)).to.deep.equal(["_readableState.flowing is false after on('data'), not true"]);
  });

  it('is read only through stream-internals: no other file of lib/ names the state objects', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(p);
        else if (p.endsWith('.ts') && !p.endsWith('stream-internals.ts')) {
          const code = fs.readFileSync(p, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
          if (/_(readable|writable)State/.test(code)) offenders.push(path.relative(root, p));
        }
      }
    };
    walk(path.join(root, 'lib'));
    expect(offenders).to.deep.equal([]);
  });
});
