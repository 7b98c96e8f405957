import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importEnded, json, projectionsSettled, startApi, type ApiHarness } from './support.ts';

/**
 * CSAT by month, as a support lead checks it by hand: every door that shows a ticket's score (the
 * ticket, `GET /feedback`, the feedback export, `reporting.feedback`) says when it was given, and
 * counted by that month gives what `GET /analytics/satisfaction` gives, also for items reopened after
 * their rating; an export imported into a new store gives the same figures there.
 */
let from: ApiHarness;
let to: ApiHarness;
beforeAll(async () => {
  [from, to] = await Promise.all([startApi('api_csat_months_from'), startApi('api_csat_months_to')]);
}, 120_000);
afterAll(async () => {
  await Promise.all([from?.close(), to?.close()]);
});

type Result = { id: string; revision: number; position: string };
const send = async (h: ApiHarness, url: string, payload: object, revision?: number): Promise<Result> => {
  const response = await h.app.inject({
    method: 'POST',
    url,
    headers: { ...h.auth('admin'), ...(revision === undefined ? {} : { 'if-match': `"${revision}"` }) },
    payload,
  });
  if (response.statusCode >= 300) throw new Error(`${url}: ${response.statusCode} ${response.body}`);
  return json<Result>(response);
};

/** A ticket submitted at `submittedAt`, then taken through `steps` (action, day, payload) in order. */
const ticket = async (customerId: string, submittedAt: string, steps: [string, string, object?][], csat?: number): Promise<string> => {
  const submitted = await send(from, '/feedback', {
    customerId,
    kind: 'complaint',
    channel: 'email',
    subject: 'Late',
    body: 'Where is it?',
    occurredAt: submittedAt,
    ...(csat === undefined ? {} : { csat }),
  });
  let revision = submitted.revision;
  for (const [action, day, payload] of steps)
    ({ revision } = await send(from, `/feedback/${submitted.id}/${action}`, { occurredAt: `${day}T10:00:00Z`, ...payload }, revision));
  return submitted.id;
};

type Month = { month: string; responses: number; satisfied: number };
/** Scores counted by the month of their rating, else of the submission (a score given with it). */
const byMonth = (scores: { csat: number | null; ratedAt: string | null; submittedAt: string }[]): Month[] => {
  const months = new Map<string, Month>();
  for (const { csat, ratedAt, submittedAt } of scores) {
    if (csat === null) continue;
    const month = new Date(ratedAt ?? submittedAt).toISOString().slice(0, 7);
    const m = months.get(month) ?? { month, responses: 0, satisfied: 0 };
    m.responses += 1;
    if (csat >= 4) m.satisfied += 1;
    months.set(month, m);
  }
  return [...months.values()].sort((a, b) => a.month.localeCompare(b.month));
};

const analyticsByMonth = async (h: ApiHarness): Promise<Month[]> => {
  const response = await h.app.inject({ method: 'GET', url: '/analytics/satisfaction?groupBy=period', headers: h.auth('admin') });
  expect(response.statusCode, response.body).toBe(200);
  return json<{ items: { period: string; csatResponses: number; csatSatisfied: number }[] }>(response)
    .items.filter((i) => i.csatResponses > 0)
    .map((i) => ({ month: i.period, responses: i.csatResponses, satisfied: i.csatSatisfied }));
};

const exported = async (h: ApiHarness, kind: 'customers' | 'feedback'): Promise<string> => {
  const response = await h.app.inject({ method: 'GET', url: `/${kind}/export`, headers: { ...h.auth('admin'), accept: 'application/x-ndjson' } });
  expect(response.statusCode, response.body).toBe(200);
  return response.body;
};

