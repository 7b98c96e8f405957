import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { isCrmEventType, parseEvent, personalFields } from '../domain/catalogue.ts';
import { EventMetadata } from '../domain/metadata.ts';
import { ERASED } from '../domain/shared.ts';
import type { ProjectedEvent, RecordedEvent } from '../shared/events.ts';
import { LruMap } from '../shared/lru.ts';
import { MasterKeyMismatch } from './errors.ts';
import {
  MASTER_KEY_BYTES,
  masterKeyReplaced as masterKeyReplacedFor,
  masterKeyStillCurrent,
  recordMasterKey,
  unwrapWithMasterKey,
  wrapWithMasterKey,
  type MasterKeyPart,
} from './master-key.ts';

/**
 * Crypto-shredding of personal data (invariant 9). Each customer has a random AES-256-GCM data key
 * in `<events schema>.customer_keys` (the event store's migration `0015_customer_keys`). An event's personal fields are encrypted together, one AES-GCM
 * operation with a fresh IV per event (a cipher per field cost more than the encryption): each field
 * keeps its own ciphertext bytes (GCM is a stream mode), the first one also the IV and tag, as
 * `enc:v2:<iv>:<tag>:<ciphertext>`, the others `enc:v2:<ciphertext>` (base64url), so event JSON stays
 * valid and hash chains cover ciphertext only. Events stored earlier hold `enc:v1:<iv>:<tag>:<ciphertext>`
 * per field, one cipher each, and still read. Forgetting sets the
 * key to NULL and stamps `forgotten_at`: the row stays as a tombstone so no new key is ever created
 * for a forgotten customer.
 *
 * With a `masterKey`, data keys are stored wrapped (AES-256-GCM, bound to the customer id), so a copy
 * of the database alone reveals nothing. Keys stored unwrapped before a master key was configured
 * still read (a wrapped key is 60 bytes, a bare one 32).
 */
export interface PersonalData {
  /**
   * Encrypts the personal fields (domain/catalogue.ts `personalFields`) of an event about to be
   * appended. A registration creates the customer's key; any other event needs the key there already
   * (CustomerDataKeyMissing).
   */
  protect(type: string, data: unknown): Promise<unknown>;
  /** Decrypts stored data; fields of a forgotten customer read as ERASED ('[erased]'). */
  reveal(type: string, data: unknown): Promise<unknown>;
  /** Deletes the customer's key (crypto-shredding). */
  forget(customerId: string): Promise<void>;
  /** Whether the customer's key was deleted (by any process): the subject access export says so. */
  isForgotten(customerId: string): Promise<boolean>;
  /** Drop cached keys of a customer (projections call it when they see CustomerForgotten). */
  evict(customerId: string): void;
  /**
   * One query: marks those of these customers who have been forgotten (by any process) as forgotten in
   * the cache, and answers them. Publishers call it before decoding a page, so nothing is delivered
   * from a stale key; a bulk import before appending a batch encrypted earlier.
   */
  refreshForgotten(customerIds: readonly string[]): Promise<string[]>;
  /** Every customer forgotten so far, by any process (their keys are gone). */
  forgottenCustomers(): Promise<string[]>;
  /**
   * Bulk import: reads the keys of many customers in one query (creating the missing ones in one
   * insert when `create`), so that the following protect/reveal calls need no round trip.
   */
  loadKeys(customerIds: string[], options?: { create?: boolean }): Promise<void>;
  /**
   * Encrypts text derived from a customer's events (a saved state of their stream) under their data
   * key, bound to `context`: forgetting the customer shreds it with their events. Throws
   * PersonalDataForgotten for a forgotten customer, CustomerDataKeyMissing for one without a key.
   */
  seal(customerId: string, context: string, text: string): Promise<string>;
  /**
   * The text `seal` was given for the same customer and context; undefined when the customer was
   * forgotten or has no key, or when the sealed text does not authenticate (altered, or moved to
   * another customer or context).
   */
  open(customerId: string, context: string, sealed: string): Promise<string | undefined>;
}

