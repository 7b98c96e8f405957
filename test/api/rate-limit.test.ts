import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type CrmApp } from '../../api/app.ts';
import type { RateLimitOptions } from '../../api/rate-limit.ts';
import { ConfigError, loadConfig } from '../../cli/config.ts';
import { connectRedis } from '../../runtime/redis.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { expectProblem, startApi, type ApiHarness } from './support.ts';

/** Real Redis on this machine (`.ci/run` starts it where it is missing). */
const REDIS_URL = 'redis://127.0.0.1:6379';

let h: ApiHarness;
const apps: CrmApp[] = [];
const clients: Redis[] = [];
const proxies: FaultProxy[] = [];
beforeAll(async () => {
  h = await startApi('api_rate_limit');
});
afterAll(async () => {
  for (const app of apps) await app.close();
  for (const client of clients) client.disconnect();
  for (const proxy of proxies) await proxy.close();
  await h?.close();
});

/** Another API process over the same database: same keys, its own limiter. */
const replica = async (rateLimit: RateLimitOptions): Promise<CrmApp> => {
  const app = await buildApp({ ...h.deps, rateLimit });
  apps.push(app);
  return app;
};

const redisClient = async (url = REDIS_URL): Promise<Redis> => {
  const client = connectRedis(url);
  clients.push(client);
  return client;
};

const get = (app: CrmApp, headers: Record<string, string>, remoteAddress?: string) =>
  app.inject({ method: 'GET', url: '/deals', headers, ...(remoteAddress ? { remoteAddress } : {}) });

/** A fresh client address per test: counters in Redis outlive a test run. */
const freshAddress = (): string => `10.${[0, 0, 0].map(() => Math.floor(Math.random() * 250) + 1).join('.')}`;

/**
 * Requests refused for their key, from one address: none, a malformed header, made-up keys. They
 * share the address's budget; past it, a real key the replica has not cached yet is refused too
 * (it would have to be looked up in the database), while the same key from another address passes.
 */
const refusalsCountPerAddress = async (one: CrmApp, two: CrmApp = one): Promise<void> => {
  const address = freshAddress();
  const codes: number[] = [];
  const attempts: Record<string, string>[] = [
    {},
    { authorization: 'Basic abc' },
    { authorization: `Bearer crm_${randomUUID()}` },
    { authorization: `Bearer crm_${randomUUID()}` },
  ];
  for (const [i, headers] of attempts.entries()) codes.push((await get(i % 2 ? two : one, headers, address)).statusCode);
  expect(codes).toEqual([401, 401, 401, 429]);
  const first = await get(one, {}, freshAddress());
  expectProblem(first, 401, 'unauthenticated');
  expect(first.headers['ratelimit-limit']).toBe('3');
  expect(first.headers['ratelimit-remaining']).toBe('2');
  const refused = await get(two, { authorization: `Bearer crm_${randomUUID()}` }, address);
  expectProblem(refused, 429, 'rate-limited');
  expectRetryWithinTheWindow(refused);
  expect(refused.headers['ratelimit-reset']).toBe(refused.headers['retry-after']);
  const valid = await freshKey();
  expectProblem(await get(one, valid, address), 429, 'rate-limited');
  expect((await get(one, valid, freshAddress())).statusCode).toBe(200);
  // Once cached, the key is no lookup: it passes from the exhausted address, counted as the key.
  const cached = await get(one, valid, address);
  expect(cached.statusCode).toBe(200);
  expect(cached.headers['ratelimit-remaining']).toBe('1');
};

/** A 429's Retry-After: whole seconds within the minute's window, the same in the problem's detail. */
const expectRetryWithinTheWindow = (refused: { headers: Record<string, unknown>; body: string }): void => {
  const seconds = Number(refused.headers['retry-after']);
  expect(Number.isInteger(seconds) && seconds >= 1 && seconds <= 60).toBe(true);
  expect((JSON.parse(refused.body) as { detail: string }).detail).toContain(`requests in a minute; retry after ${seconds} s`);
};

/** A fresh key per test: counters in Redis outlive a test run. */
const freshKey = async (role: 'sales' | 'support' = 'sales') => {
  const { key } = await h.app.keys.create({ name: `limit ${randomUUID()}`, role });
  return { authorization: `Bearer ${key}` };
};

