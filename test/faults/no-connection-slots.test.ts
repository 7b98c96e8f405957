import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { poll } from '../cli/support.ts';
import { testSchemas, TEST_DATABASE_URL } from '../support/postgres.ts';
import { openTestCrm } from '../support/runtime.ts';

/**
 * PostgreSQL with no free connection slots (SQLSTATE 53300), made real with a role's CONNECTION
 * LIMIT: the CRM runs as a role of its own, and once it is up the limit drops to 0 and its sessions
 * are ended, so every new connection is refused as a server whose max_connections are taken refuses it
 * (superusers are exempt from both, hence the role).
 */
const role = `crm_slots_${process.pid}`;
const admin = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
const url = new URL(TEST_DATABASE_URL);
url.username = role;
const schemas = { ...testSchemas('no_slots'), url: url.toString() };
let runtime: CrmRuntime | undefined;
let app: CrmApp | undefined;

beforeAll(async () => {
  await admin.query(`DROP ROLE IF EXISTS ${role}`);
  await admin.query(`CREATE ROLE ${role} LOGIN`);
  await admin.query(`GRANT CREATE ON DATABASE "${url.pathname.slice(1)}" TO ${role}`);
  ({ runtime, app } = await openTestCrm(schemas, 'no-slots-test-admin-key-0123456789'));
});

afterAll(async () => {
  await admin.query(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
  await app?.close();
  await runtime?.close();
  await schemas.dropSchemas();
  await admin.query(`REVOKE CREATE ON DATABASE "${url.pathname.slice(1)}" FROM ${role}`);
  await admin.query(`DROP ROLE ${role}`);
  await admin.end();
});

describe('no free connection slots', () => {
  it('/ready names them (53300) and what to do, not an unreachable server with advice about DATABASE_URL', async () => {
    expect((await app!.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    await admin.query(`ALTER ROLE ${role} CONNECTION LIMIT 0`);
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]);
    const reason = await poll('/ready to name the event store', async () => {
      const ready = await app!.inject({ method: 'GET', url: '/ready' });
      return ready.statusCode === 503
        ? ready.json<{ reasons: string[] }>().reasons.find((r) => r.startsWith('event store: ') && r.includes('53300'))
        : undefined;
    });
    const at = `postgres://127.0.0.1:${url.port || '5432'}${url.pathname}`;
    expect(reason).toBe(
      `event store: PostgreSQL at ${at} has no free connection slots (max_connections) (53300: too many connections for role "${role}"). ` +
        "Retry shortly; if it lasts, end idle sessions (pg_stat_activity), raise the server's max_connections, or run fewer CRM processes.",
    );
  });
});
