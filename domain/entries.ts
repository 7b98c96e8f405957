/**
 * Dictionaries of a state keyed by ids the client chooses (order, refund and cost ids). Such an id may
 * be `constructor`, `toString` or `__proto__`: a plain `record[id]` would read Object.prototype's
 * members (an order "recorded in undefined") and `record['__proto__'] = x` would replace the
 * prototype instead of storing an entry. These two read and write own entries only.
 */
export const entryOf = <T>(record: Record<string, T>, id: string): T | undefined => (Object.hasOwn(record, id) ? record[id] : undefined);

export const setEntry = <T>(record: Record<string, T>, id: string, value: T): void => {
  Object.defineProperty(record, id, { value, enumerable: true, writable: true, configurable: true });
};
