import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ruleFor } from '../../api/roles.ts';
import { commandTargets } from './command-targets.ts';
import { eventCount, expectProblem, json, projectionsSettled, startApi, type ApiHarness } from './support.ts';

/**
 * Record-level visibility on every route, for users with `own`, `team` and `all` visibility and for a
 * service key (a key without a user). The routes come from the app's own route list, checked against
 * the role matrix (api/roles.ts), so a route added later must be classified here or this test fails.
 */

let h: ApiHarness;
type Viewer = 'own' | 'team' | 'all' | 'service';
const VIEWERS: Viewer[] = ['own', 'team', 'all', 'service'];
const bearer: Record<Viewer, Record<string, string>> = {} as never;
const users: Record<string, string> = {};
const teams: Record<string, string> = {};
/** The four customers: owned by the `own` user, by a team-mate, by someone of another team, and by nobody. */
type Owner = 'mine' | 'mate' | 'other' | 'none';
const OWNERS: Owner[] = ['mine', 'mate', 'other', 'none'];
const customer = {} as Record<Owner, string>;
let campaign: string;
const deal = {} as Record<Owner, string>;
const feedback = {} as Record<Owner, string>;
const activity = {} as Record<Owner, string>;
const visibleTo: Record<Viewer, Owner[]> = { own: ['mine'], team: ['mine', 'mate'], all: OWNERS, service: OWNERS };

const admin = () => h.auth('admin');
const post = async (url: string, payload: unknown, headers: Record<string, string> = admin()) => {
  const res = await h.app.inject({ method: 'POST', url, payload: payload as object, headers });
  if (res.statusCode >= 300) throw new Error(`POST ${url} -> ${res.statusCode}: ${res.body}`);
  return json(res);
};
const get = (url: string, viewer: Viewer) => h.app.inject({ method: 'GET', url, headers: bearer[viewer] });

const registerUser = async (name: string, body: Record<string, unknown>): Promise<string> => {
  const { id } = await post('/admin/users', { name, email: `${name}-${randomUUID()}@crm.example`, ...body });
  users[name] = id;
  return id;
};
const keyFor = async (userId: string): Promise<Record<string, string>> => {
  const { key } = await post('/admin/api-keys', { userId, name: `key of ${userId}` });
  return { authorization: `Bearer ${key}` };
};

beforeAll(async () => {
  h = await startApi('api_visibility');
  teams.a = (await post('/admin/teams', { name: 'Team A' })).id;
  teams.b = (await post('/admin/teams', { name: 'Team B' })).id;
  // Admin-role users, so that every route is open to them by role and only visibility differs.
  await registerUser('own', { role: 'admin', teamIds: [teams.a], visibility: 'own' });
  await registerUser('team', { role: 'admin', teamIds: [teams.a] });
  await registerUser('all', { role: 'admin', visibility: 'all' });
  await registerUser('mate', { role: 'sales', teamIds: [teams.a] });
  await registerUser('other', { role: 'sales', teamIds: [teams.b] });
  for (const v of ['own', 'team', 'all'] as const) bearer[v] = await keyFor(users[v]!);
  bearer.service = admin();
  const ownerOf: Record<Owner, string | undefined> = { mine: users.own, mate: users.mate, other: users.other, none: undefined };
  for (const o of OWNERS) {
    // The same name for all four: the duplicates report groups them.
    customer[o] = (
      await post('/customers', { name: 'Vis Ibility', email: `${o}-${randomUUID()}@example.com`, ...(ownerOf[o] ? { ownerId: ownerOf[o] } : {}) })
    ).id;
    await post(`/customers/${customer[o]}/purchases`, { orderId: `o-${o}`, amount: 100, currency: 'CHF', occurredAt: '2026-01-05T10:00:00Z' });
    await post(`/customers/${customer[o]}/refunds`, { orderId: `o-${o}`, refundId: `r-${o}`, amount: 10, currency: 'CHF', occurredAt: '2026-01-06T10:00:00Z' });
    deal[o] = (
      await post('/deals', {
        customerId: customer[o],
        title: `deal ${o}`,
        amount: 10,
        currency: 'CHF',
        ownerId: ownerOf[o] ?? 'nobody',
        expectedCloseDate: '2026-12-31',
      })
    ).id;
    feedback[o] = (await post('/feedback', { customerId: customer[o], kind: 'question', channel: 'web', subject: 's', body: 'b' })).id;
    // Unassigned: the activity follows its customer's owner.
    activity[o] = (await post(`/customers/${customer[o]}/activities`, { kind: 'task', subject: `task ${o}`, body: 'b', dueAt: '2026-12-01T00:00:00Z' })).id;
  }
  // A campaign every customer responded to: its responses name customers of every owner.
  campaign = (await post('/campaigns', { name: 'Visibility', channel: 'email', budget: 10, currency: 'CHF' })).id;
  await post(`/campaigns/${campaign}/launch`, {}, { ...admin(), 'if-match': '"0"' });
  for (const o of OWNERS) await post(`/campaigns/${campaign}/responses`, { customerId: customer[o], kind: 'sent' });
  await projectionsSettled(h);
}, 180_000);
afterAll(async () => h?.close());

const idOf = { customers: customer, deals: deal, feedback, activities: activity } as const;
type Collection = keyof typeof idOf;
const expectedIds = (collection: Collection, viewer: Viewer) => visibleTo[viewer].map((o) => idOf[collection][o]).sort();
const ours = (collection: Collection, ids: string[]) => ids.filter((id) => Object.values(idOf[collection]).includes(id)).sort();

/** A concrete URL of a route for one record (or none, for routes without a record in the path). */
const concrete = (url: string, o: Owner): string =>
  url
    .replace('/audit/streams/:stream', `/audit/streams/customer-${customer[o]}`)
    .replace('/audit/state/:kind/:id', `/audit/state/customer/${customer[o]}`)
    .replace(/^\/(customers|deals|feedback|activities)\/:id/, (_m, c: Collection) => `/${c}/${idOf[c][o]}`)
    .replace('/analytics/customers/:id', `/analytics/customers/${customer[o]}`);

/**
 * How each registered route treats visibility. `record`: one record's route (404 outside the scope);
 * `list`: a list, export or total filtered to the scope; `company`: a restricted non-auditor is refused
 * (403) because the answer spans every record; `unowned`: nothing in it belongs to an owner (campaigns,
 * administration, operations, model fits, aggregate analytics), the same for every viewer.
 */
