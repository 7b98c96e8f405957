import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { normaliseEmail } from '../domain/customer/commands.ts';
import { MasterKeyMismatch } from './errors.ts';
import { masterKeyReplaced, masterKeyStillCurrent, unwrapWithMasterKey, wrapWithMasterKey, type MasterKeyPart } from './master-key.ts';

/**
 * Which customer (or, in the users' index, which user) holds each email address, for refusing
 * duplicate registrations. Customers and users have an index each (`holder`): a member of staff may
 * also be a customer, with the same address. Below, "customer" is the holder of either. Emails are personal
 * data (encrypted per customer in the events), so the index keeps no plaintext: the key is an
 * HMAC-SHA256 of the normalised address, under one key per installation kept in `email_lookup_key`
 * beside the index (wrapped by the master key when one is configured). Forgetting a customer deletes
 * their rows. The tables are the event store's migration `0017_email_indexes`.
 *
 * Why a table and not a reservation stream: a claim must be removable when the customer is forgotten,
 * and events are never rewritten. Why insert-first: the primary key makes the claim atomic, so of two
 * concurrent registrations of one address exactly one inserts; the other sees the holder and is
 * refused. The claim is taken before the registration is appended; a claim whose customer never got
 * registered (the process died in between) is taken over once it is older than `staleAfterSeconds`.
 */
export interface EmailIndex {
  /** The customer holding this address now (undefined when free). */
  holder(email: string): Promise<string | undefined>;
  /** The customers holding these addresses now, by address as given (free ones left out), in one round trip. */
  holders(emails: readonly string[]): Promise<Map<string, string>>;
  /** Claims the address for the customer; answers the holder when someone else already holds it. */
  claim(email: string, customerId: string): Promise<EmailClaim>;
  /**
   * Claims many addresses in one round trip (bulk import), each answered as `claim` would. An address
   * asked for twice goes to its first asker; a later asker for another customer is told that one holds it.
   */
  claimMany(claims: readonly { email: string; customerId: string }[]): Promise<EmailClaim[]>;
  /**
   * Replaces a holder whose registration never happened with this customer, if its claim is older than
   * `olderThanSeconds` (database clock: a younger claim may belong to a registration still in flight).
   * False when the holder changed meanwhile or the claim is too young.
   */
  takeOver(email: string, staleHolder: string, customerId: string, olderThanSeconds: number): Promise<boolean>;
  /** Frees this address if the customer holds it (a claim whose command then failed). */
  release(email: string, customerId: string): Promise<void>;
  /** Frees every address of the customer except `keep` (after an email change). */
  releaseOthers(customerId: string, keep: string): Promise<void>;
  /** Deletes every row of the customer (forget). */
  forget(customerId: string): Promise<void>;
  /**
   * The key imported customers' ids are derived under (commands/ids.ts customerIdUnder): derived from
   * the installation's lookup key, so it is the same under every master key and in every process.
   */
  readonly customerIdKey: Buffer;
  /**
   * The key commands' idempotency fingerprints are taken under (commands/ids.ts `keyedCommandHash`, and
   * the API's `idempotency_keys`): a fingerprint of a command that carried personal data, kept in the
   * event's metadata for ever, must not let a copy of the events test guessed values (a phone number
   * is a million guesses), also after the customer was forgotten. Derived from the lookup key as
   * `customerIdKey` is: the same under every master key, and in every process.
   */
  readonly fingerprintKey: Buffer;
}

/** `fresh`: this claim took the address (it was free); otherwise the customer already held it. */
export type EmailClaim = { claimed: true; fresh: boolean } | { claimed: false; holder: string };

export interface EmailIndexOptions {
  /** Events schema: the index lives beside the events and the customers' data keys. */
  schema: string;
  /**
   * Whose addresses: `customer` (default, table `customer_email_index`) or `user` (`user_email_index`,
   * the staff). Both use the installation's one lookup key.
   */
  holder?: 'customer' | 'user';
  /** The master key that wraps data keys, when configured: the HMAC key is derived from it. */
  masterKey?: Uint8Array;
}

