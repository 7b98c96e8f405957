import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { toProblem } from '../../api/errors.ts';
import type { Role } from '../../api/roles.ts';
import { createCrmCommands } from '../../commands/index.ts';
import { UnreadableEvent } from '../../eventstore/unreadable-event.ts';
import { sealChain } from '../../audit/sql/chain.ts';
import { expectProblem, json, startApi, type ApiHarness } from '../api/support.ts';
import { runCrm, schemaEnv } from '../cli/support.ts';
import { sleep, verificationEnded } from './support.ts';

/**
 * Events changed behind the store, as a tester changes them with SQL on the database: the audit's
 * reads of the past and its checks name the stored event that cannot be read, instead of answering
 * 500, blaming the request, or reporting a replay that stopped as thousands of differing rows. Each
 * case puts the event back as it was.
 */
vi.setConfig({ testTimeout: 120_000 });
let h: ApiHarness;
const folder = mkdtempSync(join(tmpdir(), 'crm-damage-'));
const customerId = randomUUID();
const customerStream = `customer-${customerId}`;
let dealId: string;

const send = (role: Role, method: 'GET' | 'POST', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  h.app.inject({
    method,
    url,
    headers: { ...h.auth(role), ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });

const waitForJob = (id: string) => verificationEnded(async (url) => json(await send('auditor', 'GET', url)), id, 1200);

const events = () => sql.id(h.schemas.events, 'events');

/** Applies `change` to one stored event (SQL behind the store), runs `check`, then puts the event back. */
async function withDamagedEvent(
  stream: string,
  revision: number,
  change: (row: ReturnType<typeof sql>) => ReturnType<typeof sql>,
  check: (position: string) => Promise<void>,
) {
  const { rows } = await sql<{ type: string; data: string; position: string }>`
    SELECT type, data::text AS data, position::text AS position FROM ${events()} WHERE stream = ${stream} AND revision = ${revision}`.execute(h.database.db);
  const original = rows[0]!;
  await sql`UPDATE ${events()} SET ${change(sql``)} WHERE stream = ${stream} AND revision = ${revision}`.execute(h.database.db);
  try {
    await check(original.position);
  } finally {
    await sql`UPDATE ${events()} SET type = ${original.type}, data = ${original.data}::jsonb WHERE stream = ${stream} AND revision = ${revision}`.execute(
      h.database.db,
    );
  }
}

/** The problem every read of the past answers for an event that cannot be read: the event named, the check to run. */
const expectUnreadable = (response: Awaited<ReturnType<typeof send>>, stream: string, revision: number, position: string) => {
  const problem = expectProblem(response, 409, 'invalid-state');
  expect(problem).toMatchObject({ code: 'event.unreadable', details: { stream, revision, position } });
  expect(problem.detail).toContain(`${stream} revision ${revision} (position ${position})`);
  expect(problem.detail).toContain('crm verify --chain');
  expect(problem.errors).toBeUndefined();
};

beforeAll(async () => {
  h = await startApi('audit_damage');
  const registered = await send('sales', 'POST', '/customers', { customerId, name: 'Ada Lovelace', email: 'ada@example.com' });
  expect(registered.statusCode, registered.body).toBe(201);
  const purchase = await send('sales', 'POST', `/customers/${customerId}/purchases`, { orderId: 'o-1', amount: 120.5, currency: 'EUR' });
  expect(purchase.statusCode, purchase.body).toBeLessThan(300);
  const deal = await send('sales', 'POST', '/deals', {
    customerId,
    title: 'Engines',
    amount: 1000,
    currency: 'EUR',
    ownerId: 'sam',
    expectedCloseDate: '2026-12-31',
  });
  expect(deal.statusCode, deal.body).toBe(201);
  dealId = json(deal).id;
  const moved = await send('sales', 'POST', `/deals/${dealId}/stage`, { stage: 'qualified' }, { 'if-match': '"0"' });
  expect(moved.statusCode, moved.body).toBeLessThan(300);
  await h.runner.waitForPosition(BigInt(json(moved).position), 15_000);
}, 120_000);

afterAll(async () => {
  await h?.close();
  rmSync(folder, { recursive: true, force: true });
});

describe('a record as it stood, over an event changed behind the store', () => {
  const now = () => encodeURIComponent(new Date().toISOString());

  it('whose personal field no longer decrypts: the event is named (not a 500), and its history reads it as undecryptable, not masked', async () => {
    // One character of the e-mail's ciphertext changed: the authentication tag no longer verifies.
    const corrupt = () => sql`data = jsonb_set(data, '{email}', to_jsonb(overlay(data->>'email' placing
        CASE WHEN substr(data->>'email', 20, 1) = 'A' THEN 'B' ELSE 'A' END from 20 for 1)))`;
    await withDamagedEvent(customerStream, 0, corrupt, async (position) => {
      expectUnreadable(await send('admin', 'GET', `/customers/${customerId}?asOf=${now()}`), customerStream, 0, position);
      expectUnreadable(await send('auditor', 'GET', `/customers/${customerId}/export`), customerStream, 0, position);
      const history = json(await send('auditor', 'GET', `/audit/streams/${customerStream}`));
      // It read "[masked]", as for a role that may not see personal data: the auditor could not tell it was tampered with.
      expect(history.items[0].data).toMatchObject({ name: '[undecryptable]', email: '[undecryptable]' });
    });
  });

  it('whose type is unknown: the event is named (not a 500) on both paths', async () => {
    const stream = `deal-${dealId}`;
    await withDamagedEvent(
      stream,
      1,
      () => sql`type = 'DealStageRenamedByHand'`,
      async (position) => {
        expectUnreadable(await send('admin', 'GET', `/deals/${dealId}?asOf=${now()}&time=business`), stream, 1, position);
        expectUnreadable(await send('auditor', 'GET', `/audit/state/deal/${dealId}?asOf=${now()}`), stream, 1, position);
      },
    );
  });

  it('a command on a stream holding an unreadable event names the event (it was a 500), and appends nothing', async () => {
    // The command layer folds the customer's stream again: a renamed event type stopped it with an unknown type.
    // A command layer that keeps no fold reads the stream as a process starting now does.
    const uncached = createCrmCommands({ store: h.store, personalData: h.crm.personalData, cachedStreams: 0 });
    await withDamagedEvent(
      customerStream,
      1,
      () => sql`type = 'PurchaseRecordedX'`,
      async (position) => {
        const count = async () =>
          (await sql<{ n: string }>`SELECT count(*)::text AS n FROM ${events()} WHERE stream = ${customerStream}`.execute(h.database.db)).rows[0]!.n;
        const before = await count();
        const refused = await uncached
          .execute(
            { type: 'RecordPurchase', customerId, orderId: 'o-damaged', amount: 5, currency: 'EUR' },
            { actor: { userId: 'clerk', roles: ['sales'] }, correlationId: 'damaged' },
          )
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        expect(refused).toBeInstanceOf(UnreadableEvent);
        expect(refused).toMatchObject({ stream: customerStream, revision: 1, position: BigInt(position) });
        // The API answers it as it answers a read of the past: 409 naming the event.
        const problem = toProblem(refused);
        expect(problem.status).toBe(409);
        expect(problem.extensions).toMatchObject({ code: 'event.unreadable', details: { stream: customerStream, revision: 1, position } });
        expect(await count()).toBe(before);
      },
    );
  });

  it("whose data no longer validates: the event is named, not the caller's query (it was a 400 naming amount in the query)", async () => {
    const stream = `deal-${dealId}`;
    await withDamagedEvent(
      stream,
      0,
      () => sql`data = jsonb_set(data, '{amount}', '"abc"')`,
      async (position) => {
        expectUnreadable(await send('admin', 'GET', `/deals/${dealId}?asOf=${now()}`), stream, 0, position);
        expectUnreadable(await send('auditor', 'GET', `/audit/state/deal/${dealId}?asOf=${now()}`), stream, 0, position);
        // The customer's record counts its deals: the same event is named there.
        expectUnreadable(await send('admin', 'GET', `/customers/${customerId}?asOf=${now()}`), stream, 0, position);
      },
    );
  });
});

describe("a feedback item's texts, over an event changed behind the store", () => {
  it('name the event (not a 500) where the item is read with its body', async () => {
    const submitted = await send('support', 'POST', '/feedback', { customerId, kind: 'complaint', channel: 'email', subject: 'Late', body: 'Still waiting' });
    expect(submitted.statusCode, submitted.body).toBe(201);
    const { id, position: at } = json(submitted);
    await h.runner.waitForPosition(BigInt(at), 15_000);
    const stream = `feedback-${id}`;
    const corrupt = () => sql`data = jsonb_set(data, '{body}', to_jsonb(overlay(data->>'body' placing
        CASE WHEN substr(data->>'body', 20, 1) = 'A' THEN 'B' ELSE 'A' END from 20 for 1)))`;
    await withDamagedEvent(stream, 0, corrupt, async (position) => {
      expectUnreadable(await send('support', 'GET', `/feedback/${id}`), stream, 0, position);
    });
    expect(json(await send('support', 'GET', `/feedback/${id}`)).body).toBe('Still waiting');
  });
});

describe('verification over an event changed behind the store', () => {
  it("names the event the check's own replay could not apply, compares only what it replayed, and gives no advice about the live projections", async () => {
    await withDamagedEvent(
      customerStream,
      1,
      () => sql`data = jsonb_set(data, '{amount}', '"abc"')`,
      async (position) => {
        const started = await send('auditor', 'POST', '/audit/verify', { kind: 'read_models' });
        expect(started.statusCode, started.body).toBe(202);
        const job = await waitForJob(json(started).id);
        expect(job.status, JSON.stringify(job)).toBe('failed');
        // The live projections applied the event before it was changed: none of them is stopped.
        expect(job.result.failedProjections).toEqual([]);
        const failures = job.result.replayFailures as {
          projection: string;
          tables: string[];
          stream: string;
          revision: number;
          position: string;
          error: string;
        }[];
        expect(failures.length).toBeGreaterThan(0);
        expect(failures.map((f) => f.projection)).toContain('customers');
        for (const failure of failures) {
          expect(failure).toMatchObject({ stream: customerStream, revision: 1, position, error: expect.stringContaining('amount') });
        }
        // The tables of a replay that stopped are left out; the rest compare equal.
        const compared = (job.result.tables as { table: string }[]).map((t) => t.table);
        expect(compared).not.toContain('customers');
        expect(compared.length).toBeGreaterThan(0);
        expect(job.result.differences).toBe(0);
        const steps = job.nextSteps.join('\n');
        expect(steps).toContain(`could not apply stream ${customerStream} revision 1 (position ${position})`);
        expect(steps).toContain('`crm verify --chain`');
        expect(steps).not.toContain('`crm projections` shows where');
        expect(steps).not.toContain('`crm rebuild` rebuilds them');

        const cli = await runCrm(['verify'], { cwd: folder, env: schemaEnv(h.schemas), timeoutMs: 120_000 });
        expect(cli.code, cli.stderr).toBe(1);
        expect(cli.stdout).toContain(
          `Verification INCOMPLETE: the verification's replay could not apply the event at stream ${customerStream}, revision 1, position ${position}`,
        );
        expect(cli.stdout).not.toContain('Read models DIFFER');
        expect(cli.stdout).not.toContain('Failed projections');
        expect(cli.stdout).not.toContain('`crm projections` shows where');
      },
    );
  });

  it('a failed chains check withholds the head anchor (an edited event breaks only its stream chain)', async () => {
    for (let attempt = 0; attempt < 100; attempt++) {
      await sealChain(h.database, h.schemas.events);
      const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM ${events()} e
        WHERE NOT EXISTS (SELECT 1 FROM ${sql.id(h.schemas.events, 'event_chain_seals')} s WHERE s.position = e.position)`.execute(h.database.db);
      if (rows[0]!.n === '0') break;
      await sleep(50);
    }
    await withDamagedEvent(
      customerStream,
      1,
      () => sql`data = jsonb_set(data, '{amount}', '7.41')`,
      async () => {
        const started = await send('auditor', 'POST', '/audit/verify', { kind: 'chains' });
        expect(started.statusCode, started.body).toBe(202);
        const job = await waitForJob(json(started).id);
        expect(job.status).toBe('failed');
        expect(job.result).toMatchObject({ ok: false, global: { ok: true }, firstBroken: { chain: 'stream', stream: customerStream, revision: 1 } });
        expect(job.result.headAnchor).toBeNull();
      },
    );
  });
});
