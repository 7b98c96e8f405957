import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { compareSchemas, rebuildProjections, replayInto, tablesOf, type RebuildProgress } from '../../projections/rebuild.ts';
import { createReportingViews, REPORTING_VIEWS } from '../../projections/reporting.ts';
import { ReadModelsFromNewerVersion, ReadModelsHeld, RebuildShadowLost } from '../../projections/errors.ts';
import { retryWhileHeld } from '../../projections/lock-holders.ts';
import { qualifiedName as qualified } from '../../shared/sql.ts';
import { isShadowOf } from '../../projections/shadows.ts';
import { eventSchemas, personalFields } from '../../domain/catalogue.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { readCheckpoints } from '../../projections/checkpoints.ts';
import { LEASE_TABLE, ProjectionLeases, readLeaseHolders, WORKER_TABLE } from '../../projections/leases.ts';
import type { Projection } from '../../projections/projection.ts';
import type { Log, LogLevel } from '../../shared/outage-log.ts';
import { projectedScenario, type ScenarioIds } from './scenario.ts';
import { projectAll, rebuildingRunner, type Harness } from './support.ts';
import { storedEvents } from '../support/events.ts';

let h: Harness;
let ids: ScenarioIds;
let runner: ProjectionRunner;
const projections = readModelProjections();
const tables = tablesOf(projections);

