import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createIdempotencyGuard } from '../../api/idempotency.ts';
import { ROLES } from '../../domain/user/roles.ts';
import { EventStoreError, StoreDoesNotFitServer, StoreFromNewerVersion } from '../../eventstore/errors.ts';
import { connectPostgres, openPglite } from '../../eventstore/postgres/database.ts';
import { migrateEventStore, quoteIdentifier, streamHeadsJoin } from '../../eventstore/postgres/migrations.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { testSchemas } from '../support/postgres.ts';
import { newEvent } from './contract.ts';

/**
 * The event store's tables as an operator upgrades them: a schema made by an older version is
 * brought up to date in place with its events kept, several processes may start at once, and a
 * migration that cannot run says which one and where.
 */

const schemas = testSchemas('es_pg_migrate');
const database = connectPostgres(schemas.url, { max: 6 });
let created = 0;
const nextSchema = (suffix = ''): string => `${schemas.events}_${(created += 1)}${suffix}`;

afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

const applied = async (schema: string): Promise<string[]> => {
  const { rows } = await sql<{ name: string }>`SELECT name FROM ${sql.id(schema, 'eventstore_migration')} ORDER BY name`.execute(database.db);
  return rows.map((row) => row.name);
};

const ALL = [
  '0001_events_streams_append',
  '0002_append_function',
  '0003_append_custom_plans',
  '0004_append_streams',
  '0005_append_streams_json_input',
  '0006_append_streams_set_based_locks',
  '0007_append_streams_heads_by_index',
  '0008_bulk_import_probes',
  '0009_append_streams_generic_plans',
  '0010_append_events_generic_plans',
  '0011_stream_snapshots',
  '0012_idempotency_keys',
  '0013_api_keys',
  '0014_server_secrets',
  '0015_customer_keys',
  '0016_master_key',
  '0017_email_indexes',
  '0018_integration_tables',
  '0019_event_chain_seals',
  '0020_campaign_cost_corrections',
  '0021_amqp_publisher_kind',
];

/** What every engine keeps in SQL beside its events (with EventStoreDB, these alone run). */
const BESIDE_EVENTS = ALL.filter((name) => name >= '0012' && name !== '0019_event_chain_seals');

/**
 * Takes a schema back to what the first version left: the tables without `streams.last_position`,
 * a set-returning `append_events`, no `append_streams`, and only the first migration recorded.
 */
const backToFirstVersion = async (schema: string): Promise<void> => {
  const s = sql.id(schema);
  await sql`DROP FUNCTION ${s}.append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])`.execute(database.db);
  await sql`DROP FUNCTION ${s}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb, jsonb)`.execute(database.db);
  await sql`ALTER TABLE ${s}.streams DROP COLUMN last_position`.execute(database.db);
  await sql`DROP TABLE ${s}.stream_snapshots`.execute(database.db);
  await sql`CREATE FUNCTION ${s}.append_events(text, bigint, uuid[], text[], jsonb[], jsonb[]) RETURNS SETOF bigint
    LANGUAGE sql AS 'SELECT 1::bigint'`.execute(database.db);
  await sql`DELETE FROM ${s}.eventstore_migration WHERE name <> '0001_events_streams_append'`.execute(database.db);
};

const settings = async (schema: string, name: string): Promise<string[][]> => {
  const { rows } = await sql<{ config: string[] | null }>`SELECT p.proconfig AS config FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = ${schema} AND p.proname = ${name}`.execute(database.db);
  return rows.map((row) => row.config ?? []);
};

