import { Readable, type TransformCallback } from 'node:stream';
import { CsvError, Parser, type InfoCallback, type InfoRecord, type Options } from 'csv-parse';
import { CR, encodingExamples, LF, lineEndsIn, utf8Text, type ImportEncoding, type Utf8Text } from './encoding.ts';
import { MAX_JSON_DEPTH, nestedDeeperThan, normalizeHeader, NUMBER_COLUMNS, rememberWritten, type Row } from './rows.ts';
import { unguardedCsvField } from '../../shared/csv.ts';
import { keyGivenTwice } from '../../shared/json-keys.ts';

/**
 * One data row of a file, with the line it ends on (for the bad-row report), or why it could not be
 * read; or, last, where the file stops being readable at all (`unreadableRest`: CSV the parser cannot
 * find the next row in, such as an unclosed quote), with why.
 */
export type ImportRecord = { line: number; row: Row } | { line: number; unreadable: string } | { line: number; unreadableRest: string };

/**
 * The longest row read, in characters. Real rows are far shorter (the longest text a command takes is
 * 10,000 characters); a longer one is a broken file (an unclosed quote swallowing the rest) or not a
 * file of rows, and reading it whole held it all in memory: a 200 MB line took a CSV import to 553 MB
 * and an NDJSON one to 772 MB before it was refused.
 */
export const MAX_ROW_CHARS = 1024 * 1024;

const unreadableRest = (detail: string): string =>
  `file: cannot be read from this line on (${detail}); the rows before it are imported, none from here: mend the file and import it again (rows already imported are skipped)`;

export type ImportFormat = 'csv' | 'ndjson';

/** A header that names a column twice: nothing of the file can be read as meant. */
export class DuplicateColumn extends Error {}

/** Line ends inside cells (quoted cells written on several lines); a CR LF is one. */
const lineBreaksIn = (cells: Iterable<unknown>): number => {
  let breaks = 0;
  for (const value of cells) if (typeof value === 'string') breaks += value.match(/\r\n|\r|\n/g)?.length ?? 0;
  return breaks;
};

/** A record as csv-parse hands it on (`on_record`): how its cells stand to the header's. */
interface FittedRecord {
  record: Row;
  /** The row has another number of cells than the header, not counting empty cells past the header's. */
  wrongLength: boolean;
  /** Line ends inside the empty cells past the header's, which the record leaves out. */
  paddingBreaks: number;
}

/**
 * The record with how its cells fit the header. A spreadsheet pads data rows with empty cells as it
 * pads the header (`Ada;ada@example.com;;` under `name;email`): such a row was refused as having
 * another number of fields. csv-parse leaves the cells past the header's out of the record, and its
 * error for a row of another length holds them all: empty ones (blank counts) are left out, while
 * one with anything in it still makes the row unreadable. A row short only of the header's trailing
 * empty cells (`name;email;;` above `Ada;ada@example.com`) lacks no column; one short of a named column does.
 */
const fitted = (record: Row, context: InfoRecord & Pick<InfoCallback, 'columns'>): FittedRecord => {
  // Typed as always there; csv-parse gives one only for a row of another length.
  const error = context.error as (CsvError & { record?: unknown }) | undefined;
  if (error === undefined) return { record, wrongLength: false, paddingBreaks: 0 };
  const { columns } = context;
  const cells = error.record;
  if (error.code !== 'CSV_RECORD_INCONSISTENT_COLUMNS' || !Array.isArray(columns) || !Array.isArray(cells))
    return { record, wrongLength: true, paddingBreaks: 0 };
  if (cells.length < columns.length) {
    const unnamed = columns.slice(cells.length).every((column) => 'name' in column && isUnnamedColumn(column.name));
    return { record, wrongLength: !unnamed, paddingBreaks: 0 };
  }
  const padding = cells.slice(columns.length);
  const empty = padding.every((cell) => typeof cell === 'string' && cell.trim() === '');
  return { record, wrongLength: !empty, paddingBreaks: empty ? lineBreaksIn(padding) : 0 };
};

/**
 * The name a header cell left empty (`name;email;registered_at;`) is read under, by its position: with
 * spaces, which no normalised column name has, so no command reads it, and the import reports it among
 * the columns not read where a row holds a value there (which was dropped without a word). A row's empty
 * cells under it are left out of the row: a spreadsheet's padding says nothing.
 */
