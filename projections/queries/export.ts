/**
 * Read-model lists as files (`GET /customers/export`, `crm export customers`): every page of a list
 * query, one line per record, CSV (header from the first record) or NDJSON. A generator, so a
 * caller streams it and holds one page at a time.
 */

import { csvField } from '../../shared/csv.ts';

export type ExportFormat = 'csv' | 'ndjson';

type Page = { items: Record<string, unknown>[]; nextCursor: string | null };

const csvCell = (value: unknown): string => {
  if (value === null || value === undefined) return '';
  const text =
    Array.isArray(value) && value.every((v) => typeof v === 'string')
      ? value.join(';')
      : typeof value === 'object' && !(value instanceof Date)
        ? JSON.stringify(value)
        : value instanceof Date
          ? value.toISOString()
          : String(value);
  return csvField(text);
};

export async function* exportLines(
  list: (query: Record<string, unknown>) => Promise<Page>,
  query: Record<string, unknown>,
  format: ExportFormat,
  shape: (page: Page) => Page = (page) => page,
): AsyncGenerator<string> {
  let columns: string[] | undefined;
  let cursor: string | undefined;
  do {
    const page = shape(await list({ ...query, limit: 500, ...(cursor ? { cursor } : {}) }));
    let chunk = '';
    for (const item of page.items) {
      if (format === 'ndjson') {
        chunk += `${JSON.stringify(item)}\n`;
        continue;
      }
      if (!columns) {
        columns = Object.keys(item);
        chunk += `${columns.join(',')}\n`;
      }
      chunk += `${columns.map((c) => csvCell(item[c])).join(',')}\n`;
    }
    if (chunk) yield chunk;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
}
