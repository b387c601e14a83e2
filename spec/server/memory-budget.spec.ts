import { expect } from 'chai';
import { type BudgetDecision, MemoryBudgetCore, defaultServerMemoryBudget } from '../../lib/server/memory-budget';

const MiB = 1024 * 1024;

function actions<K>(decisions: ReadonlyArray<BudgetDecision<K>>): string[] {
  return decisions.map((d) => `${d.action} ${String(d.key)}`);
}

describe('MemoryBudgetCore: the server-wide memory budget policy', () => {
  it('under 3/4 of the budget decides nothing', () => {
    const core = new MemoryBudgetCore<string>({ budget: 100 });
    expect(actions(core.report('a', 40))).to.deep.equal([]);
    expect(actions(core.report('b', 35))).to.deep.equal([]);
    expect(core.total).to.equal(75);
    expect(core.needsSweep).to.equal(true);
  });

  it('crossing 3/4 holds every connection holding at least the average, the small ones keep reading', () => {
    const core = new MemoryBudgetCore<string>({ budget: 100 });
    core.report('a', 40);
    core.report('b', 30);
    core.report('c', 2);
    expect(actions(core.report('d', 4))).to.deep.equal(['hold a', 'hold b']);
    expect(core.held).to.equal(2);
    // Over the mark, a small one that grows past the average is held as it reports.
    expect(actions(core.report('c', 3))).to.deep.equal([]);
    expect(actions(core.report('c', 25))).to.deep.equal(['hold c']);
  });

  it('over the budget a connection that still grows, holding at least the average, is closed; the others are not', () => {
    const core = new MemoryBudgetCore<string>({ budget: 100 });
    core.report('a', 50);
    core.report('b', 30);
    core.report('small', 5);
    expect(actions(core.report('a', 66))).to.deep.equal(['close a']);
    // A closed connection is not decided on again until it is removed.
    expect(actions(core.report('a', 80))).to.deep.equal([]);
    // A small one growing over the budget is held, not closed (it is under the average).
    expect(actions(core.report('small', 6))).to.deep.equal([]);
    expect(actions(core.remove('a'))).to.deep.equal([]);
    expect(core.total).to.equal(36);
  });

  it('a connection that shrinks over the budget is not closed', () => {
    const core = new MemoryBudgetCore<string>({ budget: 100 });
    core.report('a', 60);
    core.report('b', 50);
    expect(actions(core.report('a', 55))).to.deep.equal([]);
  });

  it('under half the budget every held connection is released (on a report, a removal or a sweep)', () => {
    const core = new MemoryBudgetCore<string>({ budget: 100 });
    core.report('a', 40);
    expect(actions(core.report('b', 40))).to.deep.equal(['hold a', 'hold b']);
    expect(actions(core.report('a', 20))).to.deep.equal([]);
    expect(actions(core.report('a', 5))).to.deep.equal(['release a', 'release b']);
    expect(core.held).to.equal(0);
    core.report('a', 30);
    expect(actions(core.report('c', 10))).to.deep.equal(['hold a', 'hold b']);
    expect(actions(core.remove('a'))).to.deep.equal(['release b']);
  });

  it('sweep() reads every connection afresh: decreases nobody reported release the held ones', () => {
    const core = new MemoryBudgetCore<string>({ budget: 100 });
    core.report('a', 40);
    core.report('b', 40);
    expect(core.held).to.equal(2);
    const now: Record<string, number> = { a: 10, b: 5 };
    expect(actions(core.sweep((k) => now[k]!))).to.deep.equal(['release a', 'release b']);
    expect(core.total).to.equal(15);
    expect(core.needsSweep).to.equal(false);
  });

  it('a connection reporting nothing held is not tracked', () => {
    const core = new MemoryBudgetCore<string>({ budget: 100 });
    expect(actions(core.report('idle', 0))).to.deep.equal([]);
    expect(actions(core.remove('idle'))).to.deep.equal([]);
    expect(core.total).to.equal(0);
  });

  it('10 000 connections: the sum is kept exactly through reports and removals', () => {
    const core = new MemoryBudgetCore<number>({ budget: 1024 * MiB });
    for (let i = 0; i < 10_000; i++) core.report(i, 64 * 1024);
    expect(core.total).to.equal(10_000 * 64 * 1024);
    for (let i = 0; i < 10_000; i += 2) core.remove(i);
    expect(core.total).to.equal(5_000 * 64 * 1024);
  });

  it('rejects a budget that is not positive and fractions out of order', () => {
    expect(() => new MemoryBudgetCore({ budget: 0 })).to.throw(RangeError);
    expect(() => new MemoryBudgetCore({ budget: 10, slowAt: 0.4, resumeAt: 0.5 })).to.throw(RangeError);
  });

  it('the default is a quarter of the machine memory, at most 1 GiB', () => {
    expect(defaultServerMemoryBudget(2 * 1024 * MiB)).to.equal(512 * MiB);
    expect(defaultServerMemoryBudget(64 * 1024 * MiB)).to.equal(1024 * MiB);
  });
});