type Kind = 'record' | 'list' | 'company' | 'unowned';
const classify = (method: string, url: string): Kind | undefined => {
  if (/^\/(customers|deals|feedback|activities)\/:id/.test(url)) return 'record';
  if (['/audit/streams/:stream', '/audit/streams/:stream/export', '/audit/state/:kind/:id', '/analytics/customers/:id'].includes(url)) return 'record';
  if (
    method === 'GET' &&
    [
      '/customers',
      '/deals',
      '/feedback',
      '/customers/export',
      '/deals/export',
      '/feedback/export',
      '/activities/export',
      '/purchases/export',
      '/refunds/export',
      '/responses/export',
      '/customers/duplicates',
      '/activities',
      '/pipeline',
      '/analytics/clv',
      '/analytics/churn',
      '/audit/events',
      '/audit/events/export',
    ].includes(url)
  )
    return 'list';
  if (url.startsWith('/audit/') || url.startsWith('/webhooks') || `${method} ${url}` === 'POST /imports') return 'company';
  if (['POST /customers', 'POST /deals', 'POST /feedback'].includes(`${method} ${url}`)) return 'record'; // creations: the referenced customer must be visible
  // Campaign costs name no customer: every viewer's export holds them all, as every campaign list their sum.
  if (/^\/(campaigns|admin|imports|console|exchange-rates)(\/|$)/.test(url) || url === '/costs/export' || url.startsWith('/analytics/')) return 'unowned';
  // `/me` describes the caller's own key: the same answer whatever records exist.
  if (['/', '/health', '/ready', '/metrics', '/openapi.json', '/bench/noop', '/me'].includes(url)) return 'unowned';
  return undefined;
};
const apiRoutes = () => h.app.routeList.filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS' && !r.url.startsWith('/docs'));

describe('visibility: every route is classified', () => {
  it('names every registered route, each one in the role matrix', () => {
    const unclassified = apiRoutes()
      .filter((r) => classify(r.method, r.url) === undefined)
      .map((r) => `${r.method} ${r.url}`);
    expect(unclassified).toEqual([]);
    const outsideMatrix = apiRoutes()
      .filter((r) => ruleFor(r.method, r.url).summary.startsWith('(not in the matrix'))
      .map((r) => `${r.method} ${r.url}`);
    expect(outsideMatrix).toEqual([]);
  });
});

describe('visibility: reads of one record', () => {
  it('answer 404 outside the scope and 200 inside it, on every record route, for every viewer', async () => {
    const failures: string[] = [];
    const reads = apiRoutes().filter((r) => r.method === 'GET' && classify(r.method, r.url) === 'record');
    expect(reads.length).toBeGreaterThanOrEqual(9);
    for (const route of reads) {
      for (const viewer of VIEWERS) {
        for (const o of OWNERS) {
          const url = concrete(route.url, o);
          const res = await get(url, viewer);
          const visible = visibleTo[viewer].includes(o);
          const expected = visible ? 200 : 404;
          if (res.statusCode !== expected) failures.push(`${viewer} GET ${url} (${o}) -> ${res.statusCode}, expected ${expected}`);
          if (!visible && res.statusCode === 404) expectProblem(res, 404, 'not-found');
        }
      }
    }
    expect(failures).toEqual([]);
  }, 180_000);

  it('a record outside the scope reads like one that does not exist (same status and problem type)', async () => {
    const outside = json(await get(`/customers/${customer.other}`, 'own'));
    const missing = json(await get(`/customers/${randomUUID()}`, 'own'));
    expect(outside.status).toBe(missing.status);
    expect(outside.type).toBe(missing.type);
    expect(outside.title).toBe(missing.title);
  });

  it("a record's history, past state and subject access export outside the scope read like those of one that does not exist, detail included", async () => {
    const unknown = randomUUID();
    for (const path of ['/audit/streams/customer-:id', '/audit/state/customer/:id', '/customers/:id/export']) {
      const outside = await get(path.replace(':id', customer.other), 'own');
      const missing = await get(path.replace(':id', unknown), 'own');
      expectProblem(outside, 404, 'not-found');
      expect(missing.statusCode, path).toBe(404);
      const [a, b] = [json(outside), json(missing)];
      expect({ type: a.type, title: a.title, detail: a.detail.replace(customer.other, '<id>') }, path).toEqual({
        type: b.type,
        title: b.title,
        detail: b.detail.replace(unknown, '<id>'),
      });
      // Both name the record asked for, as any not-found answer does.
      expect(b.detail, path).toContain(unknown);
    }
  });

  it('?asOf= of a record outside the scope is 404 too', async () => {
    const res = await get(`/customers/${customer.other}?asOf=${encodeURIComponent(new Date().toISOString())}`, 'team');
    expectProblem(res, 404, 'not-found');
    expect((await get(`/customers/${customer.mate}?asOf=${encodeURIComponent(new Date().toISOString())}`, 'team')).statusCode).toBe(200);
  });
});

describe('visibility: audit of activities and exchange rates', () => {
  it("a restricted non-auditor reads an activity's history and past state only inside the scope; exchange rates are company-wide", async () => {
    const asOf = encodeURIComponent(new Date(Date.now() + 60_000).toISOString());
    await post('/exchange-rates', { currency: 'JPY', rate: 0.0061, validFrom: '2026-01-01T00:00:00Z' });
    for (const viewer of VIEWERS) {
      for (const o of OWNERS) {
        const expected = visibleTo[viewer].includes(o) ? 200 : 404;
        expect((await get(`/audit/streams/activity-${activity[o]}`, viewer)).statusCode, `${viewer} history of ${o}'s activity`).toBe(expected);
        expect((await get(`/audit/state/activities/${activity[o]}?asOf=${asOf}`, viewer)).statusCode, `${viewer} state of ${o}'s activity`).toBe(expected);
      }
      expect((await get('/audit/streams/exchangerate-JPY', viewer)).statusCode, `${viewer} exchange rates`).toBe(200);
    }
  });
});

