import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { EventStoreError } from '../errors.ts';

/**
 * Bits of a global position given to the event's ordinal inside its transaction:
 * position = (transaction id << 20) + ordinal. Position order is then (transaction, insert order),
 * and everything below `xmin << 20` is final. Bound: 2^20 events per transaction and
 * 2^43 (8.8e12) transactions over the cluster's life, ~28 years at a sustained 10k transactions/s.
 */
export const ORDINAL_BITS = 20;

const quote = (identifier: string): string => `"${identifier.replace(/"/g, '""')}"`;
const literal = (text: string): string => `'${text.replace(/'/g, "''")}'`;

const initialSchema = (schema: string): Migration => {
  const s = quote(schema);
  return {
    async up(db: Kysely<any>) {
      // One statement per call: PGlite prepares every query and refuses several commands in one.
      await sql.raw(`
        CREATE TABLE ${s}.streams (
          stream     text PRIMARY KEY,
          -- Revision of the stream's last event; a row exists once the stream has events.
          revision   bigint NOT NULL,
          -- Hash of the last event: the head of the stream's tamper-evidence chain.
          last_hash  bytea,
          -- Position of the last event (guards the order of appends inside callers' transactions).
          last_position bigint
        )`).execute(db);
      await sql.raw(`
        CREATE TABLE ${s}.events (
          position       bigint PRIMARY KEY,
          transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
          stream         text NOT NULL,
          revision       bigint NOT NULL,
          event_id       uuid NOT NULL,
          type           text NOT NULL,
          data           jsonb NOT NULL,
          metadata       jsonb NOT NULL,
          recorded_at    timestamptz NOT NULL,
          hash           bytea NOT NULL,
          CONSTRAINT events_event_id_unique UNIQUE (event_id),
          CONSTRAINT events_stream_revision_unique UNIQUE (stream, revision)
        )`).execute(db);
    },
  };
};

/**
 * One round trip per append: lock the stream, idempotency by event id, expected revision,
 * positions, the hash chain, insert and the stream head. Outcomes are returned, not raised, so a
 * refused append costs no exception handling on either side. The common single-event, new-ids
 * path runs as few statements as possible: it is the hot path of every command.
 */
