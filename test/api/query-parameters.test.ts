import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPEATED_PARAMETER } from '../../api/problems.ts';
import { expectProblem, startApi, type ApiHarness } from './support.ts';

/** Query and path parameters as an attacker spells them: numbers, repeats, arrays. */
let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_query_parameters');
});
afterAll(async () => h?.close());

const SAMPLE_ID = '6f1c2a0e-8b5d-4c1e-9a7f-2d3b4c5d6e7f';

interface Parameter {
  name: string;
  in: 'query' | 'path';
  schema: { type?: string; anyOf?: { type?: string }[] };
}

/** Every GET route of the OpenAPI document with its parameters. */
const getRoutes = async (): Promise<{ url: string; parameters: Parameter[] }[]> => {
  const doc = (await h.app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, { get?: { parameters?: Parameter[] } }> }>();
  return Object.entries(doc.paths)
    .filter(([, item]) => item.get)
    .map(([url, item]) => ({ url, parameters: item.get!.parameters ?? [] }));
};

const isNumeric = (p: Parameter) => p.schema.type === 'integer' || p.schema.type === 'number';

/** Values of path parameters that are not ids. */
const PATH_VALUES: Record<string, string> = { stream: `customer-${SAMPLE_ID}`, kind: 'customer' };

/** The URL with `{name}` path parameters filled (a number where the parameter is one, else an id). */
const concrete = (url: string, parameters: Parameter[], override: Record<string, string> = {}): string =>
  url.replace(
    /\{(\w+)\}/g,
    (_, name: string) => override[name] ?? PATH_VALUES[name] ?? (parameters.some((p) => p.name === name && isNumeric(p)) ? '1' : SAMPLE_ID),
  );