describe('visibility: audit of deals, feedback, campaigns, users and teams', () => {
  it("a restricted non-auditor reads a deal's or a feedback's history and past state only inside the scope; campaigns, users and teams are company-wide", async () => {
    const asOf = encodeURIComponent(new Date(Date.now() + 60_000).toISOString());
    for (const viewer of VIEWERS) {
      for (const o of OWNERS) {
        const expected = visibleTo[viewer].includes(o) ? 200 : 404;
        for (const [stream, state] of [
          [`deal-${deal[o]}`, `deals/${deal[o]}`],
          [`feedback-${feedback[o]}`, `feedback/${feedback[o]}`],
        ] as const) {
          expect((await get(`/audit/streams/${stream}`, viewer)).statusCode, `${viewer} history of ${o}'s ${stream}`).toBe(expected);
          expect((await get(`/audit/state/${state}?asOf=${asOf}`, viewer)).statusCode, `${viewer} state of ${o}'s ${state}`).toBe(expected);
        }
      }
      for (const stream of [`campaign-${campaign}`, `user-${users.other}`, `team-${teams.b}`]) {
        expect((await get(`/audit/streams/${stream}`, viewer)).statusCode, `${viewer} history of ${stream}`).toBe(200);
      }
    }
  });

  it('an auditor with own visibility reads the whole event log, not only their own records', async () => {
    const auditor = await registerUser(`auditor-${randomUUID().slice(0, 8)}`, { role: 'auditor', teamIds: [teams.b], visibility: 'own' });
    const key = await keyFor(auditor);
    const streams = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = json(await h.app.inject({ method: 'GET', url: `/audit/events?limit=500${cursor ? `&cursor=${cursor}` : ''}`, headers: key }));
      for (const e of page.items as { stream: string }[]) streams.add(e.stream);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    for (const o of OWNERS) expect(streams.has(`customer-${customer[o]}`), `${o}'s customer in the auditor's log`).toBe(true);
  });
});

