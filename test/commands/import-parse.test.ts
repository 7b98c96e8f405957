import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ImportEncoding } from '../../commands/import/encoding.ts';
import { MAX_JSON_DEPTH } from '../../commands/import/rows.ts';
import { MAX_ROW_CHARS, parseRecords, unnamedColumn, type ImportFormat, type ImportRecord } from '../../commands/import/parse.ts';

/** The reason of a row with another number of fields than the header. */
const unreadable = 'row: the number of fields differs from the header';

/** Reading import files: rows with the line each ends on, and the rows that cannot be read, with why. */
const records = async (
  text: string | (string | Buffer)[],
  format: ImportFormat,
  encoding?: ImportEncoding,
  numberColumns?: ReadonlySet<string>,
): Promise<ImportRecord[]> => {
  const read: ImportRecord[] = [];
  for await (const record of parseRecords(Readable.from(Array.isArray(text) ? text : [text]), format, encoding, numberColumns)) read.push(record);
  return read;
};

const latin1 = (text: string) => Buffer.from(text, 'latin1');

describe('CSV files', () => {
  it('names the columns by their normalised headers and trims the cells, with the line of each row', async () => {
    expect(await records('Name, E-Mail ,Customer Since\n Ada , ada@example.com ,1997-01-02\nGrace,grace@example.com,\n', 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com', customer_since: '1997-01-02' } },
      { line: 3, row: { name: 'Grace', email: 'grace@example.com', customer_since: '' } },
    ]);
  });

  it('reads the semicolons of a spreadsheet saved in a decimal-comma locale, and tab-separated text, told from the header', async () => {
    expect(await records('\uFEFFName;E-Mail;Tags\r\nJürgen;jurgen@example.de;"vip;b2b"\r\n', 'csv')).toEqual([
      { line: 2, row: { name: 'Jürgen', email: 'jurgen@example.de', tags: 'vip;b2b' } },
    ]);
    expect(await records('order_id\tamount\tcustomer_email\nA-1\t12.50\tada@example.com\n', 'csv')).toEqual([
      { line: 2, row: { order_id: 'A-1', amount: '12.50', customer_email: 'ada@example.com' } },
    ]);
    // Its numbers are written with a decimal comma: read so in the number columns only, never in text.
    expect(await records('amount;budget;subject\n12,50;-3,5;"Größe 3,5 passt nicht"\n1.234,50;7;x\n', 'csv')).toEqual([
      { line: 2, row: { amount: '12.50', budget: '-3.5', subject: 'Größe 3,5 passt nicht' } },
      { line: 3, row: { amount: '1.234,50', budget: '7', subject: 'x' } },
    ]);
    expect(await records('amount,subject\n"12,50",x\n', 'csv')).toEqual([{ line: 2, row: { amount: '12,50', subject: 'x' } }]);
    // A dot with three digits after it is a thousands separator as often as a decimal point there: the
    // row is refused, naming the column (1.234 came in as 1.234, a thousand times too small). A dot
    // with another count of digits, as in a comma file, is read.
    expect(await records('amount;subject\n1.234;x\n2.500.000;y\n12.50;z\n', 'csv')).toEqual([
      {
        line: 2,
        unreadable:
          'amount: "1.234" in a file separated by semicolons may be 1234 or 1,234 (a decimal comma); write it without thousands separators, with a decimal comma, or with four decimals where it has three (1,2340)',
      },
      { line: 3, unreadable: expect.stringMatching(/^amount: "2.500.000" in a file separated by semicolons may be 2500000 /) },
      { line: 4, row: { amount: '12.50', subject: 'z' } },
    ]);
    expect(await records('amount,subject\n1.234,x\n', 'csv')).toEqual([{ line: 2, row: { amount: '1.234', subject: 'x' } }]);
    // A cell quoted with spaces around its number (as spreadsheets write them) is read as the number inside;
    // the advice for three decimals (KWD, BHD) is a fourth, which reads one way only.
    expect(await records('amount;subject\n"0,23 ";x\n1,2340;y\n', 'csv')).toEqual([
      { line: 2, row: { amount: '0.23', subject: 'x' } },
      { line: 3, row: { amount: '1.2340', subject: 'y' } },
    ]);
    expect(await records('probability;amount\n0.125;-0.500\n', 'csv')).toEqual([{ line: 2, row: { probability: '0.125', amount: '-0.500' } }]);
    // A tab-separated file comes from either kind of locale (Excel's "Unicode text" of a German sheet
    // stored 2.500 as 2.5): a decimal comma or point is read, three digits after either is refused.
    expect(await records('amount\tsubject\n12,50\tx\n12.50\ty\n1.234\tz\n2,500\tw\n1234,5\tv\n0,125\tu\n', 'csv')).toEqual([
      { line: 2, row: { amount: '12.50', subject: 'x' } },
      { line: 3, row: { amount: '12.50', subject: 'y' } },
      {
        line: 4,
        unreadable:
          'amount: "1.234" in a file separated by tabs may be 1234 or 1,234 (a decimal comma); write it without thousands separators, or with four decimals where it has three (1.2340)',
      },
      {
        line: 5,
        unreadable:
          'amount: "2,500" in a file separated by tabs may be 2500 or 2.500 (a decimal point); write it without thousands separators, or with four decimals where it has three (2,5000)',
      },
      { line: 6, row: { amount: '1234.5', subject: 'v' } },
      { line: 7, row: { amount: '0.125', subject: 'u' } },
    ]);
    // A comma file keeps commas, whatever its cells hold (tags separated by semicolons, a quoted header).
    expect(await records('"name;alias",email,tags\nAda,ada@example.com,vip;b2b;x\n', 'csv')).toEqual([
      { line: 2, row: { 'name;alias': 'Ada', email: 'ada@example.com', tags: 'vip;b2b;x' } },
    ]);
    // The header is told from its first line, however the file arrives in chunks.
    expect(await records(['na', 'me;em', 'ail\nAda;ada@exa', 'mple.com\n'], 'csv')).toEqual([{ line: 2, row: { name: 'Ada', email: 'ada@example.com' } }]);
  });

  it('takes the delimiter from the sep= line Excel writes before the header, and skips rows of delimiters only', async () => {
    expect(await records('\uFEFFsep=;\r\nname;email\r\nAda;ada@example.com\r\n;\r\nGrace;grace@example.com\r\n;;\r\n', 'csv')).toEqual([
      { line: 3, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 5, row: { name: 'Grace', email: 'grace@example.com' } },
    ]);
    expect(await records('"sep=,"\nname,email\nAda,ada@example.com\n', 'csv')).toEqual([{ line: 3, row: { name: 'Ada', email: 'ada@example.com' } }]);
  });

  it('refuses a header that names a column twice, rather than keep one of the two cells', async () => {
    const read = await records('name,email,Name\nAda,ada@example.com,Bob\n', 'csv');
    expect(read).toEqual([{ line: 1, unreadableRest: expect.stringContaining('the header names the column "name" twice; rename or remove one of them') }]);
  });

  it('finds a column named twice in a header of 150,000 columns, at once, and reads rows under a header that wide', { timeout: 10_000 }, async () => {
    // A header of 100,000 columns held the event loop 12 s: each name was searched for among all the others.
    const columns = Array.from({ length: 150_000 }, (_, i) => `c${i.toString(36)}`);
    const read = await records(`name,email,${columns.join(',')},C5\nAda,ada@example.com\n`, 'csv');
    expect(read).toEqual([{ line: 1, unreadableRest: expect.stringContaining('the header names the column "c5" twice; rename or remove one of them') }]);
    const [wide] = await records(`name,email,${columns.join(',')}\nAda,ada@example.com${','.repeat(columns.length)}\n`, 'csv');
    expect(wide).toMatchObject({ line: 2, row: { name: 'Ada', email: 'ada@example.com', c0: '', [columns.at(-1)!]: '' } });
  });

  it('tells the delimiter from the header after blank lines before it, with the line numbers of the file', async () => {
    // Told from the blank first line, the file was read with commas: one column `name;e_mail;phone`, every row refused.
    expect(await records('\nName;E-Mail;Phone\nAda;ada@example.com;+44 20 7946 0000\n', 'csv')).toEqual([
      { line: 3, row: { name: 'Ada', email: 'ada@example.com', phone: '+44 20 7946 0000' } },
    ]);
    // Blank lines of spaces or delimiters only, a byte order mark, CR LF cut by the chunks' ends.
    expect(await records(['\uFEFF\r', '\n  \r\n,,,\r\nName;E-Mail\r', '\nAda;ada@example.com\r\n\r\nGrace;grace@example.com'], 'csv')).toEqual([
      { line: 5, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 7, row: { name: 'Grace', email: 'grace@example.com' } },
    ]);
    // A sep= line after a blank line, and blank lines between it and the header.
    expect(await records('\nsep=;\n\nname;email\nAda;ada@example.com\n', 'csv')).toEqual([{ line: 5, row: { name: 'Ada', email: 'ada@example.com' } }]);
    // A semicolon file's numbers are read as such.
    expect(await records('\n\namount;order_id\n12,50;A-1\n', 'csv')).toEqual([{ line: 4, row: { amount: '12.50', order_id: 'A-1' } }]);
    // What cannot be read is reported at its line of the file.
    expect(await records('\n\nname,email,Name\nAda,ada@example.com,Bob\n', 'csv')).toEqual([
      { line: 3, unreadableRest: expect.stringContaining('"name" twice') },
    ]);
    expect(await records(';;\n\nname;email\n"Ada;ada@example.com\n', 'csv')).toEqual([
      { line: 4, unreadableRest: expect.stringContaining('Quote Not Closed') },
    ]);
    // A file of blank lines has no rows.
    expect(await records('\n \n;\n', 'csv')).toEqual([]);
  });

  it("reads the number columns it is told of as the import kinds' own in a semicolon file (exchange rates)", async () => {
    const rates = 'Currency;Rate;Valid From\nKRW;1.450;2021-01-01\nISK;150,5;2021-01-01\n';
    expect(await records(rates, 'csv', 'utf-8', new Set(['rate']))).toEqual([
      { line: 2, unreadable: expect.stringMatching(/^rate: "1.450" in a file separated by semicolons may be 1450 or 1,450/) },
      { line: 3, row: { currency: 'ISK', rate: '150.5', valid_from: '2021-01-01' } },
    ]);
  });

  it('skips a byte order mark before a quoted header', async () => {
    expect(await records('\uFEFF"name","email"\nAda,ada@example.com\n', 'csv')).toEqual([{ line: 2, row: { name: 'Ada', email: 'ada@example.com' } }]);
  });

  it('skips empty lines, counting them in the line numbers', async () => {
    expect(await records('name,email\n\nAda,ada@example.com\n\n\nGrace,grace@example.com', 'csv')).toEqual([
      { line: 3, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 6, row: { name: 'Grace', email: 'grace@example.com' } },
    ]);
  });

  it('reports each row with another number of fields than the header, and reads the rows after it', async () => {
    const file = ['name,email', 'Ada,ada@example.com,extra', 'Grace,grace@example.com', 'Lin', 'Bob,bob@example.com', 'Eve,eve@example.com'].join('\n');
    expect(await records(file, 'csv')).toEqual([
      { line: 2, unreadable },
      { line: 3, row: { name: 'Grace', email: 'grace@example.com' } },
      { line: 4, unreadable },
      { line: 5, row: { name: 'Bob', email: 'bob@example.com' } },
      { line: 6, row: { name: 'Eve', email: 'eve@example.com' } },
    ]);
  });

  it("reads a row padded with empty cells past the header (a spreadsheet's ;;), and still reports one with something past it", async () => {
    const file = [
      'name;email',
      'Ada;ada@example.com;;',
      'Grace;grace@example.com; ;\t',
      'Lin;lin@example.com;;x',
      'Bob;bob@example.com;"\n";',
      'Eve;eve@example.com',
      'Sam;;',
    ].join('\n');
    expect(await records(file, 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, row: { name: 'Grace', email: 'grace@example.com' } },
      { line: 4, unreadable },
      // A blank cell written on two lines: the row is named by the line it starts on.
      { line: 5, row: { name: 'Bob', email: 'bob@example.com' } },
      { line: 7, row: { name: 'Eve', email: 'eve@example.com' } },
      { line: 8, row: { name: 'Sam', email: '' } },
    ]);
    expect(await records('name,email\nAda,ada@example.com,,\nLin,,,\nGrace\n', 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, row: { name: 'Lin', email: '' } },
      { line: 4, unreadable },
    ]);
    // Under a padded header, a row may leave out the empty header cells' cells, not a named column's.
    expect(await records('name;email;;\nAda;ada@example.com\nGrace;grace@example.com;\nLin\n', 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, row: { name: 'Grace', email: 'grace@example.com' } },
      { line: 4, unreadable },
    ]);
  });

  it('reads a value under a header cell left empty under that column, by its position, and leaves the empty ones out', async () => {
    const file = ['name;email;;registered_at;', 'Ada;ada@example.com;;2024-01-01;call back!', 'Lin;lin@example.com;x;;', 'Bob;bob@example.com; ;;'].join('\n');
    expect(await records(file, 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com', registered_at: '2024-01-01', [unnamedColumn(5)]: 'call back!' } },
      { line: 3, row: { name: 'Lin', email: 'lin@example.com', [unnamedColumn(3)]: 'x', registered_at: '' } },
      { line: 4, row: { name: 'Bob', email: 'bob@example.com', registered_at: '' } },
    ]);
    expect(unnamedColumn(5)).toBe('a column without a header (column 5)');
  });

  it('gives a row with a quoted line break the line it starts on, and reads rows split across chunks', async () => {
    expect(await records(['name,email,tags\n"Ada\nLovelace",ada@ex', 'ample.com,"a;b"\nGrace,grace@example.com,\n'], 'csv')).toEqual([
      { line: 2, row: { name: 'Ada\nLovelace', email: 'ada@example.com', tags: 'a;b' } },
      { line: 4, row: { name: 'Grace', email: 'grace@example.com', tags: '' } },
    ]);
  });

  it('reads every row of a file whose lines end in CR LF, LF and a lone CR mixed, each line end ending one line', async () => {
    // An export edited on Windows, Linux and an old Mac: it was read as one row, or rows glued together.
    expect(await records('\uFEFFname,email\r\nAda,ada@example.com\nGrace,grace@example.com\rLin\r\n\n\r\rBob,bob@example.com\r\n\r\n\n', 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, row: { name: 'Grace', email: 'grace@example.com' } },
      { line: 4, unreadable },
      { line: 8, row: { name: 'Bob', email: 'bob@example.com' } },
    ]);
    // A classic Mac file (lone CRs) with rows appended on Linux, and one split in chunks between the CR and the LF of its line ends.
    expect(await records('name,email\rAda,ada@example.com\r\rGrace,grace@example.com\rLin,lin@example.com\n', 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 4, row: { name: 'Grace', email: 'grace@example.com' } },
      { line: 5, row: { name: 'Lin', email: 'lin@example.com' } },
    ]);
    expect(await records(['name,email\r', '\nAda,ada@example.com\r', '\r', '\nGrace,grace@example.com\n'], 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 4, row: { name: 'Grace', email: 'grace@example.com' } },
    ]);
    expect(await records([latin1('name,city\r\nM\u00fcller,K\u00f6ln\rZo\u00eb,Z\u00fcrich\n')], 'csv', 'windows-1252')).toEqual([
      { line: 2, row: { name: 'Müller', city: 'Köln' } },
      { line: 3, row: { name: 'Zoë', city: 'Zürich' } },
    ]);
  });

  it('keeps any line end inside a quoted cell as written, counting a CR LF there as one line', async () => {
    expect(await records('name,notes\nAda,"one\r\ntwo\rthree\nfour"\r\nGrace,"x\r\ny"\rLin,z,"extra\r\nnote"\nBob,b\n', 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', notes: 'one\r\ntwo\rthree\nfour' } },
      { line: 6, row: { name: 'Grace', notes: 'x\r\ny' } },
      // Its third cell is dropped with the line end it held: named by its last line.
      { line: 9, unreadable },
      { line: 10, row: { name: 'Bob', notes: 'b' } },
    ]);
    // A Windows file with a note on two lines, split in chunks inside it; then a quote never closed, after a blank line.
    expect(await records(['name,notes\r\nAda,"one\r', '\ntwo"\r\nLin,z,extra\r\n\r\n"Grace,g\r\n'], 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', notes: 'one\r\ntwo' } },
      { line: 4, unreadable },
      { line: 6, unreadableRest: expect.stringContaining('Quote Not Closed') },
    ]);
  });

  it("drops the ' that CSV exports put before a text a spreadsheet would run as a formula, and only that", async () => {
    const file = `name,phone,company\nAda,"'+1 555 0100","'=HYPERLINK(""x"")"\n'Tis Lin,"''+1",'-cmd\nO'Brien,'@home,'12\n`;
    expect(await records(file, 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', phone: '+1 555 0100', company: '=HYPERLINK("x")' } },
      // Two quotes before a formula-like text: the export's guard before a text that began with one.
      { line: 3, row: { name: "'Tis Lin", phone: "'+1", company: '-cmd' } },
      { line: 4, row: { name: "O'Brien", phone: '@home', company: "'12" } },
    ]);
  });

  it('reads a quote inside an unquoted cell as text', async () => {
    expect(await records('name,email\nScreen 24" Ltd,a@example.com\n', 'csv')).toEqual([{ line: 2, row: { name: 'Screen 24" Ltd', email: 'a@example.com' } }]);
  });

  it('reports the line where a quote that is never closed opens, also in the first data row', async () => {
    expect(await records(['name,email\n"Ada,ada@example.com\nLin,lin@example.com\n'], 'csv')).toEqual([
      { line: 2, unreadableRest: expect.stringContaining('(Quote Not Closed: a quote opened in this row is never closed)') },
    ]);
    expect(await records(['sep=;\nname;email\n\n"Ada;ada@example.com\n'], 'csv')).toEqual([{ line: 4, unreadableRest: expect.any(String) }]);
  });

  it('ends at a row it cannot find the end of (an unclosed quote): the rows before it, then where the file stops being readable', async () => {
    const read = await records(['name,email\nAda,ada@example.com\n\n"Grace,grace@example.com\n', 'Lin,lin@example.com\n'], 'csv');
    expect(read).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      {
        // The row whose quote is never closed starts at line 4, after the blank line 3 (it was reported at 3).
        line: 4,
        unreadableRest: expect.stringMatching(
          /^file: cannot be read from this line on \(Quote Not Closed: .+\); the rows before it are imported, none from here/,
        ),
      },
    ]);
  });

  it('ends at a row longer than MAX_ROW_CHARS instead of holding it whole', async () => {
    const piece = 'x'.repeat(64 * 1024);
    const chunks = ['name,email\nAda,ada@example.com\n"', ...Array.from({ length: Math.ceil(MAX_ROW_CHARS / piece.length) + 2 }, () => piece)];
    expect(await records(chunks, 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, unreadableRest: expect.stringContaining(`a row longer than ${MAX_ROW_CHARS} characters, an unclosed quote?`) },
    ]);
  });

  it('ends with the error of its source (a closed socket, a size bound)', { timeout: 10_000 }, async () => {
    const source = new PassThrough();
    const read = (async () => {
      const seen: ImportRecord[] = [];
      for await (const record of parseRecords(source, 'csv')) seen.push(record);
      return seen;
    })();
    source.write('name,email\nAda,ada@example.com\n');
    setImmediate(() => source.destroy(new Error('connection reset')));
    await expect(read).rejects.toThrow('connection reset');
  });
});

