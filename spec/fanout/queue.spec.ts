/**
 * DeliveryQueue: the I/O-free core of one subscriber's fan-out delivery. A fake sink stands for
 * the connection: it says whether it takes more at once, and how many bytes it holds already.
 * Groups: delivery while the sink keeps up, each overflow policy, counters, and the memory bound
 * as a property over random traffic.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { DeliveryQueue, DeliverySink, FanoutCounters, Subscription, emptyCounters } from '../../lib/fanout/queue';

interface Item {
  name: string;
  size: number;
}

class FakeSink implements DeliverySink<Item> {
  written: string[] = [];
  room = true;
  held = 0;
  overflowed: string[] = [];
  write(item: Item): boolean {
    this.written.push(item.name);
    this.held += item.size;
    return this.room;
  }
  buffered(): number {
    return this.held;
  }
  overflow(sub: Subscription<Item>): void {
    this.overflowed.push(sub.topic);
  }
}

function item(name: string, size = 10): Item {
  return { name, size };
}

function setup(totals?: FanoutCounters): { sink: FakeSink; queue: DeliveryQueue<Item> } {
  const sink = new FakeSink();
  return { sink, queue: new DeliveryQueue<Item>(sink, totals) };
}

function offer(queue: DeliveryQueue<Item>, sub: Subscription<Item>, it: Item, key: string | null = null): void {
  queue.offer(sub, it, it.size, key);
}

describe('fanout DeliveryQueue', () => {
  describe('a subscriber that keeps up', () => {
    it('hands each message to the connection at once, in order, and queues nothing', () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 100, policy: 'drop-oldest' });
      for (const n of ['a', 'b', 'c']) offer(queue, sub, item(n));
      expect(sink.written).to.deep.equal(['a', 'b', 'c']);
      expect(queue.counters).to.include({ delivered: 3, queuedBytes: 0, dropped: 0 });
    });

    it('queues once the connection says it is full, and drained() sends the queue in publication order across topics', () => {
      const { sink, queue } = setup();
      const a = queue.subscribe('a', { limit: 1000, policy: 'drop-oldest' });
      const b = queue.subscribe('b', { limit: 1000, policy: 'drop-newest' });
      sink.room = false;
      offer(queue, a, item('a1'));
      offer(queue, b, item('b1'));
      offer(queue, a, item('a2'));
      offer(queue, b, item('b2'));
      expect(sink.written).to.deep.equal(['a1']);
      expect(queue.counters.queuedBytes).to.equal(30);
      sink.room = true;
      sink.held = 0;
      queue.drained();
      expect(sink.written).to.deep.equal(['a1', 'b1', 'a2', 'b2']);
      expect(queue.counters).to.include({ delivered: 4, queuedBytes: 0 });
    });

    it('blocked(): a write accepted earlier turned out to fill the connection; later messages queue until drained()', () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 1000, policy: 'drop-oldest' });
      offer(queue, sub, item('a'));
      queue.blocked();
      offer(queue, sub, item('b'));
      expect(sink.written).to.deep.equal(['a']);
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'b']);
    });

    it('stops flushing as soon as the connection is full again', () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 1000, policy: 'drop-oldest' });
      sink.room = false;
      for (const n of ['a', 'b', 'c', 'd']) offer(queue, sub, item(n));
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'b']);
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'b', 'c']);
    });
  });

  describe('policies, when the queue plus the bytes the connection holds would pass the limit', () => {
    it("'drop-newest' discards the arriving message and counts it as dropped", () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 35, policy: 'drop-newest' });
      sink.room = false;
      offer(queue, sub, item('a')); // to the connection: it holds 10
      offer(queue, sub, item('b')); // 20
      offer(queue, sub, item('c')); // 30
      offer(queue, sub, item('d')); // 40 > 35: dropped
      sink.held = 0;
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'b', 'c']);
      expect(queue.counters).to.include({ dropped: 1, evicted: 0, delivered: 3 });
    });

    it("'drop-oldest' evicts the subscription's oldest queued messages only, never another topic's", () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 30, policy: 'drop-oldest' });
      const other = queue.subscribe('o', { limit: 1000, policy: 'drop-newest' });
      sink.room = false;
      offer(queue, sub, item('a')); // written, held 10
      offer(queue, other, item('o1'));
      offer(queue, sub, item('b'));
      offer(queue, sub, item('c')); // 10 + 10 + 10 = 30: fits
      offer(queue, sub, item('d')); // 40: b evicted
      offer(queue, other, item('o2'));
      sink.held = 0;
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'o1', 'c', 'd', 'o2']);
      expect(queue.counters).to.include({ evicted: 1, dropped: 0 });
    });

    it("'drop-oldest' drops a message that alone is over the limit, keeping what is queued", () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 50, policy: 'drop-oldest' });
      sink.room = false;
      offer(queue, sub, item('a'));
      offer(queue, sub, item('b'));
      offer(queue, sub, item('huge', 51));
      sink.held = 0;
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'b']);
      expect(queue.counters).to.include({ dropped: 1, evicted: 0 });
    });

    it("'drop-oldest' keeps the newest when what the connection holds fills the limit alone", () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 50, policy: 'drop-oldest' });
      sink.room = false;
      offer(queue, sub, item('a', 45)); // to the connection: it holds 45
      offer(queue, sub, item('b')); // 45 + 10 > 50: queued alone anyway (the queue holds 10)
      offer(queue, sub, item('c')); // b evicted, c kept
      expect(sub.bytes).to.equal(10);
      sink.held = 0;
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'c']);
      expect(queue.counters).to.include({ dropped: 0, evicted: 1 });
    });

    it("'coalesce' keeps only the latest queued message per key, at the latest one's place", () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 1000, policy: 'coalesce' });
      sink.room = false;
      offer(queue, sub, item('x0'), 'x');
      offer(queue, sub, item('x1'), 'x');
      offer(queue, sub, item('y1'), 'y');
      offer(queue, sub, item('x2'), 'x');
      offer(queue, sub, item('y2'), 'y');
      offer(queue, sub, item('z1'), 'z');
      sink.held = 0;
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['x0', 'x2', 'y2', 'z1']);
      expect(queue.counters).to.include({ coalesced: 2, delivered: 4, queuedBytes: 0 });
    });

    it("'coalesce' evicts the oldest other keys when distinct keys alone pass the limit", () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 30, policy: 'coalesce' });
      sink.room = false;
      offer(queue, sub, item('a'), 'a'); // written
      offer(queue, sub, item('b'), 'b');
      offer(queue, sub, item('c'), 'c');
      offer(queue, sub, item('d'), 'd'); // b evicted
      offer(queue, sub, item('c2'), 'c'); // c coalesced
      sink.held = 0;
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'd', 'c2']);
      expect(queue.counters).to.include({ coalesced: 1, evicted: 1 });
    });

    it("'close' asks the sink to close the connection once, frees the queue and takes nothing more", () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 25, policy: 'close' });
      sink.room = false;
      offer(queue, sub, item('a'));
      offer(queue, sub, item('b'));
      offer(queue, sub, item('c')); // 30 > 25
      offer(queue, sub, item('d'));
      expect(sink.overflowed).to.deep.equal(['t']);
      expect(queue.counters).to.include({ closed: 1, queuedBytes: 0 });
      expect(queue.counters.dropped).to.equal(3); // b (queued), c and d
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['a']);
    });

    it('counts the bytes the connection holds already against the limit', () => {
      const { sink, queue } = setup();
      const sub = queue.subscribe('t', { limit: 100, policy: 'drop-newest' });
      sink.room = false;
      sink.held = 95;
      offer(queue, sub, item('a')); // written while the sink was said to have room? no: not writable yet
      expect(sink.written).to.deep.equal(['a']);
      offer(queue, sub, item('b')); // 105 + 10 > 100
      expect(queue.counters.dropped).to.equal(1);
    });
  });

  describe('subscriptions', () => {
    it('unsubscribing forgets its queued messages and their bytes', () => {
      const totals = emptyCounters();
      const { sink, queue } = setup(totals);
      const sub = queue.subscribe('t', { limit: 1000, policy: 'drop-oldest' });
      const keep = queue.subscribe('k', { limit: 1000, policy: 'drop-oldest' });
      sink.room = false;
      offer(queue, sub, item('a'));
      offer(queue, sub, item('b'));
      offer(queue, keep, item('k1'));
      offer(queue, sub, item('c'));
      queue.unsubscribe(sub);
      expect(queue.counters.queuedBytes).to.equal(10);
      expect(totals.queuedBytes).to.equal(10);
      sink.room = true;
      queue.drained();
      expect(sink.written).to.deep.equal(['a', 'k1']);
    });

    it('adds into the totals shared by the queues of one server', () => {
      const totals = emptyCounters();
      const one = setup(totals);
      const two = setup(totals);
      const s1 = one.queue.subscribe('t', { limit: 15, policy: 'drop-newest' });
      const s2 = two.queue.subscribe('t', { limit: 15, policy: 'drop-newest' });
      offer(one.queue, s1, item('a'));
      two.sink.room = false;
      offer(two.queue, s2, item('a'));
      offer(two.queue, s2, item('b'));
      expect(totals).to.include({ delivered: 2, dropped: 1, queuedBytes: 0 });
      one.queue.clear();
      expect(totals.queuedBytes).to.equal(0);
    });

    it('refuses a limit or policy that makes no sense, with a code', () => {
      const { queue } = setup();
      expect(() => queue.subscribe('t', { limit: -1 })).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => queue.subscribe('t', { policy: 'spill' as never })).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
    });
  });

  describe('memory bound (property)', () => {
    it('never holds more queued bytes per subscription than its limit, whatever the traffic and the connection do', () => {
      const policies = ['drop-oldest', 'drop-newest', 'coalesce'] as const;
      const step = fc.oneof(
        fc.record({ kind: fc.constant('offer' as const), sub: fc.nat(2), size: fc.integer({ min: 1, max: 300 }), key: fc.nat(4) }),
        fc.record({ kind: fc.constant('drain' as const), taken: fc.nat(500), room: fc.boolean() }),
      );
      fc.assert(
        fc.property(fc.array(step, { maxLength: 200 }), fc.integer({ min: 50, max: 1000 }), (steps, limit) => {
          const { sink, queue } = setup();
          sink.room = false;
          const subs = policies.map((policy) => queue.subscribe(policy, { limit, policy }));
          let n = 0;
          for (const s of steps) {
            if (s.kind === 'offer') {
              const sub = subs[s.sub]!;
              offer(queue, sub, item(`m${n++}`, s.size), `k${s.key}`);
            } else {
              sink.held = Math.max(0, sink.held - s.taken);
              sink.room = s.room;
              queue.drained();
            }
            for (const sub of subs) {
              if (sub.bytes > limit) return false;
            }
            if (queue.counters.queuedBytes !== subs.reduce((t, sub) => t + sub.bytes, 0)) return false;
          }
          return true;
        }),
        { numRuns: 300 },
      );
    });
  });
});