describe('numeric parameters', () => {
  it('take plain decimal numbers only: hex, exponents, spaces, signs, Infinity and empty values are a 400 naming the parameter', async () => {
    const routes = await getRoutes();
    const numeric = routes.flatMap((r) => r.parameters.filter(isNumeric).map((p) => ({ url: r.url, parameters: r.parameters, p })));
    // limit on every list, minRevenue, analytics filters and paging, a model version in the path...
    expect(numeric.length).toBeGreaterThan(20);
    const failures: string[] = [];
    for (const { url, parameters, p } of numeric) {
      for (const spelling of ['0x10', '1e1', '%205', '', 'Infinity', '+5', '5.', '.5', '0b1', '1_0']) {
        const target =
          p.in === 'path' ? concrete(url, parameters, { [p.name]: spelling === '' ? '%20' : spelling }) : `${concrete(url, parameters)}?${p.name}=${spelling}`;
        const res = await h.app.inject({ method: 'GET', url: target, headers: h.auth('admin') });
        const named = res.statusCode === 400 && (res.json<{ errors?: { field: string }[] }>().errors ?? []).some((e) => e.field === p.name);
        if (!named) failures.push(`${target} -> ${res.statusCode} ${res.body.slice(0, 160)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('read a decimal as its value', async () => {
    expect((await h.app.inject({ method: 'GET', url: '/customers?minRevenue=16&limit=007', headers: h.auth('admin') })).statusCode).toBe(200);
    expect((await h.app.inject({ method: 'GET', url: '/analytics/churn?minChurnScore=0.25&maxChurnScore=1', headers: h.auth('admin') })).statusCode).not.toBe(
      400,
    );
    const range = expectProblem(await h.app.inject({ method: 'GET', url: '/customers?limit=501', headers: h.auth('admin') }), 400, 'validation');
    expect(range.errors?.map((e) => e.field)).toEqual(['limit']);
  });
});

describe('a query parameter sent twice', () => {
  it('that takes one value is a 400 naming it, saying so, on every read route', async () => {
    const routes = await getRoutes();
    // A parameter whose schema also takes a list (the audit log's `type`) may be repeated.
    const single = routes.flatMap((r) =>
      r.parameters.filter((p) => p.in === 'query' && !(p.schema.anyOf ?? []).some((s) => s.type === 'array')).map((p) => ({ ...r, p })),
    );
    expect(single.length).toBeGreaterThan(60);
    const failures: string[] = [];
    for (const { url, parameters, p } of single) {
      const target = `${concrete(url, parameters)}?${p.name}=2&${p.name}=2`;
      const res = await h.app.inject({ method: 'GET', url: target, headers: h.auth('admin') });
      const errors = res.statusCode === 400 ? (res.json<{ errors?: { field: string; message: string }[] }>().errors ?? []) : [];
      if (!errors.some((e) => e.field === p.name && e.message === REPEATED_PARAMETER))
        failures.push(`${target} -> ${res.statusCode} ${res.body.slice(0, 200)}`);
    }
    expect(failures).toEqual([]);
    // A parameter that takes a list still takes it repeated.
    expect(
      (await h.app.inject({ method: 'GET', url: '/audit/events?type=CustomerRegistered&type=PurchaseRecorded', headers: h.auth('admin') })).statusCode,
    ).toBe(200);
  });
});

describe('a query parameter no route takes', () => {
  it('is a 400 naming it on every route of the API, those that take no parameters too', async () => {
    const routes = (await getRoutes()).filter(
      (r) => !['/health', '/ready', '/metrics', '/openapi.json', '/', '/console'].includes(r.url) && !r.url.startsWith('/docs'),
    );
    expect(routes.length).toBeGreaterThan(45);
    const failures: string[] = [];
    for (const { url, parameters } of routes) {
      // `limit` too: /admin/users?limit=1 answered every user, as if paged.
      for (const name of ['foo', ...(parameters.some((p) => p.name === 'limit') ? [] : ['limit'])]) {
        const target = `${concrete(url, parameters)}?${name}=1`;
        const res = await h.app.inject({ method: 'GET', url: target, headers: h.auth('admin') });
        const errors = res.statusCode === 400 ? (res.json<{ errors?: { field: string }[] }>().errors ?? []) : [];
        if (!errors.some((e) => e.field === name)) failures.push(`${target} -> ${res.statusCode} ${res.body.slice(0, 200)}`);
      }
    }
    expect(failures).toEqual([]);
    // A command route too.
    const command = await h.app.inject({
      method: 'POST',
      url: '/customers?dryRun=1',
      headers: h.auth('admin'),
      payload: { name: 'N', email: 'n@example.com' },
    });
    expect(expectProblem(command, 400).errors?.map((e) => e.field)).toEqual(['dryRun']);
  });
});

describe('time parameters', () => {
  // Found with ?asOf=2026-12-05T15:22:16 (no offset), 1899-12-31T00:00:00Z and 1700000000000, and
  // /audit/events?from=garbage: each a 400 whose only message was "Invalid input".
  it('say which forms and years they take when neither an ISO time nor a date is given', async () => {
    const message = 'an ISO time with an offset, e.g. 2026-06-30T23:59:59Z, or a date such as 2026-06-30, in the years 1900-2200';
    const refusals = async (url: string) => expectProblem(await h.app.inject({ method: 'GET', url, headers: h.auth('admin') }), 400).errors;
    for (const url of [
      `/customers/${SAMPLE_ID}?asOf=2026-12-05T15:22:16`,
      `/customers/${SAMPLE_ID}?asOf=1700000000000`,
      `/customers/${SAMPLE_ID}?asOf=2016-12-31T23:59:60Z`,
      '/audit/events?from=garbage',
      '/audit/events?to=2026-02-30',
    ]) {
      const [, name] = /[?&](\w+)=/.exec(url)!;
      expect(await refusals(url), url).toEqual([expect.objectContaining({ field: name, message })]);
    }
    // A time or a day of the right form outside the years is told that alone.
    for (const asOf of ['1899-12-31T00:00:00Z', '1899-12-31']) {
      expect(await refusals(`/customers/${SAMPLE_ID}?asOf=${asOf}`), asOf).toEqual([
        expect.objectContaining({ field: 'asOf', message: 'a time in the years 1900-2200' }),
      ]);
    }
  });
});

/** The upper end of a range parameter named as a pair, as the API pairs them (api/query-route.ts). */
const upperEnd = (name: string): string | undefined =>
  name === 'from' ? 'to' : name.endsWith('From') ? `${name.slice(0, -4)}To` : /^min[A-Z]/.test(name) ? `max${name.slice(3)}` : undefined;

/** Ordered and inverted values, tried in turn until the route takes the ordered pair. */
const RANGE_VALUES: [string, string][] = [
  ['5', '10'],
  ['2026-01-01T00:00:00Z', '2026-06-01T00:00:00Z'],
  ['2026-01-01', '2026-06-01'],
  ['2026-01', '2026-06'],
];

describe('range parameters', () => {
  // /customers?minRevenue=10&maxRevenue=5, /deals?expectedCloseFrom after expectedCloseTo and
  // /purchases/export?from after to answered 200 with nothing, where /pipeline and the analytics refused them.
  it('refuse an inverted range with a 400 naming one of its ends, on every GET route that takes a pair', async () => {
    const routes = await getRoutes();
    const failures: string[] = [];
    const tested: string[] = [];
    for (const { url, parameters } of routes) {
      for (const low of parameters) {
        const high = upperEnd(low.name);
        if (high === undefined || !parameters.some((p) => p.name === high)) continue;
        const base = concrete(url, parameters);
        const get = (from: string, to: string) =>
          h.app.inject({ method: 'GET', url: `${base}?${low.name}=${encodeURIComponent(from)}&${high}=${encodeURIComponent(to)}`, headers: h.auth('admin') });
        const pair = await (async () => {
          for (const [a, b] of RANGE_VALUES) if ((await get(a, b)).statusCode === 200) return [a, b] as const;
          return undefined;
        })();
        if (!pair) continue;
        tested.push(`${url} ${low.name}/${high}`);
        const inverted = await get(pair[1], pair[0]);
        const fields = inverted.statusCode === 400 ? (inverted.json<{ errors?: { field: string }[] }>().errors ?? []).map((e) => e.field) : [];
        if (!fields.some((f) => f === low.name || f === high))
          failures.push(`${url}?${low.name}=${pair[1]}&${high}=${pair[0]} -> ${inverted.statusCode} ${inverted.body.slice(0, 160)}`);
      }
    }
    expect(failures).toEqual([]);
    // The lists and exports above, the pipeline, the audit log and the analytics.
    expect(tested.length, tested.join('\n')).toBeGreaterThanOrEqual(12);
    expect(tested).toEqual(
      expect.arrayContaining(['/customers minRevenue/maxRevenue', '/deals expectedCloseFrom/expectedCloseTo', '/purchases/export from/to']),
    );
  });
});

describe('the audit log', () => {
  it('refuses a page size with a streamed answer, naming limit, and a type filter that names no type', async () => {
    for (const [url, accept] of [
      ['/audit/events?limit=2', 'text/csv'],
      ['/audit/events?limit=2&format=ndjson', '*/*'],
      [`/audit/streams/customer-${SAMPLE_ID}?limit=2&format=csv`, '*/*'],
    ] as const)
      expect(expectProblem(await h.app.inject({ method: 'GET', url, headers: { ...h.auth('admin'), accept } }), 400).errors?.map((e) => e.field)).toEqual([
        'limit',
      ]);
    // Pages of JSON keep their size, and streamed answers without one are every match.
    expect((await h.app.inject({ method: 'GET', url: '/audit/events?limit=2', headers: h.auth('admin') })).statusCode).toBe(200);
    expect((await h.app.inject({ method: 'GET', url: '/audit/events?format=csv', headers: h.auth('admin') })).statusCode).toBe(200);
    for (const type of [',', '%20', ',%20,'])
      expect(
        expectProblem(await h.app.inject({ method: 'GET', url: `/audit/events?type=${type}`, headers: h.auth('admin') }), 400).errors?.map((e) => e.field),
      ).toEqual(['type']);
  });
});
