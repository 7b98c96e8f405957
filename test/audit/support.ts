import { createHash, randomUUID } from 'node:crypto';
import { sql, type QueryExecutorProvider } from 'kysely';
import { expect } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import type { AuditDeps } from '../../audit/deps.ts';
import { sealChain, verifyGlobalChain } from '../../audit/sql/chain.ts';
import type { AppendResult, EventStore } from '../../eventstore/contract.ts';
import { eventHash } from '../../eventstore/postgres/chain.ts';
import type { SqlDatabase } from '../../eventstore/postgres/database.ts';
import type { PersonalData } from '../../eventstore/personal-data.ts';
import { schemaVersionOf, type CrmEventType } from '../../domain/catalogue.ts';
import { catchUp } from '../../projections/catch-up.ts';

import { personalDataCodec } from '../../projections/codec.ts';
import type { Projection } from '../../projections/projection.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';

/** Metadata of a test event; what is left out gets the command layer's usual values. */
export interface RecordMeta {
  actor?: string;
  roles?: string[];
  correlationId?: string;
  causationId?: string | null;
  occurredAt?: string;
  reason?: string;
}

/** Appends one event the way the command layer does: personal fields encrypted, full metadata. */
export async function recordEvent(
  store: EventStore,
  personalData: PersonalData,
  stream: string,
  type: CrmEventType,
  data: Record<string, unknown>,
  meta: RecordMeta = {},
): Promise<AppendResult & { id: string }> {
  const id = randomUUID();
  const result = await store.appendToStream(stream, [
    {
      id,
      type,
      data: await personalData.protect(type, data),
      metadata: {
        actor: { userId: meta.actor ?? 'sam@sales', roles: meta.roles ?? ['sales'] },
        correlationId: meta.correlationId ?? randomUUID(),
        causationId: meta.causationId ?? null,
        occurredAt: meta.occurredAt ?? new Date().toISOString(),
        schemaVersion: schemaVersionOf(type),
        command: 'Test',
        ...(meta.reason !== undefined ? { reason: meta.reason } : {}),
      },
    },
  ]);
  return { ...result, id };
}

/** One PostgreSQL event store + personal data per test file, in the file's own schemas. */
export interface AuditHarness {
  schemas: TestSchemas;
  database: SqlDatabase;
  store: EventStore;
  personalData: PersonalData;
  deps: AuditDeps;
  /** Appends one event the way the command layer does: personal fields encrypted, full metadata. */
  record(stream: string, type: CrmEventType, data: Record<string, unknown>, meta?: RecordMeta): Promise<AppendResult & { id: string }>;
  close(): Promise<void>;
}

/**
 * kysely's Migrator introspects every table of the database, which fails with 3F000 when another
 * test file drops a schema at that moment; retry rather than fail the file (reported upstream).
 */
const withMigrationRetry = async <T>(open: () => Promise<T>): Promise<T> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await open();
    } catch (error) {
      const code = (error as { cause?: { code?: string }; code?: string }).cause?.code ?? (error as { code?: string }).code;
      if (code !== '3F000' || attempt >= 5) throw error;
      await sleep(100 * attempt);
    }
  }
};

/**
 * Opens the CRM through the composition root (runtime/crm.ts) in the file's own schemas, without
 * starting the projections: a test plays the projection process itself (`projectAll`).
 */
export async function openAuditHarness(label: string): Promise<AuditHarness> {
  const schemas = testSchemas(label);
  const crm = await withMigrationRetry(() => openCrm(testConfig(schemas), { overrides: { poolMax: 4, publishers: false, chainSealer: false } }));
  const { store, personalData, database } = crm;
  return {
    schemas,
    database,
    store,
    personalData,
    deps: crm.audit.deps,
    record: (stream, type, data, meta) => recordEvent(store, personalData, stream, type, data, meta),
    async close() {
      await crm.close();
      await schemas.dropSchemas();
    },
  };
}

export { customerRegistered } from '../support/fixtures.ts';

