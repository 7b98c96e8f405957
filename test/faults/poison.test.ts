import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { poll, runCrm } from '../cli/support.ts';
import { testSchemas } from '../support/postgres.ts';
import { openTestCrm } from '../support/runtime.ts';

/**
 * A poison event stops only the projections that fail on it, visibly (/ready, /metrics, the
 * reporting view, `crm projections list`), and an operator retries or skips it with `crm projections`;
 * the skip is an audit fact that the read-model verification reports instead of a difference.
 */
const schemas = testSchemas('poison');
const ADMIN_KEY = 'poison-test-admin-key-0123456789';
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  CRM_ADMIN_KEY: ADMIN_KEY,
  LOG_LEVEL: 'silent',
};
const sql = new pg.Pool({ connectionString: schemas.url, max: 2 });
let runtime: CrmRuntime;
let app: CrmApp;

beforeAll(async () => {
  ({ runtime, app } = await openTestCrm(schemas, ADMIN_KEY));
});

afterAll(async () => {
  await app?.close();
  await runtime?.close();
  await sql.end();
  await schemas.dropSchemas();
});

const auth = { authorization: `Bearer ${ADMIN_KEY}` };
const post = async (url: string, body: unknown) => {
  const response = await app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  expect(response.statusCode, response.body).toBeLessThan(300);
  return response.json<{ id: string; position: string }>();
};
type Status = {
  status: string;
  reasons: string[];
  warnings: string[];
  projections: { name: string; state: string; position: string; failedPosition: string | null; failedStream?: string | null; failedEventId?: string | null }[];
};
/** What an admin or auditor reads: the event a failed projection stopped on. */
const ready = async () => (await app.inject({ method: 'GET', url: '/audit/projections', headers: auth })).json<Status>();
const checkpoint = async (name: string) =>
  (
    await sql.query(
      `SELECT state, position::text AS position, failed_position::text AS failed_position FROM "${schemas.read}".projection_checkpoints WHERE name = $1`,
      [name],
    )
  ).rows[0] as { state: string; position: string; failed_position: string | null };

