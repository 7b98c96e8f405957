import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { newestPosition } from '../support/events.ts';
import { testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';

/**
 * The analytics aggregates hold amounts converted to the base currency. Started with another
 * CRM_BASE_CURRENCY, the CRM rebuilds them (as for a new version of the projection) instead of going
 * on with figures in the old currency labelled with the new one.
 */
const schemas = testSchemas('analytics_base_change');
afterAll(async () => schemas.dropSchemas());

const admin = { actor: { userId: 'u-admin', roles: ['admin' as const] } };
const ctx = () => ({ ...admin, correlationId: randomUUID() });

const withRuntime = async <T>(baseCurrency: string, use: (runtime: CrmRuntime) => Promise<T>): Promise<T> => {
  const runtime = await openCrm(testConfig(schemas, { CRM_BASE_CURRENCY: baseCurrency }));
  try {
    await runtime.startProjections();
    await runtime.runner.waitForPosition(await newestPosition(runtime.store), 60_000);
    return await use(runtime);
  } finally {
    await runtime.close();
  }
};

const analyticsOf = async (runtime: CrmRuntime, customerId: string) => {
  const { rows } = await sql<{ total_value: string; base_currency: string; variant: string }>`
    SELECT c.total_value::text AS total_value, s.base_currency, k.variant
      FROM ${sql.id(schemas.read, 'analytics_customer')} c, ${sql.id(schemas.read, 'analytics_state')} s, ${sql.id(schemas.read, 'projection_checkpoints')} k
     WHERE c.customer_id = ${customerId}::uuid AND k.name = 'analytics'`.execute(runtime.database.db);
  return rows[0];
};

describe('a new base currency', () => {
  it('rebuilds the analytics in it', async () => {
    const customerId = randomUUID();
    await withRuntime('EUR', async (runtime) => {
      await runtime.commands.execute({ type: 'SetExchangeRate', currency: 'USD', rate: 0.9, validFrom: '2025-01-01T00:00:00Z', baseCurrency: 'EUR' }, ctx());
      await runtime.commands.execute({ type: 'RegisterCustomer', customerId, name: 'Ada', email: `${customerId}@base.example` }, ctx());
      await runtime.commands.execute(
        { type: 'RecordPurchase', customerId, orderId: 'o-1', amount: 100, currency: 'USD', occurredAt: '2025-03-01T00:00:00Z' },
        ctx(),
      );
    });
    await withRuntime('EUR', async (runtime) => {
      expect(await analyticsOf(runtime, customerId)).toEqual({ total_value: '90.0000', base_currency: 'EUR', variant: 'base currency EUR' });
    });
    // 100 USD is 100 in USD; before, the stored 90 (EUR) stayed and was read as USD.
    await withRuntime('USD', async (runtime) => {
      expect(await analyticsOf(runtime, customerId)).toEqual({ total_value: '100.0000', base_currency: 'USD', variant: 'base currency USD' });
    });
  });
});
