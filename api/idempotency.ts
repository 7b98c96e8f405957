import { createHash } from 'node:crypto';
import { sql, type Generated, type Kysely } from 'kysely';
import { ProblemError } from './problems.ts';

/**
 * The command layer makes a retried Idempotency-Key append nothing and answer the first result. This
 * adds the other half of the contract: the same key sent with a different request (another route,
 * resource or body) is refused with 422 instead of silently answering the first request's result.
 * Fingerprints live in `idempotency_keys` in the events schema (prune by `created_at` if it grows).
 */
export interface IdempotencyGuard {
  migrate(): Promise<void>;
  /** Records the request's fingerprint under `key`, or throws a 422 problem when the key was used for another request. */
  check(key: string, request: { method: string; route: string; resourceId: string | null; body: unknown }): Promise<void>;
}

/** JSON with object keys sorted, so the fingerprint does not depend on field order. */
const canonical = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
};

/** `idempotency_keys`, for kysely. */
type IdempotencyTables = {
  idempotency_keys: {
    key: string;
    /** sha256 of the route, resource and body. */
    fingerprint: string;
    /** `METHOD /route`. */
    route: string;
    created_at: Generated<Date>;
  };
};

export function createIdempotencyGuard(handle: Kysely<unknown>, options: { schema: string }): IdempotencyGuard {
  const db = handle.withTables<IdempotencyTables>();
  const { schema } = options;
  return {
    async migrate() {
      await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(db);
      await sql`
        CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'idempotency_keys')} (
          key text PRIMARY KEY,
          fingerprint text NOT NULL,
          route text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )`.execute(db);
    },
    async check(key, request) {
      const route = `${request.method} ${request.route}`;
      const fingerprint = createHash('sha256')
        .update(canonical([route, request.resourceId, request.body ?? null]))
        .digest('hex');
      const inserted = await db
        .withSchema(schema)
        .insertInto('idempotency_keys')
        .values({ key, fingerprint, route })
        .onConflict((oc) => oc.column('key').doNothing())
        .returning('key')
        .executeTakeFirst();
      if (inserted) return;
      const existing = await db.withSchema(schema).selectFrom('idempotency_keys').select(['fingerprint', 'route']).where('key', '=', key).executeTakeFirst();
      if (existing && existing.fingerprint !== fingerprint) {
        throw new ProblemError(
          'idempotency_conflict',
          `This Idempotency-Key was already used for a different request (${existing.route}); use a new key for a new request.`,
          { errors: [{ field: 'idempotency-key', message: 'already used for a different request' }] },
        );
      }
    },
  };
}
