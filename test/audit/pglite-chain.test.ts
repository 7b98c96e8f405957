import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { loadConfig } from '../../cli/config.ts';
import { demoPlan, loadDemo } from '../../cli/demo.ts';
import { eventLog } from '../../audit/history.ts';
import { expectRequestedSealsJoinAndChainsVerify } from './support.ts';

/**
 * The issue as a new user met it on the embedded default: a fresh data folder, the demo load, the
 * background sealer running, then `POST /audit/chain/seal` several times, then `crm verify --chain`.
 * The demo load here crosses a real digit boundary of positions: between its first and second half,
 * the fresh database's transaction counter is brought to 9,537 (where positions go from 10 to 11
 * digits) by committing subtransactions, each of which takes a transaction id.
 */
const DIGIT_BOUNDARY_XID = 9_537n; // 9,537 << 20 = 10,000,268,288, the first 11-digit position
let folder: string;
let crm: CrmRuntime;
let app: CrmApp;
let adminKey: string;

const currentXid = async (): Promise<bigint> => {
  const { rows } = await sql<{ xid: string }>`SELECT pg_current_xact_id()::text AS xid`.execute(crm.database.db);
  return BigInt(rows[0]!.xid);
};

/** Takes transaction ids until the counter reaches `target` (one subtransaction with a write per id). */
const consumeTransactionIdsUntil = async (target: bigint) => {
  await sql`CREATE TABLE IF NOT EXISTS public.xid_burner (n int)`.execute(crm.database.db);
  for (let xid = await currentXid(); xid < target; xid = await currentXid()) {
    const n = Number(target - xid < 2_000n ? target - xid : 2_000n);
    await sql
      .raw(`DO $$ BEGIN FOR i IN 1..${n} LOOP BEGIN INSERT INTO public.xid_burner VALUES (i); EXCEPTION WHEN others THEN NULL; END; END LOOP; END $$`)
      .execute(crm.database.db);
  }
};

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'crm-pglite-chain-'));
  // PGlite runs on the event loop: on a loaded machine the event-loop bound would refuse the seals this test asks for.
  const config = loadConfig({ CRM_DATA_DIR: folder, LOG_LEVEL: 'silent', CRM_MAX_EVENT_LOOP_DELAY_MS: '0' }, folder);
  crm = await openCrm(config);
  await crm.prepareReadModels();
  app = await crm.buildApi({ logger: false });
  adminKey = (await app.keys.create({ name: 'auditor on duty', role: 'admin' })).key;
  // The background sealer runs from here on, every second, as in `crm serve`.
  await crm.startProjections();
  const plan = demoPlan({ seed: 42, customers: 25, until: new Date('2026-10-31T18:00:00.000Z') });
  const half = Math.floor(plan.length / 2);
  expect((await loadDemo(crm.commands, plan.slice(0, half))).interrupted).toBe(false);
  expect(await currentXid(), 'the first half of the demo already passed the boundary').toBeLessThan(DIGIT_BOUNDARY_XID);
  await consumeTransactionIdsUntil(DIGIT_BOUNDARY_XID);
  expect((await loadDemo(crm.commands, plan.slice(half))).interrupted).toBe(false);
}, 300_000);

afterAll(async () => {
  await app?.close();
  await crm?.close();
  if (folder) await rm(folder, { recursive: true, force: true });
}, 60_000);

describe('the global chain on the embedded database (PGlite)', () => {
  it('the demo load straddles a digit boundary of positions', async () => {
    const { rows } = await sql<{ lo: string; hi: string }>`
      SELECT min(position)::text AS lo, max(position)::text AS hi FROM crm_events.events`.execute(crm.database.db);
    expect(rows[0]!.lo.length).toBe(10);
    expect(rows[0]!.hi.length).toBe(11);
  });

  it('requested seals while the background sealer runs all answer 200, and the chains verify', async () => {
    await expectRequestedSealsJoinAndChainsVerify(crm, app, adminKey);
  });

  it('the global log pages through every event in position order', async () => {
    const positions: bigint[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 1_000; page++) {
      const result = await eventLog(crm.audit.deps, { limit: 100, personalData: 'mask', ...(cursor ? { cursor } : {}) });
      positions.push(...result.items.map((e) => e.position));
      if (!result.nextCursor) break;
      cursor = result.nextCursor;
    }
    const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM crm_events.events`.execute(crm.database.db);
    expect(positions).toHaveLength(Number(rows[0]!.n));
    expect(positions.every((p, i) => i === 0 || p > positions[i - 1]!)).toBe(true);
  });
});