export const unnamedColumn = (position: number): string => `a column without a header (column ${position})`;
export const isUnnamedColumn = (column: string): boolean => column.startsWith('a column without a header (');

/** A parsed CSV record, with the line it ends on and csv-parse's count of blank lines then. */
interface NumberedRecord extends FittedRecord {
  /** The line the record ends on. */
  line: number;
  /** Blank lines skipped so far (csv-parse counts them cumulatively). */
  emptySoFar: number;
}

/**
 * csv-parse, with each record paired with the line it ends on. Its `info` option copies all of its
 * counters into new objects for every record (about 2.5 µs a row of a purchases file, a tenth of
 * the parse); the two counters needed are read here instead, as the record is pushed, which
 * csv-parse does the moment the record ends.
 *
 * The line is counted here, from where the record ends (`info.bytes`), not taken from csv-parse's
 * `info.lines`: that counts the CR and the LF of a CR LF inside a quoted cell as two lines, so every
 * row after a note written on two lines in Windows was reported a line too far down.
 */
class NumberingParser extends Parser {
  /**
   * The CSV error that ended the parse. It ends the records instead of failing the stream: a failed
   * stream drops the records parsed before the error and not yet read.
   */
  broken: CsvError | DuplicateColumn | undefined;

  /** The bytes read from `counted` on, not counted yet. */
  private uncounted: Buffer[] = [];
  private counted = 0;
  /** The line ends before `counted`, and the byte just before it. */
  private lineEnds: number;
  private lastByte = -1;

  /** `linesBefore`: the lines of the file before the input's first (csvRecords drops those before the header). */
  constructor(options: ConstructorParameters<typeof Parser>[0], linesBefore: number) {
    super(options);
    this.lineEnds = linesBefore;
  }

  override push(record: unknown, encoding?: BufferEncoding): boolean {
    if (record === null) return super.push(null, encoding);
    this.countTo(this.info.bytes);
    const numbered: NumberedRecord = {
      ...(record as FittedRecord),
      // A record ends at its line end, or at the end of a file without a last one.
      line: this.lineEnds + (this.lastByte === CR || this.lastByte === LF ? 0 : 1),
      emptySoFar: this.info.empty_lines,
    };
    return super.push(numbered, encoding);
  }

  override _transform(chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback): void {
    this.uncounted.push(chunk);
    // Nothing ends before the last cell read (`info.bytes`): the bytes up to it are counted and let go.
    super._transform(chunk, encoding, (error) => {
      this.countTo(this.info.bytes);
      this.settle(error, callback);
    });
  }

  override _flush(callback: TransformCallback): void {
    super._flush((error) => this.settle(error, callback));
  }

  private countTo(offset: number): void {
    while (this.counted < offset) {
      const chunk = this.uncounted[0]!;
      const part = chunk.subarray(0, offset - this.counted);
      this.lineEnds += lineEndsIn(part, this.lastByte === CR);
      this.lastByte = part[part.length - 1]!;
      this.counted += part.length;
      if (part.length === chunk.length) this.uncounted.shift();
      else this.uncounted[0] = chunk.subarray(part.length);
    }
  }

  private settle(error: Error | null | undefined, callback: TransformCallback): void {
    if (!(error instanceof CsvError || error instanceof DuplicateColumn)) return callback(error);
    this.broken = error;
    this.push(null);
    callback();
  }
}

/** The formula guard of the CSV this CRM writes goes (shared/csv.ts): an export's phone numbers, `'+1 555 0100`, were all refused. */
const unguard = (row: Row): void => {
  for (const column in row) {
    const value = row[column];
    if (typeof value === 'string') row[column] = unguardedCsvField(value);
  }
};

/**
 * The field delimiters a CSV file may use. A spreadsheet whose locale writes a decimal comma (German,
 * French, Dutch, ...) saves "CSV" with semicolons, and a sheet copied as text is tab-separated: read
 * with commas, such a file had one column and no row of it could be imported.
 */
export const CSV_DELIMITERS = [',', ';', '\t'] as const;

/** `sep=;`: the line Excel writes (and reads) before the header to name the delimiter. */
const SEPARATOR_LINE = /^\uFEFF?"?sep=(.)"?$/i;

/**
 * A line before the header that says nothing: empty, blank or delimiters only (a byte order mark is
 * blank too). csv-parse skips such lines to find the header, so the delimiter is told from the first
 * other line: told from a blank first line, a semicolon file was read with commas, one column.
 */
