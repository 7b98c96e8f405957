import { describe, expect, it } from 'vitest';
import { csvField, csvNumber, unguardedCsvField } from '../../shared/csv.ts';

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
    expect(csvField('\t=1')).toBe(`"'\t=1"`);
    expect(csvField('\r=1')).toBe(`"'\r=1"`);
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
    for (const text of ['Ada', '=SUM(A1)', '+1 555', '-2+3', '-12.50', "'=Apostrophe Name", "'@Quoted Co", "''=twice", "'plain", "'", "'-5"]) {
      expect(roundTrip(text), text).toBe(text);
    }
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
});
