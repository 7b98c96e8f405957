/**
 * Dictionaries of a state keyed by ids the client chooses (order, refund and cost ids). Such an id may
 * be `constructor`, `toString` or `__proto__`: a plain `record[id]` would read Object.prototype's
 * members (an order "recorded in undefined") and `record['__proto__'] = x` would replace the
 * prototype instead of storing an entry. These read, write and copy own entries only.
 */
export const entryOf = <T>(record: Record<string, T>, id: string): T | undefined => (Object.hasOwn(record, id) ? record[id] : undefined);

export const setEntry = <T>(record: Record<string, T>, id: string, value: T): void => {
  Object.defineProperty(record, id, { value, enumerable: true, writable: true, configurable: true });
};

/**
 * A new, empty dictionary. Without a prototype V8 keeps it as a hash table from the start; a plain
 * `{}` gets a new hidden class for every id added (measured: 2.4-2.6 µs per new id on an object of
 * 400 ids, 0.6-0.9 µs here, and the purchase path spent 5% of the API's CPU on those classes).
 */
export const dictionary = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;

/**
 * A deep copy of a state (`structuredClone` would turn its dictionaries into plain objects again):
 * plain objects, dictionaries and arrays are copied, anything else (Dates, Maps) is cloned.
 */
export const copyState = <S>(state: S): S => copy(state) as S;

const copy = (value: unknown): unknown => {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(copy);
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype !== null && prototype !== Object.prototype) return structuredClone(value);
  const source = value as Record<string, unknown>;
  const out: Record<string, unknown> = prototype === null ? dictionary() : {};
  for (const key of Object.keys(source)) setEntry(out, key, copy(source[key]));
  return out;
};
