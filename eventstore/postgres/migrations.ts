import { sql, type Kysely, type Migration, type QueryExecutorProvider } from 'kysely';
import { quoteIdentifier, quoteLiteral } from '../../shared/sql.ts';
import { EventStoreError, StoreDoesNotFitServer, StoreFromNewerVersion } from '../errors.ts';

/**
 * Bits of a global position given to the event's ordinal inside its transaction:
 * position = (transaction id << 20) + ordinal. Position order is then (transaction, insert order),
 * and everything below `xmin << 20` is final. Bound: 2^20 events per transaction and
 * 2^43 (8.8e12) transactions over the cluster's life, ~28 years at a sustained 10k transactions/s.
 */
export const ORDINAL_BITS = 20;

/** Positions below this are final: no transaction still running can commit one. SQL, read in the statement's snapshot. */
export const FINAL_POSITION_BOUND = sql.raw(`(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << ${ORDINAL_BITS})`);

/**
 * The final bound and the newest committed position of the events table, in one snapshot. While
 * the head is at or past the bound, events committed already wait for an older transaction to end
 * before they are final (it may still commit a lower position, possibly another application's).
 */
export const finalBoundAndHead = async (db: QueryExecutorProvider, schema: string): Promise<{ bound: bigint; committedHead: bigint }> => {
  const result = await sql<{ bound: string; committed_head: string }>`
    SELECT ${FINAL_POSITION_BOUND}::text AS bound, (SELECT coalesce(max(position), 0) FROM ${sql.id(schema, 'events')})::text AS committed_head`.execute(db);
  const row = result.rows[0]!;
  return { bound: BigInt(row.bound), committedHead: BigInt(row.committed_head) };
};

/**
 * Waits (briefly) until the events committed when `seen` was read are final, so that a read right
 * after an append sees it even while unrelated transactions run. Gives up after `maxWaitMs`: the read
 * then takes what is final, which is always a correct prefix of the feed.
 */
export const settleFinal = async (
  db: QueryExecutorProvider,
  schema: string,
  seen: { bound: bigint; committedHead: bigint },
  maxWaitMs = 3_000,
): Promise<void> => {
  const deadline = performance.now() + maxWaitMs;
  let { bound } = seen;
  while (seen.committedHead >= bound && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    ({ bound } = await finalBoundAndHead(db, schema));
  }
};

const quote = quoteIdentifier;
const literal = quoteLiteral;

const initialSchema = (schema: string): Migration => {
  const s = quote(schema);
  return {
    async up(db: Kysely<any>) {
      // One statement per call: PGlite prepares every query and refuses several commands in one.
      await sql
        .raw(
          `
        CREATE TABLE ${s}.streams (
          stream     text PRIMARY KEY,
          -- Revision of the stream's last event; a row exists once the stream has events.
          revision   bigint NOT NULL,
          -- Hash of the last event: the head of the stream's tamper-evidence chain.
          last_hash  bytea,
          -- Position of the last event (guards the order of appends inside callers' transactions).
          last_position bigint
        )`,
        )
        .execute(db);
      await sql
        .raw(
          `
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
        )`,
        )
        .execute(db);
    },
  };
};

/** Whether any of the events ids `ids` is stored, one index probe per id (0008; `= ANY` was a slower array scan of the index). */
const anyEventStored = (s: string, ids: string): string =>
  `EXISTS (SELECT 1 FROM unnest(${ids}) AS q(id) CROSS JOIN LATERAL (SELECT 1 FROM ${s}.events e WHERE e.event_id = q.id LIMIT 1) x)`;

/** The stored event of the id `id` (alias `e`), one index probe (a join the planner may hash instead). */
const storedEventProbe = (s: string, id: string): string =>
  `CROSS JOIN LATERAL (SELECT e.event_id, e.stream, e.type, e.data, e.revision, e.position FROM ${s}.events e WHERE e.event_id = ${id} LIMIT 1) e`;

/** One link of a stream's hash chain (audit/sql/chain.ts recomputes it): previous hash + the event's fields. */
const chainLink = (prev: string, stream: string, id: string, rev: string, pos: string, type: string, data: string, metadata: string) =>
  `sha256(coalesce(${prev}, ''::bytea) || sha256(convert_to(
              ${id}::text || '|' || ${stream} || '|' || ${rev}::text || '|' || ${pos}::text || '|' ||
              ${type} || '|' || ${data}::text || '|' || ${metadata}::text || '|' || v_micros, 'UTF8')))`;

/**
 * One round trip per append: lock the stream, idempotency by event id, expected revision,
 * positions, the hash chain, insert and the stream head. Outcomes are returned, not raised, so a
 * refused append costs no exception handling on either side. The common single-event, new-ids
 * path runs as few statements as possible: it is the hot path of every command. `probes` (0010): the
 * idempotency lookups probe the events' unique index once per id, whatever the plan.
 */
