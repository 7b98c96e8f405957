import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';
import { loadConfig } from '../../cli/config.ts';
import { importFile } from '../../cli/import.ts';
import type { ImportKind } from '../../commands/import/rows.ts';
import { openCrm } from '../../runtime/crm.ts';

/**
 * `crm export --delimiter ';' --bom`: the file a German or French Excel opens by double-click, read
 * back by `crm import` as it was, and no cell of it, however Excel splits its lines, a formula.
 */
const source = testSchemas('cli_export_sheet_from');
const target = testSchemas('cli_export_sheet_to');
const folder = mkdtempSync(join(tmpdir(), 'crm-export-sheet-'));
const crm = (args: string[], schemas: TestSchemas) => runCrm(args, { cwd: folder, env: schemaEnv(schemas), timeoutMs: 120_000 });

afterAll(async () => {
  await source.dropSchemas();
  await target.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

/** Imports in process: a `crm` process a file would cost more than the rest of the test. */
const importInto = async (schemas: TestSchemas, files: { file: string; kind: ImportKind }[]) => {
  const env = { DATABASE_URL: schemas.url, CRM_EVENTS_SCHEMA: schemas.events, CRM_READ_SCHEMA: schemas.read, CRM_REPORTING_SCHEMA: schemas.reporting };
  const runtime = await openCrm(loadConfig({ ...env, CRM_PROJECTIONS: 'off', LOG_LEVEL: 'warn' }, folder));
  try {
    const outcomes = [];
    for (const { file, kind } of files) {
      const reportPath = join(folder, `report-${schemas.read}-${kind}.csv`);
      const outcome = await importFile(runtime.batch, { file, kind, reportPath });
      outcomes.push({ ...outcome, report: readFileSync(reportPath, 'utf8') });
    }
    return outcomes;
  } finally {
    await runtime.close();
  }
};

const write = (name: string, lines: string[]): string => {
  writeFileSync(join(folder, name), lines.join('\n'));
  return join(folder, name);
};

/** The cells Excel makes of a file's text in a locale whose list separator is `;` or `,`: split there and at line ends, quotes or not. */
const cellsASpreadsheetSplits = (text: string): string[] => text.split(/[,;\t\r\n]/).map((cell) => cell.replace(/^"+/, ''));
const runsAsFormula = (cell: string): boolean => /^[=+\-@\t\r]/.test(cell) && !/^-\d+([.,]\d+)?$/.test(cell);

describe("crm export --delimiter ';' --bom", () => {
  it('writes customers, feedback and purchases that import again as they were, appending nothing to the store they came from', async () => {
    const files = {
      customers: write('customers.csv', [
        'name,email,tags,registered_at',
        `"Eve;=cmd|' /C calc'!A0;",eve@sheet.example,vip;de,2020-01-02`,
        'Jürgen Müller,juergen@sheet.example,,2020-01-03',
      ]),
      feedback: write('feedback.csv', [
        'feedback_id,customer_email,kind,subject,body,submitted_at',
        '6f1d0c0e-0000-4000-8000-000000000051,juergen@sheet.example,complaint,Rechnung,"Bitte prüfen\n=1+1;",2020-02-01T08:00:00Z',
      ]),
      // 1.234 (a currency with three decimals) is refused in a semicolon file written with a decimal point, as maybe 1234.
      purchases: write('purchases.csv', [
        'order_id,customer_email,amount,currency,occurred_at',
        'S-1,eve@sheet.example,1.234,KWD,2020-03-01',
        'S-2,juergen@sheet.example,19.9,EUR,2020-03-02',
      ]),
    };
    const kinds = Object.keys(files) as (keyof typeof files)[];
    for (const outcome of await importInto(
      source,
      kinds.map((kind) => ({ file: files[kind], kind })),
    ))
      expect(outcome.rejected, outcome.report).toBe(0);
    expect((await crm(['rebuild'], source)).code).toBe(0);
    const sheets = Object.fromEntries(kinds.map((kind) => [kind, join(folder, `${kind}-sheet.csv`)]));
    await Promise.all(
      kinds.map(async (kind) => {
        const exported = await crm(['export', kind, '--delimiter', ';', '--bom', '--output', sheets[kind]!], source);
        expect(exported.code, exported.stderr).toBe(0);
      }),
    );
    const text = Object.fromEntries(kinds.map((kind) => [kind, readFileSync(sheets[kind]!, 'utf8')]));
    for (const kind of kinds) {
      // The byte order mark, then a header separated by semicolons.
      expect(text[kind]!.startsWith(`\uFEFF${kind === 'purchases' ? 'orderId;customerId;amount' : 'id;'}`), kind).toBe(true);
      expect(cellsASpreadsheetSplits(text[kind]!).filter(runsAsFormula), kind).toEqual([]);
    }
    expect(text.customers).toContain(`"Eve;'=cmd|' /C calc'!A0;"`);
    expect(text.customers).toContain(';"vip;de";');
    expect(text.feedback).toContain(`"Bitte prüfen\n'=1+1;"`);
    // Decimal commas, as such a spreadsheet writes and reads them (quoted, as every cell holding a comma or a semicolon).
    expect(text.purchases).toContain(';"1,234";KWD;');
    expect(text.purchases).toContain(';"19,9";EUR;');

    // Imported into the store it came from: every row is there already, nothing appended, nothing refused.
    const sheetFiles = kinds.map((kind) => ({ file: sheets[kind]!, kind }));
    const rows = { customers: 2, feedback: 1, purchases: 2 };
    expect(
      (await importInto(source, sheetFiles)).map(({ kind, rows, imported, alreadyPresent, rejected, report }) => ({
        kind,
        rows,
        imported,
        alreadyPresent,
        rejected,
        report,
      })),
    ).toEqual(kinds.map((kind) => ({ kind, rows: rows[kind], imported: rows[kind], alreadyPresent: rows[kind], rejected: 0, report: 'line,reason\n' })));

    // Imported into an empty store: the same names, tags, bodies and amounts, to the character.
    for (const outcome of await importInto(target, sheetFiles)) expect(outcome.rejected, outcome.report).toBe(0);
    expect((await crm(['rebuild'], target)).code).toBe(0);
    const records = async (schemas: TestSchemas, kind: string, fields: string[]) => {
      const out = join(folder, `${kind}-${schemas.read}.ndjson`);
      expect((await crm(['export', kind, '--format', 'ndjson', '--output', out], schemas)).code).toBe(0);
      return readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .map((line) => {
          const record = JSON.parse(line) as Record<string, unknown>;
          return Object.fromEntries(fields.map((field) => [field, record[field]]));
        });
    };
    const kept: Record<string, string[]> = {
      customers: ['id', 'name', 'email', 'tags', 'registeredAt'],
      feedback: ['id', 'customerId', 'subject', 'body', 'submittedAt'],
      purchases: ['orderId', 'customerId', 'amount', 'currency', 'occurredAt'],
    };
    const [before, after] = await Promise.all([source, target].map((schemas) => Promise.all(kinds.map((kind) => records(schemas, kind, kept[kind]!)))));
    expect(after).toEqual(before);
    expect((await records(target, 'customers', ['name'])).map((c) => c.name).sort()).toEqual(["Eve;=cmd|' /C calc'!A0;", 'Jürgen Müller']);
  }, 240_000);
});