describe('NDJSON files', () => {
  it('reads one object per line, its keys normalised like headers, blank lines counted and skipped', async () => {
    const file = ['{"Name":"Ada","E-Mail":"ada@example.com","Marketing Consent":true}', '', '  ', '{"name":"Grace","amount":12.5}'].join('\n');
    expect(await records(file, 'ndjson')).toEqual([
      { line: 1, row: { name: 'Ada', email: 'ada@example.com', marketing_consent: true } },
      { line: 4, row: { name: 'Grace', amount: 12.5 } },
    ]);
  });

  it('reads Windows line ends, split across chunks', async () => {
    expect(await records(['{"name":"Ada"}\r', '\n{"name":"Grace"}\r\n'], 'ndjson')).toEqual([
      { line: 1, row: { name: 'Ada' } },
      { line: 2, row: { name: 'Grace' } },
    ]);
  });

  it('reads old Mac line ends (a lone CR), a CR LF split across chunks, and a last line without a line end', async () => {
    expect(await records(['{"name":"Ada"}\r{"name":"Bob"}\r', '\n{"na', 'me":"Grace"}'], 'ndjson')).toEqual([
      { line: 1, row: { name: 'Ada' } },
      { line: 2, row: { name: 'Bob' } },
      { line: 3, row: { name: 'Grace' } },
    ]);
  });

  it('reads lines ending in CR LF, LF and a lone CR mixed, blank lines of each kind counted', async () => {
    expect(await records(['{"name":"Ada"}\r\n{"name":"Bob"}\n\r\n\r{"name":"Grace"}\r', '\nnope\r{"name":"Lin"}\r\n\n'], 'ndjson')).toEqual([
      { line: 1, row: { name: 'Ada' } },
      { line: 2, row: { name: 'Bob' } },
      { line: 5, row: { name: 'Grace' } },
      { line: 6, unreadable: expect.stringMatching(/^row: not valid JSON/) },
      { line: 7, row: { name: 'Lin' } },
    ]);
  });

  it('reports a line longer than MAX_ROW_CHARS, held only up to the bound, and reads the lines after it', async () => {
    const piece = 'x'.repeat(64 * 1024);
    const long = ['{"name":"', ...Array.from({ length: Math.ceil(MAX_ROW_CHARS / piece.length) + 1 }, () => piece), '"}\n'];
    const read = await records(['{"name":"Ada"}\n', ...long, '{"name":"Lin"}\n', `{"name":"${'y'.repeat(MAX_ROW_CHARS - 11)}"}`], 'ndjson');
    expect(read.map((r) => ('row' in r ? { line: r.line, length: String(r.row.name).length } : r))).toEqual([
      { line: 1, length: 3 },
      { line: 2, unreadable: `row: longer than ${MAX_ROW_CHARS} characters` },
      { line: 3, length: 3 },
      // Exactly the bound is read.
      { line: 4, length: MAX_ROW_CHARS - 11 },
    ]);
  });

  it('reports a line that is not JSON, or JSON but not an object, and reads the lines after it', async () => {
    const file = ['{not json', 'null', '3', '"text"', '[{"name":"Ada"}]', 'true', '{"name":"Lin"}'].join('\n');
    const read = await records(file, 'ndjson');
    expect(read).toHaveLength(7);
    expect(read[0]).toMatchObject({ line: 1, unreadable: expect.stringMatching(/^row: not valid JSON \(.+\)$/) });
    for (const line of [2, 3, 4, 5, 6]) expect(read[line - 1]).toEqual({ line, unreadable: 'row: expected a JSON object' });
    expect(read[6]).toEqual({ line: 7, row: { name: 'Lin' } });
  });

  it('refuses a line whose keys name one column twice, as a CSV header that does, and reads the lines after it', async () => {
    // Found with {"registeredAt":...,"registered_at":...}: both name registered_at, and the last one silently won.
    const read = await records(
      ['{"name":"Ada","registeredAt":"1997-01-01","registered_at":"2001-01-01"}', '{"E-Mail":"a@example.com","email":"b@example.com"}', '{"name":"Lin"}'].join(
        '\n',
      ),
      'ndjson',
    );
    expect(read).toEqual([
      { line: 1, unreadable: 'row: the keys "registeredAt" and "registered_at" both name the column "registered_at"; keep one of them' },
      { line: 2, unreadable: 'row: the keys "E-Mail" and "email" both name the column "email"; keep one of them' },
      { line: 3, row: { name: 'Lin' } },
    ]);
  });

  it('refuses a line that gives one key twice in one object, at any depth (JSON.parse kept the last), not a key written inside a string', async () => {
    const read = await records(
      [
        '{"name":"Nd5","email":"nd5@x.example","name":"Nd5b"}',
        '{ "name" : "A", "tags": ["name", {"name": 1}], "note": "\\"name\\": 3, \\"name\\": 4", "e\\u006dail": "a@x.example", "email": "b@x.example" }',
        '{"name":"B","target_segment":{"tags":["a"],"tags":["b"]}}',
        '{"name":"Lin","tags":["x"],"company":{"name":"A"},"phone":"name"}',
      ].join('\n'),
      'ndjson',
    );
    expect(read).toEqual([
      { line: 1, unreadable: 'row: the key "name" is given twice; keep one of them' },
      { line: 2, unreadable: 'row: the key "email" is given twice; keep one of them' },
      { line: 3, unreadable: 'row: the key "target_segment.tags" is given twice; keep one of them' },
      { line: 4, row: { name: 'Lin', tags: ['x'], company: { name: 'A' }, phone: 'name' } },
    ]);
  });

  it('reports a line nested deeper than MAX_JSON_DEPTH as a bad row, and reads the lines after it', async () => {
    // 10,000 levels: JSON.parse takes it, but anything recursive on the value (JSON.stringify in a
    // refusal's reason) overflowed the stack and failed the whole import, the rows after it unread.
    const deep = `{"name":"Deep","email":"deep@example.com","tags":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const atBound = `{"name":"Edge","tags":${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`;
    const overBound = `{"name":"Over","tags":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`;
    const read = await records([deep, atBound, overBound, '{"name":"Lin"}'].join('\n'), 'ndjson');
    const nested = `row: nested deeper than ${MAX_JSON_DEPTH} levels`;
    expect(read).toEqual([
      { line: 1, unreadable: nested },
      { line: 2, row: { name: 'Edge', tags: expect.any(Array) } },
      { line: 3, unreadable: nested },
      { line: 4, row: { name: 'Lin' } },
    ]);
  });

  it('ends with the error of its source', { timeout: 10_000 }, async () => {
    const source = new PassThrough();
    const read = (async () => {
      const seen: ImportRecord[] = [];
      for await (const record of parseRecords(source, 'ndjson')) seen.push(record);
      return seen;
    })();
    source.write('{"name":"Ada"}\n');
    setImmediate(() => source.destroy(new Error('connection reset')));
    await expect(read).rejects.toThrow('connection reset');
  });
});

describe('text encodings', () => {
  const notUtf8 = expect.stringMatching(
    /^file: cannot be read from this line on \(it is not UTF-8 text: name the file's encoding with --encoding, .*windows-1252 for Western Europe, windows-1254 for Turkish, windows-1255 for Hebrew, shift_jis for Japanese/,
  );

  it('ends at the first line that is not UTF-8, after the rows before it, and says how to read such a file', async () => {
    const file = [Buffer.from('name,email\nZoë,zoe@example.com\n\n'), latin1('Müller,mueller@example.com\nLin,lin@example.com\n')];
    expect(await records(file, 'csv')).toEqual([
      { line: 2, row: { name: 'Zoë', email: 'zoe@example.com' } },
      { line: 4, unreadableRest: notUtf8 },
    ]);
  });

  it('finds the first line that is not UTF-8 in a file whose lines end with CR, LF and CR LF, the rows before it read', async () => {
    const crOnly = [Buffer.from('name,email\rZoë,zoe@example.com\rAda,ada@example.com\r'), latin1('Müller,mueller@example.com\rLin,lin@example.com\r')];
    expect(await records(crOnly, 'csv')).toEqual([
      { line: 2, row: { name: 'Zoë', email: 'zoe@example.com' } },
      { line: 3, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 4, unreadableRest: notUtf8 },
    ]);
    // A CR LF cut by a chunk's end is one line end; the bad line is inside the same chunk as good ones.
    const mixed = [Buffer.from('name,email\r'), Buffer.concat([Buffer.from('\nZoë,zoe@example.com\nAda,ada@example.com\r'), latin1('Müller,x@example.com\n')])];
    expect(await records(mixed, 'csv')).toEqual([
      { line: 2, row: { name: 'Zoë', email: 'zoe@example.com' } },
      { line: 3, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 4, unreadableRest: notUtf8 },
    ]);
  });

  it('reads Windows-1252 and Latin-1 files when told: accented letters and the euro sign', async () => {
    const file = [
      Buffer.from('name,email,company\nM'),
      Buffer.from([0xfc]),
      Buffer.from('ller,mueller@example.com,'),
      Buffer.from([0x80, 0x20, 0x41, 0x47, 0x0a]),
    ];
    expect(await records(file, 'csv', 'windows-1252')).toEqual([{ line: 2, row: { name: 'Müller', email: 'mueller@example.com', company: '€ AG' } }]);
  });

  it('reads the code pages of other locales when told (Turkish, Hebrew, Japanese), a character cut by the chunks included', async () => {
    const turkish = Buffer.concat([
      Buffer.from('name,email\n'),
      Buffer.from([0xd0, 0xfc, 0x6c, 0x20, 0xde, 0x61, 0x68, 0x69, 0x6e]),
      Buffer.from(',gul@example.com\n'),
    ]);
    expect(await records([turkish], 'csv', 'windows-1254')).toEqual([{ line: 2, row: { name: 'Ğül Şahin', email: 'gul@example.com' } }]);
    const hebrew = Buffer.concat([Buffer.from('name,email\n'), Buffer.from([0xf9, 0xf8, 0xe4]), Buffer.from(',sara@example.com\n')]);
    expect(await records([hebrew], 'csv', 'windows-1255')).toEqual([{ line: 2, row: { name: 'שרה', email: 'sara@example.com' } }]);
    // 日本 in Shift-JIS, each byte in a chunk of its own, on a line longer than the first bytes looked at.
    const japanese = Buffer.concat([
      Buffer.from('name,email,notes\n'),
      Buffer.from([0x93, 0xfa, 0x96, 0x7b]),
      Buffer.from(`,jp@example.com,${'x'.repeat(80)}\n`),
    ]);
    const expected = [{ line: 2, row: { name: '日本', email: 'jp@example.com', notes: 'x'.repeat(80) } }];
    expect(await records([japanese], 'csv', 'shift_jis')).toEqual(expected);
    expect(
      await records(
        [...japanese].map((byte) => Buffer.from([byte])),
        'csv',
        'shift_jis',
      ),
    ).toEqual(expected);
    // Bytes that are no Shift-JIS (a lead byte before a line end): stopped at their line, saying so.
    expect(await records([Buffer.concat([japanese, Buffer.from([0x93, 0x0a])])], 'csv', 'shift_jis')).toEqual([
      ...expected,
      { line: 3, unreadableRest: expect.stringContaining('it is not shift_jis text, as given: name the file') },
    ]);
  });

  it('refuses a UTF-8 file given as a single-byte encoding, from its first letter outside ASCII: read so it was stored garbled', async () => {
    const file = Buffer.from('name,email\nAda,ada@example.com\nFrançois,francois@example.com\n');
    expect(await records([file], 'csv', 'windows-1252')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, unreadableRest: expect.stringContaining('it is UTF-8 text, not windows-1252: ') },
    ]);
    expect(await records([file], 'csv', 'windows-1254')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, unreadableRest: expect.stringContaining('import it without --encoding') },
    ]);
  });

  it('says a file is UTF-16 without a byte order mark, and reads it when told', async () => {
    const file = Buffer.from('name,email\nZoë,zoe@example.com\n', 'utf16le');
    expect(await records([file], 'csv')).toEqual([
      {
        line: 1,
        unreadableRest: expect.stringContaining('UTF-16 text without a byte order mark (NUL bytes between the letters): read it with --encoding utf-16le'),
      },
    ]);
    expect(await records([Buffer.from(file).swap16()], 'csv', 'windows-1252')).toEqual([
      { line: 1, unreadableRest: expect.stringContaining('--encoding utf-16be') },
    ]);
    expect(await records([Buffer.from(file).swap16()], 'csv', 'utf-16be')).toEqual([{ line: 2, row: { name: 'Zoë', email: 'zoe@example.com' } }]);
  });

  it('reads a UTF-8 letter cut by the end of a chunk, and UTF-16 by its byte order mark', async () => {
    const euro = Buffer.from('€');
    const cut = [Buffer.from('name,email\nA'), euro.subarray(0, 1), euro.subarray(1, 2), Buffer.concat([euro.subarray(2), Buffer.from('B,ab@example.com\n')])];
    expect(await records(cut, 'csv')).toEqual([{ line: 2, row: { name: 'A€B', email: 'ab@example.com' } }]);
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('name,email\nZoë,zoe@example.com\n', 'utf16le')]);
    expect(await records([utf16], 'csv')).toEqual([{ line: 2, row: { name: 'Zoë', email: 'zoe@example.com' } }]);
  });

  it('ends at a letter cut short by the end of the file', async () => {
    expect(await records([Buffer.from('name,email\nAda,ada@example.com\nB'), Buffer.from('€').subarray(0, 2)], 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, unreadableRest: notUtf8 },
    ]);
  });

  it('reads NDJSON with a byte order mark, in UTF-8 or UTF-16 (a code unit cut by the end of a chunk)', async () => {
    expect(await records([Buffer.from('\uFEFF{"name":"Zoë"}\n')], 'ndjson')).toEqual([{ line: 1, row: { name: 'Zoë' } }]);
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"name":"Zoë"}\n{"name":"€"}\n', 'utf16le')]);
    expect(await records([utf16.subarray(0, 7), utf16.subarray(7)], 'ndjson')).toEqual([
      { line: 1, row: { name: 'Zoë' } },
      { line: 2, row: { name: '€' } },
    ]);
    const bigEndian = Buffer.from('\uFEFF{"name":"Zoë"}\n', 'utf16le').swap16();
    expect(await records([bigEndian], 'ndjson')).toEqual([{ line: 1, row: { name: 'Zoë' } }]);
  });

  it('reads a file with a UTF-8 byte order mark as UTF-8, whatever the encoding given (Windows-1252, Latin-1)', async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const file = Buffer.concat([bom, Buffer.from('id,name,email\nc-1,François,francois@example.com\n')]);
    const expected = [{ line: 2, row: { id: 'c-1', name: 'François', email: 'francois@example.com' } }];
    expect(await records([file], 'csv', 'windows-1252')).toEqual(expected);
    // The mark cut by the chunks' ends.
    expect(await records([file.subarray(0, 1), file.subarray(1, 2), file.subarray(2)], 'csv', 'windows-1252')).toEqual(expected);
    const ndjson = Buffer.concat([bom, Buffer.from('{"name":"François"}\n')]);
    expect(await records([ndjson], 'ndjson', 'windows-1252')).toEqual([{ line: 1, row: { name: 'François' } }]);
    // Not UTF-8 after all: stopped at its line, as any UTF-8 file, saying what the mark said.
    expect(await records([Buffer.concat([file, latin1('c-2,Müller,m@example.com\n')])], 'csv', 'windows-1252')).toEqual([
      ...expected,
      { line: 3, unreadableRest: expect.stringContaining('it is not UTF-8 text, as its byte order mark says') },
    ]);
    // A UTF-16 mark too says what the file is.
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('name,email\nZoë,zoe@example.com\n', 'utf16le')]);
    expect(await records([utf16], 'csv', 'windows-1252')).toEqual([{ line: 2, row: { name: 'Zoë', email: 'zoe@example.com' } }]);
    // Without a mark, the bytes are Windows-1252 as told (these three are "ï»¿" there).
    // (with a letter that is no UTF-8: alone, these bytes are UTF-8's mark, refused as UTF-8 given as Windows-1252).
    expect(await records([latin1('name,email\nï»¿Müller,x@example.com\n')], 'csv', 'windows-1252')).toEqual([
      { line: 2, row: { name: 'ï»¿Müller', email: 'x@example.com' } },
    ]);
  });

  it('ends at the first line that is not UTF-16 (a lone surrogate), after the rows before it, at its line', async () => {
    const notUtf16 = expect.stringMatching(/^file: cannot be read from this line on \(it is not UTF-16 text, as its byte order mark says/);
    const utf16 = (text: string, bigEndian = false) => {
      const bytes = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
      return bigEndian ? bytes.swap16() : bytes;
    };
    // `\uD800` alone was read as U+FFFD and stored so: "Second � Lone".
    const file = utf16('name,email\r\nFirst,first@example.com\r\n\r\nSecond \uD800 Lone,second@example.com\r\nThird,third@example.com\r\n');
    const expected = [
      { line: 2, row: { name: 'First', email: 'first@example.com' } },
      { line: 4, unreadableRest: notUtf16 },
    ];
    expect(await records([file], 'csv')).toEqual(expected);
    // Cut anywhere by the chunks' ends (a code unit, a CR LF), big-endian too.
    for (const at of [3, 25, 46, 47, 48, 60]) expect(await records([file.subarray(0, at), file.subarray(at)], 'csv')).toEqual(expected);
    expect(await records([utf16('name,email\nFirst,first@example.com\n\nSecond \uD800 Lone,x\n', true)], 'csv')).toEqual(expected);
    // A low surrogate alone, in NDJSON; a pair is a letter.
    expect(await records([utf16('{"name":"😀"}\n{"name":"\uDE00"}\n{"name":"Lin"}\n')], 'ndjson')).toEqual([
      { line: 1, row: { name: '😀' } },
      { line: 2, unreadableRest: notUtf16 },
    ]);
    // The file ends inside a pair, or inside a code unit.
    expect(await records([utf16('name,email\nAda,ada@example.com\n\uD83D')], 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, unreadableRest: notUtf16 },
    ]);
    expect(await records([utf16('name,email\nAda,ada@example.com\nB').subarray(0, -1)], 'csv')).toEqual([
      { line: 2, row: { name: 'Ada', email: 'ada@example.com' } },
      { line: 3, unreadableRest: notUtf16 },
    ]);
  });

  it('ends an NDJSON file at its first line that is not UTF-8', async () => {
    expect(await records([Buffer.from('{"name":"Ada"}\n'), latin1('{"name":"Müller"}\n{"name":"Lin"}\n')], 'ndjson')).toEqual([
      { line: 1, row: { name: 'Ada' } },
      { line: 2, unreadableRest: notUtf8 },
    ]);
    expect(await records([latin1('{"name":"Müller"}\n')], 'ndjson', 'windows-1252')).toEqual([{ line: 1, row: { name: 'Müller' } }]);
  });
});
