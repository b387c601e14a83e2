/**
 * Settings objects shared by every stage core made with the same values: a server makes each
 * connection's cores with the same few settings, so one frozen object serves them all instead
 * of a field per setting in every core. Bounded: past `limit` distinct values, a core gets a
 * frozen object of its own.
 */
export class SharedSettings<T extends Record<string, number | boolean>> {
  private readonly made = new Map<string, Readonly<T>>();

  constructor(private readonly limit = 64) {}

  /** The shared frozen object with the values of `settings` (properties in a fixed order). */
  share(settings: T): Readonly<T> {
    const key = Object.values(settings).join('/');
    const found = this.made.get(key);
    if (found !== undefined) return found;
    const frozen = Object.freeze(settings);
    if (this.made.size < this.limit) this.made.set(key, frozen);
    return frozen;
  }
}
