import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { AnalyzeSchedule, FIRST_ANALYZE_AFTER_EVENTS } from '../../projections/statistics.ts';
import { runScenario } from './scenario.ts';
import { createHarness, type Harness } from './support.ts';

/** Whether PostgreSQL holds column statistics of the table (an ANALYZE ran on it since it was created). */
const hasStatistics = async (h: Harness, table: string): Promise<boolean> => {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = ${h.schemas.read} AND tablename = ${table}`.execute(
    h.database.db,
  );
  return rows[0]!.n > 0;
};

describe('analyze schedule', () => {
  it('is due after the first threshold, then each time the count has grown fourfold', () => {
    const schedule = new AnalyzeSchedule(100);
    expect(schedule.record('a', 60)).toBe(false);
    expect(schedule.record('a', 40)).toBe(true); // 100: next at 400
    expect(schedule.record('a', 299)).toBe(false); // 399
    expect(schedule.record('a', 1)).toBe(true); // 400: next at 1600
    expect(schedule.record('a', 1399)).toBe(true); // 1799 >= 1600: next at 7196
    expect(schedule.record('a', 5396)).toBe(false); // 7195
    expect(schedule.record('a', 1)).toBe(true); // 7196
  });

  it('counts each projection apart, from 10,000 events by default', () => {
    const schedule = new AnalyzeSchedule();
    expect(schedule.record('a', FIRST_ANALYZE_AFTER_EVENTS - 1)).toBe(false);
    expect(schedule.record('b', FIRST_ANALYZE_AFTER_EVENTS)).toBe(true);
    expect(schedule.record('a', 1)).toBe(true);
  });
});

describe('runner', () => {
  let h: Harness;
  let runner: ProjectionRunner;

  beforeAll(async () => {
    h = await createHarness('statistics');
  });
  afterAll(async () => {
    await runner?.stop();
    await h?.close();
  });

  it("analyses a projection's tables once it applied the threshold's events in this process", async () => {
    // Below the events the scenario gives the timeline (one row each).
    runner = new ProjectionRunner({
      db: h.database.db,
      store: h.store,
      schema: h.schemas.read,
      projections: readModelProjections(),
      codec: h.codec,
      concurrent: true,
      statistics: { afterEvents: 30, minChangedRows: 30 },
    });
    await runner.start();
    await runScenario(h);
    await runner.waitForPosition(h.lastPosition(), 10_000);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(h.schemas.read, 'customer_timeline')}`.execute(h.database.db);
    expect(rows[0]!.n).toBeGreaterThan(30);
    const deadline = Date.now() + 10_000;
    while (!(await hasStatistics(h, 'customer_timeline')) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await hasStatistics(h, 'customer_timeline')).toBe(true);
  });
});