/** The customer an event's personal fields belong to, if it has any. */
export const personalSubjectOf = (type: string, data: unknown): string | undefined => {
  const spec = personalSpec(type);
  if (!spec || !isRecord(data)) return undefined;
  const subject = data[spec.subject];
  return typeof subject === 'string' ? subject : undefined;
};

/**
 * The customer whose key decrypting this stored event needs: set only when one of its personal fields
 * is encrypted (what `reveal` looks a key up for).
 */
export const encryptedSubjectOf = (type: string, data: unknown): string | undefined => {
  const spec = personalSpec(type);
  if (!spec || !isRecord(data)) return undefined;
  const subject = data[spec.subject];
  return typeof subject === 'string' && spec.fields.some((f) => isEncrypted(data[f])) ? subject : undefined;
};

/** Refused: personal data for a customer whose key was deleted cannot be stored any more. */
export class PersonalDataForgotten extends Error {
  constructor(readonly customerId: string) {
    super(`Customer ${customerId} has been forgotten: no personal data can be recorded for them`);
    this.name = 'PersonalDataForgotten';
  }
}

/**
 * A registered customer (never forgotten) without a data key row: deleted, or lost to a restore of an
 * older backup. A new key would have hidden it for good: their earlier events would stay sealed under
 * the lost key while the new ones read, and `crm verify --chain` would no longer see a key missing.
 */
export class CustomerDataKeyMissing extends Error {
  constructor(readonly customerId: string) {
    super(
      `Customer ${customerId} has no data key: its row in customer_keys was deleted or lost to a restore, so their personal data cannot be read or recorded. ` +
        'Restore the row from a backup (crm verify --chain names every such customer); nothing was recorded.',
    );
    this.name = 'CustomerDataKeyMissing';
  }
}

/** The event that starts a customer, and with it their data key. */
const KEY_CREATING_EVENT = 'CustomerRegistered';

/** One cipher per field: written before v2, still read (stored events are never rewritten). */
const V1 = 'enc:v1:';
/** One cipher per event. */
const V2 = 'enc:v2:';
const IV_BYTES = 12;
/** A customer's data key (AES-256); a wrapped one is longer (IV and tag beside it). */
const KEY_BYTES = 32;

export interface PersonalDataOptions {
  /** Events schema: the keys table lives beside the events. */
  schema: string;
  /** 32 bytes that wrap every data key at rest (from the composition root, e.g. a secret manager). */
  masterKey?: Uint8Array;
  /** Data keys kept in memory (the least recently stored leave first). Default 50 000, about 10 MB. */
  cachedKeys?: number;
}

const keyLabel = (customerId: string) => `key:${customerId}`;
const wrapKey = (master: Uint8Array, customerId: string, key: Buffer): Buffer => wrapWithMasterKey(master, keyLabel(customerId), key);

const unwrapKey = (master: Uint8Array | undefined, customerId: string, stored: Buffer): Buffer => {
  if (stored.length === KEY_BYTES) return stored;
  if (!master) throw new Error(`The data key of customer ${customerId} is wrapped, but no master key is configured`);
  return unwrapWithMasterKey(master, keyLabel(customerId), stored);
};

export const isEncrypted = (value: unknown): value is string => typeof value === 'string' && (value.startsWith(V2) || value.startsWith(V1));
const isEncryptedTogether = (value: unknown): value is string => typeof value === 'string' && value.startsWith(V2);

/** v1 ciphertext is bound to customer and field name, so it cannot be moved to another field or person. */
const aad = (customerId: string, field: string) => Buffer.from(`${customerId}:${field}`, 'utf8');
/** v2: bound to the customer and the fields encrypted together (in order), so none can be moved, dropped or swapped. */
const eventAad = (customerId: string, fields: readonly string[]) => Buffer.from(`v2:${fields.join(',')}:${customerId}`, 'utf8');

/**
 * IVs cut from one larger draw of the system's random generator: a `randomBytes` call per 12-byte IV
 * cost more than the encryption itself (bulk imports encrypt three fields per customer). Each IV is
 * still fresh random bytes, never handed out twice.
 */
