import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { createIntegration } from '../../integration/index.ts';
import { matchesPatterns } from '../../integration/envelope.ts';
import { CRM_BIN, cleanEnv } from '../cli/support.ts';
import { testSchemas } from '../support/postgres.ts';
import { NATS_BIN, startNatsServer, type NatsServer } from './nats-server.ts';
import { eventually, Receiver, verifySignature } from './support.ts';
import { storedEvents } from '../support/events.ts';

/**
 * The publishing process (`crm project` with CRM_NATS_URL) killed mid-stream and restarted: nothing
 * missing in JetStream or at the webhook receiver, and JetStream holds each event once. Real NATS with
 * JetStream, a server of this file's own: the stream takes every `crm.>` subject, and a stream another
 * run left behind on a shared server would hold them.
 */
const schemas = testSchemas('nats');
const stream = `CRM_TEST_${randomBytes(4).toString('hex').toUpperCase()}`;
let server: NatsServer | undefined;
let nc: NatsConnection | undefined;
let jsm: JetStreamManager;
let database: SqlDatabase;
let store: EventStore;
let commands: CrmCommands;
let personalData: PersonalData;
const receiver = new Receiver((n) => (n % 7 === 3 ? { status: 502 } : { status: 200 }));
const workers: ChildProcess[] = [];

// Probed before the suite is declared, so that the suite is skipped (saying why) rather than failing.
let unavailable: string | undefined;
if (!NATS_BIN) unavailable = 'no nats-server binary (/usr/sbin/nats-server or on PATH) to run a server of its own; .ci/run installs it';
else {
  try {
    server = await startNatsServer();
    nc = await connect({ servers: server.url, timeout: 3_000 });
    jsm = await jetstreamManager(nc);
  } catch (error) {
    unavailable = `nats-server with JetStream did not start (${(error as Error).message})`;
  }
}
if (unavailable) console.warn(`JetStream publishing tests skipped: ${unavailable}`);

