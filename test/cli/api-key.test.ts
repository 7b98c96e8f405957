import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/** `crm api-key list` says which keys work: a deactivated user's key read "active" and was refused. */
const schemas = testSchemas('cli_api_key');
const folder = mkdtempSync(join(tmpdir(), 'crm-api-key-'));

afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

describe('crm api-key list', () => {
  it("shows a deactivated user's key as refused, an active user's with the user's role now, and a service key as active", async () => {
    const runtime = await openCrm(loadConfig(schemaEnv(schemas), folder), { overrides: { publishers: false, chainSealer: false } });
    const [leaving, staying] = [randomUUID(), randomUUID()];
    try {
      await runtime.startProjections();
      const ctx = { actor: { userId: 'key-test', roles: ['admin'] }, correlationId: randomUUID() };
      for (const userId of [leaving, staying])
        await runtime.commands.execute(
          { type: 'RegisterUser', userId, name: `User ${userId.slice(0, 4)}`, email: `${userId}@example.com`, role: 'sales' },
          ctx,
        );
      const app = await runtime.buildApi({});
      try {
        await app.keys.create({ name: 'leaving laptop', role: 'sales', userId: leaving });
        await app.keys.create({ name: 'staying laptop', role: 'sales', userId: staying });
        await app.keys.create({ name: 'robot', role: 'analyst' });
      } finally {
        await app.close();
      }
      await runtime.commands.execute({ type: 'ChangeUser', userId: staying, role: 'support' }, ctx);
      const done = await runtime.commands.execute({ type: 'ChangeUser', userId: leaving, active: false }, ctx);
      await runtime.runner.waitForPosition(done.position, 30_000);
    } finally {
      await runtime.close();
    }
    const listed = await runCrm(['api-key', 'list'], { cwd: folder, env: schemaEnv(schemas) });
    expect(listed.code, listed.stderr).toBe(0);
    const line = (name: string) => listed.stdout.split('\n').find((l) => l.includes(name)) ?? '';
    expect(line('leaving laptop')).toContain('refused: user inactive');
    // With the user's role now, not the one stored when the key was made.
    expect(line('staying laptop')).toMatch(/ support +active /);
    expect(line('robot')).toMatch(/ active /);
  });

  it('makes no admin key: neither a list once the last one was revoked, nor a create with its arguments wrong', async () => {
    const env = schemaEnv(schemas);
    const created = await runCrm(['api-key', 'create', '--name', 'only admin', '--role', 'admin', '--json'], { cwd: folder, env });
    expect(created.code, created.stderr).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };
    const listAdmins = async () => (await runCrm(['api-key', 'list'], { cwd: folder, env })).stdout.split('\n').filter((l) => / admin +active /.test(l));
    // A revoked leak stays revoked: every active admin key goes.
    for (const l of await listAdmins()) expect((await runCrm(['api-key', 'revoke', l.split(/\s+/)[0]!], { cwd: folder, env })).code).toBe(0);
    expect(await listAdmins()).toEqual([]);
    const listed = await runCrm(['api-key', 'list'], { cwd: folder, env });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stderr).not.toContain('created one');
    expect(listed.stdout).toContain(`${id}  admin`);
    const wrong = await runCrm(['api-key', 'create', '--role', 'admin'], { cwd: folder, env });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('--name is required');
    expect(await listAdmins()).toEqual([]);
  });

  it("upgrades no store by listing or revoking: an older CRM beside it still starts (a list recorded this version's migrations, and the older one refused the store)", async () => {
    const env = schemaEnv(schemas);
    const created = await runCrm(['api-key', 'create', '--name', 'for a revoke', '--role', 'sales', '--json'], { cwd: folder, env });
    expect(created.code, created.stderr).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };
    // The store as the previous version left it: its tables as they are, its newest migration not recorded.
    const runtime = await openCrm(loadConfig(env, folder), { overrides: { publishers: false, chainSealer: false } });
    const migrations = sql.id(schemas.events, 'eventstore_migration');
    const newest = async () => (await sql<{ name: string }>`SELECT max(name) AS name FROM ${migrations}`.execute(runtime.database.db)).rows[0]!.name;
    try {
      const latest = await newest();
      await sql`DELETE FROM ${migrations} WHERE name = ${latest}`.execute(runtime.database.db);
      const before = await newest();
      expect((await runCrm(['api-key', 'list'], { cwd: folder, env })).code).toBe(0);
      expect((await runCrm(['api-key', 'revoke', id], { cwd: folder, env })).code).toBe(0);
      expect(await newest()).toBe(before);
      // A create may be the first command on a database, so it sets the store up.
      expect((await runCrm(['api-key', 'create', '--name', 'upgrades', '--role', 'sales'], { cwd: folder, env })).code).toBe(0);
      expect(await newest()).toBe(latest);
    } finally {
      await runtime.close();
    }
  });

  it('refuses a name holding a control character as the API does (it names the actor of every event the key records), storing no key', async () => {
    const env = schemaEnv(schemas);
    const listNames = async () =>
      (JSON.parse((await runCrm(['api-key', 'list', '--json'], { cwd: folder, env })).stdout) as { name: string }[]).map((k) => k.name);
    const before = await listNames();
    for (const [name, said] of [
      ['bot\u001b[2J', 'contains the control character U+001B at position 4'],
      ['bot\u2028admin', 'contains the line separator U+2028 at position 4'],
    ]) {
      const refused = await runCrm(['api-key', 'create', '--name', name!, '--role', 'analyst'], { cwd: folder, env });
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain(`--name ${said}`);
    }
    expect(await listNames()).toEqual(before);
  });
});
