import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { sql, type Generated, type Kysely, type Selectable } from 'kysely';
import { SingleLineText } from '../../domain/shared.ts';
import type { Role } from '../roles.ts';
import { loadUserViewer, serviceViewer, type Viewer } from './viewer.ts';

/**
 * API keys, stored hashed in `api_keys` in the events schema (made by the event store's migration
 * `0013_api_keys`, for every engine). A key is 32 random bytes (base64url) behind a `crm_` prefix;
 * only its sha256 is stored, so a plain hash (no salt, no slow KDF) is enough: the input has 256 bits
 * of entropy and cannot be guessed from the hash.
 */
/**
 * A key's name, as `POST /admin/api-keys` and `crm api-key create` take it: one line, as a command's
 * names are. It is the actor's name on every event the key's commands record (the audit's
 * `actorName`), and is listed by the API, the console and `crm api-key list`.
 */
export const ApiKeyName = SingleLineText.min(1).max(200);

export interface ApiKeyRecord {
  id: string;
  name: string;
  role: Role;
  /** The user the key acts as (with the user's current role and visibility); null for a service key. */
  userId: string | null;
  createdAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
  /**
   * Who created it and who revoked it, as the audit trail names an actor (`api-key:<id>` or a user
   * id) or the CLI (`crm api-key`, `crm serve` on first start, `CRM_ADMIN_KEY`); null for keys older
   * than these columns (2026-12-06) and for a key not revoked. Keys are not events: this is their trail.
   */
  createdBy: string | null;
  revokedBy: string | null;
}

/** A live key as authentication answers it: for a user's key, `role` is the user's role now. */
export interface AuthenticatedKey extends ApiKeyRecord {
  viewer: Viewer;
}

/** The one moment a key's secret exists outside its holder: the answer to its creation. */
export interface CreatedApiKey extends ApiKeyRecord {
  key: string;
}

export interface ApiKeyStore {
  /** With `userId`, `role` is the user's role at creation (stored for the list); requests use the user's current role. */
  /** `id`: the key's id when the caller derives it (api/idempotency.ts `createOnce`); else a new one. */
  create(input: { name: string; role: Role; userId?: string | null; createdBy?: string; id?: string }): Promise<CreatedApiKey>;
  /** Stores a key the caller already holds (the CRM_ADMIN_KEY case); no-op when its hash is known. */
  import(input: { name: string; role: Role; key: string; createdBy?: string }): Promise<ApiKeyRecord>;
  list(): Promise<ApiKeyRecord[]>;
  /** Returns the revoked record, or undefined when there is no such key. Idempotent: the first revocation's time and actor stay. */
  revoke(id: string, revokedBy?: string): Promise<ApiKeyRecord | undefined>;
  /**
   * The live key a bearer token belongs to, or undefined (unknown or revoked). `beforeLookup` runs
   * only when the database is about to be asked (not for a cached answer) and may throw to refuse.
   */
  authenticate(token: string, options?: { beforeLookup?: () => Promise<void> }): Promise<AuthenticatedKey | undefined>;
  hasActiveAdmin(): Promise<boolean>;
  /** Forgets cached lookups, so that a change of users or teams applies to the next request. */
  invalidate(): void;
  /** Taken before an `authenticate`: what its answer was read from. */
  stamp(): KeyStamp;
  /**
   * Whether an answer read at `stamp` may still be trusted: no change dropped the cached lookups
   * since (a revocation, a user's deactivation or role change) and it is younger than the cache's
   * bound (a change made by another process).
   */
  isCurrent(stamp: KeyStamp): boolean;
}

export interface KeyStamp {
  readonly generation: number;
  readonly at: number;
}

