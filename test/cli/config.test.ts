import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../cli/config.ts';

const problemsOf = (env: Record<string, string>) => {
  try {
    loadConfig(env, '/srv/crm');
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
};

describe('configuration from the environment', () => {
  it('runs embedded with demo data, local defaults and the default schemas when nothing is set', () => {
    const config = loadConfig({}, '/srv/crm');
    expect(config.database).toEqual({ kind: 'pglite', dataDir: '/srv/crm/.crm-data', minFreeDiskMb: 64 });
    expect(config.eventStore).toEqual({ kind: 'sql' });
    expect(config.http).toEqual({ host: '127.0.0.1', port: 3000 });
    expect(config.demo.enabled).toBe(true);
    expect(config.schemas).toEqual({ events: 'crm_events', read: 'crm', reporting: 'reporting' });
    expect(config.projections).toBe('inline');
  });

  it('never loads demo data into a configured server unless CRM_DEMO=1', () => {
    const url = 'postgres://crm:secret@db:5432/crm';
    expect(loadConfig({ DATABASE_URL: url }, '/x').demo.enabled).toBe(false);
    expect(loadConfig({ DATABASE_URL: url, CRM_DEMO: '1' }, '/x').demo.enabled).toBe(true);
    expect(loadConfig({ CRM_DEMO: 'false' }, '/x').demo.enabled).toBe(false);
    expect(loadConfig({ DATABASE_URL: url }, '/x').database).toEqual({ kind: 'postgres', url, preparedStatements: true });
  });

  it('turns prepared statements off with CRM_PREPARED_STATEMENTS=off (a pooler in transaction mode) and names a bad value', () => {
    const url = 'postgres://crm@db:5432/crm';
    expect(loadConfig({ DATABASE_URL: url, CRM_PREPARED_STATEMENTS: 'off' }, '/x').database).toEqual({ kind: 'postgres', url, preparedStatements: false });
    expect(loadConfig({ DATABASE_URL: url, CRM_PREPARED_STATEMENTS: '1' }, '/x').database).toMatchObject({ preparedStatements: true });
    expect(problemsOf({ DATABASE_URL: url, CRM_PREPARED_STATEMENTS: 'sometimes' }).map((p) => p.variable)).toEqual(['CRM_PREPARED_STATEMENTS']);
  });

  it("keeps /ready's lag bound above a projection worker's lease by default, takes CRM_READY_MAX_LAG_SECONDS, and names a bad value", () => {
    // A crashed worker's projections wait out its lease for a taker: every API replica saw the lag past a 10 s bound at once.
    expect(loadConfig({}, '/x').readyMaxLagSeconds).toBe(30);
    expect(loadConfig({ CRM_PROJECTION_LEASE_SECONDS: '60' }, '/x').readyMaxLagSeconds).toBe(120);
    expect(loadConfig({ CRM_PROJECTION_LEASE_SECONDS: '2' }, '/x').readyMaxLagSeconds).toBe(10);
    expect(loadConfig({ CRM_READY_MAX_LAG_SECONDS: '5' }, '/x').readyMaxLagSeconds).toBe(5);
    for (const bad of ['0', 'soon', '1.5', '86401'])
      expect(
        problemsOf({ CRM_READY_MAX_LAG_SECONDS: bad }).map((p) => p.variable),
        bad,
      ).toEqual(['CRM_READY_MAX_LAG_SECONDS']);
  });

  it('refuses a bound past what a timer can wait (a longer one fired at once), naming it', () => {
    expect(loadConfig({ CRM_MAX_COMMAND_WAIT_MS: String(2 ** 31 - 1) }, '/x').backPressure.maxCommandWaitMs).toBe(2 ** 31 - 1);
    for (const variable of ['CRM_MAX_COMMAND_WAIT_MS', 'CRM_OVERLOADED_COMMAND_WAIT_MS', 'CRM_MAX_EVENT_LOOP_DELAY_MS', 'CRM_RATE_LIMIT']) {
      const problems = problemsOf({ [variable]: '3000000000' });
      expect(problems.map((p) => p.variable)).toEqual([variable]);
      expect(problems[0]!.message).toContain('from 0 to 2147483647');
    }
  });

  it('takes EventStoreDB, port, data folder and schema names from their variables', () => {
    const config = loadConfig({ EVENTSTORE_URL: 'esdb://localhost:2113?tls=false', PORT: '8080', CRM_DATA_DIR: 'data', CRM_READ_SCHEMA: 'crm_read' }, '/srv');
    expect(config.eventStore).toEqual({ kind: 'eventstoredb', url: 'esdb://localhost:2113?tls=false' });
    expect(config.http.port).toBe(8080);
    expect(config.database).toEqual({ kind: 'pglite', dataDir: '/srv/data', minFreeDiskMb: 64 });
    expect(config.schemas.read).toBe('crm_read');
  });

  it('names every bad variable, without echoing secrets', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      DATABASE_URL: 'mysql://root:hunter2@db/crm',
      CRM_ADMIN_KEY: 'short',
      LOG_LEVEL: 'loud',
      CRM_DEMO: 'maybe',
    });
    expect(problems.map((p) => p.variable).sort()).toEqual(['CRM_ADMIN_KEY', 'CRM_DEMO', 'DATABASE_URL', 'LOG_LEVEL', 'PORT']);
    expect(JSON.stringify(problems)).not.toContain('hunter2');
    expect(problems.find((p) => p.variable === 'PORT')?.message).toContain('"eighty"');
  });

  it('lets webhooks reach no network outside the public internet unless CRM_WEBHOOK_ALLOW_NETWORKS lists it, and names a wrong entry', () => {
    expect(loadConfig({}, '/srv/crm').webhookAllowNetworks).toEqual([]);
    expect(loadConfig({ CRM_WEBHOOK_ALLOW_NETWORKS: '10.0.0.0/8, ::1' }, '/srv/crm').webhookAllowNetworks).toEqual([
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { address: '::1', prefix: 128, family: 'ipv6' },
    ]);
    const [problem] = problemsOf({ CRM_WEBHOOK_ALLOW_NETWORKS: '10.0.0.0/8,intranet' });
    expect(problem?.variable).toBe('CRM_WEBHOOK_ALLOW_NETWORKS');
    expect(problem?.message).toContain('"intranet" is not an address or a CIDR range');
  });

  it('refuses two schemas with one name', () => {
    expect(problemsOf({ CRM_READ_SCHEMA: 'crm_events' })[0]?.message).toContain('crm_events');
  });
});

