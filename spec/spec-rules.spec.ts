/**
 * Rules the specs themselves keep, checked over their source so that a new spec cannot break them
 * unnoticed.
 *
 * A child process's 'exit' can come before its stdout and stderr are read to the end; a spec that
 * waits for 'exit' and then reads what the child printed is flaky (spec/cli.spec.ts failed once so
 * on a fresh clone). 'close' comes after 'exit' and after the child's stdio streams have closed.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';

const SPEC = __dirname;

function sources(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** `x.on('exit'`, `x.once('exit'` (but not `process.on('exit'`), and `once(x, 'exit')`. */
const EXIT_WAIT = /(?<!\bprocess)\.\s*(?:on|once|addListener|prependListener)\(\s*['"]exit['"]|\bonce\(\s*[\w.!]+\s*,\s*['"]exit['"]/g;

describe('spec rules', () => {
  it("no spec waits for a child's 'exit' (its output may be unread); they wait for 'close'", () => {
    const offenders: string[] = [];
    for (const file of sources(SPEC).filter((f) => f !== __filename)) {
      const lines = fs.readFileSync(file, 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (EXIT_WAIT.test(line)) offenders.push(`${path.relative(SPEC, file)}:${i + 1}: ${line.trim()}`);
        EXIT_WAIT.lastIndex = 0;
      });
    }
    expect(offenders, offenders.join('\n')).to.deep.equal([]);
  });
});
