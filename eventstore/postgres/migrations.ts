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
          -- Revision of the stream's last event (-1 while it has none).
          revision   bigint NOT NULL,
          -- Hash of the last event: the head of the stream's tamper-evidence chain.
          last_hash  bytea,
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
      await sql.raw(`
        -- One round trip per append: lock the stream, idempotency by event id, expected revision,
        -- positions, the hash chain, insert and the stream head. Outcomes are returned, not raised,
        -- so a refused append costs no exception handling on either side.
        CREATE FUNCTION ${s}.append_events(
          p_stream text,
          p_expected bigint,          -- >= 0 exact, -1 no_stream, -2 any, -3 exists
          p_ids uuid[],
          p_types text[],
          p_data jsonb[],
          p_metadata jsonb[]
        ) RETURNS TABLE (outcome text, revision bigint, last_position bigint, conflict_id uuid)
        LANGUAGE plpgsql AS $fn$
        DECLARE
          n int := cardinality(p_ids);
          v_current bigint;
          v_prev bytea;
          v_existing int;
          v_same int;
          v_rev bigint;
          v_pos bigint;
          v_conflict uuid;
          v_ordinal int;
          v_base bigint;
          -- Milliseconds, so that a JavaScript Date of the record time round-trips exactly (untilTime).
          v_now timestamptz := date_trunc('milliseconds', now());
          v_micros text := ((extract(epoch from v_now) * 1000000)::bigint)::text;
          v_positions bigint[] := '{}';
          v_revisions bigint[] := '{}';
          v_hashes bytea[] := '{}';
          v_hash bytea;
          v_found boolean;
          v_last_position bigint;
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
          -- (A stream that does not exist holds none of these ids, but another stream might.)
          SELECT count(*)::int,
                 (count(*) FILTER (WHERE e.stream = p_stream AND e.type = i.type AND e.data = i.data))::int,
                 max(e.revision), max(e.position),
                 (array_agg(e.event_id ORDER BY i.ord) FILTER (WHERE e.stream <> p_stream OR e.type <> i.type OR e.data <> i.data))[1]
            INTO v_existing, v_same, v_rev, v_pos, v_conflict
            FROM unnest(p_ids, p_types, p_data) WITH ORDINALITY AS i(id, type, data, ord)
            JOIN ${s}.events e ON e.event_id = i.id;
          IF v_existing > 0 THEN
            IF v_existing = n AND v_same = n THEN
              RETURN QUERY SELECT 'duplicate'::text, v_rev, v_pos, NULL::uuid;
            ELSE
              RETURN QUERY SELECT 'idempotency_conflict'::text, v_current,
                NULL::bigint, coalesce(v_conflict, (SELECT e.event_id FROM ${s}.events e WHERE e.event_id = ANY (p_ids) LIMIT 1));
            END IF;
            RETURN;
          END IF;

          IF NOT (p_expected = -2
                  OR (p_expected = -1 AND v_current = -1)
                  OR (p_expected = -3 AND v_current >= 0)
                  OR p_expected = v_current) THEN
            RETURN QUERY SELECT 'wrong_revision'::text, v_current, NULL::bigint, NULL::uuid;
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

          FOR k IN 1..n LOOP
            v_rev := v_current + k;
            v_pos := v_base + k - 1;
            v_hash := sha256(coalesce(v_prev, ''::bytea) || sha256(convert_to(
              p_ids[k]::text || '|' || p_stream || '|' || v_rev::text || '|' || v_pos::text || '|' ||
              p_types[k] || '|' || p_data[k]::text || '|' || p_metadata[k]::text || '|' || v_micros, 'UTF8')));
            v_positions := v_positions || v_pos;
            v_revisions := v_revisions || v_rev;
            v_hashes := v_hashes || v_hash;
            v_prev := v_hash;
          END LOOP;

          INSERT INTO ${s}.events (position, stream, revision, event_id, type, data, metadata, recorded_at, hash)
            SELECT u.pos, p_stream, u.rev, u.id, u.type, u.data, u.metadata, v_now, u.hash
              FROM unnest(v_positions, v_revisions, p_ids, p_types, p_data, p_metadata, v_hashes)
                   AS u(pos, rev, id, type, data, metadata, hash);
          IF v_found THEN
            UPDATE ${s}.streams SET revision = v_current + n, last_hash = v_prev, last_position = v_pos WHERE stream = p_stream;
          ELSE
            INSERT INTO ${s}.streams (stream, revision, last_hash, last_position) VALUES (p_stream, v_current + n, v_prev, v_pos);
          END IF;
          RETURN QUERY SELECT 'appended'::text, v_current + n, v_pos, NULL::uuid;
        END
        $fn$`).execute(db);
    },
  };
};

const migrationsFor = (schema: string): Record<string, Migration> => ({
  '0001_events_streams_append': initialSchema(schema),
});

class InCodeMigrations implements MigrationProvider {
  constructor(private readonly schema: string) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrationsFor(this.schema);
  }
}

/** Creates or upgrades the event store's tables in `schema`; safe to call from several processes. */
export const migrateEventStore = async (db: Kysely<any>, schema: string): Promise<void> => {
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