beforeAll(async () => {
  ({ h, runner, ids } = await projectedScenario('rebuild', projections));
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

const deps = () => ({ db: h.database.db, store: h.store, codec: h.codec, projections, concurrent: true });

describe('replay and compare', () => {
  it('replaying twice from zero gives identical tables, equal to the live ones built event by event', async () => {
    const position = h.lastPosition();
    const a = await replayInto({ ...deps(), schema: `${h.schemas.read}_a`, untilPosition: position });
    const b = await replayInto({ ...deps(), schema: `${h.schemas.read}_b`, untilPosition: position });
    expect(a.failed).toEqual([]);
    // Every event counted once, the position where every projection stands.
    expect(a.events).toBe((await storedEvents(h.store)).filter((e) => e.position <= position).length);
    expect(a.position).toBe(position);
    const ab = await compareSchemas(h.database.db, a.schema, b.schema, tables);
    expect(ab.filter((t) => !t.equal)).toEqual([]);
    expect(ab.find((t) => t.table === 'customer_timeline')!.liveRows).toBeGreaterThan(40);
    const liveVsReplay = await compareSchemas(h.database.db, h.schemas.read, a.schema, tables);
    expect(liveVsReplay.filter((t) => !t.equal)).toEqual([]);
  });

  it('names the exact differing row after a read-model row is altered', async () => {
    const position = h.lastPosition();
    const a = await replayInto({ ...deps(), schema: `${h.schemas.read}_c`, untilPosition: position });
    await sql`UPDATE ${sql.id(a.schema, 'customers')} SET revenue = revenue + 1 WHERE customer_id = ${ids.alice}::uuid`.execute(h.database.db);
    const result = await compareSchemas(h.database.db, h.schemas.read, a.schema, ['customers', 'deals']);
    expect(result.find((t) => t.table === 'deals')!.equal).toBe(true);
    const customers = result.find((t) => t.table === 'customers')!;
    expect(customers.equal).toBe(false);
    expect(customers.differences).toHaveLength(1);
    expect(customers.differences[0]!.key).toEqual({ customer_id: ids.alice });
    expect(customers.differences[0]!.live!.revenue).toBe(100.55);
    expect(customers.differences[0]!.other!.revenue).toBe(101.55);
  });

  it('builds the read models as of an instant (record time)', async () => {
    const [deactivated] = (await storedEvents(h.store)).filter((e) => e.type === 'CustomerDeactivated');
    const asOf = await replayInto({
      ...deps(),
      schema: `${h.schemas.read}_asof`,
      untilTime: deactivated!.recordedAt,
      reportingSchema: `${h.schemas.read}_asof_reporting`,
    });
    const past = createReadModelQueries({ db: h.database.db, schema: asOf.schema });
    // Every event read is counted, and so are those recorded after the instant that were left out.
    const read = (await storedEvents(h.store)).filter((e) => e.position <= asOf.position);
    expect(asOf.events).toBe(read.length);
    expect(asOf.recordedLater).toBe(read.filter((e) => e.recordedAt.getTime() > deactivated!.recordedAt.getTime()).length);
    expect(asOf.recordedLater).toBeGreaterThan(0);
    expect(await past.getCustomer(ids.alice)).toMatchObject({ status: 'inactive', dealsWon: 0 });
    expect(await past.getCustomer(ids.bob)).toBeUndefined();
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(`${h.schemas.read}_asof_reporting`, 'customers')}`.execute(h.database.db);
    expect(rows[0]!.n).toBe(1);
  });
});

describe('replay as of an instant, record times out of stream order', () => {
  it("leaves out a stream's events from its first one recorded after the instant, as the point-in-time record reads the stream", async () => {
    // A record time is its append's start: an append that waited is recorded before the revision
    // ahead of it. Filtered event by event, the replay applied revision 2 without revision 1.
    const campaignId = randomUUID();
    const stream = `campaign-${campaignId}`;
    const metadata = {
      actor: { userId: 'm', roles: ['marketing'] },
      correlationId: 'c',
      causationId: null,
      occurredAt: new Date().toISOString(),
      schemaVersion: 1,
      command: 'Test',
    };
    const cost = (costId: string, amount: number) => ({ campaignId, costId, amount, currency: 'EUR', description: null });
    const created = { campaignId, name: 'Spring', channel: 'email', budget: 100, currency: 'EUR', schedule: null, targetSegment: {} };
    await h.store.appendToStream(stream, [{ id: randomUUID(), type: 'CampaignCreated', data: created, metadata }]);
    const client = new pg.Client({ connectionString: h.schemas.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT now()');
      await new Promise((resolve) => setTimeout(resolve, 30));
      await h.store.appendToStream(stream, [{ id: randomUUID(), type: 'CampaignCostRecorded', data: cost('first', 10), metadata }]);
      await client.query(`SELECT * FROM "${h.schemas.events}".append_events($1, -2, $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[])`, [
        stream,
        [randomUUID()],
        ['CampaignCostRecorded'],
        [JSON.stringify(cost('second', 5))],
        [JSON.stringify(metadata)],
      ]);
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
    const events = await h.store.readStream(stream);
    expect(events[2]!.recordedAt.getTime()).toBeLessThan(events[1]!.recordedAt.getTime());
    const asOf = await replayInto({ ...deps(), schema: `${h.schemas.read}_asof_order`, untilTime: events[2]!.recordedAt });
    // Every projection applied what it read (a failed one would leave the campaign out for another reason).
    expect(asOf.failed).toEqual([]);
    expect(events[0]!.recordedAt.getTime()).toBeLessThanOrEqual(events[2]!.recordedAt.getTime());
    const past = createReadModelQueries({ db: h.database.db, schema: asOf.schema });
    expect(await past.getCampaign(campaignId)).toMatchObject({ costs: 0 });
  });
});

/** A field of an event as the read models and views name their columns: `fullName` is `full_name`. */
const columnOf = (field: string) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * The personal fields a reporting view may show (README, "Read models and the `reporting` schema": "the
 * reporting views expose only name (and `name_sort`, its sort key), email and company of the personal
 * fields", a customer's; `name_sort` is no event's field).
 */
const PERSONAL_COLUMNS_ALLOWED: Readonly<Record<string, readonly string[]>> = { customers: ['name', 'email', 'company'] };

/**
 * Columns named like a personal field of another record, not personal where they are: each names the
 * events its record is made of, and the test checks that none of them lists the field as personal.
 */
const SAME_NAME_NOT_PERSONAL: readonly { view: string; column: string; events: RegExp | 'none' }[] = [
  // A projection's name, from the code: no event's data.
  { view: 'projection_status', column: 'name', events: 'none' },
  // A campaign's name.
  { view: 'campaigns', column: 'name', events: /^Campaign/ },
  // An activity's subject, a short label: only its body is personal (README: when the customer is forgotten "subject, kind and times stay").
  { view: 'activities', column: 'subject', events: /^Activity/ },
];

describe('reporting views', () => {
  it("exposes every documented view and column, without personal data beyond a customer's name, email and company", async () => {
    for (const view of REPORTING_VIEWS) {
      const { rows } = await sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
        WHERE table_schema = ${h.schemas.reporting} AND table_name = ${view.name} ORDER BY ordinal_position`.execute(h.database.db);
      expect(
        rows.map((r) => r.column_name),
        view.name,
      ).toEqual(view.columns.map(([c]) => c));
    }

    // What the views really show, read from the database: every column of the schema, whatever made it.
    const personal = new Set(Object.values(personalFields).flatMap((p) => p.fields.map(columnOf)));
    for (const column of Object.values(PERSONAL_COLUMNS_ALLOWED).flat()) expect(personal, column).toContain(column);
    for (const { column, events } of SAME_NAME_NOT_PERSONAL) {
      if (events === 'none') continue;
      const types = Object.keys(eventSchemas).filter((type) => events.test(type));
      expect(types.length, String(events)).toBeGreaterThan(0);
      expect(types.filter((type) => personalFields[type as keyof typeof personalFields]?.fields.some((f) => columnOf(f) === column))).toEqual([]);
    }
    const allowed = (view: string, column: string) =>
      PERSONAL_COLUMNS_ALLOWED[view]?.includes(column) === true || SAME_NAME_NOT_PERSONAL.some((e) => e.view === view && e.column === column);
    const { rows: shown } = await sql<{ table_name: string; column_name: string }>`SELECT table_name, column_name FROM information_schema.columns
      WHERE table_schema = ${h.schemas.reporting} ORDER BY table_name, ordinal_position`.execute(h.database.db);
    const views = new Set(shown.map((c) => c.table_name));
    expect(REPORTING_VIEWS.filter((v) => !views.has(v.name)).map((v) => v.name)).toEqual([]);
    expect(shown.filter((c) => personal.has(c.column_name) && !allowed(c.table_name, c.column_name)).map((c) => `${c.table_name}.${c.column_name}`)).toEqual(
      [],
    );

    const { rows } = await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(h.schemas.reporting, 'pipeline_summary')} ORDER BY stage`.execute(h.database.db);
    expect(rows.map((r) => [r.stage, r.currency, r.weighted_amount])).toEqual([
      ['lead', 'USD', '50.0250'],
      ['negotiation', 'EUR', '225.0000'],
    ]);
  });
});

describe('reporting views made again at a start', () => {
  it('leaves alone a view that is already what this version makes (a BI transaction reading it does not hold the start), and replaces one that differs', async () => {
    const db = h.database.db;
    const view = (name: string) => `"${h.schemas.reporting}".${name}`;
    const oids = async () => {
      const { rows } = await sql<{ customers: number; deals: number }>`SELECT ${view('customers')}::regclass::oid::int AS customers,
        ${view('deals')}::regclass::oid::int AS deals`.execute(db);
      return rows[0]!;
    };
    // Someone's own change to a view, with the same columns: a start puts the documented one back.
    const { rows: definition } = await sql<{ d: string }>`SELECT pg_get_viewdef(${view('deals')}::regclass) AS d`.execute(db);
    await sql.raw(`CREATE OR REPLACE VIEW ${view('deals')} AS ${definition[0]!.d.replace(/;\s*$/, '')} LIMIT 1`).execute(db);
    const before = await oids();
    const reader = new pg.Client({ connectionString: h.schemas.url });
    await reader.connect();
    try {
      // A BI tool's transaction holds the customers view (ACCESS SHARE) and stays open.
      await reader.query('BEGIN');
      await reader.query(`SELECT 1 FROM ${view('customers')} LIMIT 1`);
      const started = Date.now();
      await db.connection().execute(async (connection) => {
        await sql`SET lock_timeout = '500ms'`.execute(connection);
        await createReportingViews(connection, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections });
        await sql`RESET lock_timeout`.execute(connection);
      });
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await oids()).toEqual(before);
      const { rows } = await sql<{ d: string }>`SELECT pg_get_viewdef(${view('deals')}::regclass) AS d`.execute(db);
      expect(rows[0]!.d).toBe(definition[0]!.d);
    } finally {
      await reader.query('ROLLBACK');
      await reader.end();
    }
  });

  it('tries a view that must change again while a session holds it, then names that session and what to do', async () => {
    const db = h.database.db;
    const { rows: definition } = await sql<{ d: string }>`SELECT pg_get_viewdef(${`"${h.schemas.reporting}".campaigns`}::regclass) AS d`.execute(db);
    await sql.raw(`CREATE OR REPLACE VIEW "${h.schemas.reporting}".campaigns AS ${definition[0]!.d.replace(/;\s*$/, '')} LIMIT 1`).execute(db);
    const reader = new pg.Client({ connectionString: h.schemas.url, application_name: 'Metabase' });
    await reader.connect();
    try {
      await reader.query('BEGIN');
      await reader.query(`SELECT 1 FROM ${qualified(h.schemas.reporting, 'campaigns')} LIMIT 1`);
      const { rows: pid } = await reader.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const held = await db.connection().execute(async (connection) => {
        await sql`SET lock_timeout = '200ms'`.execute(connection);
        const make = () => createReportingViews(connection, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections });
        const outcome = await retryWhileHeld(connection, make, {
          what: 'make the reporting views again',
          left: 'the others are as they were',
          on: { schemas: [h.schemas.reporting] },
          boundMs: 1_500,
        }).catch((error: unknown) => error);
        await sql`RESET lock_timeout`.execute(connection);
        return outcome;
      });
      expect(held).toBeInstanceOf(ReadModelsHeld);
      const { sessions, message } = held as ReadModelsHeld;
      expect(sessions).toEqual([
        expect.objectContaining({ pid: pid[0]!.pid, application: 'Metabase', state: 'idle in transaction', relations: [`${h.schemas.reporting}.campaigns`] }),
      ]);
      expect(message).toContain(`pid ${pid[0]!.pid} (user postgres, application "Metabase", idle in transaction since`);
      expect(message).toContain('pg_terminate_backend');
    } finally {
      await reader.query('ROLLBACK');
      await reader.end();
    }
    // Once the reader is done, the view is made as documented.
    await createReportingViews(db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections });
    const { rows } = await sql<{ d: string }>`SELECT pg_get_viewdef(${`"${h.schemas.reporting}".campaigns`}::regclass) AS d`.execute(db);
    expect(rows[0]!.d).toBe(definition[0]!.d);
  });
});

describe('rebuild', () => {
  it('swaps in a complete model while commands keep arriving and queries never fail', async () => {
    const queries = createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
    let writing = true;
    const written: string[] = [];
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const id = randomUUID();
        await h.run({ type: 'RegisterCustomer', customerId: id, name: `Rebuild ${i}`, email: `rebuild${i}@example.com` });
        await h.run({ type: 'RecordPurchase', customerId: id, orderId: `rb-${i}`, amount: 10, currency: 'EUR' });
        written.push(id);
      }
    })();
    let reading = true;
    let reads = 0;
    const readErrors: unknown[] = [];
    const reader = (async () => {
      while (reading) {
        try {
          await queries.listCustomers({ limit: 20 });
          await queries.getCustomer(ids.alice);
          await sql`SELECT count(*) FROM ${sql.id(h.schemas.reporting, 'customers')}`.execute(h.database.db);
          reads++;
        } catch (error) {
          readErrors.push(error);
        }
      }
    })();
    const phases = new Set<string>();
    let result: Awaited<ReturnType<typeof rebuildProjections>>;
    try {
      result = await rebuildProjections({
        ...deps(),
        schema: h.schemas.read,
        reportingSchema: h.schemas.reporting,
        runner,
        onProgress: (p) => phases.add(p.phase),
      });
      // Keep writing a little after the swap: the live runner must carry on from the swapped checkpoint.
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      // Even when the rebuild fails: a writer and reader left looping outlive the test, write into the
      // next one and pile up errors once the store is closed (the worker ran out of memory).
      writing = false;
      await writer;
      reading = false;
      await reader;
    }
    expect(readErrors).toEqual([]);
    expect(reads).toBeGreaterThan(0);
    expect(result.names).toEqual(projections.map((p) => p.name));
    // The writer never paused: the swap still converges at once (a retry only after e.g. a deadlock).
    expect(result.swapAttempts).toBeLessThanOrEqual(3);
    expect(phases).toContain('done');
    expect(written.length).toBeGreaterThan(0);

    await runner.waitForPosition(h.lastPosition(), 10_000);
    for (const id of written) expect((await queries.getCustomer(id))?.revenue, id).toBe(10);
    const fresh = await replayInto({ ...deps(), schema: `${h.schemas.read}_after`, untilPosition: h.lastPosition() });
    const comparison = await compareSchemas(h.database.db, h.schemas.read, fresh.schema, tables);
    expect(comparison.filter((t) => !t.equal)).toEqual([]);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(h.schemas.reporting, 'customers')}`.execute(h.database.db);
    expect(rows[0]!.n).toBe(3 + written.length);
    const { rows: shadows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE ${`${h.schemas.read}_rb_%`}`.execute(
      h.database.db,
    );
    expect(shadows[0]!.n).toBe(0);
    // Swapped in with planner statistics (gathered in the shadow), not as tables never analysed.
    const { rows: statistics } = await sql<{ table: string }>`SELECT DISTINCT tablename AS table FROM pg_stats
      WHERE schemaname = ${h.schemas.read} AND tablename IN ('customers', 'customer_timeline')`.execute(h.database.db);
    expect(statistics.map((r) => r.table).sort()).toEqual(['customer_timeline', 'customers']);
  });
});

describe('rebuild beside named statements', () => {
  it('a pooled connection holding a prepared read of a table whose column set the swap changes answers the next read correctly', async () => {
    // A connection of its own (pool of one) reads a customer twice: its statement is then prepared,
    // its result type that of the live table, which here has a column the code no longer creates
    // (as after an upgrade that dropped one). The rebuild swaps in the table without it.
    const reader = connectPostgres(h.schemas.url, { max: 1 });
    try {
      const live = sql.id(h.schemas.read, 'customers');
      await sql`ALTER TABLE ${live} ADD COLUMN retired_column text`.execute(h.database.db);
      const queries = createReadModelQueries({ db: reader.db, schema: h.schemas.read });
      const before = await queries.getCustomer(ids.alice);
      expect(await queries.getCustomer(ids.alice)).toEqual(before);
      const { rows: held } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'crm_s_%'`.execute(reader.db);
      expect(held[0]!.n).toBeGreaterThan(0);

      const result = await rebuildProjections({
        ...deps(),
        projections: [projections.find((p) => p.name === 'customers')!],
        schema: h.schemas.read,
        reportingSchema: h.schemas.reporting,
        runner,
      });
      expect(result.names).toEqual(['customers']);
      const { rows: columns } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM information_schema.columns
        WHERE table_schema = ${h.schemas.read} AND table_name = 'customers' AND column_name = 'retired_column'`.execute(h.database.db);
      expect(columns[0]!.n).toBe(0);

      expect(before).toMatchObject({ id: ids.alice });
      expect(await queries.getCustomer(ids.alice)).toEqual(before);
      expect(await queries.getCustomer(ids.alice)).toEqual(before);
      // Inside a transaction the stale statement is a retryable unavailability, never a wrong answer:
      // the connection that held it was discarded above, so this one prepares afresh and answers.
      const inTransaction = await reader.db.transaction().execute((trx) => createReadModelQueries({ db: trx, schema: h.schemas.read }).getCustomer(ids.alice));
      expect(inTransaction).toEqual(before);
    } finally {
      await reader.close();
    }
  });
});

describe('rebuild progress', () => {
  it('reports a total from the first page on: the events the rebuild reads, never below those done', async () => {
    const stored = (await storedEvents(h.store)).length;
    const seen: RebuildProgress[] = [];
    const result = await rebuildProjections({
      ...deps(),
      names: ['customers'],
      schema: h.schemas.read,
      reportingSchema: h.schemas.reporting,
      runner,
      onProgress: (p) => seen.push(p),
    });
    const replaying = seen.filter((p) => p.phase === 'replaying');
    expect(replaying.length).toBeGreaterThan(0);
    // Every event up to the head when the rebuild began, each read once.
    for (const p of replaying) expect(p.total).toBe(stored);
    expect(replaying.at(-1)!.events).toBe(stored);
    for (const p of seen) expect(p.events).toBeLessThanOrEqual(p.total!);
    expect(seen.at(-1)).toMatchObject({ phase: 'done', events: result.events, total: result.events });
  });
});

describe('rebuild whose shadow another process dropped', () => {
  it('says so and what to do, with the live read models and states as they were (it was an unexpected error with a stack)', async () => {
    const before = await createReadModelQueries({ db: h.database.db, schema: h.schemas.read }).getCustomer(ids.alice);
    let dropped: Promise<unknown> | undefined;
    const outcome = await rebuildProjections({
      ...deps(),
      names: ['customers'],
      schema: h.schemas.read,
      reportingSchema: h.schemas.reporting,
      runner,
      // As `crm projections list` did while the rebuild's connection, and so its lock, was lost.
      onProgress: (p) => {
        if (p.phase !== 'replaying' || dropped) return;
        dropped = sql<{ name: string }>`SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE ${`${h.schemas.read}%`}`
          .execute(h.database.db)
          .then(async ({ rows }) => {
            for (const { name } of rows.filter((r) => isShadowOf(h.schemas.read, r.name)))
              await sql`DROP SCHEMA ${sql.id(name)} CASCADE`.execute(h.database.db);
          });
      },
    }).then(
      () => 'swapped',
      (error: unknown) => error,
    );
    await dropped;
    expect(outcome).toBeInstanceOf(RebuildShadowLost);
    expect((outcome as Error).message).toMatch(/was removed by another crm process .* the live read models are as they were: run the rebuild again/);
    expect(await createReadModelQueries({ db: h.database.db, schema: h.schemas.read }).getCustomer(ids.alice)).toEqual(before);
    const { rows } = await sql<{ state: string }>`SELECT state FROM ${sql.id(h.schemas.read, 'projection_checkpoints')} WHERE name = 'customers'`.execute(
      h.database.db,
    );
    expect(rows[0]!.state).toBe('running');
  });
});

describe('rebuild beside a long reader', () => {
  it('gives way to a reader holding a table (lock timeout), retries, and swaps once the reader is done', async () => {
    // A reader inside a transaction holds the customers table as long as it likes: the swap must not
    // wait on it for ever (nor deadlock a reader that wants a second table): it gives up that attempt.
    const reader = await h.database.db.connection().execute(async (connection) => {
      await sql`BEGIN`.execute(connection);
      await sql`SELECT count(*) FROM ${sql.id(h.schemas.read, 'customers')}`.execute(connection);
      const rebuilding = rebuildProjections({
        ...deps(),
        projections: [projections.find((p) => p.name === 'customers')!],
        schema: h.schemas.read,
        reportingSchema: h.schemas.reporting,
        runner,
      });
      // Until two swap attempts have met the held lock (each waits its lock_timeout, gives up, and
      // retries): seen as a lock request on the table that is not granted, twice, with a gap between.
      const table = `${h.schemas.read}.customers`;
      let attemptsSeen = 0;
      let waiting = false;
      const deadline = Date.now() + 60_000;
      while (attemptsSeen < 2 && Date.now() < deadline) {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks
          WHERE NOT granted AND relation = to_regclass(${table})`.execute(h.database.db);
        const now = rows[0]!.n > 0;
        if (now && !waiting) attemptsSeen++;
        waiting = now;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(attemptsSeen).toBe(2);
      await sql`COMMIT`.execute(connection);
      return rebuilding;
    });
    expect(reader.swapAttempts).toBeGreaterThan(1);
    expect(reader.names).toEqual(['customers']);
  });
});

