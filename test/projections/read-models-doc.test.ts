import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPublisherStatusView } from '../../integration/reporting.ts';
import { startApi, type ApiHarness } from '../api/support.ts';

/**
 * The read-model schema is a public interface for reporting tools: projections/READ-MODELS.md
 * documents it, and the README carries the same text. Both are checked against the tables and views
 * a started CRM creates, so a column added to a migration without a line in the documentation (or a
 * README left with an older copy) fails here.
 */

let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('read_models_doc');
  // The publishers are off in the API harness; `crm serve` creates their view when it starts them.
  await createPublisherStatusView(h.database.db, h.schemas.events, h.schemas.reporting);
}, 60_000);
afterAll(async () => h?.close());

interface DocumentedColumn {
  name: string;
  type: string | null;
  nullable: string | null;
}

const TABLES_HEADING = /^#{2,3} Tables \(read schema\)$/m;
const VIEWS_IN_READ_SCHEMA = /^#{2,3} Views in the read schema$/m;

/** The documentation from "Tables (read schema)" to the end of "Views in the read schema", headings at one level. */
const readModelsSection = (text: string, endHeading: RegExp | null): string => {
  const start = text.search(TABLES_HEADING);
  expect(start).toBeGreaterThanOrEqual(0);
  const rest = text.slice(start);
  const end = endHeading ? rest.search(endHeading) : -1;
  const section = (end >= 0 ? rest.slice(0, end) : rest).trimEnd();
  // The README nests the same headings one level deeper.
  const top = /^(#+) /.exec(section)?.[1]?.length ?? 2;
  return section.replace(/^(#+) /gm, (_, hashes: string) => `${'#'.repeat(hashes.length - top + 2)} `);
};

const normaliseType = (type: string): string => type.trim().replace(/^timestamptz$/, 'timestamp with time zone');

/** Each `### \`name\`` heading's table rows, by table or view name (`reporting.` kept for views). */
const documented = (section: string): Map<string, DocumentedColumn[]> => {
  const result = new Map<string, DocumentedColumn[]>();
  let current: string[] = [];
  for (const line of section.split('\n')) {
    const heading = /^###+ (.*)$/.exec(line);
    if (heading) {
      current = [...(heading[1] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
      for (const name of current) result.set(name, []);
      continue;
    }
    if (/^## /.test(line)) current = [];
    if (current.length === 0 || !line.startsWith('| `')) continue;
    const cells = line
      .slice(1, -1)
      .split(' | ')
      .map((c) => c.trim());
    const names = [...(cells[0] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
    const hasTypes = cells.length >= 4;
    const types = hasTypes ? (cells[1] ?? '').split(/,\s*(?![^(]*\))/) : [];
    names.forEach((qualified, i) => {
      const dot = qualified.indexOf('.');
      const [tables, name] = dot > 0 && !qualified.startsWith('reporting.') ? [[qualified.slice(0, dot)], qualified.slice(dot + 1)] : [current, qualified];
      for (const table of tables) {
        result.get(table)?.push({
          name,
          type: hasTypes ? normaliseType(types[types.length === names.length ? i : 0] ?? '') : null,
          nullable: hasTypes ? (cells[2] ?? null) : null,
        });
      }
    });
  }
  return result;
};

interface ActualColumn {
  table_name: string;
  column_name: string;
  type: string;
  nullable: string;
}

const actualColumns = async (schema: string): Promise<Map<string, ActualColumn[]>> => {
  const { rows } = await sql<ActualColumn>`SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type,
      CASE WHEN a.attnotnull THEN 'no' ELSE 'yes' END AS nullable
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = ${schema} AND c.relkind IN ('r', 'v') ORDER BY c.relname, a.attnum`.execute(h.database.db);
  const byTable = new Map<string, ActualColumn[]>();
  for (const row of rows) byTable.set(row.table_name, [...(byTable.get(row.table_name) ?? []), row]);
  return byTable;
};

/**
 * Tables of the read schema that are not read models: the analytics' own (analytics/ANALYTICS.md), the
 * runner's bookkeeping, and the API's records of background jobs (created on first use; README).
 */
const UNDOCUMENTED_TABLE = /^(analytics_|projection_(leases|workers|feed_engine)$|read_model_copies$|audit_verifications$|import_job(s|_rejected_rows)$)/;

const readme = readModelsSection(readFileSync('README.md', 'utf8'), /^#{3} Analytics views \(reporting schema\)$/m);
const source = readModelsSection(readFileSync('projections/READ-MODELS.md', 'utf8'), null);

describe('the documented read-model schema (README "Read models and the reporting schema", projections/READ-MODELS.md)', () => {
  it('the README holds the current projections/READ-MODELS.md', () => {
    expect(VIEWS_IN_READ_SCHEMA.test(readme)).toBe(true);
    expect(readme).toBe(source);
  });

  it('documents every column of every read-model table, with its type and nullability', async () => {
    const doc = documented(source);
    const actual = await actualColumns(h.schemas.read);
    const differences: string[] = [];
    for (const [table, columns] of actual) {
      if (UNDOCUMENTED_TABLE.test(table)) continue;
      const written = doc.get(table);
      if (!written) {
        differences.push(`${table}: not documented`);
        continue;
      }
      const byName = new Map(written.map((c) => [c.name, c]));
      for (const column of columns) {
        const entry = byName.get(column.column_name);
        if (!entry) differences.push(`${table}.${column.column_name}: not documented`);
        else if (entry.type !== column.type || entry.nullable !== column.nullable)
          differences.push(`${table}.${column.column_name}: documented ${entry.type} null ${entry.nullable}, is ${column.type} null ${column.nullable}`);
      }
      const names = new Set(columns.map((c) => c.column_name));
      for (const entry of written) if (!names.has(entry.name)) differences.push(`${table}.${entry.name}: documented, absent`);
    }
    expect(differences).toEqual([]);
  });

  it('documents every reporting view but the analytics ones (analytics/ANALYTICS.md), with its columns in order', async () => {
    const doc = documented(source);
    const actual = await actualColumns(h.schemas.reporting);
    const differences: string[] = [];
    for (const [view, columns] of actual) {
      if (view.startsWith('analytics_') || view === 'role_teams') continue;
      const written = doc.get(`reporting.${view}`);
      if (!written) differences.push(`reporting.${view}: not documented`);
      else if (written.map((c) => c.name).join() !== columns.map((c) => c.column_name).join())
        differences.push(`reporting.${view}: documented ${written.map((c) => c.name).join()}, is ${columns.map((c) => c.column_name).join()}`);
    }
    for (const name of doc.keys())
      if (name.startsWith('reporting.') && !actual.has(name.slice('reporting.'.length))) differences.push(`${name}: documented, absent`);
    expect(differences).toEqual([]);
  });
});