describe('rate limits counted in each process', () => {
  it('sends RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset, then 429 with Retry-After', async () => {
    const app = await replica({ max: 3, timeWindowMs: 60_000 });
    const auth = await freshKey();
    const first = await get(app, auth);
    expect(first.statusCode).toBe(200);
    expect(first.headers['ratelimit-limit']).toBe('3');
    expect(first.headers['ratelimit-remaining']).toBe('2');
    expect(Number(first.headers['ratelimit-reset'])).toBeGreaterThan(0);
    expect(Number(first.headers['ratelimit-reset'])).toBeLessThanOrEqual(60);
    await get(app, auth);
    expect((await get(app, auth)).headers['ratelimit-remaining']).toBe('0');
    const refused = await get(app, auth);
    expectProblem(refused, 429, 'rate-limited');
    expectRetryWithinTheWindow(refused);
    // Another key has its own budget.
    expect((await get(app, await freshKey())).statusCode).toBe(200);
  });

  it('applies a role limit in place of the default, and 0 turns the limit off for that role', async () => {
    const app = await replica({ max: 2, timeWindowMs: 60_000, perRole: { sales: 4, support: 0 } });
    const sales = await freshKey('sales');
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await get(app, sales)).statusCode);
    expect(codes).toEqual([200, 200, 200, 200, 429]);
    const support = await freshKey('support');
    for (let i = 0; i < 10; i++) {
      const res = await get(app, support);
      expect(res.statusCode).toBe(200);
      expect(res.headers['ratelimit-limit']).toBeUndefined();
    }
  });

  it('counts requests without a key, or with a bad one, against the client address, and stops looking keys up past the limit', async () => {
    await refusalsCountPerAddress(await replica({ max: 3, timeWindowMs: 60_000 }));
  });

  it('behind a trusted proxy, counts the address X-Forwarded-For names: a keyless client locks out only itself', async () => {
    const app = await buildApp({ ...h.deps, rateLimit: { max: 3, timeWindowMs: 60_000 }, trustProxy: ['10.0.0.0/8'] });
    apps.push(app);
    const balancer = freshAddress();
    const from = (client: string, headers: Record<string, string> = {}) =>
      app.inject({ method: 'GET', url: '/deals', remoteAddress: balancer, headers: { ...headers, 'x-forwarded-for': client } });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) codes.push((await from('203.0.113.7')).statusCode);
    expect(codes).toEqual([401, 401, 401, 429]);
    // Another client behind the same balancer, with a key this process has not cached yet: looked up and served.
    expect((await from('198.51.100.20', await freshKey())).statusCode).toBe(200);
    // An untrusted peer cannot pick its address: its X-Forwarded-For is ignored, and it is counted as itself.
    const outsider = '192.0.2.44';
    const spoofed: number[] = [];
    for (let i = 0; i < 4; i++)
      spoofed.push(
        (await app.inject({ method: 'GET', url: '/deals', remoteAddress: outsider, headers: { 'x-forwarded-for': `198.51.100.${i + 1}` } })).statusCode,
      );
    expect(spoofed).toEqual([401, 401, 401, 429]);
  });

  it('names the window in a refusal, not the time left in it', async () => {
    const app = await replica({ max: 1, timeWindowMs: 60_000 });
    const auth = await freshKey();
    await get(app, auth);
    const refused = await get(app, auth);
    expectProblem(refused, 429, 'rate-limited');
    expect((JSON.parse(refused.body) as { detail: string }).detail).toMatch(/^More than 1 requests in a minute; retry after \d+ s\.$/);
  });

  it('counts each replica apart without Redis (two replicas give a key twice its limit)', async () => {
    const one = await replica({ max: 2, timeWindowMs: 60_000 });
    const two = await replica({ max: 2, timeWindowMs: 60_000 });
    const auth = await freshKey();
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await get(i % 2 ? two : one, auth)).statusCode);
    expect(codes).toEqual([200, 200, 200, 200]);
    expect((await get(one, auth)).statusCode).toBe(429);
  });
});

