import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyBatch, decodeBatch } from '../../projections/apply-batch.ts';
import { ensureCheckpoint, migrateCheckpoints, readCheckpoints } from '../../projections/checkpoints.ts';
import type { Projection } from '../../projections/projection.ts';
import { storedEvents } from '../support/events.ts';
import { createHarness, type Harness } from './support.ts';

let h: Harness;

beforeAll(async () => {
  h = await createHarness('durability');
  await h.run({ type: 'RegisterCustomer', name: 'Ada Lovelace', email: `ada-${Date.now()}@example.com` });
});

afterAll(async () => h.close());

describe('read-model batch durability', () => {
  it('commits a batch without waiting for fsync (synchronous_commit off in the batch transaction only), rows and checkpoint together', async () => {
    const settings: string[] = [];
    const probe: Projection = {
      name: 'durability_probe',
      version: 1,
      tables: [],
      migrate: async () => {},
      apply: async ({ trx }) => {
        const { rows } = await sql<{ value: string }>`SELECT current_setting('synchronous_commit') AS value`.execute(trx);
        settings.push(rows[0]!.value);
      },
    };
    const schema = `${h.schemas.read}_durability`;
    await migrateCheckpoints(h.database.db, schema);
    await ensureCheckpoint(h.database.db, schema, probe);
    const events = await storedEvents(h.store);
    const items = await decodeBatch(h.codec, events, () => true);
    const end = events.at(-1)!.position;
    expect(await applyBatch(h.database.db, schema, probe, items, end, { eventsBehind: 0, newestRecordedAt: null })).toEqual({ kind: 'applied', position: end });
    expect(settings).toEqual(['off']);
    expect((await readCheckpoints(h.database.db, schema)).get(probe.name)).toMatchObject({ position: end });
    // Only that transaction: the server's setting outside it is untouched.
    const { rows } = await sql<{ value: string }>`SELECT current_setting('synchronous_commit') AS value`.execute(h.database.db);
    expect(rows[0]!.value).toBe('on');
  });
});