let ivPool = Buffer.alloc(0);
let ivTaken = 0;
const freshIv = (): Buffer => {
  if (ivTaken + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_BYTES * 512);
    ivTaken = 0;
  }
  ivTaken += IV_BYTES;
  return ivPool.subarray(ivTaken - IV_BYTES, ivTaken);
};

/** Encrypts `fields` of `data` into `out` with one cipher (v2). */
const encryptTogether = (key: Buffer, customerId: string, fields: readonly string[], data: Record<string, unknown>, out: Record<string, unknown>): void => {
  const iv = freshIv();
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(eventAad(customerId, fields));
  const parts = fields.map((field) => cipher.update(JSON.stringify(data[field]), 'utf8'));
  // GCM holds nothing back, so `final` (which computes the tag) returns no bytes; they would end the last field.
  const rest = cipher.final();
  if (rest.length > 0) parts[parts.length - 1] = Buffer.concat([parts.at(-1)!, rest]);
  const head = `${V2}${iv.toString('base64url')}:${cipher.getAuthTag().toString('base64url')}:`;
  fields.forEach((field, i) => (out[field] = `${i === 0 ? head : V2}${parts[i]!.toString('base64url')}`));
};

/** Decrypts the v2 `fields` of `stored` into `out`; nothing is written unless the tag verifies. */
const decryptTogether = (key: Buffer, customerId: string, fields: readonly string[], stored: Record<string, unknown>, out: Record<string, unknown>): void => {
  const [head, ...others] = fields.map((field) => (stored[field] as string).slice(V2.length).split(':'));
  const [iv, tag, first] = head!;
  if (first === undefined || head!.length !== 3 || others.some((parts) => parts.length !== 1)) throw new Error(`Malformed ciphertext in ${fields.join(', ')}`);
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv!, 'base64url'));
  decipher.setAAD(eventAad(customerId, fields));
  decipher.setAuthTag(Buffer.from(tag!, 'base64url'));
  const parts = [first, ...others.map((parts) => parts[0]!)].map((part) => decipher.update(Buffer.from(part, 'base64url')));
  decipher.final();
  fields.forEach((field, i) => (out[field] = JSON.parse(parts[i]!.toString('utf8'))));
};

const decryptV1 = (key: Buffer, customerId: string, field: string, stored: string): unknown => {
  const [iv, tag, ciphertext] = stored.slice(V1.length).split(':');
  if (iv === undefined || tag === undefined || ciphertext === undefined) throw new Error(`Malformed ciphertext in ${field}`);
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
  decipher.setAAD(aad(customerId, field));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  const plain = Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
  return JSON.parse(plain.toString('utf8'));
};

/** Derived text (seal/open): `enc:s1:<iv>:<tag>:<ciphertext>`, bound to the customer and the caller's context. */
const SEALED = 'enc:s1:';
const sealAad = (customerId: string, context: string) => Buffer.from(`s1:${context}:${customerId}`, 'utf8');

const sealText = (key: Buffer, customerId: string, context: string, text: string): string => {
  const iv = freshIv();
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(sealAad(customerId, context));
  const ciphertext = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  return `${SEALED}${iv.toString('base64url')}:${cipher.getAuthTag().toString('base64url')}:${ciphertext.toString('base64url')}`;
};

const openText = (key: Buffer, customerId: string, context: string, sealed: string): string | undefined => {
  const [iv, tag, ciphertext, extra] = sealed.startsWith(SEALED) ? sealed.slice(SEALED.length).split(':') : [];
  if (iv === undefined || tag === undefined || ciphertext === undefined || extra !== undefined) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(sealAad(customerId, context));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    // The tag does not verify (or a malformed IV or tag): not what was sealed here.
    return undefined;
  }
};

const personalSpec = (type: string) => (isCrmEventType(type) ? personalFields[type] : undefined);

const isRecord = (data: unknown): data is Record<string, unknown> => typeof data === 'object' && data !== null && !Array.isArray(data);

/** `undefined` = no key row yet; `null` = forgotten (the key was deleted). */
type KeyLookup = Buffer | null | undefined;

