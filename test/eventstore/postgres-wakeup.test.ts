import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, DEFAULT_POOL_TIMEOUTS, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { channelFor, createWakeup } from '../../eventstore/postgres/wakeup.ts';
import { until } from '../faults/sessions.ts';
import { TEST_DATABASE_URL } from '../support/postgres.ts';

/**
 * The wake-ups after an append (`createWakeup`) on a real server: subscribers of the process are woken
 * at once, and other processes get at most one NOTIFY per interval, a trailing one after a burst (a
 * NOTIFY takes a global lock at commit). A plain LISTEN session counts the NOTIFYs; the wake-ups send
 * theirs through a pool of one connection, so a NOTIFY the test sends after them through that pool
 * arrives after every one of theirs, and marks the end of what they sent.
 */

const handles: SqlDatabase[] = [];
const single = (url = TEST_DATABASE_URL): SqlDatabase => {
  const handle = connectPostgres(url, { max: 1, timeouts: { ...DEFAULT_POOL_TIMEOUTS, connectMs: 1_000 } });
  handles.push(handle);
  return handle;
};
const listener = new pg.Client({ connectionString: TEST_DATABASE_URL });
/** Payloads received per channel. */
const received = new Map<string, string[]>();
let schemas = 0;

beforeAll(async () => {
  await listener.connect();
  listener.on('notification', (message) => received.get(message.channel)?.push(message.payload ?? ''));
});

afterAll(async () => {
  for (const handle of handles) await handle.close();
  await listener.end();
});

/** A schema of its own and the NOTIFYs on its channel. */
const watched = async () => {
  schemas += 1;
  const schema = `t_wakeup_${process.pid}_${schemas}`;
  const channel = channelFor(schema);
  const payloads: string[] = [];
  received.set(channel, payloads);
  await listener.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
  /** Every NOTIFY sent through `database` so far, once they have all arrived. */
  const sentThrough = async (database: SqlDatabase): Promise<string[]> => {
    await sql`SELECT pg_notify(${channel}, 'end')`.execute(database.db);
    await until('the closing NOTIFY arrived', 5_000, async () => (payloads.includes('end') ? true : undefined));
    return payloads.splice(0).slice(0, -1);
  };
  return { schema, payloads, sentThrough };
};

describe('wake-ups after an append', () => {
  it('a burst of appends sends one NOTIFY at once and one trailing NOTIFY an interval later, not one per append', async () => {
    const database = single();
    const { schema, payloads, sentThrough } = await watched();
    const wakeup = createWakeup(database, schema, { interval: 400 });
    const started = Date.now();
    for (let i = 0; i < 10; i += 1) wakeup.appended();
    await until('the trailing NOTIFY arrived', 10_000, async () => (payloads.length >= 2 ? true : undefined));
    // Not before the interval has passed since the first (timers never fire early; 5 ms for rounding).
    expect(Date.now() - started).toBeGreaterThanOrEqual(395);
    expect(await sentThrough(database)).toEqual(['', '']);
    wakeup.close();
  });

  it('a closed wake-up sends no NOTIFY, neither a trailing one already due nor one for a later append', async () => {
    const database = single();
    const { schema, payloads, sentThrough } = await watched();
    const wakeup = createWakeup(database, schema, { interval: 100 });
    wakeup.appended();
    // A trailing NOTIFY is now due 100 ms after the first.
    wakeup.appended();
    await until('the first NOTIFY arrived', 5_000, async () => (payloads.length >= 1 ? true : undefined));
    wakeup.close();
    wakeup.appended();
    // Past the moment the trailing NOTIFY was due (its absence cannot be polled for).
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await sentThrough(database)).toEqual(['']);
  });

  it('wakes the subscribers of every store on the handle at once, and no longer one that stopped', async () => {
    const database = single();
    const { schema } = await watched();
    // Two stores of one schema on one handle (an API process: the writer and a subscriber's store).
    const writer = createWakeup(database, schema);
    const reader = createWakeup(database, schema);
    const woken = { staying: 0, leaving: 0 };
    await reader.onAppend(() => (woken.staying += 1));
    const stop = await reader.onAppend(() => (woken.leaving += 1));
    writer.appended();
    // Directly, in the same turn: no NOTIFY round trip.
    expect(woken).toEqual({ staying: 1, leaving: 1 });
    await stop();
    // The first append's NOTIFY may have come back through LISTEN meanwhile (one more wake of each):
    // counted from here, in one turn, only the direct wake-ups show.
    const before = { ...woken };
    writer.appended();
    expect(woken).toEqual({ staying: before.staying + 1, leaving: before.leaving });
    writer.close();
    reader.close();
    // What other processes are sent is the first test's: here the NOTIFY raced the closes (none arrived, once in CI).
  });

  it('a subscriber whose LISTEN fails (the server is unreachable) is still registered, and woken by appends of its process', async () => {
    const database = single('postgres://postgres@127.0.0.1:1/crm');
    const wakeup = createWakeup(database, `t_wakeup_${process.pid}_unreachable`);
    let woken = 0;
    const stop = await wakeup.onAppend(() => (woken += 1));
    wakeup.appended();
    expect(woken).toBe(1);
    await stop();
    wakeup.close();
  });
});