describe('a poison event', () => {
  const customerId = randomUUID();
  // The poison event sits in a stream of its own: the command side never loads it.
  const poisonCustomer = randomUUID();
  const poisonStream = `customer-${poisonCustomer}`;
  let poisonPosition = 0n;
  let poisonId = '';
  const stoppedOnIt = ['customers', 'customer_timeline', 'feedback'];

  it('stops only the projections that fail on it, shown with position, stream and error in /ready, /metrics and the reporting view', async () => {
    await post('/customers', { id: customerId, name: 'Ada Lovelace', email: 'ada@example.com' });
    // Written past the command layer (as a bug in an older version might have): data no projection can decode.
    poisonId = randomUUID();
    const appended = await runtime.store.appendToStream(poisonStream, [
      {
        id: poisonId,
        type: 'CustomerTagged',
        data: { customerId: poisonCustomer, tag: { not: 'a string' } },
        metadata: {
          actor: { userId: 'test', roles: ['admin'] },
          correlationId: 'poison',
          causationId: null,
          occurredAt: new Date().toISOString(),
          schemaVersion: 1,
          command: 'TagCustomer',
        },
      },
    ]);
    poisonPosition = appended.position;
    const status = await poll(
      'the projections to stop',
      async () => {
        const r = await ready();
        return stoppedOnIt.every((name) => r.projections.find((p) => p.name === name)?.state === 'failed') ? r : undefined;
      },
      30_000,
    );
    // Not a reason for not-ready: every replica reads the same read models, and a load balancer taking
    // them all out would turn one bad event into an outage. Shown under warnings instead.
    expect(status.status).toBe('ready');
    expect(status.reasons).toEqual([]);
    // Without a key: the projection, its state and the position, never the stream, the event id or the error text.
    const openAnswer = await app.inject({ method: 'GET', url: '/ready' });
    expect(openAnswer.statusCode, openAnswer.body).toBe(200);
    const open = openAnswer.json<Status>();
    expect(open.status).toBe('ready');
    const openText = JSON.stringify(open);
    for (const hidden of [poisonStream, poisonCustomer, poisonId, 'not a string']) expect(openText).not.toContain(hidden);
    for (const name of stoppedOnIt) {
      expect(open.projections.find((p) => p.name === name)).toMatchObject({ state: 'failed', failedPosition: String(poisonPosition) });
      expect(open.warnings.join('\n')).toContain(`projection ${name} is failed at position ${poisonPosition} (details: GET /audit/projections`);
    }
    expect(open.projections.every((p) => !('owner' in p) && !('lastError' in p))).toBe(true);
    for (const name of stoppedOnIt) {
      expect(status.projections.find((p) => p.name === name)).toMatchObject({
        failedPosition: String(poisonPosition),
        failedStream: poisonStream,
        failedEventId: poisonId,
      });
      expect(status.warnings.join('\n')).toContain(`projection ${name} is failed at position ${poisonPosition} (stream ${poisonStream}, event ${poisonId})`);
    }
    // The others keep running: a deal opened after the poison event is applied.
    const deal = await post('/deals', {
      customerId,
      title: 'Analytical engine',
      amount: 1000,
      currency: 'EUR',
      ownerId: 'owner-1',
      expectedCloseDate: '2027-01-31',
    });
    await poll('the deals projection', async () => (BigInt((await checkpoint('deals')).position) >= BigInt(deal.position) ? true : undefined), 30_000);
    expect((await ready()).projections.find((p) => p.name === 'deals')?.state).toBe('running');
    // Read your writes past the poison event: the answer names the stopped read models at once, rather
    // than answering from the others as if nothing were missing.
    const asked = Date.now();
    const waited = await app.inject({ method: 'GET', url: `/deals/${deal.id}?waitFor=${deal.position}`, headers: auth });
    expect(waited.statusCode, waited.body).toBe(503);
    expect(waited.json()).toMatchObject({ code: 'read-model.stopped', details: { waitFor: String(deal.position) } });
    expect(waited.json().details.stopped.map((s: { name: string }) => s.name)).toContain('customers');
    expect(waited.headers['retry-after']).toBe('30');
    expect(Date.now() - asked).toBeLessThan(3_000);

    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain(`crm_projection_failed{projection="customers",position="${poisonPosition}"} 1`);
    expect(metrics).toMatch(/crm_projection_failed\{projection="deals",position=""\} 0/);
    for (const hidden of [poisonStream, poisonCustomer, poisonId]) expect(metrics).not.toContain(hidden);
    // Only with a key of a role that may audit.
    expect((await app.inject({ method: 'GET', url: '/audit/projections' })).statusCode).toBe(401);

    const { rows } = await sql.query(
      `SELECT state, failed_position::text AS failed_position, failed_stream, last_error FROM "${schemas.reporting}".projection_status WHERE name = 'customers'`,
    );
    expect(rows[0]).toMatchObject({ state: 'failed', failed_position: String(poisonPosition), failed_stream: poisonStream });
    expect(rows[0].last_error).toMatch(/tag/);
  }, 120_000);

  it('crm projections list shows it; retry runs it again (and it stops again on the same event)', async () => {
    const listed = await runCrm(['projections', 'list'], { cwd: tmpdir(), env });
    expect(listed.code, listed.stderr).toBe(1);
    expect(listed.stdout).toMatch(new RegExp(`customers\\s+failed\\s+.*at position ${poisonPosition} \\(stream ${poisonStream}`));
    const before = (await sql.query(`SELECT updated_at FROM "${schemas.read}".projection_checkpoints WHERE name = 'customers'`)).rows[0].updated_at as Date;
    const retried = await runCrm(['projections', 'retry', 'customers'], { cwd: tmpdir(), env });
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toContain('runs again');
    // The running process notices, retries the event and stops on it again: a newer failure, same event.
    await poll(
      'the retry to fail again',
      async () => {
        const { rows } = await sql.query(
          `SELECT state, failed_position::text AS p, updated_at FROM "${schemas.read}".projection_checkpoints WHERE name = 'customers'`,
        );
        return rows[0].state === 'failed' && rows[0].updated_at > before && rows[0].p === String(poisonPosition) ? true : undefined;
      },
      30_000,
    );
  }, 120_000);

  it('crm projections skip records an audit fact, runs the projections again, and verification names the gap', async () => {
    const wrong = await runCrm(['projections', 'skip', 'customers', '--position', String(poisonPosition + 1n), '--reason', 'bad data'], { cwd: tmpdir(), env });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`failed at position ${poisonPosition}`);
    const noReason = await runCrm(['projections', 'skip', 'customers', '--position', String(poisonPosition)], { cwd: tmpdir(), env });
    expect(noReason.code).toBe(2);

    for (const name of stoppedOnIt) {
      const skipped = await runCrm(['projections', 'skip', name, '--position', String(poisonPosition), '--reason', 'tag written by a bug in 0.9'], {
        cwd: tmpdir(),
        env,
      });
      expect(skipped.code, skipped.stderr).toBe(0);
    }
    const facts = await runtime.store.readStream('projection-customers');
    expect(facts).toHaveLength(1);
    expect(facts[0]).toMatchObject({
      type: 'ProjectionEventSkipped',
      data: { projection: 'customers', position: String(poisonPosition), eventId: poisonId, stream: poisonStream, reason: 'tag written by a bug in 0.9' },
    });
    expect((facts[0]!.metadata.actor as { userId: string }).userId).toMatch(/^cli:/);

    // Running again: a change after the poison event reaches the read model.
    const changed = await post(`/customers/${customerId}/tags`, { tag: 'vip' });
    const read = await app.inject({ method: 'GET', url: `/customers/${customerId}?waitFor=${changed.position}`, headers: auth });
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json().tags).toEqual(['vip']);
    // Every projection runs again and catches up (the events that waited behind the poison one are old: ready once applied).
    await poll('every projection ready again', async () => ((await ready()).status === 'ready' ? true : undefined), 60_000);

    const verification = await runtime.audit.verifyReadModels();
    expect(verification.ok, JSON.stringify(verification.firstDifference)).toBe(true);
    expect(verification.skipped.map((s) => s.projection).sort()).toEqual([...stoppedOnIt].sort());
    expect(verification.skipped[0]).toMatchObject({ position: poisonPosition, stream: poisonStream, reason: 'tag written by a bug in 0.9' });
    const verified = await runCrm(['verify'], { cwd: tmpdir(), env });
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toContain(`Gap explained: skipped by cli:`);
    expect(verified.stdout).toContain(
      `customers at position ${poisonPosition} (stream ${poisonStream}, event ${poisonId}), reason: tag written by a bug in 0.9`,
    );
  }, 180_000);
});
