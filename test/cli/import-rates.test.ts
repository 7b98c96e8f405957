import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { testSchemas } from '../support/postgres.ts';
import { UsageError } from '../../cli/command.ts';
import { importRates } from '../../cli/import-rates.ts';
import { runCrm } from './support.ts';

/** `crm import-rates` against the real PostgreSQL (one schema set for this file), run as a child process. */
const schemas = testSchemas('cli_import_rates');
const folder = mkdtempSync(join(tmpdir(), 'crm-import-rates-'));
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  CRM_BASE_CURRENCY: 'USD',
  LOG_LEVEL: 'warn',
};

afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

const rateEvents = async (): Promise<{ stream: string; data: Record<string, unknown> }[]> => {
  const client = new pg.Client({ connectionString: schemas.url });
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT stream, data FROM "${schemas.events}".events WHERE stream LIKE 'exchangerate-%' ORDER BY position`);
    return rows.map((r) => ({ stream: r.stream, data: typeof r.data === 'string' ? JSON.parse(r.data) : r.data }));
  } finally {
    await client.end();
  }
};

describe('crm import-rates', () => {
  const file = join(folder, 'rates.csv');
  const report = join(folder, 'rates-report.csv');

  it('records good rows, reports bad ones by line, and re-importing records nothing twice', async () => {
    writeFileSync(
      file,
      [
        'currency,rate,valid_from',
        'EUR,1.0842,2026-01-01', // line 2
        'JPY,0.0066,2026-03-01T00:00:00Z', // line 3
        'USD,1,2026-01-01', // line 4: the base currency
        'GBP,-1,2026-01-01', // line 5
        'CHF,1.12,someday', // line 6
        'SEK,,2026-01-01', // line 7
        'EUR,1.0901,2026-02-01', // line 8
      ].join('\n'),
    );
    const first = await runCrm(['import-rates', file, '--report', report], { cwd: folder, env, timeoutMs: 90_000 });
    expect(first.code, first.stderr).toBe(3);
    expect(first.stdout).toContain('7 rows read, 3 recorded, 0 already set, 4 rejected');
    const lines = readFileSync(report, 'utf8').trim().split('\n').slice(1);
    expect(lines.map((l) => Number(l.split(',')[0]))).toEqual([4, 5, 6, 7]);
    expect(lines[0]).toContain('currency');
    expect(lines[1]).toContain('rate');
    expect(lines[2]).toContain('valid_from');
    expect(lines[3]).toContain('rate: required');
    const events = await rateEvents();
    expect(events.map((e) => [e.stream, e.data.rate, e.data.baseCurrency])).toEqual([
      ['exchangerate-EUR', '1.0842', 'USD'],
      ['exchangerate-JPY', '0.0066', 'USD'],
      ['exchangerate-EUR', '1.0901', 'USD'],
    ]);

    // The same file again: nothing new. A corrected row: one correction, the earlier rate named.
    const again = await runCrm(['import-rates', file, '--report', report], { cwd: folder, env, timeoutMs: 90_000 });
    expect(again.stdout).toContain('7 rows read, 0 recorded, 3 already set, 4 rejected');
    writeFileSync(file, 'currency,rate,valid_from,reason\nJPY,0.0067,2026-03-01,central bank fixing corrected\n');
    const corrected = await runCrm(['import-rates', file, '--report', report], { cwd: folder, env, timeoutMs: 90_000 });
    expect(corrected.code, corrected.stderr).toBe(0);
    const after = await rateEvents();
    expect(after).toHaveLength(4);
    expect(after[3]!.data).toMatchObject({ currency: 'JPY', rate: '0.0067', previousRate: '0.0066' });
  });

  it('stops at a line the file cannot be read past, reporting it, with the rows before it recorded', async () => {
    const broken = join(folder, 'broken-rates.csv');
    const brokenReport = join(folder, 'broken-rates-report.csv');
    writeFileSync(broken, ['currency,rate,valid_from', 'NOK,0.094,2026-01-01', '"DKK,0.15,2026-01-01', 'PLN,0.25,2026-01-01'].join('\n'));
    const result = await runCrm(['import-rates', broken, '--report', brokenReport], { cwd: folder, env, timeoutMs: 90_000 });
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout).toContain('2 rows read, 1 recorded');
    const lines = readFileSync(brokenReport, 'utf8').trim().split('\n').slice(1);
    expect(lines).toEqual([expect.stringMatching(/^3,"?file: cannot be read from this line on \(Quote Not Closed/)]);
    expect((await rateEvents()).map((e) => e.stream)).toContain('exchangerate-NOK');
    expect((await rateEvents()).map((e) => e.stream)).not.toContain('exchangerate-PLN');
  });

  it("refuses a rates export's row against another base currency, naming base_currency", async () => {
    const file = join(folder, 'exported-rates.csv');
    const report = join(folder, 'exported-rates-report.csv');
    // This CRM's base is USD; the export came from a EUR-based one (its last row is against USD).
    writeFileSync(
      file,
      [
        'currency,rate,validFrom,reason,baseCurrency,setAt',
        'SEK,0.087,2026-01-01T00:00:00.000Z,,EUR,2026-01-01T00:00:00.000Z',
        'SEK,0.095,2026-01-01T00:00:00.000Z,,usd,',
      ].join('\n'),
    );
    const result = await runCrm(['import-rates', file, '--report', report], { cwd: folder, env, timeoutMs: 90_000 });
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout).toContain('2 rows read, 1 recorded');
    const lines = readFileSync(report, 'utf8').trim().split('\n').slice(1);
    expect(lines).toEqual([expect.stringMatching(/^2,"?base_currency: the rate is against EUR, this CRM's base currency is USD/)]);
  });

  it('reads the cells of a semicolon file as crm import does: 150,5 is 150.5, 1.450 is refused as ambiguous, gbp is GBP', async () => {
    const file = join(folder, 'semicolon-rates.csv');
    const report = join(folder, 'semicolon-rates-report.csv');
    // KRW was recorded as 1.45 (1450 meant, most likely), and ISK's 150,5 refused.
    // A code in lower case and a quoted rate with a space are read as crm import reads such cells.
    writeFileSync(file, 'Currency;Rate;Valid From\nKRW;1.450;2021-01-01\nISK;150,5;2021-01-01\ngbp;1,17;2021-01-01\n PLN ;"0,23 ";2021-01-01\n');
    const result = await runCrm(['import-rates', file, '--report', report], { cwd: folder, env, timeoutMs: 90_000 });
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout).toContain('4 rows read, 3 recorded');
    const lines = readFileSync(report, 'utf8').trim().split('\n').slice(1);
    expect(lines).toEqual([expect.stringMatching(/^2,"?rate: ""1.450"" in a file separated by semicolons may be 1450 or 1,450 \(a decimal comma\)/)]);
    const events = await rateEvents();
    expect(events.filter((e) => e.data.currency === 'ISK').map((e) => e.data.rate)).toEqual(['150.5']);
    expect(events.filter((e) => e.data.currency === 'GBP').map((e) => e.data.rate)).toEqual(['1.17']);
    expect(events.filter((e) => e.data.currency === 'PLN').map((e) => e.data.rate)).toEqual(['0.23']);
    expect(events.filter((e) => e.data.currency === 'KRW')).toEqual([]);
  });

  it('refuses a report that is the rates file, before writing anything: the file is left whole', async () => {
    const file = join(folder, 'rates-over-report.csv');
    const content = 'currency,rate,valid_from\nCAD,0.73,2026-01-01\n';
    writeFileSync(file, content);
    for (const report of [file, 'rates-over-report.csv']) {
      const result = await runCrm(['import-rates', file, '--report', report], { cwd: folder, env, timeoutMs: 90_000 });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(`crm: --report ${report} is the file being imported: writing the report there would empty it`);
      expect(readFileSync(file, 'utf8')).toBe(content);
    }
    // Refused by the import itself too, before it opens anything.
    const execute = () => Promise.reject(new Error('no command expected'));
    await expect(importRates({ execute }, { file, reportPath: file, baseCurrency: 'USD' })).rejects.toThrow(UsageError);
    expect(readFileSync(file, 'utf8')).toBe(content);
    expect((await rateEvents()).map((e) => e.data.currency)).not.toContain('CAD');
  });

  it('explains itself with --help', async () => {
    const help = await runCrm(['import-rates', '--help'], { cwd: folder, env });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('currency, rate');
    expect(help.stdout).toContain('valid_from');
  });
});
