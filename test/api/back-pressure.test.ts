import { randomUUID } from 'node:crypto';
import http from 'node:http';
import autocannon from 'autocannon';
import Fastify, { type FastifyReply } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type CrmApp } from '../../api/app.ts';
import { createBackPressure, DEFAULT_BACK_PRESSURE, type BackPressureOptions } from '../../api/back-pressure.ts';
import { ConfigError, loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { createCrmCommands } from '../../commands/index.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { expectProblem, json, projectionsSettled, startApi, type ApiHarness } from './support.ts';

let h: ApiHarness;
let customerId: string;
const apps: CrmApp[] = [];
const databases: SqlDatabase[] = [];
beforeAll(async () => {
  h = await startApi('api_back_pressure');
  const res = await h.app.inject({ method: 'POST', url: '/customers', headers: h.auth('sales'), payload: { name: 'Busy Shop', email: 'busy@example.com' } });
  if (res.statusCode !== 201) throw new Error(res.body);
  customerId = json(res).id;
  // The tests read the customer back as the query that keeps being served: it must be in the read model first.
  await projectionsSettled(h);
});
afterAll(async () => {
  for (const app of apps) await app.close();
  for (const database of databases) await database.close();
  await h?.close();
});

const off: BackPressureOptions = {
  maxCommandsInFlight: 0,
  maxCommandWaitMs: 0,
  overloadedCommandWaitMs: 0,
  maxEventLoopDelayMs: 0,
  maxPoolWaiting: 0,
  maxProjectionBacklog: 0,
  retryAfterSeconds: 2,
};

/** An API over its own pool of ONE connection to the same schemas, so a test can hold that connection. */
const narrowApp = async (backPressure: Partial<BackPressureOptions>) => {
  const database = connectPostgres(h.schemas.url, { max: 1 });
  databases.push(database);
  const store = await createPostgresEventStore(database, { schema: h.schemas.events });
  const personalData = await createPersonalData(database.db, { schema: h.schemas.events });
  const app = await buildApp({ ...h.deps, database, store, commands: createCrmCommands({ store, personalData }), backPressure: { ...off, ...backPressure } });
  apps.push(app);
  /** Holds the pool's only connection until the returned function is called. */
  const hold = async (): Promise<() => Promise<void>> => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let taken!: () => void;
    const isTaken = new Promise<void>((resolve) => {
      taken = resolve;
    });
    const holding = database.db.connection().execute(async () => {
      taken();
      await released;
    });
    await isTaken;
    return async () => {
      release();
      await holding;
    };
  };
  return { app, database, hold };
};

const purchase = (app: CrmApp) =>
  app.inject({
    method: 'POST',
    url: `/customers/${customerId}/purchases`,
    headers: h.auth('sales'),
    payload: { orderId: randomUUID(), amount: 5, currency: 'EUR' },
  });

const until = async (condition: () => boolean, what: string) => {
  for (let i = 0; i < 1_000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!condition()) throw new Error(`timed out waiting for ${what}`);
};

const expectBusy = (res: Awaited<ReturnType<typeof purchase>>, why: RegExp) => {
  const problem = expectProblem(res, 503, 'unavailable');
  expect(res.headers['retry-after']).toBe('2');
  expect(problem.detail).toMatch(why);
};

