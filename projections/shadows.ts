import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { ensureSchema } from '../shared/sql.ts';
import { CHECKPOINT_TABLE } from './checkpoints.ts';
import { freeLocksPastRetake } from './lock-retake.ts';

/**
 * Shadow schemas: the whole read models a rebuild builds before swapping them in, or a verification
 * replays to compare with the live ones. Each is dropped when its work ends; one whose process was
 * killed (kill -9, OOM, a lost host) is recognised by the lock it no longer holds and dropped by the
 * next process that opens the read models (`dropAbandonedShadows`), so crashes leak no copies.
 */

/**
 * Holds a session advisory lock on a connection of its own (not one the work needs) until the
 * returned function is called. Needed wherever another process may start beside this one.
 */
export type SessionLock = (key: string) => Promise<() => Promise<void>>;

export type ShadowKind = 'rebuild' | 'verify';

/** `<schema, cut to fit>_rb_<8 hex digits>` and `..._verify_<8 hex digits>`: within PostgreSQL's 63 characters. */
const prefixes: Record<ShadowKind, (schema: string) => string> = {
  rebuild: (schema) => `${schema.slice(0, 48)}_rb_`,
  verify: (schema) => `${schema.slice(0, 44)}_verify_`,
};

export const newShadowName = (schema: string, kind: ShadowKind): string => `${prefixes[kind](schema)}${randomBytes(4).toString('hex')}`;

/** Whether `name` reads as a shadow of `schema`'s: such a schema is dropped by the next process that finds nobody holding it. */
export const isShadowOf = (schema: string, name: string): boolean =>
  Object.values(prefixes).some((prefix) => name.startsWith(prefix(schema)) && /^[0-9a-f]{8}$/.test(name.slice(prefix(schema).length)));

/** The lock a shadow's process holds while it works (`SessionLock`): a shadow nobody holds was left by a crash. */
const shadowLockKey = (shadow: string) => `crm-shadow:${shadow}`;
/** Shadows in use in this process (PGlite has one connection: advisory locks cannot tell them apart). */
const ownShadows = new Set<string>();

/**
 * Creates a shadow schema, with the names of the projections a rebuild marks `rebuilding` as its
 * comment, held under `sessionLock` (when given) from before it exists until the returned function
 * drops it.
 */
export async function claimShadow(
  db: Kysely<unknown>,
  shadow: string,
  options: { rebuilding?: readonly string[]; sessionLock?: SessionLock | undefined } = {},
): Promise<() => Promise<void>> {
  ownShadows.add(shadow);
  let release: () => Promise<void> = async () => undefined;
  try {
    if (options.sessionLock) release = await options.sessionLock(shadowLockKey(shadow));
    await ensureSchema(db, shadow);
    await sql`COMMENT ON SCHEMA ${sql.id(shadow)} IS ${sql.lit((options.rebuilding ?? []).join(','))}`.execute(db);
  } catch (error) {
    await release().catch(() => undefined);
    ownShadows.delete(shadow);
    throw error;
  }
  return async () => {
    try {
      await sql`DROP SCHEMA IF EXISTS ${sql.id(shadow)} CASCADE`.execute(db);
    } finally {
      ownShadows.delete(shadow);
      await release();
    }
  };
}

/**
 * Recovers from rebuilds and verifications that died mid-way: drops their shadow schemas (a whole copy
 * of the read models each) and returns the projections a dead rebuild had marked `rebuilding` to the
 * state they stand in (`failed` when a poison event is recorded, else `running`). Shadows in use (locked
 * through a `SessionLock` by their process, or claimed in this one) and the projections they name are
 * left alone. `pool`: other processes may hold shadows (a PostgreSQL server); without it (PGlite, one
 * process per data folder) only this one can.
 */
export async function dropAbandonedShadows(db: Kysely<unknown>, schema: string, options: { pool: boolean }): Promise<string[]> {
  const prefixesHere = Object.values(prefixes).map((prefix) => prefix(schema));
  const { rows } = await sql<{ name: string }>`SELECT nspname AS name FROM pg_namespace
    WHERE EXISTS (SELECT 1 FROM unnest(${prefixesHere}::text[]) AS p(prefix) WHERE left(nspname, length(p.prefix)) = p.prefix)
    ORDER BY nspname`.execute(db);
  const candidates = rows.map(({ name }) => name).filter((name) => isShadowOf(schema, name) && !ownShadows.has(name));
  // On a server, only shadows whose locks stay free past the time a live holder takes a lost lock back.
  const unheld = options.pool ? new Set(await freeLocksPastRetake(db, candidates.map(shadowLockKey))) : undefined;
  const dropped: string[] = [];
  for (const name of candidates) {
    if (unheld && !unheld.has(shadowLockKey(name))) continue;
    const abandoned = options.pool
      ? // Locked and dropped in one transaction: a live process holds its lock from before its schema exists.
        await db.transaction().execute(async (trx) => {
          const { rows: lock } = await sql<{ free: boolean }>`SELECT pg_try_advisory_xact_lock(hashtext(${shadowLockKey(name)})) AS free`.execute(trx);
          if (!lock[0]?.free) return false;
          await sql`DROP SCHEMA IF EXISTS ${sql.id(name)} CASCADE`.execute(trx);
          return true;
        })
      : await sql`DROP SCHEMA IF EXISTS ${sql.id(name)} CASCADE`.execute(db).then(() => true);
    if (abandoned) dropped.push(name);
  }
  // Every rebuild shadow still there belongs to a live rebuild (or one that started meanwhile): its projections stay `rebuilding`.
  const rebuildPrefix = prefixes.rebuild(schema);
  await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} c
    SET state = CASE WHEN c.failed_event_id IS NULL THEN 'running' ELSE 'failed' END, updated_at = now()
    WHERE c.state = 'rebuilding' AND NOT EXISTS (
      SELECT 1 FROM pg_namespace n
      WHERE left(n.nspname, ${rebuildPrefix.length}) = ${rebuildPrefix}
        AND c.name = ANY(string_to_array(obj_description(n.oid, 'pg_namespace'), ',')))`.execute(db);
  return dropped;
}