const BLANK_LINE = /^[\s,;]*$/;

/** The delimiter a header holds most of outside quotes (a comma when none is ahead). */
const headerDelimiter = (header: string): string => {
  const counts = new Map<string, number>(CSV_DELIMITERS.map((d) => [d, 0]));
  let quoted = false;
  for (const char of header) {
    if (char === '"') quoted = !quoted;
    else if (!quoted && counts.has(char)) counts.set(char, counts.get(char)! + 1);
  }
  let chosen: string = ',';
  for (const d of CSV_DELIMITERS) if (counts.get(d)! > counts.get(chosen)!) chosen = d;
  return chosen;
};

/** Where the header starts in the text read ahead: after `lines` lines (`chars` characters) that are blank or only name the delimiter. */
interface HeaderStart {
  header: string;
  lines: number;
  chars: number;
  /** The delimiter a `sep=` line before the header names. */
  named?: string;
}

/**
 * The header in `text`, the start of the input, once it is there: its line is whole (`ended`: the
 * text is all there is to read). Undefined when more is needed; with no header in the text, the
 * header is empty (a comma file) and the text's whole lines are dropped.
 */
const headerStart = (text: string, ended: boolean): HeaderStart | undefined => {
  const lineEnds = /\r\n|\n|\r/g;
  let named: string | undefined;
  for (let lines = 0, chars = 0; ; lines += 1) {
    const end = lineEnds.exec(text);
    // A CR last may be half of a CR LF.
    if (!ended && (!end || (end[0] === '\r' && end.index === text.length - 1))) return undefined;
    const line = text.slice(chars, end?.index);
    // Excel writes the `sep=` line first; any blank lines before it are skipped as before a header.
    const separator = named === undefined ? SEPARATOR_LINE.exec(line.trim()) : null;
    if (separator) named = separator[1]!;
    else if (!BLANK_LINE.test(line)) return { header: line, lines, chars, ...(named === undefined ? {} : { named }) };
    if (!end) return { header: '', lines, chars, ...(named === undefined ? {} : { named }) };
    chars = end.index + end[0].length;
  }
};

/**
 * The header line of the input, read ahead (bounded), and the input again from the header on: the
 * lines before it (blank ones, a `sep=` line) are dropped, `linesBefore` counts them.
 */
const readingHeader = async (input: Readable): Promise<{ delimiter: string; linesBefore: number; stream: Readable }> => {
  const chunks = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const held: Buffer[] = [];
  let size = 0;
  let start: HeaderStart | undefined;
  for (;;) {
    const next = await chunks.next();
    if (next.done) break;
    const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    held.push(chunk);
    size += chunk.length;
    if (size > MAX_ROW_CHARS) break;
    if (chunk.includes(0x0a) || chunk.includes(0x0d)) start = headerStart(Buffer.concat(held).toString('utf8'), false);
    if (start) break;
  }
  const head = Buffer.concat(held);
  const text = head.toString('utf8');
  start ??= headerStart(text, true)!;
  // The lines dropped are whole lines of text: their characters are whole in the bytes too.
  const rest = head.subarray(Buffer.byteLength(text.slice(0, start.chars), 'utf8'));
  async function* again(): AsyncGenerator<Buffer | string> {
    if (rest.length > 0) yield rest;
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
  }
  return {
    delimiter: start.named ?? headerDelimiter(start.header),
    linesBefore: start.lines,
    stream: Readable.from(again(), { objectMode: false }),
  };
};

/** `12,50`: a number with a decimal comma (thousands separators are not read: `1.234,50` stays text, refused). */
const DECIMAL_COMMA = /^-?\d+,\d+$/;

/**
 * `1.234`, `12.500`: three digits after each dot, which a spreadsheet writing decimal commas writes for
 * thousands (`0.125` cannot be thousands: read as written).
 */
const DOTTED_THOUSANDS = /^-?[1-9]\d{0,2}(\.\d{3})+$/;

/** `1,234`, `12,500`: three digits after each comma, which a spreadsheet writing decimal points writes for thousands. */
const COMMA_THOUSANDS = /^-?[1-9]\d{0,2}(,\d{3})+$/;

const DELIMITER_NAMES: Record<string, string> = { ';': 'semicolons', '\t': 'tabs' };

