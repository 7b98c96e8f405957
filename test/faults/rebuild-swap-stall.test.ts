import { sql, type KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { rebuildProjections } from '../../projections/rebuild.ts';
import type { ProjectionRunner } from '../../projections/runner.ts';
import { projectedScenario, type ScenarioIds } from '../projections/scenario.ts';
import type { Harness } from '../projections/support.ts';

/**
 * A rebuild whose swap stalls (its client frozen with the swap's locks held): the server ends the
 * idle swap, so the read models answer again within seconds. It holds the feed of the whole cluster
 * meanwhile (the swap runs inside the feed hold), hence a file of its own, run after the rest.
 */
let h: Harness;
let ids: ScenarioIds;
let runner: ProjectionRunner;
const projections = readModelProjections();

beforeAll(async () => {
  ({ h, runner, ids } = await projectedScenario('rebuild_swap_stall', projections));
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

const deps = () => ({ db: h.database.db, store: h.store, codec: h.codec, projections, concurrent: true });

/** Delays the answer of the first statement holding `SET SCHEMA` (the swap's move): its session sits idle in the swap's transaction meanwhile, as behind a stalled client. */
const stallAfterMove = (ms: number): KyselyPlugin => {
  const moves = new WeakSet<object>();
  let stalled = false;
  return {
    transformQuery: (args) => {
      // One round trip may join the moves into a node of nodes: looked for in its whole tree.
      if (!stalled && JSON.stringify(args.node).includes('SET SCHEMA')) {
        stalled = true;
        moves.add(args.queryId);
      }
      return args.node;
    },
    transformResult: async (args) => {
      if (moves.has(args.queryId)) await new Promise((resolve) => setTimeout(resolve, ms));
      return args.result;
    },
  };
};

describe('rebuild whose swap stalls', () => {
  it('has its swap ended by the server within seconds: the read models answer again, unchanged, and the states are put back', async () => {
    // A client stalled inside the swap held every read model and reporting view for the long-work
    // pool's idle bound (10 minutes): each read answered 503 meanwhile.
    const before = await createReadModelQueries({ db: h.database.db, schema: h.schemas.read }).getCustomer(ids.alice);
    const started = Date.now();
    const rebuilding = rebuildProjections({
      ...deps(),
      db: h.database.db.withPlugin(stallAfterMove(12_000)),
      names: ['customers'],
      schema: h.schemas.read,
      reportingSchema: h.schemas.reporting,
      runner,
    }).then(
      () => 'swapped',
      (error: unknown) => error,
    );
    // Wait until the swap holds the table, then read it as an API request would.
    const reader = connectPostgres(h.schemas.url, { max: 1 });
    try {
      for (let i = 0; i < 200; i++) {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            WHERE c.relname = 'customers' AND l.mode = 'AccessExclusiveLock' AND l.granted`.execute(reader.db);
        if (rows[0]!.n > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const waited = Date.now();
      // A read gives up on its lock after its own bound (the API answers 503); it is asked again until it answers.
      let during: unknown;
      for (;;) {
        try {
          during = await createReadModelQueries({ db: reader.db, schema: h.schemas.read }).getCustomer(ids.alice);
          break;
        } catch (error) {
          if (Date.now() - waited > 20_000) throw error;
        }
      }
      // Answered once the server ended the idle swap (5 s), not after the stall (12 s).
      expect(Date.now() - waited).toBeLessThan(9_000);
      expect(during).toEqual(before);
    } finally {
      await reader.close();
    }
    const outcome = await rebuilding;
    expect(outcome).toBeInstanceOf(Error);
    expect(Date.now() - started).toBeLessThan(60_000);
    const { rows } = await sql<{ state: string }>`SELECT state FROM ${sql.id(h.schemas.read, 'projection_checkpoints')} WHERE name = 'customers'`.execute(
      h.database.db,
    );
    expect(rows[0]!.state).toBe('running');
  }, 90_000);
});