describe('CSAT by month', () => {
  it('is the same through every door after a reopening, and in a store the exports are imported into', async () => {
    const ada = await send(from, '/customers', { name: 'Ada', email: `ada-${randomUUID()}@example.com`, occurredAt: '2025-04-01T09:00:00Z' });
    // Rated in June, reopened in July and still being worked: the June rating stays, dated June.
    const reopened = await ticket(ada.id, '2025-05-03T09:00:00Z', [
      ['resolve', '2025-05-10', { resolution: 'Sent again' }],
      ['rating', '2025-06-02', { csat: 4, comment: 'Fine' }],
      ['reopen', '2025-07-01'],
    ]);
    // Rated in May, reopened, resolved again in August and not rated again.
    await ticket(ada.id, '2025-05-06T09:00:00Z', [
      ['resolve', '2025-05-07', { resolution: 'Explained' }],
      ['rating', '2025-05-08', { csat: 2 }],
      ['reopen', '2025-05-09'],
      ['resolve', '2025-08-01', { resolution: 'Refunded' }],
    ]);
    // Rated in June, reopened, then closed without a resolution in September.
    await ticket(ada.id, '2025-06-01T09:00:00Z', [
      ['resolve', '2025-06-05', { resolution: 'Replaced' }],
      ['rating', '2025-06-10', { csat: 5 }],
      ['reopen', '2025-06-11'],
      ['close', '2025-09-01'],
    ]);
    // A score given with the submission counts in the submission's month.
    await ticket(ada.id, '2025-07-05T09:00:00Z', [], 1);
    await projectionsSettled(from);

    const expected = [
      { month: '2025-05', responses: 1, satisfied: 0 },
      { month: '2025-06', responses: 2, satisfied: 2 },
      { month: '2025-07', responses: 1, satisfied: 0 },
    ];
    expect(await analyticsByMonth(from)).toEqual(expected);

    const one = json<{ status: string; csat: number; ratedAt: string | null }>(
      await from.app.inject({ method: 'GET', url: `/feedback/${reopened}`, headers: from.auth('admin') }),
    );
    expect(one).toMatchObject({ status: 'in_progress', csat: 4, ratedAt: '2025-06-02T10:00:00.000Z' });
    const listed = json<{ items: { csat: number | null; ratedAt: string | null; submittedAt: string }[] }>(
      await from.app.inject({ method: 'GET', url: '/feedback?limit=100', headers: from.auth('admin') }),
    ).items;
    expect(byMonth(listed)).toEqual(expected);
    const feedbackExport = await exported(from, 'feedback');
    const exportedRows = feedbackExport
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { csat: number | null; ratedAt: string | null; submittedAt: string });
    expect(byMonth(exportedRows)).toEqual(expected);
    const { rows: reported } = await sql<{ csat: number | null; rated_at: Date | null; submitted_at: Date }>`
      SELECT csat, rated_at, submitted_at FROM ${sql.id(from.schemas.reporting, 'feedback')}`.execute(from.database.db);
    expect(byMonth(reported.map((r) => ({ csat: r.csat, ratedAt: r.rated_at?.toISOString() ?? null, submittedAt: r.submitted_at.toISOString() })))).toEqual(
      expected,
    );

    // Moved to another store: the ratings keep their months there.
    for (const [kind, body] of [
      ['customers', await exported(from, 'customers')],
      ['feedback', feedbackExport],
    ] as const) {
      const started = await to.app.inject({
        method: 'POST',
        url: `/imports?kind=${kind}`,
        headers: { ...to.auth('admin'), 'content-type': 'application/x-ndjson' },
        payload: body,
      });
      expect(started.statusCode, started.body).toBe(202);
      const job = await importEnded(to, json<{ id: string }>(started).id);
      expect(job, JSON.stringify(job)).toMatchObject({ status: 'done', counts: { rejected: 0 } });
    }
    await projectionsSettled(to);
    expect(await analyticsByMonth(to)).toEqual(expected);
    const moved = json<{ status: string; csat: number; ratedAt: string | null }>(
      await to.app.inject({ method: 'GET', url: `/feedback/${reopened}`, headers: to.auth('admin') }),
    );
    expect(moved).toMatchObject({ status: 'in_progress', csat: 4, ratedAt: '2025-06-02T10:00:00.000Z' });
  }, 120_000);
});
