import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { parse } from 'csv-parse';
import { normalizeHeader, type Row } from './rows.ts';

/** One data row of a file, with the line it ends on (for the bad-row report), or why it could not be read. */
export type ImportRecord = { line: number; row: Row } | { line: number; unreadable: string };

export type ImportFormat = 'csv' | 'ndjson';

/** CSV with a header row; rows are streamed (backpressure reaches the file or socket). */
async function* csvRecords(input: Readable): AsyncGenerator<ImportRecord> {
  const parser = input.pipe(
    parse({
      bom: true,
      columns: (headers: string[]) => headers.map(normalizeHeader),
      info: true,
      skip_empty_lines: true,
      relax_column_count: true,
      trim: true,
    }),
  );
  // A source error (a socket closed, a size bound hit) must end the parse too.
  input.once('error', (error) => parser.destroy(error));
  let invalidSoFar = 0;
  for await (const { record, info } of parser as AsyncIterable<{ record: Row; info: { lines: number; invalid_field_length: number } }>) {
    // csv-parse counts rows with a wrong number of fields cumulatively: a rise means this row.
    const wrongLength = info.invalid_field_length > invalidSoFar;
    invalidSoFar = info.invalid_field_length;
    yield wrongLength ? { line: info.lines, unreadable: 'row: the number of fields differs from the header' } : { line: info.lines, row: record };
  }
}

/** One JSON object per line; keys are normalised like CSV headers (`registeredAt` stays as written, `registered_at` is the column name). */
async function* ndjsonRecords(input: Readable): AsyncGenerator<ImportRecord> {
  // readline passes a source error on to its lines itself (it ends the loop below); passing it on a
  // second time emitted an 'error' nobody listened to any more, an uncaught exception.
  const lines = createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  for await (const text of lines) {
    line += 1;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      yield { line, unreadable: `row: not valid JSON (${(error as Error).message})` };
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      yield { line, unreadable: 'row: expected a JSON object' };
      continue;
    }
    yield { line, row: Object.fromEntries(Object.entries(value).map(([k, v]) => [normalizeHeader(k), v])) };
  }
}

export const parseRecords = (input: Readable, format: ImportFormat): AsyncGenerator<ImportRecord> =>
  format === 'ndjson' ? ndjsonRecords(input) : csvRecords(input);