const appendFunctionSql = (schema: string, probes = false): string => {
  const s = quote(schema);
  const hashOf = (id: string, rev: string, pos: string, type: string, data: string, metadata: string) =>
    chainLink('v_prev', 'p_stream', id, rev, pos, type, data, metadata);
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
      IF ${probes ? anyEventStored(s, 'p_ids') : `EXISTS (SELECT 1 FROM ${s}.events e WHERE e.event_id = ANY (p_ids))`} THEN
        SELECT count(*)::int,
               (count(*) FILTER (WHERE e.stream = p_stream AND e.type = i.type AND e.data = i.data))::int,
               max(e.revision), max(e.position),
               (array_agg(e.event_id ORDER BY i.ord) FILTER (WHERE e.stream <> p_stream OR e.type <> i.type OR e.data <> i.data))[1]
          INTO v_existing, v_same, v_rev, v_pos, conflict_id
          FROM unnest(p_ids, p_types, p_data) WITH ORDINALITY AS i(id, type, data, ord)
          ${probes ? storedEventProbe(s, 'i.id') : `JOIN ${s}.events e ON e.event_id = i.id`};
        IF v_existing = n AND v_same = n THEN
          outcome := 'duplicate'; revision := v_rev; last_position := v_pos; conflict_id := NULL;
        ELSE
          outcome := 'idempotency_conflict'; revision := v_current;
          conflict_id := coalesce(conflict_id, ${
            probes
              ? `(SELECT e.event_id FROM unnest(p_ids) AS u(id) ${storedEventProbe(s, 'u.id')} LIMIT 1)`
              : `(SELECT e.event_id FROM ${s}.events e WHERE e.event_id = ANY (p_ids) LIMIT 1)`
          });
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

/**
 * Several streams in one call (bulk import): the same steps as `append_events` for every stream,
 * all or nothing. Stream locks are taken in lock-key order, so two batches sharing streams cannot
 * deadlock, and all of them before the first write, so the transaction id (hence every position)
 * comes after each stream's previous append committed. Returns one row per input stream; when any
 * stream is refused (wrong revision, reused id), nothing is written and the others read `skipped`.
 *
 * `input`: the first version took data and metadata as `jsonb[]`; since 0005 they arrive as two
 * JSON arrays (`jsonb`), which the client sends as they are and PostgreSQL parses in one pass,
 * instead of an array literal with every quote escaped (a third of the import's time went there).
 */
/**
 * The heads of a batch's streams (`p_streams`), one index probe per stream (0008): the `LIMIT 1` keeps
 * the lateral subquery from being pulled up into a plain join, which the planner turned into a hash
 * join over the whole streams table (the lateral join of 0007 alone did not prevent it). Exported for
 * the test that checks its plan.
 */
export const streamHeadsJoin = (s: string, names = 'p_streams'): string =>
  `unnest(${names}) WITH ORDINALITY AS i(name, ord)
        LEFT JOIN LATERAL (SELECT h.stream, h.revision, h.last_hash, h.last_position FROM ${s}.streams h WHERE h.stream = i.name LIMIT 1) st ON true`;

const appendStreamsFunctionSql = (schema: string, input: 'arrays' | 'json' = 'arrays', setBased = false, headsByIndex = false, probes = false): string => {
  const s = quote(schema);
  const json = input === 'json';
  // The stored event of each id, looked up by a probe per id (0008) rather than a join the planner may hash.
  const storedEvent = (id: string) => (probes ? storedEventProbe(s, id) : `JOIN ${s}.events e ON e.event_id = ${id}`);
  return `
    CREATE FUNCTION ${s}.append_streams(
      p_streams text[],
      p_expected bigint[],        -- per stream: >= 0 exact, -1 no_stream, -2 any, -3 exists
      p_counts int[],             -- per stream: how many of the following events are its own, in order
      p_ids uuid[],
      p_types text[],
      ${json ? "p_data_list jsonb,          -- a JSON array: the events' data, in order" : 'p_data jsonb[],'}
      ${json ? 'p_metadata_list jsonb       -- a JSON array: their metadata' : 'p_metadata jsonb[]'}
    ) RETURNS TABLE (stream text, outcome text, revision bigint, last_position bigint, conflict_id uuid)
    LANGUAGE plpgsql AS $fn$
    DECLARE${json ? '\n      p_data jsonb[];\n      p_metadata jsonb[];' : ''}
      m int := cardinality(p_streams);
      n int := cardinality(p_ids);
      v_now timestamptz := date_trunc('milliseconds', now());
      v_micros text := ((extract(epoch from v_now) * 1000000)::bigint)::text;
      v_key bigint;
      v_sidx int[] := array_fill(0, ARRAY[n]);
      v_current bigint[];
      v_prevs bytea[];
      v_last bigint[];
      v_found boolean[];
      v_outcome text[] := array_fill('appended'::text, ARRAY[m]);
      v_conflict uuid[] := array_fill(NULL::uuid, ARRAY[m]);
      v_rev_out bigint[];
      v_pos_out bigint[];
      v_failed boolean := false;
      v_total int := 0;
      v_ordinal int;
      v_base bigint;
      v_next bigint;
      v_prev bytea;
      v_rev bigint;
      v_pos bigint;
      v_positions bigint[] := array_fill(NULL::bigint, ARRAY[n]);
      v_revisions bigint[] := array_fill(NULL::bigint, ARRAY[n]);
      v_names text[] := array_fill(NULL::text, ARRAY[n]);
      v_hashes bytea[] := array_fill(NULL::bytea, ARRAY[n]);
      j int;
      k int := 0;
      r record;
    BEGIN${
      json
        ? `
      SELECT coalesce(array_agg(u.data ORDER BY u.ord), '{}'), coalesce(array_agg(u.metadata ORDER BY u.ord), '{}') INTO p_data, p_metadata
        FROM ROWS FROM (jsonb_array_elements(p_data_list), jsonb_array_elements(p_metadata_list)) WITH ORDINALITY AS u(data, metadata, ord);
      IF cardinality(p_data) <> n OR jsonb_array_length(p_data_list) <> n OR jsonb_array_length(p_metadata_list) <> n THEN
        RAISE EXCEPTION 'append_streams: % events, % data and % metadata given', n, jsonb_array_length(p_data_list), jsonb_array_length(p_metadata_list);
      END IF;`
        : ''
    }
      ${
        setBased
          ? `-- Volatile calls run after the sort: the locks are taken in key order.
      PERFORM pg_advisory_xact_lock(l.key)
        FROM (SELECT DISTINCT hashtextextended(${literal(schema + '/')} || x, 0) AS key FROM unnest(p_streams) x) l
       ORDER BY l.key;
      SELECT coalesce(array_agg(c.j ORDER BY c.j, g.i), '{}') INTO v_sidx
        FROM unnest(p_counts) WITH ORDINALITY AS c(cnt, j) CROSS JOIN LATERAL generate_series(1, c.cnt) AS g(i);
      k := cardinality(v_sidx);`
          : `FOR v_key IN SELECT DISTINCT hashtextextended(${literal(schema + '/')} || x, 0) FROM unnest(p_streams) x ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(v_key);
      END LOOP;
      FOR j IN 1..m LOOP
        FOR i IN 1..p_counts[j] LOOP
          k := k + 1;
          v_sidx[k] := j;
        END LOOP;
      END LOOP;`
      }
      IF k <> n THEN
        RAISE EXCEPTION 'append_streams: counts add up to % events, % given', k, n;
      END IF;

      SELECT array_agg(coalesce(st.revision, -1) ORDER BY i.ord), array_agg(st.last_hash ORDER BY i.ord),
             array_agg(st.last_position ORDER BY i.ord), array_agg(st.stream IS NOT NULL ORDER BY i.ord)
        INTO v_current, v_prevs, v_last, v_found
        FROM ${
          probes
            ? `${streamHeadsJoin(s)};`
            : headsByIndex
              ? `unnest(p_streams) WITH ORDINALITY AS i(name, ord)
        LEFT JOIN LATERAL (SELECT h.stream, h.revision, h.last_hash, h.last_position FROM ${s}.streams h WHERE h.stream = i.name) st ON true;`
              : `unnest(p_streams) WITH ORDINALITY AS i(name, ord)
        LEFT JOIN ${s}.streams st ON st.stream = i.name;`
        }
      v_rev_out := v_current;
      v_pos_out := v_last;

      -- Idempotency per stream, under the locks, as in append_events.
      IF ${probes ? anyEventStored(s, 'p_ids') : `EXISTS (SELECT 1 FROM ${s}.events e WHERE e.event_id = ANY (p_ids))`} THEN
        FOR r IN
          SELECT i.sidx, count(*)::int AS existing,
                 (count(*) FILTER (WHERE e.stream = p_streams[i.sidx] AND e.type = i.type AND e.data = i.data))::int AS same,
                 max(e.revision) AS rev, max(e.position) AS pos,
                 (array_agg(e.event_id ORDER BY i.ord) FILTER (WHERE e.stream <> p_streams[i.sidx] OR e.type <> i.type OR e.data <> i.data))[1] AS conflict
            FROM unnest(v_sidx, p_ids, p_types, p_data) WITH ORDINALITY AS i(sidx, id, type, data, ord)
            ${storedEvent('i.id')}
           GROUP BY i.sidx
        LOOP
          IF r.existing = p_counts[r.sidx] AND r.same = r.existing THEN
            v_outcome[r.sidx] := 'duplicate'; v_rev_out[r.sidx] := r.rev; v_pos_out[r.sidx] := r.pos;
          ELSE
            v_outcome[r.sidx] := 'idempotency_conflict'; v_failed := true;
            -- A partial overlap has no differing event: name the first stored one.
            v_conflict[r.sidx] := coalesce(r.conflict,
              (SELECT e.event_id FROM unnest(v_sidx, p_ids) AS u(sidx, id) ${storedEvent('u.id')}
                WHERE u.sidx = r.sidx LIMIT 1));
          END IF;
        END LOOP;
      END IF;

      FOR j IN 1..m LOOP
        CONTINUE WHEN v_outcome[j] <> 'appended';
        IF NOT (p_expected[j] = -2
                OR (p_expected[j] = -1 AND v_current[j] = -1)
                OR (p_expected[j] = -3 AND v_current[j] >= 0)
                OR p_expected[j] = v_current[j]) THEN
          v_outcome[j] := 'wrong_revision'; v_failed := true;
        ELSE
          v_total := v_total + p_counts[j];
        END IF;
      END LOOP;

      IF v_failed OR v_total = 0 THEN
        FOR j IN 1..m LOOP
          IF v_outcome[j] = 'appended' THEN v_outcome[j] := 'skipped'; END IF;
        END LOOP;
        RETURN QUERY SELECT u.stream, u.outcome, u.rev, u.pos, u.conflict
          FROM unnest(p_streams, v_outcome, v_rev_out, v_pos_out, v_conflict) AS u(stream, outcome, rev, pos, conflict);
        RETURN;
      END IF;

      v_ordinal := coalesce(nullif(current_setting('crm_eventstore.tx_ordinal', true), ''), '0')::int;
      IF v_ordinal + v_total > ${2 ** ORDINAL_BITS} THEN
        RAISE EXCEPTION 'too many events in one transaction (limit ${2 ** ORDINAL_BITS})';
      END IF;
      PERFORM set_config('crm_eventstore.tx_ordinal', (v_ordinal + v_total)::text, true);
      v_base := (pg_current_xact_id()::text::bigint << ${ORDINAL_BITS}) + v_ordinal;
      FOR j IN 1..m LOOP
        IF v_outcome[j] = 'appended' AND v_last[j] IS NOT NULL AND v_last[j] >= v_base THEN
          RAISE EXCEPTION 'append to % would be ordered before the stream''s previous event; retry the transaction', p_streams[j]
            USING ERRCODE = '40001';
        END IF;
      END LOOP;

      v_next := v_base;
      FOR k IN 1..n LOOP
        j := v_sidx[k];
        CONTINUE WHEN v_outcome[j] <> 'appended';
        v_rev := v_rev_out[j] + 1;
        v_pos := v_next;
        v_next := v_next + 1;
        v_prev := v_prevs[j];
        v_prev := ${chainLink('v_prev', 'p_streams[j]', 'p_ids[k]', 'v_rev', 'v_pos', 'p_types[k]', 'p_data[k]', 'p_metadata[k]')};
        v_prevs[j] := v_prev;
        v_rev_out[j] := v_rev;
        v_pos_out[j] := v_pos;
        v_positions[k] := v_pos;
        v_revisions[k] := v_rev;
        v_names[k] := p_streams[j];
        v_hashes[k] := v_prev;
      END LOOP;

      INSERT INTO ${s}.events (position, stream, revision, event_id, type, data, metadata, recorded_at, hash)
        SELECT u.pos, u.name, u.rev, u.id, u.type, u.data, u.metadata, v_now, u.hash
          FROM unnest(v_positions, v_names, v_revisions, p_ids, p_types, p_data, p_metadata, v_hashes)
               AS u(pos, name, rev, id, type, data, metadata, hash)
         WHERE u.pos IS NOT NULL;
      INSERT INTO ${s}.streams AS st (stream, revision, last_hash, last_position)
        SELECT u.name, u.rev, u.hash, u.pos
          FROM unnest(p_streams, v_outcome, v_rev_out, v_prevs, v_pos_out) AS u(name, outcome, rev, hash, pos)
         WHERE u.outcome = 'appended'
        ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE
          SET revision = excluded.revision, last_hash = excluded.last_hash, last_position = excluded.last_position;
      RETURN QUERY SELECT u.stream, u.outcome, u.rev, u.pos, u.conflict
        FROM unnest(p_streams, v_outcome, v_rev_out, v_pos_out, v_conflict) AS u(stream, outcome, rev, pos, conflict);
    END
    $fn$`;
};

const appendStreamsFunction = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql.raw(appendStreamsFunctionSql(schema)).execute(db);
    await sql
      .raw(`ALTER FUNCTION ${quote(schema)}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb[], jsonb[]) SET plan_cache_mode = force_custom_plan`)
      .execute(db);
  },
});