/** A deal of `customerId` in its first stage, as the tests' fixtures open it. */
export const dealOpened = (dealId: string, customerId: string, overrides: Record<string, unknown> = {}) => ({
  dealId,
  customerId,
  title: 'Engines',
  amount: 1000,
  currency: 'EUR',
  ownerId: 'sam@sales',
  expectedCloseDate: '2026-03-01',
  stage: 'lead',
  probabilityOverride: null,
  ...overrides,
});

/** A draft e-mail campaign with no schedule, as the tests' fixtures create it. */
export const campaignCreated = (campaignId: string, overrides: Record<string, unknown> = {}) => ({
  campaignId,
  name: 'Spring',
  channel: 'email',
  budget: 100,
  currency: 'EUR',
  schedule: null,
  targetSegment: {},
  ...overrides,
});

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Seals until nothing is left. Sealing stops below the oldest transaction open anywhere in the
 * cluster, and other test files share it, so one pass may legitimately seal less.
 */
export async function sealAll(h: AuditHarness): Promise<number> {
  let total = 0;
  for (let attempt = 0; attempt < 600; attempt++) {
    total += await sealChain(h.database, h.schemas.events);
    if ((await verifyGlobalChain(h.database, h.schemas.events)).unsealed === 0) return total;
    await sleep(50);
  }
  return total;
}

/**
 * Plays the projection process: brings the live read models up to everything appended so far. The
 * feed only shows events below the oldest transaction still open anywhere in the cluster (other
 * test files share it), so it may take a few passes.
 */
export async function projectAll(h: AuditHarness, projections: readonly Projection[]): Promise<void> {
  const { rows } = await sql<{ p: string | null }>`SELECT max(position)::text AS p FROM ${sql.id(h.schemas.events, 'events')}`.execute(h.database.db);
  const target = BigInt(rows[0]?.p ?? '0');
  for (let attempt = 0; attempt < 600; attempt++) {
    const { position } = await catchUp({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: personalDataCodec(h.personalData) });
    if (position >= target) return;
    await sleep(50);
  }
  throw new Error('the live read models did not catch up');
}

/**
 * Puts the log on both sides of a decimal digit boundary, as a cluster does when its transaction
 * counter passes 9,537, 95,367, 953,674...: the first `count` events (the earliest) move to the
 * positions just below the power of ten under the later ones, keeping the feed order, and their
 * streams are re-chained the way `append_events` hashes, so every chain still verifies. Returns the
 * boundary. The shared cluster's counter is wherever other runs left it, so the boundary is
 * computed, not assumed.
 */
export async function straddleDigitBoundary(database: SqlDatabase, schema: string, count: number): Promise<bigint> {
  const events = sql.id(schema, 'events');
  const { rows } = await sql<{ position: string; stream: string }>`
    SELECT e.position::text AS position, e.stream FROM ${events} e ORDER BY e.position`.execute(database.db);
  const later = rows[count];
  if (!later) throw new Error(`straddleDigitBoundary needs more than ${count} events`);
  const boundary = 10n ** BigInt(later.position.length - 1);
  const moved = rows.slice(0, count);
  await database.db.transaction().execute(async (trx) => {
    // Through negative positions, so that no new position meets an old one on the way.
    await sql`UPDATE ${events} SET position = -position WHERE position = ANY(${moved.map((r) => r.position)}::bigint[])`.execute(trx);
    for (const [i, row] of moved.entries()) {
      const position = boundary - BigInt(count - i);
      await sql`UPDATE ${events} SET position = ${position.toString()}::bigint WHERE position = ${(-BigInt(row.position)).toString()}::bigint`.execute(trx);
    }
    for (const stream of new Set(moved.map((r) => r.stream))) await rechainStream(trx, schema, stream);
  });
  return boundary;
}

/**
 * Recomputes a stream's hash chain and head from its rows as they are now, the way `append_events`
 * hashes (what a forger who knows the formula would do).
 */