/**
 * The numbers of a file whose locale may write a decimal comma, read as the number they are. A
 * semicolon file is such a file: `12,50` is 12.5, and `1.234` is refused (in such a file it is 1234
 * written with a thousands separator as often as 1.234, and it was read as 1.234, 1000 times less).
 * A tab-separated file (a sheet copied as text, Excel's "Unicode text") comes from either kind of
 * locale: `12,50` and `12.50` are read, and both `1.234` and `1,234` are refused, since each may be
 * thousands (a German `2.500` was stored as 2.5).
 */
const readDecimalCommas = (row: Row, numberColumns: ReadonlySet<string>, delimiter: string): string | undefined => {
  const separated = DELIMITER_NAMES[delimiter];
  if (separated === undefined) return undefined;
  for (const column of numberColumns) {
    const cell = row[column];
    if (typeof cell !== 'string') continue;
    // As the cells are read (a spreadsheet quotes `"0,23 "` with its space): the number is what is inside.
    const value = cell.trim();
    const ambiguous = DOTTED_THOUSANDS.test(value) || (delimiter === '\t' && COMMA_THOUSANDS.test(value));
    if (ambiguous) {
      const mark = value.includes('.') ? '.' : ',';
      const other = mark === '.' ? ',' : '.';
      // One mark may be three decimals (KWD, BHD): a fourth decimal tells them from thousands.
      const threeDecimals =
        value.split(mark).length === 2 ? `, or with four decimals where it has three (${value.replace(mark, delimiter === ';' ? ',' : mark)}0)` : '';
      return `${column}: ${JSON.stringify(value)} in a file separated by ${separated} may be ${value.split(mark).join('')} or ${value.replace(mark, other)} (a decimal ${other === ',' ? 'comma' : 'point'}); write it without thousands separators${delimiter === ';' ? ', with a decimal comma' : ''}${threeDecimals}`;
    }
    if (DECIMAL_COMMA.test(value)) {
      rememberWritten(row, column, cell);
      row[column] = value.replace(',', '.');
    }
  }
  return undefined;
};

/**
 * The parser sets each cell as `row[name] = value`: under `__proto__` that is no property, and the
 * column went unreported among those no row read. It is parsed under this name, then made the row's own.
 */
const PROTO_COLUMN = '__proto__\u0000';
const ownProtoColumn = (row: Row): void => {
  if (!Object.hasOwn(row, PROTO_COLUMN)) return;
  Object.defineProperty(row, '__proto__', { value: row[PROTO_COLUMN], enumerable: true, writable: true, configurable: true });
  delete row[PROTO_COLUMN];
};

/**
 * The header's columns, normalised. A name given twice is refused: the parser kept the last cell
 * under it, so a file with two `name` columns stored the second as every customer's name.
 */
const namedColumns = (headers: string[]): string[] => {
  const names = headers.map(normalizeHeader);
  // A set, not a search of the names for each: a header of 100,000 columns held the event loop 12 s.
  const seen = new Set<string>();
  for (const name of names) {
    if (name === '') continue;
    if (seen.has(name)) throw new DuplicateColumn(`the header names the column ${JSON.stringify(name)} twice; rename or remove one of them`);
    seen.add(name);
  }
  return names;
};

