import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { PUBLISHERS_PARTITION } from '../../integration/publishers.ts';
import { LEASE_TABLE, migrateLeases, WORKER_TABLE } from '../../projections/leases.ts';
import { defaultWorkerId, openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';

/**
 * Two `crm serve` processes on one host and database: the second takes a fallback worker id for its
 * projection leases, and its publishers must hold their lease under that id too. They took the
 * default id (read before the leases had settled theirs), so both processes published under one id,
 * took the publishers' lease from each other and delivered events twice, and the heartbeat they wrote
 * under the other process's id counted it alive after it died, so nobody took its projections over.
 */
const schemas = testSchemas('publisher_worker_id');
afterAll(() => schemas.dropSchemas());

describe("the publishers' lease", () => {
  it('is held under the worker id the projection leases took: a second process on this host takes the fallback id for both', async () => {
    const config = testConfig(schemas);
    // Another live process on this host, heartbeating under the default id (as a first `crm serve` does).
    const other = spawn('sleep', ['60']);
    await once(other, 'spawn');
    const crm = await openCrm(config, { overrides: { chainSealer: false } });
    try {
      const { db } = crm.database;
      const table = (name: string) => sql.id(schemas.read, name);
      await migrateLeases(db, schemas.read);
      await sql`INSERT INTO ${table(WORKER_TABLE)} (worker_id, seen_at, expires_at, host, pid)
        VALUES (${defaultWorkerId(config)}, clock_timestamp(), clock_timestamp() + interval '1 minute', ${hostname()}, ${other.pid})`.execute(db);
      await crm.startProjections();
      const fallback = `${defaultWorkerId(config)}-${process.pid}`;
      const owners = await sql<{ owner_id: string }>`SELECT DISTINCT owner_id FROM ${table(LEASE_TABLE)} WHERE owner_id IS NOT NULL`.execute(db);
      expect(owners.rows).toEqual([{ owner_id: fallback }]);
      const publishers = await sql<{ owner_id: string }>`SELECT owner_id FROM ${table(LEASE_TABLE)} WHERE projection = ${PUBLISHERS_PARTITION}`.execute(db);
      expect(publishers.rows).toEqual([{ owner_id: fallback }]);
      // The other process's heartbeat row is still its own.
      const workers = await sql<{ worker_id: string; pid: number }>`SELECT worker_id, pid FROM ${table(WORKER_TABLE)} ORDER BY worker_id`.execute(db);
      expect(workers.rows).toEqual([
        { worker_id: defaultWorkerId(config), pid: other.pid },
        { worker_id: fallback, pid: process.pid },
      ]);
    } finally {
      other.kill();
      await crm.close();
    }
  }, 60_000);
});