describe('rate limits shared through Redis', () => {
  it('counts a key once across replicas: its limit holds whichever replica answers', async () => {
    const one = await replica({ max: 3, timeWindowMs: 60_000, redis: await redisClient() });
    const two = await replica({ max: 3, timeWindowMs: 60_000, redis: await redisClient() });
    const auth = await freshKey();
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await get(i % 2 ? two : one, auth));
    expect(answers.map((r) => r.statusCode)).toEqual([200, 200, 200, 429]);
    expect(answers.map((r) => r.headers['ratelimit-remaining'])).toEqual(['2', '1', '0', '0']);
    expect(Number(answers[3]!.headers['retry-after'])).toBeGreaterThan(0);
    // The counter is in Redis, under the limiter's namespace.
    const keys = await clients[0]!.keys('crm-rate-limit:*');
    expect(keys.length).toBeGreaterThan(0);
  });

  it('counts requests without a key, or with a bad one, per client address across replicas', async () => {
    const one = await replica({ max: 3, timeWindowMs: 60_000, redis: await redisClient() });
    const two = await replica({ max: 3, timeWindowMs: 60_000, redis: await redisClient() });
    await refusalsCountPerAddress(one, two);
  });

  /** Redis behind a proxy of the test's own, and a client connected through it. */
  const redisBehindProxy = async (): Promise<{ proxy: FaultProxy; client: Redis }> => {
    const proxy = new FaultProxy({ host: '127.0.0.1', port: 6379 });
    await proxy.start();
    proxies.push(proxy);
    const client = await redisClient(`redis://127.0.0.1:${proxy.port}`);
    // Bounded: with Redis down the client is never ready, and the test says so instead of running into its timeout.
    if (client.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`Redis at ${REDIS_URL} did not answer within 5 s through the proxy: is it running?`)), 5_000);
        client.once('ready', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return { proxy, client };
  };

  /** `crm_rate_limit_redis_up` in the replica's /metrics (undefined when it has none). */
  const redisUp = async (app: CrmApp): Promise<number | undefined> => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    const value = /^crm_rate_limit_redis_up (\S+)$/m.exec(text)?.[1];
    return value === undefined ? undefined : Number(value);
  };

  /** Twenty requests of a key one after another: their statuses and how long they took together. */
  const twentyRequests = async (app: CrmApp, auth: Record<string, string>): Promise<{ codes: number[]; ms: number }> => {
    const started = Date.now();
    const codes: number[] = [];
    for (let i = 0; i < 20; i++) codes.push((await get(app, auth)).statusCode);
    return { codes, ms: Date.now() - started };
  };

  it('counts in the process, without waiting on each request, while Redis stalls; shared again once it answers; /metrics says which', async () => {
    const { proxy, client } = await redisBehindProxy();
    const app = await replica({ max: 5, timeWindowMs: 60_000, redis: client, redisProbeEveryMs: 100 });
    const auth = await freshKey();
    expect((await get(app, auth)).headers['ratelimit-remaining']).toBe('4');
    expect(await redisUp(app)).toBe(1);
    proxy.stall();
    // One command timeout (250 ms) for the first request, none after it: twenty requests waiting on a
    // stalled Redis each would take 5 s. The key stays limited, counted in this process.
    const stalled = await twentyRequests(app, auth);
    expect(stalled.codes).toEqual([...Array<number>(5).fill(200), ...Array<number>(15).fill(429)]);
    expect(stalled.ms).toBeLessThan(2_000);
    expect(await redisUp(app)).toBe(0);
    proxy.pass();
    // The Redis counter holds 2 (the request before the stall, the one that timed out, delivered
    // late): the key has budget there, while the process's own counter is past its limit.
    await expect.poll(async () => (await get(app, auth)).statusCode, { timeout: 5_000, interval: 300 }).toBe(200);
    expect(await redisUp(app)).toBe(1);
  });

  it('reconnects when its connection stalls for good, and the counters are shared again', async () => {
    const { proxy, client } = await redisBehindProxy();
    const app = await replica({ max: 5, timeWindowMs: 60_000, redis: client, redisProbeEveryMs: 100 });
    const auth = await freshKey();
    expect((await get(app, auth)).statusCode).toBe(200);
    // A half-open socket: nothing comes back on it, while a new connection would pass.
    proxy.stallOpen();
    const stalled = await twentyRequests(app, auth);
    // Counted in the process (a reconnection mid-way, on a loaded machine, may count the rest in Redis again).
    expect(stalled.codes.filter((code) => code === 429).length).toBeGreaterThanOrEqual(5);
    expect(stalled.ms).toBeLessThan(2_000);
    // Three probes without an answer, then a reconnection through a new connection.
    await expect.poll(async () => (await get(app, auth)).statusCode, { timeout: 8_000, interval: 300 }).toBe(200);
    expect(client.status).toBe('ready');
  });

  it('counts in the process, quickly, when Redis cannot be reached', async () => {
    // Nothing listens on port 1: the client is never ready, so no request waits on it.
    const app = await replica({ max: 2, timeWindowMs: 60_000, redis: await redisClient('redis://127.0.0.1:1') });
    const auth = await freshKey();
    const started = Date.now();
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) codes.push((await get(app, auth)).statusCode);
    expect(codes).toEqual([200, 200, 429]);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await redisUp(app)).toBe(0);
  });

  it('counts in the process when REDIS_URL names a database this Redis lacks, and says so, instead of sharing database 0', async () => {
    // Found by an operator: the log said "counted in this process" while /metrics said Redis was up and the counters went to database 0.
    const lines: string[] = [];
    const client = connectRedis(`${REDIS_URL}/99`, (line) => lines.push(line));
    clients.push(client);
    const deadline = Date.now() + 5_000;
    while (client.status !== 'end' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(client.status).toBe('end');
    expect(lines).toEqual([
      expect.stringContaining('DB index is out of range; rate limits are counted in this process: set REDIS_URL to a database this Redis has'),
    ]);
    const app = await replica({ max: 2, timeWindowMs: 60_000, redis: client });
    const auth = await freshKey();
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) codes.push((await get(app, auth)).statusCode);
    expect(codes).toEqual([200, 200, 429]);
    expect(await redisUp(app)).toBe(0);
  });
});

