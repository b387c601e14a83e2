/**
 * The server-wide memory budget: one bound on the sum of what all connections hold (unread
 * received data, messages being assembled or inflated, queued outbound bytes), beside each
 * connection's own memoryBudget (its fair share).
 *
 * MemoryBudgetCore is the policy, with no sockets and no timers: connections report what they
 * hold (`report(key, bytes)`), and it answers with decisions for any of them:
 *
 * - over `slowAt` of the budget (default 3/4): the connections holding at least the average are
 *   held (the owner stops reading from them, so TCP slows their peers), the largest first
 *   because they are the ones above the average;
 * - over the budget: a connection that still grows while holding at least the average is
 *   closed (WS_ERR_SERVER_MEMORY, 1008); the others keep working;
 * - back under `resumeAt` (default 1/2): every held connection is released.
 *
 * Decreases are often not reported as they happen (a socket's queue drains without an event per
 * write), so while anything is held or the sum is over resumeAt, the owner calls `sweep()`
 * now and then with a way to read each connection's bytes afresh.
 *
 * MemoryBudget is the thin adapter the server (and the proxy, for its relayed connections) uses:
 * it observes its connections (HeldBytesObserver), applies the decisions to them and runs the
 * sweep on a timer.
 */
import * as os from 'node:os';
import { WebSocketError, invalidArgument } from '../protocol/errors';
import type { WebSocket } from '../connection/websocket';

/** What the owner does to one connection. */
export type BudgetAction = 'hold' | 'release' | 'close';

export interface BudgetDecision<K> {
  readonly key: K;
  readonly action: BudgetAction;
}

export interface MemoryBudgetOptions {
  /** The bound on the sum, in bytes. */
  budget: number;
  /** Fraction of the budget over which the largest holders are held. Default 0.75. */
  slowAt?: number;
  /** Fraction of the budget under which every held connection is released. Default 0.5. */
  resumeAt?: number;
}

/**
 * The default server-wide budget: a quarter of the machine's memory, at most 1 GiB (1 GiB on a
 * machine of 4 GiB or more; 512 MiB on one of 2 GiB).
 */
export function defaultServerMemoryBudget(totalMemory: number = os.totalmem()): number {
  return Math.min(Math.floor(totalMemory / 4), 1024 * 1024 * 1024);
}

interface Member {
  bytes: number;
  held: boolean;
  closing: boolean;
}

const NONE: ReadonlyArray<BudgetDecision<never>> = Object.freeze([]);

/** The I/O-free policy; see the module comment. */
export class MemoryBudgetCore<K> {
  readonly budget: number;
  private readonly slowAt: number;
  private readonly resumeAt: number;
  private readonly members = new Map<K, Member>();
  private sum = 0;
  private heldCount = 0;

  constructor(options: MemoryBudgetOptions) {
    const { budget, slowAt = 0.75, resumeAt = 0.5 } = options;
    if (!(budget > 0)) throw invalidArgument(`the memory budget must be positive, got ${budget}`, RangeError);
    if (!(resumeAt > 0 && resumeAt <= slowAt && slowAt <= 1)) {
      throw invalidArgument(`expected 0 < resumeAt <= slowAt <= 1, got ${resumeAt} and ${slowAt}`, RangeError);
    }
    this.budget = budget;
    this.slowAt = budget * slowAt;
    this.resumeAt = budget * resumeAt;
  }

  /** The sum of what the connections reported. */
  get total(): number {
    return this.sum;
  }

  /** Connections held now. */
  get held(): number {
    return this.heldCount;
  }

  /** True while the owner should call sweep() now and then (something is held, or the sum is high). */
  get needsSweep(): boolean {
    return this.heldCount > 0 || this.sum > this.resumeAt;
  }

  /** `key` holds `bytes` now. Returns what to do, to it or to others (often nothing). */
  report(key: K, bytes: number): ReadonlyArray<BudgetDecision<K>> {
    let member = this.members.get(key);
    if (member === undefined) {
      if (bytes === 0) return NONE;
      member = { bytes: 0, held: false, closing: false };
      this.members.set(key, member);
    }
    const before = member.bytes;
    member.bytes = bytes;
    const sum = (this.sum += bytes - before);
    if (member.closing) return NONE;
    if (sum > this.budget && bytes > before && this.aboveAverage(bytes)) {
      member.closing = true;
      if (member.held) {
        member.held = false;
        this.heldCount--;
      }
      return [{ key, action: 'close' }];
    }
    if (sum > this.slowAt) {
      // Crossing the mark holds every large holder at once; after that, each as it reports.
      if (sum - (bytes - before) <= this.slowAt) return this.holdLargest();
      if (!member.held && this.aboveAverage(bytes)) return [this.hold(key, member)];
      return NONE;
    }
    if (sum <= this.resumeAt && this.heldCount > 0) return this.releaseAll();
    return NONE;
  }

