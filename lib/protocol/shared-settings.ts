/**
 * Settings objects shared by every stage core made with the same values: a server makes each
 * connection's cores with the same few settings, so one frozen object serves them all instead
 * of a field per setting in every core. Bounded: past `limit` distinct values, a core gets a
 * frozen object of its own.
 */
export class SharedSettings<T extends Record<string, number | boolean>> {
  private readonly made = new Map<string, Readonly<T>>();
  /** The object share() gave last: a server asks for the same values again and again. */
  private last: Readonly<T> | null = null;

  constructor(private readonly limit = 64) {}

  /** The shared frozen object with the values of `settings` (properties in a fixed order). */
  share(settings: T): Readonly<T> {
    // Compared field by field first: building the key (numbers to strings, joined) cost a few µs
    // per connection, about 3% of a handshake's CPU (node dist/bench/profile.js, PROFILE_CASES=handshakes).
    const last = this.last;
    if (last !== null && sameValues(settings, last)) return last;
    const key = Object.values(settings).join('/');
    const found = this.made.get(key);
    if (found !== undefined) {
      this.last = found;
      return found;
    }
    const frozen = Object.freeze(settings);
    if (this.made.size < this.limit) {
      this.made.set(key, frozen);
      this.last = frozen;
    }
    return frozen;
  }
}

/** Whether `settings` holds `kept`'s values (both have T's keys, built by the same caller). */
function sameValues<T extends Record<string, number | boolean>>(settings: T, kept: Readonly<T>): boolean {
  for (const key in kept) if (settings[key] !== kept[key]) return false;
  return true;
}
