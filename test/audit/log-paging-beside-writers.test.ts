import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventLog } from '../../audit/history.ts';
import { campaignCreated, openAuditHarness, type AuditHarness } from './support.ts';

/**
 * Paging the global log while an append is held open. The open transaction holds back the feed
 * horizon of the whole cluster for seconds (each page waits for it, up to its bound), so this file
 * runs on its own, after the rest (vitest.config.ts).
 */
let h: AuditHarness;

beforeAll(async () => {
  h = await openAuditHarness('audit_log_paging');
});

afterAll(async () => {
  await h?.close();
});

describe('paging beside writers', () => {
  it('skips no event committed late with a lower position, and repeats none, when a reader resumes from the last position it saw', async () => {
    // Positions follow the transaction that appends, not its commit: an append still open holds a
    // lower position than one that commits after it. Read as the log stood, a page past that one
    // carried a cursor beyond it, and the event was skipped once it committed.
    const actor = `pager-${randomUUID()}`;
    const late = randomUUID();
    const metadata = {
      actor: { userId: actor, roles: ['marketing'] },
      correlationId: 'c',
      causationId: null,
      occurredAt: new Date().toISOString(),
      schemaVersion: 1,
      command: 'Test',
    };
    await h.record(`campaign-${late}`, 'CampaignCreated', campaignCreated(late), { actor });
    const seen: { id: string; position: string }[] = [];
    /** Pages forwards from the last position seen until the end of the log as it stands. */
    const follow = async () => {
      let cursor = seen.at(-1)?.position ?? null;
      do {
        const page = await eventLog(h.deps, { actor, limit: 2, cursor, personalData: 'reveal' });
        seen.push(...page.items.map((e) => ({ id: e.id, position: e.position.toString() })));
        cursor = page.nextCursor;
      } while (cursor !== null);
    };
    const client = new pg.Client({ connectionString: h.schemas.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT * FROM "${h.schemas.events}".append_events($1, -2, $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[])`, [
        `campaign-${late}`,
        [randomUUID()],
        ['CampaignCostRecorded'],
        [JSON.stringify({ campaignId: late, costId: 'late', amount: 1, currency: 'EUR', description: null })],
        [JSON.stringify(metadata)],
      ]);
      // Committed while the append above is open: higher positions.
      for (let i = 1; i <= 4; i++) {
        const id = randomUUID();
        await h.record(`campaign-${id}`, 'CampaignCreated', campaignCreated(id), { actor });
      }
      await follow();
      // Backwards too, newest first: nothing past the open append yet, so nothing below it is left behind.
      const newest = await eventLog(h.deps, { actor, direction: 'backwards', limit: 2, personalData: 'reveal' });
      expect(newest.items.map((e) => e.id)).toEqual(
        seen
          .slice(0, 2)
          .map((e) => e.id)
          .reverse(),
      );
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
    await follow();
    const all = (await eventLog(h.deps, { actor, limit: 100, personalData: 'reveal' })).items.map((e) => e.id);
    expect(all).toHaveLength(6);
    expect(seen.map((e) => e.id)).toEqual(all);
  });
});
