import { expect } from 'chai';
import { SharedSettings } from '../../lib/protocol/shared-settings';

describe('SharedSettings', () => {
  it('gives one frozen object for equal values, and separate ones for different values', () => {
    const settings = new SharedSettings<{ max: number; on: boolean }>();
    const a = settings.share({ max: 10, on: true });
    expect(settings.share({ max: 10, on: true })).to.equal(a);
    expect(Object.isFrozen(a)).to.equal(true);
    const b = settings.share({ max: 10, on: false });
    expect(b).to.not.equal(a);
    expect(b).to.deep.equal({ max: 10, on: false });
    expect(settings.share({ max: Infinity, on: true })).to.deep.equal({ max: Infinity, on: true });
  });

  it('gives the right object when values alternate, after the one asked for last', () => {
    const settings = new SharedSettings<{ max: number; on: boolean }>();
    const a = settings.share({ max: 1, on: true });
    const b = settings.share({ max: 1, on: false });
    expect(settings.share({ max: 1, on: false })).to.equal(b);
    expect(settings.share({ max: 1, on: true })).to.equal(a);
    expect(settings.share({ max: 2, on: true })).to.deep.equal({ max: 2, on: true });
    expect(settings.share({ max: 1, on: true })).to.equal(a);
  });

  it('past its limit still gives frozen objects with the right values, but keeps no more', () => {
    const settings = new SharedSettings<{ n: number }>(2);
    const first = settings.share({ n: 1 });
    settings.share({ n: 2 });
    const third = settings.share({ n: 3 });
    expect(third).to.deep.equal({ n: 3 });
    expect(Object.isFrozen(third)).to.equal(true);
    expect(settings.share({ n: 3 })).to.not.equal(third); // not kept
    expect(settings.share({ n: 1 })).to.equal(first); // the first ones still are
  });
});
