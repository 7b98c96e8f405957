import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisHealth, sharedCounters } from '../../api/shared-counters.ts';
import { connectRedis } from '../../runtime/redis.ts';
import { FaultProxy } from '../faults/proxy.ts';

/**
 * The log of a replica whose shared rate-limit counters lose Redis (README, "Rate limits"): one line
 * when the counters switch to this process and one when they are shared again, whatever the fault
 * (refused, reset, stalled), with `usable` (what `crm_rate_limit_redis_up` shows) agreeing. Real Redis
 * on 127.0.0.1:6379 behind a TCP proxy; the client's log and the health's are the process's one log.
 */
const REDIS = { host: '127.0.0.1', port: 6379 };
const STOPPED = /counted in this process/;
const RESUMED = /shared by the replicas again/;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const until = async (what: string, check: () => boolean, timeoutMs = 8_000): Promise<void> => {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** A replica's counters on Redis through a proxy, as runtime/crm.ts and api/rate-limit.ts build them. */
const replica = async (options: { refuseAtStart?: boolean } = {}) => {
  const proxy = new FaultProxy(REDIS);
  await proxy.start();
  if (options.refuseAtStart) proxy.refuse();
  const lines: string[] = [];
  const client: Redis = connectRedis(`redis://127.0.0.1:${proxy.port}`, (line) => lines.push(line));
  if (!options.refuseAtStart) await until(`Redis at ${REDIS.host}:${REDIS.port} answering through the proxy (is it running?)`, () => client.status === 'ready');
  else await until('the client failing to connect', () => client.status === 'reconnecting');
  const health = new RedisHealth(client, { probeEveryMs: 100, log: (line) => lines.push(line) });
  const Counters = sharedCounters(client, health, `crm-rate-limit-test-${randomUUID()}:`);
  const counters = new (
    Counters as unknown as new (params: object) => { incr: (key: string, cb: (error: Error | null) => void, windowMs: number, max: number) => void }
  )({});
  cleanups.push(async () => {
    health.stop();
    client.disconnect();
    await proxy.close();
  });
  /** Requests arriving now and then, as traffic does: each counted somewhere, none failing. */
  const traffic = setInterval(() => counters.incr('key:test', (error) => expect(error).toBeNull(), 60_000, 1_000), 50);
  cleanups.push(() => clearInterval(traffic));
  return { proxy, client, health, lines };
};

describe('rate-limit counters switching between Redis and this process', () => {
  it('logs one line when Redis refuses and one when it is back, and usable follows', async () => {
    const { proxy, health, lines } = await replica();
    expect(health.usable).toBe(true);
    proxy.refuse();
    await until('counted in this process', () => !health.usable);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(health.usable).toBe(false);
    proxy.pass();
    await until('shared again', () => health.usable);
    await new Promise((r) => setTimeout(r, 500));
    expect(
      lines.filter((line) => STOPPED.test(line)),
      lines.join('\n'),
    ).toHaveLength(1);
    expect(
      lines.filter((line) => RESUMED.test(line)),
      lines.join('\n'),
    ).toHaveLength(1);
    expect(lines, lines.join('\n')).toHaveLength(2);
  });

  it('logs one pair for a reset connection that reconnects at once', async () => {
    const { proxy, health, lines } = await replica();
    proxy.resetAll();
    await until('the switch logged', () => lines.length > 0);
    await until('shared again', () => health.usable && lines.some((line) => RESUMED.test(line)));
    await new Promise((r) => setTimeout(r, 500));
    expect(lines.map((line) => (STOPPED.test(line) ? 'stopped' : RESUMED.test(line) ? 'resumed' : line))).toEqual(['stopped', 'resumed']);
  });

  it('logs one pair for a stall long enough to reconnect through', async () => {
    const { proxy, client, health, lines } = await replica();
    proxy.stall();
    await until('counted in this process', () => !health.usable);
    // Three probes without an answer (100 ms apart) reconnect the client; the new connection stalls too.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(health.usable).toBe(false);
    proxy.pass();
    await until('shared again', () => health.usable, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(lines.map((line) => (STOPPED.test(line) ? 'stopped' : RESUMED.test(line) ? 'resumed' : line))).toEqual(['stopped', 'resumed']);
    expect(client.status).toBe('ready');
  });

  it('does not switch when a command timed out only because this process was busy past the timeout', async () => {
    const { client, health, lines } = await replica();
    let failedBy: Error | null | undefined;
    // A command in flight, then the event loop held for 600 ms (past the 250 ms command timeout): its
    // timer fires before the answer, already there, is read.
    void client
      .incr(`crm-rate-limit-test-${randomUUID()}`)
      .then(() => (failedBy = null))
      .catch((error: Error) => (failedBy = error));
    const end = Date.now() + 600;
    while (Date.now() < end);
    await until('the command settled', () => failedBy !== undefined);
    await new Promise((r) => setTimeout(r, 500));
    expect(failedBy?.message ?? 'answered').toMatch(/timed out|answered/);
    if (failedBy) health.failed(failedBy);
    await new Promise((r) => setTimeout(r, 500));
    expect(health.usable).toBe(true);
    expect(lines, lines.join('\n')).toEqual([]);
  });

  it('logs the start without Redis once, and its return once', async () => {
    const { proxy, health, lines } = await replica({ refuseAtStart: true });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(health.usable).toBe(false);
    proxy.pass();
    await until('shared once Redis answers', () => health.usable);
    await new Promise((r) => setTimeout(r, 500));
    expect(lines[0]).toMatch(/^Redis at redis:\/\/127\.0\.0\.1:\d+\/?: .*; rate limits are counted in this process/);
    expect(lines.map((line) => (STOPPED.test(line) ? 'stopped' : RESUMED.test(line) ? 'resumed' : line))).toEqual(['stopped', 'resumed']);
  });
});
