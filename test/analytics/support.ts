import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll } from 'vitest';
import { createAnalyticsProjection, type AnalyticsProjectionOptions } from '../../analytics/projection.ts';
import type { CrmEvent } from '../../domain/catalogue.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import type { ProjectedEvent } from '../../projections/projection.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * One test file's PostgreSQL: its own schemas (dropped after the file), `db` once connected, and
 * `run`, which migrates a schema and applies the analytics projection to it batch by batch.
 */
export function analyticsTestDatabase(label: string, options: AnalyticsProjectionOptions = {}) {
  let database: SqlDatabase | undefined;
  const harness = {
    schemas: testSchemas(label),
    db: undefined as unknown as Kysely<unknown>,
    async run(schema: string, batches: ProjectedEvent[][]) {
      const projection = createAnalyticsProjection(options);
      await projection.migrate(harness.db, schema);
      for (const batch of batches) await harness.db.transaction().execute((trx) => projection.apply({ trx, schema }, batch));
    },
  };
  beforeAll(() => {
    database = connectPostgres(harness.schemas.url, { max: 3 });
    harness.db = database.db;
  });
  afterAll(async () => {
    await database?.close();
    await harness.schemas.dropSchemas();
  });
  return harness;
}

let position = 0n;

/** A decoded event as the runner would hand it to a projection. */
export function projected(event: CrmEvent, occurredAt: string): ProjectedEvent {
  position += 1n;
  return {
    event,
    id: randomUUID(),
    stream: 'test',
    revision: 0,
    position,
    recordedAt: new Date(occurredAt),
    metadata: {
      actor: { userId: 'tester', roles: ['admin'] },
      correlationId: 'c',
      causationId: null,
      occurredAt,
      schemaVersion: 1,
      command: 'Test',
    },
  };
}

export const purchase = (customerId: string, orderId: string, amount: number, at: string) =>
  projected({ type: 'PurchaseRecorded', data: { customerId, orderId, amount, currency: 'EUR' } }, at);

export const refund = (customerId: string, orderId: string, amount: number, at: string) =>
  projected({ type: 'PurchaseRefunded', data: { customerId, orderId, refundId: `r-${orderId}-${at}`, amount, currency: 'EUR', reason: null } }, at);

export const registered = (customerId: string, at: string) =>
  projected(
    {
      type: 'CustomerRegistered',
      data: { customerId, name: 'x', email: 'x@example.com', phone: null, company: null, tags: [], source: null, marketingConsent: true },
    },
    at,
  );
