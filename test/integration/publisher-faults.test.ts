import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { createApiMetrics } from '../../api/metrics.ts';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { createDestinationGuard, parseNetwork } from '../../integration/destinations.ts';
import { createIntegration } from '../../integration/index.ts';
import { POSITION_HEADER } from '../../integration/nats-publisher.ts';
import { IntegrationPublishers } from '../../integration/publishers.ts';
import { createPublisherStatusView } from '../../integration/reporting.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { CRM_BIN, cleanEnv } from '../cli/support.ts';
import { storedEvents } from '../support/events.ts';
import { testSchemas, TEST_DATABASE_URL, type TestSchemas } from '../support/postgres.ts';
import { freePort, NATS_BIN, startNatsServer, type NatsServer } from './nats-server.ts';
import { eventually, Receiver } from './support.ts';

/**
 * The publishers under network faults: NATS behind a TCP proxy (a connection gone half-open, refused
 * connections, acknowledgements lost) and PostgreSQL refused. Each test has its own schemas and, for
 * NATS, a server of its own on a free port (the stream takes every `crm.>` subject of its server).
 */
if (!NATS_BIN) console.warn('NATS fault tests skipped: no nats-server binary (/usr/sbin/nats-server or on PATH) to run a server of their own');

type Line = { message: string; details: Record<string, unknown> | undefined };
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const ctx = (): CommandContext => ({ actor: { userId: 'publisher-faults', roles: ['admin'] }, correlationId: randomUUID() });

interface Fixture {
  schemas: TestSchemas;
  database: SqlDatabase;
  store: EventStore;
  personalData: PersonalData;
  commands: CrmCommands;
  register(count: number): Promise<void>;
}

/** Schemas, store and command layer of a test's own (dropped after the test). */
const storeFixture = async (label: string): Promise<Fixture> => {
  const schemas = testSchemas(label);
  cleanups.push(() => schemas.dropSchemas());
  const database = connectPostgres(schemas.url, { max: 4 });
  cleanups.push(() => database.close());
  const store = await createPostgresEventStore(database, { schema: schemas.events });
  cleanups.push(() => store.close());
  const personalData = await createPersonalData(database.db, { schema: schemas.events });
  const commands = createCrmCommands({ store, personalData });
  const register = async (count: number) => {
    for (let i = 0; i < count; i++) await commands.execute({ type: 'RegisterCustomer', name: `F ${i}`, email: `f${i}-${randomUUID()}@example.com` }, ctx());
  };
  return { schemas, database, store, personalData, commands, register };
};

/** The fixture's event store reached through a proxy of its own, for the publishers (the commands go straight). */
const storeThroughProxy = async (f: Fixture) => {
  const proxy = FaultProxy.before(TEST_DATABASE_URL);
  await proxy.start();
  cleanups.push(() => proxy.close());
  const database = connectPostgres(proxy.urlThrough(TEST_DATABASE_URL), { max: 4 });
  cleanups.push(() => database.close());
  const store = await createPostgresEventStore(database, { schema: f.schemas.events });
  cleanups.push(() => store.close());
  return { proxy, database, store };
};

interface NatsFixture extends Fixture {
  nats: NatsServer;
  proxy: FaultProxy;
  stream: string;
  jsm: JetStreamManager;
  lines: Line[];
  logged(message: string): Line[];
  startPublishers(): Promise<IntegrationPublishers>;
  /** Ids in the stream, in stream order. */
  streamIds(): Promise<string[]>;
  natsStatus(): Promise<{ position: bigint; failures: number; lastError: string | null; state: string }>;
  /** The NATS publisher's state in `reporting.publisher_status` (the view made on first use). */
  reportedState(): Promise<string | undefined>;
  /** /metrics as the API renders it (api/metrics.ts), for these publishers. */
  metrics(): Promise<string>;
}