describe('visibility: commands on one record', () => {
  it('answer 404 outside the scope and append nothing; inside it they reach the record (a stale If-Match is a 409)', async () => {
    const targets = commandTargets(() => customer.mine).filter((t) => t.url.includes('/:id'));
    const registered = apiRoutes().filter((r) => (r.method === 'POST' || r.method === 'PATCH') && /^\/(customers|deals|feedback|activities)\/:id/.test(r.url));
    // Every command route on a record has a valid body here.
    expect(registered.map((r) => `${r.method} ${r.url}`).filter((k) => !targets.some((t) => `${t.method} ${t.url}` === k))).toEqual([]);
    const failures: string[] = [];
    for (const t of targets) {
      if (!/^\/(customers|deals|feedback|activities)\//.test(t.url)) continue;
      // Logging an activity under a record is a creation: it takes no If-Match, so inside the scope it is accepted.
      const creation = t.url.endsWith('/activities');
      for (const viewer of VIEWERS) {
        for (const o of OWNERS) {
          const before = await eventCount(h);
          const url = concrete(t.url, o);
          const res = await h.app.inject({ method: t.method, url, payload: t.valid(), headers: { ...bearer[viewer], 'if-match': '"999"' } });
          const visible = visibleTo[viewer].includes(o);
          if (visible ? res.statusCode === 404 || res.statusCode >= 500 : res.statusCode !== 404)
            failures.push(`${viewer} ${t.method} ${url} (${o}) -> ${res.statusCode}: ${res.body.slice(0, 160)}`);
          if (res.statusCode < 300 && !creation) failures.push(`${viewer} ${t.method} ${url} was accepted despite a stale If-Match`);
          if ((await eventCount(h)) !== before && !(creation && visible)) failures.push(`${viewer} ${t.method} ${url} appended events`);
        }
      }
    }
    expect(failures).toEqual([]);
  }, 300_000);

  it('refuses a deal, feedback or campaign response naming a customer outside the scope, as an unknown customer (422)', async () => {
    const before = await eventCount(h);
    const refused = [
      { url: '/deals', payload: { customerId: customer.other, title: 't', amount: 1, currency: 'EUR', ownerId: users.own, expectedCloseDate: '2026-12-31' } },
      { url: '/feedback', payload: { customerId: customer.mate, kind: 'question', channel: 'web', subject: 's', body: 'b' } },
    ];
    for (const { url, payload } of refused) {
      const res = await h.app.inject({ method: 'POST', url, payload, headers: bearer.own });
      const problem = expectProblem(res, 422);
      expect(problem.errors?.[0]?.field).toBe('customerId');
    }
    expect(await eventCount(h)).toBe(before);
  });

  it("a user's own registration is owned by them and visible to them at once", async () => {
    const { id, position } = await post('/customers', { name: 'Mine Too', email: `mine-${randomUUID()}@example.com` }, bearer.own);
    const res = await get(`/customers/${id}?waitFor=${position}`, 'own');
    expect(res.statusCode).toBe(200);
    expect(json(res).ownerId).toBe(users.own);
    expect((await get(`/customers/${id}?waitFor=${position}`, 'team')).statusCode).toBe(200);
  });

  it("a user's own registration read as of a past business day with ?waitFor= waits for the read model that scopes it (it answered 404)", async () => {
    const asOf = encodeURIComponent('2026-11-01T00:00:00Z');
    for (let i = 0; i < 5; i += 1) {
      const email = `past-${randomUUID()}@example.com`;
      const { id, position } = await post('/customers', { name: 'Mine Then', email, occurredAt: '2026-10-01T00:00:00Z' }, bearer.own);
      const res = await get(`/customers/${id}?asOf=${asOf}&time=business&waitFor=${position}`, 'own');
      expect(res.statusCode, res.body).toBe(200);
      expect(json(res)).toMatchObject({ id, email, status: 'active' });
    }
  });
});

describe('visibility: lists, exports, totals', () => {
  it('lists hold only the scope, for every viewer', async () => {
    for (const viewer of VIEWERS) {
      for (const collection of ['customers', 'deals', 'feedback'] as const) {
        const page = json(await get(`/${collection}?limit=500`, viewer));
        expect(
          ours(
            collection,
            page.items.map((i: { id: string }) => i.id),
          ),
          `${viewer} ${collection}`,
        ).toEqual(expectedIds(collection, viewer));
        const ndjson = (await get(`/${collection}/export?format=ndjson`, viewer)).body
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l).id as string);
        expect(ours(collection, ndjson), `${viewer} ${collection}/export`).toEqual(expectedIds(collection, viewer));
      }
    }
  });

  it("?ownerId= lists one owner's customers within the scope, `me` the caller's own, in the list and the export alike", async () => {
    const listed = async (query: string, viewer: Viewer) => {
      const ids = json(await get(`/customers?limit=500&${query}`, viewer)).items.map((i: { id: string }) => i.id);
      const exported = (await get(`/customers/export?format=ndjson&${query}`, viewer)).body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l).id as string);
      expect(ours('customers', exported), `${viewer} export ${query}`).toEqual(ours('customers', ids));
      return ours('customers', ids);
    };
    expect(await listed(`ownerId=${users.mate}`, 'all')).toEqual([customer.mate]);
    expect(await listed(`ownerId=${users.mate!.toUpperCase()}`, 'team')).toEqual([customer.mate]);
    // Another team's owner: nothing the scope does not hold.
    expect(await listed(`ownerId=${users.other}`, 'team')).toEqual([]);
    expect(await listed('ownerId=me', 'own')).toEqual([customer.mine]);
    // A service key belongs to no user: it has no `me`.
    for (const url of ['/customers?ownerId=me', '/customers/export?ownerId=me']) {
      const refused = await get(url, 'service');
      expect(refused.statusCode, url).toBe(400);
      expect(json(refused).errors, url).toEqual([{ field: 'ownerId', in: 'query', message: "'me' needs an API key that belongs to a user" }]);
    }
    expect((await get('/customers?ownerId=someone', 'all')).statusCode).toBe(400);
  });

  it("the purchases and refunds exports hold those of the scope's customers only", async () => {
    const lines = async (url: string, viewer: Viewer) =>
      (await get(url, viewer)).body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { orderId: string; refundId?: string; customerId: string })
        .filter((p) => Object.values(customer).includes(p.customerId));
    for (const viewer of VIEWERS) {
      const orders = await lines('/purchases/export?format=ndjson', viewer);
      expect(orders.map((p) => p.orderId).sort(), viewer).toEqual(visibleTo[viewer].map((o) => `o-${o}`).sort());
      const refunds = await lines('/refunds/export?format=ndjson', viewer);
      expect(refunds.map((r) => r.refundId).sort(), viewer).toEqual(visibleTo[viewer].map((o) => `r-${o}`).sort());
    }
  });

  it("the campaign responses export holds the responses of the scope's customers only", async () => {
    for (const viewer of VIEWERS) {
      const responses = (await get(`/responses/export?format=ndjson&campaignId=${campaign}`, viewer)).body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { customerId: string });
      expect(responses.map((r) => r.customerId).sort(), viewer).toEqual(visibleTo[viewer].map((o) => customer[o]).sort());
    }
  });

  it('activity lists and the activities export hold only the scope: all activities, and my open tasks', async () => {
    for (const viewer of VIEWERS) {
      const page = json(await get('/activities?limit=500', viewer));
      expect(
        ours(
          'activities',
          page.items.map((i: { id: string }) => i.id),
        ),
        viewer,
      ).toEqual(expectedIds('activities', viewer));
      const open = json(await get('/activities?limit=500&open=true', viewer));
      expect(
        ours(
          'activities',
          open.items.map((i: { id: string }) => i.id),
        ),
        `${viewer} open`,
      ).toEqual(expectedIds('activities', viewer));
      const exported = (await get('/activities/export?format=ndjson', viewer)).body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l).id as string);
      expect(ours('activities', exported), `${viewer} activities/export`).toEqual(expectedIds('activities', viewer));
    }
  });

  it('keyset pages of a restricted list neither skip nor leak, in every sort order, and keep the order of the whole list', async () => {
    for (const sort of ['-createdAt', 'createdAt', 'name', '-name', 'revenue', '-lastPurchaseAt', 'orderCount']) {
      for (const collection of ['customers', 'deals'] as const) {
        if (collection === 'deals' && !['-createdAt', 'createdAt'].includes(sort)) continue;
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const url = `/${collection}?limit=1&sort=${sort}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
          const page: { items: { id: string }[]; nextCursor: string | null } = json(await get(url, 'team'));
          seen.push(...page.items.map((i) => i.id));
          cursor = page.nextCursor;
        } while (cursor);
        expect(ours(collection, seen), `${collection} ${sort}`).toEqual(expectedIds(collection, 'team'));
        expect(new Set(seen).size).toBe(seen.length);
        // The restricted order is the unrestricted order with the others left out.
        const all = json(await get(`/${collection}?limit=500&sort=${sort}`, 'service')).items.map((i: { id: string }) => i.id);
        expect(seen, `${collection} ${sort}`).toEqual(all.filter((id: string) => seen.includes(id)));
      }
    }
  });

  it("a cursor is valid for the scope it was issued in: another scope's is a 400 naming cursor, a team-mate's the same page", async () => {
    const first: { nextCursor: string | null } = json(await get('/customers?limit=1&sort=name', 'all'));
    const replayed = await get(`/customers?limit=1&sort=name&cursor=${first.nextCursor}`, 'team');
    expect(replayed.statusCode).toBe(400);
    expect(json(replayed).errors[0]).toMatchObject({ field: 'cursor' });
    // The owners a team sees are the same for each of its members: a link with a cursor works for any of them.
    const mate = await keyFor(users.mate!);
    const teams: { nextCursor: string | null } = json(await get('/customers?limit=1&sort=name', 'team'));
    const asMate = await h.app.inject({ method: 'GET', url: `/customers?limit=1&sort=name&cursor=${teams.nextCursor}`, headers: mate });
    expect(asMate.statusCode, asMate.body).toBe(200);
    const forOwn = await get(`/customers?limit=1&sort=name&cursor=${teams.nextCursor}`, 'own');
    expect(forOwn.statusCode).toBe(400);
  });

  it("the pipeline's totals count only the scope's deals", async () => {
    for (const viewer of VIEWERS) {
      const pipeline = json(await get('/pipeline?currency=CHF', viewer));
      const total = pipeline.totals.find((t: { currency: string }) => t.currency === 'CHF');
      expect(total?.dealCount ?? 0, viewer).toBe(visibleTo[viewer].length);
      expect(total?.amount ?? 0, viewer).toBe(10 * visibleTo[viewer].length);
    }
  });

  it('the duplicates report groups only customers in the scope', async () => {
    for (const viewer of VIEWERS) {
      const { items } = json(await get('/customers/duplicates?limit=500', viewer));
      const ids = items.flatMap((g: { customers: { id: string }[] }) => g.customers.map((c) => c.id));
      const expected = visibleTo[viewer].length >= 2 ? expectedIds('customers', viewer) : [];
      expect(ours('customers', [...new Set<string>(ids)]), viewer).toEqual(expected);
    }
  });

  it('analytics rankings name only customers in the scope', async () => {
    for (const viewer of VIEWERS) {
      for (const url of ['/analytics/clv?limit=500', '/analytics/churn?limit=500']) {
        const res = await get(url, viewer);
        expect(res.statusCode, `${viewer} ${url}: ${res.body.slice(0, 200)}`).toBe(200);
        const ids = json(res).items.map((i: { customerId: string }) => i.customerId);
        expect(
          ours('customers', ids).every((id: string) => expectedIds('customers', viewer).includes(id)),
          `${viewer} ${url}`,
        ).toBe(true);
      }
    }
  });
});

describe('visibility: audit', () => {
  it("the event log (and its export) holds only the scope's records' events for restricted non-auditors", async () => {
    const streamsOf = (viewer: Viewer) => [...visibleTo[viewer].flatMap((o) => [`customer-${customer[o]}`, `deal-${deal[o]}`, `feedback-${feedback[o]}`])];
    const hidden = (viewer: Viewer) =>
      OWNERS.filter((o) => !visibleTo[viewer].includes(o)).flatMap((o) => [`customer-${customer[o]}`, `deal-${deal[o]}`, `feedback-${feedback[o]}`]);
    for (const viewer of VIEWERS) {
      const seen = new Set<string>();
      let cursor: string | null = null;
      do {
        const page: { items: { stream: string }[]; nextCursor: string | null } = json(
          await get(`/audit/events?limit=500${cursor ? `&cursor=${cursor}` : ''}`, viewer),
        );
        for (const e of page.items) seen.add(e.stream);
        cursor = page.nextCursor;
      } while (cursor);
      for (const stream of streamsOf(viewer)) expect(seen.has(stream), `${viewer} sees ${stream}`).toBe(true);
      for (const stream of hidden(viewer)) expect(seen.has(stream), `${viewer} does not see ${stream}`).toBe(false);
      expect(
        [...seen].some((s) => s.startsWith('user-')),
        viewer,
      ).toBe(true);
      const exported = (await get('/audit/events/export?format=ndjson', viewer)).body
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).stream as string);
      expect(new Set(exported)).toEqual(seen);
    }
  });

  it("a campaign's history names only the scope's customers to restricted non-auditors: the others' responses show with the customer withheld", async () => {
    const visibleCustomers = (viewer: Viewer) => visibleTo[viewer].map((o) => customer[o]);
    for (const viewer of VIEWERS) {
      const responsesIn = (items: { type: string; data: { customerId: string } }[]) =>
        items.filter((e) => e.type === 'CampaignResponseRecorded').map((e) => e.data.customerId);
      const history = responsesIn(json(await get(`/audit/streams/campaign-${campaign}?limit=500`, viewer)).items);
      const log = responsesIn(json(await get(`/audit/events?stream=campaign-${campaign}&limit=500`, viewer)).items);
      const exported = responsesIn(
        (await get(`/audit/streams/campaign-${campaign}/export?format=ndjson`, viewer)).body
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l)),
      );
      // Every response is in the history, whatever the scope: the campaign's history stays whole.
      for (const seen of [history, log, exported]) {
        expect(seen, viewer).toHaveLength(OWNERS.length);
        expect(seen.filter((id) => id !== '[outside your scope]').sort(), viewer).toEqual([...visibleCustomers(viewer)].sort());
      }
    }
  });

  it('verification and the hash chain (they span every record) are refused to restricted non-auditors, open to all-visibility and service keys', async () => {
    const routes = apiRoutes().filter((r) => classify(r.method, r.url) === 'company' && r.method === 'GET' && !r.url.includes(':'));
    expect(routes.length).toBeGreaterThan(0);
    for (const route of routes) {
      // The refusal says what would be needed.
      const needed = route.url.startsWith('/webhooks') ? 'need visibility "all" (or a service key)' : 'need visibility "all" or the auditor role';
      for (const viewer of ['own', 'team'] as const) expect(expectProblem(await get(route.url, viewer), 403, 'forbidden').detail, route.url).toContain(needed);
      for (const viewer of ['all', 'service'] as const) expect((await get(route.url, viewer)).statusCode, `${viewer} ${route.url}`).not.toBe(403);
    }
  });

  it('webhook subscriptions and bulk imports (they act on every record) are refused to restricted callers', async () => {
    for (const viewer of ['own', 'team'] as const) {
      // The refusal says what would be needed.
      expect(expectProblem(await get('/webhooks', viewer), 403, 'forbidden').detail).toContain('need visibility "all" (or a service key)');
      const before = await eventCount(h);
      const res = await h.app.inject({
        method: 'POST',
        url: '/imports?kind=customers',
        payload: 'name,email\nX,x@example.com\n',
        headers: { ...bearer[viewer], 'content-type': 'text/csv' },
      });
      expectProblem(res, 403, 'forbidden');
      expect(await eventCount(h)).toBe(before);
    }
    expect((await get('/webhooks', 'all')).statusCode).toBe(200);
  });

  it("another key's import, whose bad-row report quotes its cells, is shown only to an admin who sees every record", async () => {
    const started = await h.app.inject({
      method: 'POST',
      url: '/imports?kind=customers',
      payload: 'name,email\nBad Address,not-an-address\n',
      headers: { ...bearer.service, 'content-type': 'text/csv' },
    });
    expect(started.statusCode, started.body).toBe(202);
    const url = `/imports/${json<{ id: string }>(started).id}`;
    for (const viewer of ['own', 'team'] as const) expectProblem(await get(url, viewer), 404, 'not-found');
    expect((await get(url, 'all')).statusCode).toBe(200);
    expect((await get(url, 'service')).statusCode).toBe(200);
  });

  it("an auditor with own visibility still reads every record's history", async () => {
    const auditor = await registerUser('auditor', { role: 'auditor', teamIds: [teams.b], visibility: 'own' });
    const key = await keyFor(auditor);
    expect((await h.app.inject({ method: 'GET', url: `/audit/streams/customer-${customer.mine}`, headers: key })).statusCode).toBe(200);
    expect((await h.app.inject({ method: 'GET', url: '/audit/events?limit=5', headers: key })).statusCode).toBe(200);
    // The subject access export is that history too: closing it would protect nothing the two routes above give.
    expect((await h.app.inject({ method: 'GET', url: `/customers/${customer.mine}/export`, headers: key })).statusCode).toBe(200);
  });

  it('users, teams and memberships are events: the audit log shows who could see what, when', async () => {
    const res = await get(`/audit/streams/user-${users.team}`, 'service');
    const types = json(res).items.map((e: { type: string }) => e.type);
    expect(types).toEqual(['UserRegistered', 'UserJoinedTeam']);
    expect(json(res).items[0].data.visibility).toBe('team');
  });
});

describe("a user's key", () => {
  it("acts with the user's current role and visibility: changes apply without a new key", async () => {
    const id = await registerUser('changing', { role: 'sales', teamIds: [teams.a], visibility: 'own' });
    const key = await keyFor(id);
    expectProblem(await h.app.inject({ method: 'GET', url: '/admin/users', headers: key }), 403, 'forbidden');
    const asSales = json(await h.app.inject({ method: 'GET', url: '/customers?limit=500', headers: key }));
    expect(
      ours(
        'customers',
        asSales.items.map((i: { id: string }) => i.id),
      ),
    ).toEqual([]);
    const patched = await h.app.inject({ method: 'PATCH', url: `/admin/users/${id}`, payload: { role: 'admin', visibility: 'team' }, headers: admin() });
    expect(patched.statusCode, patched.body).toBe(200);
    expect((await h.app.inject({ method: 'GET', url: '/admin/users', headers: key })).statusCode).toBe(200);
    const asTeam = json(await h.app.inject({ method: 'GET', url: '/customers?limit=500', headers: key }));
    expect(
      ours(
        'customers',
        asTeam.items.map((i: { id: string }) => i.id),
      ),
    ).toEqual(expectedIds('customers', 'team'));
    const user = json(await h.app.inject({ method: 'GET', url: `/admin/users/${id}`, headers: admin() }));
    expect(user).toMatchObject({ role: 'admin', visibility: 'team', teamIds: [teams.a], active: true });
  });

  it('stops working when the user is deactivated, and works again on reactivation', async () => {
    const id = await registerUser('leaving', { role: 'support' });
    const key = await keyFor(id);
    expect((await h.app.inject({ method: 'GET', url: '/feedback', headers: key })).statusCode).toBe(200);
    await h.app.inject({ method: 'PATCH', url: `/admin/users/${id}`, payload: { active: false }, headers: admin() });
    expectProblem(await h.app.inject({ method: 'GET', url: '/feedback', headers: key }), 401, 'unauthenticated');
    await h.app.inject({ method: 'PATCH', url: `/admin/users/${id}`, payload: { active: true }, headers: admin() });
    expect((await h.app.inject({ method: 'GET', url: '/feedback', headers: key })).statusCode).toBe(200);
  });

  it('is listed with its user; a service key keeps its own role and sees the whole company', async () => {
    const { items } = json(await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: admin() }));
    expect(items.some((k: { userId: string | null }) => k.userId === users.own)).toBe(true);
    expect(items.find((k: { name: string }) => k.name === 'test sales').userId).toBeNull();
    const sales = json(await h.app.inject({ method: 'GET', url: '/customers?limit=500', headers: h.auth('sales') }));
    expect(
      ours(
        'customers',
        sales.items.map((i: { id: string }) => i.id),
      ),
    ).toEqual(expectedIds('customers', 'service'));
  });

  it('refuses bad user and key requests with 4xx naming the field, appending nothing', async () => {
    const before = await eventCount(h);
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/admin/api-keys', { userId: randomUUID(), name: 'ghost' }, 422, 'userId'],
      ['POST', '/admin/api-keys', { userId: users.own, name: 'both', role: 'admin' }, 400, 'role'],
      ['POST', '/admin/users', { name: 'x', email: 'x@crm.example', role: 'sales', visibility: 'everyone' }, 400, 'visibility'],
      ['POST', '/admin/users', { name: 'x', email: 'x@crm.example', role: 'sales', teamIds: [randomUUID()] }, 422, 'teamIds'],
      ['POST', '/admin/users', { name: 'x', email: 'not-an-email', role: 'sales' }, 400, 'email'],
      ['PATCH', `/admin/users/${users.own}`, { role: 'boss' }, 400, 'role'],
      ['POST', `/customers/${customer.mine}/owner`, { ownerId: randomUUID() }, 422, 'ownerId'],
    ];
    for (const [method, url, payload, status, field] of cases) {
      const res = await h.app.inject({ method: method as 'POST', url, payload: payload as object, headers: admin() });
      const problem = expectProblem(res, status);
      expect(JSON.stringify(problem.errors ?? problem), `${method} ${url}`).toContain(field);
    }
    expect(await eventCount(h)).toBe(before);
    expectProblem(await h.app.inject({ method: 'GET', url: `/admin/users/${randomUUID()}`, headers: admin() }), 404, 'not-found');
  });

  it('an owner change moves the customer between scopes', async () => {
    const { id } = await post('/customers', { name: 'Handed Over', email: `ho-${randomUUID()}@example.com`, ownerId: users.other });
    await projectionsSettled(h);
    expect((await get(`/customers/${id}`, 'team')).statusCode).toBe(404);
    const { position } = await post(`/customers/${id}/owner`, { ownerId: users.mate });
    expect((await get(`/customers/${id}?waitFor=${position}`, 'team')).statusCode).toBe(200);
    expect((await get(`/customers/${id}`, 'own')).statusCode).toBe(404);
    const history = json(await get(`/audit/streams/customer-${id}`, 'service')).items.map((e: { type: string; data: Record<string, unknown> }) => [
      e.type,
      e.data.ownerId ?? null,
    ]);
    expect(history).toEqual([
      ['CustomerRegistered', null],
      ['CustomerOwnerAssigned', users.other],
      ['CustomerOwnerAssigned', users.mate],
    ]);
    // The record as it stood (folded from its events) names the owner too.
    const past = json(await get(`/customers/${id}?asOf=${encodeURIComponent(new Date().toISOString())}`, 'service'));
    expect(past.ownerId).toBe(users.mate);
  });

  it("a deal's owner and a feedback item's assignee given as an upper-case user id are that user: in their scope, one owner in the pipeline", async () => {
    const upper = users.own!.toUpperCase();
    const customerId = (await post('/customers', { name: 'Upper Case', email: `uc-${randomUUID()}@example.com` })).id;
    const dealId = (
      await post('/deals', { customerId, title: 'owned in capitals', amount: 7, currency: 'SEK', ownerId: upper, expectedCloseDate: '2026-12-31' })
    ).id;
    const feedbackId = (await post('/feedback', { customerId, kind: 'question', channel: 'web', subject: 's', body: 'b' })).id;
    const { position } = await post(`/feedback/${feedbackId}/assign`, { assigneeId: upper }, { ...admin(), 'if-match': '"0"' });
    expect((await get(`/deals/${dealId}?waitFor=${position}`, 'own')).statusCode).toBe(200);
    expect(json(await get(`/deals/${dealId}`, 'service')).ownerId).toBe(users.own);
    expect(json(await get(`/feedback/${feedbackId}`, 'own')).assigneeId).toBe(users.own);
    // The filters read the id the same way.
    expect(json(await get(`/deals?ownerId=${upper}&limit=500`, 'service')).items.map((d: { id: string }) => d.id)).toContain(dealId);
    expect(json(await get(`/feedback?assigneeId=${upper}`, 'service')).items.map((f: { id: string }) => f.id)).toEqual([feedbackId]);
    const owners = json(await get('/pipeline?currency=SEK', 'service')).byOwner.map((g: { ownerId: string }) => g.ownerId);
    expect(owners).toEqual([users.own]);
    // Text that is not a user id is kept as written.
    const named = await post('/deals', { customerId, title: 'named owner', amount: 1, currency: 'NOK', ownerId: 'Import', expectedCloseDate: '2026-12-31' });
    expect(json(await get(`/deals/${named.id}?waitFor=${named.position}`, 'service')).ownerId).toBe('Import');
  });
});

describe("visibility follows the customer's owner onto its deals, feedback and activities", () => {
  type Records = Record<'deals' | 'feedback' | 'activities', string>;
  /** A customer owned by `ownerId` (or by nobody), with a deal owned by a user of the other team, a feedback item and an unassigned note. */
  const account = async (label: string, ownerId?: string): Promise<{ customerId: string; records: Records }> => {
    const customerId = (await post('/customers', { name: `Account ${label}`, email: `${label}-${randomUUID()}@example.com`, ...(ownerId ? { ownerId } : {}) }))
      .id;
    const deals = (
      await post('/deals', { customerId, title: `deal ${label}`, amount: 5, currency: 'EUR', ownerId: users.other, expectedCloseDate: '2026-11-30' })
    ).id;
    const feedbackId = (await post('/feedback', { customerId, kind: 'question', channel: 'web', subject: 's', body: 'b' })).id;
    const activities = (await post(`/customers/${customerId}/activities`, { kind: 'note', subject: `note ${label}`, body: 'b' })).id;
    return { customerId, records: { deals, feedback: feedbackId, activities } };
  };
  const SORTS = {
    deals: ['-createdAt', 'expectedCloseDate', '-amount', '-updatedAt'],
    feedback: ['-submittedAt', 'resolutionDueAt', '-priority'],
    activities: ['-occurredAt'],
  };
  /** A command on the record, with a stale If-Match: 404 outside the scope, 409 inside it (nothing is appended either way). */
  const COMMANDS = { deals: ['stage', { stage: 'qualified' }], feedback: ['respond', { message: 'm' }], activities: ['complete', {}] } as const;
  /**
   * Whether the viewer's lists (in every sort) and record routes show each record; its lists, its
   * record route and the commands on it must agree.
   */
  const shown = async (viewer: Viewer, records: Records): Promise<Record<keyof Records, boolean>> => {
    const result = {} as Record<keyof Records, boolean>;
    for (const collection of ['deals', 'feedback', 'activities'] as const) {
      const id = records[collection];
      const status = (await get(`/${collection}/${id}`, viewer)).statusCode;
      for (const sort of SORTS[collection]) {
        const listed = json(await get(`/${collection}?limit=500&sort=${sort}`, viewer)).items.some((i: { id: string }) => i.id === id);
        expect(listed, `${viewer} ${collection} sorted ${sort} lists ${id} as GET answers ${status}`).toBe(status === 200);
      }
      const [action, payload] = COMMANDS[collection];
      const command = await h.app.inject({
        method: 'POST',
        url: `/${collection}/${id}/${action}`,
        payload,
        headers: { ...bearer[viewer], 'if-match': '"999"' },
      });
      expect(command.statusCode, `${viewer} POST /${collection}/${id}/${action} as GET answers ${status}: ${command.body.slice(0, 160)}`).toBe(
        status === 200 ? 409 : 404,
      );
      result[collection] = status === 200;
    }
    return result;
  };
  const everywhere = { deals: true, feedback: true, activities: true };
  const nowhere = { deals: false, feedback: false, activities: false };
  const assignOwner = (customerId: string, ownerId: string) => post(`/customers/${customerId}/owner`, { ownerId });
  const merge = async (primaryId: string, duplicateId: string) => {
    const { revision } = json(await get(`/customers/${primaryId}`, 'service'));
    return post(`/customers/${primaryId}/merge`, { duplicateId }, { ...admin(), 'if-match': `"${revision}"` });
  };

  it("an owner change moves the customer's existing records between scopes, both ways", async () => {
    const { customerId, records } = await account('handover', users.other);
    await projectionsSettled(h);
    expect(await shown('team', records)).toEqual(nowhere);
    expect(await shown('service', records)).toEqual(everywhere);
    await assignOwner(customerId, users.mate!);
    await projectionsSettled(h);
    expect(await shown('team', records)).toEqual(everywhere);
    expect(await shown('own', records)).toEqual(nowhere);
    await assignOwner(customerId, users.other!);
    await projectionsSettled(h);
    expect(await shown('team', records)).toEqual(nowhere);
  });

  it("a merge moves the duplicate's records to the primary's owner, also when the primary gets its owner after the merge", async () => {
    const primary = await account('primary', users.mate);
    const duplicate = await account('duplicate', users.other);
    await projectionsSettled(h);
    expect(await shown('team', primary.records)).toEqual(everywhere);
    expect(await shown('team', duplicate.records)).toEqual(nowhere);
    await merge(primary.customerId, duplicate.customerId);
    await projectionsSettled(h);
    expect(await shown('team', duplicate.records)).toEqual(everywhere);
    expect(await shown('own', duplicate.records)).toEqual(nowhere);

    // A chain: the duplicate's records follow whoever owns the end of it, whenever that owner comes.
    const unowned = (await post('/customers', { name: 'Account unowned', email: `unowned-${randomUUID()}@example.com` })).id;
    const later = await account('later', users.mate);
    await projectionsSettled(h);
    expect(await shown('team', later.records)).toEqual(everywhere);
    await merge(unowned, later.customerId);
    await projectionsSettled(h);
    expect(await shown('team', later.records)).toEqual(nowhere);
    await merge(primary.customerId, unowned);
    await projectionsSettled(h);
    expect(await shown('team', later.records)).toEqual(everywhere);
    await assignOwner(primary.customerId, users.other!);
    await projectionsSettled(h);
    expect(await shown('team', later.records)).toEqual(nowhere);
    expect(await shown('team', duplicate.records)).toEqual(nowhere);
  });

  it("a merged duplicate's own row stays its owner's, but its activities list shows only those still in the scope", async () => {
    // Found by a sales lead: the duplicate's owner read, through the duplicate, notes the primary's team wrote after the merge.
    const primary = await account('other-primary', users.other);
    const duplicate = await account('team-duplicate', users.mate);
    // A task assigned to someone in the scope stays in it after the merge, as on GET /activities/:id.
    const assigned = await post(`/customers/${duplicate.customerId}/activities`, { kind: 'task', subject: 'call back', assigneeId: users.mate });
    const listed = async () => {
      const res = await get(`/customers/${duplicate.customerId}/activities`, 'team');
      expect(res.statusCode, res.body).toBe(200);
      return json(res)
        .items.map((a: { id: string }) => a.id)
        .sort();
    };
    await projectionsSettled(h);
    expect(await listed()).toEqual([duplicate.records.activities, assigned.id].sort());
    await merge(primary.customerId, duplicate.customerId);
    await projectionsSettled(h);
    expect(await shown('team', duplicate.records)).toEqual(nowhere);
    expect((await get(`/customers/${duplicate.customerId}`, 'team')).statusCode).toBe(200);
    expect(await listed()).toEqual([assigned.id]);
  });

  it("a merged duplicate's orders and refunds follow the owner at the end of the chain, in the exports and for a refund", async () => {
    const withOrder = async (label: string, ownerId: string) => {
      const customerId = (await post('/customers', { name: `Chain ${label}`, email: `${label}-${randomUUID()}@example.com`, ownerId })).id;
      await post(`/customers/${customerId}/purchases`, { orderId: `chain-${label}`, amount: 50, currency: 'EUR', occurredAt: '2026-02-01T10:00:00Z' });
      return customerId;
    };
    const orderIds = async (url: string, viewer: Viewer) =>
      (await get(url, viewer)).body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { orderId: string; mergedInto: string | null })
        .filter((p) => p.orderId.startsWith('chain-'));
    // x (another team's) into y (a team-mate's), then y into z (another team's): x's order is z's.
    const x = await withOrder('x', users.other!);
    const y = await withOrder('y', users.mate!);
    const z = await withOrder('z', users.other!);
    await projectionsSettled(h);
    await merge(y, x);
    await post(`/customers/${x}/refunds`, { orderId: 'chain-x', refundId: 'chain-x-r', amount: 5, currency: 'EUR', reason: 'x before the second merge' });
    await projectionsSettled(h);
    await merge(z, y);
    await projectionsSettled(h);
    for (const kind of ['purchases', 'refunds'] as const) {
      expect(await orderIds(`/${kind}/export?format=ndjson`, 'team'), `team ${kind}`).toEqual([]);
      expect(await orderIds(`/${kind}/export?format=ndjson&customerId=${y}`, 'team'), `team ${kind} of y`).toEqual([]);
    }
    const all = await orderIds('/purchases/export?format=ndjson', 'service');
    expect(Object.fromEntries(all.map((p) => [p.orderId, p.mergedInto]))).toEqual({ 'chain-x': z, 'chain-y': z, 'chain-z': null });

    // A refund on a merged duplicate lowers its primary's revenue: the team owning the duplicate's row
    // but not the primary cannot record one (404, as for any customer it does not see).
    const p = await withOrder('p', users.mate!);
    const q = await withOrder('q', users.other!);
    await projectionsSettled(h);
    await merge(q, p);
    const before = await eventCount(h);
    const refund = await h.app.inject({
      method: 'POST',
      url: `/customers/${p}/refunds`,
      payload: { orderId: 'chain-p', refundId: 'chain-p-r', amount: 5, currency: 'EUR' },
      headers: bearer.team,
    });
    expect(refund.statusCode, refund.body).toBe(404);
    expect(await eventCount(h)).toBe(before);
    expect((await post(`/customers/${p}/refunds`, { orderId: 'chain-p', refundId: 'chain-p-r', amount: 5, currency: 'EUR' })).id).toBe(p);
  });
});

describe('during the rebuild after an upgrade', () => {
  it("keeps every list and record in the scope while the previous version's tables serve (last: it drops the new column)", async () => {
    await projectionsSettled(h);
    const read = h.schemas.read;
    await sql
      .raw(['deals', 'feedback', 'activities'].map((t) => `ALTER TABLE "${read}".${t} DROP COLUMN customer_owner_id CASCADE`).join('; '))
      .execute(h.database.db);
    for (const viewer of VIEWERS) {
      for (const collection of ['deals', 'feedback', 'activities'] as const) {
        const page = json(await get(`/${collection}?limit=500`, viewer));
        expect(
          ours(
            collection,
            page.items.map((i: { id: string }) => i.id),
          ),
          `${viewer} ${collection}`,
        ).toEqual(expectedIds(collection, viewer));
        for (const o of OWNERS)
          expect((await get(`/${collection}/${idOf[collection][o]}`, viewer)).statusCode, `${viewer} ${collection} of ${o}`).toBe(
            visibleTo[viewer].includes(o) ? 200 : 404,
          );
      }
      const total = json(await get('/pipeline?currency=CHF', viewer)).totals.find((t: { currency: string }) => t.currency === 'CHF');
      expect(total?.dealCount ?? 0, viewer).toBe(visibleTo[viewer].length);
    }
  });
});
