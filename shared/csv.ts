/** How a text a spreadsheet would run as a formula starts. */
const FORMULA_START = /^[=+\-@\t\r]/;
/** A negative number is the one text starting with `-` that a spreadsheet reads as data (`-2+3` is a formula). */
const NEGATIVE_NUMBER = /^-\d+(\.\d+)?([eE][-+]?\d+)?$/;
/**
 * A text that already starts with the guard's `'` before a formula-like rest: it is guarded once more,
 * so that reading the guard back leaves its own `'` (`'=Apostrophe Name` came back as `=Apostrophe Name`).
 */
const LOOKS_GUARDED = /^'+[=+\-@\t\r]/;

/**
 * One CSV field, the one way every CSV this CRM writes (exports, audit trails, import reports) quotes
 * a value: RFC 4180 quoting (a field holding a comma, semicolon, quote, CR or LF is quoted, its quotes
 * doubled), and a text a spreadsheet would run as a formula (one starting with `=`, `+`, `-`, `@`, a
 * tab or a CR, unless it is a negative number) prefixed with `'`, as OWASP advises against CSV
 * injection: a customer named `=HYPERLINK(...)` must not run in the spreadsheet of whoever opens the
 * export. NDJSON is the exact form of the same data.
 */
export const csvField = (text: string): string => {
  const safe = (FORMULA_START.test(text) && !NEGATIVE_NUMBER.test(text)) || LOOKS_GUARDED.test(text) ? `'${text}` : text;
  return /[",;\n\r]/.test(safe) || safe !== text ? `"${safe.replaceAll('"', '""')}"` : safe;
};

/**
 * A field read back from a CSV: the `'` that `csvField` put before a formula-like text goes, so an
 * export imports again. Spreadsheets write such a text without the mark, so a CSV holds it only as the guard.
 */
export const unguardedCsvField = (value: string): string =>
  value.charCodeAt(0) === 0x27 && (FORMULA_START.test(value.slice(1)) || LOOKS_GUARDED.test(value.slice(1))) ? value.slice(1) : value;

/**
 * A number as a CSV cell, in plain decimals: `String()` writes 1e21 and more (a sum past every bound
 * the figures are exact within) and below 1e-6 in exponent notation, which spreadsheets read as text or
 * round, and which no import of this CRM reads as an amount.
 */
export const csvNumber = (value: number): string =>
  Number.isFinite(value) && value !== 0 && (Math.abs(value) >= 1e21 || Math.abs(value) < 1e-6)
    ? value.toLocaleString('en-US', { useGrouping: false, maximumFractionDigits: 20 })
    : String(value);