/** A store of its own, a NATS server of its own behind a fault proxy, and publishers to it logging into `lines`. */
const natsFixture = async (label: string): Promise<NatsFixture> => {
  const base = await storeFixture(label);
  const nats = await startNatsServer();
  cleanups.push(() => nats.stop());
  const proxy = new FaultProxy({ host: '127.0.0.1', port: nats.port });
  await proxy.start();
  cleanups.push(() => proxy.close());
  // The test's own view of the stream, straight to the server.
  const nc: NatsConnection = await connect({ servers: nats.url, timeout: 2_000 });
  cleanups.push(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const stream = `CRM_FAULTS_${randomBytes(3).toString('hex').toUpperCase()}`;
  const lines: Line[] = [];
  let publishers: IntegrationPublishers | undefined;
  const startPublishers = async () => {
    publishers = new IntegrationPublishers({
      db: base.database.db,
      schema: base.schemas.events,
      store: base.store,
      personalData: base.personalData,
      nats: { url: `nats://127.0.0.1:${proxy.port}`, stream, role: 'analyst' },
      reconcileEveryMs: 200,
      log: (message, details) => lines.push({ message, details }),
    });
    const started = publishers;
    cleanups.push(() => started.stop());
    await publishers.start();
    return publishers;
  };
  const natsStatus = async () => {
    const found = (await publishers!.status()).find((p) => p.name === 'nats');
    if (!found) throw new Error('no nats publisher');
    return found;
  };
  const metrics = createApiMetrics({ publishers: { status: () => publishers!.status() } });
  let view: Promise<void> | undefined;
  const reportedState = async () => {
    view ??= createPublisherStatusView(base.database.db, base.schemas.events, base.schemas.reporting);
    await view;
    const { rows } = await sql<{ state: string }>`SELECT state FROM ${sql.id(base.schemas.reporting, 'publisher_status')} WHERE name = 'nats'`.execute(
      base.database.db,
    );
    return rows[0]?.state;
  };
  return {
    ...base,
    nats,
    proxy,
    stream,
    jsm,
    lines,
    logged: (message) => lines.filter((l) => l.message === message),
    startPublishers,
    natsStatus,
    reportedState,
    metrics: () => metrics.registry.metrics(),
    async streamIds() {
      const info = await jsm.streams.info(stream).catch(() => undefined);
      if (!info || info.state.messages === 0) return [];
      const ids: string[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        if (m) ids.push(m.header.get('Nats-Msg-Id'));
      }
      return ids;
    },
  };
};

const messagesIn = async (f: NatsFixture) => (await f.jsm.streams.info(f.stream).catch(() => undefined))?.state.messages ?? 0;
/** Waits (bounded) until the stream holds `count` messages. */
const streamHolds = (f: NatsFixture, count: number, timeoutMs: number, what: () => string) =>
  eventually(async () => (await messagesIn(f)) === count, timeoutMs, what);
/** Waits (bounded) until the NATS publisher's checkpoint is at `position`. */
const checkpointAt = (f: NatsFixture, position: bigint, timeoutMs: number, what: () => string) =>
  eventually(async () => (await f.natsStatus()).position === position, timeoutMs, what);

describe.skipIf(!NATS_BIN)('the NATS publisher under network faults', () => {
  it('publishes again within seconds when its connection goes half-open (the peer gone, new connections allowed), each event once and in order', async () => {
    const f = await natsFixture('nats_halfopen');
    await f.startPublishers();
    await f.register(5);
    await streamHolds(f, 5, 30_000, () => 'the first events in the stream');

    f.proxy.stallOpen();
    const stalledAt = Date.now();
    await f.register(5);
    const all = await storedEvents(f.store);
    await streamHolds(f, all.length, 60_000, () => `the stream holds ${all.length} events after the connection went half-open`);
    const resumedAfterMs = Date.now() - stalledAt;
    // The acknowledgement timeout (5 s), then a new connection: not the client's stale detection (minutes).
    expect(resumedAfterMs).toBeLessThan(15_000);
    expect(await f.streamIds()).toEqual(all.map((e) => e.id));
    await checkpointAt(f, all.at(-1)!.position, 10_000, () => 'the checkpoint at the head');
    const nats = await f.natsStatus();
    expect(nats.failures).toBeGreaterThan(0);
    expect(nats.lastError).toBeNull();
    console.log(`NATS publishing resumed ${resumedAfterMs} ms after the connection went half-open`);
  }, 120_000);

  it('reports the state retrying (status, /metrics, reporting view) while NATS cannot be reached and running once it publishes again, and logs the outage once and its end once', async () => {
    const f = await natsFixture('nats_refused');
    await f.startPublishers();
    await f.register(2);
    await streamHolds(f, 2, 30_000, () => 'the first events in the stream');
    expect(await f.metrics()).toMatch(/crm_publisher_failing\{publisher="nats",kind="nats"\} 0/);

    f.proxy.refuse();
    await f.register(2);
    await eventually(
      async () => (await f.natsStatus()).failures >= 3,
      60_000,
      () => 'three failed attempts',
    );
    // Retrying for ever (never paused), and failing all the same: not shown as running.
    expect((await f.natsStatus()).state).toBe('retrying');
    const outage = await f.metrics();
    expect(outage).toMatch(/crm_publisher_failing\{publisher="nats",kind="nats"\} 1/);
    expect(outage).toContain('crm_publisher_state{publisher="nats",kind="nats",state="retrying"} 1');
    expect(await f.reportedState()).toBe('retrying');
    expect(f.logged('NATS publisher error; retrying')).toHaveLength(1);
    // The line names the server and what to check, not the client's error alone.
    expect(f.logged('NATS publisher error; retrying')[0]!.details).toMatchObject({
      server: `nats://127.0.0.1:${f.proxy.port}`,
      check: expect.stringContaining('CRM_NATS_URL'),
    });

    f.proxy.pass();
    const all = await storedEvents(f.store);
    await eventually(
      async () => (await f.streamIds()).join() === all.map((e) => e.id).join(),
      60_000,
      () => 'every event in the stream once NATS is reachable again',
    );
    await eventually(
      async () => /crm_publisher_failing\{publisher="nats",kind="nats"\} 0/.test(await f.metrics()),
      10_000,
      () => 'no longer failing',
    );
    expect((await f.natsStatus()).state).toBe('running');
    expect(await f.reportedState()).toBe('running');
    const failures = (await f.natsStatus()).failures;
    expect(f.logged('NATS publisher error; retrying')).toHaveLength(1);
    const again = f.logged('NATS publisher publishing again');
    expect(again).toHaveLength(1);
    expect(again[0]!.details?.failedAttempts).toBe(failures);
  }, 120_000);

  it('shows NATS lost within seconds while nothing is published (status, /metrics), and running again by itself once it answers', async () => {
    // Found by an integrator: with nothing to publish, the publisher never touched NATS, so a server gone for
    // hours showed running, no error, crm_publisher_failing 0 (the client reconnects for ever without a word).
    const f = await natsFixture('nats_idle_lost');
    await f.startPublishers();
    await f.register(2);
    await streamHolds(f, 2, 30_000, () => 'the first events in the stream');
    await eventually(
      async () => (await f.natsStatus()).state === 'running',
      10_000,
      () => 'running',
    );

    f.proxy.refuse();
    const refusedAt = Date.now();
    await eventually(
      async () => (await f.natsStatus()).state === 'retrying',
      10_000,
      () => 'retrying while NATS refuses and nothing is published',
    );
    console.log(`an idle NATS publisher showed the outage ${Date.now() - refusedAt} ms after NATS went away`);
    expect((await f.natsStatus()).lastError).toMatch(/NATS connection lost|CONNECTION_REFUSED|ECONNREFUSED|refused/i);
    expect(await f.metrics()).toMatch(/crm_publisher_failing\{publisher="nats",kind="nats"\} 1/);

    f.proxy.pass();
    await eventually(
      async () => (await f.natsStatus()).state === 'running',
      40_000,
      () => 'running again by itself, with nothing to publish',
    );
    expect((await f.natsStatus()).lastError).toBeNull();
    // And it publishes on the connection it made.
    await f.register(1);
    await streamHolds(f, 3, 30_000, () => 'the next event in the stream');
  }, 120_000);

  it('a process started once NATS answers again clears the failure an earlier one stored, with nothing to publish', async () => {
    // Found by an integrator: after a restart on a quiet installation, /ready said retrying with the old error until the next event.
    const f = await natsFixture('nats_restarted');
    f.proxy.refuse();
    const first = await f.startPublishers();
    await eventually(
      async () => (await f.natsStatus()).state === 'retrying',
      30_000,
      () => 'retrying while NATS refuses',
    );
    await first.stop();
    f.proxy.pass();
    await f.startPublishers();
    await eventually(
      async () => (await f.natsStatus()).state === 'running',
      15_000,
      () => 'running again without a new event',
    );
    expect((await f.natsStatus()).lastError).toBeNull();
  }, 60_000);

  it('does not store events again whose acknowledgements were lost, when the retry comes after the duplicate window', async () => {
    const f = await natsFixture('nats_lostacks');
    // The stream made beforehand with a duplicate window of 1 s (the publisher keeps a stream it finds):
    // the retry after the acknowledgement timeout (5 s) comes long after it, as after a 2-minute outage.
    await f.jsm.streams.add({ name: f.stream, subjects: ['crm.>'], duplicate_window: 1_000_000_000 });
    await f.startPublishers();
    await f.register(3);
    await streamHolds(f, 3, 30_000, () => 'the first events in the stream');

    f.proxy.loseRepliesOpen();
    await f.register(3);
    const all = await storedEvents(f.store);
    // The publishes arrive (stored); their acknowledgements do not.
    await streamHolds(f, all.length, 30_000, () => 'the publishes stored though unacknowledged');
    // The publisher times out, connects anew, finds them in the stream and moves its checkpoint past them.
    await checkpointAt(f, all.at(-1)!.position, 60_000, () => 'the checkpoint at the head');
    expect((await f.natsStatus()).failures).toBeGreaterThan(0);
    // Nothing published a second time: one more event goes through as usual after it.
    await f.register(1);
    const after = await storedEvents(f.store);
    await checkpointAt(f, after.at(-1)!.position, 30_000, () => 'the next event published');
    expect(await f.streamIds()).toEqual(after.map((e) => e.id));
    const last = await f.jsm.streams.getMessage(f.stream, { seq: (await f.jsm.streams.info(f.stream)).state.last_seq });
    expect(last?.header.get(POSITION_HEADER)).toBe(after.at(-1)!.position.toString());
  }, 120_000);

  it('crm project logs a NATS outage once and its end once (the process logger reaches the publishers)', async () => {
    const f = await storeFixture('nats_log');
    const port = await freePort();
    const stream = `CRM_FAULTS_${randomBytes(3).toString('hex').toUpperCase()}`;
    const env = {
      DATABASE_URL: f.schemas.url,
      CRM_EVENTS_SCHEMA: f.schemas.events,
      CRM_READ_SCHEMA: f.schemas.read,
      CRM_REPORTING_SCHEMA: f.schemas.reporting,
      // Nothing listens there yet.
      CRM_NATS_URL: `nats://127.0.0.1:${port}`,
      CRM_NATS_STREAM: stream,
      // The end of an outage is logged at info.
      LOG_LEVEL: 'info',
    };
    const worker: ChildProcess = spawn(process.execPath, [CRM_BIN, 'project', '--worker-id', 'publisher-faults-test'], { cwd: tmpdir(), env: cleanEnv(env) });
    let output = '';
    worker.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    worker.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    cleanups.push(async () => {
      if (worker.exitCode !== null || worker.signalCode !== null) return;
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.kill('SIGKILL');
      await exited;
    });
    const count = (text: string) => output.split('\n').filter((line) => line.includes(text)).length;
    await f.register(2);
    const services = createIntegration({
      db: f.database.db,
      store: f.store,
      personalData: f.personalData,
      schemas: { events: f.schemas.events, read: f.schemas.read },
      workerId: () => 'observer',
      leaseSeconds: 15,
    }).services;
    const natsFailures = async () => (await services.status().catch(() => [])).find((p) => p.name === 'nats')?.failures ?? 0;
    await eventually(
      async () => (await natsFailures()) >= 3,
      90_000,
      () => `three failed attempts; worker output:\n${output}`,
    );
    // The worker's log: JSON lines, the part named.
    expect(count('"part":"publishers"'), output).toBeGreaterThan(0);
    expect(count('"msg":"NATS publisher error; retrying"'), output).toBe(1);

    const nats = await startNatsServer(port);
    cleanups.push(() => nats.stop());
    await eventually(
      () => count('"msg":"NATS publisher publishing again"') === 1,
      60_000,
      () => `the end of the outage logged; worker output:\n${output}`,
    );
    expect(count('"msg":"NATS publisher error; retrying"'), output).toBe(1);
  }, 180_000);
});

describe.skipIf(!NATS_BIN)('the NATS publisher while PostgreSQL refuses connections', () => {
  it('publishes again within seconds of the database answering, however long it refused: its back-off for NATS is not spent waiting on the database', async () => {
    const f = await storeFixture('nats_db_refused');
    const nats = await startNatsServer();
    cleanups.push(() => nats.stop());
    const nc: NatsConnection = await connect({ servers: nats.url, timeout: 2_000 });
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const stream = `CRM_DB_FAULTS_${randomBytes(3).toString('hex').toUpperCase()}`;
    const messages = async () => (await jsm.streams.info(stream).catch(() => undefined))?.state.messages ?? 0;
    const { proxy, database, store } = await storeThroughProxy(f);
    const publishers = new IntegrationPublishers({
      db: database.db,
      schema: f.schemas.events,
      store,
      personalData: await createPersonalData(database.db, { schema: f.schemas.events }),
      nats: { url: nats.url, stream, role: 'analyst' },
      reconcileEveryMs: 200,
    });
    await publishers.start();
    cleanups.push(() => publishers.stop());
    await f.register(1);
    await eventually(
      async () => (await messages()) === 1,
      30_000,
      () => 'the first event in the stream',
    );

    // Long enough for NATS's back-off (doubling to 30 s) to reach 16 s, had the publisher taken the database's refusals for NATS's.
    proxy.refuse();
    await new Promise((r) => setTimeout(r, 17_000));
    await f.register(2);
    const all = await storedEvents(f.store);
    proxy.pass();
    const passedAt = Date.now();
    await eventually(
      async () => (await messages()) === all.length,
      60_000,
      () => `the stream holds ${all.length} events after the refusal`,
    );
    const resumedAfterMs = Date.now() - passedAt;
    console.log(`NATS publishing resumed ${resumedAfterMs} ms after PostgreSQL accepted connections again (refused for 17 s)`);
    // Database retries at most a second apart, as every other loop on the database.
    expect(resumedAfterMs).toBeLessThan(8_000);
  }, 120_000);
});

describe('the webhook publisher while PostgreSQL refuses connections', () => {
  it('logs the outage once per loop and its end once, and delivers what came meanwhile', async () => {
    const f = await storeFixture('webhook_log');
    const { proxy, database, store } = await storeThroughProxy(f);
    const receiver = new Receiver();
    await receiver.up();
    cleanups.push(() => receiver.down());
    const lines: Line[] = [];
    const publishers = new IntegrationPublishers({
      db: database.db,
      schema: f.schemas.events,
      store,
      personalData: await createPersonalData(database.db, { schema: f.schemas.events }),
      destinations: createDestinationGuard([parseNetwork('127.0.0.0/8')!]),
      reconcileEveryMs: 100,
      log: (message, details) => lines.push({ message, details }),
    });
    await publishers.start();
    cleanups.push(() => publishers.stop());
    const subscription = await createIntegration({
      db: f.database.db,
      store: f.store,
      personalData: f.personalData,
      schemas: { events: f.schemas.events, read: f.schemas.read },
      workerId: () => 'observer',
      leaseSeconds: 15,
    }).services.subscribe({ url: receiver.url, events: ['*'], description: null, role: 'admin' });
    await f.register(1);
    // Final in the feed (another test's open transaction on the cluster can hold it back for seconds).
    await storedEvents(f.store);
    await eventually(
      () => receiver.accepted().length === 1,
      30_000,
      () => 'the first delivery',
    );

    proxy.refuse();
    // Several seconds of retries (at most a second apart) and of reconcile rounds (every 100 ms).
    await new Promise((r) => setTimeout(r, 4_000));
    await f.register(2);
    await storedEvents(f.store);
    await new Promise((r) => setTimeout(r, 2_000));
    const logged = (message: string) => lines.filter((l) => l.message === message);
    expect(logged('webhook loop error; retrying')).toHaveLength(1);
    expect(logged('webhook loop error; retrying')[0]!.details?.subscription).toBe(subscription.id);
    expect(logged('integration publishers: reconcile failed; retrying')).toHaveLength(1);
    expect(logged('integration feed doorbell lost; polling until it is back')).toHaveLength(1);

    proxy.pass();
    // At least once: the first delivery's checkpoint may have been cut off by the refusal and sent again.
    await eventually(
      () => new Set(receiver.accepted().map((r) => r.id)).size === 3,
      30_000,
      () => `the deliveries after the outage; log: ${JSON.stringify(lines)}`,
    );
    await eventually(
      () =>
        logged('webhook loop works again').length === 1 &&
        logged('integration publishers: reconcile works again').length === 1 &&
        logged('integration feed doorbell back').length === 1,
      10_000,
      () => `the end of the outage logged: ${JSON.stringify(lines)}`,
    );
    expect(logged('webhook loop error; retrying')).toHaveLength(1);
    expect(logged('integration publishers: reconcile failed; retrying')).toHaveLength(1);
    expect(logged('integration feed doorbell lost; polling until it is back')).toHaveLength(1);
  }, 120_000);
});