/** The JSON-array inputs of `append_streams` (see appendStreamsFunctionSql), replacing the `jsonb[]` version. */
const appendStreamsJsonInput = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql.raw(`DROP FUNCTION ${quote(schema)}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb[], jsonb[])`).execute(db);
    await sql.raw(appendStreamsFunctionSql(schema, 'json')).execute(db);
    await sql
      .raw(`ALTER FUNCTION ${quote(schema)}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb, jsonb) SET plan_cache_mode = force_custom_plan`)
      .execute(db);
  },
});

/**
 * The stream locks of `append_streams` taken in one statement (still in key order), and each event's
 * stream index computed in one query, instead of a PL/pgSQL statement per stream and per event
 * (0006; same inputs, outputs and checks). See eventstore/README.md for what it saved.
 */
const appendStreamsSetBasedLocks = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql.raw(appendStreamsFunctionSql(schema, 'json', true).replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION')).execute(db);
    await sql
      .raw(`ALTER FUNCTION ${quote(schema)}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb, jsonb) SET plan_cache_mode = force_custom_plan`)
      .execute(db);
  },
});

/**
 * The heads of a batch's streams looked up one by one through the primary key (a lateral join), where
 * a hash join read the whole streams table for every batch: a bulk import's batches grew slower with
 * every customer already stored (0007; same inputs, outputs and checks).
 */
