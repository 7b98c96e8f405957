import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DEMO_UNTIL } from '../../cli/demo-data.ts';
import { demoPlan, loadDemo } from '../../cli/demo.ts';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { dropAbandonedShadows } from '../../projections/shadows.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { poll, runCrm, schemaEnv, Server } from './support.ts';

/**
 * `crm rebuild` stopped at the worst moments: killed outright (kill -9) mid-rebuild, and Ctrl-C while
 * its swap waits for a live table. Nothing may stay behind (no shadow schema, no `rebuilding` mark),
 * and a rebuild still running in another process must not be disturbed by the clean-up.
 */
const schemas = testSchemas('cli_rebuild_crash');
const env = schemaEnv(schemas);
const admin = new pg.Client({ connectionString: schemas.url });

const shadowsWithTables = async (): Promise<{ name: string; tables: number }[]> => {
  const { rows } = await admin.query<{ name: string; tables: number }>(
    `SELECT n.nspname AS name, (SELECT count(*)::int FROM pg_tables t WHERE t.schemaname = n.nspname) AS tables
     FROM pg_namespace n WHERE n.nspname LIKE $1 ORDER BY 1`,
    [`${schemas.read}\\_rb\\_%`],
  );
  return rows;
};

const states = async (): Promise<Record<string, string>> => {
  const { rows } = await admin.query<{ name: string; state: string }>(`SELECT name, state FROM "${schemas.read}".projection_checkpoints`);
  return Object.fromEntries(rows.map((r) => [r.name, r.state]));
};

/** Holds a live table the swap must lock: the rebuild replays into its shadow, then waits at the swap. */
const holdLiveTable = async (): Promise<() => Promise<void>> => {
  const client = new pg.Client({ connectionString: schemas.url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE "${schemas.read}".customers IN ACCESS SHARE MODE`);
  return async () => {
    await client.query('COMMIT');
    await client.end();
  };
};

/** Resolves once a rebuild has its shadow (with tables) and has marked the projections `rebuilding`. */
const rebuildUnderWay = () =>
  poll(
    'the rebuild to fill its shadow schema',
    async () => {
      const shadows = await shadowsWithTables();
      const rebuilding = Object.values(await states()).every((s) => s === 'rebuilding');
      return shadows.some((s) => s.tables > 0) && rebuilding ? shadows : undefined;
    },
    90_000,
  );

/** A rebuild killed outright (kill -9) once its shadow is filled, while it waits to swap. */
const killRebuildMidway = async (): Promise<void> => {
  const release = await holdLiveTable();
  const rebuild = new Server(tmpdir(), env, 'rebuild');
  try {
    await rebuildUnderWay();
    rebuild.kill();
    await rebuild.exited;
  } finally {
    rebuild.kill();
    await release();
  }
};

beforeAll(async () => {
  await admin.connect();
  // A small store with read models built by the projections, as a deployment has it.
  const runtime = await openCrm(testConfig(schemas));
  try {
    const result = await loadDemo(runtime.commands, demoPlan({ seed: 3, customers: 15, until: DEFAULT_DEMO_UNTIL }));
    expect(result.executed).toBeGreaterThan(100);
    await runtime.startProjections();
    await runtime.runner.waitForPosition(await runtime.store.headPosition(), 60_000);
  } finally {
    await runtime.close();
  }
}, 180_000);

afterAll(async () => {
  await admin.end();
  await schemas.dropSchemas();
});

describe('crm rebuild stopped mid-way', () => {
  it('names an unknown projection as a usage mistake (exit 2), not as an unexpected error', async () => {
    const result = await runCrm(['rebuild', 'customers', 'nosuch'], { cwd: tmpdir(), env });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^crm: no projection "nosuch": customers, customer_timeline, /m);
    expect(result.stderr).not.toMatch(/unexpected error|\n\s+at /);
  });

  it('after kill -9, the next crm command drops the abandoned shadow and clears the rebuilding marks; the read models equal a replay', async () => {
    await killRebuildMidway();
    // What the killed process left: its shadow, and every projection marked as being rebuilt.
    expect((await shadowsWithTables()).length).toBe(1);
    expect(new Set(Object.values(await states()))).toEqual(new Set(['rebuilding']));

    const list = await runCrm(['projections', 'list'], { cwd: tmpdir(), env });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).not.toContain('rebuilding');
    expect(await shadowsWithTables()).toEqual([]);
    expect(new Set(Object.values(await states()))).toEqual(new Set(['running']));

    const verify = await runCrm(['verify'], { cwd: tmpdir(), env, timeoutMs: 180_000 });
    expect(verify.code, `${verify.stdout}\n${verify.stderr}`).toBe(0);
    expect(verify.stdout).toMatch(/Read models equal a replay of \d+ events/);
  }, 300_000);

  it('after kill -9, a crm verify run next drops the abandoned shadow first, says so, and finds the read models equal', async () => {
    await killRebuildMidway();
    expect((await shadowsWithTables()).length).toBe(1);
    const verify = await runCrm(['verify'], { cwd: tmpdir(), env, timeoutMs: 180_000 });
    expect(verify.code, `${verify.stdout}\n${verify.stderr}`).toBe(0);
    expect(verify.stderr).toMatch(/dropped 1 shadow schema\(s\) left by a killed rebuild or verification/);
    expect(await shadowsWithTables()).toEqual([]);
    expect(new Set(Object.values(await states()))).toEqual(new Set(['running']));
  }, 300_000);

  it('leaves a rebuild running in another process alone, and Ctrl-C stops that one at a safe point saying so', async () => {
    const release = await holdLiveTable();
    const rebuild = new Server(tmpdir(), env, 'rebuild');
    try {
      const [shadow] = await rebuildUnderWay();
      // The clean-up every crm command runs on opening must not take a live rebuild's shadow.
      const database = connectPostgres(schemas.url, { max: 2 });
      try {
        expect(await dropAbandonedShadows(database.db, schemas.read, { pool: true })).toEqual([]);
      } finally {
        await database.close();
      }
      expect((await shadowsWithTables()).map((s) => s.name)).toEqual([shadow!.name]);
      expect(new Set(Object.values(await states()))).toEqual(new Set(['rebuilding']));

      // Ctrl-C while the swap waits for the held table.
      const code = await rebuild.stop();
      expect(rebuild.stderr).not.toMatch(/unexpected error|\n\s+at /);
      expect(rebuild.stderr).toContain('Interrupted: the live read models were left as they were.');
      expect(code, rebuild.stderr).toBe(130);
    } finally {
      rebuild.kill();
      await release();
    }
    expect(await shadowsWithTables()).toEqual([]);
    expect(new Set(Object.values(await states()))).toEqual(new Set(['running']));
  }, 300_000);
});
