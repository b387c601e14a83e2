/**
 * The fuzzer's corpus as regression tests, and a short fuzz run (the long one is `npm run fuzz`).
 * Corpus files are named `<role>-<outcome>-<digest>.bin` (an input kept for its outcome) or
 * `FAIL-...` (an input that once broke an invariant; it must not any more).
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Role } from '../lib/connection/receiver';
import { CORPUS_DIR, check, fuzz } from '../scripts/fuzz';

const files = fs.existsSync(CORPUS_DIR) ? fs.readdirSync(CORPUS_DIR).filter((f) => f.endsWith('.bin')) : [];

describe('fuzzing the inbound chain', () => {
  it('has a corpus to replay', () => {
    expect(files.length).to.be.greaterThan(10);
  });

  for (const file of files) {
    const match = /^(FAIL-)?(server|client)-([A-Za-z0-9_]+)-[0-9a-f]{16}\.bin$/.exec(file);
    it(`corpus ${file}`, () => {
      expect(match, 'corpus file name').to.not.equal(null);
      const [, failed, role, outcome] = match!;
      const input = fs.readFileSync(path.join(CORPUS_DIR, file));
      const whole = check(role as Role, input, []);
      const bytes = check(role as Role, input, Array.from({ length: input.length }, (_, i) => i));
      expect(whole.violation).to.equal(null);
      expect(bytes).to.deep.equal(whole);
      if (failed === undefined) expect(whole.outcome).to.equal(outcome);
    });
  }

  it('a short run (2 s, fixed seed) breaks no invariant', function () {
    this.timeout(20000);
    const result = fuzz(2, 42, false);
    expect(result.executions).to.be.greaterThan(1000);
    expect(result.failures).to.deep.equal([]);
  });
});