const appendStreamsHeadsByIndex = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql.raw(appendStreamsFunctionSql(schema, 'json', true, true).replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION')).execute(db);
    await sql
      .raw(`ALTER FUNCTION ${quote(schema)}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb, jsonb) SET plan_cache_mode = force_custom_plan`)
      .execute(db);
  },
});

/**
 * Bulk import lookups as index probes (0008; same inputs, outputs and checks): the heads of a batch's
 * streams and the idempotency check of its event ids in `append_streams`. See eventstore/README.md
 * for what they saved.
 */
const bulkImportProbes = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql.raw(appendStreamsFunctionSql(schema, 'json', true, true, true).replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION')).execute(db);
    await sql
      .raw(`ALTER FUNCTION ${quote(schema)}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb, jsonb) SET plan_cache_mode = force_custom_plan`)
      .execute(db);
  },
});

/**
 * `append_streams` on cached generic plans (0009). Every lookup in it is a probe by key since 0008
 * (a lateral `LIMIT 1` per stream and per event id), which a generic plan keeps whatever the tables'
 * size when it was made. Planning each of its statements again on every call was most of the cost of
 * a small call: group commit's appends of about a dozen events took 2.56 ms per call with custom plans
 * and 1.46 ms with cached ones, and 1.37 ms after 300,000 more events in the store (one connection,
 * plans made while the store was empty). `append_events` follows in 0010.
 */
