import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Parser } from 'csv-parse';
import { normalizeHeader, type Row } from './rows.ts';

/** One data row of a file, with the line it ends on (for the bad-row report), or why it could not be read. */
export type ImportRecord = { line: number; row: Row } | { line: number; unreadable: string };

export type ImportFormat = 'csv' | 'ndjson';

/** A parsed CSV record, with csv-parse's counters as they stood when the record ended. */
interface NumberedRecord {
  record: Row;
  /** The line the record ends on. */
  line: number;
  /** Rows so far whose number of fields differs from the header's (csv-parse counts them cumulatively). */
  invalidSoFar: number;
}

/**
 * csv-parse, with each record paired with the line it ends on. Its `info` option copies all of its
 * counters into new objects for every record (about 2.5 µs a row of a purchases file, a tenth of
 * the parse); the two counters needed are read here instead, as the record is pushed, which
 * csv-parse does the moment the record ends.
 */
class NumberingParser extends Parser {
  override push(record: unknown, encoding?: BufferEncoding): boolean {
    if (record === null) return super.push(null, encoding);
    const numbered: NumberedRecord = { record: record as Row, line: this.info.lines, invalidSoFar: this.info.invalid_field_length };
    return super.push(numbered, encoding);
  }
}

/** CSV with a header row; rows are streamed (backpressure reaches the file or socket). */
async function* csvRecords(input: Readable): AsyncGenerator<ImportRecord> {
  const parser = input.pipe(
    new NumberingParser({
      bom: true,
      columns: (headers: string[]) => headers.map(normalizeHeader),
      skip_empty_lines: true,
      relax_column_count: true,
      trim: true,
    }),
  );
  // A source error (a socket closed, a size bound hit) must end the parse too.
  input.once('error', (error) => parser.destroy(error));
  let invalidSoFar = 0;
  for await (const numbered of parser as AsyncIterable<NumberedRecord>) {
    // A rise of the cumulative count means this row has the wrong number of fields.
    const wrongLength = numbered.invalidSoFar > invalidSoFar;
    invalidSoFar = numbered.invalidSoFar;
    yield wrongLength
      ? { line: numbered.line, unreadable: 'row: the number of fields differs from the header' }
      : { line: numbered.line, row: numbered.record };
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