export async function rechainStream(db: QueryExecutorProvider, schema: string, stream: string): Promise<void> {
  const events = sql.id(schema, 'events');
  const { rows } = await sql<any>`
    SELECT stream, revision, position::text AS position, event_id::text AS event_id, type, data::text AS data, metadata::text AS metadata,
           ((extract(epoch from recorded_at) * 1000000)::bigint)::text AS micros
      FROM ${events} WHERE stream = ${stream} ORDER BY revision`.execute(db);
  let previous: Buffer | null = null;
  for (const row of rows) {
    previous = eventHash(previous, row);
    await sql`UPDATE ${events} SET hash = ${previous} WHERE stream = ${stream} AND revision = ${row.revision}`.execute(db);
  }
  const last = rows[rows.length - 1];
  await sql`UPDATE ${sql.id(schema, 'streams')} SET last_hash = ${previous}, last_position = ${last.position}::bigint WHERE stream = ${stream}`.execute(db);
}

/**
 * What a forger with write access who knows both formulas does: alters an event's amount, re-hashes
 * its stream and every seal from its position on, so that both chains verify again.
 */
export async function forgeChains(db: QueryExecutorProvider, schema: string, stream: string, revision: number): Promise<void> {
  const events = sql.id(schema, 'events');
  const seals = sql.id(schema, 'event_chain_seals');
  const { rows: at } = await sql<{ p: string }>`SELECT position::text AS p FROM ${events} WHERE stream = ${stream} AND revision = ${revision}`.execute(db);
  const from = at[0]!.p;
  await sql`UPDATE ${events} SET data = jsonb_set(data, '{amount}', '7.41') WHERE stream = ${stream} AND revision = ${revision}`.execute(db);
  await rechainStream(db, schema, stream);
  const { rows: before } = await sql<{
    g: Buffer;
  }>`SELECT global_hash AS g FROM ${seals} WHERE position < ${from}::bigint ORDER BY position DESC LIMIT 1`.execute(db);
  let previous: Buffer = before[0]?.g ? Buffer.from(before[0].g) : Buffer.alloc(0);
  const { rows } = await sql<{ position: string; hash: Buffer }>`SELECT s.position::text AS position, e.hash FROM ${seals} s JOIN ${events} e USING (position)
    WHERE s.position >= ${from}::bigint ORDER BY s.position`.execute(db);
  for (const row of rows) {
    previous = createHash('sha256').update(previous).update(row.hash).digest();
    await sql`UPDATE ${seals} SET global_hash = ${previous}, event_hash = ${row.hash} WHERE position = ${row.position}::bigint`.execute(db);
  }
}

/**
 * The issue's reproduction, on a running CRM whose background sealer is on: three concurrent
 * `POST /audit/chain/seal`, three more in a row, all 200; then `crm verify --chain`'s check passes and
 * covers every event (a last requested seal leaves nothing final unsealed).
 */
export async function expectRequestedSealsJoinAndChainsVerify(crm: CrmRuntime, app: CrmApp, adminKey: string): Promise<void> {
  const seal = () => app.inject({ method: 'POST', url: '/audit/chain/seal', headers: { authorization: `Bearer ${adminKey}` } });
  const answers = await Promise.all([seal(), seal(), seal()]);
  for (const answer of answers) expect(answer.statusCode, answer.body).toBe(200);
  for (let i = 0; i < 3; i++) {
    const again = await seal();
    expect(again.statusCode, again.body).toBe(200);
  }
  let verification = await crm.audit.verifyChains();
  for (let attempt = 0; attempt < 100 && verification.global.unsealed > 0; attempt++) {
    await seal();
    await sleep(100);
    verification = await crm.audit.verifyChains();
  }
  expect(verification.firstBroken).toBeUndefined();
  expect(verification).toMatchObject({ ok: true, global: { ok: true, unsealed: 0 } });
  const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM ${sql.id(crm.config.schemas.events, 'events')}`.execute(crm.database.db);
  expect(verification.global.checked).toBe(Number(rows[0]!.n));
}

/**
 * Polls a verification job (`GET /audit/verify/:id`, read by `read`) every 50 ms until it no longer
 * runs, at most `polls` times, and returns it.
 */
export const verificationEnded = async (read: (url: string) => Promise<{ status?: unknown }>, id: string, polls = 600): Promise<any> => {
  for (let i = 0; i < polls; i++) {
    const job = await read(`/audit/verify/${id}`);
    if (job.status !== 'running') return job;
    await sleep(50);
  }
  throw new Error(`verification ${id} still running`);
};
