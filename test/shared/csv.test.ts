import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRecords } from '../../commands/import/parse.ts';
import { csvField, csvNumber, unguardedCsvField, type CsvDelimiter } from '../../shared/csv.ts';

/**
 * The cells Excel makes of a line when it opens a file by double-click in a locale whose list
 * separator differs from the file's: split at every `;` (German, French) or `,` (English), tab and
 * line end, quotes or not; a quote is honoured only at the start of a cell (dropped here).
 */
const cellsASpreadsheetSplits = (text: string): string[] => text.split(/[,;\t\r\n]/).map((cell) => cell.replace(/^"+/, ''));

/** A cell Excel runs as a formula: one starting with = + - @ (a tab or a CR too, as OWASP lists them), unless a negative number. */
const runsAsFormula = (cell: string): boolean => /^[=+\-@\t\r]/.test(cell) && !/^-\d+([.,]\d+)?$/.test(cell);

/** Texts a spreadsheet user can type, made of the characters that matter to the guard and to CSV quoting. */
const trickyText = fc.string({
  unit: fc.constantFrom("'", '"', '=', '+', '-', '@', '\t', '\r', '\n', '\r\n', ',', ';', ' ', 'a', 'ü', '1', '.'),
  maxLength: 12,
});

/** Every CSV this CRM writes (exports, audit trails, import reports) quotes through one function. */
describe('a CSV field', () => {
  it('is the text itself when nothing in it needs quoting', () => {
    expect(csvField('Ada Lovelace')).toBe('Ada Lovelace');
    expect(csvField('')).toBe('');
    expect(csvField('2026-12-02T03:00:00.000Z')).toBe('2026-12-02T03:00:00.000Z');
  });

  it('is quoted, its quotes doubled, when it holds a comma, semicolon, quote, CR or LF (RFC 4180)', () => {
    expect(csvField('Lovelace, Ada')).toBe('"Lovelace, Ada"');
    expect(csvField('vip;b2b')).toBe('"vip;b2b"');
    expect(csvField('Bob "the builder"')).toBe('"Bob ""the builder"""');
    expect(csvField('line\nbreak')).toBe('"line\nbreak"');
    expect(csvField('carriage\rreturn')).toBe('"carriage\rreturn"');
  });

  it('never runs as a formula in a spreadsheet: a text starting with = + - @, a tab or a CR is prefixed with a quote', () => {
    expect(csvField('=HYPERLINK("http://evil.example","click")')).toBe(`"'=HYPERLINK(""http://evil.example"",""click"")"`);
    expect(csvField('+1 555 0100')).toBe(`"'+1 555 0100"`);
    expect(csvField('-2+3')).toBe(`"'-2+3"`);
    expect(csvField('-cmd|calc')).toBe(`"'-cmd|calc"`);
    expect(csvField('@SUM(A1)')).toBe(`"'@SUM(A1)"`);
    // A tab or a CR both starts a formula and splits a cell: the `=` after it is guarded too.
    expect(csvField('\t=1')).toBe(`"'\t'=1"`);
    expect(csvField('\r=1')).toBe(`"'\r'=1"`);
  });

  it('starts no cell a formula where a spreadsheet splitting on ; , tab or line ends would start one, inside a quoted value too', () => {
    for (const text of ["Eve;=cmd|' /C calc'!A0;", 'Bitte prüfen\n=1+1;', 'x,@SUM(A1)', 'x\t+1', 'x\r\n-2+3', 'a;"=1', 'a;\t=1', "a;'=1"]) {
      const line = ['id', csvField(text), 'x'].join(';');
      expect(cellsASpreadsheetSplits(line).filter(runsAsFormula), text).toEqual([]);
    }
    fc.assert(
      fc.property(trickyText, (text) => {
        expect(cellsASpreadsheetSplits(csvField(text)).filter(runsAsFormula)).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });

  it('leaves numbers as numbers, negative ones included', () => {
    expect(csvField('-12.50')).toBe('-12.50');
    expect(csvField('-1.5e-3')).toBe('-1.5e-3');
    expect(csvField('42')).toBe('42');
  });
});

describe('a CSV field read back', () => {
  /** The field's text as a CSV reader gives it (quotes undone), then unguarded. */
  const roundTrip = (text: string): string => {
    const field = csvField(text);
    const unquoted = field.startsWith('"') ? field.slice(1, -1).replaceAll('""', '"') : field;
    return unguardedCsvField(unquoted);
  };

  it('is the text written, formula-like or not, and one that starts with the guard itself keeps its quote', () => {
    for (const text of [
      'Ada',
      '=SUM(A1)',
      '+1 555',
      '-2+3',
      '-12.50',
      "'=Apostrophe Name",
      "'@Quoted Co",
      "''=twice",
      "'plain",
      "'",
      "'-5",
      "Eve;=cmd|' /C calc'!A0;",
      "Eve;'=cmd",
      "a\n''\"=1",
      ';\r=',
      'x;-5',
    ]) {
      expect(roundTrip(text), text).toBe(text);
    }
  });

  it('is the text written, whatever it holds, read by the import from a file separated by commas or by semicolons', async () => {
    /** The `name` cells the import reads from a file of these texts, with a byte order mark or not. */
    const imported = async (texts: string[], delimiter: CsvDelimiter, bom: boolean): Promise<unknown[]> => {
      const lines = [`${bom ? '\uFEFF' : ''}id${delimiter}name`, ...texts.map((text, i) => `${i}${delimiter}${csvField(text)}`)];
      const names: unknown[] = [];
      for await (const record of parseRecords(Readable.from([Buffer.from(`${lines.join('\r\n')}\r\n`)]), 'csv'))
        names.push('row' in record ? record.row.name : record);
      return names;
    };
    // The import trims cells (a spreadsheet pads them), which a quoted cell keeps: texts that start or end with a blank are left out.
    const untrimmed = trickyText.filter((text) => text === text.trim() || csvField(text).startsWith('"'));
    await fc.assert(
      fc.asyncProperty(
        fc.array(untrimmed, { minLength: 1, maxLength: 5 }),
        fc.constantFrom<CsvDelimiter>(',', ';'),
        fc.boolean(),
        async (texts, delimiter, bom) => {
          expect(await imported(texts, delimiter, bom)).toEqual(texts);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("drops the guard a spreadsheet's own text does not carry", () => {
    expect(unguardedCsvField("'=1")).toBe('=1');
    expect(unguardedCsvField("'plain")).toBe("'plain");
  });
});

describe('a CSV number', () => {
  it('is written in plain decimals, never in exponent notation', () => {
    expect(csvNumber(2.6999999999999998e22)).toBe('26999999999999998000000');
    expect(csvNumber(-1e21)).toBe('-1000000000000000000000');
    expect(csvNumber(1.5e-7)).toBe('0.00000015');
    expect(csvNumber(1234.5678)).toBe('1234.5678');
    expect(csvNumber(0)).toBe('0');
    expect(csvNumber(-0.25)).toBe('-0.25');
  });

  it('is written as String() writes it between those bounds, with every digit, and 0 without a sign', () => {
    // 22 decimals: a plain writing of every number would keep only 20 of them.
    expect(csvNumber(1.2345678901234567e-6)).toBe('0.0000012345678901234567');
    expect(csvNumber(1e-6)).toBe('0.000001');
    // A refund of nothing, or a sum of such, is -0 in JavaScript; a cell shows 0.
    expect(csvNumber(-0)).toBe('0');
    expect(csvNumber(-0, ';')).toBe('0');
    expect(csvNumber(Number.POSITIVE_INFINITY)).toBe('Infinity');
    expect(csvNumber(Number.NaN)).toBe('NaN');
  });

  it('has a decimal comma in a file separated by semicolons', () => {
    expect(csvNumber(1.234, ';')).toBe('1,234');
    expect(csvNumber(-0.25, ';')).toBe('-0,25');
    expect(csvNumber(1.5e-7, ';')).toBe('0,00000015');
    expect(csvNumber(42, ';')).toBe('42');
  });
});
