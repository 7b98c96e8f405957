/**
 * A map bounded by its entry count that drops the least recently used entry first: the caches of
 * folded stream states (commands) and of personal-data keys, which must keep a flat memory over
 * millions of customers.
 *
 * Recency is a linked list beside the map, not the map's own insertion order. A `Map` touched by
 * delete-and-set and trimmed with `keys().next()` looks like an LRU, but V8 leaves deleted entries in
 * place until the table is rebuilt and every new iterator walks over them from the start: once full,
 * each eviction cost 16 µs at 50,000 entries and 5.6 µs at 10,000 (300,000 inserts in a loop), a cost
 * paid on every row of an import larger than its cache. The same loop run through this map, beside the
 * old one under the same load: 2.7 against 27 µs at 50,000 entries, 0.9 against 9.6 µs at 10,000.
 */
interface Entry<K, V> {
  key: K;
  value: V;
  older: Entry<K, V> | undefined;
  newer: Entry<K, V> | undefined;
}

export class LruMap<K, V> {
  private readonly entries = new Map<K, Entry<K, V>>();
  private oldest: Entry<K, V> | undefined;
  private newest: Entry<K, V> | undefined;

  /** `capacity`: entries kept at most; 0 keeps none. */
  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** The value, now the most recently used. */
  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.unlink(entry);
    this.linkNewest(entry);
    return entry.value;
  }

  /** The value, leaving its place in the order as it is. */
  peek(key: K): V | undefined {
    return this.entries.get(key)?.value;
  }

  /** Stores the value as the most recently used, dropping the least recently used beyond the capacity. */
  set(key: K, value: V): void {
    const existing = this.entries.get(key);
    if (existing) {
      existing.value = value;
      this.unlink(existing);
      this.linkNewest(existing);
      return;
    }
    const entry: Entry<K, V> = { key, value, older: undefined, newer: undefined };
    this.entries.set(key, entry);
    this.linkNewest(entry);
    while (this.entries.size > this.capacity && this.oldest) this.delete(this.oldest.key);
  }

  delete(key: K): boolean {
    const entry = this.entries.get(key);
    if (!entry) return false;
    this.entries.delete(key);
    this.unlink(entry);
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.oldest = this.newest = undefined;
  }

  private unlink(entry: Entry<K, V>): void {
    if (entry.older) entry.older.newer = entry.newer;
    else this.oldest = entry.newer;
    if (entry.newer) entry.newer.older = entry.older;
    else this.newest = entry.older;
    entry.older = entry.newer = undefined;
  }

  private linkNewest(entry: Entry<K, V>): void {
    entry.older = this.newest;
    if (this.newest) this.newest.newer = entry;
    else this.oldest = entry;
    this.newest = entry;
  }
}