const keysTable = (schema: string) => sql.table(`${schema}.customer_keys`);

const masterKeyReplaced = () => masterKeyReplacedFor('new customer data keys');

/**
 * Checks one wrapped key against the master key, so that a missing or wrong master key stops the
 * process at start with a clear message instead of failing every read of personal data later.
 */
async function checkMasterKey(db: Kysely<unknown>, schema: string, masterKey: Uint8Array | undefined): Promise<void> {
  const { rows } = await sql<{ customer_id: string; data_key: Buffer }>`
    SELECT customer_id, data_key FROM ${keysTable(schema)} WHERE length(data_key) <> ${KEY_BYTES} LIMIT 1`.execute(db);
  const wrapped = rows[0];
  if (!wrapped) return;
  if (!masterKey) {
    throw new MasterKeyMismatch('The customer data keys are wrapped with a master key, but none is configured: set CRM_MASTER_KEY or CRM_MASTER_KEY_FILE.');
  }
  try {
    unwrapKey(masterKey, wrapped.customer_id, Buffer.from(wrapped.data_key));
  } catch {
    throw new MasterKeyMismatch(
      'The configured master key (CRM_MASTER_KEY / CRM_MASTER_KEY_FILE) does not unwrap the stored customer data keys: it is not the key they were wrapped with.',
    );
  }
}

/**
 * Re-wraps every live data key under `to` (the new master key), keys read with `from` (the current
 * master key; bare keys need none). Forgotten customers have no key to re-wrap.
 */
export const rewrapDataKeys: MasterKeyPart = async (trx, { schema, from, to }) => {
  const table = keysTable(schema);
  const { rows } = await sql<{ customer_id: string; data_key: Buffer }>`
    SELECT customer_id, data_key FROM ${table} WHERE data_key IS NOT NULL ORDER BY customer_id FOR UPDATE`.execute(trx);
  const ids: string[] = [];
  const keys: string[] = [];
  for (const row of rows) {
    const key = unwrapKey(from, row.customer_id, Buffer.from(row.data_key));
    ids.push(row.customer_id);
    keys.push(wrapKey(to, row.customer_id, key).toString('hex'));
  }
  if (ids.length > 0) {
    await sql`
      UPDATE ${table} AS k SET data_key = decode(u.data_key, 'hex')
        FROM unnest(${ids}::text[], ${keys}::text[]) AS u(customer_id, data_key)
       WHERE k.customer_id = u.customer_id`.execute(trx);
  }
  return { name: 'customer data keys', count: ids.length };
};