/** The store opened by two processes at once (two handles, each opening the store as a process starting does). */
const openedByTwoAtOnce = async (schema: string): Promise<void> => {
  const other = connectPostgres(schemas.url, { max: 2 });
  try {
    const stores = await Promise.all([database, other].map((handle) => createPostgresEventStore(handle, { schema })));
    for (const store of stores) await store.close();
  } finally {
    await other.close();
  }
};
describe('event store migrations', () => {
  it('a new schema gets every migration once, recorded with its time; a second start changes nothing', async () => {
    const schema = nextSchema();
    const before = Date.now();
    const store = await createPostgresEventStore(database, { schema });
    expect(await applied(schema)).toEqual(ALL);
    const { rows } = await sql<{ timestamp: string }>`SELECT timestamp FROM ${sql.id(schema, 'eventstore_migration')}`.execute(database.db);
    for (const row of rows) expect(Date.parse(row.timestamp)).toBeGreaterThanOrEqual(before - 1_000);
    // Both append functions probe by key and keep their cached plans (0009, 0010).
    expect(await settings(schema, 'append_events')).toEqual([[]]);
    expect(await settings(schema, 'append_streams')).toEqual([[]]);
    await store.appendToStream('customer-1', [newEvent()]);
    await migrateEventStore(database.db, schema);
    const again = await createPostgresEventStore(database, { schema });
    expect(await applied(schema)).toEqual(ALL);
    expect(await again.readStream('customer-1')).toHaveLength(1);
    await store.close();
    await again.close();
  });

  it('several processes starting on a new schema at once: each finds the tables, the work is done once', async () => {
    const schema = nextSchema();
    const others = [connectPostgres(schemas.url, { max: 2 }), connectPostgres(schemas.url, { max: 2 })];
    try {
      const stores = await Promise.all([database, ...others].map((handle) => createPostgresEventStore(handle, { schema })));
      expect(await applied(schema)).toEqual(ALL);
      const results = await Promise.all(stores.map((store, i) => store.appendToStream(`customer-${i}`, [newEvent()])));
      expect(results.map((result) => result.nextExpectedRevision)).toEqual([0, 0, 0]);
      for (const store of stores) await store.close();
    } finally {
      for (const handle of others) await handle.close();
    }
  });

  it('a schema made by the first version is upgraded in place: events kept, single and multi-stream appends work', async () => {
    const schema = nextSchema();
    const old = await createPostgresEventStore(database, { schema });
    const first = await old.appendToStream('customer-1', [newEvent('Registered'), newEvent('Renamed')]);
    await old.close();
    await backToFirstVersion(schema);

    const store = await createPostgresEventStore(database, { schema });
    expect(await applied(schema)).toEqual(ALL);
    expect(await settings(schema, 'append_events')).toEqual([[]]);
    expect(await settings(schema, 'append_streams')).toEqual([[]]);
    const next = await store.appendToStream('customer-1', [newEvent('Moved')], { expectedRevision: 1 });
    expect(next.nextExpectedRevision).toBe(2);
    expect(next.position).toBeGreaterThan(first.position);
    const batch = await store.appendToStreams([
      { stream: 'customer-1', events: [newEvent('Tagged')], expectedRevision: 2 },
      { stream: 'customer-2', events: [newEvent('Registered'), newEvent('Tagged')], expectedRevision: 'no_stream' },
    ]);
    expect(batch.map((result) => result.nextExpectedRevision)).toEqual([3, 1]);
    expect((await store.readStream('customer-1')).map((event) => event.type)).toEqual(['Registered', 'Renamed', 'Moved', 'Tagged']);
    await store.close();
  });

  it('a schema at the multi-stream append of arrays (0004) gets the JSON inputs and the set-based locks', async () => {
    const schema = nextSchema();
    const old = await createPostgresEventStore(database, { schema });
    await old.close();
    const s = sql.id(schema);
    // What 0004 left: append_streams taking jsonb[] (its body does not matter here: 0005 replaces it).
    await sql`DROP FUNCTION ${s}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb, jsonb)`.execute(database.db);
    await sql`CREATE FUNCTION ${s}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb[], jsonb[]) RETURNS SETOF bigint
      LANGUAGE sql AS 'SELECT 1::bigint'`.execute(database.db);
    await sql`DELETE FROM ${s}.eventstore_migration WHERE name > '0005'`.execute(database.db);

    const store = await createPostgresEventStore(database, { schema });
    expect(await applied(schema)).toEqual(ALL);
    const { rows } = await sql<{ args: string }>`SELECT pg_get_function_identity_arguments(p.oid) AS args FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ${schema} AND p.proname = 'append_streams'`.execute(database.db);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.args).toMatch(/p_data_list jsonb, p_metadata_list jsonb$/);
    expect(await settings(schema, 'append_streams')).toEqual([[]]);
    const results = await store.appendToStreams([
      { stream: 'customer-1', events: [newEvent()] },
      { stream: 'customer-2', events: [newEvent()] },
    ]);
    expect(results.map((result) => result.nextExpectedRevision)).toEqual([0, 0]);
    await store.close();
  });

  it('the heads of a batch of streams are read by index probes, also on a table without statistics (a bulk import)', async () => {
    const schema = nextSchema();
    const store = await createPostgresEventStore(database, { schema });
    const s = sql.id(schema);
    await sql`INSERT INTO ${s}.streams (stream, revision) SELECT 'customer-' || g, 0 FROM generate_series(1, 20000) g`.execute(database.db);
    const names = Array.from({ length: 1_000 }, (_, i) => `customer-${i * 7 + 1}`);
    const plan = async (from: string): Promise<string> => {
      const { rows } = await sql<{ 'QUERY PLAN': unknown }>`EXPLAIN (FORMAT JSON) SELECT st.revision FROM ${sql.raw(from)}`.execute(database.db);
      return JSON.stringify(rows[0]!['QUERY PLAN']);
    };
    const probes = await plan(streamHeadsJoin(quoteIdentifier(schema), `'{${names.join(',')}}'::text[]`));
    expect(probes).toContain('"Node Type":"Index Scan"');
    expect(probes).not.toContain('Seq Scan');
    // The lateral join of 0007 alone is pulled up into a plain join and hashed over the whole table.
    const pulledUp = await plan(
      `unnest('{${names.join(',')}}'::text[]) WITH ORDINALITY AS i(name, ord) LEFT JOIN LATERAL (SELECT h.revision FROM ${quoteIdentifier(schema)}.streams h WHERE h.stream = i.name) st ON true`,
    );
    expect(pulledUp).toContain('Seq Scan');
    await store.close();
  });

  it('both append functions keep generic plans that probe by key: made on empty tables, none of them scans the events or the streams as they grow (0009, 0010)', async () => {
    const schema = nextSchema();
    const store = await createPostgresEventStore(database, { schema });
    const client = new pg.Client({ connectionString: schemas.url });
    await client.connect();
    const plans: string[] = [];
    client.on('notice', (notice) => {
      if (/plan:/.test(notice.message ?? '')) plans.push(notice.message ?? '');
    });
    try {
      // Every statement's plan, nested ones included, comes back as a notice; every plan is generic,
      // made at the statement's first run and kept by the connection.
      for (const setting of [
        "LOAD 'auto_explain'",
        'SET auto_explain.log_min_duration = 0',
        'SET auto_explain.log_nested_statements = on',
        'SET auto_explain.log_level = notice',
        'SET client_min_messages = notice',
        'SET plan_cache_mode = force_generic_plan',
      ]) {
        await client.query(setting);
      }
      const s = quoteIdentifier(schema);
      const many = (streams: string[], expected: number[], ids: string[]) =>
        client.query<{ outcome: string; revision: string }>(
          `SELECT outcome, revision FROM ${s}.append_streams($1::text[], $2::bigint[], $3::int[], $4::uuid[], $5::text[], $6::jsonb, $7::jsonb)`,
          [
            streams,
            expected,
            streams.map(() => 1),
            ids,
            streams.map(() => 'Moved'),
            JSON.stringify(streams.map(() => ({ city: 'Lyon' }))),
            JSON.stringify(streams.map(() => ({}))),
          ],
        );
      const one = (stream: string, expected: number, ids: string[]) =>
        client.query<{ outcome: string; revision: string }>(
          `SELECT outcome, revision FROM ${s}.append_events($1, $2::bigint, $3::uuid[], $4::text[], $5::text[]::jsonb[], $6::text[]::jsonb[])`,
          [stream, expected, ids, ids.map(() => 'Moved'), ids.map(() => JSON.stringify({ city: 'Lyon' })), ids.map(() => '{}')],
        );
      // The plans are made while the store is empty, a new installation's first appends: both paths
      // of each function (new events, then the same again), so that every statement has its plan.
      const first = [randomUUID()];
      await many(['customer-first'], [-1], first);
      await many(['customer-first'], [-1], first);
      const second = [randomUUID(), randomUUID()];
      await one('customer-second', -1, second);
      await one('customer-second', -1, second);
      // The store grows (never analysed: autovacuum is off on some machines).
      for (let batch = 0; batch < 10; batch++) {
        await store.appendToStreams(Array.from({ length: 500 }, (_, i) => ({ stream: `customer-${batch}-${i}`, events: [newEvent(), newEvent('Renamed')] })));
      }
      const plansOf = async (run: () => Promise<void>): Promise<string> => {
        plans.length = 0;
        await run();
        return plans.join('\n');
      };
      const streams = ['customer-3-7', 'customer-9-499', `customer-new-${randomUUID()}`];
      const ids = streams.map(() => randomUUID());
      const multiPlans = await plansOf(async () => {
        const appended = await many(streams, [1, -2, -1], ids);
        expect(appended.rows.map((row) => [row.outcome, Number(row.revision)])).toEqual([
          ['appended', 2],
          ['appended', 2],
          ['appended', 0],
        ]);
        const repeated = await many(streams, [1, -2, -1], ids);
        expect(repeated.rows.map((row) => row.outcome)).toEqual(['duplicate', 'duplicate', 'duplicate']);
      });
      const single = [randomUUID(), randomUUID()];
      const singlePlans = await plansOf(async () => {
        expect((await one('customer-5-5', 1, single)).rows.map((row) => [row.outcome, Number(row.revision)])).toEqual([['appended', 3]]);
        expect((await one('customer-5-5', 1, single)).rows.map((row) => row.outcome)).toEqual(['duplicate']);
      });
      for (const nested of [multiPlans, singlePlans]) {
        expect(nested).toMatch(/Index (Only )?Scan using events_event_id_unique/);
        expect(nested).toMatch(/Index (Only )?Scan using streams_pkey/);
        expect(nested).not.toMatch(/Seq Scan on (events|streams)\b/);
        expect(nested).not.toContain('Hash Join');
      }
    } finally {
      await client.end();
      await store.close();
    }
  });

  it('a migration that cannot run names itself and the schema, and records nothing', async () => {
    const schema = nextSchema();
    const old = await createPostgresEventStore(database, { schema });
    await old.close();
    // 0005 replaces a function this schema does not have.
    await sql`DELETE FROM ${sql.id(schema, 'eventstore_migration')} WHERE name > '0005'`.execute(database.db);
    const error = await createPostgresEventStore(database, { schema }).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(EventStoreError);
    expect((error as Error).message).toMatch(
      new RegExp(`^Event store migration 0005_append_streams_json_input failed in schema ${schema}: function .*append_streams.* does not exist$`),
    );
    // The database's own error stays attached for the operator's logs (42883: undefined function).
    expect((error as Error).cause).toMatchObject({ code: '42883' });
    expect(await applied(schema)).toEqual(ALL.slice(0, 4));
  });

  it('schema names with quotes are quoted in every statement, and stores of two such schemas keep their streams apart', async () => {
    const quoted = nextSchema(`_o"it's`);
    const other = nextSchema(`_o"it`);
    const store = await createPostgresEventStore(database, { schema: quoted });
    const neighbour = await createPostgresEventStore(database, { schema: other });
    expect(await applied(quoted)).toEqual(ALL);
    await store.appendToStream('customer-1', [newEvent('Quoted')]);
    await store.appendToStreams([
      { stream: 'customer-1', events: [newEvent('Again')], expectedRevision: 0 },
      { stream: 'customer-2', events: [newEvent('Other')] },
    ]);
    await neighbour.appendToStream('customer-1', [newEvent('Neighbour')], { expectedRevision: 'no_stream' });
    expect((await store.readStream('customer-1')).map((event) => event.type)).toEqual(['Quoted', 'Again']);
    expect((await neighbour.readStream('customer-1')).map((event) => event.type)).toEqual(['Neighbour']);
    await store.close();
    await neighbour.close();
    // dropSchemas (test/support) names schemas unquoted.
    for (const schema of [quoted, other]) await sql`DROP SCHEMA ${sql.id(schema)} CASCADE`.execute(database.db);
  });
});

