import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKeyStore, ensureAdminKey, hashKey } from '../../api/auth/api-keys.ts';
import { buildApp } from '../../api/app.ts';
import { READY_REUSE_MS } from '../../api/routes/ops.ts';
import { migrateEventStore } from '../../eventstore/postgres/migrations.ts';
import { expectProblem, json, startApi, type ApiHarness } from './support.ts';
import { TEST_DATABASE_URL } from '../support/postgres.ts';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_infra');
});
afterAll(async () => h?.close());

describe('ops routes', () => {
  it('answers /health without a key', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/health' });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({ status: 'ok' });
  });

  it('answers a flood of /ready (no key, no rate limit) from one probe of the database, then probes again', async () => {
    let probes = 0;
    const store = new Proxy(h.store, {
      get: (target, name) => {
        const value = Reflect.get(target, name) as unknown;
        if (name === 'headPosition') return () => ((probes += 1), target.headPosition());
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const app = await h.crm.buildApi({ ...h.deps, store });
    try {
      const answers = await Promise.all(Array.from({ length: 200 }, () => app.inject({ method: 'GET', url: '/ready' })));
      expect(answers.map((r) => r.statusCode)).toEqual(answers.map(() => 200));
      expect(new Set(answers.map((r) => json<{ head: string }>(r).head)).size).toBe(1);
      expect(probes).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, READY_REUSE_MS + 50));
      expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
      expect(probes).toBe(2);
    } finally {
      await app.close();
    }
  });

  it('answers /ready 200 with every projection caught up', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/ready' });
    expect(res.statusCode).toBe(200);
    const body = json(res);
    expect(body.status).toBe('ready');
    expect(body.projections.map((p: { name: string }) => p.name)).toContain('customers');
  });

  it('says why a projection is behind when no worker holds its lease (every crm project stopped)', async () => {
    const behind = (owner: string | null) => ({ name: 'customers', position: 1n, eventsBehind: 24, secondsBehind: 37, state: 'running', owner });
    for (const [owner, cause] of [
      [null, true],
      ['worker-one', false],
    ] as const) {
      const app = await buildApp({ ...h.deps, readyMaxLagSeconds: 30, projections: { ...h.deps.projections, status: async () => [behind(owner)] } });
      try {
        const res = await app.inject({ method: 'GET', url: '/ready' });
        expect(res.statusCode).toBe(503);
        const reason = `projection customers is 37 s behind (bound 30 s)${cause ? ': no worker runs it (start crm project, or crm serve with projections inline)' : ''}`;
        expect(json(res).reasons).toEqual([reason]);
      } finally {
        await app.close();
      }
    }
  });

  it('names the worker holding the lease of a projection behind when it has not moved it past the bound, its name only with a key', async () => {
    // An older version's process held customers' lease and renewed it without running it: the read model froze.
    const stuck = {
      name: 'customers',
      position: 1n,
      eventsBehind: 24,
      secondsBehind: 34,
      state: 'running',
      owner: 'old-host-1',
      secondsSinceUpdate: 34.2,
    };
    const app = await buildApp({ ...h.deps, readyMaxLagSeconds: 30, projections: { ...h.deps.projections, status: async () => [stuck] } });
    try {
      const res = await app.inject({ method: 'GET', url: '/ready' });
      expect(res.statusCode).toBe(503);
      expect(json(res).reasons).toEqual([
        expect.stringMatching(
          /^projection customers is 34 s behind \(bound 30 s\): the worker holding its lease has not moved it for 34 s \(which one: GET \/audit\/projections\)$/,
        ),
      ]);
      const detail = json(await app.inject({ method: 'GET', url: '/audit/projections', headers: h.auth('admin') }));
      expect(detail.reasons).toEqual([
        expect.stringMatching(/^projection customers is 34 s behind \(bound 30 s\): the worker holding its lease \(old-host-1\) has not moved it for 34 s$/),
      ]);
    } finally {
      await app.close();
    }
  });

  it('stays ready with a projection stopped on a poison event (every replica reads it alike), naming it under warnings; a superseded one is not ready', async () => {
    // Stopped for two minutes, past the lag bound too: it stands still until an operator retries or skips.
    const stopped = (state: string) => ({
      name: 'customers',
      position: 41n,
      eventsBehind: 5,
      secondsBehind: 120,
      state,
      failedPosition: 42n,
      owner: 'worker-one',
    });
    const running = { name: 'deals', position: 46n, eventsBehind: 0, secondsBehind: 0, state: 'running', owner: 'worker-one' };
    for (const state of ['failed', 'stopped']) {
      const app = await buildApp({ ...h.deps, readyMaxLagSeconds: 30, projections: { ...h.deps.projections, status: async () => [stopped(state), running] } });
      try {
        const res = await app.inject({ method: 'GET', url: '/ready' });
        expect(res.statusCode, res.body).toBe(200);
        expect(json(res)).toMatchObject({
          status: 'ready',
          reasons: [],
          warnings: [`projection customers is ${state} at position 42 (details: GET /audit/projections or crm projections list)`],
        });
        expect(json(res).projections[0]).toMatchObject({ name: 'customers', state, failedPosition: '42' });
        const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
        if (state === 'failed') expect(metrics).toContain('crm_projection_failed{projection="customers",position="42"} 1');
      } finally {
        await app.close();
      }
    }
    // This process is older than the one that rebuilt the read model: stop it, so it is out of the balancer.
    const superseded = { ...running, state: 'superseded', lastError: 'another version of the CRM rebuilt its read model' };
    const app = await buildApp({
      ...h.deps,
      readyMaxLagSeconds: 30,
      projections: { ...h.deps.projections, status: async () => [stopped('failed'), superseded] },
    });
    try {
      const res = await app.inject({ method: 'GET', url: '/ready' });
      expect(res.statusCode).toBe(503);
      expect(json(res).reasons).toEqual(['projection deals is superseded: another version of the CRM rebuilt its read model']);
      expect(json(res).warnings).toHaveLength(1);
    } finally {
      await app.close();
    }
  });

  it('shows committed events held back by a transaction left open on the server, in /ready and /metrics, where the lag reads 0', async () => {
    const open = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await open.connect();
    try {
      // What a stalled `crm rebuild` link leaves on the server: a transaction that has a transaction id and stays open.
      await open.query('BEGIN');
      await open.query('SELECT pg_current_xact_id()');
      const created = await h.app.inject({
        method: 'POST',
        url: '/customers',
        headers: h.auth('admin'),
        payload: { name: 'Held Back', email: `held-${Date.now()}@example.com` },
      });
      expect(created.statusCode).toBe(201);
      await new Promise((resolve) => setTimeout(resolve, 1_200 + READY_REUSE_MS));
      const ready = json(await h.app.inject({ method: 'GET', url: '/ready' }));
      expect(ready.heldBack.events).toBeGreaterThanOrEqual(1);
      expect(ready.heldBack.seconds).toBeGreaterThanOrEqual(1);
      const metrics = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(Number(/^crm_events_held_back (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
      expect(Number(/^crm_events_held_back_seconds (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
      await open.query('COMMIT');
      const deadline = Date.now() + 30_000;
      let after = ready;
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, READY_REUSE_MS + 50));
        after = json(await h.app.inject({ method: 'GET', url: '/ready' }));
        if (after.heldBack.events === 0) break;
      }
      expect(after.heldBack).toEqual({ events: 0, seconds: 0 });
    } finally {
      await open.end();
    }
  });

  it('serves Prometheus metrics with request counts by route and status', async () => {
    await h.app.inject({ method: 'GET', url: '/health' });
    const res = await h.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/crm_http_requests_total\{method="GET",route="\/health",status="200"\} \d+/);
    expect(res.body).toContain('crm_http_request_duration_seconds_bucket');
  });

  it('publishes an OpenAPI 3.1 document with the command routes and problem schema', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = json(res);
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/customers', '/customers/{id}/purchases', '/deals/{id}/won', '/admin/api-keys']));
    const purchase = doc.paths['/customers/{id}/purchases'].post;
    expect(purchase.requestBody.content['application/json'].schema.properties).toHaveProperty('amount');
    // A business time's pattern takes the offsets the server takes (±15:59), not zod's ±23:59.
    const occurredAt = new RegExp(purchase.requestBody.content['application/json'].schema.properties.occurredAt.pattern);
    expect(['2026-01-01T10:00:00+15:59', '2026-01-01T10:00:00-12:00', '2026-01-01T10:00:00.5Z'].filter((t) => !occurredAt.test(t))).toEqual([]);
    expect(occurredAt.test('2026-01-01T10:00:00+16:00')).toBe(false);
    expect(doc.components.schemas).toHaveProperty('Problem');
    // A validation error's entries say where the field was sent, as every 400 does.
    const problem = doc.components.schemas.Problem;
    expect(Object.keys(problem.properties.errors.items.properties)).toEqual(['field', 'in', 'message']);
    // Every error of every route is documented as application/problem+json, as it is sent.
    const declaredJson: string[] = [];
    for (const [path, methods] of Object.entries<Record<string, { responses?: Record<string, { content?: Record<string, unknown> }> }>>(doc.paths))
      for (const [method, operation] of Object.entries(methods))
        for (const [status, response] of Object.entries(operation.responses ?? {}))
          if (Number(status) >= 400 && response.content && !('application/problem+json' in response.content)) declaredJson.push(`${method} ${path} ${status}`);
    // /ready's 503 is its own report (what is not ready), sent as JSON.
    expect(declaredJson).toEqual(['get /ready 503']);
    // Every route that takes a key says what a missing key and a spent rate limit answer.
    const undeclared: string[] = [];
    for (const [path, methods] of Object.entries<Record<string, { security?: unknown; responses?: Record<string, unknown> }>>(doc.paths))
      for (const [method, operation] of Object.entries(methods))
        if (!operation.security) for (const status of ['401', '429']) if (!operation.responses?.[status]) undeclared.push(`${method} ${path} ${status}`);
    expect(undeclared).toEqual([]);
    // The probes need no key.
    for (const path of ['/health', '/ready', '/metrics']) expect(doc.paths[path].get.security, path).toEqual([]);
    expect(doc.paths['/customers'].get.security).toBeUndefined();
  });

  it('names every operation once, and declares the headers its answers really carry', async () => {
    const doc = json(await h.app.inject({ method: 'GET', url: '/openapi.json' }));
    type Response = { headers?: Record<string, { $ref?: string; schema?: { type?: string } }>; content?: Record<string, unknown> };
    type Operation = { operationId?: string; responses: Record<string, Response>; requestBody?: { content: Record<string, unknown> } };
    const operations = Object.entries<Record<string, Operation>>(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({ at: `${method} ${path}`, operation })),
    );
    expect(operations.length).toBeGreaterThan(100);
    const unnamed = operations.filter(({ operation }) => !/^[a-z][A-Za-z]+$/.test(operation.operationId ?? '')).map(({ at }) => at);
    expect(unnamed).toEqual([]);
    const ids = operations.map(({ operation }) => operation.operationId);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    const op = (method: string, path: string): Operation => doc.paths[path][method];
    expect(op('post', '/customers/{id}/purchases').operationId).toBe('recordPurchase');
    expect(op('get', '/customers').operationId).toBe('listCustomers');
    // The revenue range says which currency it compares, and the headline currency can be asked for.
    const parameters = (doc.paths['/customers'].get.parameters as { name: string; description?: string }[]).filter((p) =>
      ['minRevenue', 'maxRevenue', 'currency'].includes(p.name),
    );
    expect(parameters.map((p) => [p.name, p.description])).toEqual([
      ['currency', expect.stringContaining('Headline currency')],
      ['minRevenue', expect.stringContaining('headline `currency`, not the base currency')],
      ['maxRevenue', expect.stringContaining('headline `currency`, not the base currency')],
    ]);

    /** The headers of a real answer that the document declares for it (case as HTTP ignores it). */
    const undeclared = (operation: Operation, status: number, headers: Record<string, unknown>, names: string[]): string[] => {
      const declared = Object.keys(operation.responses[String(status)]?.headers ?? {}).map((name) => name.toLowerCase());
      for (const name of names) expect(headers[name], `${operation.operationId} ${status} sends ${name}`).toBeDefined();
      return names.filter((name) => !declared.includes(name));
    };
    const created = await h.app.inject({
      method: 'POST',
      url: '/customers',
      headers: h.auth('sales'),
      payload: { name: 'Header Check', email: `headers-${Date.now()}@example.com` },
    });
    expect(created.statusCode).toBe(201);
    expect(
      undeclared(op('post', '/customers'), 201, created.headers, [
        'etag',
        'location',
        'x-request-id',
        'ratelimit-limit',
        'ratelimit-remaining',
        'ratelimit-reset',
      ]),
    ).toEqual([]);
    const read = await h.app.inject({
      method: 'GET',
      url: `${created.headers.location as string}?waitFor=${json<{ position: string }>(created).position}`,
      headers: h.auth('sales'),
    });
    expect(read.statusCode).toBe(200);
    expect(undeclared(op('get', '/customers/{id}'), 200, read.headers, ['etag', 'x-request-id'])).toEqual([]);
    const purchase = await h.app.inject({
      method: 'POST',
      url: `${created.headers.location as string}/purchases`,
      headers: h.auth('sales'),
      payload: { orderId: 'header-check-1', amount: 10, currency: 'EUR' },
    });
    expect(undeclared(op('post', '/customers/{id}/purchases'), 200, purchase.headers, ['etag'])).toEqual([]);
    const health = await h.app.inject({ method: 'GET', url: '/health' });
    expect(health.headers['ratelimit-limit']).toBeUndefined();
    expect(Object.keys(op('get', '/health').responses['200']!.headers ?? {})).toEqual(['X-Request-Id']);
    for (const [method, path] of [
      ['post', '/customers'],
      ['get', '/customers'],
    ])
      for (const status of ['429', '503']) expect(op(method!, path!).responses[status]!.headers, `${method} ${path} ${status}`).toHaveProperty('Retry-After');
    expect(doc.components.headers['Retry-After'].schema.type).toBe('integer');
    // Each header is a Header Object: a reference, or a schema of a type (not a schema wrapped twice).
    const malformed = operations.flatMap(({ at, operation }) =>
      Object.entries(operation.responses).flatMap(([status, response]) =>
        Object.entries(response.headers ?? {})
          .filter(([, header]) => header.$ref === undefined && typeof header.schema?.type !== 'string')
          .map(([name]) => `${at} ${status} ${name}`),
      ),
    );
    expect(malformed).toEqual([]);
    // If-Match as each command takes it: required where a missing one is a 428, absent from creations.
    const ifMatch = (method: string, path: string) =>
      (doc.paths[path][method].parameters as { in: string; name: string; required?: boolean }[]).find((p) => p.in === 'header' && p.name === 'if-match');
    expect(ifMatch('patch', '/customers/{id}')?.required).toBe(true);
    expect(ifMatch('post', '/customers/{id}/purchases')?.required ?? false).toBe(false);
    expect(ifMatch('post', '/customers')).toBeUndefined();
    expect(ifMatch('post', '/customers/{id}/activities')).toBeUndefined();
    expectProblem(await h.app.inject({ method: 'PATCH', url: created.headers.location as string, headers: h.auth('sales'), payload: { company: 'x' } }), 428);
    // /ready's 503 is its own report: it declares no Retry-After, as it sends none.
    expect(op('get', '/ready').responses['503']!.headers).not.toHaveProperty('Retry-After');
    // A stale If-Match's 409 names the current revision in its ETag; a creation takes no If-Match.
    const stale = await h.app.inject({
      method: 'POST',
      url: `${created.headers.location as string}/purchases`,
      headers: { ...h.auth('sales'), 'if-match': '"0"' },
      payload: { orderId: 'header-check-2', amount: 10, currency: 'EUR' },
    });
    expect(undeclared(op('post', '/customers/{id}/purchases'), 409, stale.headers, ['etag'])).toEqual([]);
    expect(op('post', '/customers').responses['409']?.headers ?? {}).not.toHaveProperty('ETag');
    // Exports answer a file: their 200 names its media types and the attachment header.
    for (const path of ['/customers/export', '/audit/events/export']) {
      const exported = op('get', path).responses['200']!;
      expect(Object.keys(exported.content ?? {}), path).toEqual(expect.arrayContaining(['text/csv', 'application/x-ndjson']));
      expect(exported.headers, path).toHaveProperty('Content-Disposition');
    }
    // The import reads its body as a stream: no schema validates it, yet the description says what to send.
    const upload = op('post', '/imports');
    expect(Object.keys(upload.requestBody!.content)).toEqual(expect.arrayContaining(['application/x-ndjson', 'text/csv']));
    expect(Object.keys(upload.responses['202']!.headers ?? {})).toContain('Location');
  });

  it('serves Swagger UI at /docs', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
  });

  it('serves the web console at /, sends /console, /console/ and /console/index.html there, and answers an asset folder with 404', async () => {
    const page = await h.app.inject({ method: 'GET', url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<title>CRM console</title>');
    for (const url of ['/console', '/console/', '/console/index.html', '/console/?x=1']) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await h.app.inject({ method, url });
        expect(res.statusCode, `${method} ${url}`).toBe(302);
        expect(res.headers.location, `${method} ${url}`).toBe('/');
      }
    }
    const asset = /src="(\/console\/[^"]+)"/.exec(page.body)?.[1];
    expect((await h.app.inject({ method: 'GET', url: asset! })).statusCode).toBe(200);
    for (const url of ['/console/assets/', '/console/assets', '/console/missing.js', '/console/../package.json', '/console/%2e%2e/package.json']) {
      const res = await h.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect(res.headers['content-type'], url).toMatch(/^application\/problem\+json/);
    }
  });

  it('echoes the request id and sets security headers', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'req-123' } });
    expect(res.headers['x-request-id']).toBe('req-123');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const generated = await h.app.inject({ method: 'GET', url: '/health' });
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers a non-JSON body with 415 and an oversized one with 413, as problems', async () => {
    expectProblem(
      await h.app.inject({ method: 'POST', url: '/admin/api-keys', headers: { ...h.auth('admin'), 'content-type': 'text/plain' }, payload: 'name=x' }),
      415,
      'unsupported-media-type',
    );
    expectProblem(
      await h.app.inject({
        method: 'POST',
        url: '/admin/api-keys',
        headers: { ...h.auth('admin'), 'content-type': 'application/json' },
        payload: JSON.stringify({ name: 'x'.repeat(2_000_000), role: 'sales' }),
      }),
      413,
      'payload-too-large',
    );
  });

  it('answers unknown routes with a 404 problem', async () => {
    expectProblem(await h.app.inject({ method: 'GET', url: '/nope' }), 404, 'not-found');
  });
});

