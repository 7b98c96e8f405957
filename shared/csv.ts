/**
 * The characters a spreadsheet may start a cell after, inside a quoted value too: Excel opening a file
 * by double-click splits each line on its locale's list separator (`;` in German or French, `,` in
 * English) and at line ends, and honours a quote only at the start of a cell. In such a sheet
 * `"Eve;=cmd|' /C calc'!A0"` was the cells `"Eve` and `=cmd|' /C calc'!A0`, a formula.
 */
const CELL_BREAK = '[,;\\t\\r\\n]';
/** How a cell a spreadsheet would run as a formula starts (its quotes, which it may drop, before the sign). */
const FORMULA_START = `"*[=+\\-@\\t\\r]`;
/**
 * Where the guard `'` goes: at the start of the text and after every cell break, before a formula
 * start, and before a text that already starts with the guard's `'` there (so that reading the guard
 * back leaves its own `'`: `'=Apostrophe Name` came back as `=Apostrophe Name`).
 */
const GUARDED_PLACE = new RegExp(`(?<=^|${CELL_BREAK})(?='*${FORMULA_START})`, 'g');
/** Whether a text holds such a place at all. */
const NEEDS_GUARD = new RegExp(`(?:^|${CELL_BREAK})'*${FORMULA_START}`);
/**
 * The guard `csvField` put there: one `'` at such a place. A `'` at a place before `'*` and a formula
 * start is always a guard (a text holding one there was guarded too), and a guard adds no place, so
 * dropping one at each is exactly the text written.
 */
const GUARD = new RegExp(`(?<=^|${CELL_BREAK})'(?='*${FORMULA_START})`, 'g');
/** A negative number is the one text starting with `-` that a spreadsheet reads as data (`-2+3` is a formula). */
const NEGATIVE_NUMBER = /^-\d+([.,]\d+)?([eE][-+]?\d+)?$/;

/**
 * One CSV field, the one way every CSV this CRM writes (exports, audit trails, import reports) quotes
 * a value: RFC 4180 quoting (a field holding a comma, semicolon, quote, CR or LF is quoted, its quotes
 * doubled, so a file separated by commas or semicolons reads the same), and every place where a
 * spreadsheet may start a cell that it would run as a formula (the text's start, and after each comma,
 * semicolon, tab or line end in it; a cell starting with `=`, `+`, `-`, `@`, a tab or a CR, quotes
 * before them included, unless the whole text is a negative number) prefixed with `'`, as OWASP
 * advises against CSV injection: a customer named `=HYPERLINK(...)` must not run in the spreadsheet
 * of whoever opens the export. NDJSON is the exact form of the same data.
 */
export const csvField = (text: string): string => {
  // Tested first: most texts hold no such place, and the test is quicker than the replacement.
  const safe = NEGATIVE_NUMBER.test(text) || !NEEDS_GUARD.test(text) ? text : text.replace(GUARDED_PLACE, "'");
  return /[",;\n\r]/.test(safe) || safe !== text ? `"${safe.replaceAll('"', '""')}"` : safe;
};

/**
 * A field read back from a CSV: the `'`s that `csvField` put before formula-like cells go, so an
 * export imports again as it was. Spreadsheets write such a text without the mark, so a CSV holds it
 * only as the guard.
 */
export const unguardedCsvField = (value: string): string => (value.includes("'") ? value.replace(GUARD, '') : value);

/**
 * The delimiter between a CSV's fields: a comma, or a semicolon for a spreadsheet in a locale whose
 * list separator it is (German, French, ...), which opens a file separated by commas as one column.
 */
export type CsvDelimiter = ',' | ';';

/**
 * A number as a CSV cell, in plain decimals: `String()` writes 1e21 and more (a sum past every bound
 * the figures are exact within) and below 1e-6 in exponent notation, which spreadsheets read as text or
 * round, and which no import of this CRM reads as an amount. In a file separated by semicolons, with a
 * decimal comma, as a spreadsheet of such a locale writes it (and reads a decimal point as text or a
 * date) and as this CRM's import reads it there (where it refuses `1.234` as perhaps a thousand).
 */
export const csvNumber = (value: number, delimiter: CsvDelimiter = ','): string => {
  const written =
    Number.isFinite(value) && value !== 0 && (Math.abs(value) >= 1e21 || Math.abs(value) < 1e-6)
      ? value.toLocaleString('en-US', { useGrouping: false, maximumFractionDigits: 20 })
      : String(value);
  return delimiter === ';' ? written.replace('.', ',') : written;
};