describe('a store that does not fit the database it is in (a restore gone wrong)', () => {
  it('refuses to open, writing nothing, when its positions are ahead of the server: a pg_dump restored onto another server', async () => {
    const schema = nextSchema('_restored');
    const store = await createPostgresEventStore(database, { schema });
    await store.appendToStream(`customer-${randomUUID()}`, [newEvent()]);
    await store.close();
    // What another server's lower transaction counter looks like to the stored positions.
    await sql`UPDATE ${sql.id(schema, 'events')} SET position = position + (1::bigint << 52)`.execute(database.db);
    const before = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(schema, 'events')}`.execute(database.db);
    const refused = await createPostgresEventStore(database, { schema }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(StoreDoesNotFitServer);
    expect((refused as Error).message).toMatch(
      /come from transaction ids this PostgreSQL server has not reached .* pg_resetwal -e \d+ -x \d+ <data directory>/,
    );
    expect((await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(schema, 'events')}`.execute(database.db)).rows).toEqual(before.rows);
  });

  it('refuses to open a schema renamed after a restore, naming the name its functions write to', async () => {
    const schema = nextSchema('_before');
    const renamed = nextSchema('_after');
    const store = await createPostgresEventStore(database, { schema });
    await store.appendToStream(`customer-${randomUUID()}`, [newEvent()]);
    await store.close();
    await sql`ALTER SCHEMA ${sql.id(schema)} RENAME TO ${sql.id(renamed)}`.execute(database.db);
    const refused = await createPostgresEventStore(database, { schema: renamed }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(StoreDoesNotFitServer);
    expect((refused as Error).message).toContain(`write to another schema ("${schema}"): the schemas were renamed after a restore`);
  });
});