export async function createEmailIndex(db: Kysely<unknown>, options: EmailIndexOptions): Promise<EmailIndex> {
  const holder = options.holder ?? 'customer';
  const table = sql.id(options.schema, `${holder}_email_index`);
  // The users' index names its holder column `customer_id` too, so that every statement below serves both.
  const key = await lookupKey(db, options.schema, options.masterKey);
  const hmac = (email: string): Buffer => createHmac('sha256', key).update(normaliseEmail(email)).digest();

  /** The holders of these HMAC keys, by key in hex (free ones left out), in one query. */
  const holdersOfKeys = async (keys: readonly Buffer[]): Promise<Map<string, string>> => {
    const { rows } = await sql<{ email_hmac: Buffer; customer_id: string }>`SELECT email_hmac, customer_id FROM ${table}
      WHERE email_hmac = ANY(${keys}::bytea[])`.execute(db);
    return new Map(rows.map((r) => [Buffer.from(r.email_hmac).toString('hex'), r.customer_id]));
  };
  const holders = async (emails: readonly string[]): Promise<Map<string, string>> => {
    const found = new Map<string, string>();
    if (emails.length === 0) return found;
    const keys = emails.map(hmac);
    const byKey = await holdersOfKeys(keys);
    emails.forEach((email, i) => {
      const holder = byKey.get(keys[i]!.toString('hex'));
      if (holder !== undefined) found.set(email, holder);
    });
    return found;
  };
  const claimMany = async (claims: readonly { email: string; customerId: string }[]): Promise<EmailClaim[]> => {
    const keys = claims.map((c) => hmac(c.email));
    const hex = keys.map((k) => k.toString('hex'));
    const firstAsker = new Map<string, number>();
    hex.forEach((h, i) => firstAsker.has(h) || firstAsker.set(h, i));
    const results = new Array<EmailClaim>(claims.length);
    let open = [...firstAsker.values()];
    while (open.length > 0) {
      const { rows: inserted } = await sql<{ email_hmac: Buffer }>`INSERT INTO ${table} (email_hmac, customer_id)
        SELECT * FROM unnest(${open.map((i) => keys[i]!)}::bytea[], ${open.map((i) => claims[i]!.customerId)}::text[])
        ON CONFLICT (email_hmac) DO NOTHING RETURNING email_hmac`.execute(db);
      const taken = new Set(inserted.map((r) => Buffer.from(r.email_hmac).toString('hex')));
      const held = open.filter((i) => !taken.has(hex[i]!));
      for (const i of open) if (taken.has(hex[i]!)) results[i] = { claimed: true, fresh: true };
      if (held.length === 0) break;
      const holders = await holdersOfKeys(held.map((i) => keys[i]!));
      // An address freed between the insert and the read (a forget) is claimed again.
      open = held.filter((i) => !holders.has(hex[i]!));
      for (const i of held) {
        const holder = holders.get(hex[i]!);
        if (holder !== undefined) results[i] = holder === claims[i]!.customerId ? { claimed: true, fresh: false } : { claimed: false, holder };
      }
    }
    claims.forEach((c, i) => {
      const first = firstAsker.get(hex[i]!)!;
      if (first === i) return;
      const answer = results[first]!;
      const holder = answer.claimed ? claims[first]!.customerId : answer.holder;
      results[i] = holder === c.customerId ? { claimed: true, fresh: false } : { claimed: false, holder };
    });
    return results;
  };
  return {
    holder: async (email) => (await holders([email])).get(email),
    holders,
    claim: async (email, customerId) => (await claimMany([{ email, customerId }]))[0]!,
    claimMany,
    async takeOver(email, staleHolder, customerId, olderThanSeconds) {
      const result = await sql`UPDATE ${table} SET customer_id = ${customerId}, claimed_at = now()
        WHERE email_hmac = ${hmac(email)} AND customer_id = ${staleHolder}
          AND claimed_at < now() - make_interval(secs => ${olderThanSeconds})`.execute(db);
      return Number(result.numAffectedRows ?? 0) > 0;
    },
    async release(email, customerId) {
      await sql`DELETE FROM ${table} WHERE email_hmac = ${hmac(email)} AND customer_id = ${customerId}`.execute(db);
    },
    async releaseOthers(customerId, keep) {
      await sql`DELETE FROM ${table} WHERE customer_id = ${customerId} AND email_hmac <> ${hmac(keep)}`.execute(db);
    },
    async forget(customerId) {
      await sql`DELETE FROM ${table} WHERE customer_id = ${customerId}`.execute(db);
    },
    // A key of its own for another use of the one secret: an id reveals nothing of the index's keys.
    customerIdKey: createHmac('sha256', key).update('crm imported customer ids v1').digest(),
    fingerprintKey: createHmac('sha256', key).update('crm command fingerprints v1').digest(),
  };
}