const appendStreamsGenericPlans = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql.raw(`ALTER FUNCTION ${quote(schema)}.append_streams(text[], bigint[], int[], uuid[], text[], jsonb, jsonb) RESET plan_cache_mode`).execute(db);
  },
});

/**
 * `append_events` on cached generic plans too (0010): its idempotency lookups become probes by key, as
 * `append_streams`' since 0008 (`= ANY (ids)` and a plain join were what made its generic plans scan
 * the events as they grew, 0003). A single append is what group commit sends when no other is in
 * flight. Measured with one connection at load 4.5: 1.04-1.57 ms a call with custom plans, 0.89-0.97 ms
 * with cached ones.
 */
const appendEventsGenericPlans = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql.raw(appendFunctionSql(schema, true).replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION')).execute(db);
    await sql.raw(`ALTER FUNCTION ${quote(schema)}.append_events(text, bigint, uuid[], text[], jsonb[], jsonb[]) RESET plan_cache_mode`).execute(db);
  },
});

/**
 * Saved states of streams (0011; eventstore/postgres/snapshots.ts): a cache of folds beside the
 * events, so that a command on a long stream reads the state and the events after it rather than the
 * whole stream. Opaque text written by the command layer, encrypted there where it holds personal data.
 */
const streamSnapshots = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await sql
      .raw(
        `
      CREATE TABLE IF NOT EXISTS ${quote(schema)}.stream_snapshots (
        stream    text PRIMARY KEY,
        revision  bigint NOT NULL,
        format    text NOT NULL,
        state     text NOT NULL,
        saved_at  timestamptz NOT NULL DEFAULT now()
      )`,
      )
      .execute(db);
  },
});

/**
 * The API's idempotency keys (api/idempotency.ts). The API created the table at its start, outside
 * this registry, until 2026-12-07: a store may hold it already, keyed by (API key, key) since
 * 2026-12-03, or by the key alone before (its rows become unscoped ones, `UNSCOPED` = '' there).
 */
const idempotencyKeys = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    const table = `${quote(schema)}.idempotency_keys`;
    await sql
      .raw(
        `
      CREATE TABLE IF NOT EXISTS ${table} (
        api_key_id text NOT NULL,
        key text NOT NULL,
        fingerprint text NOT NULL,
        route text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (api_key_id, key)
      )`,
      )
      .execute(db);
    const { rows } = await sql`SELECT 1 FROM information_schema.columns
      WHERE table_schema = ${schema} AND table_name = 'idempotency_keys' AND column_name = 'api_key_id'`.execute(db);
    if (rows.length > 0) return;
    await sql
      .raw(`ALTER TABLE ${table} ADD COLUMN api_key_id text NOT NULL DEFAULT '', DROP CONSTRAINT idempotency_keys_pkey, ADD PRIMARY KEY (api_key_id, key)`)
      .execute(db);
    await sql.raw(`ALTER TABLE ${table} ALTER COLUMN api_key_id DROP DEFAULT`).execute(db);
  },
});

/** Runs DDL statements one by one (PGlite prepares every query and refuses several commands in one). */
const runEach = async (db: Kysely<any>, statements: readonly string[]): Promise<void> => {
  for (const statement of statements) await sql.raw(statement).execute(db);
};