beforeAll(async () => {
  if (unavailable) return;
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  commands = createCrmCommands({ store, personalData });
  await receiver.up();
});
afterAll(async () => {
  for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  await receiver.down();
  if (nc) {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
  await server?.stop();
  await store?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  CRM_NATS_URL: server?.url ?? '',
  CRM_NATS_STREAM: stream,
  // The webhook receiver listens on loopback, which deliveries reach only where the operator allows it.
  CRM_WEBHOOK_ALLOW_NETWORKS: '127.0.0.1',
  LOG_LEVEL: 'warn',
};

/** `crm project` under a fixed worker id: a restart takes its leases back at once. */
const startWorker = () => {
  const child = spawn(process.execPath, [CRM_BIN, 'project', '--worker-id', 'publisher-test'], { cwd: tmpdir(), env: cleanEnv(env) });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  workers.push(child);
  return { child, output: () => output };
};

const ctx = (): CommandContext => ({ actor: { userId: 'nats-test', roles: ['admin'] }, correlationId: randomUUID() });

const streamMessages = async (): Promise<number> => (await jsm.streams.info(stream).catch(() => undefined))?.state.messages ?? 0;

const storedIds = async () => (await storedEvents(store)).map((e) => ({ id: e.id, type: e.type, position: e.position }));

describe.skipIf(unavailable !== undefined)('JetStream and webhook publishing across a crash of the publishing process', () => {
  it('publishes every event once, in order, and delivers every webhook event after kill -9 and restart', async () => {
    const services = createIntegration({
      db: database.db,
      store,
      personalData,
      schemas: { events: schemas.events, read: schemas.read },
      workerId: () => 'test',
      leaseSeconds: 15,
    }).services;
    await services.tables.migrate();
    const patterns = ['CustomerRegistered', 'PurchaseRecorded'];
    const subscription = await services.subscribe({ url: receiver.url, events: patterns, description: null, role: 'admin' });

    const append = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const { id } = await commands.execute({ type: 'RegisterCustomer', name: `N ${i}`, email: `n${i}@example.com` }, ctx());
        await commands.execute({ type: 'RecordPurchase', customerId: id, orderId: `o${i}`, amount: 5, currency: 'EUR' }, ctx());
      }
    };
    let worker = startWorker();
    await append(0, 40);
    await eventually(
      async () => (await streamMessages()) >= 20,
      90_000,
      () => `stream has ${'?'} messages; worker output:\n${worker.output()}`,
    );
    // Mid-stream: appends go on while the publisher dies without any chance to clean up.
    const appending = append(40, 120);
    await eventually(
      async () => (await streamMessages()) >= 60,
      90_000,
      () => `worker output:\n${worker.output()}`,
    );
    worker.child.kill('SIGKILL');
    await appending;
    const atKill = await streamMessages();
    worker = startWorker();

    const all = await storedIds();
    expect(all.length).toBe(240);
    await eventually(
      async () => (await streamMessages()) >= all.length,
      120_000,
      () => `stream has fewer than ${all.length}; worker output:\n${worker.output()}`,
    );
    const expectedHook = all.filter((e) => matchesPatterns(patterns, e.type)).map((e) => e.id);
    await eventually(
      () => new Set(receiver.accepted().map((r) => r.id)).size >= expectedHook.length,
      120_000,
      () => `receiver accepted ${new Set(receiver.accepted().map((r) => r.id)).size} of ${expectedHook.length}`,
    );
    // Let a publisher that would publish twice do so before counting.
    await eventually(
      async () => (await services.status()).find((p) => p.name === 'nats')?.position === all.at(-1)!.position,
      60_000,
      () => 'nats checkpoint at the head',
    );
    expect(atKill).toBeLessThan(all.length);

    // JetStream: each event once, in log order, subject crm.<kind>.<Type>, Nats-Msg-Id = event id.
    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(all.length);
    const seen: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      expect(m).not.toBeNull();
      const body = m!.json<{ id: string; type: string; aggregate: { kind: string }; data: Record<string, unknown> }>();
      expect(m!.header.get('Nats-Msg-Id')).toBe(body.id);
      expect(m!.subject).toBe(`crm.${body.aggregate.kind}.${body.type}`);
      // The stream carries the analyst view by default (CRM_NATS_ROLE): no personal data.
      if (body.type === 'CustomerRegistered') expect(body.data.email).toBe('[masked]');
      seen.push(body.id);
    }
    expect(seen).toEqual(all.map((e) => e.id));

    // Webhooks: nothing missing, first deliveries in order, every request signed.
    const first: string[] = [];
    for (const r of receiver.accepted()) if (!first.includes(r.id)) first.push(r.id);
    expect(first).toEqual(expectedHook);
    for (const r of receiver.requests) expect(verifySignature(subscription.secret, r)).toBe(true);

    // A crash after the acknowledgements but before the checkpoint moved: the publisher starts over
    // from an older checkpoint, and JetStream still holds each event once.
    worker.child.kill('SIGKILL');
    await sql`UPDATE ${sql.id(schemas.events, 'integration_publishers')} SET position = 0 WHERE name = 'nats'`.execute(database.db);
    worker = startWorker();
    await eventually(
      async () => (await services.status()).find((p) => p.name === 'nats')?.position === all.at(-1)!.position,
      60_000,
      () => `nats checkpoint back at the head; output:\n${worker.output()}`,
    );
    expect(await streamMessages()).toBe(all.length);
    // Dashboards see the publishers in the reporting schema.
    const { rows } = await sql<{
      name: string;
      state: string;
      delivered: string;
    }>`SELECT name, state, delivered FROM ${sql.id(schemas.reporting, 'publisher_status')} ORDER BY name`.execute(database.db);
    expect(rows.map((r) => r.name)).toEqual(['nats', `webhook:${subscription.id}`]);
    // Counted as checkpointed: events acknowledged just before a kill are found in the stream on restart, not counted again.
    expect(Number(rows.find((r) => r.name === 'nats')!.delivered)).toBeGreaterThan(0);
    expect(rows.every((r) => r.state === 'running')).toBe(true);
    worker.child.kill('SIGTERM');
  }, 400_000);
});
