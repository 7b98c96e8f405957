import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv, Server } from './support.ts';

/**
 * No credential in anything the CLI prints: the real `crm`, given connection strings whose password
 * is distinctive (`hunter...fish`) and written in the shapes that split wrongly (a `/`, `?`, `#` or
 * `@` in it, raw or percent-encoded), pointed at a closed port, a database that does not exist or
 * an EventStoreDB that is not there. Every message must name the server (its host and port) and
 * show no part of the password. No EventStoreDB server exists here: the closed port answers at once.
 */

const folder = mkdtempSync(join(tmpdir(), 'crm-credentials-'));
const schemas = testSchemas('credentials');
const servers: Server[] = [];

afterAll(async () => {
  for (const server of servers) server.kill();
  rmSync(folder, { recursive: true, force: true });
  await schemas.dropSchemas();
});

const SECRET = /hunter|fish/i;

const expectNoSecret = (output: string, host: string): void => {
  expect(output).toContain(host);
  expect(output).not.toMatch(SECRET);
};

const userAt = (url: string, password: string): string => url.replace('://', `://postgres:${password}@`).replace(/:\/\/postgres@/, '://');

describe('DATABASE_URL', () => {
  it.each([
    ['a password with /', 'postgres://crm:hunter/fish@127.0.0.1:1/crm'],
    ['a password starting with /', 'postgres://crm:/hunterfish@127.0.0.1:1/crm'],
    ['a password of digits, then /', 'postgres://crm:12/hunterfish@127.0.0.1:1/crm'],
    ['a password with # and ?', 'postgres://crm:hunter#fi?sh@127.0.0.1:1/crm'],
    ['a password with @', 'postgres://crm:hunter@fish@127.0.0.1:1/crm'],
    ['a password with / and @ percent-encoded', 'postgres://crm:hunter%2F%40fish@127.0.0.1:1/crm'],
  ])('%s, at a closed port: the server is named, no part of the password', async (_name, url) => {
    const run = await runCrm(['projections'], { cwd: folder, env: { DATABASE_URL: url } });
    expect(run.code).not.toBe(0);
    expectNoSecret(run.stdout + run.stderr, '127.0.0.1:1');
  });

  it('a password with @, at a database that does not exist: the server is named, no part of the password', async () => {
    const run = await runCrm(['projections'], { cwd: folder, env: { DATABASE_URL: 'postgres://postgres:hunter@fish@127.0.0.1:5432/no_such_database_here' } });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('no_such_database_here');
    expectNoSecret(run.stdout + run.stderr, '127.0.0.1:5432');
  });
});

describe('EVENTSTORE_URL', () => {
  it.each([
    ['a password with /', 'esdb://admin:hunter/fish@127.0.0.1:1?tls=false'],
    ['a password of digits, then /', 'esdb://admin:12/hunterfish@127.0.0.1:1?tls=false'],
    ['a password with @', 'esdb://admin:hunter@fish@127.0.0.1:1?tls=false'],
    // The client warns about options it does not know, quoting the whole connection string.
    ['an option the client does not know', 'esdb://admin:hunterfish@127.0.0.1:1?tls=false&crmUnknownOption=1'],
    ['tlsVerifyCert=false, which the client ignores with a warning', 'esdb://admin:hunterfish@127.0.0.1:1?tls=false&tlsVerifyCert=false'],
  ])('%s, at a closed port: the server is named, no part of the password', async (_name, url) => {
    const run = await runCrm(['projections'], { cwd: folder, env: schemaEnv(schemas, { EVENTSTORE_URL: url }), timeoutMs: 30_000 });
    expect(run.code).toBe(69);
    expect(run.stderr).toContain('EventStoreDB');
    expectNoSecret(run.stdout + run.stderr, '127.0.0.1:1');
  });
});

describe('crm serve with credentials in every URL', () => {
  it('names PostgreSQL, Redis, NATS and RabbitMQ without their passwords', async () => {
    const server = new Server(
      folder,
      schemaEnv(schemas, {
        // Trust authentication here: the password is sent and ignored, so the service runs with it.
        DATABASE_URL: userAt(TEST_DATABASE_URL, 'hunter@fish'),
        REDIS_URL: 'redis://default:hunter%2Ffish@127.0.0.1:1',
        CRM_NATS_URL: 'nats://crm:hunter%40fish@127.0.0.1:1',
        CRM_AMQP_URL: 'amqp://crm:hunter%40fish@127.0.0.1:1',
        PORT: '0',
      }),
    );
    servers.push(server);
    await server.waitFor(/API:\s+http:\/\/\S+/, 60_000, 'stderr');
    await server.waitFor(/Redis at .*127\.0\.0\.1:1\b/, 30_000, 'stderr');
    // A part's line: JSON on stdout, through the process's logger.
    await server.waitFor(/NATS publisher error/, 30_000, 'stdout');
    await server.waitFor(/RabbitMQ publisher error/, 30_000, 'stdout');
    expect(await server.stop()).toBe(0);
    expectNoSecret(server.stdout + server.stderr, new URL(TEST_DATABASE_URL).host);
    expect(server.stdout).not.toMatch(SECRET);
    expect(server.stderr).not.toMatch(SECRET);
  });
});