/**
 * The tables below were made by their modules at start (`CREATE TABLE IF NOT EXISTS`, later columns
 * and indexes with `... IF NOT EXISTS`) until 2026-12-07, outside this registry: a store may hold
 * each already, in any of its earlier shapes. Each migration makes the table as those modules did
 * and adds what they added later, so such a store gets the shape of a new one and records it.
 */

/**
 * API keys (api/auth/api-keys.ts). The roles are those of domain/user/roles.ts when the table was
 * made: another role needs a migration of its own (test/eventstore/postgres-migrations.test.ts
 * compares the check with the roles).
 */
const apiKeys = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    const table = `${quote(schema)}.api_keys`;
    await runEach(db, [
      `CREATE TABLE IF NOT EXISTS ${table} (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL CHECK (role IN ('admin', 'sales', 'marketing', 'support', 'analyst', 'auditor')),
        hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        last_used_at timestamptz
      )`,
      // Keys of a user, and who created and revoked a key: added later (older keys read null).
      `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS user_id uuid, ADD COLUMN IF NOT EXISTS created_by text, ADD COLUMN IF NOT EXISTS revoked_by text`,
      `CREATE INDEX IF NOT EXISTS api_keys_user_idx ON ${table} (user_id) WHERE user_id IS NOT NULL`,
    ]);
  },
});

/** Secrets of the server itself (api/auth/server-secret.ts), the first made on the first start. */
const serverSecrets = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await runEach(db, [
      `CREATE TABLE IF NOT EXISTS ${quote(schema)}.server_secrets (
        name text PRIMARY KEY,
        secret text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`,
    ]);
  },
});

/** The customers' data keys (eventstore/personal-data.ts): a forgotten customer keeps a row without a key. */
const customerKeys = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await runEach(db, [
      `CREATE TABLE IF NOT EXISTS ${quote(schema)}.customer_keys (
        customer_id text PRIMARY KEY,
        data_key bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        forgotten_at timestamptz,
        CHECK ((data_key IS NULL) = (forgotten_at IS NOT NULL))
      )`,
    ]);
  },
});

/** The fingerprint of the master key new values are wrapped with (eventstore/master-key.ts), one row. */
const masterKey = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await runEach(db, [
      `CREATE TABLE IF NOT EXISTS ${quote(schema)}.master_key (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        fingerprint text NOT NULL
      )`,
    ]);
  },
});

/** The email indexes of customers and of users, and their one lookup key (eventstore/email-index.ts). */
const emailIndexes = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    const s = quote(schema);
    // The users' index names its holder column `customer_id` too, so that one module serves both.
    await runEach(
      db,
      ['customer', 'user'].flatMap((holder) => [
        `CREATE TABLE IF NOT EXISTS ${s}.${holder}_email_index (
          email_hmac bytea PRIMARY KEY,
          customer_id text NOT NULL,
          claimed_at timestamptz NOT NULL DEFAULT now()
        )`,
        `CREATE INDEX IF NOT EXISTS ${holder}_email_index_customer_idx ON ${s}.${holder}_email_index (customer_id)`,
      ]),
    );
    await runEach(db, [`CREATE TABLE IF NOT EXISTS ${s}.email_lookup_key (id integer PRIMARY KEY CHECK (id = 1), hmac_key bytea NOT NULL)`]);
  },
});

/** Webhook subscriptions, the integration publishers and the webhook deliveries (integration/tables.ts). */
const integrationTables = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    const s = quote(schema);
    await runEach(db, [
      `CREATE TABLE IF NOT EXISTS ${s}.webhook_subscriptions (
        id uuid PRIMARY KEY,
        url text NOT NULL,
        events text[] NOT NULL,
        description text,
        role text NOT NULL,
        secret text NOT NULL,
        enabled boolean NOT NULL DEFAULT true,
        generation integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`,
      // Secret rotation and URL passwords kept apart: added later.
      `ALTER TABLE ${s}.webhook_subscriptions
        ADD COLUMN IF NOT EXISTS previous_secret text,
        ADD COLUMN IF NOT EXISTS previous_secret_expires_at timestamptz,
        ADD COLUMN IF NOT EXISTS url_password text`,
      `CREATE TABLE IF NOT EXISTS ${s}.integration_publishers (
        name text PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('webhook', 'nats')),
        position bigint NOT NULL DEFAULT 0,
        state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'failing', 'disabled')),
        delivered bigint NOT NULL DEFAULT 0,
        failures bigint NOT NULL DEFAULT 0,
        last_error text,
        last_status integer,
        last_latency_ms double precision,
        next_retry_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`,
      // Added later: `updated_at` moves with every failed attempt, so a failing publisher's lag cannot be told from it.
      `ALTER TABLE ${s}.integration_publishers ADD COLUMN IF NOT EXISTS advanced_at timestamptz NOT NULL DEFAULT now()`,
      `CREATE TABLE IF NOT EXISTS ${s}.webhook_deliveries (
        id bigserial PRIMARY KEY,
        subscription_id uuid NOT NULL,
        event_id uuid NOT NULL,
        position bigint NOT NULL,
        attempt integer NOT NULL,
        status_code integer,
        latency_ms double precision NOT NULL,
        error text,
        next_retry_at timestamptz,
        at timestamptz NOT NULL DEFAULT now()
      )`,
      `CREATE INDEX IF NOT EXISTS webhook_deliveries_by_subscription ON ${s}.webhook_deliveries (subscription_id, id DESC)`,
    ]);
  },
});

