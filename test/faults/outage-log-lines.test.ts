import { tmpdir } from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { schemaEnv, Server } from '../cli/support.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { FaultProxy } from './proxy.ts';

/**
 * The log of a `crm project` worker through a database outage (PostgreSQL behind a TCP proxy that
 * refuses for a few seconds): the projections and the chain sealer log the outage's start and its
 * end, not a line per retry, and a SIGTERM during the outage logs none of the failures the stop itself causes.
 */
const schemas = testSchemas('outage_log_lines');
const proxy = FaultProxy.before(TEST_DATABASE_URL);
const workers: Server[] = [];

beforeAll(async () => {
  await proxy.start();
});

// A test failing mid-outage leaves the database reachable for the next.
afterEach(() => proxy.pass());

afterAll(async () => {
  for (const worker of workers) worker.kill();
  await proxy.close();
  await schemas.dropSchemas();
});

const lines = (text: string, pattern: RegExp): string[] => text.split('\n').filter((line) => pattern.test(line));
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A worker through the proxy, its projections running. */
const startWorker = async (): Promise<Server> => {
  const worker = new Server(
    tmpdir(),
    schemaEnv(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL), CRM_SHUTDOWN_TIMEOUT_MS: '8000', LOG_LEVEL: 'info' }),
    'project',
  );
  workers.push(worker);
  await worker.waitFor(/Projections are running/, 60_000, 'stderr');
  return worker;
};

// The worker's log: JSON lines on stdout, each naming its part.
const RETRIES = /"part":"projections".*"msg":"[^"]*(resubscribing|retrying)"/;

describe('crm project logging a database outage', () => {
  it('logs one line when the projections lose the database and one when they have it back', async () => {
    const worker = await startWorker();
    const before = worker.stdout.length;
    proxy.refuse();
    await pause(5_000);
    proxy.pass();
    const outage = worker.stdout.slice(before);
    // Retries every second at most: about five attempts, one line; the chain sealer (a seal a second) one too.
    expect(lines(outage, RETRIES), outage).toHaveLength(1);
    expect(lines(outage, /"part":"chain sealer"/), outage).toEqual([expect.stringMatching(/"level":40,.*"msg":"sealing failed/)]);
    await worker.waitFor(/"part":"projections".*"failedAttempts":\d+.*"msg":"projection feed resubscribed"/, 15_000, 'stdout');
    await worker.waitFor(/"part":"chain sealer".*"failedAttempts":\d+.*"msg":"sealing again"/, 15_000, 'stdout');
    expect(lines(worker.stdout.slice(before), RETRIES), worker.stdout).toHaveLength(1);
    expect(await worker.stop('SIGTERM'), worker.stderr).toBe(0);
  }, 60_000);

  it('logs none of the failures its own stop causes when stopped during an outage', async () => {
    const worker = await startWorker();
    // Stalled: the loops wait on the link until the stop gives up on them and closes the pool under them.
    proxy.stall();
    await pause(2_000);
    const stopAt = { out: worker.stdout.length, err: worker.stderr.length };
    await worker.stop('SIGTERM');
    const stopping = worker.stdout.slice(stopAt.out) + worker.stderr.slice(stopAt.err);
    // The stall is an outage (its start may be logged once, here after the signal); the pool closed
    // under the loops by the stop is our own doing, no failure: no retries logged, no destroyed driver.
    expect(lines(stopping, RETRIES).length, stopping).toBeLessThanOrEqual(1);
    expect(lines(stopping, /destroyed|pool.*(ended|closed)|Cannot use a pool/i), stopping).toEqual([]);
  }, 60_000);
});
