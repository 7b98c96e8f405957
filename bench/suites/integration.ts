/**
 * Integration publishing (issue 19):
 * (1) webhook delivery lag p50/p99 at 500 events/s: from the moment a command's append returns to the
 *     moment a receiver on 127.0.0.1 gets the signed POST;
 * (2) JetStream publish rate: a backlog published from checkpoint 0 to the head, acknowledgements awaited;
 * (3) command latency with a subscription whose receiver never answers, against no subscription at all,
 *     in the same run (ratio), at the same paced rate.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createCrmCommands, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore } from '../../eventstore/postgres/index.ts';
import { integrationTables, NATS_PUBLISHER } from '../../integration/tables.ts';
import { createDestinationGuard, parseNetwork } from '../../integration/destinations.ts';
import { IntegrationPublishers } from '../../integration/publishers.ts';
import { newWebhookSecret } from '../../integration/signing.ts';
import { percentile, rate, ratio, round, type BenchContext } from '../report.ts';
import { seed } from './projections.ts';

const NATS_URL = 'nats://127.0.0.1:4222';

/** A receiver that answers 204 at once and notes when each event arrived (by position), or never answers. */
async function receiver(mode: 'answer' | 'hang'): Promise<{ url: string; arrivals: Map<string, number>; server: Server }> {
  const arrivals = new Map<string, number>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (mode === 'hang') return;
      const at = performance.now();
      const position = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { position: string }).position;
      if (!arrivals.has(position)) arrivals.set(position, at);
      res.writeHead(204).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, arrivals, server };
}

/** Issues purchases at `perSecond` for `seconds` (open loop, at most 64 in flight); returns each command's latency and append time by position. */
async function paced(commands: CrmCommands, customerIds: string[], perSecond: number, seconds: number) {
  const latencies: number[] = [];
  const appendedAt = new Map<string, number>();
  let issued = 0;
  let skipped = 0;
  let pending = 0;
  let failures = 0;
  const inFlight: Promise<void>[] = [];
  const total = perSecond * seconds;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * perSecond));
      while (issued + skipped < due) {
        if (pending >= 64) {
          skipped++;
          continue;
        }
        const n = issued++;
        pending++;
        const t0 = performance.now();
        inFlight.push(
          commands
            .execute(
              { type: 'RecordPurchase', customerId: customerIds[n % customerIds.length]!, orderId: `bench-${randomUUID()}`, amount: 9.5, currency: 'EUR' },
              { actor: { userId: 'bench', roles: ['sales'] }, correlationId: randomUUID() },
            )
            .then((result) => {
              const t1 = performance.now();
              latencies.push(t1 - t0);
              appendedAt.set(result.position.toString(), t1);
            })
            .catch(() => void failures++)
            .finally(() => void pending--),
        );
      }
      if (issued + skipped >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(inFlight);
  return { latencies, appendedAt, issued, skipped, failures, seconds: (performance.now() - started) / 1000 };
}