/** CSV with a header row; rows are streamed (backpressure reaches the file or socket). */
async function* csvRecords(file: Readable, numberColumns: ReadonlySet<string>): AsyncGenerator<ImportRecord> {
  const { delimiter, linesBefore, stream: input } = await readingHeader(file);
  // The header's columns without a name (unnamedColumn).
  const unnamedColumns: string[] = [];
  const unnamed = (name: string): string => {
    unnamedColumns.push(name);
    return name;
  };
  const headerLine = linesBefore + 1;
  const parser = input.pipe(
    new NumberingParser(
      {
        bom: true,
        delimiter,
        // Every line end ends a row, whatever the others are: csv-parse otherwise takes the first one it
        // meets for the whole file, and a file edited on Windows, Linux and an old Mac was read as one
        // row (CR LF first: a CR followed by an LF is one line end, not two).
        record_delimiter: ['\r\n', '\n', '\r'],
        columns: (headers: string[]) =>
          namedColumns(headers).map((name, i) => (name === '__proto__' ? PROTO_COLUMN : name === '' ? unnamed(unnamedColumn(i + 1)) : name)),
        // A row of delimiters only (`,,,`, as spreadsheets leave below the data) says nothing: skipped as a blank line.
        skip_records_with_empty_values: true,
        skip_empty_lines: true,
        relax_column_count: true,
        // Typed for records as arrays; with `columns` they are rows, handed on as FittedRecords.
        on_record: fitted as unknown as Options['on_record'],
        // A quote inside an unquoted cell (`24" screen`) is text, as spreadsheets write it.
        relax_quotes: true,
        max_record_size: MAX_ROW_CHARS,
        trim: true,
      },
      linesBefore,
    ),
  );
  // A source error (a socket closed, a size bound hit) must end the parse too.
  input.once('error', (error) => parser.destroy(error));
  // Where the last row read ended (at first, the header's line) and the blank lines skipped until then.
  let lastLine = headerLine;
  let emptySoFar = 0;
  for await (const numbered of parser as AsyncIterable<NumberedRecord>) {
    ownProtoColumn(numbered.record);
    for (const column of unnamedColumns) if (numbered.record[column] === '') delete numbered.record[column];
    unguard(numbered.record);
    const ambiguous = readDecimalCommas(numbered.record, numberColumns, delimiter);
    const { wrongLength } = numbered;
    lastLine = numbered.line;
    emptySoFar = numbered.emptySoFar;
    // A row is named by the line it starts on, as the broken-file report names one: a quoted cell
    // written on several lines moved it to its last line. Not a row whose fields do not match the
    // header: csv-parse drops the cells past the header's, and the lines they held with them (empty
    // ones are counted, from the error that holds them: FittedRecord.paddingBreaks).
    const line = numbered.line - lineBreaksIn(Object.values(numbered.record)) - numbered.paddingBreaks;
    yield wrongLength
      ? { line: numbered.line, unreadable: 'row: the number of fields differs from the header' }
      : ambiguous !== undefined
        ? { line, unreadable: ambiguous }
        : { line, row: numbered.record };
  }
  const { broken } = parser;
  if (broken) {
    // The parser cannot tell where the next row starts: nothing more is read (parseRecords closes the input).
    // csv-parse names the line where it gave up (the end of the file for a quote never closed): the
    // row that cannot be read starts after the last row read and the blank lines that followed it.
    // Before, a quote opened in the first data row was reported at line 1, the header.
    const code = broken instanceof CsvError ? broken.code : undefined;
    const detail =
      code === 'CSV_MAX_RECORD_SIZE'
        ? `a row longer than ${MAX_ROW_CHARS} characters, an unclosed quote?`
        : code === 'CSV_QUOTE_NOT_CLOSED'
          ? 'Quote Not Closed: a quote opened in this row is never closed'
          : broken.message;
    const line = broken instanceof DuplicateColumn ? headerLine : lastLine + 1 + (parser.info.empty_lines - emptySoFar);
    yield { line, unreadableRest: unreadableRest(detail) };
  }
}

/**
 * The lines of a text stream (line ends `\n`, `\r\n` or `\r`), each bounded: a line longer than
 * `max` characters is `undefined`, and only `max` characters of it are ever held.
 */
async function* boundedLines(input: Readable, max: number): AsyncGenerator<string | undefined> {
  input.setEncoding('utf8');
  const breaks = /[\r\n]/g;
  let partial = '';
  // The line so far is longer than `max`: its rest is dropped up to the line end.
  let tooLong = false;
  // The last chunk ended with `\r`: a `\n` starting the next one belongs to the same line end.
  let afterCr = false;
  const end = (text: string): string | undefined => {
    const line = tooLong || partial.length + text.length > max ? undefined : partial + text;
    partial = '';
    tooLong = false;
    return line;
  };
  for await (const chunk of input as AsyncIterable<string>) {
    let from = afterCr && chunk.startsWith('\n') ? 1 : 0;
    afterCr = false;
    breaks.lastIndex = from;
    for (let match = breaks.exec(chunk); match; match = breaks.exec(chunk)) {
      yield end(chunk.slice(from, match.index));
      from = match.index + 1;
      if (match[0] === '\r') {
        if (from === chunk.length) afterCr = true;
        else if (chunk[from] === '\n') from += 1;
      }
      breaks.lastIndex = from;
    }
    const rest = chunk.slice(from);
    if (tooLong || partial.length + rest.length > max) {
      tooLong = true;
      partial = '';
    } else partial += rest;
  }
  if (partial !== '' || tooLong) yield end('');
}