describe('the idempotency keys table, made by the API at its start before it was a store migration', () => {
  const table = (schema: string) => sql.id(schema, 'idempotency_keys');
  const primaryKey = async (schema: string): Promise<string | undefined> => {
    const { rows } = await sql<{ columns: string }>`
      SELECT string_agg(a.attname, ',' ORDER BY array_position(c.conkey, a.attnum)) AS columns
      FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
      WHERE c.conrelid = ${`${quoteIdentifier(schema)}.idempotency_keys`}::regclass AND c.contype = 'p'`.execute(database.db);
    return rows[0]?.columns;
  };

  it('as made since 2026-12-03 (keyed by API key): kept as it is, rows and all, and recorded', async () => {
    const schema = nextSchema();
    await (await createPostgresEventStore(database, { schema })).close();
    await sql`INSERT INTO ${table(schema)} (api_key_id, key, fingerprint, route) VALUES ('api-key-a', 'k-1', 'f', 'POST /customers')`.execute(database.db);
    await sql`DELETE FROM ${sql.id(schema, 'eventstore_migration')} WHERE name = '0012_idempotency_keys'`.execute(database.db);
    const store = await createPostgresEventStore(database, { schema });
    expect(await applied(schema)).toEqual(ALL);
    const { rows } = await sql`SELECT api_key_id, key FROM ${table(schema)}`.execute(database.db);
    expect(rows).toEqual([{ api_key_id: 'api-key-a', key: 'k-1' }]);
    expect(await primaryKey(schema)).toBe('api_key_id,key');
    await store.close();
  });

  it('as made before (keyed by the key alone): gets the API key column and key, its rows unscoped ones; processes starting together upgrade it once', async () => {
    const schema = nextSchema();
    await (await createPostgresEventStore(database, { schema })).close();
    await sql`DROP TABLE ${table(schema)}`.execute(database.db);
    await sql`
      CREATE TABLE ${table(schema)} (
        key text PRIMARY KEY,
        fingerprint text NOT NULL,
        route text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`.execute(database.db);
    await sql`INSERT INTO ${table(schema)} (key, fingerprint, route) VALUES ('k-1', 'f', 'POST /customers')`.execute(database.db);
    await sql`DELETE FROM ${sql.id(schema, 'eventstore_migration')} WHERE name = '0012_idempotency_keys'`.execute(database.db);
    await openedByTwoAtOnce(schema);
    expect(await applied(schema)).toEqual(ALL);
    const { rows } = await sql`SELECT api_key_id, key FROM ${table(schema)}`.execute(database.db);
    expect(rows).toEqual([{ api_key_id: '', key: 'k-1' }]);
    expect(await primaryKey(schema)).toBe('api_key_id,key');
    // Two API keys may now hold the same key.
    const guard = createIdempotencyGuard(database.db, { schema });
    const request = { method: 'POST', route: '/customers', resourceId: null, body: { name: 'x' } };
    expect(await guard.claim('api-key-a', 'k-2', request)).toBe('api-key-a:k-2');
    expect(await guard.claim('api-key-b', 'k-2', { ...request, body: { name: 'y' } })).toBe('api-key-b:k-2');
  });

  it('with the events in EventStoreDB: only what is kept beside them is made, and recorded', async () => {
    const schema = nextSchema();
    await migrateEventStore(database.db, schema, { engineTables: false });
    expect(await applied(schema)).toEqual(BESIDE_EVENTS);
    const { rows } = await sql<{ events: string | null; keys: string | null; seals: string | null }>`
      SELECT to_regclass(${`${quoteIdentifier(schema)}.events`})::text AS events, to_regclass(${`${quoteIdentifier(schema)}.idempotency_keys`})::text AS keys,
             to_regclass(${`${quoteIdentifier(schema)}.event_chain_seals`})::text AS seals`.execute(database.db);
    expect(rows[0]).toEqual({ events: null, keys: expect.stringMatching(/\.idempotency_keys$/), seals: null });
    expect(await besideTables(schema)).toEqual(BESIDE_TABLES.filter((table) => table !== 'event_chain_seals'));
  });
});