describe('CRM_BASE_CURRENCY', () => {
  it('defaults to EUR, takes an ISO 4217 code, and names the variable when it is not one', () => {
    expect(loadConfig({}, '/srv/crm').baseCurrency).toBe('EUR');
    expect(loadConfig({ CRM_BASE_CURRENCY: 'USD' }, '/srv/crm').baseCurrency).toBe('USD');
    for (const bad of ['usd', 'EURO', 'E1R', 'UDS']) {
      const [problem] = problemsOf({ CRM_BASE_CURRENCY: bad });
      expect(problem).toMatchObject({ variable: 'CRM_BASE_CURRENCY' });
      expect(problem!.message).toContain('ISO 4217');
    }
  });
});

describe('CRM_AMQP_URL, CRM_AMQP_EXCHANGE and CRM_AMQP_ROLE', () => {
  it('publish to RabbitMQ only when a URL is set, to crm.events as the analyst by default, and name a bad value without echoing the password', () => {
    expect(loadConfig({}, '/srv/crm').amqp).toBeUndefined();
    expect(loadConfig({ CRM_AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672' }, '/srv/crm').amqp).toEqual({
      url: 'amqp://guest:guest@127.0.0.1:5672',
      exchange: 'crm.events',
      role: 'analyst',
    });
    expect(loadConfig({ CRM_AMQP_URL: 'amqps://rabbit.example.com/crm', CRM_AMQP_EXCHANGE: 'shop.crm', CRM_AMQP_ROLE: 'admin' }, '/srv/crm').amqp).toEqual({
      url: 'amqps://rabbit.example.com/crm',
      exchange: 'shop.crm',
      role: 'admin',
    });
    const [url] = problemsOf({ CRM_AMQP_URL: 'http://guest:hunter2@127.0.0.1:5672' });
    expect(url).toMatchObject({ variable: 'CRM_AMQP_URL' });
    expect(url!.message).toContain('amqp://');
    expect(url!.message).not.toContain('hunter2');
    for (const bad of ['amq.topic', 'crm events']) {
      expect(problemsOf({ CRM_AMQP_URL: 'amqp://127.0.0.1', CRM_AMQP_EXCHANGE: bad })[0]).toMatchObject({ variable: 'CRM_AMQP_EXCHANGE' });
    }
  });
});

describe('CRM_MIN_FREE_DISK_MB', () => {
  it('takes megabytes from 32 up (one 16 MB WAL segment and a little more), refusing less', () => {
    expect(loadConfig({ CRM_MIN_FREE_DISK_MB: '500' }, '/srv/crm').database).toEqual({ kind: 'pglite', dataDir: '/srv/crm/.crm-data', minFreeDiskMb: 500 });
    expect(problemsOf({ CRM_MIN_FREE_DISK_MB: '16' })).toEqual([
      { variable: 'CRM_MIN_FREE_DISK_MB', message: 'a whole number of megabytes from 32 to 2147483647 (got "16")' },
    ]);
  });
});

describe('CRM_SHUTDOWN_TIMEOUT_MS and CRM_SHUTDOWN_DRAIN_MS', () => {
  it('bound a stop to 25 s with 5 s of draining by default, keep the drain below the whole, and name a bad value', () => {
    expect(loadConfig({}, '/srv/crm').shutdown).toEqual({ timeoutMs: 25_000, drainMs: 5_000 });
    expect(loadConfig({ CRM_SHUTDOWN_TIMEOUT_MS: '60000', CRM_SHUTDOWN_DRAIN_MS: '20000' }, '/srv/crm').shutdown).toEqual({
      timeoutMs: 60_000,
      drainMs: 20_000,
    });
    // A short timeout alone takes a drain that leaves it room.
    expect(loadConfig({ CRM_SHUTDOWN_TIMEOUT_MS: '4000' }, '/srv/crm').shutdown).toEqual({ timeoutMs: 4_000, drainMs: 2_000 });
    expect(problemsOf({ CRM_SHUTDOWN_TIMEOUT_MS: '5000', CRM_SHUTDOWN_DRAIN_MS: '5000' })).toEqual([
      { variable: 'CRM_SHUTDOWN_DRAIN_MS', message: expect.stringMatching(/below CRM_SHUTDOWN_TIMEOUT_MS \(5000\)/) },
    ]);
    expect(problemsOf({ CRM_SHUTDOWN_TIMEOUT_MS: 'soon' })).toEqual([{ variable: 'CRM_SHUTDOWN_TIMEOUT_MS', message: expect.stringMatching(/milliseconds/) }]);
    expect(problemsOf({ CRM_SHUTDOWN_TIMEOUT_MS: '10' })[0]?.variable).toBe('CRM_SHUTDOWN_TIMEOUT_MS');
    expect(problemsOf({ CRM_SHUTDOWN_DRAIN_MS: '-1' })[0]?.variable).toBe('CRM_SHUTDOWN_DRAIN_MS');
  });
});