describe('back-pressure on commands', () => {
  it('refuses a command beyond the commands in flight, while the one in flight completes and is stored', async () => {
    const { app, database, hold } = await narrowApp({ maxCommandsInFlight: 1 });
    const release = await hold();
    const first = purchase(app);
    // The first command is in flight, stuck waiting for the held connection.
    await until(() => (database.waiting?.() ?? 0) >= 1, 'the first command to wait for a connection');
    expectBusy(await purchase(app), /1 commands in flight/);
    await release();
    const accepted = json(await first);
    expect(accepted.revision).toBeGreaterThan(0);
    const stored = await h.store.readStream(`customer-${customerId}`);
    expect(stored.some((e) => e.revision === accepted.revision)).toBe(true);
    // Capacity is back.
    expect((await purchase(app)).statusCode).toBe(200);
  });

  it('answers a command that would be refused anyway before Fastify routes it, as the error handler would, and counts it', async () => {
    const { app, database, hold } = await narrowApp({ maxCommandsInFlight: 1 });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    // The server made here keeps what Fastify sets on its own: a keep-alive longer than a load balancer's idle timeout.
    expect(app.server.keepAliveTimeout).toBe(72_000);
    const release = await hold();
    const post = (requestId: string) =>
      fetch(`${url}/customers/${customerId}/purchases`, {
        method: 'POST',
        headers: { ...h.auth('sales'), 'content-type': 'application/json', 'x-request-id': requestId },
        body: JSON.stringify({ orderId: randomUUID(), amount: 5, currency: 'EUR' }),
      });
    const first = post('first-of-two');
    await until(() => (database.waiting?.() ?? 0) >= 1, 'the first command to wait for a connection');
    const refused = await post('second-of-two');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(refused.headers.get('x-request-id')).toBe('second-of-two');
    expect(refused.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(refused.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await refused.json()).toEqual({
      type: 'https://crm.example/problems/unavailable',
      title: 'Service unavailable',
      status: 503,
      detail: 'The service is saturated (1 commands in flight; no place free); retry shortly.',
      instance: `/customers/${customerId}/purchases`,
    });
    // A browser's cross-origin command is refused by the hooks instead, with the CORS headers its page needs to read the 503.
    const fromPage = await fetch(`${url}/customers/${customerId}/purchases`, {
      method: 'POST',
      headers: { ...h.auth('sales'), 'content-type': 'application/json', origin: 'https://app.example' },
      body: JSON.stringify({ orderId: randomUUID(), amount: 5, currency: 'EUR' }),
    });
    expect(fromPage.status).toBe(503);
    expect(fromPage.headers.get('access-control-allow-origin')).toBe('*');
    expect(fromPage.headers.get('access-control-expose-headers')).toContain('retry-after');
    expect(fromPage.headers.get('retry-after')).toBe('2');
    await release();
    expect((await first).status).toBe(200);
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/crm_http_requests_total\{[^}]*route="refused before routing"[^}]*\} 1/);
  });

  it('lets a command beyond the commands in flight wait for a place within its bound, and be stored', async () => {
    const { app, database, hold } = await narrowApp({ maxCommandsInFlight: 1, maxCommandWaitMs: 60_000, overloadedCommandWaitMs: 60_000 });
    const release = await hold();
    const first = purchase(app);
    await until(() => (database.waiting?.() ?? 0) >= 1, 'the first command to wait for a connection');
    let secondAnswered = false;
    const second = purchase(app).finally(() => (secondAnswered = true));
    // The second waits for the first's place, not for the connection (only one query waits for it).
    await new Promise((resolve) => setImmediate(resolve));
    expect(database.waiting?.()).toBe(1);
    expect(secondAnswered).toBe(false);
    await release();
    const [a, b] = [json(await first), json(await second)];
    expect(b.revision).toBe(a.revision + 1);
  });

  it('has every place back after a load generator stops with commands in flight', async () => {
    // No waiting for a place: a place still held after the run refuses one of the eight commands below.
    const { app } = await narrowApp({ maxCommandsInFlight: 8, maxCommandWaitMs: 0, overloadedCommandWaitMs: 0 });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const run = await autocannon({
      url: `${url}/customers/${customerId}/purchases`,
      connections: 16,
      duration: 1,
      method: 'POST',
      headers: { ...h.auth('sales'), 'content-type': 'application/json' },
      requests: [{ setupRequest: (request) => ({ ...request, body: JSON.stringify({ orderId: randomUUID(), amount: 5, currency: 'EUR' }) }) }],
    });
    expect(run.requests.total - run.non2xx).toBeGreaterThan(0);
    // The commands the generator left behind finish on their own (one pooled connection: serially);
    // then eight at once all get a place. A place kept for good would refuse one of them every time.
    let statuses: number[] = [];
    for (let attempt = 0; attempt < 30; attempt++) {
      statuses = (await Promise.all(Array.from({ length: 8 }, () => purchase(app)))).map((res) => res.statusCode);
      if (statuses.every((status) => status === 200)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(statuses).toEqual(Array(8).fill(200));
  });

  it('does not run a command whose client left while it waited for a place, and gives every place back', async () => {
    const { app, database, hold } = await narrowApp({ maxCommandsInFlight: 1, maxCommandWaitMs: 2_000, overloadedCommandWaitMs: 2_000 });
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    const release = await hold();
    /** A purchase sent whole over its own connection, which the client can then close without waiting for the answer. */
    const sendWhole = (orderId: string) => {
      const body = JSON.stringify({ orderId, amount: 5, currency: 'EUR' });
      const request = http.request({
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path: `/customers/${customerId}/purchases`,
        agent: new http.Agent({ keepAlive: true }),
        headers: { ...h.auth('sales'), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      request.on('error', () => undefined);
      request.end(body);
      return request;
    };
    const inFlight = sendWhole(randomUUID());
    await until(() => (database.waiting?.() ?? 0) >= 1, 'the first command to wait for a connection');
    const waitingOrder = randomUUID();
    const waiting = sendWhole(waitingOrder);
    // The second has been read and waits for the first's place (it asks for no connection yet).
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(database.waiting?.()).toBe(1);
    // Both clients leave after sending everything (the requests were read: Fastify sees no abort).
    inFlight.destroy();
    waiting.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await release();
    const started = performance.now();
    const next = await purchase(app);
    expect(next.statusCode).toBe(200);
    expect(performance.now() - started).toBeLessThan(1_500);
    const stored = await h.store.readStream(`customer-${customerId}`);
    expect(stored.some((e) => (e.data as { orderId?: string }).orderId === waitingOrder)).toBe(false);
  });

  it('keeps the place of a command whose client left while it runs until it ends, then gives it back', async () => {
    const { app, database, hold } = await narrowApp({ maxCommandsInFlight: 1, maxCommandWaitMs: 150, overloadedCommandWaitMs: 150 });
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    // One command first: its key is then known without the database, so the next one waits in its handler.
    expect((await purchase(app)).statusCode).toBe(200);
    const release = await hold();
    const leftOrder = randomUUID();
    const body = JSON.stringify({ orderId: leftOrder, amount: 5, currency: 'EUR' });
    const left = http.request({
      host: url.hostname,
      port: url.port,
      method: 'POST',
      path: `/customers/${customerId}/purchases`,
      headers: { ...h.auth('sales'), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    left.on('error', () => undefined);
    left.end(body);
    // Its handler runs (it waits for the pool's only connection); then its client leaves.
    await until(() => (database.waiting?.() ?? 0) >= 1, 'the command to wait for a connection');
    left.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Its handler still holds work the database will do: the one place is not free for another command
    // (refused at once or after its wait, as the pace of the places given back lately says).
    expectBusy(await purchase(app), /\(1 commands in flight/);
    await release();
    // Once it has ended (its purchase is stored), its place is back.
    const stored = async () => (await h.store.readStream(`customer-${customerId}`)).some((e) => (e.data as { orderId?: string }).orderId === leftOrder);
    for (let i = 0; i < 500 && !(await stored()); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await stored()).toBe(true);
    let next = await purchase(app);
    for (let attempt = 0; attempt < 20 && next.statusCode !== 200; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      next = await purchase(app);
    }
    expect(next.statusCode).toBe(200);
  });

  it('refuses a command whose wait for a place passes its bound, while the one in flight completes', async () => {
    const { app, database, hold } = await narrowApp({ maxCommandsInFlight: 1, maxCommandWaitMs: 150, overloadedCommandWaitMs: 150 });
    const release = await hold();
    const first = purchase(app);
    await until(() => (database.waiting?.() ?? 0) >= 1, 'the first command to wait for a connection');
    const started = performance.now();
    const refused = await purchase(app);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expectBusy(refused, /1 commands in flight; no turn within 150 ms/);
    await release();
    expect((await first).statusCode).toBe(200);
  });

  it('refuses commands at once while queries wait for a database connection', async () => {
    const { app, database, hold } = await narrowApp({ maxPoolWaiting: 1 });
    const release = await hold();
    const queries = [1, 2].map(() => app.inject({ method: 'GET', url: `/customers/${customerId}`, headers: h.auth('sales') }));
    await until(() => (database.waiting?.() ?? 0) >= 2, 'two queries to wait for a connection');
    // Answered while the connection is still held: the command never queued behind the queries.
    expectBusy(await purchase(app), /2 queries waiting for a database connection/);
    await release();
    for (const query of queries) expect((await query).statusCode).toBe(200);
  });

  it('refuses commands while the read models are far behind, and keeps serving queries', async () => {
    let backlog = 50_000;
    const app = await buildApp({
      ...h.deps,
      projections: { ...h.deps.projections, backlog: () => backlog },
      backPressure: { ...off, maxProjectionBacklog: 10_000 },
    });
    apps.push(app);
    expectBusy(await purchase(app), /50000 events behind/);
    expect((await app.inject({ method: 'GET', url: `/customers/${customerId}`, headers: h.auth('sales') })).statusCode).toBe(200);
    backlog = 10;
    expect((await purchase(app)).statusCode).toBe(200);
  });

  it('refuses commands while the event loop is delayed, and keeps serving queries', async () => {
    const app = await buildApp({ ...h.deps, backPressure: { ...off, maxEventLoopDelayMs: 50 } });
    apps.push(app);
    // Block the loop, then ask as soon as the overdue sampler has run (timers fire in due order).
    // A loaded machine may shift the sample: try again a few times.
    let command!: Awaited<ReturnType<typeof purchase>>;
    let query!: Awaited<ReturnType<typeof purchase>>;
    for (let attempt = 0; attempt < 5; attempt++) {
      const blockedUntil = Date.now() + 1_000;
      while (Date.now() < blockedUntil);
      await new Promise((resolve) => setTimeout(resolve, 0));
      [command, query] = await Promise.all([purchase(app), app.inject({ method: 'GET', url: `/customers/${customerId}`, headers: h.auth('sales') })]);
      if (command.statusCode === 503) break;
    }
    expectBusy(command, /event loop delayed \d+ ms/);
    expect(query.statusCode).toBe(200);
  });
});

describe('the handlers of command routes', () => {
  /** A bare Fastify app with the back-pressure's hooks and one place, for handlers of each kind. */
  const appWithOnePlace = async (route: (reply: FastifyReply) => unknown) => {
    const backPressure = createBackPressure(
      { ...off, maxCommandsInFlight: 1 },
      {},
      { requestId: () => 'test', shed: () => undefined, requestTimeoutMs: 10_000 },
    );
    const app = Fastify({ serverFactory: backPressure.serverFactory });
    backPressure.register(app);
    app.post('/command', (_request, reply) => route(reply));
    await app.ready();
    return app;
  };

  it('answers as a handler that is not async sends, later, and gives its place back', async () => {
    const app = await appWithOnePlace((reply) => {
      setTimeout(() => void reply.send({ sent: 'later' }), 20);
    });
    try {
      for (let i = 0; i < 2; i++) {
        const res = await app.inject({ method: 'POST', url: '/command', payload: {} });
        expect(res.statusCode).toBe(200);
        expect(res.json()).toEqual({ sent: 'later' });
      }
    } finally {
      await app.close();
    }
  });

  it('gives the place of a handler that throws back', async () => {
    const app = await appWithOnePlace(() => {
      throw new Error('handler failed');
    });
    try {
      for (let i = 0; i < 2; i++) expect((await app.inject({ method: 'POST', url: '/command', payload: {} })).statusCode).toBe(500);
    } finally {
      await app.close();
    }
  });
});

describe('configuration', () => {
  const base = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test' };
  const variables = [
    'CRM_MAX_COMMANDS_IN_FLIGHT',
    'CRM_MAX_COMMAND_WAIT_MS',
    'CRM_OVERLOADED_COMMAND_WAIT_MS',
    'CRM_MAX_EVENT_LOOP_DELAY_MS',
    'CRM_MAX_POOL_WAITING',
    'CRM_MAX_PROJECTION_BACKLOG',
  ] as const;

  it('reads each bound from the environment (0 turns it off), with the documented defaults', () => {
    const { retryAfterSeconds: _, ...defaults } = DEFAULT_BACK_PRESSURE;
    expect(loadConfig(base, '/tmp').backPressure).toEqual(defaults);
    const set = loadConfig(
      {
        ...base,
        CRM_MAX_COMMANDS_IN_FLIGHT: '16',
        CRM_MAX_COMMAND_WAIT_MS: '250',
        CRM_OVERLOADED_COMMAND_WAIT_MS: '20',
        CRM_MAX_EVENT_LOOP_DELAY_MS: '0',
        CRM_MAX_POOL_WAITING: '8',
        CRM_MAX_PROJECTION_BACKLOG: '1000',
      },
      '/tmp',
    );
    expect(set.backPressure).toEqual({
      maxCommandsInFlight: 16,
      maxCommandWaitMs: 250,
      overloadedCommandWaitMs: 20,
      maxEventLoopDelayMs: 0,
      maxPoolWaiting: 8,
      maxProjectionBacklog: 1_000,
    });
  });

  it('names the variable of a bad value', () => {
    for (const variable of variables) {
      for (const value of ['-1', 'many', '2.5']) {
        let error: unknown;
        try {
          loadConfig({ ...base, [variable]: value }, '/tmp');
        } catch (e) {
          error = e;
        }
        expect(error, `${variable}=${value}`).toBeInstanceOf(ConfigError);
        expect((error as ConfigError).problems[0]!.variable).toBe(variable);
      }
    }
  });

  it('reaches the API of the running CRM: with one command allowed in flight, the second of two at once is refused', async () => {
    const narrow = await openCrm(
      loadConfig(
        {
          ...base,
          DATABASE_URL: h.schemas.url,
          CRM_EVENTS_SCHEMA: h.schemas.events,
          CRM_READ_SCHEMA: h.schemas.read,
          CRM_REPORTING_SCHEMA: h.schemas.reporting,
          CRM_PROJECTIONS: 'off',
          CRM_MAX_COMMANDS_IN_FLIGHT: '1',
          CRM_MAX_COMMAND_WAIT_MS: '0',
          CRM_MAX_EVENT_LOOP_DELAY_MS: '0',
          CRM_RATE_LIMIT: '0',
          LOG_LEVEL: 'silent',
        },
        '/tmp',
      ),
    );
    const app = await narrow.buildApi({ logger: false });
    try {
      expect(narrow.apiDeps.backPressure).toMatchObject({ maxCommandsInFlight: 1, maxCommandWaitMs: 0, maxEventLoopDelayMs: 0 });
      const key = (await app.keys.create({ name: 'narrow', role: 'sales' })).key;
      const register = (i: number) =>
        app.inject({
          method: 'POST',
          url: '/customers',
          headers: { authorization: `Bearer ${key}` },
          payload: { name: `Narrow ${i}`, email: `narrow-${i}-${randomUUID()}@example.com` },
        });
      const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => register(i)));
      const codes = answers.map((a) => a.statusCode).sort();
      expect(codes[0]).toBe(201);
      expect(codes).toContain(503);
    } finally {
      await app.close();
      await narrow.close();
    }
  });
});