const appendFunctionSql = (schema: string): string => {
  const s = quote(schema);
  const hashOf = (id: string, rev: string, pos: string, type: string, data: string, metadata: string) =>
    `sha256(coalesce(v_prev, ''::bytea) || sha256(convert_to(
              ${id}::text || '|' || p_stream || '|' || ${rev}::text || '|' || ${pos}::text || '|' ||
              ${type} || '|' || ${data}::text || '|' || ${metadata}::text || '|' || v_micros, 'UTF8')))`;
  return `
    CREATE FUNCTION ${s}.append_events(
      p_stream text,
      p_expected bigint,          -- >= 0 exact, -1 no_stream, -2 any, -3 exists
      p_ids uuid[],
      p_types text[],
      p_data jsonb[],
      p_metadata jsonb[],
      OUT outcome text,           -- appended | duplicate | wrong_revision | idempotency_conflict
      OUT revision bigint,        -- the stream's revision after the append (the actual one on wrong_revision)
      OUT last_position bigint,
      OUT conflict_id uuid
    ) LANGUAGE plpgsql AS $fn$
    DECLARE
      n int := cardinality(p_ids);
      v_current bigint;
      v_prev bytea;
      v_last_position bigint;
      v_found boolean;
      v_existing int;
      v_same int;
      v_rev bigint;
      v_pos bigint;
      v_ordinal int;
      v_base bigint;
      -- Milliseconds, so that a JavaScript Date of the record time round-trips exactly (untilTime).
      v_now timestamptz := date_trunc('milliseconds', now());
      v_micros text := ((extract(epoch from v_now) * 1000000)::bigint)::text;
      v_positions bigint[];
      v_revisions bigint[];
      v_hashes bytea[];
    BEGIN
      -- The stream lock is an advisory lock, not a row lock: taking it assigns no transaction id,
      -- so the id (and thus the position) is taken after the previous append to this stream
      -- committed, and revision order equals position order.
      PERFORM pg_advisory_xact_lock(hashtextextended(${literal(schema + '/')} || p_stream, 0));
      SELECT st.revision, st.last_hash, st.last_position INTO v_current, v_prev, v_last_position
        FROM ${s}.streams st WHERE st.stream = p_stream;
      v_found := FOUND;
      IF NOT v_found THEN
        v_current := -1;
      END IF;

      -- Idempotency, checked under the stream lock so that a concurrent retry sees the first append.
      IF EXISTS (SELECT 1 FROM ${s}.events e WHERE e.event_id = ANY (p_ids)) THEN
        SELECT count(*)::int,
               (count(*) FILTER (WHERE e.stream = p_stream AND e.type = i.type AND e.data = i.data))::int,
               max(e.revision), max(e.position),
               (array_agg(e.event_id ORDER BY i.ord) FILTER (WHERE e.stream <> p_stream OR e.type <> i.type OR e.data <> i.data))[1]
          INTO v_existing, v_same, v_rev, v_pos, conflict_id
          FROM unnest(p_ids, p_types, p_data) WITH ORDINALITY AS i(id, type, data, ord)
          JOIN ${s}.events e ON e.event_id = i.id;
        IF v_existing = n AND v_same = n THEN
          outcome := 'duplicate'; revision := v_rev; last_position := v_pos; conflict_id := NULL;
        ELSE
          outcome := 'idempotency_conflict'; revision := v_current;
          conflict_id := coalesce(conflict_id, (SELECT e.event_id FROM ${s}.events e WHERE e.event_id = ANY (p_ids) LIMIT 1));
        END IF;
        RETURN;
      END IF;

      IF NOT (p_expected = -2
              OR (p_expected = -1 AND v_current = -1)
              OR (p_expected = -3 AND v_current >= 0)
              OR p_expected = v_current) THEN
        outcome := 'wrong_revision'; revision := v_current;
        RETURN;
      END IF;

      -- Ordinal of the next event inside this transaction (several appends may share one).
      v_ordinal := coalesce(nullif(current_setting('crm_eventstore.tx_ordinal', true), ''), '0')::int;
      IF v_ordinal + n > ${2 ** ORDINAL_BITS} THEN
        RAISE EXCEPTION 'too many events in one transaction (limit ${2 ** ORDINAL_BITS})';
      END IF;
      PERFORM set_config('crm_eventstore.tx_ordinal', (v_ordinal + n)::text, true);
      v_base := (pg_current_xact_id()::text::bigint << ${ORDINAL_BITS}) + v_ordinal;
      -- A caller's transaction that wrote before appending got its id before waiting for the
      -- stream lock: its position would sort before the stream's previous event. Refuse; a retry gets a new id.
      IF v_last_position IS NOT NULL AND v_last_position >= v_base THEN
        RAISE EXCEPTION 'append to % would be ordered before the stream''s previous event; retry the transaction', p_stream
          USING ERRCODE = '40001';
      END IF;

      IF n = 1 THEN
        v_rev := v_current + 1;
        v_pos := v_base;
        v_prev := ${hashOf('p_ids[1]', 'v_rev', 'v_pos', 'p_types[1]', 'p_data[1]', 'p_metadata[1]')};
        INSERT INTO ${s}.events (position, stream, revision, event_id, type, data, metadata, recorded_at, hash)
          VALUES (v_pos, p_stream, v_rev, p_ids[1], p_types[1], p_data[1], p_metadata[1], v_now, v_prev);
      ELSE
        v_positions := array_fill(0::bigint, ARRAY[n]);
        v_revisions := array_fill(0::bigint, ARRAY[n]);
        v_hashes := array_fill(''::bytea, ARRAY[n]);
        FOR k IN 1..n LOOP
          v_rev := v_current + k;
          v_pos := v_base + k - 1;
          v_prev := ${hashOf('p_ids[k]', 'v_rev', 'v_pos', 'p_types[k]', 'p_data[k]', 'p_metadata[k]')};
          v_positions[k] := v_pos;
          v_revisions[k] := v_rev;
          v_hashes[k] := v_prev;
        END LOOP;
        INSERT INTO ${s}.events (position, stream, revision, event_id, type, data, metadata, recorded_at, hash)
          SELECT u.pos, p_stream, u.rev, u.id, u.type, u.data, u.metadata, v_now, u.hash
            FROM unnest(v_positions, v_revisions, p_ids, p_types, p_data, p_metadata, v_hashes)
                 AS u(pos, rev, id, type, data, metadata, hash);
      END IF;

      IF v_found THEN
        UPDATE ${s}.streams SET revision = v_current + n, last_hash = v_prev, last_position = v_pos WHERE stream = p_stream;
      ELSE
        INSERT INTO ${s}.streams (stream, revision, last_hash, last_position) VALUES (p_stream, v_current + n, v_prev, v_pos);
      END IF;
      outcome := 'appended'; revision := v_current + n; last_position := v_pos;
    END
    $fn$`;
};

