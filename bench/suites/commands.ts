/**
 * The command path without HTTP: purchases per second and rows read per purchase, with the stream
 * cache (commands/stream-cache.ts) against without it (every command folds the whole stream, as
 * before the cache), on customers with a short and a long history. Variants run interleaved, best
 * of three rounds, so a busy machine weighs on both alike. Then the first purchase of each customer
 * by a handler that holds no stream (a process started anew), with the store's saved states of
 * customer streams (commands/snapshots.ts) and without them: rows read independent of the history
 * only with them. Last, in memory, how the compact form of a customer's state (commands/compact-state.ts)
 * scales with the orders it holds: the time for 9,000 orders against 1,000 (9x when linear; it was
 * quadratic, 230x, and a customer with 9,000 orders blocked the event loop for seconds).
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { createCrmCommands, type CrmCommands } from '../../commands/index.ts';
import { CompactIds, compactState } from '../../commands/compact-state.ts';
import { dictionary, setEntry } from '../../domain/entries.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { countingStreamReads } from '../../eventstore/read-counter.ts';
import { connectPostgres, createPostgresEventStore } from '../../eventstore/postgres/index.ts';
import { rate, ratio, round, type BenchContext } from '../report.ts';

const WRITERS = 16;

/** Milliseconds to compact a state of `orders` orders and to collect as many event ids (best of three). */
const compaction = (orders: number): number => {
  let best = Infinity;
  for (let round_ = 0; round_ < 3; round_++) {
    const book = dictionary();
    for (let i = 0; i < orders; i++) setEntry(book, `order-${i}`, { amount: 12.5, currency: 'EUR', refunded: 0, purchasedAt: 1_767_348_000 + i });
    const uuids = Array.from({ length: orders }, () => randomUUID());
    const started = performance.now();
    const state = compactState('customer', { orders: book, refunds: dictionary() });
    const ids = new CompactIds();
    for (const id of uuids) ids.add(id, 'command-hash');
    const size = ids.size;
    best = Math.min(best, performance.now() - started);
    // Checked outside the time: enumerating a book's keys looks each one up (a reader's cost, not compaction's).
    if (Object.keys(state.orders).length !== orders || size !== orders) throw new Error('compaction lost entries');
  }
  return round(best, 1);
};

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const schema = await ctx.freshSchema('commands_events');
  const database = connectPostgres(ctx.databaseUrl, { max: WRITERS + 2 });
  const real = await createPostgresEventStore(database, { schema });
  // Counts what the store returns to the command layer: the rows a purchase reads.
  const { store, rowsRead } = countingStreamReads(real);
  const personalData = await createPersonalData(database.db, { schema });
  const admin = new pg.Client({ connectionString: ctx.databaseUrl });
  await admin.connect();
  const commits = async () =>
    Number((await admin.query<{ n: string }>('SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0]!.n);
  const ctxOf = () => ({ actor: { userId: 'bench', roles: ['sales'] }, correlationId: randomUUID() });
  const purchase = (commands: CrmCommands, customerId: string) =>
    commands.execute({ type: 'RecordPurchase', customerId, orderId: randomUUID(), amount: 10, currency: 'EUR' }, ctxOf());

  const variants = {
    cached: createCrmCommands({ store, personalData }),
    uncached: createCrmCommands({ store, personalData, cachedStreams: 0 }),
  };
  const histories = [Math.round(10 * ctx.scale), Math.round(300 * ctx.scale)];
  const perWriter = Math.max(5, Math.round(25 * ctx.scale));
  const results: Record<
    string,
    Record<string, { purchasesPerSecond: number; rowsReadPerPurchase: number; commitsPerPurchase?: number; streamEvents?: number }>
  > = {};
  try {
    for (const history of histories) {
      ctx.log(`commands: ${WRITERS} customers with ${history} purchases each`);
      const customers: string[] = [];
      for (let i = 0; i < WRITERS; i++) {
        const { id } = await variants.cached.execute({ type: 'RegisterCustomer', name: `Bench ${i}`, email: `bench${i}-${randomUUID()}@example.com` }, ctxOf());
        for (let j = 0; j < history; j++) await purchase(variants.cached, id);
        customers.push(id);
      }
      const best: Record<string, { purchasesPerSecond: number; rowsReadPerPurchase: number; commitsPerPurchase?: number; streamEvents?: number }> = {};
      for (let round_ = 0; round_ < 3; round_++) {
        for (const [name, commands] of Object.entries(variants)) {
          // Warm: the cached variant starts each round with the streams it holds, as a running API does.
          for (const id of customers) await purchase(commands, id);
          rowsRead.n = 0;
          const commitsBefore = await commits();
          const started = performance.now();
          await Promise.all(
            customers.map(async (id) => {
              for (let k = 0; k < perWriter; k++) await purchase(commands, id);
            }),
          );
          const ms = performance.now() - started;
          const total = WRITERS * perWriter;
          const measured = {
            purchasesPerSecond: rate(total, ms),
            rowsReadPerPurchase: round(rowsRead.n / total, 2),
            // Whole database: other sessions' commits count too (a loaded machine inflates this).
            commitsPerPurchase: round(((await commits()) - commitsBefore - 1) / total, 2),
          };
          if (!best[name] || measured.purchasesPerSecond > best[name].purchasesPerSecond) best[name] = measured;
        }
      }
      // A process started anew (a restart, or streams the cache let go): the first purchase of each
      // customer by a handler that holds no stream, with the store's saved states and without them. The
      // first handler with them reads whole streams and saves the long ones (in the background); the
      // next ones read the saved states and the events after them.
      const cold = async (name: string, withSaved: boolean) => {
        const commands = createCrmCommands({ store: withSaved ? store : { ...store, snapshots: undefined }, personalData });
        // The warm rounds above added to the history: the length the purchase meets.
        const streamEvents = (await real.readStream(`customer-${customers[0]!}`)).length;
        rowsRead.n = 0;
        const started = performance.now();
        await Promise.all(customers.map((id) => purchase(commands, id)));
        const measured = { purchasesPerSecond: rate(WRITERS, performance.now() - started), rowsReadPerPurchase: round(rowsRead.n / WRITERS, 2), streamEvents };
        if (!best[name] || measured.purchasesPerSecond > best[name].purchasesPerSecond) best[name] = measured;
        await new Promise((resolve) => setTimeout(resolve, 300));
      };
      await cold('coldFirstWithSavedStates', true);
      for (let round_ = 0; round_ < 3; round_++) {
        await cold('coldWithoutSavedStates', false);
        await cold('coldWithSavedStates', true);
      }
      delete best.coldFirstWithSavedStates;
      results[`history${history}`] = best;
    }
  } finally {
    await admin.end();
    await real.close();
    await database.close();
  }
  const [short, long] = histories.map((h) => results[`history${h}`]!);
  ctx.log('commands: compact form of a state of 1,000 and 9,000 orders');
  const [small, large] = [compaction(1_000), compaction(9_000)];
  return {
    compaction: { orders1000Ms: small, orders9000Ms: large, ratio9000To1000: ratio(large, small) },
    writers: WRITERS,
    purchasesPerWriter: perWriter,
    ...results,
    ratios: {
      cachedToUncachedShortHistory: ratio(short!.cached!.purchasesPerSecond, short!.uncached!.purchasesPerSecond),
      cachedToUncachedLongHistory: ratio(long!.cached!.purchasesPerSecond, long!.uncached!.purchasesPerSecond),
      cachedLongToShort: ratio(long!.cached!.purchasesPerSecond, short!.cached!.purchasesPerSecond),
      coldLongHistoryWithToWithoutSavedStates: ratio(long!.coldWithSavedStates!.purchasesPerSecond, long!.coldWithoutSavedStates!.purchasesPerSecond),
    },
  };
}

export function summarize(result: Record<string, unknown>): string[] {
  const lines: string[] = [];
  const c = result.compaction as { orders1000Ms: number; orders9000Ms: number; ratio9000To1000: number } | undefined;
  if (c) lines.push(`commands compaction: 1,000 orders ${c.orders1000Ms} ms, 9,000 orders ${c.orders9000Ms} ms (${c.ratio9000To1000}x; linear is 9x)`);
  for (const [key, value] of Object.entries(result)) {
    if (!key.startsWith('history')) continue;
    for (const [variant, m] of Object.entries(value as Record<string, Record<string, number>>)) {
      lines.push(
        `commands ${key} ${variant}: ${m.purchasesPerSecond}/s, ${m.rowsReadPerPurchase} rows read${m.commitsPerPurchase === undefined ? '' : ` and ${m.commitsPerPurchase} commits`} per purchase${m.streamEvents === undefined ? '' : ` (streams of ${m.streamEvents} events)`}`,
      );
    }
  }
  lines.push(`commands ratios: ${JSON.stringify(result.ratios)}`);
  return lines;
}
