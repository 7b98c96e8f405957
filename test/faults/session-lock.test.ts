import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { claimShadow, dropAbandonedShadows, newShadowName } from '../../projections/shadows.ts';
import { workLiveness } from '../../projections/work-liveness.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { runCrm, schemaEnv } from '../cli/support.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { FaultProxy } from './proxy.ts';

/**
 * A rebuild (or a verification) marks its shadow schema as in use with a session advisory lock on a
 * connection of its own; any other `crm` process that opens the read models drops a shadow whose lock
 * is free, as one left by a killed process. When PostgreSQL restarts (every session ends, connections
 * are refused for a while, then accepted again) the server lets the lock go with the session. The
 * process still working must take it again by itself, or the next process to start beside it (the
 * `crm serve` an operator restarts after the database came back) drops the shadow under it.
 */
const schemas = testSchemas('session_lock');
const proxy = FaultProxy.before(TEST_DATABASE_URL);
const observer = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
/** What the process runs its work through, straight to PostgreSQL (only the lock goes through the proxy). */
let direct: SqlDatabase;
let crm: CrmRuntime;

beforeAll(async () => {
  await proxy.start();
  crm = await openCrm(testConfig(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL) }));
  direct = connectPostgres(TEST_DATABASE_URL, { max: 2 });
}, 60_000);

afterAll(async () => {
  await crm?.close();
  await direct?.close();
  await proxy.close();
  await observer.end();
  await schemas.dropSchemas();
});

/** Whether another session holds the lock now: what `dropAbandonedShadows` asks before it drops a shadow. */
const heldElsewhere = async (key: string): Promise<boolean> => {
  const client = await observer.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ free: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS free', [key]);
    return !rows[0]!.free;
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
};

const shadowExists = async (name: string) => (await observer.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name])).rowCount === 1;

describe('the session lock that marks a shadow in use', () => {
  it('is taken again by itself after the server restarts, so a process started meanwhile leaves the shadow alone', async () => {
    const sessionLock = crm.readSide.sessionLock!;
    const shadow = newShadowName(schemas.read, 'rebuild');
    const drop = await claimShadow(direct.db, shadow, { sessionLock });
    const key = `crm-shadow:${shadow}`;
    expect(await heldElsewhere(key)).toBe(true);

    // The server restarts: every session ends (the lock with it), new connections are refused for 2 s.
    proxy.refuse();
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await heldElsewhere(key)).toBe(false);
    proxy.pass();
    const back = Date.now();
    let retakenMs: number | undefined;
    while (Date.now() - back < 10_000) {
      if (await heldElsewhere(key)) {
        retakenMs = Date.now() - back;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    console.log(`session lock taken again ${retakenMs ?? 'never (10 s)'} ms after the server accepted connections again`);
    expect(retakenMs, 'the lock was not taken again within 10 s of the server coming back').toBeDefined();

    // A crm command started now (it opens the read models) leaves the shadow of the live work alone.
    const listed = await runCrm(['projections', 'list'], { cwd: tmpdir(), env: schemaEnv(schemas), timeoutMs: 30_000 });
    expect(listed.stderr).not.toMatch(/Error:/);
    expect(await shadowExists(shadow)).toBe(true);

    // Released at the end of the work: the shadow is dropped and the lock is free.
    await drop();
    expect(await shadowExists(shadow)).toBe(false);
    expect(await heldElsewhere(key)).toBe(false);
  }, 30_000);

  it('is not taken for dead by a process that looks the moment the server is back, before the lock is taken again', async () => {
    // The runtime's session lock, as a rebuild's shadow and an HTTP import's job each hold one. The shadow
    // is made here as claimShadow makes it, not through it: a process passes over the shadows it claimed,
    // and this one plays the other process too.
    const sessionLock = crm.readSide.sessionLock!;
    const shadow = newShadowName(schemas.read, 'rebuild');
    const shadowKey = `crm-shadow:${shadow}`;
    const releaseShadow = await sessionLock(shadowKey);
    await sql`CREATE SCHEMA ${sql.id(shadow)}`.execute(direct.db);
    const drop = async () => {
      await sql`DROP SCHEMA IF EXISTS ${sql.id(shadow)} CASCADE`.execute(direct.db);
      await releaseShadow();
    };
    const importKey = `crm-import:${randomUUID()}`;
    const releaseImport = await sessionLock(importKey);
    try {
      proxy.refuse();
      for (const deadline = Date.now() + 5_000; ((await heldElsewhere(shadowKey)) || (await heldElsewhere(importKey))) && Date.now() < deadline;)
        await new Promise((r) => setTimeout(r, 50));
      expect(await heldElsewhere(shadowKey), 'the server let the lock go with its session').toBe(false);
      proxy.pass();
      // Another process looks at once: both locks are free, and taken back within the second that follows.
      const [dropped, importDead] = await Promise.all([
        dropAbandonedShadows(direct.db, schemas.read, { pool: true }),
        workLiveness(direct.db, { sessionLock }).abandoned(direct.db, importKey),
      ]);
      expect(dropped).not.toContain(shadow);
      expect(await shadowExists(shadow)).toBe(true);
      expect(importDead).toBe(false);
      expect(await heldElsewhere(shadowKey)).toBe(true);
    } finally {
      proxy.pass();
      await releaseImport();
      await drop();
    }
    expect(await shadowExists(shadow)).toBe(false);
  }, 30_000);
});
