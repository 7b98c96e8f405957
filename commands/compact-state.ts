import type { AggregateKind } from './schemas.ts';
import { dictionary, setEntry } from '../domain/entries.ts';

/**
 * Compact forms of what the batch handler keeps of a stream between batches (commands/batch.ts), so
 * that holding every customer of a large purchases file costs memory per stream, not per event the
 * way plain objects do (measured: 20,000 customer states with 50 orders each held 161 MB as objects;
 * as books and id lists below, 63 MB: about 27 bytes an order, 24 an event id and 580 a customer).
 *
 * - A book stands in for a dictionary of a state (a customer's orders and refunds): the same
 *   own-property reads and writes the deciders make (domain/entries.ts), kept as one string of JSON
 *   entries. Values are plain JSON (numbers, strings, null), so they read back exactly.
 * - `CompactIds` holds the event ids of a stream that carry an idempotency key, each with a prefix of
 *   its command hash: what answering a repeated command needs (commands/index.ts `firstResult`).
 */

/** Dictionaries (of the state of each kind) kept as books. */
const BOOKED: Partial<Record<AggregateKind, readonly string[]>> = { customer: ['orders', 'refunds'] };

const IS_BOOK = Symbol('compact book');

/**
 * One new sequential string. Strings grown with `+` are kept by V8 as trees of their pieces, even
 * once searched (measured: 20,000 strings of 50 entries grown with `+=` held 94 MB for 26 million
 * characters; joined, 26.5 MB).
 */
const flat = (parts: string[]): string => parts.join('');

/**
 * Entries `\n<key as JSON>:<value>`, where the value is a JSON array of the fields of the book's
 * first value (most values share one shape) or, for another shape, a JSON object. JSON text holds no
 * raw line break, so a line break always starts an entry.
 */
/** Field lists shared by every book whose values have them. */
const shapes = new Map<string, string[]>();
const shapeOf = (keys: string[]): string[] => {
  const name = JSON.stringify(keys);
  let shape = shapes.get(name);
  if (!shape) shapes.set(name, (shape = keys));
  return shape;
};

class Book {
  private text = '';
  private fields: string[] | undefined;

  /** The book as stored in a snapshot: its field list and its text (commands/snapshots.ts). */
  raw(): [string[] | null, string] {
    return [this.fields ?? null, this.text];
  }

  static fromRaw([fields, text]: [string[] | null, string]): Book {
    const book = new Book();
    book.fields = fields ? shapeOf(fields) : undefined;
    book.text = text;
    return book;
  }

  /**
   * A book of a dictionary's entries, written in one pass: its keys are distinct, so nothing is
   * looked up, and the text is joined once (a `set` per entry searched and copied the text each time:
   * a customer with 9,000 orders took seconds of a blocked event loop to compact).
   */
  static fromEntries(entries: Record<string, unknown>): Book {
    const book = new Book();
    book.text = flat(Object.keys(entries).map((key) => `\n${JSON.stringify(key)}:${book.encode(entries[key])}`));
    return book;
  }

