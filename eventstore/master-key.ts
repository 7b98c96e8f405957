import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { MasterKeyMismatch } from './errors.ts';

/**
 * The master key (CRM_MASTER_KEY / CRM_MASTER_KEY_FILE) and what it wraps at rest in the events
 * schema: the customers' data keys, the email lookup key, the webhook signing secrets and the
 * passwords in webhook URLs. Each is wrapped with AES-256-GCM bound to a label naming what it is
 * (`key:<customer id>`, ...), so a wrapped value cannot be moved to stand for another. Values stored
 * before a master key was configured stay bare (and read) until `crm master-key rewrap` wraps them;
 * every part is rewrapped in one transaction.
 */
export const MASTER_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export const wrapWithMasterKey = (master: Uint8Array, label: string, plain: Buffer): Buffer => {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', master, iv);
  cipher.setAAD(Buffer.from(label, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]);
};

/** Throws when the value was wrapped with another key or label (or altered). */
export const unwrapWithMasterKey = (master: Uint8Array, label: string, stored: Buffer): Buffer => {
  const decipher = createDecipheriv('aes-256-gcm', master, stored.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(label, 'utf8'));
  decipher.setAuthTag(stored.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  return Buffer.concat([decipher.update(stored.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
};

/** A secret kept as text (a webhook signing secret or URL password): `mk1:<base64 of iv, tag, ciphertext>` when wrapped. */
const SEALED_TEXT = 'mk1:';

export const isSealedText = (stored: string): boolean => stored.startsWith(SEALED_TEXT);

export const sealText = (master: Uint8Array | undefined, label: string, text: string): string =>
  master ? SEALED_TEXT + wrapWithMasterKey(master, label, Buffer.from(text, 'utf8')).toString('base64') : text;

/** The text `sealText` was given (a bare text as stored); a sealed one needs the master key it was sealed with. */
export const openText = (master: Uint8Array | undefined, label: string, stored: string): string => {
  if (!isSealedText(stored)) return stored;
  if (!master) throw new MasterKeyMismatch(`${label} is sealed with a master key, but none is configured: set CRM_MASTER_KEY or CRM_MASTER_KEY_FILE.`);
  try {
    return unwrapWithMasterKey(master, label, Buffer.from(stored.slice(SEALED_TEXT.length), 'base64')).toString('utf8');
  } catch {
    throw new MasterKeyMismatch(
      `${label} does not open with the configured master key: the key was replaced (crm master-key rewrap) while this process ran, or it is another key. Restart with the current one (CRM_MASTER_KEY / CRM_MASTER_KEY_FILE).`,
    );
  }
};

/**
 * Which master key new values are wrapped with, as a one-way fingerprint (one row). A process started
 * before `crm master-key rewrap` still holds the old key: a value it wrapped after the rewrap could
 * never be unwrapped with the new one (a customer's personal data, a webhook's secret would be lost).
 * So a process with a master key stores a new wrapped value only while the fingerprint names its key
 * (the row is share-locked by the writer and locked for update by the rewrap, so neither slips past
 * the other). Bare values read with any master key, so a process without one is neither guarded nor
 * recorded. The table is the event store's migration `0016_master_key`.
 */
const masterKeyTable = (schema: string) => sql.table(`${schema}.master_key`);
const fingerprintOf = (masterKey: Uint8Array): string => createHmac('sha256', masterKey).update('crm master key fingerprint').digest('hex');

export const recordMasterKey = (schema: string, masterKey: Uint8Array) => sql`
  INSERT INTO ${masterKeyTable(schema)} (fingerprint) VALUES (${fingerprintOf(masterKey)})
  ON CONFLICT (one) DO UPDATE SET fingerprint = excluded.fingerprint`;

/** True while `masterKey` is the current one (always without one); share-locks the row for the writer's transaction. */
export const masterKeyStillCurrent = (schema: string, masterKey: Uint8Array | undefined) =>
  masterKey ? sql<boolean>`EXISTS (SELECT 1 FROM ${masterKeyTable(schema)} WHERE fingerprint = ${fingerprintOf(masterKey)} FOR SHARE)` : sql<boolean>`true`;

export const masterKeyReplaced = (what: string) =>
  new MasterKeyMismatch(
    `The master key was replaced (crm master-key rewrap) while this process ran, so it cannot store ${what}: restart it with the new key (CRM_MASTER_KEY / CRM_MASTER_KEY_FILE).`,
  );

/** Inside a writer's transaction: refuses to store a value wrapped with a master key that is no longer current. */
export async function assertMasterKeyCurrent(trx: QueryExecutorProvider, schema: string, masterKey: Uint8Array | undefined, what: string): Promise<void> {
  if (!masterKey) return;
  const { rows } = await sql<{ current: boolean }>`SELECT ${masterKeyStillCurrent(schema, masterKey)} AS current`.execute(trx);
  if (!rows[0]?.current) throw masterKeyReplaced(what);
}

/** One part of what the master key wraps: rewraps its values (read with `from`, bare ones need none) under `to`. */
export type MasterKeyPart = (
  trx: QueryExecutorProvider,
  keys: { schema: string; from: Uint8Array | undefined; to: Uint8Array },
) => Promise<{ name: string; count: number }>;

/**
 * Rewraps every part under `to`, in one transaction, so a failure changes nothing. The fingerprint
 * is changed first: it waits for values being stored under the old key, and keeps new ones out until
 * this commits.
 */
export async function rewrapMasterKey(
  db: Kysely<unknown>,
  options: { schema: string; from?: Uint8Array; to: Uint8Array },
  parts: readonly MasterKeyPart[],
): Promise<{ name: string; count: number }[]> {
  if (options.to.length !== MASTER_KEY_BYTES) throw new Error(`The new master key must be ${MASTER_KEY_BYTES} bytes, got ${options.to.length}`);
  return db.transaction().execute(async (trx) => {
    await recordMasterKey(options.schema, options.to).execute(trx);
    const counts: { name: string; count: number }[] = [];
    for (const part of parts) counts.push(await part(trx, { schema: options.schema, from: options.from, to: options.to }));
    return counts;
  });
}