/**
 * RabbitMQ publishing (integration/amqp-publisher.ts): its publisher's row has the kind `amqp`, which the
 * check of `integration_publishers.kind` did not take. (An older version refuses the store after it, as
 * after every migration; its status would not know the kind.)
 */
const amqpPublisherKind = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    const s = quote(schema);
    await runEach(db, [
      `ALTER TABLE ${s}.integration_publishers DROP CONSTRAINT IF EXISTS integration_publishers_kind_check`,
      `ALTER TABLE ${s}.integration_publishers ADD CONSTRAINT integration_publishers_kind_check CHECK (kind IN ('webhook', 'nats', 'amqp'))`,
    ]);
  },
});

/**
 * The seals of the global hash chain over the events table (audit/sql/chain.ts): the PostgreSQL
 * engine's own, as EventStoreDB's events have no such chain.
 */
const eventChainSeals = (schema: string): Migration => ({
  async up(db: Kysely<any>) {
    await runEach(db, [
      `CREATE TABLE IF NOT EXISTS ${quote(schema)}.event_chain_seals (
        position    bigint PRIMARY KEY,
        global_hash bytea NOT NULL,
        event_hash  bytea NOT NULL,
        stream      text NOT NULL,
        revision    bigint NOT NULL,
        sealed_at   timestamptz NOT NULL DEFAULT now()
      )`,
    ]);
  },
});

/** The PostgreSQL engine's own tables and functions: with EventStoreDB holding the events, none of them runs. */
const engineMigrationsFor = (schema: string): Record<string, Migration> => ({
  // The name is kept from when it also created the first append function.
  '0001_events_streams_append': initialSchema(schema),
  '0002_append_function': appendFunction(schema),
  '0003_append_custom_plans': appendCustomPlans(schema),
  '0004_append_streams': appendStreamsFunction(schema),
  '0005_append_streams_json_input': appendStreamsJsonInput(schema),
  '0006_append_streams_set_based_locks': appendStreamsSetBasedLocks(schema),
  '0007_append_streams_heads_by_index': appendStreamsHeadsByIndex(schema),
  '0008_bulk_import_probes': bulkImportProbes(schema),
  '0009_append_streams_generic_plans': appendStreamsGenericPlans(schema),
  '0010_append_events_generic_plans': appendEventsGenericPlans(schema),
  '0011_stream_snapshots': streamSnapshots(schema),
  '0019_event_chain_seals': eventChainSeals(schema),
});

/**
 * What every engine keeps in SQL beside its events, and the generations of what events hold: a
 * change of an event's stored format comes with a migration here (a no-op one will do, see
 * domain/README.md "Changing what an event stores"), so that older versions refuse the store.
 */
const besideEventsMigrationsFor = (schema: string): Record<string, Migration> => ({
  '0012_idempotency_keys': idempotencyKeys(schema),
  '0013_api_keys': apiKeys(schema),
  '0014_server_secrets': serverSecrets(schema),
  '0015_customer_keys': customerKeys(schema),
  '0016_master_key': masterKey(schema),
  '0017_email_indexes': emailIndexes(schema),
  '0018_integration_tables': integrationTables(schema),
  // A new event type, CampaignCostCorrected: nothing to change in SQL, but older versions must refuse a store holding it.
  '0020_campaign_cost_corrections': { up: async () => undefined },
  '0021_amqp_publisher_kind': amqpPublisherKind(schema),
});

/**
 * The newest migration every engine runs, which test/domain/event-formats.test.ts pairs the event
 * formats with: a format's migration among the PostgreSQL engine's own would never run beside
 * EventStoreDB, and older versions there would not refuse the store.
 */
export const latestStoreMigration = (): string => Object.keys(besideEventsMigrationsFor('s')).sort().at(-1)!;

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
 * Refuses a store migrated by a newer version: applied migrations this version does not know changed
 * a table it uses or what events hold. Checked before anything is written.
 */
const refuseNewerStore = (schema: string, applied: Set<string>): void => {
  const known = { ...engineMigrationsFor(schema), ...besideEventsMigrationsFor(schema) };
  const unknown = [...applied].filter((name) => !Object.hasOwn(known, name)).sort();
  if (unknown.length > 0) throw new StoreFromNewerVersion(schema, unknown);
};

/**
 * Refuses, reading only, a store migrated by a newer version (`StoreFromNewerVersion`): every process
 * checks it when it connects (runtime/crm.ts `openDatabase`), so that commands writing without opening
 * the event store (a master key rewrap, API keys, reporting roles, a purge) refuse it too. A schema
 * not created yet passes.
 */
export const assertStoreNotNewer = async (db: Kysely<any>, schema: string): Promise<void> => {
  refuseNewerStore(schema, await appliedMigrations(db, schema));
};