const waitUntil = async (check: () => Promise<boolean> | boolean, timeoutMs: number, what: string) => {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const eventsSchema = await ctx.freshSchema('integration_events');
    const database = connectPostgres(ctx.databaseUrl, { max: 16 });
    closers.unshift(() => database.close());
    const store: EventStore = await createPostgresEventStore(database, { schema: eventsSchema });
    closers.unshift(() => store.close());
    const personalData: PersonalData = await createPersonalData(database.db, { schema: eventsSchema });
    const commands = createCrmCommands({ store, personalData });
    const customers = Math.round(1_000 * ctx.scale);
    const seeded = await seed(store, personalData, customers);
    ctx.log(`seeded ${seeded.events} events`);
    const tables = integrationTables(database.db, eventsSchema);
    await tables.migrate();
    // The publishers get their own pool, as a projection worker has.
    const publisherDatabase = connectPostgres(ctx.databaseUrl, { max: 6 });
    closers.unshift(() => publisherDatabase.close());
    const publisherStore = await createPostgresEventStore(publisherDatabase, { schema: eventsSchema });
    closers.unshift(() => publisherStore.close());
    const startPublishers = async (nats?: { stream: string }) => {
      const publishers = new IntegrationPublishers({
        db: publisherDatabase.db,
        schema: eventsSchema,
        store: publisherStore,
        personalData: await createPersonalData(publisherDatabase.db, { schema: eventsSchema }),
        nats: nats ? { url: NATS_URL, stream: nats.stream, role: 'analyst' } : undefined,
        policy: { timeoutMs: 10_000 },
        // The receivers listen on loopback, allowed here as an operator allows an internal network.
        destinations: createDestinationGuard([parseNetwork('127.0.0.0/8')!]),
        reconcileEveryMs: 200,
      });
      await publishers.start();
      return publishers;
    };
    const seconds = Math.max(5, Math.round(10 * ctx.scale));

    // (3a) Command latency without any subscription: the baseline, same rate as (3b).
    const commandRate = 200;
    const baseline = await paced(commands, seeded.customerIds, commandRate, seconds);
    ctx.log(`baseline commands p99 ${percentile(baseline.latencies, 99)} ms`);

    // (3b) The same with a subscription whose receiver never answers (its loop waits out each 10 s timeout).
    const dead = await receiver('hang');
    closers.unshift(() => new Promise((r) => dead.server.close(r)).then(() => dead.server.closeAllConnections()));
    const deadSub = await tables.createSubscription({
      url: dead.url,
      events: ['*'],
      description: null,
      role: 'analyst',
      secret: newWebhookSecret(),
      startPosition: await store.headPosition(),
    });
    const deadPublishers = await startPublishers();
    const withDead = await paced(commands, seeded.customerIds, commandRate, seconds);
    await deadPublishers.stop();
    await tables.deleteSubscription(deadSub.id);
    ctx.log(`dead-receiver commands p99 ${percentile(withDead.latencies, 99)} ms`);

    // (1) Delivery lag at 500 events/s to a receiver that answers at once.
    const live = await receiver('answer');
    closers.unshift(() => new Promise((r) => live.server.close(r)).then(() => live.server.closeAllConnections()));
    const liveStart = await store.headPosition();
    const liveSub = await tables.createSubscription({
      url: live.url,
      events: ['*'],
      description: null,
      role: 'admin',
      secret: newWebhookSecret(),
      startPosition: liveStart,
    });
    const livePublishers = await startPublishers();
    // When each event becomes readable in the gap-free feed: splits the lag into the feed's share (it
    // waits for every older transaction on the cluster, other users' included) and the publisher's.
    const visibleAt = new Map<string, number>();
    const watcher = publisherStore.subscribeToAll({ fromPosition: await store.headPosition() }).subscribe((m) => {
      if (m.kind === 'event') visibleAt.set(m.event.position.toString(), performance.now());
    });
    const loadBefore = loadavg()[0]!;
    const driven = await paced(commands, seeded.customerIds, 500, seconds);
    await waitUntil(() => [...driven.appendedAt.keys()].every((p) => live.arrivals.has(p)), 120_000, 'every event delivered');
    watcher.unsubscribe();
    const lags = [...driven.appendedAt].map(([p, t]) => live.arrivals.get(p)! - t);
    const seen = [...driven.appendedAt].filter(([p]) => visibleAt.has(p));
    const feedShares = seen.map(([p, t]) => visibleAt.get(p)! - t);
    const publisherShares = seen.map(([p]) => live.arrivals.get(p)! - visibleAt.get(p)!);
    const deliveredPerSecond = rate(driven.appendedAt.size, Math.max(...live.arrivals.values()) - Math.min(...[...driven.appendedAt.values()]));
    await livePublishers.stop();
    await tables.deleteSubscription(liveSub.id);
    ctx.log(`delivery lag p50 ${percentile(lags, 50)} ms, p99 ${percentile(lags, 99)} ms`);

    // (1b) The publisher alone: the same events as a backlog to a fresh subscription, no commands running.
    const backlogReceiver = await receiver('answer');
    closers.unshift(() => new Promise((r) => backlogReceiver.server.close(r)).then(() => backlogReceiver.server.closeAllConnections()));
    const backlogSub = await tables.createSubscription({
      url: backlogReceiver.url,
      events: ['*'],
      description: null,
      role: 'admin',
      secret: newWebhookSecret(),
      startPosition: liveStart,
    });
    const backlogStarted = performance.now();
    const backlogPublishers = await startPublishers();
    await waitUntil(() => [...driven.appendedAt.keys()].every((p) => backlogReceiver.arrivals.has(p)), 300_000, 'backlog delivered');
    const backlogMs = performance.now() - backlogStarted;
    await backlogPublishers.stop();
    await tables.deleteSubscription(backlogSub.id);
    const backlogPerSecond = rate(driven.appendedAt.size, backlogMs);
    ctx.log(`backlog: ${backlogPerSecond} deliveries/s`);

    // (2) JetStream publish rate: the whole log from checkpoint 0.
    let jetstream: Record<string, unknown>;
    const stream = `CRM_BENCH_${randomBytes(4).toString('hex').toUpperCase()}`;
    try {
      const nc = await connect({ servers: NATS_URL, timeout: 3_000 });
      const jsm = await jetstreamManager(nc);
      closers.unshift(async () => {
        await jsm.streams.delete(stream).catch(() => undefined);
        await nc.close();
      });
      const head = await store.headPosition();
      const total = (await store.readAll({})).length;
      const started = performance.now();
      const natsPublishers = await startPublishers({ stream });
      await waitUntil(async () => ((await tables.publisher(NATS_PUBLISHER))?.position ?? 0n) >= head, 300_000, 'JetStream publisher at the head');
      const ms = performance.now() - started;
      await natsPublishers.stop();
      const stored = (await jsm.streams.info(stream)).state.messages;
      jetstream = { events: total, storedInStream: stored, seconds: round(ms / 1000, 2), eventsPerSecond: rate(total, ms) };
      ctx.log(`JetStream: ${total} events in ${round(ms / 1000, 1)} s`);
    } catch (error) {
      jetstream = { skipped: `NATS with JetStream not reachable on ${NATS_URL}: ${(error as Error).message}` };
    }

    return {
      seededEvents: seeded.events,
      loadAverageAtStart: round(loadBefore, 2),
      deliveryLag: {
        targetEventsPerSecond: 500,
        seconds,
        commandsIssued: driven.issued,
        skippedAtSaturation: driven.skipped,
        failures: driven.failures,
        deliveredPerSecond,
        p50Ms: percentile(lags, 50),
        p99Ms: percentile(lags, 99),
        maxMs: round(Math.max(...lags), 1),
        backlogDeliveriesPerSecond: backlogPerSecond,
        feedShare: { p50Ms: percentile(feedShares, 50), p99Ms: percentile(feedShares, 99), note: 'append returned -> event readable in the gap-free feed' },
        publisherShare: { p50Ms: percentile(publisherShares, 50), p99Ms: percentile(publisherShares, 99), note: 'readable in the feed -> POST received' },
      },
      jetstream,
      commandLatencyWithDeadReceiver: {
        commandsPerSecond: commandRate,
        seconds,
        none: {
          p50Ms: percentile(baseline.latencies, 50),
          p99Ms: percentile(baseline.latencies, 99),
          commands: baseline.latencies.length,
          skipped: baseline.skipped,
        },
        deadReceiver: {
          p50Ms: percentile(withDead.latencies, 50),
          p99Ms: percentile(withDead.latencies, 99),
          commands: withDead.latencies.length,
          skipped: withDead.skipped,
        },
        p50Ratio: ratio(percentile(withDead.latencies, 50), percentile(baseline.latencies, 50)),
        p99Ratio: ratio(percentile(withDead.latencies, 99), percentile(baseline.latencies, 99)),
      },
    };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
  }
}

export function summarize(result: Record<string, any>): string[] {
  const lag = result.deliveryLag;
  const cmd = result.commandLatencyWithDeadReceiver;
  return [
    `webhook delivery lag at ${lag.targetEventsPerSecond} events/s: p50 ${lag.p50Ms} ms, p99 ${lag.p99Ms} ms (${lag.deliveredPerSecond} delivered/s while commands ran, ${lag.backlogDeliveriesPerSecond}/s from a backlog alone; feed share p50 ${lag.feedShare.p50Ms} ms, publisher share p50 ${lag.publisherShare.p50Ms} ms, p99 ${lag.publisherShare.p99Ms} ms)`,
    result.jetstream.eventsPerSecond
      ? `JetStream publish: ${result.jetstream.eventsPerSecond} events/s (${result.jetstream.events} events, ${result.jetstream.storedInStream} stored)`
      : `JetStream: ${result.jetstream.skipped}`,
    `command latency with a dead receiver vs none: p50 ${cmd.deadReceiver.p50Ms} vs ${cmd.none.p50Ms} ms (x${cmd.p50Ratio}), p99 ${cmd.deadReceiver.p99Ms} vs ${cmd.none.p99Ms} ms (x${cmd.p99Ratio})`,
  ];
}
