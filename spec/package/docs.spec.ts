/**
 * The docs cannot drift from the code nor point nowhere: docs/errors.md's table is the one
 * generated from ERROR_TABLE, and every relative link (and #anchor) of README.md, CHANGELOG.md and
 * docs/*.md resolves to a file (and a heading) of the repository.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ERROR_TABLE } from '../../lib/protocol/errors';
import { BEGIN, END, ERRORS_DOC, UPDATE_COMMAND, errorTable, generatedPart } from './docs-errors';

const ROOT = path.resolve(__dirname, '..', '..');

function markdownFiles(): string[] {
  const docs = fs.existsSync(path.join(ROOT, 'docs'))
    ? fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f))
    : [];
  return ['README.md', 'CHANGELOG.md', ...docs];
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (heading === null) continue;
    const base = slug(heading[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

/** The links of a Markdown text outside code: [text](target). */
function links(markdown: string): string[] {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...withoutCode.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!);
}

describe('package: the docs', () => {
  it(`docs/errors.md lists every error code, with the table generated from ERROR_TABLE (${UPDATE_COMMAND})`, () => {
    const doc = fs.readFileSync(ERRORS_DOC, 'utf8');
    const part = generatedPart(doc);
    expect(part, `docs/errors.md must hold the markers ${BEGIN} and ${END}`).to.not.equal(null);
    for (const code of Object.keys(ERROR_TABLE)) expect(part, code).to.include(`\`${code}\``);
    expect(part, `docs/errors.md's table differs from ERROR_TABLE: run ${UPDATE_COMMAND} and commit docs/errors.md`).to.equal(errorTable());
  });

  it('every relative link of README.md, CHANGELOG.md and docs/*.md resolves (files and #anchors)', () => {
    const broken: string[] = [];
    for (const file of markdownFiles()) {
      const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
      for (const link of links(text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto: ...
        const [target, anchor] = link.split('#') as [string, string | undefined];
        const resolved = target === '' ? path.join(ROOT, file) : path.resolve(path.dirname(path.join(ROOT, file)), target);
        if (!fs.existsSync(resolved)) {
          broken.push(`${file}: ${link} (no such file)`);
          continue;
        }
        if (anchor !== undefined && resolved.endsWith('.md') && !anchors(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
          broken.push(`${file}: ${link} (no such heading)`);
        }
      }
    }
    expect(broken, broken.join('\n')).to.deep.equal([]);
  });

  it('the link check sees a broken link and a broken anchor', () => {
    expect(links('see [a](docs/nowhere.md) and `[b](x.md)`')).to.deep.equal(['docs/nowhere.md']);
    expect(anchors('# Memory and backpressure\n## Options\n## Options')).to.deep.equal(new Set(['memory-and-backpressure', 'options', 'options-1']));
    expect(slug('`WebSocket` (a Duplex of messages)')).to.equal('websocket-a-duplex-of-messages');
  });
});