/** The tables the modules made at start before they were store migrations (0013-0019), by name. */
const BESIDE_TABLES = [
  'api_keys',
  'customer_email_index',
  'customer_keys',
  'email_lookup_key',
  'event_chain_seals',
  'integration_publishers',
  'master_key',
  'server_secrets',
  'user_email_index',
  'webhook_deliveries',
  'webhook_subscriptions',
];

const besideTables = async (schema: string, db = database.db): Promise<string[]> => {
  const { rows } = await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables
    WHERE schemaname = ${schema} AND tablename = ANY (${BESIDE_TABLES}) ORDER BY tablename`.execute(db);
  return rows.map((row) => row.name);
};

/** Columns, indexes and constraints of those tables, with the schema's name taken out of their texts. */
const shapeOf = async (schema: string, db = database.db) => {
  const bare = (text: string | null) => text?.replaceAll(`${schema}.`, '') ?? null;
  const columns = await sql<{
    table_name: string;
    column_name: string;
    ordinal_position: number;
    data_type: string;
    is_nullable: string;
    column_default: string | null;
  }>`
    SELECT table_name, column_name, ordinal_position::int AS ordinal_position, data_type, is_nullable, column_default FROM information_schema.columns
     WHERE table_schema = ${schema} AND table_name = ANY (${BESIDE_TABLES}) ORDER BY table_name, ordinal_position`.execute(db);
  const indexes = await sql<{ tablename: string; indexname: string; indexdef: string }>`
    SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = ${schema} AND tablename = ANY (${BESIDE_TABLES}) ORDER BY tablename, indexname`.execute(
    db,
  );
  const constraints = await sql<{ table_name: string; name: string; definition: string }>`
    SELECT r.relname AS table_name, c.conname AS name, pg_get_constraintdef(c.oid) AS definition
      FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
     WHERE n.nspname = ${schema} AND r.relname = ANY (${BESIDE_TABLES}) ORDER BY 1, 2`.execute(db);
  return {
    columns: columns.rows.map((row) => ({ ...row, column_default: bare(row.column_default) })),
    indexes: indexes.rows.map((row) => ({ ...row, indexdef: bare(row.indexdef) })),
    constraints: constraints.rows,
  };
};

/**
 * The start-time DDL of the modules before 0013-0019 (api/auth/api-keys.ts, api/auth/server-secret.ts,
 * eventstore/personal-data.ts, master-key.ts, email-index.ts, integration/tables.ts,
 * audit/sql/chain.ts), as they ran it: `earliest`, the tables as first made; `later`, the columns and
 * index added since with `... IF NOT EXISTS` (a start of the last of those versions ran both).
 */
const startTimeDdl = (schema: string) => {
  const s = quoteIdentifier(schema);
  const earliest = [
    `CREATE TABLE IF NOT EXISTS ${s}.api_keys (id uuid PRIMARY KEY, name text NOT NULL,
      role text NOT NULL CHECK (role IN (${ROLES.map((role) => `'${role}'`).join(', ')})), hash text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(), revoked_at timestamptz, last_used_at timestamptz)`,
    `CREATE TABLE IF NOT EXISTS ${s}.server_secrets (name text PRIMARY KEY, secret text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE TABLE IF NOT EXISTS ${s}.customer_keys (customer_id text PRIMARY KEY, data_key bytea, created_at timestamptz NOT NULL DEFAULT now(),
      forgotten_at timestamptz, CHECK ((data_key IS NULL) = (forgotten_at IS NOT NULL)))`,
    `CREATE TABLE IF NOT EXISTS ${s}.master_key (one boolean PRIMARY KEY DEFAULT true CHECK (one), fingerprint text NOT NULL)`,
    ...['customer', 'user'].flatMap((holder) => [
      `CREATE TABLE IF NOT EXISTS ${s}.${holder}_email_index (email_hmac bytea PRIMARY KEY, customer_id text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now())`,
      `CREATE INDEX IF NOT EXISTS ${holder}_email_index_customer_idx ON ${s}.${holder}_email_index (customer_id)`,
    ]),
    `CREATE TABLE IF NOT EXISTS ${s}.email_lookup_key (id integer PRIMARY KEY CHECK (id = 1), hmac_key bytea NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ${s}.webhook_subscriptions (id uuid PRIMARY KEY, url text NOT NULL, events text[] NOT NULL, description text,
      role text NOT NULL, secret text NOT NULL, enabled boolean NOT NULL DEFAULT true, generation integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE TABLE IF NOT EXISTS ${s}.integration_publishers (name text PRIMARY KEY, kind text NOT NULL CHECK (kind IN ('webhook', 'nats')),
      position bigint NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'failing', 'disabled')),
      delivered bigint NOT NULL DEFAULT 0, failures bigint NOT NULL DEFAULT 0, last_error text, last_status integer,
      last_latency_ms double precision, next_retry_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE TABLE IF NOT EXISTS ${s}.webhook_deliveries (id bigserial PRIMARY KEY, subscription_id uuid NOT NULL, event_id uuid NOT NULL,
      position bigint NOT NULL, attempt integer NOT NULL, status_code integer, latency_ms double precision NOT NULL, error text,
      next_retry_at timestamptz, at timestamptz NOT NULL DEFAULT now())`,
    `CREATE INDEX IF NOT EXISTS webhook_deliveries_by_subscription ON ${s}.webhook_deliveries (subscription_id, id DESC)`,
    `CREATE TABLE IF NOT EXISTS ${s}.event_chain_seals (position bigint PRIMARY KEY, global_hash bytea NOT NULL, event_hash bytea NOT NULL,
      stream text NOT NULL, revision bigint NOT NULL, sealed_at timestamptz NOT NULL DEFAULT now())`,
  ];
  const later = [
    `ALTER TABLE ${s}.api_keys ADD COLUMN IF NOT EXISTS user_id uuid, ADD COLUMN IF NOT EXISTS created_by text, ADD COLUMN IF NOT EXISTS revoked_by text`,
    `CREATE INDEX IF NOT EXISTS api_keys_user_idx ON ${s}.api_keys (user_id) WHERE user_id IS NOT NULL`,
    `ALTER TABLE ${s}.webhook_subscriptions ADD COLUMN IF NOT EXISTS previous_secret text,
      ADD COLUMN IF NOT EXISTS previous_secret_expires_at timestamptz, ADD COLUMN IF NOT EXISTS url_password text`,
    `ALTER TABLE ${s}.integration_publishers ADD COLUMN IF NOT EXISTS advanced_at timestamptz NOT NULL DEFAULT now()`,
  ];
  return { earliest, later };
};

/** A shape as it was before 0020 let a publisher's kind be `amqp` (the modules' start-time tables took webhook and nats). */
const before0020 = (shape: Awaited<ReturnType<typeof shapeOf>>) => ({
  ...shape,
  constraints: shape.constraints.map((c) =>
    c.name === 'integration_publishers_kind_check' ? { ...c, definition: c.definition.replace(", 'amqp'::text", '') } : c,
  ),
});

/** A store of a version before 0013-0019: those tables dropped and their migrations unrecorded, then `ddl` run as its start did. */
const backToStartTimeTables = async (schema: string, ddl: readonly string[]): Promise<void> => {
  for (const table of BESIDE_TABLES) await sql`DROP TABLE ${sql.id(schema, table)}`.execute(database.db);
  await sql`DELETE FROM ${sql.id(schema, 'eventstore_migration')} WHERE name > '0012'`.execute(database.db);
  for (const statement of ddl) await sql.raw(statement).execute(database.db);
};

describe('the tables beside the events, made by their modules at start before they were store migrations', () => {
  it('a new store gets the shape the modules gave them (columns, indexes, constraints), and an existing one of that shape is kept and recorded', async () => {
    const fresh = nextSchema();
    await (await createPostgresEventStore(database, { schema: fresh })).close();
    expect(await besideTables(fresh)).toEqual(BESIDE_TABLES);
    const expected = await shapeOf(fresh);

    const schema = nextSchema();
    await (await createPostgresEventStore(database, { schema })).close();
    const { earliest, later } = startTimeDdl(schema);
    await backToStartTimeTables(schema, [...earliest, ...later]);
    expect(await shapeOf(schema)).toEqual(before0020(expected));
    await sql`INSERT INTO ${sql.id(schema, 'server_secrets')} (name, secret) VALUES ('list-cursors', 'c2VjcmV0')`.execute(database.db);
    await (await createPostgresEventStore(database, { schema })).close();
    expect(await applied(schema)).toEqual(ALL);
    expect(await shapeOf(schema)).toEqual(expected);
    const { rows } = await sql`SELECT name, secret FROM ${sql.id(schema, 'server_secrets')}`.execute(database.db);
    expect(rows).toEqual([{ name: 'list-cursors', secret: 'c2VjcmV0' }]);
  });

  it('tables as first made (before their later columns and index) get them, rows and all; processes starting together migrate them once', async () => {
    const fresh = nextSchema();
    await (await createPostgresEventStore(database, { schema: fresh })).close();
    const schema = nextSchema();
    await (await createPostgresEventStore(database, { schema })).close();
    await backToStartTimeTables(schema, startTimeDdl(schema).earliest);
    const subscription = randomUUID();
    await sql`INSERT INTO ${sql.id(schema, 'api_keys')} (id, name, role, hash) VALUES (${randomUUID()}, 'older key', 'admin', 'hash-1')`.execute(database.db);
    await sql`INSERT INTO ${sql.id(schema, 'webhook_subscriptions')} (id, url, events, role, secret)
      VALUES (${subscription}, 'https://example.com/hook', ${['*']}::text[], 'admin', 'whsec_1')`.execute(database.db);
    await sql`INSERT INTO ${sql.id(schema, 'integration_publishers')} (name, kind) VALUES (${`webhook:${subscription}`}, 'webhook')`.execute(database.db);
    await sql`INSERT INTO ${sql.id(schema, 'customer_keys')} (customer_id, data_key) VALUES ('c-1', '\\x00'::bytea)`.execute(database.db);
    await openedByTwoAtOnce(schema);
    expect(await applied(schema)).toEqual(ALL);
    expect(await shapeOf(schema)).toEqual(await shapeOf(fresh));
    const keys = await sql`SELECT name, user_id, created_by, revoked_by FROM ${sql.id(schema, 'api_keys')}`.execute(database.db);
    expect(keys.rows).toEqual([{ name: 'older key', user_id: null, created_by: null, revoked_by: null }]);
    const subscriptions = await sql`SELECT url, url_password, previous_secret FROM ${sql.id(schema, 'webhook_subscriptions')}`.execute(database.db);
    expect(subscriptions.rows).toEqual([{ url: 'https://example.com/hook', url_password: null, previous_secret: null }]);
    const publishers = await sql<{ advanced: boolean }>`SELECT advanced_at IS NOT NULL AS advanced FROM ${sql.id(schema, 'integration_publishers')}`.execute(
      database.db,
    );
    expect(publishers.rows).toEqual([{ advanced: true }]);
    const dataKeys = await sql`SELECT customer_id FROM ${sql.id(schema, 'customer_keys')}`.execute(database.db);
    expect(dataKeys.rows).toEqual([{ customer_id: 'c-1' }]);
  });

  it('in the embedded database: the same tables and shape as on PostgreSQL', async () => {
    const fresh = nextSchema();
    await (await createPostgresEventStore(database, { schema: fresh })).close();
    const embedded = await openPglite();
    try {
      await (await createPostgresEventStore(embedded, { schema: 'crm_events' })).close();
      expect(await besideTables('crm_events', embedded.db)).toEqual(BESIDE_TABLES);
      expect(await shapeOf('crm_events', embedded.db)).toEqual(await shapeOf(fresh));
    } finally {
      await embedded.close();
    }
  }, 60_000);
});

describe('a store migrated by a newer version (a rollback, or an older process started beside newer ones)', () => {
  const NEWER = '0099_from_a_newer_release';

  it('is refused at start, naming the migrations this version does not have and what to do; nothing is written', async () => {
    const schema = nextSchema();
    const store = await createPostgresEventStore(database, { schema });
    await store.appendToStream('customer-1', [newEvent()]);
    await store.close();
    await sql`INSERT INTO ${sql.id(schema, 'eventstore_migration')} (name, timestamp) VALUES (${NEWER}, ${new Date().toISOString()})`.execute(database.db);
    const refused = await createPostgresEventStore(database, { schema }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(StoreFromNewerVersion);
    expect((refused as Error).message).toBe(
      `The event store in schema ${schema} was migrated by a newer version of the CRM than this process (store migrations ${NEWER}, which this version ` +
        'does not have). Nothing was written. Run the newer version here, or stop this process. A rollback past a store migration is not possible: ' +
        'to go back to this version, restore a backup taken before the newer version first started (README: "Upgrading").',
    );
    // A store that also lacks one of this version's migrations: none of them runs.
    await sql`DELETE FROM ${sql.id(schema, 'eventstore_migration')} WHERE name = '0012_idempotency_keys'`.execute(database.db);
    await sql`DROP TABLE ${sql.id(schema, 'idempotency_keys')}`.execute(database.db);
    await expect(createPostgresEventStore(database, { schema })).rejects.toBeInstanceOf(StoreFromNewerVersion);
    // With the events in EventStoreDB, what is kept beside them is refused the same way.
    await expect(migrateEventStore(database.db, schema, { engineTables: false })).rejects.toBeInstanceOf(StoreFromNewerVersion);
    expect(await applied(schema)).toEqual([...ALL.filter((name) => name !== '0012_idempotency_keys'), NEWER]);
    const { rows } = await sql<{ keys: string | null }>`SELECT to_regclass(${`${quoteIdentifier(schema)}.idempotency_keys`})::text AS keys`.execute(
      database.db,
    );
    expect(rows[0]!.keys).toBeNull();
  });
});
