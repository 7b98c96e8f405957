import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ruleFor } from '../../api/roles.ts';
import { commandTargets, roleFor, type Target } from './command-targets.ts';
import { fuzzSeed, unicodeText } from '../support/fuzz.ts';
import { eventCount, startApi, type ApiHarness } from './support.ts';

const seed = fuzzSeed('test/api/fuzz.test.ts');

let h: ApiHarness;
let customerId: string;
beforeAll(async () => {
  h = await startApi('api_fuzz', { waitForTimeoutMs: 200 });
  const res = await h.app.inject({ method: 'POST', url: '/customers', headers: h.auth('admin'), payload: { name: 'Fuzz Target', email: 'fuzz@example.com' } });
  customerId = JSON.parse(res.body).id;
});
afterAll(async () => h?.close());

const targets = commandTargets(() => customerId);

const fieldsOf = (t: Target) => Object.keys(t.payload.shape).filter((name) => name !== t.idField);
const schemaOf = (t: Target, field: string) => t.payload.shape[field] as z.ZodType;

const wrongValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  unicodeText({ maxLength: 30 }),
  fc.string({ unit: 'binary', minLength: 10_001, maxLength: 12_000 }),
  fc.constantFrom('2026-13-45', '2026-02-30T25:61:00Z', 'yesterday', '', 'not-a-uuid', '00000000-0000-0000-0000-00000000000g', '-1', 'EURO', 'eur'),
  fc.constantFrom(-1, -0.01, -1e12, 1e300, 0.00001, Number.MAX_SAFE_INTEGER),
  fc.array(unicodeText(), { maxLength: 3 }),
  fc.dictionary(unicodeText({ maxLength: 5 }), unicodeText({ maxLength: 5 }), { maxKeys: 3 }),
);

/** A value as the server receives it: bodies travel as JSON. */
const asSent = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

