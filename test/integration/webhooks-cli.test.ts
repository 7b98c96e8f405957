import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCrm, schemaEnv } from '../cli/support.ts';
import { testSchemas } from '../support/postgres.ts';

/** `crm webhooks` as an operator types it, against PostgreSQL schemas of this file's own. */
const schemas = testSchemas('webhookscli');
const cwd = mkdtempSync(join(tmpdir(), 'crm-webhooks-cli-'));
const env = schemaEnv(schemas);
afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(cwd, { recursive: true, force: true });
});

const crm = (...args: string[]) => runCrm(['webhooks', ...args], { cwd, env, timeoutMs: 90_000 });

describe('crm webhooks', () => {
  it('refuses control characters in a URL or description as the API does, naming the option, the code point and its position; creates nothing', async () => {
    const refusals: [string[], string][] = [
      [['--url', 'https://example.com/h\u001b[2Jook'], '--url: contains the control character U+001B at position 22'],
      [['--url', 'https://example.com/hook', '--description', 'billing\n\u009b2J'], '--description: contains the control character U+009B at position 9'],
    ];
    for (const [args, said] of refusals) {
      const refused = await crm('create', ...args, '--events', '*');
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain(said);
    }
    // The line break in a description is kept.
    const created = await crm('create', '--url', 'https://example.com/hook', '--events', '*', '--description', 'billing\n\tteam', '--json');
    expect(created.code, created.stderr).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };
    const listed = JSON.parse((await crm('list', '--json')).stdout) as { id: string; description: string | null }[];
    expect(listed.map((w) => w.description)).toEqual(['billing\n\tteam']);
    expect(listed[0]!.id).toBe(id);
    expect((await crm('delete', id)).code).toBe(0);
  });

  it('masks a password in the URL when listing, and refuses a replay position past bigint as a usage error', async () => {
    const created = await crm('create', '--url', 'https://hooks:pw-very-secret@example.com/crm', '--events', 'Deal*', '--json');
    expect(created.code, created.stderr).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };

    const listed = await crm('list');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('https://hooks:***@example.com/crm');
    const disabled = await crm('disable', id, '--json');
    expect(JSON.parse(disabled.stdout).url).toBe('https://hooks:***@example.com/crm');
    for (const out of [listed.stdout, disabled.stdout]) expect(out).not.toContain('pw-very-secret');

    const tooFar = await crm('replay', id, '--from', '9999999999999999999');
    expect(tooFar.code, tooFar.stderr).toBe(2);
    expect(tooFar.stderr).toContain('--from');
    // A position a bigint holds, but past the next event's: refused as over HTTP (deliveries would stop unseen).
    const pastHead = await crm('replay', id, '--from', '9223372036854775807');
    expect(pastHead.code, pastHead.stderr).toBe(2);
    expect(pastHead.stderr).toMatch(/--from: nothing is recorded at or after position 9223372036854775807: the last event is at \d+/);

    // The cloud metadata service is refused unless the operator allows its network; then it is created.
    const metadata = await crm('create', '--url', 'http://169.254.169.254/latest/meta-data/', '--events', '*');
    expect(metadata.code, metadata.stderr).toBe(2);
    expect(metadata.stderr).toContain('--url: 169.254.169.254 is a link-local (cloud metadata) address');
    const allowed = await runCrm(['webhooks', 'create', '--url', 'http://169.254.169.254/hook', '--events', '*', '--json'], {
      cwd,
      env: { ...env, CRM_WEBHOOK_ALLOW_NETWORKS: '169.254.0.0/16' },
      timeoutMs: 90_000,
    });
    expect(allowed.code, allowed.stderr).toBe(0);
  }, 300_000);

  it('rotates the signing secret: the new one printed once, the replaced one kept for the time asked (none with 0); bad times and unknown ids refused', async () => {
    const created = await crm('create', '--url', 'https://hooks.example.com/rotate', '--events', '*', '--json');
    expect(created.code, created.stderr).toBe(0);
    const { id, secret } = JSON.parse(created.stdout) as { id: string; secret: string };

    const kept = await crm('rotate-secret', id, '--keep-previous', '600');
    expect(kept.code, kept.stderr).toBe(0);
    const newSecret = /shown once, store it now\): (whsec_\S+)/.exec(kept.stdout)?.[1];
    expect(newSecret).toBeDefined();
    expect(newSecret).not.toBe(secret);
    const until = Date.parse(/too until (\S+)\./.exec(kept.stdout)![1]!);
    expect(until - Date.now()).toBeGreaterThan(500_000);
    expect(until - Date.now()).toBeLessThanOrEqual(600_000);

    const revoked = await crm('rotate-secret', id, '--keep-previous', '0', '--json');
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ id, secret: expect.stringMatching(/^whsec_/), previousSecretExpiresAt: null });
    const listed = await crm('list', '--json');
    expect(listed.stdout).not.toContain(newSecret!.slice(6));

    for (const bad of ['-5', '1h']) {
      const refused = await crm('rotate-secret', id, `--keep-previous=${bad}`);
      expect(refused.code, bad).toBe(2);
      expect(refused.stderr).toContain('--keep-previous must be a whole number between 0 and 604800');
    }
    const unknown = await crm('rotate-secret', '7c9e6679-7425-40de-944b-e07fc1f90ae7');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No webhook subscription 7c9e6679-7425-40de-944b-e07fc1f90ae7');
  }, 300_000);
});