describe('rebuild beside a BI session on the reporting views', () => {
  /** A BI tool's transaction left open after reading a reporting view; its pid. */
  const biReading = async (view: string): Promise<{ pid: number; end: () => Promise<void> }> => {
    const reader = new pg.Client({ connectionString: h.schemas.url, application_name: 'Metabase' });
    await reader.connect();
    await reader.query('BEGIN');
    await reader.query(`SELECT 1 FROM ${qualified(h.schemas.reporting, view)} LIMIT 1`);
    const { rows } = await reader.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    return { pid: rows[0]!.pid, end: () => reader.query('ROLLBACK').then(() => reader.end()) };
  };
  const rebuildDeals = (more: { swapLockBoundMs?: number } = {}) =>
    rebuildProjections({
      ...deps(),
      projections: [projections.find((p) => p.name === 'deals')!],
      schema: h.schemas.read,
      reportingSchema: h.schemas.reporting,
      runner,
      ...more,
    });

  it('swaps at the first attempt while a session holds a view that does not read the swapped tables (every view was locked)', async () => {
    const bi = await biReading('activities');
    try {
      expect((await rebuildDeals()).swapAttempts).toBe(1);
    } finally {
      await bi.end();
    }
  });

  it('tries the swap again while a session holds a view it replaces, then fails naming that session, the read models as they were', async () => {
    const bi = await biReading('deals');
    const before = await readCheckpoints(h.database.db, h.schemas.read);
    try {
      const failure = await rebuildDeals({ swapLockBoundMs: 1_500 }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ReadModelsHeld);
      const { sessions, message } = failure as ReadModelsHeld;
      expect(sessions.map((s) => [s.pid, s.application, s.state])).toEqual([[bi.pid, 'Metabase', 'idle in transaction']]);
      expect(sessions[0]!.relations).toContain(`${h.schemas.reporting}.deals`);
      expect(message).toMatch(/^could not swap in the rebuilt deals: other PostgreSQL sessions held what it replaces/);
      expect(message).not.toMatch(/catch up/);
      expect((await readCheckpoints(h.database.db, h.schemas.read)).get('deals')?.state).toBe(before.get('deals')?.state);
    } finally {
      await bi.end();
    }
  });
});

