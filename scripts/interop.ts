/**
 * `npm run interop [-- browser|python|ws ...]`: runs the interop specs against real peers and
 * prints one row per case: peer | direction | case | result.
 *
 * The cases are not restated here: this script loads the very spec files that `npm test` runs
 * (spec/interop-browser.spec.ts, spec/interop-python.spec.ts, spec/interop-ws.spec.ts) into
 * Mocha and tabulates their outcome, so the table and the test suite cannot drift apart. The
 * rows come from the suite titles: "interop with PEER" > "DIRECTION" > "CASE".
 *
 * A missing peer follows the rule of spec/helpers/peers.ts: skipped locally (the table says
 * why), a failure when CI=true. Exit status: 1 when any case failed, else 0.
 */
import Mocha from 'mocha';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findChromium, findOpenssl, findPython, skippedSuites, ON_CI } from '../spec/helpers/peers';

const SPEC_DIR = path.join(__dirname, '..', 'spec');
const SPECS: Record<string, string> = {
  browser: 'interop-browser.spec.ts',
  python: 'interop-python.spec.ts',
  ws: 'interop-ws.spec.ts',
};

interface Row {
  peer: string;
  direction: string;
  name: string;
  result: string;
}

/** A reporter that prints one dot per finished case (to stderr) and nothing else. */
class Dots extends Mocha.reporters.Base {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.on('test end', () => process.stderr.write('.'));
    runner.once('end', () => process.stderr.write('\n'));
  }
}

function toRow(titles: string[], result: string): Row {
  const [top = '', direction = '', ...rest] = titles;
  return { peer: top.replace(/^interop with /, ''), direction, name: rest.join(' > '), result };
}

function firstLine(err: Error | undefined): string {
  return (err?.message ?? 'failed').split('\n')[0]!.slice(0, 160);
}

function printTable(rows: Row[]): void {
  const header: Row = { peer: 'peer', direction: 'direction', name: 'case', result: 'result' };
  const columns: Array<keyof Row> = ['peer', 'direction', 'name', 'result'];
  const width = (key: keyof Row): number => Math.max(...[header, ...rows].map((r) => r[key].length));
  const widths = columns.map(width);
  const line = (r: Row): string =>
    columns
      .map((key, i) => (i === columns.length - 1 ? r[key] : r[key].padEnd(widths[i]!)))
      .join(' | ')
      .trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const row of rows) console.log(line(row));
}

function wsVersion(): string {
  const pkg = path.join(__dirname, '..', 'node_modules', 'ws', 'package.json');
  return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version;
}

function main(): void {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !(name in SPECS));
  if (unknown.length > 0) {
    console.error(`unknown peer ${unknown.join(', ')}; choose among: ${Object.keys(SPECS).join(', ')}`);
    process.exit(2);
  }
  const chosen = wanted.length > 0 ? wanted : Object.keys(SPECS);

  const peers = [findChromium(), findPython(), findOpenssl()].map((p) =>
    p.path === null ? `${p.name}: MISSING (${p.missing})` : `${p.name} ${p.version}`,
  );
  console.log(`peers: ${[...peers, `ws ${wsVersion()}`].join('; ')}${ON_CI ? ' (CI: a missing peer fails)' : ''}`);

  const mocha = new Mocha({ timeout: 60000, reporter: Dots });
  for (const name of chosen) mocha.addFile(path.join(SPEC_DIR, SPECS[name]!));

  const rows: Row[] = [];
  const runner = mocha.run((failures) => {
    printTable(rows);
    for (const { suite, reason } of skippedSuites) console.log(`skipped "${suite}": ${reason}`);
    const passed = rows.filter((r) => r.result.startsWith('pass')).length;
    const skipped = rows.filter((r) => r.result === 'skipped').length;
    console.log(`\n${passed} passed, ${failures} failed, ${skipped} skipped`);
    // Exiting also runs peers.ts's exit handler, which kills any peer process still alive.
    process.exit(failures > 0 ? 1 : 0);
  });
  runner.on('pass', (test) => rows.push(toRow(test.titlePath(), `pass (${test.duration ?? 0} ms)`)));
  runner.on('pending', (test) => rows.push(toRow(test.titlePath(), 'skipped')));
  runner.on('fail', (test, err) => {
    // A failing hook (e.g. a missing peer on CI) is a row of its own, named after the hook.
    const suites = test.parent?.titlePath() ?? [];
    const titles =
      (test as unknown as { type: string }).type === 'hook'
        ? [suites[0] ?? '', suites.slice(1).join(' > '), test.title.split(' in "')[0]!]
        : test.titlePath();
    rows.push(toRow(titles, `FAIL: ${firstLine(err)}`));
  });
}

main();
