import { createHash, createHmac } from 'node:crypto';
import type { Generated, Kysely } from 'kysely';
import { uuidV5 } from '../commands/ids.ts';
import { ProblemError } from './problems.ts';

/**
 * The command layer makes a retried Idempotency-Key append nothing and answer the first result. This
 * adds the other half of the contract: the same key sent with a different request (another route,
 * resource or body) is refused with 422 instead of silently answering the first request's result.
 *
 * Keys belong to the API key that sent them: two clients that happen to choose the same key never
 * meet (neither is refused, nor told what the other did), and the command layer derives the ids of
 * events and created records from the key within its API key (`commandKeyOf`).
 * Fingerprints live in `idempotency_keys` in the events schema (prune by `created_at` if it grows),
 * made by the event store's migrations (eventstore/postgres/migrations.ts, for every engine).
 */
export interface IdempotencyGuard {
  /**
   * Records the request's fingerprint under (API key, key) and answers the key the command layer
   * derives ids from; throws a 422 problem when this API key used `key` for another request.
   */
  claim(apiKeyId: string, key: string, request: IdempotentRequest): Promise<string>;
}

export interface IdempotentRequest {
  method: string;
  route: string;
  resourceId: string | null;
  body: unknown;
}

/** Rows recorded before keys were scoped per API key carry this in `api_key_id`. */
export const UNSCOPED = '';

/** At most as long as the event metadata's `idempotencyKey` (domain/metadata.ts). */
const MAX_COMMAND_KEY = 200;

/**
 * The key the command layer sees: `<api key id>:<client's key>`, readable in the events' metadata.
 * A client's key too long for that (over 163 characters) is written as its SHA-256 instead.
 */
export const commandKeyOf = (apiKeyId: string, key: string): string => {
  const scoped = `${apiKeyId}:${key}`;
  return scoped.length <= MAX_COMMAND_KEY ? scoped : `${apiKeyId}:sha256:${createHash('sha256').update(key, 'utf8').digest('base64url')}`;
};

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

/** `METHOD /route` of a request. */
const routeOf = (request: IdempotentRequest): string => `${request.method} ${request.route}`;

/**
 * HMAC-SHA-256 under the installation's key of the route, resource and body (field order ignored):
 * what makes two requests the same. Unkeyed (without a key, and in rows stored before fingerprints
 * were keyed), a row let anyone holding the table test guessed bodies: a forgotten customer's address
 * or phone number, since the rows outlive the forget.
 */
export const fingerprintOf = (request: IdempotentRequest, key?: Uint8Array): string => {
  const text = canonical([routeOf(request), request.resourceId, request.body ?? null]);
  return (key ? createHmac('sha256', key) : createHash('sha256')).update(text).digest('hex');
};

/** `idempotency_keys`, for kysely. */
type IdempotencyTables = {
  idempotency_keys: {
    /** The API key that sent the key; `UNSCOPED` for rows of versions before keys were scoped. */
    api_key_id: string;
    key: string;
    /** `fingerprintOf` the first request. */
    fingerprint: string;
    /** `METHOD /route`. */
    route: string;
    created_at: Generated<Date>;
  };
};

export function createIdempotencyGuard(
  handle: Kysely<unknown>,
  options: {
    schema: string;
    /** The installation's key for fingerprints (EmailIndex.fingerprintKey); without it, unkeyed. */
    fingerprintKey?: Uint8Array;
  },
): IdempotencyGuard {
  const db = handle.withTables<IdempotencyTables>();
  const { schema } = options;
  const conflict = (route: string) =>
    new ProblemError('idempotency_conflict', `This Idempotency-Key was already used for a different request (${route}); use a new key for a new request.`, {
      errors: [{ field: 'idempotency-key', message: 'already used for a different request' }],
    });
  return {
    async claim(apiKeyId, key, request) {
      const route = routeOf(request);
      const fingerprint = fingerprintOf(request, options.fingerprintKey);
      // A row stored before fingerprints were keyed holds the unkeyed one: a retry of that request is the same.
      const same = (stored: string) => stored === fingerprint || (options.fingerprintKey !== undefined && stored === fingerprintOf(request));
      const rows = await db
        .withSchema(schema)
        .selectFrom('idempotency_keys')
        .select(['api_key_id', 'fingerprint', 'route'])
        .where('key', '=', key)
        .where('api_key_id', 'in', [UNSCOPED, apiKeyId])
        .execute();
      const own = rows.find((r) => r.api_key_id === apiKeyId);
      if (own) {
        if (!same(own.fingerprint)) throw conflict(own.route);
        return commandKeyOf(apiKeyId, key);
      }
      // The retry of a request recorded before keys were scoped: its events derive from the bare key.
      if (rows.some((r) => r.api_key_id === UNSCOPED && same(r.fingerprint))) return key;
      const inserted = await db
        .withSchema(schema)
        .insertInto('idempotency_keys')
        .values({ api_key_id: apiKeyId, key, fingerprint, route })
        .onConflict((oc) => oc.columns(['api_key_id', 'key']).doNothing())
        .returning('key')
        .executeTakeFirst();
      if (!inserted) {
        // The same key sent twice at once: the first insert decides.
        const first = await db
          .withSchema(schema)
          .selectFrom('idempotency_keys')
          .select(['fingerprint', 'route'])
          .where('api_key_id', '=', apiKeyId)
          .where('key', '=', key)
          .executeTakeFirst();
        if (first && !same(first.fingerprint)) throw conflict(first.route);
      }
      return commandKeyOf(apiKeyId, key);
    },
  };
}

/**
 * A creation outside the command layer (an API key, a webhook subscription) under an Idempotency-Key,
 * created at most once. The key is claimed as a command's is (another request under it is a 422) and
 * names the record (`id`, derived from the key), so a retry finds what the first request created. Its
 * secret was shown to the first request alone and is kept only hashed or sealed, never with the key:
 * a retry is a 409 naming the record, to keep (if the first answer arrived) or to delete and create
 * again under a new key. Without the header, `create` runs each time.
 */
export const createOnce = async <T>(
  guard: IdempotencyGuard,
  claim: { apiKeyId: string; key: string | undefined; request: IdempotentRequest },
  record: { what: string; exists: (id: string) => Promise<boolean>; removal: (id: string) => string },
  create: (id: string | undefined) => Promise<T>,
): Promise<T> => {
  if (claim.key === undefined) return create(undefined);
  const scoped = await guard.claim(claim.apiKeyId, claim.key, claim.request);
  const id = uuidV5(`${record.what}\n${scoped}`);
  const createdBefore = () =>
    new ProblemError(
      'invalid_state',
      `This Idempotency-Key already created ${record.what} ${id}; its secret was shown only in that answer. Keep it, or ${record.removal(id)} and create another under a new key.`,
      { details: { id }, errors: [{ field: 'idempotency-key', message: `already created ${record.what} ${id}` }] },
    );
  if (await record.exists(id)) throw createdBefore();
  try {
    return await create(id);
  } catch (error) {
    // The same request twice at once: the other one created it.
    if (await record.exists(id)) throw createdBefore();
    throw error;
  }
};