  private encode(value: unknown): string {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const keys = Object.keys(value);
      this.fields ??= shapeOf(keys);
      const fields = this.fields;
      const record = value as Record<string, unknown>;
      if (keys.length === fields.length && keys.every((k, i) => k === fields[i] && record[k] !== undefined)) {
        return JSON.stringify(fields.map((f) => record[f]));
      }
    }
    // `{` or anything else that is not an array: decoded as plain JSON.
    return `=${JSON.stringify(value)}`;
  }

  private decode(encoded: string): unknown {
    if (encoded.startsWith('=')) return JSON.parse(encoded.slice(1));
    const values = JSON.parse(encoded) as unknown[];
    const out: Record<string, unknown> = {};
    this.fields!.forEach((f, i) => (out[f] = values[i]));
    return out;
  }

  /** The last key looked up and where it was found (a decider asks for one entry several times in a row). */
  private last: { key: string; at: { start: number; valueAt: number; end: number } | undefined } | undefined;

  /** Start and end of the entry's value, or undefined. */
  private find(key: string): { start: number; valueAt: number; end: number } | undefined {
    if (this.last?.key === key) return this.last.at;
    const head = `\n${JSON.stringify(key)}:`;
    const start = this.text.indexOf(head);
    const next = start < 0 ? -1 : this.text.indexOf('\n', start + head.length);
    const at = start < 0 ? undefined : { start, valueAt: start + head.length, end: next < 0 ? this.text.length : next };
    this.last = { key, at };
    return at;
  }

  has(key: string): boolean {
    return this.find(key) !== undefined;
  }

  get(key: string): unknown {
    const at = this.find(key);
    return at ? this.decode(this.text.slice(at.valueAt, at.end)) : undefined;
  }

  set(key: string, value: unknown): void {
    const entry = `\n${JSON.stringify(key)}:${this.encode(value)}`;
    const at = this.find(key);
    // In place, so that the entries keep their order.
    this.text = flat(at ? [this.text.slice(0, at.start), entry, this.text.slice(at.end)] : [this.text, entry]);
    this.last = undefined;
  }

  delete(key: string): void {
    const at = this.find(key);
    if (at) this.text = flat([this.text.slice(0, at.start), this.text.slice(at.end)]);
    this.last = undefined;
  }

  /** Each entry's key and encoded value, in order. */
  private *split(): Generator<[string, string]> {
    for (const line of this.text.split('\n')) {
      if (line === '') continue;
      // The key is a JSON string: its closing quote is the first unescaped one; the value follows its colon.
      let i = 1;
      while (line[i] !== '"') i += line[i] === '\\' ? 2 : 1;
      yield [JSON.parse(line.slice(0, i + 1)) as string, line.slice(i + 2)];
    }
  }

  keys(): string[] {
    return Array.from(this.split(), ([key]) => key);
  }

  /** Every entry, decoded in one pass (a `get` per key would search the text once per key). */
  entries(): [string, unknown][] {
    return Array.from(this.split(), ([key, encoded]) => [key, this.decode(encoded)]);
  }
}

/** The book behind a dictionary object (on the proxy's target, under a symbol). */
const BOOK = Symbol('book');
type BookTarget = { [BOOK]: Book };

/** One handler for every book (closures per book cost about 2 KB a customer). */
const bookHandler: ProxyHandler<BookTarget> = {
  get: (target, key, receiver) => {
    if (key === IS_BOOK) return true;
    if (key === BOOK) return target[BOOK];
    if (typeof key === 'string' && target[BOOK].has(key)) return target[BOOK].get(key);
    return typeof key === 'symbol' ? undefined : (Reflect.get(target, key, receiver) as unknown);
  },
  has: (target, key) => (typeof key === 'string' ? target[BOOK].has(key) || key in Object.prototype : false),
  getOwnPropertyDescriptor: (target, key) => {
    if (typeof key !== 'string' || !target[BOOK].has(key)) return undefined;
    return { value: target[BOOK].get(key), writable: true, enumerable: true, configurable: true };
  },
  defineProperty: (target, key, descriptor) => {
    if (typeof key !== 'string') return false;
    target[BOOK].set(key, descriptor.value);
    return true;
  },
  set: (target, key, value) => {
    if (typeof key !== 'string') return false;
    target[BOOK].set(key, value);
    return true;
  },
  deleteProperty: (target, key) => {
    if (typeof key === 'string') target[BOOK].delete(key);
    return true;
  },
  ownKeys: (target) => target[BOOK].keys(),
};

/** A dictionary object backed by a book: own-property reads, writes, deletes and enumeration behave as on a plain object. */
const bookObject = (entries: Record<string, unknown>): Record<string, unknown> => bookProxy(Book.fromEntries(entries));

const bookProxy = (book: Book): Record<string, unknown> => new Proxy<BookTarget>({ [BOOK]: book }, bookHandler);

const isBook = (value: unknown): boolean => typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[IS_BOOK] === true;

/**
 * The state with its growing dictionaries replaced by books (the same object when there are none).
 * Deciders and folds read and write them as before; evolving keeps them (a fold copies the state
 * shallowly, and writes to a dictionary in place).
 */
export const compactState = <S>(kind: AggregateKind, state: S): S => {
  const fields = BOOKED[kind];
  if (!fields || state === null || typeof state !== 'object') return state;
  const record = state as Record<string, unknown>;
  if (fields.every((f) => isBook(record[f]) || typeof record[f] !== 'object' || record[f] === null)) return state;
  const out: Record<string, unknown> = { ...record };
  for (const f of fields) {
    const value = record[f];
    if (typeof value === 'object' && value !== null && !isBook(value)) out[f] = bookObject(value as Record<string, unknown>);
  }
  return out as S;
};

/**
 * The state as a fold from the events leaves it: each book as a dictionary again (domain/entries.ts),
 * for holders that keep few states but decide often on them (the API's stream cache).
 */
