import { createHmac, hash } from 'node:crypto';
import { normaliseEmail } from '../domain/shared.ts';

/** Namespace of the CRM's name-based ids (a fixed random UUID). */
const NAMESPACE = Buffer.from('6f1c2a5e8b3d4f7a9c0e1b2d3f4a5b6c', 'hex');
/** The namespace followed by the name being hashed (grown on demand). */
let scratch = Buffer.concat([NAMESPACE, Buffer.alloc(496)]);

/**
 * RFC 4122 version-5 UUID of `name`: the same name always gives the same id. Event ids derived from
 * (stream, idempotency key, index) make a retried command find its first result.
 */
export const uuidV5 = (name: string): string => {
  // One-shot hashing over a reused buffer: a Hash object per id cost more than the digest (bulk import).
  const length = NAMESPACE.length + Buffer.byteLength(name, 'utf8');
  if (length > scratch.length) {
    scratch = Buffer.alloc(Math.max(length, 2 * scratch.length));
    NAMESPACE.copy(scratch);
  }
  scratch.write(name, NAMESPACE.length, 'utf8');
  const digest = hash('sha1', scratch.subarray(0, length), 'buffer');
  digest[6] = (digest[6]! & 0x0f) | 0x50;
  digest[8] = (digest[8]! & 0x3f) | 0x80;
  const hex = digest.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
};

export const eventIdFor = (stream: string, idempotencyKey: string, index: number): string => uuidV5(`event\n${stream}\n${idempotencyKey}\n${index}`);

/**
 * The id a customer imported by address alone gets: the same for the same address in one
 * installation (a purchases file names its customers by address; a second import finds them), derived
 * under the installation's secret `key` so that nobody holding only ids (an analyst, a BI tool, a
 * copy of the read models) can test a guessed address against them.
 */
export const customerIdUnder = (key: Uint8Array, email: string): string =>
  uuidV4Of(
    createHmac('sha256', key)
      .update(`crm-import:customer:${normaliseEmail(email)}`)
      .digest('hex'),
  );

/**
 * The id importers gave before they were keyed, derived from the address alone: customers imported so
 * keep it, and an import recognises them by it (commands/import/importer.ts).
 */
export const unkeyedCustomerId = (email: string): string => uuidV4Of(hash('sha256', `crm-import:customer:${normaliseEmail(email)}`, 'hex'));

/** A UUID (version 4 and variant bits set) from the first 128 bits of a hex digest. */
const uuidV4Of = (h: string): string => {
  const variant = ((parseInt(h[16] as string, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/** Id of an aggregate created by a command that carried no id: stable across retries of the same key. */
export const createdIdFor = (commandType: string, idempotencyKey: string): string => uuidV5(`create\n${commandType}\n${idempotencyKey}`);

/** Keys that objects list first, in numeric order, whatever the order they were added in. */
const isArrayIndex = (key: string): boolean => {
  const first = key.charCodeAt(0);
  return first >= 48 && first <= 57 && /^(?:0|[1-9]\d{0,9})$/.test(key) && Number(key) < 4_294_967_295;
};

/**
 * The command's JSON with object keys sorted and undefined members left out, written directly: the
 * same text as `JSON.stringify` of a key-sorted copy (which this replaced, and which the stored
 * hashes were made with), without building the copy. Like that copy, it lists keys that are array
 * indices first, in numeric order (an object's own order), then the others sorted.
 */
export const canonicalJson = (value: unknown): string | undefined => {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v) ?? 'null').join(',')}]`;
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    let out = '';
    for (const [key, quoted] of memberOrder(Object.keys(record))) {
      const member = record[key] === undefined ? undefined : canonicalJson(record[key]);
      if (member !== undefined) out += `${out === '' ? '' : ','}${quoted}:${member}`;
    }
    return `{${out}}`;
  }
  return JSON.stringify(value);
};

/**
 * Member order of objects with these keys (in `Object.keys` order), each key with its JSON: worked
 * out once per shape. A bulk import hashes thousands of commands of a few shapes, and sorting and
 * quoting the keys of each was a third of the hash's allocations. Bounded: shapes past the bound are
 * worked out every time.
 */
const memberOrders = new Map<string, [string, string][]>();
const MAX_SHAPES = 1_000;
const memberOrder = (keys: string[]): [string, string][] => {
  // JSON of the key list: two different lists never share it.
  const shape = JSON.stringify(keys);
  let order = memberOrders.get(shape);
  if (!order) {
    // Object.keys lists index keys first, in numeric order.
    const indices: string[] = [];
    const names: string[] = [];
    for (const key of keys) (isArrayIndex(key) ? indices : names).push(key);
    names.sort();
    order = [...indices, ...names].map((key): [string, string] => [key, JSON.stringify(key)]);
    if (memberOrders.size < MAX_SHAPES) memberOrders.set(shape, order);
  }
  return order;
};

/**
 * SHA-256 of the command's canonical JSON (keys sorted): equal for a retry, different for another
 * request. The fingerprint events stored before fingerprints were keyed (`keyedCommandHash`) carry.
 */
export const commandHash = (command: unknown): string => hash('sha256', canonicalJson(command) ?? 'undefined', 'base64url');

/**
 * The fingerprint stored with a command's events: HMAC-SHA-256 of its canonical JSON under the
 * installation's key (EmailIndex.fingerprintKey). Unkeyed, the fingerprint of a command that carried a
 * phone number let anyone holding the events find the number by trying every one, also after the
 * customer was forgotten and their data key deleted.
 */
export const keyedCommandHash = (key: Uint8Array, command: unknown): string =>
  createHmac('sha256', key)
    .update(canonicalJson(command) ?? 'undefined')
    .digest('base64url');