describe('authentication', () => {
  it('refuses a missing, malformed or unknown key with 401 and WWW-Authenticate', async () => {
    const missing = await h.app.inject({ method: 'GET', url: '/admin/api-keys' });
    expectProblem(missing, 401, 'unauthenticated');
    expect(missing.headers['www-authenticate']).toMatch(/^Bearer/);
    expectProblem(await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: { authorization: 'Basic abc' } }), 401);
    expectProblem(await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: { authorization: 'Bearer crm_not-a-real-key-at-all' } }), 401);
  });

  it('creates a key shown once, stores only its hash, and revokes it', async () => {
    const created = await h.app.inject({
      method: 'POST',
      url: '/admin/api-keys',
      headers: h.auth('admin'),
      payload: { name: 'reporting bot', role: 'analyst' },
    });
    expect(created.statusCode).toBe(201);
    const { key, id, role } = json(created);
    expect(role).toBe('analyst');
    expect(key).toMatch(/^crm_[A-Za-z0-9_-]{43}$/);
    const row = await h.database.db.withSchema(h.schemas.events).selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    expect(row.hash).toBe(hashKey(key));
    expect(JSON.stringify(row)).not.toContain(key);

    const list = json(await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: h.auth('admin') }));
    expect(list.items.find((k: { id: string }) => k.id === id)).toMatchObject({ name: 'reporting bot', revokedAt: null });
    expect(JSON.stringify(list)).not.toContain(key);

    expect(
      (await h.app.inject({ method: 'GET', url: '/customers/00000000-0000-4000-8000-000000000000/timeline', headers: { authorization: `Bearer ${key}` } }))
        .statusCode,
    ).not.toBe(401);
    const revoked = await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${id}`, headers: h.auth('admin') });
    expect(revoked.statusCode).toBe(200);
    expect(json(revoked).revokedAt).not.toBeNull();
    expectProblem(await h.app.inject({ method: 'GET', url: '/deals', headers: { authorization: `Bearer ${key}` } }), 401);
    expectProblem(await h.app.inject({ method: 'DELETE', url: '/admin/api-keys/00000000-0000-4000-8000-000000000000', headers: h.auth('admin') }), 404);
  });

  it('records who created and who revoked a key, which an auditor can list (keys are not events: this is their trail)', async () => {
    const adminKeyId = (await h.app.keys.list()).find((k) => k.name === 'test admin')!.id;
    const created = json(
      await h.app.inject({ method: 'POST', url: '/admin/api-keys', headers: h.auth('admin'), payload: { name: 'shadow admin', role: 'admin' } }),
    );
    expect(created).toMatchObject({ createdBy: `api-key:${adminKeyId}`, revokedBy: null });
    const revoked = json(await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${created.id}`, headers: h.auth('admin') }));
    expect(revoked).toMatchObject({ createdBy: `api-key:${adminKeyId}`, revokedBy: `api-key:${adminKeyId}` });
    // Revoked again by someone else: the first revocation's actor and time stay.
    const other = await h.app.keys.create({ name: 'second admin', role: 'admin', createdBy: 'test' });
    const again = json(await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${created.id}`, headers: { authorization: `Bearer ${other.key}` } }));
    expect(again).toMatchObject({ revokedBy: `api-key:${adminKeyId}`, revokedAt: revoked.revokedAt });
    const listed = await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: h.auth('auditor') });
    expect(listed.statusCode).toBe(200);
    expect(json(listed).items.find((k: { id: string }) => k.id === created.id)).toMatchObject({
      name: 'shadow admin',
      createdBy: `api-key:${adminKeyId}`,
      revokedBy: `api-key:${adminKeyId}`,
    });
    expect(JSON.stringify(json(listed))).not.toContain(created.key);
    // The auditor reads; it neither creates nor revokes.
    expectProblem(await h.app.inject({ method: 'POST', url: '/admin/api-keys', headers: h.auth('auditor'), payload: { name: 'x', role: 'sales' } }), 403);
    expectProblem(await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${other.id}`, headers: h.auth('auditor') }), 403);
    expectProblem(await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: h.auth('analyst') }), 403);
    await h.app.keys.revoke(other.id, 'test');
  });

  it('refuses to revoke the last live admin key', async () => {
    const keys = json(await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: h.auth('admin') })).items as {
      id: string;
      role: string;
      revokedAt: string | null;
    }[];
    const admins = keys.filter((k) => k.role === 'admin' && k.revokedAt === null);
    expect(admins).toHaveLength(1);
    const problem = expectProblem(
      await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${admins[0]!.id}`, headers: h.auth('admin') }),
      409,
      'invalid-state',
    );
    expect(problem.code).toBe('api_key.last_admin');
  });

  it('validates key creation and names the failing fields', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/admin/api-keys', headers: h.auth('admin'), payload: { name: '', role: 'wizard', extra: 1 } });
    const problem = expectProblem(res, 400, 'validation');
    expect(problem.errors?.map((e) => e.field).sort()).toEqual(['extra', 'name', 'role']);
  });

  it('refuses non-admin roles on admin routes with 403 (the auditor only lists keys)', async () => {
    for (const role of ['sales', 'analyst'] as const) {
      const problem = expectProblem(await h.app.inject({ method: 'GET', url: '/admin/api-keys', headers: h.auth(role) }), 403, 'forbidden');
      expect(problem.detail).toContain(role);
    }
    for (const role of ['sales', 'analyst', 'auditor'] as const) {
      const problem = expectProblem(await h.app.inject({ method: 'GET', url: '/admin/users', headers: h.auth(role) }), 403, 'forbidden');
      expect(problem.detail).toContain(role);
    }
  });

  it('ensureAdminKey generates one key on first start, none later, and imports CRM_ADMIN_KEY', async () => {
    const schema = `${h.schemas.events}_boot`;
    await migrateEventStore(h.database.db, schema, { engineTables: false });
    const keys = createApiKeyStore(h.database.db, { schema });
    const first = await ensureAdminKey(keys);
    expect(first.generatedKey).toMatch(/^crm_/);
    expect(await ensureAdminKey(keys)).toEqual({});
    expect(first.record).toMatchObject({ createdBy: 'crm (first start)', revokedBy: null });
    expect(await keys.authenticate(first.generatedKey!)).toMatchObject({ role: 'admin' });
    const given = 'operator-chosen-admin-key-0123456789';
    const imported = await ensureAdminKey(keys, { adminKey: given });
    expect(imported.generatedKey).toBeUndefined();
    await ensureAdminKey(keys, { adminKey: given });
    expect((await keys.list()).filter((k) => k.role === 'admin')).toHaveLength(2);
    expect(await keys.authenticate(given)).toMatchObject({ role: 'admin' });
  });
});