export const expandState = <S>(kind: AggregateKind, state: S): S => {
  const fields = BOOKED[kind];
  if (!fields || state === null || typeof state !== 'object') return state;
  const out: Record<string, unknown> = { ...(state as Record<string, unknown>) };
  for (const f of fields) {
    if (!isBook(out[f])) continue;
    const expanded = dictionary();
    for (const [key, value] of (out[f] as Record<symbol, Book>)[BOOK]!.entries()) setEntry(expanded, key, value);
    out[f] = expanded;
  }
  return out as S;
};

/** A compact state in plain JSON values (a stream snapshot, commands/snapshots.ts): each book as its field list and text. */
export interface CompactStateForm {
  plain: Record<string, unknown>;
  books: Record<string, [string[] | null, string]>;
}

/** The plain fields as they are and each book as its text, so that neither saving nor reading a state walks its entries. */
export const compactStateForm = (kind: AggregateKind, state: unknown): CompactStateForm => {
  const compact = compactState(kind, state) as Record<string, unknown>;
  const plain: Record<string, unknown> = { ...compact };
  const books: CompactStateForm['books'] = {};
  for (const f of BOOKED[kind] ?? []) {
    if (!isBook(compact[f])) continue;
    books[f] = (compact[f] as Record<symbol, Book>)[BOOK]!.raw();
    delete plain[f];
  }
  return { plain, books };
};

/** The compact state `compactStateForm` gave. */
export const compactStateFromForm = <S>({ plain, books }: CompactStateForm): S => {
  const state: Record<string, unknown> = { ...plain };
  for (const [f, raw] of Object.entries(books)) state[f] = bookProxy(Book.fromRaw(raw));
  return state as S;
};

const ID_CHARS = 16;
const HASH_CHARS = 8;
const RECORD = ID_CHARS + HASH_CHARS;

/** The command hash's first characters; spaces (never in base64url) for an event without one. */
export const hashPrefix = (commandHash: string | undefined): string => (commandHash ?? '').slice(0, HASH_CHARS).padEnd(HASH_CHARS, ' ');

/** A UUID as 16 one-byte characters (its bytes). */
const packId = (id: string): string => Buffer.from(id.replace(/-/g, ''), 'hex').toString('latin1');

/**
 * The keyed event ids of one stream: 16 characters of id and the first 8 characters of the command
 * hash (48 bits) per event. Ids are exact; two command hashes that share their first 48 bits count
 * as the same command (a chance of 2^-48 that a changed row repeated under its old key reads as
 * already imported instead of as a conflict).
 */
export class CompactIds {
  private joined = '';
  /**
   * Records added since the text was last read, joined into it on the next read: a fold adds one per
   * event, and joining on each add copied the whole text every time (quadratic in the stream's length).
   */
  private added: string[] = [];

  private get text(): string {
    if (this.added.length > 0) {
      this.joined = flat([this.joined, ...this.added]);
      this.added = [];
    }
    return this.joined;
  }

  get size(): number {
    return this.text.length / RECORD;
  }

  /** An event without a command hash is held too: a command whose key derives its id is then a conflict, never a repeat. */
  add(id: string, commandHash: string | undefined): void {
    this.added.push(packId(id) + hashPrefix(commandHash));
  }

  /** Another holder of the same ids, to add to apart (the text is immutable: nothing is copied). */
  copy(): CompactIds {
    const ids = new CompactIds();
    ids.joined = this.text;
    return ids;
  }

  /** The ids as text (base64) for a snapshot. */
  toText(): string {
    return Buffer.from(this.text, 'latin1').toString('base64');
  }

  static fromText(text: string): CompactIds {
    const ids = new CompactIds();
    ids.joined = Buffer.from(text, 'base64').toString('latin1');
    if (ids.joined.length % RECORD !== 0) throw new Error('Malformed event ids in a snapshot');
    return ids;
  }

  /** The stored prefix of the command hash of `id`, or undefined when the id is not held. */
  hashOf(id: string): string | undefined {
    const packed = packId(id);
    for (let at = this.text.indexOf(packed); at >= 0; at = this.text.indexOf(packed, at + 1)) {
      if (at % RECORD === 0) return this.text.slice(at + ID_CHARS, at + RECORD);
    }
    return undefined;
  }

  /** Whether a command with `commandHash` is the one stored under the same id. */
  static sameCommand(stored: string, commandHash: string | undefined): boolean {
    return commandHash !== undefined && stored === hashPrefix(commandHash);
  }
}