/** One JSON object per line; keys are normalised like CSV headers (`registeredAt` and `registered_at` name the same column). */
async function* ndjsonRecords(input: Readable): AsyncGenerator<ImportRecord> {
  let line = 0;
  for await (const read of boundedLines(input, MAX_ROW_CHARS)) {
    line += 1;
    if (read === undefined) {
      yield { line, unreadable: `row: longer than ${MAX_ROW_CHARS} characters` };
      continue;
    }
    // A byte order mark (some editors write one) is not JSON.
    const text = line === 1 && read.startsWith('\uFEFF') ? read.slice(1) : read;
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
    if (nestedDeeperThan(value, MAX_JSON_DEPTH)) {
      yield { line, unreadable: `row: nested deeper than ${MAX_JSON_DEPTH} levels` };
      continue;
    }
    const repeated = keyGivenTwice(text);
    if (repeated !== undefined) {
      yield { line, unreadable: `row: the key ${JSON.stringify(repeated.join('.'))} is given twice; keep one of them` };
      continue;
    }
    // Two keys that name one column (`registeredAt` and `registered_at`) are refused, as a CSV header
    // naming a column twice is: the last one silently won.
    const entries: [string, unknown][] = [];
    const keys = new Map<string, string>();
    let twice: string | undefined;
    for (const [key, cellValue] of Object.entries(value)) {
      const column = normalizeHeader(key);
      const earlier = keys.get(column);
      if (earlier !== undefined) {
        twice = `row: the keys ${JSON.stringify(earlier)} and ${JSON.stringify(key)} both name the column ${JSON.stringify(column)}; keep one of them`;
        break;
      }
      keys.set(column, key);
      entries.push([column, cellValue]);
    }
    // fromEntries defines each key as its own property: a key "__proto__" is a column, not the row's prototype.
    yield twice === undefined ? { line, row: Object.fromEntries(entries) } : { line, unreadable: twice };
  }
}

/** Why text stopped being readable: by what it looks like, what the file was read as and what it was said to be in. */
const notText = (text: Utf8Text, declared: ImportEncoding): string => {
  const readAs = text.readAs();
  const looksLike = text.looksLike();
  if (looksLike === 'utf-8')
    return `it is UTF-8 text, not ${declared}: its letters are UTF-8's, and read as ${declared} they would be stored garbled; import it without --encoding, or send it with charset=utf-8`;
  if (looksLike !== undefined)
    return `it looks like UTF-16 text without a byte order mark (NUL bytes between the letters): read it with --encoding ${looksLike}, or send it with charset=${looksLike}`;
  if (readAs === 'utf-16le' || readAs === 'utf-16be')
    return declared === readAs
      ? `it is not ${readAs} text (a lone surrogate, or a byte missing at the end): save the file again, as UTF-8 or Unicode text`
      : 'it is not UTF-16 text, as its byte order mark says (a lone surrogate, or a byte missing at the end): save the file again, as UTF-8 or Unicode text';
  const name = `name the file's encoding with --encoding, or send it with a charset naming it: ${encodingExamples}`;
  if (readAs !== 'utf-8') return `it is not ${readAs} text, as given: ${name}`;
  return declared === 'utf-8'
    ? `it is not UTF-8 text: ${name}`
    : 'it is not UTF-8 text, as its byte order mark says (read as UTF-8, whatever the encoding given): save the file again, as UTF-8';
};

/**
 * The records of a file in `encoding` (UTF-8 unless told, or a byte order mark says otherwise). Text
 * that is not in it ends the records at its line, as a row the CSV parser cannot find the end of
 * does. The input is closed when the records end, also when the reader stops early. `numberColumns`:
 * the columns a semicolon file writes with a decimal comma (the import kinds' number columns unless told).
 */
export async function* parseRecords(
  input: Readable,
  format: ImportFormat,
  encoding: ImportEncoding = 'utf-8',
  numberColumns: ReadonlySet<string> = NUMBER_COLUMNS,
): AsyncGenerator<ImportRecord> {
  const text = utf8Text(input, encoding);
  try {
    let ended = false;
    for await (const record of format === 'ndjson' ? ndjsonRecords(text.stream) : csvRecords(text.stream, numberColumns)) {
      ended = 'unreadableRest' in record;
      yield record;
    }
    const line = text.invalidLine();
    if (line !== undefined && !ended) yield { line, unreadableRest: unreadableRest(notText(text, encoding)) };
  } finally {
    input.destroy();
  }
}