describe('configuration', () => {
  const base = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test' };
  it('reads CRM_RATE_LIMIT (default 6000, 0 off), CRM_RATE_LIMIT_<ROLE> and REDIS_URL', () => {
    expect(loadConfig(base, '/tmp').rateLimit).toEqual({ perMinute: 6_000, perRole: {}, redisUrl: undefined });
    const set = loadConfig({ ...base, CRM_RATE_LIMIT: '0', CRM_RATE_LIMIT_SALES: '30000', REDIS_URL: REDIS_URL }, '/tmp').rateLimit;
    expect(set).toEqual({ perMinute: 0, perRole: { sales: 30_000 }, redisUrl: REDIS_URL });
  });

  it('reads CRM_TRUST_PROXY as addresses or CIDR ranges, or a hop count; unset trusts none', () => {
    expect(loadConfig(base, '/tmp').http.trustProxy).toBeUndefined();
    expect(loadConfig({ ...base, CRM_TRUST_PROXY: ' 10.0.0.0/8, 192.168.1.7 ' }, '/tmp').http.trustProxy).toEqual(['10.0.0.0/8', '192.168.1.7']);
    expect(loadConfig({ ...base, CRM_TRUST_PROXY: '2' }, '/tmp').http.trustProxy).toBe(2);
  });

  it('names the variable of a bad value or an unknown role', () => {
    for (const [variable, value] of [
      ['CRM_RATE_LIMIT', '-1'],
      ['CRM_RATE_LIMIT', 'lots'],
      ['CRM_RATE_LIMIT_SALES', '1.5'],
      ['CRM_RATE_LIMIT_INTERN', '10'],
      ['REDIS_URL', 'http://127.0.0.1:6379'],
      ['CRM_TRUST_PROXY', 'true'],
      ['CRM_TRUST_PROXY', '0'],
      ['CRM_TRUST_PROXY', '10.0.0.0/33'],
    ] as const) {
      const error = (() => {
        try {
          loadConfig({ ...base, [variable]: value }, '/tmp');
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems[0]!.variable).toBe(variable);
    }
  });
});
