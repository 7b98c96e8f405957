/**
 * Projections: (1) full replay throughput of every read model (events/s) beside the raw read rate of
 * the same events from the store (and the read + decode rate: decryption, upcasting, validation);
 * (2) projection lag p50/p99 while commands arrive at a steady rate, measured from the moment a
 * command's append returns to the moment every read model has applied it.
 * Targets (issue 4): replay >= 20k events/s; lag p99 < 100 ms at 500 commands/s.
 */
import { randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { tap } from 'rxjs';
import { createCrmCommands } from '../../commands/index.ts';
import type { EventStore, NewEvent } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore } from '../../eventstore/postgres/index.ts';
import { personalDataCodec } from '../../projections/codec.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { replayInto } from '../../projections/rebuild.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { percentile, rate, round, type BenchContext } from '../report.ts';

const day = 86_400_000;
const START = Date.parse('2025-01-01T09:00:00Z');

const metadata = (command: string, at: number) => ({
  actor: { userId: 'bench', roles: ['sales'] },
  correlationId: randomUUID(),
  causationId: null,
  occurredAt: new Date(at).toISOString(),
  schemaVersion: 1,
  command,
});

/**
 * A realistic mix, appended per stream in one go: each customer registers, buys ten times, is tagged
 * and refunded once; every other customer has a deal through the pipeline and a feedback item through
 * its lifecycle; campaigns collect responses. Personal fields are encrypted as commands would.
 */