export const KEY_PREFIX = 'crm_';
export const generateKey = (): string => `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
export const hashKey = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

/** `api_keys`, for kysely. */
type ApiKeyTables = {
  api_keys: {
    id: string;
    name: string;
    role: Role;
    user_id: string | null;
    /** sha256 of the key, hex. */
    hash: string;
    created_at: Generated<Date>;
    revoked_at: Date | null;
    last_used_at: Date | null;
    created_by: string | null;
    revoked_by: string | null;
  };
};

type Row = Selectable<ApiKeyTables['api_keys']>;

const toRecord = (row: Row): ApiKeyRecord => ({
  id: row.id,
  name: row.name,
  role: row.role,
  userId: row.user_id ?? null,
  createdAt: row.created_at.toISOString(),
  revokedAt: row.revoked_at?.toISOString() ?? null,
  lastUsedAt: row.last_used_at?.toISOString() ?? null,
  createdBy: row.created_by ?? null,
  revokedBy: row.revoked_by ?? null,
});

export interface ApiKeyStoreOptions {
  /** The events schema. */
  schema: string;
  /** How long a looked-up key is trusted without asking the database again; revocations in this process apply at once. */
  cacheMs?: number;
  /** last_used_at is written at most this often per key, so authentication is not a write per request. */
  touchEveryMs?: number;
  clock?: () => number;
  /** The read schema, where `users` and `team_members` resolve a user's key; without it, user keys are refused. */
  readSchema?: string;
}

export function createApiKeyStore(handle: Kysely<unknown>, options: ApiKeyStoreOptions): ApiKeyStore {
  const db = handle.withTables<ApiKeyTables>();
  const { schema } = options;
  const cacheMs = options.cacheMs ?? 5_000;
  const touchEveryMs = options.touchEveryMs ?? 60_000;
  const now = options.clock ?? Date.now;
  const table = () => db.withSchema(schema).selectFrom('api_keys');
  const cache = new Map<string, { record: AuthenticatedKey | undefined; until: number }>();
  /**
   * Moves on each change that drops cached lookups (invalidate, revoke). A lookup that read the key or
   * its user before such a change and ends after it answers its own request but is not cached: else
   * the state from before the change would serve the next requests for up to `cacheMs`.
   */
  let generation = 0;

  /** A service key acts with its own role on everything; a user's key as the user, while the user is active. */
  const resolve = async (record: ApiKeyRecord): Promise<AuthenticatedKey | undefined> => {
    if (record.userId === null) return { ...record, viewer: serviceViewer(record.role) };
    if (options.readSchema === undefined) return undefined;
    const viewer = await loadUserViewer(db, options.readSchema, record.userId);
    return viewer ? { ...record, role: viewer.role, viewer } : undefined;
  };
  const lastTouched = new Map<string, number>();

  const touch = (id: string): void => {
    const at = now();
    if ((lastTouched.get(id) ?? -Infinity) > at - touchEveryMs) return;
    lastTouched.set(id, at);
    // Fire and forget: a lost last_used_at update is not worth failing or slowing a request.
    void db
      .withSchema(schema)
      .updateTable('api_keys')
      .set({ last_used_at: new Date(at) })
      .where('id', '=', id)
      .execute()
      .catch(() => lastTouched.delete(id));
  };

  return {
    async create({ name, role, userId, createdBy, id }) {
      const key = generateKey();
      const row = await db
        .withSchema(schema)
        .insertInto('api_keys')
        .values({ id: id ?? randomUUID(), name, role, hash: hashKey(key), user_id: userId ?? null, created_by: createdBy ?? null })
        .returningAll()
        .executeTakeFirstOrThrow();
      return { ...toRecord(row), key };
    },

    async import({ name, role, key, createdBy }) {
      const hash = hashKey(key);
      await db
        .withSchema(schema)
        .insertInto('api_keys')
        .values({ id: randomUUID(), name, role, hash, created_by: createdBy ?? null })
        .onConflict((oc) => oc.column('hash').doNothing())
        .execute();
      const row = await table().selectAll().where('hash', '=', hash).executeTakeFirstOrThrow();
      return toRecord(row);
    },

    async list() {
      const rows = await table().selectAll().orderBy('created_at').orderBy('id').execute();
      return rows.map(toRecord);
    },

    async revoke(id, revokedBy) {
      const row = await db
        .withSchema(schema)
        .updateTable('api_keys')
        .set({
          revoked_at: sql<Date>`coalesce(revoked_at, now())`,
          // The first revocation's actor, as its time: a second call changes nothing.
          revoked_by: sql<string | null>`CASE WHEN revoked_at IS NULL THEN ${revokedBy ?? null}::text ELSE revoked_by END`,
        })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirst();
      generation += 1;
      if (row) for (const [hash, entry] of cache) if (entry.record?.id === id) cache.delete(hash);
      return row ? toRecord(row) : undefined;
    },

    async authenticate(token, options) {
      // Any string may be a key (CRM_ADMIN_KEY is chosen by the operator); absurd lengths are not looked up.
      if (token.length < 16 || token.length > 200) return undefined;
      const hash = hashKey(token);
      const at = now();
      const cached = cache.get(hash);
      let record: AuthenticatedKey | undefined;
      if (cached && cached.until > at) {
        record = cached.record;
      } else {
        await options?.beforeLookup?.();
        const readAt = generation;
        const row = await table().selectAll().where('hash', '=', hash).executeTakeFirst();
        // The index lookup already matched; the constant-time compare keeps timing independent of the stored value.
        const live = row && timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash)) && row.revoked_at === null ? toRecord(row) : undefined;
        record = live ? await resolve(live) : undefined;
        if (cache.size > 10_000) cache.clear();
        if (generation === readAt) cache.set(hash, { record, until: at + cacheMs });
      }
      if (record) touch(record.id);
      return record;
    },

    async hasActiveAdmin() {
      // A user's key is not counted: its user's role may change or the user be deactivated.
      const row = await table().select('id').where('role', '=', 'admin').where('revoked_at', 'is', null).where('user_id', 'is', null).executeTakeFirst();
      return row !== undefined;
    },

    invalidate() {
      generation += 1;
      cache.clear();
    },

    stamp: () => ({ generation, at: now() }),

    isCurrent: (stamp) => stamp.generation === generation && now() - stamp.at < cacheMs,
  };
}

/**
 * The first admin key, for the composition root. With `adminKey` (CRM_ADMIN_KEY) that key is stored
 * (idempotently) and nothing is returned to print. Without it, a key is generated only when no live
 * admin key exists, and returned so the caller prints it once; later starts return nothing.
 */
export async function ensureAdminKey(
  store: ApiKeyStore,
  options: { adminKey?: string | undefined } = {},
): Promise<{ generatedKey?: string; record?: ApiKeyRecord }> {
  if (options.adminKey) {
    if (options.adminKey.length < 16) throw new Error('CRM_ADMIN_KEY must be at least 16 characters long.');
    const record = await store.import({ name: 'admin (CRM_ADMIN_KEY)', role: 'admin', key: options.adminKey, createdBy: 'CRM_ADMIN_KEY' });
    return { record };
  }
  if (await store.hasActiveAdmin()) return {};
  const created = await store.create({ name: 'admin (generated on first start)', role: 'admin', createdBy: 'crm (first start)' });
  const { key, ...record } = created;
  return { generatedKey: key, record };
}
