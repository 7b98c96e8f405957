import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/**
 * `crm fit` catches the analytics up and fits; it runs no integration publisher. It started them with
 * the projections, and delivered the webhooks a stopped `crm serve` had left pending.
 */
const schemas = testSchemas('cli_fit');
const folder = mkdtempSync(join(tmpdir(), 'crm-fit-'));
const env = { ...schemaEnv(schemas), CRM_WEBHOOK_ALLOW_NETWORKS: '127.0.0.1' };
const crm = (args: string[]) => runCrm(args, { cwd: folder, env, timeoutMs: 120_000 });
let receiver: Server;
let deliveries = 0;

beforeAll(async () => {
  receiver = createServer((request, response) => {
    deliveries += 1;
    request.resume();
    response.writeHead(204).end();
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await new Promise((resolve) => receiver?.close(resolve));
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

describe('crm fit', () => {
  it('delivers no webhook: the publishers are the work of crm serve and crm project', async () => {
    const port = (receiver.address() as AddressInfo).port;
    const created = await crm(['webhooks', 'create', '--url', `http://127.0.0.1:${port}/hook`, '--events', '*']);
    expect(created.code, created.stderr).toBe(0);
    const runtime = await openCrm(loadConfig(env, folder), { overrides: { publishers: false, chainSealer: false } });
    try {
      for (let i = 0; i < 3; i++)
        await runtime.commands.execute(
          { type: 'RegisterCustomer', name: `Pending ${i}`, email: `pending-${randomUUID()}@example.com` },
          { actor: { userId: 'fit-test', roles: ['admin'] }, correlationId: randomUUID() },
        );
    } finally {
      await runtime.close();
    }
    const fit = await crm(['fit']);
    // Three customers without purchases are too few to fit: what matters is what ran meanwhile.
    expect(fit.stderr).toContain('Catching up the analytics projection');
    expect(fit.stderr).not.toContain('integration-publishers');
    expect(deliveries).toBe(0);
    // Too little history is about the data, not the command line: exit 65, not the usage error's 2, and no usage text.
    expect(fit.code, fit.stderr).toBe(65);
    expect(fit.stderr).toMatch(/crm fit: Only 0 customers have purchases by .*; at least 10 are needed/);
    expect(fit.stderr).not.toContain('Usage:');
  });
});