export async function createPersonalData(db: Kysely<unknown>, options: PersonalDataOptions): Promise<PersonalData> {
  const { masterKey } = options;
  if (masterKey && masterKey.length !== MASTER_KEY_BYTES) throw new Error(`The master key must be ${MASTER_KEY_BYTES} bytes, got ${masterKey.length}`);
  const table = keysTable(options.schema);
  await checkMasterKey(db, options.schema, masterKey);
  // Checked above against the stored keys: from now on new keys are wrapped with this one.
  if (masterKey) await recordMasterKey(options.schema, masterKey).execute(db);
  const stillCurrent = masterKeyStillCurrent(options.schema, masterKey);

  // Keys never change once created and a forgotten customer stays forgotten, so both cache safely;
  // another process forgetting a customer is seen after `evict`. Bounded (least recently used
  // first out), so a service or an import over millions of customers keeps a flat memory: an evicted
  // key is read again when next needed.
  const cache = new LruMap<string, Buffer | null>(options.cachedKeys ?? 50_000);
  // Copied into memory of its own: a small Buffer is a slice of Node's shared 8 KB pool, and a cached
  // slice kept its whole block alive (a soak of `crm serve` grew by 6.9 KB a customer).
  const remember = (customerId: string, key: Buffer | null): Buffer | null => {
    const own = key && Buffer.alloc(key.length, key);
    cache.set(customerId, own);
    return own;
  };

  /**
   * The key rows of many customers, one index probe each (`k`): with `customer_id = ANY (...)` the
   * index was scanned for the whole array at once, several times slower for a bulk import's
   * 1,000 customers (a bitmap scan, 11.5 ms against 2 ms measured with psql at 23,570 keys).
   */
  const byProbes = (ids: string[]) =>
    sql`unnest(${ids}::text[]) AS u(id) CROSS JOIN LATERAL (SELECT customer_id, data_key FROM ${table} WHERE customer_id = u.id LIMIT 1) k`;

  const lookup = async (customerId: string): Promise<KeyLookup> => {
    if (cache.has(customerId)) return cache.get(customerId);
    const { rows } = await sql<{ data_key: Buffer | null }>`
      SELECT data_key FROM ${table} WHERE customer_id = ${customerId}`.execute(db);
    const row = rows[0];
    if (!row) return undefined;
    return remember(customerId, row.data_key ? unwrapKey(masterKey, customerId, Buffer.from(row.data_key)) : null);
  };

  const keyForWriting = async (customerId: string, creates: boolean): Promise<Buffer> => {
    let key = await lookup(customerId);
    if (key === undefined && !creates) throw new CustomerDataKeyMissing(customerId);
    if (key === undefined) {
      const fresh = randomBytes(KEY_BYTES);
      await sql`
        INSERT INTO ${table} (customer_id, data_key)
        SELECT ${customerId}, ${masterKey ? wrapKey(masterKey, customerId, fresh) : fresh} WHERE ${stillCurrent}
        ON CONFLICT (customer_id) DO NOTHING`.execute(db);
      // Re-read: a concurrent writer may have won the insert, or the customer may be a tombstone.
      key = await lookup(customerId);
      if (key === undefined) throw masterKeyReplaced();
    }
    if (!key) throw new PersonalDataForgotten(customerId);
    return key;
  };

  return {
    async protect(type, data) {
      const spec = personalSpec(type);
      if (!spec || !isRecord(data)) return data;
      const customerId = data[spec.subject];
      if (typeof customerId !== 'string') return data;
      const present = spec.fields.filter((f) => data[f] !== undefined && data[f] !== null && !isEncrypted(data[f]));
      if (present.length === 0) return data;
      // One v2 group per event: reveal decrypts every v2 field of the event as one.
      if (spec.fields.some((f) => isEncryptedTogether(data[f])))
        throw new Error(`${type} already holds personal fields encrypted together; no more can join them`);
      const key = await keyForWriting(customerId, type === KEY_CREATING_EVENT);
      const out: Record<string, unknown> = { ...data };
      encryptTogether(key, customerId, present, data, out);
      return out;
    },

    async reveal(type, data) {
      const spec = personalSpec(type);
      if (!spec || !isRecord(data)) return data;
      const customerId = data[spec.subject];
      if (typeof customerId !== 'string') return data;
      const encrypted = spec.fields.filter((f) => isEncrypted(data[f]));
      if (encrypted.length === 0) return data;
      const key = await lookup(customerId);
      const out: Record<string, unknown> = { ...data };
      if (!key) {
        for (const field of encrypted) out[field] = ERASED;
        return out;
      }
      const together = encrypted.filter((f) => isEncryptedTogether(data[f]));
      if (together.length > 0) decryptTogether(key, customerId, together, data, out);
      for (const field of encrypted) if (!isEncryptedTogether(data[field])) out[field] = decryptV1(key, customerId, field, data[field] as string);
      return out;
    },

    async forget(customerId) {
      await sql`
        INSERT INTO ${table} AS k (customer_id, data_key, forgotten_at) VALUES (${customerId}, NULL, now())
        ON CONFLICT (customer_id) DO UPDATE SET data_key = NULL, forgotten_at = COALESCE(k.forgotten_at, now())`.execute(db);
      remember(customerId, null);
    },

    async isForgotten(customerId) {
      const { rows } = await sql<{ forgotten: boolean }>`
        SELECT forgotten_at IS NOT NULL AS forgotten FROM ${table} WHERE customer_id = ${customerId}`.execute(db);
      return rows[0]?.forgotten ?? false;
    },

    evict(customerId) {
      cache.delete(customerId);
    },

    async seal(customerId, context, text) {
      return sealText(await keyForWriting(customerId, false), customerId, context, text);
    },

    async open(customerId, context, sealed) {
      const key = await lookup(customerId);
      return key ? openText(key, customerId, context, sealed) : undefined;
    },

    async forgottenCustomers() {
      const { rows } = await sql<{ customer_id: string }>`SELECT customer_id FROM ${table} WHERE data_key IS NULL ORDER BY customer_id`.execute(db);
      return rows.map((row) => row.customer_id);
    },

    async refreshForgotten(customerIds) {
      const ids = [...new Set(customerIds)];
      // Known forgotten stay so (a key is never given back); the others are asked, cached or not.
      const known = ids.filter((id) => cache.has(id) && cache.get(id) === null);
      const asked = ids.filter((id) => !known.includes(id));
      if (asked.length === 0) return known;
      const { rows } = await sql<{ customer_id: string }>`
        SELECT customer_id FROM ${table} WHERE customer_id = ANY(${asked}::text[]) AND data_key IS NULL`.execute(db);
      for (const row of rows) remember(row.customer_id, null);
      return [...known, ...rows.map((row) => row.customer_id)];
    },

    async loadKeys(customerIds, options = {}) {
      type KeyRow = { customer_id: string; data_key: Buffer | null };
      const learn = (rows: KeyRow[]): void => {
        for (const row of rows) remember(row.customer_id, row.data_key ? unwrapKey(masterKey, row.customer_id, Buffer.from(row.data_key)) : null);
      };
      const read = async (ids: string[]): Promise<string[]> => {
        if (ids.length === 0) return [];
        const { rows } = await sql<KeyRow>`SELECT k.customer_id, k.data_key FROM ${byProbes(ids)}`.execute(db);
        learn(rows);
        const found = new Set(rows.map((row) => row.customer_id));
        return ids.filter((id) => !found.has(id));
      };
      const unknown = [...new Set(customerIds)].filter((id) => !cache.has(id));
      if (!options.create) {
        await read(unknown);
        return;
      }
      if (unknown.length === 0) return;
      // A fresh key for each customer without a row. The rows that were there already (a re-import, a
      // concurrent writer, a tombstone) are read by a second statement, only when there are any: probing
      // every id in the same statement cost a bulk import of new customers about 5 µs of database CPU a
      // row (12-15 µs a key with the probes, 7-8 without), for rows that could not be there.
      const random = randomBytes(KEY_BYTES * unknown.length);
      const keys = unknown.map((id, i) => {
        const fresh = random.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES);
        return (masterKey ? wrapKey(masterKey, id, fresh) : fresh).toString('hex');
      });
      // Keys travel as hex text: both drivers (pg, PGlite) bind text arrays alike.
      const { rows } = await sql<KeyRow>`
        INSERT INTO ${table} (customer_id, data_key)
        SELECT u.id, decode(u.key, 'hex') FROM unnest(${unknown}::text[], ${keys}::text[]) AS u(id, key)
         WHERE ${stillCurrent}
        ON CONFLICT (customer_id) DO NOTHING
        RETURNING customer_id, data_key`.execute(db);
      learn(rows);
      // Stored before (or by a concurrent writer after this statement began, so not in its snapshot): read now.
      const stored = new Set(rows.map((row) => row.customer_id));
      const missing = await read(unknown.filter((id) => !stored.has(id)));
      if (missing.length > 0) throw masterKeyReplaced();
    },
  };
}

/** RecordedEvent -> ProjectedEvent (shared/events.ts): reveal, upcast (domain parseEvent), validate metadata. */
export async function decodeRecordedEvent(recorded: RecordedEvent, personalData: PersonalData): Promise<ProjectedEvent> {
  const metadata = EventMetadata.parse(recorded.metadata);
  const data = await personalData.reveal(recorded.type, recorded.data);
  return {
    event: parseEvent(recorded.type, metadata.schemaVersion, data),
    id: recorded.id,
    stream: recorded.stream,
    revision: recorded.revision,
    position: recorded.position,
    recordedAt: recorded.recordedAt,
    metadata,
  };
}