/** A body with exactly one kind of defect, guaranteed invalid for the route, and the field the 400 must name. */
const badBody = (t: Target): fc.Arbitrary<[unknown, string]> => {
  const fields = fieldsOf(t);
  const required = fields.filter((name) => !schemaOf(t, name).safeParse(undefined).success);
  const arbitraries: fc.Arbitrary<[unknown, string]>[] = [
    // Not an object at all.
    fc.oneof(fc.integer(), unicodeText(), fc.boolean(), fc.array(fc.anything(), { maxLength: 3 })).map((body): [unknown, string] => [body, 'body']),
    // An unknown field.
    unicodeText({ minLength: 1, maxLength: 40 })
      .filter((name) => !fields.includes(name) && name !== 'id' && name !== t.idField && !['__proto__', 'constructor', 'prototype'].includes(name))
      .chain((name) => wrongValue.map((value): [unknown, string] => [{ ...t.valid(), [name]: value }, name])),
  ];
  if (fields.length > 0) {
    // One field with a value its schema refuses (wrong type, huge string, bad date, negative amount, invalid UUID, ...).
    arbitraries.push(
      fc.constantFrom(...fields).chain((field) =>
        wrongValue
          // Judged as sent: JSON turns NaN and ±Infinity into null, which a nullable field accepts.
          .map(asSent)
          .filter((value) => value !== undefined && !schemaOf(t, field).safeParse(value).success)
          .map((value): [unknown, string] => [{ ...t.valid(), [field]: value }, field]),
      ),
    );
  }
  if (required.length > 0) {
    // A required field missing.
    arbitraries.push(
      fc.constantFrom(...required).map((field): [unknown, string] => {
        const body = t.valid();
        delete body[field];
        return [body, field];
      }),
    );
  }
  return fc.oneof(...arbitraries);
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const pathId = fc.oneof(fc.uuid(), fc.constantFrom('not-a-uuid', '123', '%20', 'x'.repeat(300)));

describe('fuzzing every command route', () => {
  it('covers every command route the app registers', () => {
    const registered = h.app.routeList
      // Not commands: administration, model fits, audit jobs, webhook subscriptions and bulk imports have
      // their own validation tests, and the hostile-input corpus sends every write route broken bodies.
      .filter((r) => (r.method === 'POST' || r.method === 'PATCH') && !/^\/(admin|analytics|audit|bench|webhooks|imports)/.test(r.url))
      .map((r) => `${r.method} ${r.url}`)
      .sort();
    expect(targets.map((t) => `${t.method} ${t.url}`).sort()).toEqual(registered);
  });

  for (const target of targets) {
    it(`${target.method} ${target.url}: bad input is a 4xx problem and appends nothing`, async () => {
      const stored = await eventCount(h);
      const role = roleFor(target);
      await fc.assert(
        fc.asyncProperty(badBody(target), pathId, fc.option(fc.constantFrom('"0"', 'nonsense', '*')), async ([body, field], id, ifMatch) => {
          const url = target.url.replace(':id', encodeURIComponent(id));
          const res = await h.app.inject({
            method: target.method,
            url,
            headers: { ...h.auth(role), 'content-type': 'application/json', ...(ifMatch ? { 'if-match': ifMatch } : {}) },
            payload: JSON.stringify(body),
          });
          if (res.statusCode < 400 || res.statusCode >= 500)
            throw new Error(`${res.statusCode} for ${JSON.stringify(body).slice(0, 300)} at ${url}: ${res.body.slice(0, 300)}`);
          expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
          // A `__proto__` key anywhere makes the whole body unreadable (fastify's secure JSON parser): `malformed`, no field.
          const prototypeKey = res.statusCode === 400 && JSON.parse(res.body).type.endsWith('/malformed') && JSON.stringify(body).includes('"__proto__":');
          // With a valid path id, the 400 names the defective field.
          if (res.statusCode === 400 && UUID.test(id) && !prototypeKey) {
            const named = (JSON.parse(res.body).errors ?? []).map((e: { field: string }) => e.field);
            if (!named.some((f: string) => f === field || f.startsWith(`${field}.`))) {
              throw new Error(`400 does not name ${field}: ${res.body.slice(0, 300)}`);
            }
          }
        }),
        { numRuns: 40, seed },
      );
      expect(await eventCount(h)).toBe(stored);
    });
  }
});

describe('If-Match on every command route that requires it', () => {
  for (const target of targets.filter((t) => ruleFor(t.method, t.url).ifMatch === 'required')) {
    it(`${target.method} ${target.url}: 428 without If-Match, 404 with one on a record that does not exist`, async () => {
      const stored = await eventCount(h);
      const url = target.url.replace(':id', randomUUID());
      const headers = { ...h.auth(roleFor(target)), 'content-type': 'application/json' };
      const missing = await h.app.inject({ method: target.method, url, headers, payload: JSON.stringify(target.valid()) });
      expect(missing.statusCode, missing.body).toBe(428);
      const absent = await h.app.inject({ method: target.method, url, headers: { ...headers, 'if-match': '"3"' }, payload: JSON.stringify(target.valid()) });
      expect(absent.statusCode, absent.body).toBe(404);
      expect(await eventCount(h)).toBe(stored);
    });
  }
});

describe('fuzzing the query routes', () => {
  const queryKeys = [
    'limit',
    'cursor',
    'waitFor',
    'sort',
    'search',
    'status',
    'tag',
    'minRevenue',
    'stage',
    'breached',
    'asOf',
    'order',
    'ownerId',
    'customerId',
    'bogus',
  ];
  const queryValue = fc.oneof(
    unicodeText({ maxLength: 20 }),
    fc.integer().map(String),
    fc.constantFrom('-1', '0', '1e309', 'NaN', '99999999999999999999999', 'true', '2026-13-01', '', '%', '[]', '{"a":1}'),
  );
  it('never answers a 5xx to any query string on any read route', async () => {
    const routes = h.app.routeList.filter((r) => r.method === 'GET' && !r.url.startsWith('/docs') && r.url !== '/metrics');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes.map((r) => r.url)),
        fc.dictionary(fc.constantFrom(...queryKeys), queryValue, { maxKeys: 4 }),
        fc.oneof(fc.uuid(), fc.constantFrom('x', 'customer-abc', '00000000-0000-0000-0000-000000000000')),
        async (url, query, id) => {
          const path = url.replace(/:[a-zA-Z]+/g, id);
          const search = new URLSearchParams(query).toString();
          const res = await h.app.inject({ method: 'GET', url: `${path}${search ? `?${search}` : ''}`, headers: h.auth('admin') });
          if (res.statusCode >= 500 && !(res.statusCode === 503 && query.waitFor !== undefined)) {
            throw new Error(`${res.statusCode} for ${path}?${search}: ${res.body.slice(0, 300)}`);
          }
        },
      ),
      { numRuns: 300, seed },
    );
  });
});