const appendFunction = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    // Replaces the first version of the function (a set-returning one) where it exists.
    await sql.raw(`ALTER TABLE ${quote(schema)}.streams ADD COLUMN IF NOT EXISTS last_position bigint`).execute(db);
    await sql.raw(`DROP FUNCTION IF EXISTS ${quote(schema)}.append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])`).execute(db);
    await sql.raw(appendFunctionSql(schema)).execute(db);
  },
});

/**
 * PL/pgSQL caches its statements' plans and switches to a generic plan after five calls. Planned
 * while the tables are small, that plan scans `events` and `streams` sequentially, so every append
 * grew slower with the table (100-event batches: 1.7 ms at first, 6.3 ms after 6,000 events).
 * Custom plans cost a few planning microseconds per statement and keep appends flat.
 */
const appendCustomPlans = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql
      .raw(`ALTER FUNCTION ${quote(schema)}.append_events(text, bigint, uuid[], text[], jsonb[], jsonb[]) SET plan_cache_mode = force_custom_plan`)
      .execute(db);
  },
});

const migrationsFor = (schema: string): Record<string, Migration> => ({
  // The name is kept from when it also created the first append function.
  '0001_events_streams_append': initialSchema(schema),
  '0002_append_function': appendFunction(schema),
  '0003_append_custom_plans': appendCustomPlans(schema),
});

class InCodeMigrations implements MigrationProvider {
  constructor(private readonly schema: string) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrationsFor(this.schema);
  }
}

/** Names of the migrations already applied in `schema` (none when the schema is new). */
const appliedMigrations = async (db: Kysely<any>, schema: string): Promise<Set<string>> => {
  try {
    const { rows } = await sql<{ name: string }>`SELECT name FROM ${sql.id(schema, 'eventstore_migration')}`.execute(db);
    return new Set(rows.map((row) => row.name));
  } catch {
    return new Set();
  }
};

/**
 * kysely's Migrator introspects every table of the database, which fails now and then while
 * another process drops a schema (catalog rows vanish mid-query): such failures are retried.
 */
const isCatalogRace = (error: unknown): boolean => {
  const cause = (error as { cause?: unknown })?.cause ?? error;
  const code = (cause as { code?: string })?.code;
  return code === '3F000' || code === '42P01' || code === 'XX000' || code === '23505' || /cache lookup failed|does not exist/.test(String((cause as Error)?.message));
};

/** Creates or upgrades the event store's tables in `schema`; safe to call from several processes. */
export const migrateEventStore = async (db: Kysely<any>, schema: string): Promise<void> => {
  const wanted = Object.keys(migrationsFor(schema));
  // Up to date (every start after the first): skip the Migrator and its whole-database introspection.
  const applied = await appliedMigrations(db, schema);
  if (wanted.every((name) => applied.has(name))) return;
  for (let attempt = 1; ; attempt += 1) {
    try {
      await runMigrator(db, schema);
      return;
    } catch (error) {
      if (attempt >= 5 || !isCatalogRace(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
    }
  }
};

const runMigrator = async (db: Kysely<any>, schema: string): Promise<void> => {
  await sql.raw(`CREATE SCHEMA IF NOT EXISTS ${quote(schema)}`).execute(db);
  const migrator = new Migrator({
    db,
    provider: new InCodeMigrations(schema),
    migrationTableSchema: schema,
    migrationTableName: 'eventstore_migration',
    migrationLockTableName: 'eventstore_migration_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName;
    throw new EventStoreError(`Event store migration ${failed ?? ''} failed in schema ${schema}: ${(error as Error).message}`, {
      cause: error,
    });
  }
};

export const quoteIdentifier = quote;