describe("others' grants and views on the reporting views", () => {
  it('stay through the views made again at a start and through a swap; one whose column is gone is named', async () => {
    const db = h.database.db;
    const bi = `crm_test_bi_${randomUUID().slice(0, 8)}`;
    const own = `${h.schemas.read}_own`;
    const customers = sql.id(h.schemas.reporting, 'customers');
    await sql`CREATE ROLE ${sql.id(bi)}`.execute(db);
    try {
      await sql`GRANT USAGE ON SCHEMA ${sql.id(h.schemas.reporting)} TO ${sql.id(bi)}`.execute(db);
      await sql`GRANT SELECT ON ${customers} TO ${sql.id(bi)}`.execute(db);
      // A company's own views: one on a reporting view, one on that, each granted to the BI role.
      await sql`CREATE SCHEMA ${sql.id(own)}`.execute(db);
      await sql`CREATE VIEW ${sql.id(own, 'top')} AS SELECT customer_id, name, revenue FROM ${customers} ORDER BY revenue DESC`.execute(db);
      await sql`CREATE VIEW ${sql.id(own, 'top_ids')} AS SELECT customer_id FROM ${sql.id(own, 'top')}`.execute(db);
      await sql`COMMENT ON VIEW ${sql.id(own, 'top')} IS 'Best customers'`.execute(db);
      await sql`GRANT SELECT ON ${sql.id(own, 'top')} TO ${sql.id(bi)}`.execute(db);
      // Column by column, with a column's comment; and a column of a reporting view itself.
      await sql`GRANT SELECT (customer_id) ON ${sql.id(own, 'top_ids')} TO ${sql.id(bi)}`.execute(db);
      await sql`COMMENT ON COLUMN ${sql.id(own, 'top_ids', 'customer_id')} IS 'Whose'`.execute(db);
      await sql`GRANT SELECT (deal_id, amount) ON ${sql.id(h.schemas.reporting, 'deals')} TO ${sql.id(bi)}`.execute(db);
      const standing = async () => {
        const { rows } = await sql<{
          reporting: boolean;
          top: boolean;
          ids: boolean;
          deals: boolean;
          comment: string | null;
          column: string | null;
          n: number;
        }>`
          SELECT has_table_privilege(${bi}, ${`"${h.schemas.reporting}".customers`}, 'SELECT') AS reporting,
                 has_table_privilege(${bi}, ${`"${own}".top`}, 'SELECT') AS top,
                 has_column_privilege(${bi}, ${`"${own}".top_ids`}, 'customer_id', 'SELECT') AS ids,
                 has_column_privilege(${bi}, ${`"${h.schemas.reporting}".deals`}, 'amount', 'SELECT') AS deals,
                 obj_description(${`"${own}".top`}::regclass, 'pg_class') AS comment,
                 col_description(${`"${own}".top_ids`}::regclass, 1) AS column,
                 (SELECT count(*)::int FROM ${sql.id(own, 'top_ids')}) AS n`.execute(db);
        return rows[0];
      };
      const before = await standing();
      expect(before).toMatchObject({ reporting: true, top: true, ids: true, deals: true, comment: 'Best customers', column: 'Whose' });

      // A start (or any crm command that prepares the read models) makes the views again.
      expect(await createReportingViews(db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections })).toEqual({ notRestored: [] });
      expect(await standing()).toEqual(before);

      // A rebuild drops the tables the views read and swaps the new ones in; a materialized view on
      // them goes, and is named.
      await sql`CREATE MATERIALIZED VIEW ${sql.id(own, 'frozen')} AS SELECT customer_id FROM ${customers}`.execute(db);
      const rebuilt = await rebuildProjections({
        ...deps(),
        projections: [projections.find((p) => p.name === 'customers')!],
        schema: h.schemas.read,
        reportingSchema: h.schemas.reporting,
        runner,
      });
      expect(rebuilt.notRestored).toEqual([`${own}.frozen`]);
      expect(await standing()).toEqual(before);

      // A view reading a column that a later version's view no longer has (an older view with a column
      // ours has not): it cannot be made again, and is named; ours is made whole.
      await sql`DROP VIEW ${customers} CASCADE`.execute(db);
      await sql`CREATE VIEW ${customers} AS SELECT customer_id, 1 AS legacy_column FROM ${sql.id(h.schemas.read, 'customers')}`.execute(db);
      await sql`CREATE VIEW ${sql.id(own, 'gone')} AS SELECT legacy_column FROM ${customers}`.execute(db);
      const made = await createReportingViews(db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections });
      expect(made.notRestored).toEqual([`${own}.gone`]);
      const { rows } = await sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
        WHERE table_schema = ${h.schemas.reporting} AND table_name = 'customers' ORDER BY ordinal_position`.execute(db);
      expect(rows.map((r) => r.column_name)).toEqual(REPORTING_VIEWS.find((v) => v.name === 'customers')!.columns.map(([c]) => c));
    } finally {
      await sql`DROP SCHEMA IF EXISTS ${sql.id(own)} CASCADE`.execute(db);
      await sql`DROP OWNED BY ${sql.id(bi)}`.execute(db);
      await sql`DROP ROLE ${sql.id(bi)}`.execute(db);
    }
  });
});

describe('rebuild under steady writes', () => {
  it('swaps within a few attempts while three writers never pause, equal to a fresh replay', async () => {
    // The multi-table projections: their live batches hold one table while writing the next.
    const names = ['customers', 'customer_timeline'];
    let writing = true;
    const written: string[] = [];
    const writer = async (w: number) => {
      for (let i = 0; writing; i++) {
        const id = randomUUID();
        await h.run({ type: 'RegisterCustomer', customerId: id, name: `Steady ${w}-${i}`, email: `steady${w}-${i}@example.com` });
        written.push(id);
      }
    };
    const writers = [0, 1, 2].map(writer);
    let result: Awaited<ReturnType<typeof rebuildProjections>>;
    try {
      // Let the live runner get busy first, so it is moving while the shadow replays and swaps.
      while (written.length < 10) await new Promise((r) => setTimeout(r, 10));
      result = await rebuildProjections({ ...deps(), schema: h.schemas.read, reportingSchema: h.schemas.reporting, names, runner, maxSwapAttempts: 3 });
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    expect(result.names).toEqual(names);
    expect(result.swapAttempts).toBeGreaterThanOrEqual(1);
    expect(result.swapAttempts).toBeLessThanOrEqual(3);
    await runner.waitForPosition(h.lastPosition(), 10_000);
    const fresh = await replayInto({ ...deps(), schema: `${h.schemas.read}_steady`, untilPosition: h.lastPosition() });
    const comparison = await compareSchemas(h.database.db, h.schemas.read, fresh.schema, tables);
    expect(comparison.filter((t) => !t.equal)).toEqual([]);
    const queries = createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
    for (const id of written.slice(-3)) expect(await queries.getCustomer(id), id).toBeDefined();
  });
});

describe('version change', () => {
  it("puts right a projection whose checkpoint is past the store's last event: failed at start, rebuilt, then following new events", async () => {
    const schema = `${h.schemas.read}_ahead`;
    const reportingSchema = `${h.schemas.read}_aheadrep`;
    await projectAll(h, schema, projections);
    const head = await h.store.headPosition();
    // As a store restored from an older backup leaves it: the read models hold more than the events.
    await sql`UPDATE ${sql.id(schema, 'projection_checkpoints')} SET position = ${(head + (1n << 40n)).toString()}::bigint WHERE name = 'customers'`.execute(
      h.database.db,
    );
    const restarted = new ProjectionRunner({ db: h.database.db, store: h.store, schema, projections, codec: h.codec, concurrent: true });
    await restarted.start();
    try {
      const state = async () =>
        (
          await sql<{
            state: string;
            position: string;
          }>`SELECT state, position::text FROM ${sql.id(schema, 'projection_checkpoints')} WHERE name = 'customers'`.execute(h.database.db)
        ).rows[0]!;
      expect((await state()).state).toBe('failed');
      // It could not swap before: the shadow never reached a checkpoint naming events that do not exist.
      await rebuildProjections({ ...deps(), schema, reportingSchema, names: ['customers'], runner: restarted, maxSwapAttempts: 3 });
      expect(await state()).toEqual({ state: 'running', position: expect.any(String) as string });
      expect(BigInt((await state()).position)).toBeLessThanOrEqual(await h.store.headPosition());
      const id = randomUUID();
      await h.run({ type: 'RegisterCustomer', customerId: id, name: 'After the restore', email: `restored-${id}@example.com` });
      await restarted.waitForPosition(h.lastPosition(), 10_000);
      const queries = createReadModelQueries({ db: h.database.db, schema });
      expect((await queries.getCustomer(id))?.name).toBe('After the restore');
    } finally {
      await restarted.stop();
    }
  });

  it('refuses to follow read models a newer version built, and rebuilds none of them back', async () => {
    const schema = `${h.schemas.read}_newer`;
    await projectAll(h, schema, projections);
    // As an older process sees the read models of a newer one: its customers projection is one version behind.
    const older = projections.map((p) => (p.name === 'customers' ? { ...p, version: p.version - 1 } : p));
    const rebuilt: string[][] = [];
    const stale = new ProjectionRunner({
      db: h.database.db,
      store: h.store,
      schema,
      projections: older,
      codec: h.codec,
      onVersionChange: async (names) => void rebuilt.push(names),
    });
    const refused = await stale.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    await stale.stop();
    expect(refused).toBeInstanceOf(ReadModelsFromNewerVersion);
    expect((refused as Error).message).toMatch(/customers \(version \d+\) were built by a newer version of the CRM/);
    expect(rebuilt).toEqual([]);
    const { rows } = await sql<{ version: number }>`SELECT version FROM ${sql.id(schema, 'projection_checkpoints')} WHERE name = 'customers'`.execute(
      h.database.db,
    );
    expect(rows[0]!.version).toBe(projections.find((p) => p.name === 'customers')!.version);
  });

  it('an older process still running when a newer one rebuilt a read model writes nothing more to it, and says so', async () => {
    const schema = `${h.schemas.read}_side`;
    await projectAll(h, schema, projections);
    const customers = projections.find((p) => p.name === 'customers')!;
    let swapped = false;
    let olderAppliesAfterSwap = 0;
    const older = projections.map((p) =>
      p === customers
        ? {
            ...p,
            apply: async (...args: Parameters<typeof p.apply>) => {
              if (swapped) olderAppliesAfterSwap += 1;
              return p.apply(...args);
            },
          }
        : p,
    );
    const said: { message: string; details?: Record<string, unknown> }[] = [];
    const first = new ProjectionRunner({
      db: h.database.db,
      store: h.store,
      schema,
      projections: older,
      codec: h.codec,
      concurrent: true,
      log: (message, details) => void said.push({ message, details }),
    });
    await first.start();
    const bumped = projections.map((p) => (p === customers ? { ...p, version: p.version + 1 } : p));
    // The newer process runs the customers projection alone, as a worker holding only its lease would:
    // two runners applying the same projection without leases race on its rows.
    const second = rebuildingRunner(
      h,
      schema,
      `${h.schemas.read}_siderep`,
      bumped.filter((p) => p.name === 'customers'),
    );
    try {
      await second.start();
      swapped = true;
      const { position } = await h.run({
        type: 'RegisterCustomer',
        customerId: randomUUID(),
        name: 'Registered after the upgrade',
        email: `after-upgrade-${randomUUID()}@example.com`,
        source: 'web',
        marketingConsent: false,
      });
      await second.waitForPosition(position, 10_000);
      // The older process learns it from its next batch, or from its watchdog's next look.
      await expect.poll(async () => (await first.status()).find((s) => s.name === 'customers')?.state, { timeout: 5_000 }).toBe('superseded');
      await first.waitForPosition(position, 5_000);
      expect(olderAppliesAfterSwap).toBe(0);
      // A read waiting past what the newer process wrote ends at once. (Learnt from a batch, the older
      // runner holds its own last position; learnt from its watchdog's reload, the newer one's, which is
      // `position` itself: one past it is short in both.)
      expect(first.stoppedBefore(position + 1n, ['customers'])?.message).toMatch(/customers \(superseded at \d+\).*stop it, or run that version here/);
      const status = (await first.status()).find((s) => s.name === 'customers')!;
      expect(status.lastError).toMatch(
        new RegExp(`rebuilt by version ${customers.version + 1} of this projection, and this process runs version ${customers.version}`),
      );
      expect(said.filter((s) => s.message === 'projection stopped here: another version of the CRM rebuilt its read model')).toHaveLength(1);
      // The other projections of the older process carry on: only the one rebuilt changed hands.
      expect((await first.status()).filter((s) => s.state !== 'running').map((s) => s.name)).toEqual(['customers']);
      const { rows } = await sql<{ version: number; position: string }>`SELECT version, position::text FROM ${sql.id(schema, 'projection_checkpoints')}
        WHERE name = 'customers'`.execute(h.database.db);
      expect(rows[0]!.version).toBe(customers.version + 1);
      const reference = await replayInto({ ...deps(), projections: bumped, schema: `${h.schemas.read}_sideref`, untilPosition: BigInt(rows[0]!.position) });
      expect((await compareSchemas(h.database.db, schema, reference.schema, ['customers'])).filter((t) => !t.equal)).toEqual([]);
    } finally {
      await second.stop();
      await first.stop();
    }
  });

  it("an older worker gives a superseded projection's lease up for good, and the newer worker takes it over beyond its fair share", async () => {
    const schema = `${h.schemas.read}_hand`;
    await projectAll(h, schema, projections);
    const customers = projections.find((p) => p.name === 'customers')!;
    const bumped = projections.map((p) => (p === customers ? { ...p, version: p.version + 1 } : p));
    const said: { message: string; details?: Record<string, unknown> }[] = [];
    /** A `crm project` worker as runtime/crm.ts wires it; its lease rounds are the test's to run (and one each give-up runs). */
    const worker = (workerId: string, code: Projection[]) => {
      const leases: ProjectionLeases = new ProjectionLeases({
        db: h.database.db,
        schema,
        workerId,
        projections: code.map((p) => p.name),
        leaseSeconds: 30,
        renewEveryMs: 3_600_000,
        onChange: (change) => {
          if (change.acquired.length > 0) void runner.restartSubscription().catch(() => undefined);
        },
        log: (message, details) => void said.push({ message, ...(details ? { details } : {}) }),
      });
      const runner = rebuildingRunner(h, schema, `${h.schemas.read}_handrep`, code, { leases });
      return { leases, runner };
    };
    const older = worker('older', projections);
    const newer = worker('newer', bumped);
    try {
      await older.leases.start();
      await older.runner.start();
      await newer.leases.start();
      // The older worker hands half over (customers among those it keeps), the newer takes it, then rebuilds customers.
      await older.leases.tick();
      await newer.leases.tick();
      expect(older.leases.owns('customers')).toBe(true);
      await newer.runner.start();
      const { position } = await h.run({
        type: 'RegisterCustomer',
        customerId: randomUUID(),
        name: 'Registered during the rolling deploy',
        email: `rolling-${randomUUID()}@example.com`,
        source: 'web',
        marketingConsent: false,
      });
      // The older worker finds customers superseded (its watchdog, or its next batch) and releases its lease at once.
      await expect.poll(async () => (await readLeaseHolders(h.database.db, schema)).get('customers')?.owner ?? null, { timeout: 5_000 }).toBe(null);
      expect(older.leases.owns('customers')).toBe(false);
      // The newer worker's next round takes it over, though it holds its fair share of the others already.
      const taken = await newer.leases.tick();
      expect(taken.acquired).toContain('customers');
      await newer.runner.waitForPosition(position, 10_000);
      // Settled: every lease held, each projection by one worker, and further rounds change nothing.
      expect(await older.leases.tick()).toEqual({ acquired: [], lost: [] });
      expect(await newer.leases.tick()).toEqual({ acquired: [], lost: [] });
      const holders = await readLeaseHolders(h.database.db, schema);
      expect(projections.filter((p) => !holders.get(p.name)?.owner).map((p) => p.name)).toEqual([]);
      expect(holders.get('customers')?.owner).toBe('newer');
      // The newer worker leaves the older one out of its share; the older one never claims customers again.
      await sql`UPDATE ${sql.id(schema, LEASE_TABLE)} SET owner_id = NULL, expires_at = NULL WHERE projection = 'customers'`.execute(h.database.db);
      expect((await older.leases.tick()).acquired).toEqual([]);
      const { rows } = await sql<{ worker_id: string; given_up: string[] }>`SELECT worker_id, given_up FROM ${sql.id(schema, WORKER_TABLE)}
        ORDER BY worker_id`.execute(h.database.db);
      expect(rows).toEqual([
        { worker_id: 'newer', given_up: [] },
        { worker_id: 'older', given_up: ['customers'] },
      ]);
      expect(said).toContainEqual({
        message: 'projection leases changed',
        details: expect.objectContaining({ workerId: 'older', lost: ['customers'], givenUp: ['customers'] }) as Record<string, unknown>,
      });
    } finally {
      await newer.runner.stop();
      await older.runner.stop();
      await newer.leases.stop();
      await older.leases.stop();
    }
  });

  it('a newer version awaits its own rebuild, not superseded: no error from its worker taking the leases, a replica of it lists it as rebuilding', async () => {
    const schema = `${h.schemas.read}_up`;
    await projectAll(h, schema, projections);
    const customers = projections.find((p) => p.name === 'customers')!;
    const bumped = projections.map((p) => (p === customers ? { ...p, version: p.version + 1 } : p));
    // An API replica of the newer version (CRM_PROJECTIONS=off): its runner never starts.
    const replica = new ProjectionRunner({ db: h.database.db, store: h.store, schema, projections: bumped, codec: h.codec });
    expect((await replica.status()).find((s) => s.name === 'customers')).toMatchObject({
      state: 'rebuilding',
      lastError: expect.stringMatching(
        new RegExp(`built by version ${customers.version} of this projection and awaits its rebuild by version ${customers.version + 1}`),
      ),
    });
    // Its worker, as runtime/crm.ts wires it: the leases first, whose first round reloads the checkpoints, then the runner.
    const said: { message: string; level: LogLevel }[] = [];
    const log: Log = (message, _details, level) => void said.push({ message, level: level ?? 'info' });
    let reloaded: Promise<void> | undefined;
    const leases = new ProjectionLeases({
      db: h.database.db,
      schema,
      workerId: 'newer',
      projections: bumped.map((p) => p.name),
      leaseSeconds: 30,
      renewEveryMs: 3_600_000,
      onChange: (change) => {
        if (change.acquired.length > 0) reloaded = worker.restartSubscription().catch(() => undefined);
      },
      log,
    });
    const worker = rebuildingRunner(h, schema, `${h.schemas.read}_uprep`, bumped, { leases, log });
    try {
      await leases.start();
      await reloaded;
      await worker.start();
      expect(said.filter((l) => l.level !== 'info')).toEqual([]);
      expect(said.map((l) => l.message)).toContain('rebuilt projections whose version or variant changed');
      await worker.waitForPosition(h.lastPosition(), 10_000);
      expect((await worker.status()).find((s) => s.name === 'customers')).toMatchObject({ state: 'running', version: customers.version + 1 });
      // The replica sees the rebuilt read model as its own now.
      expect((await replica.status()).find((s) => s.name === 'customers')).toMatchObject({ state: 'running', lastError: null });
    } finally {
      await worker.stop();
      await leases.stop();
    }
  });

  it('rebuilds a projection whose version changed at start, the old tables serving meanwhile', async () => {
    const schema = `${h.schemas.read}_v`;
    const reportingSchema = `${h.schemas.read}_vrep`;
    await projectAll(h, schema, projections);
    const bumped = projections.map((p) => (p.name === 'customers' ? { ...p, version: p.version + 1 } : p));
    const rebuilt: string[][] = [];
    const second: ProjectionRunner = new ProjectionRunner({
      db: h.database.db,
      store: h.store,
      schema,
      projections: bumped,
      codec: h.codec,
      concurrent: true,
      onVersionChange: async (names) => {
        rebuilt.push(names);
        await rebuildProjections({ ...deps(), projections: bumped, schema, reportingSchema, names, runner: second });
      },
    });
    await second.start();
    try {
      expect(rebuilt).toEqual([['customers']]);
      const { rows } = await sql<{
        name: string;
        version: number;
      }>`SELECT name, version FROM ${sql.id(schema, 'projection_checkpoints')} ORDER BY name`.execute(h.database.db);
      expect(rows.find((r) => r.name === 'customers')!.version).toBe(projections.find((p) => p.name === 'customers')!.version + 1);
      await second.waitForPosition(h.lastPosition(), 10_000);
      const reference = await replayInto({ ...deps(), schema: `${h.schemas.read}_vref`, untilPosition: h.lastPosition() });
      const comparison = await compareSchemas(h.database.db, schema, reference.schema, tables);
      expect(comparison.filter((t) => !t.equal)).toEqual([]);
    } finally {
      await second.stop();
    }
  });
  it('upgrades campaigns from SQL-generated ROI, conversion rate and over-budget (version 3) to the columns the fold writes, the views unchanged', async () => {
    const schema = `${h.schemas.read}_v3`;
    const reportingSchema = `${h.schemas.read}_v3rep`;
    await projectAll(h, schema, projections);
    // The table as version 3 made it: the three figures generated by PostgreSQL.
    const t = sql.id(schema, 'campaigns');
    await sql`ALTER TABLE ${t} DROP COLUMN roi, DROP COLUMN conversion_rate, DROP COLUMN over_budget`.execute(h.database.db);
    await sql`ALTER TABLE ${t}
      ADD COLUMN roi numeric GENERATED ALWAYS AS (CASE WHEN costs > 0 THEN round((revenue - costs) / costs, 6) END) STORED,
      ADD COLUMN conversion_rate numeric GENERATED ALWAYS AS (CASE WHEN sent_count > 0 THEN round(converted_count::numeric / sent_count, 6) END) STORED,
      ADD COLUMN over_budget boolean GENERATED ALWAYS AS (costs > budget) STORED`.execute(h.database.db);
    await sql`UPDATE ${sql.id(schema, 'projection_checkpoints')} SET version = 3 WHERE name = 'campaigns'`.execute(h.database.db);
    const queries = createReadModelQueries({ db: h.database.db, schema });
    const campaignIds = [ids.campaign, ids.cancelledCampaign];
    const views = async () =>
      JSON.stringify([await Promise.all(campaignIds.map((id) => queries.getCampaign(id))), await queries.listCampaigns({ sort: '-roi' })]);
    const before = await views();
    expect(before).toContain('"roi":1.5,"conversionRate":0.5,"overBudget":false');
    const generated = async () =>
      (
        await sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
          WHERE table_schema = ${schema} AND table_name = 'campaigns' AND is_generated = 'ALWAYS' ORDER BY 1`.execute(h.database.db)
      ).rows.map((r) => r.column_name);
    expect(await generated()).toEqual(['conversion_rate', 'over_budget', 'roi']);

    const second = rebuildingRunner(h, schema, reportingSchema, projections);
    await second.start();
    try {
      expect(await generated()).toEqual([]);
      expect(await views()).toBe(before);
    } finally {
      await second.stop();
    }
  });
});