  /** `key` is gone (closed): its bytes leave the sum. */
  remove(key: K): ReadonlyArray<BudgetDecision<K>> {
    const member = this.members.get(key);
    if (member === undefined) return NONE;
    this.members.delete(key);
    this.sum -= member.bytes;
    if (member.held) this.heldCount--;
    if (this.sum <= this.resumeAt && this.heldCount > 0) return this.releaseAll();
    return NONE;
  }

  /** Reads every connection's bytes afresh (`read(key)`) and decides again. */
  sweep(read: (key: K) => number): ReadonlyArray<BudgetDecision<K>> {
    let sum = 0;
    for (const [key, member] of this.members) {
      member.bytes = read(key);
      sum += member.bytes;
    }
    this.sum = sum;
    if (sum <= this.resumeAt) return this.heldCount > 0 ? this.releaseAll() : NONE;
    if (sum > this.slowAt) return this.holdLargest();
    return NONE;
  }

  private aboveAverage(bytes: number): boolean {
    return bytes * this.members.size >= this.sum;
  }

  private hold(key: K, member: Member): BudgetDecision<K> {
    member.held = true;
    this.heldCount++;
    return { key, action: 'hold' };
  }

  private holdLargest(): ReadonlyArray<BudgetDecision<K>> {
    const out: Array<BudgetDecision<K>> = [];
    for (const [key, member] of this.members) {
      if (!member.held && !member.closing && this.aboveAverage(member.bytes)) out.push(this.hold(key, member));
    }
    return out;
  }

  private releaseAll(): ReadonlyArray<BudgetDecision<K>> {
    const out: Array<BudgetDecision<K>> = [];
    for (const [key, member] of this.members) {
      if (member.held) {
        member.held = false;
        out.push({ key, action: 'release' });
      }
    }
    this.heldCount = 0;
    return out;
  }
}

/** How often the adapter re-reads every connection while the budget is under pressure (ms). */
const SWEEP_PERIOD_MS = 50;

/**
 * @internal What the adapter needs of a connection: a WebSocket, or a proxy's relayed connection
 * (internal members both: MemoryBudget's type parameter is therefore unconstrained in the
 * declarations, and members are read through member()).
 */
export interface BudgetMember {
  /** Bytes the connection holds now. */
  readonly heldBytes: number;
  /** Stop (true) or go on (false) reading from it. */
  holdForServer(hold: boolean): void;
  /** Close it (WS_ERR_SERVER_MEMORY). */
  failForServer(err: WebSocketError): void;
}

/**
 * The server's adapter: observes its connections, applies the core's decisions, sweeps on a
 * timer. A HeldBytesObserver by shape (no implements clause: stripInternal removes the observer's
 * method from the declarations, which would then not compile).
 */
export class MemoryBudget<M = WebSocket> {
  readonly core: MemoryBudgetCore<M>;
  private timer: NodeJS.Timeout | null = null;

  /** @param owner who holds the budget, for the close reason ('server', 'proxy'). */
  constructor(
    budget: number,
    private readonly owner = 'server',
  ) {
    this.core = new MemoryBudgetCore({ budget });
  }

  /** @internal A connection's held bytes may have changed. */
  heldBytesChanged(member: M): void {
    const bytes = asMember(member).heldBytes;
    // The common case on a server keeping up: nothing held here, nothing anywhere (no lookup).
    if (bytes === 0 && this.core.total === 0) return;
    this.apply(this.core.report(member, bytes));
  }

  /** A connection has closed. */
  remove(member: M): void {
    this.apply(this.core.remove(member));
  }

  /** Stops the sweep timer (the server has closed). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private apply(decisions: ReadonlyArray<BudgetDecision<M>>): void {
    // An indexed loop: a for-of made an iterator on every report, once per chunk read while a
    // connection holds bytes (all through a large message), though the list is nearly always empty.
    for (let i = 0; i < decisions.length; i++) {
      const { key, action } = decisions[i]!;
      if (action === 'close') {
        asMember(key).failForServer(new WebSocketError('WS_ERR_SERVER_MEMORY', `the ${this.owner} holds over ${this.core.budget} bytes`));
      } else {
        asMember(key).holdForServer(action === 'hold');
      }
    }
    if (this.core.needsSweep) {
      if (this.timer === null) {
        this.timer = setInterval(() => this.apply(this.core.sweep((m) => asMember(m).heldBytes)), SWEEP_PERIOD_MS);
        this.timer.unref();
      }
    } else {
      this.stop();
    }
  }
}

/** A member as what the adapter calls on it (see BudgetMember). */
function asMember(member: unknown): BudgetMember {
  return member as BudgetMember;
}