export async function seed(store: EventStore, personalData: PersonalData, customers: number): Promise<{ events: number; customerIds: string[] }> {
  let events = 0;
  const customerIds: string[] = [];
  const event = async (type: string, data: Record<string, unknown>, command: string, at: number): Promise<NewEvent> => ({
    id: randomUUID(),
    type,
    data: await personalData.protect(type, data),
    metadata: { ...metadata(command, at), schemaVersion: type === 'CustomerRegistered' ? 2 : 1 },
  });
  const writers = 4;
  const perWriter = Math.ceil(customers / writers);
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = w * perWriter; i < Math.min(customers, (w + 1) * perWriter); i++) {
        const customerId = randomUUID();
        customerIds.push(customerId);
        const t0 = START + (i % 365) * day;
        const list: NewEvent[] = [];
        list.push(
          await event(
            'CustomerRegistered',
            {
              customerId,
              name: `Customer ${i}`,
              email: `c${i}@example.com`,
              phone: null,
              company: null,
              tags: ['bench'],
              source: 'import',
              marketingConsent: i % 2 === 0,
            },
            'RegisterCustomer',
            t0,
          ),
        );
        for (let k = 0; k < 10; k++) {
          list.push(
            await event(
              'PurchaseRecorded',
              { customerId, orderId: `o${i}-${k}`, amount: 10 + k + (i % 7) / 4, currency: 'EUR' },
              'RecordPurchase',
              t0 + (k + 1) * 7 * day,
            ),
          );
        }
        list.push(await event('CustomerTagged', { customerId, tag: 'loyal' }, 'TagCustomer', t0 + 80 * day));
        list.push(
          await event(
            'PurchaseRefunded',
            { customerId, orderId: `o${i}-0`, refundId: `r${i}`, amount: 5, currency: 'EUR', reason: null },
            'RefundPurchase',
            t0 + 90 * day,
          ),
        );
        await store.appendToStream(`customer-${customerId}`, list, { expectedRevision: 'no_stream' });
        events += list.length;
        if (i % 2 === 0) {
          const dealId = randomUUID();
          const deal = [
            await event(
              'DealOpened',
              {
                dealId,
                customerId,
                title: `Deal ${i}`,
                amount: 1000 + i,
                currency: 'EUR',
                ownerId: `owner${i % 5}`,
                expectedCloseDate: '2025-06-30',
                stage: 'lead',
                probabilityOverride: null,
              },
              'OpenDeal',
              t0 + day,
            ),
            await event('DealStageChanged', { dealId, from: 'lead', to: 'qualified' }, 'MoveDealStage', t0 + 2 * day),
            await event('DealAmountChanged', { dealId, amount: 1200 + i, currency: 'EUR' }, 'ChangeDeal', t0 + 3 * day),
            await event('DealStageChanged', { dealId, from: 'qualified', to: 'proposal' }, 'MoveDealStage', t0 + 4 * day),
            i % 4 === 0
              ? await event('DealWon', { dealId, from: 'proposal', amount: 1200 + i, currency: 'EUR' }, 'WinDeal', t0 + 5 * day)
              : await event('DealLost', { dealId, from: 'proposal', reason: 'price' }, 'LoseDeal', t0 + 5 * day),
          ];
          await store.appendToStream(`deal-${dealId}`, deal, { expectedRevision: 'no_stream' });
          const feedbackId = randomUUID();
          const at = t0 + 10 * day;
          const feedback = [
            await event(
              'FeedbackSubmitted',
              {
                feedbackId,
                customerId,
                kind: 'complaint',
                channel: 'email',
                subject: `Issue ${i}`,
                body: 'text',
                priority: 'normal',
                csat: null,
                nps: i % 11,
                firstResponseDueAt: new Date(at + 8 * 3600_000).toISOString(),
                resolutionDueAt: new Date(at + 72 * 3600_000).toISOString(),
              },
              'SubmitFeedback',
              at,
            ),
            await event('FeedbackAssigned', { feedbackId, assigneeId: 'agent' }, 'AssignFeedback', at + 600_000),
            await event(
              'FeedbackResponded',
              { feedbackId, responderId: 'agent', message: 'on it', firstResponse: true },
              'RespondToFeedback',
              at + (i % 12) * 3600_000,
            ),
            await event('FeedbackResolved', { feedbackId, resolution: 'done' }, 'ResolveFeedback', at + 30 * 3600_000),
            await event('FeedbackClosed', { feedbackId }, 'CloseFeedback', at + 40 * 3600_000),
          ];
          await store.appendToStream(`feedback-${feedbackId}`, feedback, { expectedRevision: 'no_stream' });
          events += deal.length + feedback.length;
        }
      }
    }),
  );
  for (let c = 0; c < Math.max(1, Math.floor(customers / 500)); c++) {
    const campaignId = randomUUID();
    const list: NewEvent[] = [
      await event(
        'CampaignCreated',
        { campaignId, name: `Campaign ${c}`, channel: 'email', budget: 5000, currency: 'EUR', schedule: null, targetSegment: {} },
        'CreateCampaign',
        START,
      ),
      await event('CampaignLaunched', { campaignId }, 'LaunchCampaign', START + day),
      await event(
        'CampaignCostRecorded',
        { campaignId, costId: `cost${c}`, amount: 300, currency: 'EUR', description: null },
        'RecordCampaignCost',
        START + day,
      ),
    ];
    for (const customerId of customerIds.slice(c * 200, c * 200 + 200)) {
      list.push(
        await event(
          'CampaignResponseRecorded',
          { campaignId, customerId, kind: 'sent', revenue: null, currency: null },
          'RecordCampaignResponse',
          START + 2 * day,
        ),
      );
      list.push(
        await event(
          'CampaignResponseRecorded',
          { campaignId, customerId, kind: 'converted', revenue: 50, currency: 'EUR' },
          'RecordCampaignResponse',
          START + 3 * day,
        ),
      );
    }
    await store.appendToStream(`campaign-${campaignId}`, list, { expectedRevision: 'no_stream' });
    events += list.length;
  }
  return { events, customerIds };
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const customers = Math.round(4_000 * ctx.scale);
  const eventsSchema = await ctx.freshSchema('proj_events');
  const database = connectPostgres(ctx.databaseUrl, { max: 12 });
  const store = await createPostgresEventStore(database, { schema: eventsSchema });
  const personalData = await createPersonalData(database.db, { schema: eventsSchema });
  const codec = personalDataCodec(personalData);
  const projections = readModelProjections();
  const closers: (() => Promise<void>)[] = [];
  try {
    ctx.log(`seeding ${customers} customers`);
    const seeded = await seed(store, personalData, customers);
    const head = await store.headPosition();
    ctx.log(`${seeded.events} events seeded`);

    // Raw read rate: the same events, paged from the store as replay reads them.
    const readRounds: number[] = [];
    const decodeRounds: number[] = [];
    for (let round = 0; round < 2; round++) {
      let started = performance.now();
      let from = 0n;
      let count = 0;
      const pages = [];
      for (;;) {
        const page = await store.readAll({ fromPosition: from, maxCount: 5_000 }); // the page size replay reads
        if (page.length === 0) break;
        pages.push(page);
        count += page.length;
        from = page[page.length - 1]!.position;
      }
      readRounds.push(rate(count, performance.now() - started));
      started = performance.now();
      for (const page of pages) for (const e of page) await codec.decode(e);
      decodeRounds.push(rate(count, performance.now() - started));
    }

    // Full replay of every read model from zero into a fresh schema (best of two rounds).
    const replayRounds: { eventsPerSecond: number; ms: number }[] = [];
    for (let round = 0; round < 2; round++) {
      const schema = await ctx.freshSchema(`proj_replay${round}`);
      const started = performance.now();
      const result = await replayInto({ db: database.db, store, codec, projections, schema, replace: true, concurrent: true, untilPosition: head });
      const ms = performance.now() - started;
      if (result.failed.length > 0) throw new Error(`replay failed: ${result.failed.join(', ')}`);
      replayRounds.push({ eventsPerSecond: rate(result.events, ms), ms: Math.round(ms) });
      ctx.log(`replay round ${round}: ${replayRounds[round]!.eventsPerSecond} events/s`);
    }

    // Lag under a steady command rate: a live runner follows while purchases arrive.
    const liveSchema = await ctx.freshSchema('proj_live');
    // The runner gets its own small pool, as a deployment should give it: command handlers queueing on
    // the same pool would otherwise delay every batch transaction behind them.
    const runnerDatabase = connectPostgres(ctx.databaseUrl, { max: 6 });
    closers.push(() => runnerDatabase.close());
    const runnerStore = await createPostgresEventStore(runnerDatabase, { schema: eventsSchema });
    closers.unshift(() => runnerStore.close());
    // When each event reaches the runner, to split the lag into feed delivery (the store's gap-free
    // feed waits for the cluster-wide xmin) and the runner's own share (batching, decoding, applying).
    const arrivals = new Map<bigint, number>();
    const observedStore: EventStore = Object.assign(Object.create(runnerStore) as EventStore, {
      subscribeToAll: (options?: Parameters<EventStore['subscribeToAll']>[0]) =>
        runnerStore.subscribeToAll(options).pipe(
          tap((m) => {
            if (m.kind === 'event') arrivals.set(m.event.position, performance.now());
          }),
        ),
    });
    const runner = new ProjectionRunner({ db: runnerDatabase.db, store: observedStore, schema: liveSchema, projections, codec, concurrent: true });
    await runner.start();
    await runner.waitForPosition(head, 120_000);
    const commands = createCrmCommands({ store, personalData });
    const targetRate = 500;
    const seconds = 15;
    const lags: number[] = [];
    const feedDelays: number[] = [];
    const runnerShares: number[] = [];
    const commandLatencies: number[] = [];
    let failures = 0;
    const inFlight: Promise<void>[] = [];
    const started = performance.now();
    let issued = 0;
    let skipped = 0;
    let pending = 0;
    // Open loop at the target rate, but never more than this many commands in flight: past it the
    // machine is saturated and a tick's commands are counted as skipped instead of piling up.
    const maxInFlight = 64;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const due = Math.min(targetRate * seconds, Math.floor(((performance.now() - started) / 1000) * targetRate));
        for (; issued + skipped < due;) {
          if (pending >= maxInFlight) {
            skipped++;
            continue;
          }
          const n = issued++;
          pending++;
          let counted = false;
          const customerId = seeded.customerIds[n % seeded.customerIds.length]!;
          const t0 = performance.now();
          inFlight.push(
            commands
              .execute(
                { type: 'RecordPurchase', customerId, orderId: `live-${n}`, amount: 12.5, currency: 'EUR' },
                { actor: { userId: 'bench', roles: ['sales'] }, correlationId: randomUUID() },
              )
              .then(async (result) => {
                const appended = performance.now();
                pending--;
                counted = true;
                commandLatencies.push(appended - t0);
                await runner.waitForPosition(result.position, 30_000);
                const applied = performance.now();
                lags.push(applied - appended);
                const arrived = arrivals.get(result.position);
                if (arrived !== undefined) {
                  feedDelays.push(arrived - appended);
                  runnerShares.push(applied - arrived);
                }
              })
              .catch(() => {
                failures++;
              })
              .finally(() => {
                if (!counted) pending--;
              }),
          );
        }
        if (issued + skipped >= targetRate * seconds) {
          clearInterval(timer);
          resolve();
        }
      }, 5);
    });
    await Promise.all(inFlight);
    const elapsed = (performance.now() - started) / 1000;
    await runner.stop();

    const bestRead = Math.max(...readRounds);
    const bestReplay = replayRounds.reduce((a, b) => (b.eventsPerSecond > a.eventsPerSecond ? b : a));
    return {
      events: seeded.events,
      customers,
      rawReadEventsPerSecond: bestRead,
      readAndDecodeEventsPerSecond: Math.max(...decodeRounds),
      replay: {
        projections: projections.map((p) => p.name),
        eventsPerSecond: bestReplay.eventsPerSecond,
        ms: bestReplay.ms,
        rounds: replayRounds,
        shareOfRawRead: round(bestReplay.eventsPerSecond / bestRead, 3),
        target: 20_000,
        meetsTarget: bestReplay.eventsPerSecond >= 20_000,
      },
      lag: {
        commandsPerSecondTarget: targetRate,
        commandsPerSecondAchieved: round((issued - failures) / elapsed, 1),
        commands: issued,
        skippedAtInFlightCap: skipped,
        failures,
        p50Ms: percentile(lags, 50),
        p99Ms: percentile(lags, 99),
        maxMs: round(Math.max(...lags), 1),
        feedDeliveryP50Ms: percentile(feedDelays, 50),
        feedDeliveryP99Ms: percentile(feedDelays, 99),
        runnerShareP50Ms: percentile(runnerShares, 50),
        runnerShareP99Ms: percentile(runnerShares, 99),
        loadAverage: loadavg().map((l) => round(l, 1)),
        commandLatencyP50Ms: percentile(commandLatencies, 50),
        commandLatencyP99Ms: percentile(commandLatencies, 99),
        targetP99Ms: 100,
        meetsTarget: percentile(lags, 99) < 100,
      },
    };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    await store.close();
    await database.close();
  }
}

export function summarize(result: Record<string, any>): string[] {
  return [
    `replay ${result.replay.eventsPerSecond} events/s over ${result.events} events (raw read ${result.rawReadEventsPerSecond}/s, read+decode ${result.readAndDecodeEventsPerSecond}/s; target 20000)`,
    `lag at ${result.lag.commandsPerSecondAchieved} commands/s: p50 ${result.lag.p50Ms} ms, p99 ${result.lag.p99Ms} ms (target p99 < 100 ms); ` +
      `feed delivery p50 ${result.lag.feedDeliveryP50Ms} / p99 ${result.lag.feedDeliveryP99Ms} ms, runner p50 ${result.lag.runnerShareP50Ms} / p99 ${result.lag.runnerShareP99Ms} ms; load ${result.lag.loadAverage}`,
  ];
}
