import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { testSchemas } from '../support/postgres.ts';
import { fetchCaughtUp, runCrm, schemaEnv, Server } from './support.ts';

/**
 * A team outgrowing the embedded store moves it to PostgreSQL with `crm move-store`, and the CRM
 * started there carries on as if nothing happened: the same events with their positions, ids, actors
 * and record times (as-of answers alike), chains that verify to the same head, API keys that work,
 * keyed requests answered as the first time, forgotten customers still forgotten, new events after
 * the copied ones. `crm export`/`crm import` kept none of that.
 */
const folder = mkdtempSync(join(tmpdir(), 'crm-move-store-'));
const schemas = testSchemas('move_store');
const ADMIN_KEY = 'move-store-test-admin-key-0123456789';
const embedded = {
  CRM_DATA_DIR: join(folder, 'data'),
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  CRM_DEMO: '0',
  CRM_ADMIN_KEY: ADMIN_KEY,
  PORT: '0',
  LOG_LEVEL: 'warn',
};
const onPostgres = schemaEnv(schemas, { CRM_ADMIN_KEY: ADMIN_KEY, PORT: '0' });
const servers: Server[] = [];

afterAll(async () => {
  for (const server of servers) server.kill();
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

const start = async (env: Record<string, string>): Promise<{ server: Server; url: string }> => {
  const server = new Server(folder, env);
  servers.push(server);
  const [, url] = await server.waitFor(/API:\s+(http:\/\/\S+)/, 240_000, 'stderr');
  return { server, url: url! };
};

/** A request with a key, answered as JSON (or as text for the NDJSON log). */
const call = async (url: string, key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  const json = /^application\/(problem\+)?json$/.test(response.headers.get('content-type')?.split(';')[0] ?? '')
    ? (JSON.parse(text) as Record<string, any>)
    : undefined;
  return { status: response.status, text, json };
};

describe('crm move-store', () => {
  it('copies the embedded store exactly, and the CRM started on PostgreSQL answers as before', async () => {
    // Refused before anything opens: no such server.
    const unreachable = await runCrm(['move-store', '--to', 'postgres://postgres@127.0.0.1:1/crm'], { cwd: folder, env: embedded });
    expect(unreachable.code, unreachable.stderr).toBe(69);
    expect(unreachable.stderr).toContain('cannot reach the target PostgreSQL at postgres://127.0.0.1:1/crm');
    expect(unreachable.stderr).toContain('Nothing was copied');

    // The embedded store, written through the API as a team would.
    const first = await start(embedded);
    const admin = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => call(first.url, ADMIN_KEY, method, path, body, headers);
    const sales = await admin('POST', '/admin/api-keys', { name: 'sales laptop', role: 'sales' });
    expect(sales.status, sales.text).toBe(201);
    const salesKey = String(sales.json!.key);
    const ada = await call(first.url, salesKey, 'POST', '/customers', { name: 'Ada Lovelace', email: 'ada@example.com' }, { 'idempotency-key': 'ada-signup' });
    expect(ada.status, ada.text).toBe(201);
    const adaId = String(ada.json!.id);
    const purchase = await admin(
      'POST',
      `/customers/${adaId}/purchases`,
      { orderId: 'A-1', amount: 120.5, currency: 'EUR', occurredAt: '2025-03-01T09:00:00Z' },
      { 'idempotency-key': 'ada-order-1' },
    );
    expect(purchase.status, purchase.text).toBe(200);
    const bob = await admin('POST', '/customers', { name: 'Bob Forgotten', email: 'bob@example.com' });
    const bobId = String(bob.json!.id);
    expect((await admin('POST', `/customers/${bobId}/forget`, {})).status).toBeLessThan(300);
    await admin('POST', `/customers/${adaId}/purchases`, { orderId: 'A-2', amount: 30, currency: 'EUR' });
    const log = await admin('GET', '/audit/events?format=ndjson');
    expect(log.status).toBe(200);
    const recorded = log.text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { position: string; recordedAt: string });
    expect(recorded.length).toBeGreaterThanOrEqual(5);
    // As of the record time of Ada's first purchase: before her second.
    const asOfPath = `/audit/state/customer/${adaId}?asOf=${encodeURIComponent(recorded.find((e) => e.position === String(purchase.json!.position))!.recordedAt)}`;
    const asOf = await admin('GET', asOfPath);
    expect(asOf.status, asOf.text).toBe(200);
    // Sealed by the running server: the head move-store compares.
    expect((await admin('POST', '/audit/chain/seal', {})).status).toBeLessThan(300);

    // The store is held by crm serve: refused, naming the process.
    const inUse = await runCrm(['move-store', '--to', schemas.url], { cwd: folder, env: embedded, timeoutMs: 240_000 });
    expect(inUse.code, inUse.stderr).toBe(69);
    expect(inUse.stderr).toContain(`in use by another crm process (pid ${first.server.pid})`);
    expect(await first.server.stop()).toBe(0);

    const moved = await runCrm(['move-store', '--to', schemas.url], { cwd: folder, env: embedded, timeoutMs: 300_000 });
    expect(moved.code, `${moved.stdout}\n${moved.stderr}`).toBe(0);
    expect(moved.stdout).toMatch(/^ok {3}events +\d+ rows$/m);
    expect(moved.stdout).toMatch(/^ok {3}idempotency_keys +2 rows$/m);
    expect(moved.stdout).toContain('Next steps:');
    expect(moved.stderr).toMatch(/move-store: copy done: [\d,]+ rows/);
    const head = /global head (\d+:[0-9a-f]{64}) as in the embedded store/.exec(moved.stdout)?.[1];
    expect(head, moved.stdout).toBeDefined();

    // A second run finds the events there: refused, nothing written.
    const again = await runCrm(['move-store', '--to', schemas.url], { cwd: folder, env: embedded, timeoutMs: 240_000 });
    expect(again.code, again.stderr).toBe(73);
    expect(again.stderr).toContain(`the target's schema ${schemas.events} already holds rows`);

    // The CRM on PostgreSQL.
    const second = await start(onPostgres);
    const there = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => call(second.url, ADMIN_KEY, method, path, body, headers);
    // Every event as it was: ids, positions, actors, record times, personal data (Bob's erased).
    expect((await there('GET', '/audit/events?format=ndjson')).text).toBe(log.text);
    expect((await there('GET', asOfPath)).text).toBe(asOf.text);
    // The API key works, and its keyed request re-sent answers as the first time, appending nothing.
    const resent = await call(
      second.url,
      salesKey,
      'POST',
      '/customers',
      { name: 'Ada Lovelace', email: 'ada@example.com' },
      { 'idempotency-key': 'ada-signup' },
    );
    expect(resent.status, resent.text).toBe(ada.status);
    expect(resent.json).toEqual(ada.json);
    const resentPurchase = await there(
      'POST',
      `/customers/${adaId}/purchases`,
      { orderId: 'A-1', amount: 120.5, currency: 'EUR', occurredAt: '2025-03-01T09:00:00Z' },
      { 'idempotency-key': 'ada-order-1' },
    );
    expect(resentPurchase.json).toEqual(purchase.json);
    // Bob stays forgotten: his data key did not come back.
    const bobNow = await fetchCaughtUp(`${second.url}/customers/${bobId}?waitFor=${String(purchase.json!.position)}`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    expect(((await bobNow.json()) as { name: string }).name).toBe('[erased]');
    const bobPurchase = await there('POST', `/customers/${bobId}/purchases`, { orderId: 'B-1', amount: 5, currency: 'EUR' });
    expect([bobPurchase.status, bobPurchase.json?.code]).toEqual([409, 'customer.forgotten']);
    // New events come after the copied ones.
    const carol = await there('POST', '/customers', { name: 'Carol New', email: 'carol@example.com' });
    expect(carol.status, carol.text).toBe(201);
    const newest = recorded.map((e) => BigInt(e.position)).reduce((a, b) => (a > b ? a : b));
    expect(BigInt(String(carol.json!.position))).toBeGreaterThan(newest);
    // The chains verify there, through the anchor taken from the embedded store.
    const verified = await runCrm(['verify', '--chain', '--anchor', head!], { cwd: folder, env: onPostgres, timeoutMs: 120_000 });
    expect(verified.code, `${verified.stdout}\n${verified.stderr}`).toBe(0);
    expect(verified.stdout).toContain('Anchors: 1 of 1 match');
    expect(await second.server.stop()).toBe(0);
  }, 900_000);
});