const LOOKUP_KEY_BYTES = 32;
const LOOKUP_KEY_LABEL = 'email lookup key';
const lookupKeyTable = (schema: string) => sql.id(schema, 'email_lookup_key');
/**
 * The key of an installation first started with a master key, before the lookup key was stored: its
 * addresses were claimed under this one, so it is the one stored (wrapped) for it.
 */
const derivedFrom = (masterKey: Uint8Array) => Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'crm email lookup v1', LOOKUP_KEY_BYTES));

/**
 * One HMAC key per installation, stored beside the index: wrapped by the master key when one is
 * configured, so that a copy of the database cannot test guessed addresses against the index, and
 * the same key under every master key (a rewrap rewraps it), so that the addresses claimed stay found.
 * Stored bare by an installation without a master key, and kept bare until a rewrap wraps it.
 */
async function lookupKey(db: Kysely<unknown>, schema: string, masterKey: Uint8Array | undefined): Promise<Buffer> {
  const fresh = masterKey ? wrapWithMasterKey(masterKey, LOOKUP_KEY_LABEL, derivedFrom(masterKey)) : randomBytes(LOOKUP_KEY_BYTES);
  await sql`INSERT INTO ${lookupKeyTable(schema)} (id, hmac_key) SELECT 1, ${fresh} WHERE ${masterKeyStillCurrent(schema, masterKey)}
    ON CONFLICT (id) DO NOTHING`.execute(db);
  const { rows } = await sql<{ hmac_key: Buffer }>`SELECT hmac_key FROM ${lookupKeyTable(schema)} WHERE id = 1`.execute(db);
  const stored = rows[0] && Buffer.from(rows[0].hmac_key);
  if (!stored) throw masterKeyReplaced('the email lookup key');
  return openLookupKey(masterKey, stored);
}

/** The stored key, unwrapped when it is wrapped (a bare one is 32 bytes). */
const openLookupKey = (masterKey: Uint8Array | undefined, stored: Buffer): Buffer => {
  if (stored.length === LOOKUP_KEY_BYTES) return stored;
  if (!masterKey)
    throw new MasterKeyMismatch('The email lookup key is wrapped with a master key, but none is configured: set CRM_MASTER_KEY or CRM_MASTER_KEY_FILE.');
  try {
    return unwrapWithMasterKey(masterKey, LOOKUP_KEY_LABEL, stored);
  } catch {
    throw new MasterKeyMismatch(
      'The configured master key (CRM_MASTER_KEY / CRM_MASTER_KEY_FILE) does not unwrap the stored email lookup key: it is not the key it was wrapped with.',
    );
  }
};

/**
 * Rewraps the lookup key under `to`. An installation started with a master key before the key was
 * stored has none yet: its key (derived from the current master key) is stored, so that its claims
 * stay found under the next master key.
 */
export const rewrapEmailLookupKey: MasterKeyPart = async (trx, { schema, from, to }) => {
  const { rows } = await sql<{ hmac_key: Buffer }>`SELECT hmac_key FROM ${lookupKeyTable(schema)} WHERE id = 1 FOR UPDATE`.execute(trx);
  const stored = rows[0] && Buffer.from(rows[0].hmac_key);
  const key = stored ? openLookupKey(from, stored) : from ? derivedFrom(from) : randomBytes(LOOKUP_KEY_BYTES);
  await sql`INSERT INTO ${lookupKeyTable(schema)} (id, hmac_key) VALUES (1, ${wrapWithMasterKey(to, LOOKUP_KEY_LABEL, key)})
    ON CONFLICT (id) DO UPDATE SET hmac_key = excluded.hmac_key`.execute(trx);
  return { name: 'email lookup key', count: 1 };
};