/**
 * Creates or upgrades the event store's tables in `schema`; safe to call from several processes.
 * One transaction under an advisory lock per schema: a second process waits, then finds the work
 * done. (kysely's Migrator introspects every table of the database first, which fails while another
 * process drops an unrelated schema.) The bookkeeping table keeps the Migrator's columns, so stores
 * it created upgrade in place. A store migrated by a newer version is refused
 * (`StoreFromNewerVersion`), with nothing written. With `engineTables: false` (the events are in
 * EventStoreDB) only the migrations of what is kept beside the events run.
 */
export const migrateEventStore = async (db: Kysely<any>, schema: string, options: { engineTables?: boolean } = {}): Promise<void> => {
  const registry = { ...(options.engineTables === false ? {} : engineMigrationsFor(schema)), ...besideEventsMigrationsFor(schema) };
  const migrations = Object.entries(registry).sort(([a], [b]) => a.localeCompare(b));
  // Up to date (every start after the first): no lock, no transaction.
  const applied = await appliedMigrations(db, schema);
  refuseNewerStore(schema, applied);
  if (migrations.every(([name]) => applied.has(name))) return;
  await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`crm-eventstore-migrations:${schema}`}))`.execute(trx);
    await sql.raw(`CREATE SCHEMA IF NOT EXISTS ${quote(schema)}`).execute(trx);
    await sql
      .raw(`CREATE TABLE IF NOT EXISTS ${quote(schema)}.eventstore_migration (name varchar(255) PRIMARY KEY, timestamp varchar(255) NOT NULL)`)
      .execute(trx);
    const done = await appliedMigrations(trx, schema);
    // A newer process may have migrated the store while this one waited for the lock.
    refuseNewerStore(schema, done);
    for (const [name, migration] of migrations) {
      if (done.has(name)) continue;
      try {
        await migration.up(trx);
      } catch (error) {
        throw new EventStoreError(`Event store migration ${name} failed in schema ${schema}: ${(error as Error).message}`, { cause: error });
      }
      await sql`INSERT INTO ${sql.id(schema, 'eventstore_migration')} (name, timestamp) VALUES (${name}, ${new Date().toISOString()})`.execute(trx);
    }
  });
};

export { quoteIdentifier };

/**
 * Checks, at start, that the stored events fit the database they are in; throws
 * StoreDoesNotFitServer (nothing written) when they do not:
 * - a position is `transaction id << 20`, so every stored one lies below the next transaction id of
 *   the server that stored it. A logical backup (`pg_dump`) restored onto another server keeps the
 *   positions but not the transaction counter: new events would get lower positions than stored ones,
 *   the feed would stop at 0 and every command on an existing record would fail;
 * - the append functions name their schema in their bodies: schemas renamed after a restore leave them
 *   writing to the old name.
 */
export const assertStoreFitsServer = async (db: QueryExecutorProvider, schema: string): Promise<void> => {
  const { rows } = await sql<{ next_xid: string; head: string | null }>`
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid, (SELECT max(position) FROM ${sql.id(schema, 'events')})::text AS head`.execute(db);
  const { next_xid: nextXid, head } = rows[0]!;
  if (head !== null && BigInt(head) >> BigInt(ORDINAL_BITS) >= BigInt(nextXid)) {
    const needed = (BigInt(head) >> BigInt(ORDINAL_BITS)) + 1_000n;
    const epoch = needed >> 32n;
    throw new StoreDoesNotFitServer(
      `The stored events' positions (up to ${head}) come from transaction ids this PostgreSQL server has not reached (its next is ${nextXid}): ` +
        'the database was restored from a logical backup (pg_dump) onto another server, whose transaction counter is lower. New events would be ' +
        `ordered before the stored ones. Nothing was written. Restore a physical backup (pg_basebackup) instead, or stop this server and move its ` +
        `counter past them before restoring again: pg_resetwal${epoch > 0n ? ` -e ${epoch}` : ''} -x ${needed & 0xffffffffn} <data directory> ` +
        '(pg_resetwal needs the pg_xact segment of that id to exist: see its documentation). README: "Backup and restore".',
    );
  }
  const { rows: functions } = await sql<{ name: string; body: string }>`
    SELECT p.proname AS name, p.prosrc AS body FROM pg_proc p
     WHERE p.pronamespace = to_regnamespace(${quote(schema)}) AND p.proname IN ('append_events', 'append_streams')`.execute(db);
  const elsewhere = functions.find((f) => !f.body.includes(`${quote(schema)}.`));
  if (elsewhere) {
    const named = /UPDATE ("(?:[^"]|"")+")\.streams/.exec(elsewhere.body)?.[1];
    throw new StoreDoesNotFitServer(
      `The event store's functions in schema ${schema} write to another schema${named ? ` (${named})` : ''}: the schemas were renamed after a restore. ` +
        `Rename them back${named ? ` (ALTER SCHEMA ${quote(schema)} RENAME TO ${named}, and the read and reporting schemas likewise)` : ''} and set ` +
        'CRM_EVENTS_SCHEMA, CRM_READ_SCHEMA and CRM_REPORTING_SCHEMA to those names. Nothing was written.',
    );
  }
};
