import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importEnded, projectionsSettled, startApi, type ApiHarness } from './support.ts';
import { storedEvents } from '../support/events.ts';

/** `GET /customers/export?delimiter=;&bom=true` (and the other kinds'): the file a German or French Excel opens, over the real API. */
let api: ApiHarness;

const send = (method: 'GET' | 'POST', url: string, payload?: object | string, headers: Record<string, string> = {}) =>
  api.app.inject({ method, url, headers: { ...api.auth('admin'), ...headers }, ...(payload ? { payload } : {}) });

/** The cells Excel makes of a file's text in a locale whose list separator is `;` or `,`: split there and at line ends, quotes or not. */
const cellsASpreadsheetSplits = (text: string): string[] => text.split(/[,;\t\r\n]/).map((cell) => cell.replace(/^"+/, ''));
const runsAsFormula = (cell: string): boolean => /^[=+\-@\t\r]/.test(cell) && !/^-\d+([.,]\d+)?$/.test(cell);

/** `POST /imports?kind=` of a CSV body, once it has ended. */
const importCsv = async (kind: string, csv: string) => {
  const started = await send('POST', `/imports?kind=${kind}`, csv, { 'content-type': 'text/csv' });
  expect(started.statusCode, started.body).toBe(202);
  return importEnded(api, started.json().id);
};

beforeAll(async () => {
  api = await startApi('api_exports_sheet');
  // Imported, so that the export imports back as rows already present.
  const customers = await importCsv('customers', `name,email,tags,registered_at\n"Eve;=cmd|' /C calc'!A0;",eve@sheet.example,vip;de,2020-01-02\n`);
  expect(customers.counts).toMatchObject({ imported: 1, rejected: 0 });
  const feedback = await importCsv(
    'feedback',
    'feedback_id,customer_email,kind,subject,body,submitted_at\n6f1d0c0e-0000-4000-8000-000000000061,eve@sheet.example,complaint,Rechnung,"Bitte prüfen\n=1+1;",2020-02-01\n',
  );
  expect(feedback.counts).toMatchObject({ imported: 1, rejected: 0 });
  await projectionsSettled(api);
}, 120_000);

afterAll(async () => {
  await api?.close();
});

describe('an export for a spreadsheet separated by semicolons', () => {
  it('starts with a byte order mark, separates by semicolons, starts no formula however Excel splits it, and imports back appending nothing', async () => {
    for (const kind of ['customers', 'feedback']) {
      const response = await send('GET', `/${kind}/export?delimiter=;&bom=true`);
      expect(response.statusCode, response.body).toBe(200);
      expect(response.headers['content-type']).toContain('text/csv');
      expect(response.body.startsWith('\uFEFFid;')).toBe(true);
      expect(cellsASpreadsheetSplits(response.body).filter(runsAsFormula), kind).toEqual([]);
      const before = (await storedEvents(api.store)).length;
      const job = await importCsv(kind, response.body);
      expect(job.counts, JSON.stringify(job.rejectedRows)).toEqual({ kind, rows: 1, imported: 1, alreadyPresent: 1, rejected: 0 });
      expect((await storedEvents(api.store)).length, kind).toBe(before);
    }
    const customers = (await send('GET', '/customers/export?delimiter=%3B')).body;
    expect(customers).toContain(`;"Eve;'=cmd|' /C calc'!A0;";`);
    expect(customers).toContain(';"vip;de";');
  });

  it('refuses a delimiter it does not write, and a CSV layout asked of NDJSON, naming the parameter', async () => {
    const tab = await send('GET', '/customers/export?delimiter=%09');
    expect(tab.statusCode).toBe(400);
    expect(tab.body).toContain('delimiter');
    for (const [query, field] of [
      ['format=ndjson&delimiter=;', 'delimiter'],
      ['format=ndjson&bom=true', 'bom'],
    ]) {
      const response = await send('GET', `/customers/export?${query}`);
      expect(response.statusCode, query).toBe(400);
      expect(response.json().errors, query).toEqual([{ field, in: 'query', message: 'lays out a CSV answer; this one is NDJSON' }]);
    }
    const byAccept = await send('GET', '/customers/export?bom=false', undefined, { accept: 'application/x-ndjson' });
    expect(byAccept.statusCode).toBe(400);
    expect(byAccept.json().errors).toEqual([{ field: 'bom', in: 'query', message: 'lays out a CSV answer; this one is NDJSON' }]);
  });

  it('is described in the OpenAPI document of every export', async () => {
    type Parameter = { name: string; in: string; schema?: { enum?: string[] } };
    const doc = (await api.app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, { get?: { parameters?: Parameter[] } }> }>();
    for (const kind of ['customers', 'feedback', 'exchange-rates']) {
      const parameters = doc.paths[`/${kind}/export`]?.get?.parameters ?? [];
      expect(parameters.find((p) => p.name === 'delimiter' && p.in === 'query')?.schema?.enum, kind).toEqual([',', ';']);
      expect(parameters.find((p) => p.name === 'bom' && p.in === 'query')?.schema?.enum, kind).toEqual(['true', 'false']);
    }
  });
});
