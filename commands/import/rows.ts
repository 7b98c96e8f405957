import { hash as digest } from 'node:crypto';
import { IsoDateTimeText, normaliseEmail } from '../../domain/shared.ts';
import { earlierOf, inUtc, isWellBefore } from '../../domain/time.ts';
import { createdIdFor } from '../ids.ts';
import { terminalText } from '../../shared/terminal-text.ts';
import { commandSchemas, type CommandType } from '../schemas.ts';

/**
 * File rows -> commands. A row's columns are mapped to a command's fields and nothing more: every
 * check (required fields, formats, NUL characters, ranges) is the command schema's and the
 * decider's, so a file refuses exactly what the API refuses. Each command carries an idempotency key
 * derived from the file kind and the row's natural key (email, order id, ...), so importing a file
 * again, or resuming an interrupted import, appends nothing twice.
 */

export const importKinds = ['customers', 'purchases', 'refunds', 'deals', 'campaigns', 'responses', 'costs', 'feedback', 'activities'] as const;
export type ImportKind = (typeof importKinds)[number];
export const isImportKind = (kind: unknown): kind is ImportKind => importKinds.includes(kind as ImportKind);

/** What one row asks for: usually one command, two when a row also records an outcome (a won deal). */
export interface RowCommand {
  command: { type: ImportedCommandType; [field: string]: unknown };
  key: string;
  /** Business time from the file, when the command's schema does not take it as a field. */
  occurredAt?: string;
  /**
   * The reason recorded in the event's metadata, from the file (a won deal's `won_reason`, which the
   * deal shows as `wonReason`); `null`: none. Absent: the import's own (`import of deals (line 7)`).
   */
  reason?: string | null;
  /**
   * The commands earlier versions of the importer built from the same row, where they differ (they
   * invented values the file did not hold, or left out columns they did not read): a row they stored
   * is still the same row (ctx.fingerprint).
   */
  formerly?: { type: CommandType; [field: string]: unknown }[];
}

export type Row = Record<string, unknown>;

/** What a run gives every row (commands/import/default-owner.ts). */
export interface RowOptions {
  /** The owner (a user id, checked) of the customers and deals whose row leaves `owner_id` empty. */
  defaultOwner?: string;
  /** How the caller names a default owner (`--default-owner <userId>`), for the reason of a deal row without an owner. */
  defaultOwnerHint?: string;
  /**
   * The id of a customer named by address alone (a customers row without `id`, a purchase with only
   * `customer_email`): BatchCommands.importedCustomerId, keyed per installation.
   */
  customerIdFor?: (email: string) => string;
  /** The currency of a row that names none: the installation's base currency (CRM_BASE_CURRENCY); EUR without. */
  currency?: string;
  /**
   * Build the row's key with its times spelt as an importer before did (FormerKeys); without, a time
   * in a key is its instant in UTC, however the file writes it.
   */
  formerKeys?: FormerKeys;
  /**
   * The key a customers row's registration is stored under, where it is not the row's own: that of
   * its address as spelt by the file an importer before took it from (BatchCommands.registeredAs).
   */
  registeredUnder?: string;
}

/**
 * How importers before spelt a row's natural key: `written`, a deal's opening as the file wrote it
 * and other times as read (ISO text as given, `+01:00` and all); `dated`, a deal's opening at midnight
 * UTC as its day (`2024-06-01`, as most deals files write it). A customer's address, keyed as its file
 * spelt it until 2026-12-07, is found by its registration (RowOptions.registeredUnder): the file may
 * spell it otherwise now.
 */
export type FormerKeys = 'written' | 'dated';

/**
 * The former key spellings of each kind whose key holds a time: a row whose key under one of them is
 * stored is that row, imported before (commands/import/importer.ts keyedAsBefore).
 */
export const FORMER_KEYS: Partial<Record<ImportKind, readonly FormerKeys[]>> = {
  deals: ['written', 'dated'],
  refunds: ['written'],
  costs: ['written'],
  feedback: ['written'],
  activities: ['written'],
};

/**
 * A time as a row's natural key holds it: the instant in UTC, so that a row is known by what it
 * means, not by how its file spells it (a spreadsheet re-saves `2024-06-01` as `01.06.2024`, an
 * export writes `+01:00` as `Z`). `written` is the spelling importers before keyed it by.
 */
const keyTime = (options: RowOptions, time: string | undefined, written: string | undefined = time): string => {
  const utc = time === undefined ? undefined : inUtc(time);
  if (options.formerKeys === undefined) return utc ?? '';
  if (options.formerKeys === 'dated' && utc?.endsWith('T00:00:00.000Z')) return utc.slice(0, 10);
  return written ?? '';
};

/**
 * A cell's value as a reason quotes it, cut after `max` characters. JSON escapes C0 controls only:
 * DEL, C1 controls (U+009B opens a terminal's control sequence as ESC [ does) and direction controls
 * are escaped too, as the report reaches a terminal or a spreadsheet.
 */
export const shownValue = (value: unknown, max = 60): string => {
  // A number as itself: JSON has no Infinity or NaN, and NDJSON's 1e400 read as "null".
  const text = typeof value === 'string' ? value : typeof value === 'number' ? String(value) : JSON.stringify(value);
  if (text.length <= max) return terminalText(JSON.stringify(text));
  // Cut between two characters, not inside a pair of UTF-16 units (an emoji read as "\ud83d...").
  const end = /[\ud800-\udbff]/.test(text[max - 1]!) ? max - 1 : max;
  return terminalText(JSON.stringify(`${text.slice(0, end)}...`));
};

/** A row that cannot become a command; the message names the column or field. */
export class RowRejected extends Error {}

/**
 * How deep JSON a row may hold (the row object itself is level 1; a campaign's target segment with its
 * tags is 3). `JSON.parse` reads any depth, but code that walks a value recursively does not:
 * a line of 10,000 nested arrays overflowed the stack in `JSON.stringify` (the refusal's reason),
 * which failed the whole import (a RangeError is no refusal), the rows after it unread.
 */
export const MAX_JSON_DEPTH = 32;

/** Whether `value` holds arrays or objects more than `max` levels deep; walked without recursion. */
export const nestedDeeperThan = (value: unknown, max: number): boolean => {
  const pending: [unknown, number][] = [[value, 1]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [item, depth] = next;
    if (item === null || typeof item !== 'object') continue;
    if (depth > max) return true;
    for (const inner of Object.values(item)) if (inner !== null && typeof inner === 'object') pending.push([inner, depth + 1]);
  }
  return false;
};

/**
 * A column's name as the importer knows it: trimmed, lower case, words joined by one underscore. Words
 * are told by spaces, dashes and camel case, so the API's and the exports' own names (`registeredAt`,
 * `marketingConsent`, NDJSON keys) name the same columns as `registered_at`. Invisible characters
 * (a zero-width space, a direction mark pasted with a name) are dropped: `email\u200e` named no column.
 */
export const normalizeHeader = (header: string) =>
  header
    .replace(/[\p{Cf}\p{Default_Ignorable_Code_Point}]/gu, '')
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[\s-]+/g, '_')
    // `E-Mail` (as German and other spreadsheets head the column) is `email`, `Customer E-Mail` `customer_email`.
    .replace(/(^|_)e_mail(?=_|$)/g, '$1email');

/** Which file is it, from its columns (the first row of an NDJSON file). */
export const detectKind = (headers: string[]): ImportKind | undefined => {
  const h = new Set(headers.map(normalizeHeader));
  // A refund's columns beside an order's: the README's refunds layout (`reason`) was read as purchases,
  // and each refund was recorded as another purchase of its amount.
  if (h.has('refund_id') || (h.has('order_id') && (h.has('refund_reason') || h.has('reason') || h.has('refunded_at')))) return 'refunds';
  if (h.has('order_id') && h.has('amount')) return 'purchases';
  // A deal's title beside any column of a deal's (an old CRM's export may have no expected close date).
  if (h.has('title') && ['expected_close_date', 'stage', 'opened_at', 'closed_at', 'won_reason', 'lost_reason', 'probability'].some((c) => h.has(c)))
    return 'deals';
  if (h.has('campaign_id') && (h.has('response') || h.has('kind')) && (h.has('customer_id') || h.has('customer_email'))) return 'responses';
  if (h.has('campaign_id') && (h.has('cost_id') || (h.has('amount') && !h.has('customer_id') && !h.has('customer_email')))) return 'costs';
  if (h.has('channel') && h.has('budget')) return 'campaigns';
  // An activities export has a subject and a body as feedback has, and columns feedback has not.
  if (h.has('subject') && (h.has('activity_id') || h.has('deal_id') || h.has('due_at') || h.has('completed_at') || h.has('logged_by'))) return 'activities';
  if (h.has('subject') && (h.has('body') || h.has('submitted_at') || h.has('priority'))) return 'feedback';
  if (h.has('email') && h.has('name')) return 'customers';
  return undefined;
};

const hash = (text: string) => digest('sha256', text, 'hex');

/** The id of a customer the row names by address alone (RowOptions.customerIdFor). */
const customerIdOf = (email: string, options: RowOptions): string => {
  if (!options.customerIdFor) throw new TypeError('An import row that names its customer by address needs RowOptions.customerIdFor');
  return options.customerIdFor(email);
};

/** Text of a cell; NDJSON values that are not strings (numbers, booleans) are kept as they are. */
const cell = (row: Row, ...names: string[]): unknown => {
  for (const name of names) {
    const value = row[name];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') return value;
    if (value.trim() !== '') return value.trim();
  }
  return undefined;
};
const text = (row: Row, ...names: string[]): string | undefined => {
  const value = cell(row, ...names);
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value;
  const refused = (why: string) => new RowRejected(`${names.find((name) => cell(row, name) !== undefined)!}: ${why}`);
  // NDJSON's 1e400 is read as Infinity, which JSON.stringify writes as null: a customer came in named "null".
  if (typeof value === 'number' && !Number.isFinite(value)) throw refused('a number out of range (1e400 and the like read as Infinity)');
  // JSON.parse rounds an integer past 2^53 to the nearest number it holds (9007199254740993 reads as
  // ...992): two order ids came in as one, and the text stored was not the file's.
  if (typeof value === 'number' && Math.abs(value) > Number.MAX_SAFE_INTEGER)
    throw refused(`a number beyond 2^53 loses digits (it reads as ${JSON.stringify(value)}): write it as a string, in quotes`);
  // An NDJSON object or array where text is expected: the API refuses one, and its JSON came in as a name.
  if (typeof value === 'object') throw refused(`a JSON ${Array.isArray(value) ? 'array' : 'object'} where text is expected`);
  return JSON.stringify(value);
};

/** An id a spreadsheet turned into a number in scientific notation (`1,23457E+11`): its digits are lost. */
const SCIENTIFIC = /^\d+([.,]\d+)?e[+-]?\d+$/i;

/**
 * An id column: its text, refused when a spreadsheet rewrote it as a number in scientific notation.
 * Order `123456789012` saved as `1,23457E+11` came in as a new order. Leading zeros a spreadsheet
 * dropped cannot be told (`00042` and `42` are two ids): the README says to format id columns as text.
 */
const idText = (row: Row, ...names: string[]): string | undefined => {
  const value = text(row, ...names);
  if (value === undefined || !SCIENTIFIC.test(value)) return value;
  const column = names.find((name) => cell(row, name) !== undefined)!;
  throw new RowRejected(`${column}: the spreadsheet turned this id into a number (${value}): format the column as text before saving`);
};

/**
 * A word from a list (a status, a channel, a response kind), read in any case: `Clicked` as a
 * spreadsheet capitalises it was refused while a deal's stage `Qualified` was read.
 */
const word = (row: Row, ...names: string[]): string | undefined => text(row, ...names)?.toLowerCase();

/**
 * The words a yes/no column reads, in any case: German and French Excel write its TRUE and FALSE as
 * WAHR/FALSCH and VRAI/FAUX, and save them so.
 */
const YES = ['true', 'yes', 'y', '1', 'wahr', 'vrai'];
const NO = ['false', 'no', 'n', '0', 'falsch', 'faux'];

/**
 * A yes/no column: one of the words above, or an NDJSON value as it is (the schema refuses one that is
 * no boolean). Other text is refused naming the column and what it reads: the schema's `expected
 * boolean, received string` did not say that `1` or `yes` would do.
 */
const booleanOf = (row: Row, ...names: string[]): unknown => {
  const value = cell(row, ...names);
  if (typeof value !== 'string') return value;
  const v = value.toLowerCase();
  if (YES.includes(v)) return true;
  if (NO.includes(v)) return false;
  const column = names.find((name) => cell(row, name) !== undefined)!;
  throw new RowRejected(`${column}: ${shownValue(value, 40)} is not a yes or no; write ${YES.join(', ')} or ${NO.join(', ')} (in any case)`);
};

/**
 * The columns read as numbers (numberOf). A file in a decimal-comma locale writes them `12,50`
 * (commands/import/parse.ts reads them so when the file's delimiter is a semicolon).
 */
export const NUMBER_COLUMNS: ReadonlySet<string> = new Set(['amount', 'budget', 'probability', 'probability_override', 'revenue', 'csat', 'nps']);
const PROBABILITY_COLUMNS: ReadonlySet<string> = new Set(['probability', 'probability_override']);
const MONEY_COLUMNS: ReadonlySet<string> = new Set(['amount', 'budget', 'revenue']);

/**
 * A number column: plain decimals (`12`, `-3`, `12.50`), or an NDJSON number as it is. Anything else
 * is refused naming the column and how to write it: the schema's `expected number, received string`
 * told a spreadsheet user nothing (every cell of a CSV file is text).
 */
const numberOf = (row: Row, column: string): unknown => {
  const value = cell(row, column);
  if (typeof value !== 'string') return value;
  const n = Number(value);
  if (Number.isFinite(n) && /^-?\d+(\.\d+)?$/.test(value)) {
    // Counted in the text: as a number, 899999999999.99995 is already 900000000000, and the command's
    // check sees 0 decimals. Trailing zeros do not count (a database's export writes 12.500000).
    if (MONEY_COLUMNS.has(column) && (/\.(\d*?)0*$/.exec(value)?.[1]?.length ?? 0) > 4) {
      throw new RowRejected(`${column}: ${shownValue(writtenCell(row, column) ?? value, 40)} is refused: at most 4 decimal places`);
    }
    return n;
  }
  // A spreadsheet's percentage cell (`25%`): a probability is a fraction, which the advice below does not say.
  const percent = PROBABILITY_COLUMNS.has(column) ? /^(\d+(?:[.,]\d+)?)\s*%$/.exec(value) : null;
  if (percent) {
    const fraction = Number((Number(percent[1]!.replace(',', '.')) / 100).toFixed(6));
    throw new RowRejected(`${column}: ${JSON.stringify(value)} is a percentage; write a probability as a fraction between 0 and 1 (${fraction})`);
  }
  throw new RowRejected(
    `${column}: ${shownValue(value, 40)} is not a number; write it as 1234.50 (1234,50 in a file separated by semicolons or tabs), without thousands separators, a currency sign or spaces`,
  );
};

const PLAIN_DATE = /^\d{4}-\d{2}-\d{2}$/;
/** `2019-12-31`, `2019/12/31`, with a time after a space or a `T`, with or without a zone (`Z`, `+02`, `+0200`, `+02:00`). */
const YEAR_FIRST = /^(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:[T ]+(\d{1,2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;
/** `31.12.2019` (day first wherever dots are written), with a time after a space. */
const DAY_FIRST = /^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$/;
/** `12/31/2019` or `31/12/2019`: month first in the US, day first elsewhere. */
const SLASHED_YEAR_LAST = /^\d{1,2}\/\d{1,2}\/\d{4}/;

const two = (n: string) => n.padStart(2, '0');

/** An instant from its parts, if the calendar has it (no 31 April, no 25:00). */
const instant = (column: string, value: string, y: string, mo: string, d: string, h = '0', mi = '0', sec = '0', fraction = '', zone = 'Z'): string => {
  const offset = zone.toUpperCase() === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.length > 3 ? zone.slice(-2) : '00'}`;
  const iso = `${y}-${two(mo)}-${two(d)}T${two(h)}:${two(mi)}:${two(sec)}${fraction || '.000'}${offset}`;
  const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec)));
  const real =
    check.getUTCMonth() === Number(mo) - 1 && check.getUTCDate() === Number(d) && check.getUTCHours() === Number(h) && Number(sec) < 60 && Number(mi) < 60;
  if (!real) throw new RowRejected(`${column}: ${JSON.stringify(value)} is not a date in the calendar`);
  return iso;
};

/**
 * A time column as the ISO 8601 time the commands take. Exports of older systems and spreadsheets
 * write times other ways, and each refused row of ten years of history is a row to mend by hand, so
 * the ways that name one instant are read: a plain date (midnight UTC), a space for the `T`
 * (`2019-12-31 10:00:00`, as SQL dumps write), no zone (UTC, as plain dates), `2019/12/31` and the
 * day-first `31.12.2019`. A slashed date with the year last is refused: `03/04/2019` is 4 March in
 * the US and 3 April elsewhere, and guessing would misdate a whole file.
 */
const timeOf = (row: Row, ...names: string[]): string | undefined => {
  const column = names.find((name) => cell(row, name) !== undefined);
  if (column === undefined) return undefined;
  const value = text(row, column)!;
  // The common case first, without the schema's cost of a refusal.
  if (PLAIN_DATE.test(value)) return instant(column, value, value.slice(0, 4), value.slice(5, 7), value.slice(8, 10));
  // Written as the API takes it: kept as given, so files imported before keep their idempotency keys.
  if (IsoDateTimeText.safeParse(value).success) return value;
  const parts = writtenTime(column, value);
  if (parts) return instant(column, value, ...parts);
  throw new RowRejected(`${column}: ${JSON.stringify(value)} is not a time; write 2019-12-31, 2019-12-31 10:00 (UTC) or 2019-12-31T10:00:00+02:00`);
};

/**
 * Refuses a row whose business time was left empty in a file that has the column: it would be recorded
 * at the import's own time without a word (a purchase of 2018 in this month's revenue, a deal won years
 * ago won today), and a corrected file could not replace it, since a row is imported once. A file
 * without the column records every row at the import's time, as the API does without `occurredAt`.
 */
const refuseUndated = (row: Row, time: string | undefined, ...names: string[]): void => {
  if (time !== undefined) return;
  const column = names.find((name) => Object.hasOwn(row, name));
  if (column === undefined) return;
  throw new RowRejected(
    `${column}: empty in a file that dates its rows; the row would be recorded at the import's time: write its date, or leave the column out to record every row at the import's time`,
  );
};

/**
 * The parts of a time written year first (`2019/12/31 10:00`) or day first (`31.12.2019`), as
 * `instant` takes them; a slashed date with the year last is refused (it reads two ways); undefined
 * for anything else.
 */
const writtenTime = (
  column: string,
  value: string,
): [y: string, mo: string, d: string, h?: string, mi?: string, sec?: string, fraction?: string, zone?: string] | undefined => {
  const yearFirst = YEAR_FIRST.exec(value);
  if (yearFirst) {
    const [, y, , mo, d, h, mi, sec, fraction, zone] = yearFirst;
    return [y!, mo!, d!, h, mi, sec, fraction, zone];
  }
  const dayFirst = DAY_FIRST.exec(value);
  if (dayFirst) {
    const [, d, mo, y, h, mi, sec] = dayFirst;
    return [y!, mo!, d!, h, mi, sec];
  }
  // Refused whatever its numbers: `31/12/2019` can only be day/month, but a file's next row may not.
  if (SLASHED_YEAR_LAST.test(value))
    throw new RowRejected(
      `${column}: ${JSON.stringify(value)}: a date with slashes is refused, as its order (month/day or day/month) is ambiguous in general; write it as 2019-12-31 (ISO) or 31.12.2019`,
    );
  return undefined;
};

/**
 * A date column (a deal's `expected_close_date`) as `YYYY-MM-DD`, written the ways a time column may
 * be (`2019/12/31`, `31.12.2019`, a time after the date, which a date has no use for): the day as
 * written, checked against the calendar. Anything else is left for the schema to refuse by name.
 */
const dateOf = (row: Row, column: string): string | undefined => {
  const value = text(row, column);
  if (value === undefined || PLAIN_DATE.test(value)) return value;
  const [y, mo, d] = writtenTime(column, value) ?? [];
  return y && mo && d ? instant(column, value, y, mo, d).slice(0, 10) : value;
};

/**
 * Items separated by `;` or `|` in a CSV cell, or an NDJSON array (the exports write tags as one)
 * item by item: text trimmed, blanks dropped, anything else left for the schema to refuse by item.
 */
const list = (row: Row, name: string): unknown[] | undefined => {
  const value = cell(row, name);
  if (Array.isArray(value)) return value.map((item: unknown) => (typeof item === 'string' ? item.trim() : item)).filter((item) => item !== '');
  return text(row, name)
    ?.split(/[;|]/)
    .map((t) => t.trim())
    .filter(Boolean);
};

/**
 * The customer a row is about: its id, or the id an import derives from its email (RowOptions.customerIdFor),
 * which a customer imported by email has (the importer has written the id of any other customer
 * holding the address into the row).
 */
const customerOf = (row: Row, options: RowOptions): string => {
  const id = idText(row, 'customer_id');
  if (id) return id;
  const email = text(row, 'customer_email', 'email');
  if (email) return customerIdOf(email, options);
  throw new RowRejected('customer_id: required (or customer_email)');
};

/** The kinds of file whose rows are about a customer (customerOf). */
const ABOUT_A_CUSTOMER: ReadonlySet<ImportKind> = new Set(['purchases', 'refunds', 'deals', 'responses', 'feedback', 'activities']);

/**
 * The address a row names its customer by, when it gives no id. The importer looks the addresses up
 * in the email index and writes the holder's id into the row: a customer registered through the API
 * (whose id is random) is found as one imported from a customers file is. A customers row without
 * `id` is its own customer's: the importer finds only a customer imported before ids were keyed
 * (commands/ids.ts unkeyedCustomerId), which keeps its id.
 */
export const customerEmailOf = (kind: ImportKind, row: Row): string | undefined => {
  if (kind === 'customers') return text(row, 'id', 'customer_id') ? undefined : text(row, 'email');
  // An activity on a deal belongs to the deal's customer: the deal names it.
  if (kind === 'activities' && text(row, 'deal_id')) return undefined;
  return ABOUT_A_CUSTOMER.has(kind) && !text(row, 'customer_id') ? text(row, 'customer_email', 'email') : undefined;
};

/** The currency an importer read a row without one as, before the installation's base currency was: EUR. */
const FORMER_DEFAULT_CURRENCY = 'EUR';

/** A row's currency code as the commands take it (upper case), the run's default where the file gives none. */
const currencyOf = (row: Row, options: RowOptions): string => text(row, 'currency')?.toUpperCase() ?? options.currency ?? FORMER_DEFAULT_CURRENCY;

/** Business time goes in the payload where the schema takes it (purchases), else in the metadata. */
const withTime = (type: ImportedCommandType, fields: Record<string, unknown>, time: string | undefined, key: string): RowCommand => {
  const takesTime = 'occurredAt' in (commandSchemas[type] as unknown as { shape: object }).shape;
  if (takesTime || time === undefined) return { command: { type, ...fields, ...(takesTime && time !== undefined ? { occurredAt: time } : {}) }, key };
  return { command: { type, ...fields }, key, occurredAt: time };
};

/** The kinds of file whose rows name an owner (`owner_id`, or `owner`). */
const WITH_OWNER: ReadonlySet<ImportKind> = new Set(['customers', 'deals']);

/** Whether a row takes the run's default owner: a kind with an owner, and none in the file. */
export const takesDefaultOwner = (kind: ImportKind, row: Row, options: RowOptions): boolean =>
  options.defaultOwner !== undefined && WITH_OWNER.has(kind) && text(row, 'owner_id', 'owner') === undefined;

/** The row's owner: the file's, else the run's default; none when neither is given. */
const ownerOf = (row: Row, options: RowOptions): string | undefined => text(row, 'owner_id', 'owner') ?? options.defaultOwner;

const keyOf = (kind: ImportKind, ...parts: string[]) => `import:${kind}:${hash(parts.join(':')).slice(0, 40)}`;

/**
 * A record's id from its file, unless it is the id the import derives from the row's own key: the
 * CRM's export of records imported without ids writes that id, and the row is then the one imported
 * before, keyed as it was (read by its id, it was another command, refused as `Deal ... already exists`).
 */
const ownId = (id: string | undefined, creates: ImportedCommandType, key: string): string | undefined =>
  id !== undefined && id === createdIdFor(creates, key) ? undefined : id;

const customers = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const email = text(row, 'email');
  const fields = {
    customerId: text(row, 'id', 'customer_id') ?? (email ? customerIdOf(email, options) : undefined),
    name: text(row, 'name'),
    email,
    phone: text(row, 'phone') ?? null,
    company: text(row, 'company') ?? null,
    tags: list(row, 'tags') ?? [],
    // Left out when the file has none (it used to read `import`, which an export then wrote as the source).
    ...(text(row, 'source') ? { source: text(row, 'source') } : {}),
    marketingConsent: booleanOf(row, 'marketing_consent', 'consent') ?? false,
  };
  // No owner in the file nor a default: a customer without an owner, as one registered by a service key.
  const ownerId = ownerOf(row, options);
  const registeredAt = timeOf(row, 'registered_at', 'customer_since');
  // An exported file holds every customer: an inactive one comes in inactive; a merged or forgotten
  // one is not a customer of its own any more (the merged one's history is its primary's).
  const mergedInto = text(row, 'merged_into');
  if (mergedInto) throw new RowRejected(`merged_into: merged into ${mergedInto}; a merged customer is not imported (merge through the API)`);
  const status = word(row, 'status') ?? 'active';
  const deactivatedAt = status === 'inactive' ? timeOf(row, 'deactivated_at') : undefined;
  // Refused whole here: decided, the deactivation alone would be refused and the customer stored active.
  notBefore(['deactivated_at', deactivatedAt], ['registered_at', registeredAt]);
  // An inactive customer whose file gives no registration registered when it was deactivated:
  // registered at the import's own time, it would leave before it arrived (which the customer refuses).
  const registeringAt = registeredAt ?? deactivatedAt;
  if (status === 'inactive') refuseUndated(row, deactivatedAt, 'deactivated_at');
  refuseUndated(row, registeringAt, 'registered_at', 'customer_since');
  // The address's key in any case, as the email index and the stored address take it: a file spelling
  // `Ana@Example.com` and one spelling `ana@example.com` hold one row. Until 2026-12-07 it was the
  // address as spelt (the same key as before business time existed), which a row stored so keeps
  // (registeredUnder), in whatever case its file spells it now.
  const key = options.registeredUnder ?? keyOf('customers', normaliseEmail(email ?? ''));
  const register = withTime('RegisterCustomer', { ...fields, ...(ownerId ? { ownerId } : {}) }, registeringAt, key);
  const formerly: RowCommand['command'][] = [];
  // Before the registration defaulted to the deactivation, such a customer registered at its import.
  if (registeringAt !== registeredAt) formerly.push(withTime('RegisterCustomer', { ...fields, ...(ownerId ? { ownerId } : {}) }, registeredAt, key).command);
  // Before, the owner was not read and a missing source read `import`: customers stored so are this row
  // still. Not so with the run's default owner, which no earlier importer gave: such a customer came in
  // without an owner, and the row now says it has one (a change, refused as any other).
  if (!takesDefaultOwner('customers', row, options))
    formerly.push(withTime('RegisterCustomer', { ...fields, source: fields.source ?? 'import' }, registeredAt, key).command);
  if (formerly.length > 0) register.formerly = formerly;
  if (status === 'active') return [register];
  if (status === 'inactive') {
    const reason = text(row, 'deactivation_reason');
    const deactivate = withTime(
      'DeactivateCustomer',
      { customerId: fields.customerId, ...(reason ? { reason } : {}) },
      deactivatedAt,
      `${register.key}:deactivated`,
    );
    return [register, deactivate];
  }
  if (status === 'forgotten') throw new RowRejected('status: a forgotten customer is not imported (nothing of the person is left to import)');
  throw new RowRejected(`status: expected active or inactive, got ${JSON.stringify(status)}`);
};

const purchases = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const customerId = customerOf(row, options);
  const orderId = idText(row, 'order_id');
  const fields = { customerId, orderId, amount: numberOf(row, 'amount'), currency: currencyOf(row, options) };
  const occurredAt = timeOf(row, 'occurred_at', 'date', 'purchased_at');
  refuseUndated(row, occurredAt, 'occurred_at', 'date', 'purchased_at');
  return [withTime('RecordPurchase', fields, occurredAt, keyOf('purchases', `${customerId}:${orderId}`))];
};

const refunds = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const customerId = customerOf(row, options);
  const orderId = idText(row, 'order_id');
  const refundId = idText(row, 'refund_id');
  const time = timeOf(row, 'occurred_at', 'date', 'refunded_at');
  refuseUndated(row, time, 'occurred_at', 'date', 'refunded_at');
  const fields = {
    customerId,
    orderId,
    ...(refundId ? { refundId } : {}),
    amount: numberOf(row, 'amount'),
    currency: currencyOf(row, options),
    reason: text(row, 'reason', 'refund_reason') ?? null,
  };
  return [
    withTime('RefundPurchase', fields, time, keyOf('refunds', `${customerId}:${orderId}:${refundId ?? `${String(fields.amount)}@${keyTime(options, time)}`}`)),
  ];
};

/** A deal's outcome: `status`, or an exported deal's `stage` (won and lost are stages in the deals read model). */
const dealStatus = (row: Row): string | undefined => {
  const status = word(row, 'status');
  const stage = word(row, 'stage');
  if (stage !== 'won' && stage !== 'lost') return status;
  if (status !== undefined && status !== stage) throw new RowRejected(`stage: ${JSON.stringify(stage)} but status ${JSON.stringify(status)}`);
  return stage;
};

/**
 * A deal has an owner. A row without one, in a run without a default owner, is refused naming the
 * column and how to give a default: the importer used to make up the owner `import`, which is no user.
 */
const dealOwnerOf = (row: Row, options: RowOptions): string => {
  const ownerId = ownerOf(row, options);
  if (ownerId !== undefined) return ownerId;
  throw new RowRejected(
    `owner_id: required: a deal has an owner (a user id); fill the column, or give the import a default owner for the rows without one${options.defaultOwnerHint ? ` (${options.defaultOwnerHint})` : ''}`,
  );
};

/** The stage a deal opened without one is in (domain/deal/decider.ts). */
const FIRST_STAGE = 'lead';

const deals = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const customerId = customerOf(row, options);
  const derived = `${customerId}:${text(row, 'title') ?? ''}:${keyTime(options, timeOf(row, 'opened_at'), text(row, 'opened_at'))}`;
  const dealId = ownId(idText(row, 'deal_id', 'id'), 'OpenDeal', keyOf('deals', derived));
  const natural = dealId ?? derived;
  // An exported deal has both: its probability (the stage's, or the override) and the override alone.
  const probability = numberOf(row, 'probability_override' in row ? 'probability_override' : 'probability');
  const status = dealStatus(row);
  // Stages are lower-case words: `Qualified` as a spreadsheet capitalises it is `qualified` (as the status is read).
  const named = word(row, 'stage');
  const stage = named !== status ? named : undefined;
  const openedAt = timeOf(row, 'opened_at', 'created_at');
  const fields = {
    ...(dealId ? { dealId } : {}),
    customerId,
    title: text(row, 'title'),
    amount: numberOf(row, 'amount'),
    currency: currencyOf(row, options),
    ownerId: dealOwnerOf(row, options),
    expectedCloseDate: dateOf(row, 'expected_close_date'),
    // The first stage is the one a deal opened without a stage has, which its export writes: the same deal.
    ...(stage && stage !== FIRST_STAGE ? { stage } : {}),
    ...(probability !== undefined ? { probabilityOverride: probability } : {}),
  };
  const isOpen = status === undefined || status === 'open';
  // An open deal's time in its stage, as an export writes it (a closed deal's is its closing).
  const stageEnteredAt = isOpen ? timeOf(row, 'stage_entered_at') : undefined;
  const enteredLater = stageEnteredAt !== undefined && stageEnteredAt !== openedAt;
  const closedAt = isOpen ? undefined : timeOf(row, 'closed_at');
  // Refused whole here: decided, the outcome alone would be refused and the deal stored open.
  notBefore(['closed_at', closedAt], ['opened_at', openedAt]);
  // A closed deal whose file gives no opening opened when it closed: opened at the import's own time,
  // it would be closed before it opened (which the deal refuses).
  const openingAt = openedAt ?? closedAt;
  if (!isOpen) refuseUndated(row, closedAt, 'closed_at');
  refuseUndated(row, openingAt, 'opened_at', 'created_at');
  const open = withTime('OpenDeal', enteredLater ? { ...fields, stageEnteredAt } : fields, openingAt, keyOf('deals', natural));
  // Rows imported before the stage's time was read, or before the opening defaulted to the closing:
  // the same deal (their file, or its export, again).
  const former = enteredLater || openingAt !== openedAt ? [withTime('OpenDeal', fields, openedAt, open.key).command] : [];
  // Importers before kept a first stage the file named.
  const staged = stage === FIRST_STAGE ? [open.command, ...former].map((command) => ({ ...command, stage })) : [];
  if (former.length + staged.length > 0) open.formerly = [...former, ...staged];
  if (isOpen) return [open];
  // The outcome addresses the deal the first command creates (its id derives from that key when the file gives none).
  const target = { dealId: dealId ?? createdIdFor('OpenDeal', open.key) };
  // The reason it was won is the event's reason (the deal's `wonReason`): the file's, or none.
  if (status === 'won') return [open, { ...withTime('WinDeal', target, closedAt, `${open.key}:won`), reason: text(row, 'won_reason') ?? null }];
  if (status === 'lost') return [open, withTime('LoseDeal', { ...target, reason: text(row, 'lost_reason', 'reason') ?? 'lost' }, closedAt, `${open.key}:lost`)];
  throw new RowRejected(`status: expected open, won or lost, got ${JSON.stringify(status)}`);
};

/** A JSON object column (NDJSON gives the object, CSV its JSON text); refused naming the column otherwise. */
const objectOf = (row: Row, column: string): Record<string, unknown> | undefined => {
  const value = cell(row, column);
  if (value === undefined) return undefined;
  let parsed: unknown = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch {
      // Not JSON: it stays text, which is refused below.
    }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new RowRejected(`${column}: expected a JSON object such as {"minRevenue":100}`);
  // Within the row's own bound: the row is level 1, this cell level 2.
  if (nestedDeeperThan(parsed, MAX_JSON_DEPTH - 1)) throw new RowRejected(`${column}: nested deeper than ${MAX_JSON_DEPTH} levels`);
  return parsed as Record<string, unknown>;
};

const CAMPAIGN_STATUSES = ['draft', 'scheduled', 'active', 'paused', 'completed', 'cancelled'] as const;

/** The columns of the time a campaign of each final status ended its run, the first the one named in refusals. */
const CAMPAIGN_ENDINGS: Partial<Record<string, [string, ...string[]]>> = {
  paused: ['paused_at'],
  completed: ['completed_at', 'ends_at'],
  cancelled: ['cancelled_at'],
};

const campaigns = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const derived = text(row, 'name') ?? '';
  const campaignId = ownId(idText(row, 'campaign_id', 'id'), 'CreateCampaign', keyOf('campaigns', derived));
  const natural = campaignId ?? derived;
  const startsAt = timeOf(row, 'starts_at');
  const endsAt = timeOf(row, 'ends_at') ?? null;
  const targetSegment = objectOf(row, 'target_segment');
  // Campaigns from a past system ran: they are launched (and completed, paused or cancelled as the file
  // says) so that their responses can come in, each step at its own time where the file has it (as a
  // campaigns export writes them).
  const status = word(row, 'status') ?? 'active';
  if (!(CAMPAIGN_STATUSES as readonly string[]).includes(status))
    throw new RowRejected(`status: expected ${CAMPAIGN_STATUSES.join(', ')}, got ${JSON.stringify(status)}`);
  const createdAt = timeOf(row, 'created_at');
  const ran = ['active', 'paused', 'completed'].includes(status) || (status === 'cancelled' && timeOf(row, 'launched_at') !== undefined);
  const fileLaunchedAt = ran ? timeOf(row, 'launched_at', 'starts_at') : undefined;
  const ending = CAMPAIGN_ENDINGS[status];
  const endedAt = ending ? timeOf(row, ...ending) : undefined;
  // Refused whole here: decided, a later step alone would be refused and the campaign stored half-way.
  notBefore(['launched_at', fileLaunchedAt], ['created_at', createdAt]);
  if (ending) notBefore([ending[0], endedAt], fileLaunchedAt ? ['launched_at', fileLaunchedAt] : ['created_at', createdAt]);
  // A step the file gives no time for happened at the latest when the next one did: recorded at the
  // import's own time, the campaign would be created after it ran, or launched after it ended (which
  // the campaign refuses).
  const launchedAt = ran ? (fileLaunchedAt ?? (status === 'cancelled' ? undefined : endedAt)) : undefined;
  const creatingAt = createdAt ?? launchedAt ?? endedAt;
  const fields = {
    ...(campaignId ? { campaignId } : {}),
    name: text(row, 'name'),
    channel: word(row, 'channel'),
    budget: numberOf(row, 'budget'),
    currency: currencyOf(row, options),
    ...(startsAt ? { schedule: { startsAt, endsAt } } : {}),
    ...(targetSegment ? { targetSegment } : {}),
  };
  const create = withTime('CreateCampaign', fields, creatingAt, keyOf('campaigns', natural));
  // Rows imported before the creation and the launch defaulted to the next step: the same campaign.
  if (creatingAt !== createdAt) create.formerly = [withTime('CreateCampaign', fields, createdAt, create.key).command];
  const target = { campaignId: campaignId ?? createdIdFor('CreateCampaign', create.key) };
  const step = (type: ImportedCommandType, time: string | undefined, name: string, stepFields: Record<string, unknown> = {}) =>
    withTime(type, { ...target, ...stepFields }, time, `${create.key}:${name}`);
  const launch = step('LaunchCampaign', launchedAt, 'launched');
  if (launchedAt !== fileLaunchedAt) launch.formerly = [step('LaunchCampaign', fileLaunchedAt, 'launched').command];
  switch (status as (typeof CAMPAIGN_STATUSES)[number]) {
    case 'draft':
      return [create];
    case 'scheduled':
      if (!startsAt) throw new RowRejected('starts_at: a scheduled campaign needs its start');
      return [create, step('ScheduleCampaign', createdAt, 'scheduled', { startsAt, endsAt })];
    case 'active':
      return [create, launch];
    // At `paused_at` when the file has it; an export has no such time, so the pause is then recorded when imported.
    case 'paused':
      return [create, launch, step('PauseCampaign', endedAt, 'paused')];
    case 'completed':
      return [create, launch, step('CompleteCampaign', endedAt, 'completed')];
    case 'cancelled': {
      const cancel = step('CancelCampaign', endedAt, 'cancelled');
      // Cancelled before or after it ran: launched only when the file says it was.
      return launchedAt ? [create, launch, cancel] : [create, cancel];
    }
  }
};

const responses = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const customerId = customerOf(row, options);
  const campaignId = idText(row, 'campaign_id');
  const kind = word(row, 'response', 'kind');
  const revenue = numberOf(row, 'revenue');
  const fields = {
    campaignId,
    customerId,
    kind,
    ...(revenue !== undefined ? { revenue } : {}),
    ...(text(row, 'currency') ? { currency: text(row, 'currency')!.toUpperCase() } : {}),
  };
  // An imported unsubscribe is history and withdraws no consent (the API's does, commands/index.ts
  // withdrawConsent): the consent is the customers file's, and an old system's unsubscribe may predate
  // a consent given back since (a migration would have withdrawn every consent ever withdrawn once).
  const occurredAt = timeOf(row, 'occurred_at', 'date');
  refuseUndated(row, occurredAt, 'occurred_at', 'date');
  return [withTime('RecordCampaignResponse', fields, occurredAt, keyOf('responses', `${campaignId}:${customerId}:${kind}`))];
};

/**
 * Costs from a past system happened: each is recorded even where it takes the campaign beyond its
 * budget (the campaign then shows `overBudget`, as one recorded with `allowOverBudget` does), unless
 * the file says `allow_over_budget` false (costs entered now, which the budget is to hold back).
 */
const costs = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const campaignId = idText(row, 'campaign_id');
  const costId = idText(row, 'cost_id');
  const amount = numberOf(row, 'amount');
  const occurredAt = timeOf(row, 'occurred_at', 'date');
  refuseUndated(row, occurredAt, 'occurred_at', 'date');
  const description = text(row, 'description') ?? null;
  // Without a cost id (an invoice number) a cost is known by what it says: one campaign's rows equal in
  // amount, time and description are one cost.
  const natural = costId ?? [String(amount), keyTime(options, occurredAt), description ?? ''].join(':');
  const fields = {
    campaignId,
    ...(costId ? { costId } : {}),
    amount,
    currency: currencyOf(row, options),
    description,
    allowOverBudget: booleanOf(row, 'allow_over_budget') ?? true,
  };
  return [withTime('RecordCampaignCost', fields, occurredAt, keyOf('costs', `${campaignId}:${natural}`))];
};

const FEEDBACK_STATUSES = ['open', 'in_progress', 'resolved', 'closed'] as const;
/** What an imported item's response and resolution say when the file gives no text of its own. */
export const IMPORTED_RESPONSE = 'Responded in the previous system (imported)';
export const IMPORTED_RESOLUTION = 'Resolved in the previous system (imported)';

/**
 * Refuses a row whose `later` time comes well before its `earlier` one, as the API refuses such a
 * command (domain/time.ts `isWellBefore`: within the clocks' drift is no contradiction, and an export
 * of what the API took imports again). A time left out or unreadable parses as NaN, which compares
 * false: nothing to refuse here (the schema names an unreadable one).
 */
const notBefore = ([laterName, laterTime]: [string, string | undefined], [earlierName, earlierTime]: [string, string | undefined]): void => {
  if (isWellBefore(laterTime ?? '', earlierTime ?? '')) throw new RowRejected(`${laterName}: before ${earlierName} (${laterTime} < ${earlierTime})`);
};

/**
 * Feedback from a past system comes in as it stood, not as new open items whose deadlines passed
 * years ago: the assignee, the first response, the resolution, the closing and the rating each
 * become the command the API would have received, at the time the file gives, so response and
 * resolution times and breaches are the real ones. `status` may be left out (the times say it); a
 * status the times contradict is refused.
 */
const feedback = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const customerId = customerOf(row, options);
  const submittedAt = timeOf(row, 'submitted_at', 'occurred_at', 'date');
  const derived = `${customerId}:${keyTime(options, submittedAt)}:${text(row, 'subject') ?? ''}`;
  const feedbackId = ownId(idText(row, 'feedback_id', 'id'), 'SubmitFeedback', keyOf('feedback', derived));
  const assigneeId = text(row, 'assignee_id', 'assignee');
  const respondedAt = timeOf(row, 'first_responded_at', 'responded_at');
  const resolvedAt = timeOf(row, 'resolved_at');
  const closedAt = timeOf(row, 'closed_at');
  const ratedAt = timeOf(row, 'rated_at');
  const csat = numberOf(row, 'csat');
  // Reopened since (as the export counts it): a rating dated before the item's resolution or closing, or
  // on an item worked again, rated an earlier resolution (the export keeps it with its time).
  const reopened = Number(numberOf(row, 'reopen_count') ?? 0) > 0;
  const nps = numberOf(row, 'nps');
  // The deadlines as the file gives them (an export's, tightened by escalations or a reopening).
  const firstResponseDueAt = timeOf(row, 'first_response_due_at');
  const resolutionDueAt = timeOf(row, 'resolution_due_at');
  const fields = {
    ...(feedbackId ? { feedbackId } : {}),
    customerId,
    kind: word(row, 'kind'),
    channel: word(row, 'channel') ?? 'web',
    subject: text(row, 'subject'),
    body: text(row, 'body'),
    ...(word(row, 'priority') ? { priority: word(row, 'priority') } : {}),
    // A rating given after the resolution is recorded then (below), not with the submission.
    ...(csat !== undefined && ratedAt === undefined ? { csat } : {}),
    ...(nps !== undefined ? { nps } : {}),
  };
  const natural = feedbackId ?? derived;
  const deadlines = { ...(firstResponseDueAt ? { firstResponseDueAt } : {}), ...(resolutionDueAt ? { resolutionDueAt } : {}) };
  // An item whose file gives no submission was submitted at its first step: at the import's own
  // time, its response, resolution, closing or rating would come before it (which the item refuses).
  const steps = [respondedAt, resolvedAt, closedAt, ratedAt].filter((at): at is string => at !== undefined);
  const submissionAt = submittedAt ?? (steps.length > 0 ? steps.reduce(earlierOf) : undefined);
  refuseUndated(row, submissionAt, 'submitted_at', 'occurred_at', 'date');
  const submit = withTime('SubmitFeedback', { ...fields, ...deadlines }, submissionAt, keyOf('feedback', natural));
  // Before, the deadlines were not read, and a row without a submission time was submitted when
  // imported: an item stored so is this row still (its deadlines the SLA's).
  const defaulted = submissionAt !== submittedAt;
  const withDeadlines = Object.keys(deadlines).length > 0;
  const formerly = [
    ...(withDeadlines || defaulted ? [withTime('SubmitFeedback', fields, submittedAt, submit.key).command] : []),
    ...(withDeadlines && defaulted ? [withTime('SubmitFeedback', { ...fields, ...deadlines }, submittedAt, submit.key).command] : []),
  ];
  if (formerly.length > 0) submit.formerly = formerly;

  const named = word(row, 'status')?.replace(/[\s-]+/g, '_');
  if (named !== undefined && !(FEEDBACK_STATUSES as readonly string[]).includes(named))
    throw new RowRejected(`status: expected ${FEEDBACK_STATUSES.join(', ')}, got ${JSON.stringify(text(row, 'status'))}`);
  const status = named ?? (closedAt ? 'closed' : resolvedAt ? 'resolved' : assigneeId || respondedAt ? 'in_progress' : 'open');
  const settledAt = resolvedAt ?? closedAt;
  const ratedBeforeReopening =
    ratedAt !== undefined && reopened && (settledAt === undefined || status === 'open' || status === 'in_progress' || isWellBefore(ratedAt, settledAt));
  const contradicting = (names: [string, unknown][]) => {
    const present = names.filter(([, value]) => value !== undefined).map(([name]) => name);
    if (present.length > 0) throw new RowRejected(`status: ${status}, yet the row gives ${present.join(', ')}`);
  };
  // Open may have an assignee and a first response: an item reopened after its resolution (as the
  // CRM's own export writes it), or one being worked, as other systems call it. Its resolution and
  // closing times are gone with the reopening.
  if (status === 'open')
    contradicting([
      ['resolved_at', resolvedAt],
      ['closed_at', closedAt],
    ]);
  if (status === 'in_progress') {
    contradicting([
      ['resolved_at', resolvedAt],
      ['closed_at', closedAt],
    ]);
    // Reopened after a rating, it is worked again (below) whoever took it.
    if (!assigneeId && !respondedAt && !ratedBeforeReopening) throw new RowRejected('status: in_progress needs assignee_id or first_responded_at');
  }
  if (status === 'resolved') {
    contradicting([['closed_at', closedAt]]);
    if (!resolvedAt) throw new RowRejected('resolved_at: required when status is resolved');
  }
  if (status === 'closed' && !closedAt) throw new RowRejected('closed_at: required when status is closed');
  if (ratedAt && status !== 'resolved' && status !== 'closed' && !ratedBeforeReopening)
    throw new RowRejected(`rated_at: feedback is rated once resolved or closed, not ${status}`);
  notBefore(['first_responded_at', respondedAt], ['submitted_at', submittedAt]);
  notBefore(['first_response_due_at', firstResponseDueAt], ['submitted_at', submittedAt]);
  notBefore(['resolution_due_at', resolutionDueAt], ['submitted_at', submittedAt]);
  notBefore(['resolved_at', resolvedAt], ['submitted_at', submittedAt]);
  notBefore(['resolved_at', resolvedAt], ['first_responded_at', respondedAt]);
  notBefore(['closed_at', closedAt], ['submitted_at', submittedAt]);
  notBefore(['closed_at', closedAt], ['resolved_at', resolvedAt]);
  if (ratedBeforeReopening) notBefore(['rated_at', ratedAt], ['submitted_at', submittedAt]);
  else notBefore(['rated_at', ratedAt], resolvedAt ? ['resolved_at', resolvedAt] : ['closed_at', closedAt]);

  // The later commands address the item the first creates (its id derives from that key when the file gives none).
  const target = { feedbackId: feedbackId ?? createdIdFor('SubmitFeedback', submit.key) };
  const commands = [submit];
  if (assigneeId) commands.push(withTime('AssignFeedback', { ...target, assigneeId }, submittedAt, `${submit.key}:assigned`));
  const comment = text(row, 'rating_comment');
  const rate = (at: string) => withTime('RateFeedback', { ...target, csat, ...(comment ? { comment } : {}) }, at, `${submit.key}:rated`);
  /**
   * The earlier resolution that rating was given for, the rating, and the reopening, at the rating's
   * time (the file has no other): the rating counts in its own month, as it did where it was given,
   * and the item is worked again (reopened once; its resolution deadline runs from then). Its
   * resolution text is the file's where the item has no later resolution (the export writes the latest).
   */
  const ratedEarlier = (at: string): RowCommand[] => [
    withTime(
      'ResolveFeedback',
      { ...target, resolution: (resolvedAt === undefined ? text(row, 'resolution') : undefined) ?? IMPORTED_RESOLUTION },
      at,
      `${submit.key}:resolved-before-rating`,
    ),
    rate(at),
    withTime('ReopenFeedback', target, at, `${submit.key}:reopened-after-rating`),
  ];
  const answeredFirst = respondedAt !== undefined && !(ratedBeforeReopening && isWellBefore(ratedAt, respondedAt));
  if (ratedBeforeReopening && !answeredFirst) commands.push(...ratedEarlier(ratedAt));
  if (respondedAt) {
    const message = text(row, 'first_response', 'response') ?? IMPORTED_RESPONSE;
    commands.push(
      withTime('RespondToFeedback', { ...target, message, ...(assigneeId ? { responderId: assigneeId } : {}) }, respondedAt, `${submit.key}:responded`),
    );
  }
  if (ratedBeforeReopening && answeredFirst) commands.push(...ratedEarlier(ratedAt));
  if (resolvedAt) {
    const resolution = text(row, 'resolution') ?? IMPORTED_RESOLUTION;
    commands.push(withTime('ResolveFeedback', { ...target, resolution }, resolvedAt, `${submit.key}:resolved`));
  }
  if (closedAt) commands.push(withTime('CloseFeedback', target, closedAt, `${submit.key}:closed`));
  if (ratedAt && !ratedBeforeReopening) commands.push(rate(ratedAt));
  return commands;
};

/**
 * A note, call, meeting or task, on a customer or on a deal (`deal_id`: the deal's customer is its
 * own, so an export's `customer_id` beside it is not read), logged at `occurred_at`; a task done at
 * `completed_at` is also completed then.
 */
const activities = (row: Row, options: RowOptions = {}): RowCommand[] => {
  const dealId = idText(row, 'deal_id');
  const parent = dealId ? { dealId } : { customerId: customerOf(row, options) };
  const occurredAt = timeOf(row, 'occurred_at', 'date');
  const completedAt = timeOf(row, 'completed_at');
  const subject = text(row, 'subject');
  const body = text(row, 'body');
  const dueAt = timeOf(row, 'due_at');
  const assigneeId = text(row, 'assignee_id', 'assignee');
  const kind = word(row, 'kind');
  const derived = `${dealId ?? parent.customerId}:${kind ?? ''}:${subject ?? ''}:${keyTime(options, occurredAt)}`;
  const activityId = ownId(idText(row, 'activity_id', 'id'), 'LogActivity', keyOf('activities', derived));
  const natural = activityId ?? derived;
  const fields = {
    ...(activityId ? { activityId } : {}),
    ...parent,
    kind,
    subject,
    ...(body !== undefined ? { body } : {}),
    ...(dueAt !== undefined ? { dueAt } : {}),
    ...(assigneeId !== undefined ? { assigneeId } : {}),
  };
  // A completed task whose file gives no time of its own was logged when it was completed: logged at
  // the import's time, it would be completed before it was logged (which the task refuses).
  const loggedAt = occurredAt ?? completedAt;
  refuseUndated(row, loggedAt, 'occurred_at', 'date');
  const log = withTime('LogActivity', fields, loggedAt, keyOf('activities', natural));
  if (loggedAt !== occurredAt) log.formerly = [withTime('LogActivity', fields, occurredAt, log.key).command];
  if (completedAt === undefined) return [log];
  // Refused whole here: decided, the completion alone would be refused and the row stored half.
  if (kind === 'note' || kind === 'call' || kind === 'meeting') throw new RowRejected(`completed_at: only a task is completed, not a ${kind}; leave it empty`);
  notBefore(['completed_at', completedAt], ['occurred_at', occurredAt]);
  // The completion addresses the activity the first command creates (its id derives from that key when the file gives none).
  const target = { activityId: activityId ?? createdIdFor('LogActivity', log.key) };
  return [log, withTime('CompleteActivity', target, completedAt, `${log.key}:completed`)];
};

/** A row's commands; `options` matter to the kinds with an owner (customers, deals). */
type RowReader = (row: Row, options?: RowOptions) => RowCommand[];

/**
 * A row without a currency read in the run's currency other than EUR: an importer before it read such
 * a row as EUR, so what it stored then is this row too (the file imported again is already present).
 */
const readFormerlyAsEur =
  (read: RowReader): RowReader =>
  (row, options = {}) => {
    const commands = read(row, options);
    if (options.currency === undefined || options.currency === FORMER_DEFAULT_CURRENCY || text(row, 'currency') !== undefined) return commands;
    return commands.map((c) => {
      if (c.command.currency !== options.currency) return c;
      const asEur = [c.command, ...(c.formerly ?? [])].map((command) => ({ ...command, currency: FORMER_DEFAULT_CURRENCY }));
      return { ...c, formerly: [...(c.formerly ?? []), ...asEur] };
    });
  };

export const rowCommands: Record<ImportKind, RowReader> = {
  customers,
  purchases: readFormerlyAsEur(purchases),
  refunds: readFormerlyAsEur(refunds),
  deals: readFormerlyAsEur(deals),
  campaigns: readFormerlyAsEur(campaigns),
  responses,
  costs: readFormerlyAsEur(costs),
  feedback,
  activities,
};

/** Columns each kind reads (the CLI's help and the README list them). */
export const importColumns: Record<ImportKind, string> = {
  customers:
    'name, email, phone, company, tags (separated by ;), source, marketing_consent, registered_at, owner_id (an active user; default: the default owner, else none), status (active|inactive), deactivated_at, deactivation_reason, merged_into (such rows are refused), id (optional)',
  purchases: 'order_id, amount, currency (default: the base currency, CRM_BASE_CURRENCY), occurred_at, customer_id or customer_email',
  refunds: 'order_id, amount, currency (default: the base currency), reason, refund_id (optional), occurred_at, customer_id or customer_email',
  deals:
    'title, amount, currency (default: the base currency), owner_id (required, or the default owner), expected_close_date, stage, probability, probability_override (read instead of probability when the file has it, as an export does), opened_at, stage_entered_at (of an open deal: when it entered its stage; default opened_at), status (open|won|lost), closed_at, won_reason, lost_reason, deal_id (optional), customer_id or customer_email',
  campaigns:
    'name, channel, budget, currency (default: the base currency), starts_at, ends_at, status (draft|scheduled|active|paused|completed|cancelled, default active), created_at, launched_at, paused_at, completed_at, cancelled_at, target_segment (a JSON object), campaign_id (optional)',
  responses: 'campaign_id, response (sent|opened|clicked|converted|unsubscribed), revenue, currency, occurred_at, customer_id or customer_email',
  costs:
    'campaign_id, cost_id (an invoice number; optional), amount, currency (default: the base currency), description, occurred_at, allow_over_budget (default true)',
  feedback:
    'kind, channel, subject, body, priority, csat, nps, submitted_at, first_response_due_at, resolution_due_at (default: from the priority), status (open|in_progress|resolved|closed), assignee_id, first_responded_at, first_response, resolved_at, resolution, closed_at, rated_at, rating_comment, reopen_count (above 0: a rating dated before the resolution or closing, or on an item in progress, rated an earlier resolution, reopened since), feedback_id (optional), customer_id or customer_email',
  activities:
    'kind (note|call|meeting|task), subject, body, due_at (tasks), assignee_id, occurred_at, completed_at (a task done then), activity_id (optional), deal_id (on a deal) or customer_id or customer_email',
};

/**
 * Columns an export of the kind writes that an import has no use for: `merged_into` says which primary
 * a merged duplicate's order, deal, feedback item or activity counts for, while the record stays on the
 * duplicate (`customer_id`); an activity's `logged_by` is who logged it, the actor of its event, which a
 * command does not take: an activity imported is logged by whoever imports it. Read back without being
 * named as columns not read. The figures an export derives (`revenue`, `revision`, an activity's
 * `overdue`) are still named: a file of another system's may hold such a column, which no import reads.
 */
const exportedOnlyColumns: Partial<Record<ImportKind, readonly string[]>> = {
  purchases: ['merged_into'],
  refunds: ['merged_into'],
  deals: ['merged_into'],
  feedback: ['merged_into'],
  activities: ['logged_by', 'merged_into'],
};

/**
 * The columns each kind documents (importColumns), as names: columns read only in some rows (a
 * deactivation's, a resolution's text) are still the kind's, not unknown ones; and those of its export
 * that it has no use for.
 */
export const knownColumns: Record<ImportKind, ReadonlySet<string>> = Object.fromEntries(
  Object.entries(importColumns).map(([kind, text]) => [
    kind,
    new Set(
      text
        .replace(/\([^)]*\)/g, '')
        .split(/,\s*|\s+or\s+/)
        .flatMap((item) => /^[a-z_]+/.exec(item.trim())?.[0] ?? [])
        .concat(exportedOnlyColumns[kind as ImportKind] ?? []),
    ),
  ]),
) as unknown as Record<ImportKind, ReadonlySet<string>>;

/**
 * The columns a command's time is read from, by command (as the row builders above read them): every
 * command a row may become is here, so the routes that check who may send them (api/routes/imports.ts) can be complete.
 */
const TIME_COLUMNS = {
  RegisterCustomer: ['registered_at', 'customer_since'],
  DeactivateCustomer: ['deactivated_at'],
  RecordPurchase: ['occurred_at', 'date', 'purchased_at'],
  RefundPurchase: ['occurred_at', 'date', 'refunded_at'],
  OpenDeal: ['opened_at', 'created_at'],
  WinDeal: ['closed_at'],
  LoseDeal: ['closed_at'],
  CreateCampaign: ['created_at'],
  ScheduleCampaign: ['created_at'],
  LaunchCampaign: ['launched_at', 'starts_at'],
  PauseCampaign: ['paused_at'],
  CompleteCampaign: ['completed_at', 'ends_at'],
  CancelCampaign: ['cancelled_at'],
  RecordCampaignResponse: ['occurred_at', 'date'],
  RecordCampaignCost: ['occurred_at', 'date'],
  SubmitFeedback: ['submitted_at', 'occurred_at', 'date'],
  AssignFeedback: ['submitted_at', 'occurred_at', 'date'],
  RespondToFeedback: ['first_responded_at', 'responded_at'],
  ResolveFeedback: ['resolved_at'],
  CloseFeedback: ['closed_at'],
  RateFeedback: ['rated_at'],
  // Only after a rating of an earlier resolution, at its time.
  ReopenFeedback: ['rated_at'],
  LogActivity: ['occurred_at', 'date'],
  CompleteActivity: ['completed_at'],
} as const satisfies Partial<Record<CommandType, readonly string[]>>;

/** Every column that dates a step of some row (`occurred_at`, `registered_at`, ...). */
export const DATING_COLUMNS: ReadonlySet<string> = new Set(Object.values(TIME_COLUMNS).flat());

/** The commands an import's rows may become. */
export type ImportedCommandType = keyof typeof TIME_COLUMNS;

/** Command fields whose column is not the field's own name in snake case (`orderId` is `order_id`). */
const FIELD_COLUMNS: Record<string, readonly string[]> = {
  customerId: ['customer_id', 'customer_email', 'email', 'id'],
  dealId: ['deal_id', 'id'],
  campaignId: ['campaign_id', 'id'],
  feedbackId: ['feedback_id', 'id'],
  ownerId: ['owner_id', 'owner'],
  assigneeId: ['assignee_id', 'assignee'],
  responderId: ['assignee_id', 'assignee'],
  probabilityOverride: ['probability_override', 'probability'],
  marketingConsent: ['marketing_consent', 'consent'],
  schedule: ['starts_at', 'ends_at'],
  message: ['first_response', 'response'],
  comment: ['rating_comment'],
};
/** A customers row's own id: `id` first, as the row reads it (its email stands for it only when there is none). */
const OWN_CUSTOMER_ID = ['id', 'customer_id', 'email'] as const;
const FIELD_COLUMNS_OF: Partial<Record<CommandType, Record<string, readonly string[]>>> = {
  RecordCampaignResponse: { kind: ['response', 'kind'] },
  LoseDeal: { reason: ['lost_reason', 'reason'] },
  RefundPurchase: { reason: ['reason', 'refund_reason'] },
  RegisterCustomer: { customerId: OWN_CUSTOMER_ID },
  DeactivateCustomer: { reason: ['deactivation_reason'], customerId: OWN_CUSTOMER_ID },
};

const snake = (field: string) => field.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();

/**
 * Cells a reader changed as it read them (a decimal comma read as a dot), as the file wrote them: on
 * the row itself, under a key no column has, so that a view of the row (the importer's proxy that
 * notes the columns read) finds them too.
 */
const WRITTEN = Symbol('cells as the file wrote them');
type WithWritten = { [WRITTEN]?: Map<string, string> };

/** Keeps what the file wrote in a cell its reader changed, for a refusal to quote (`12,34567`, not `12.34567`). */
export const rememberWritten = (row: Row, column: string, text: string): void => {
  let cells = (row as WithWritten)[WRITTEN];
  if (!cells) Object.defineProperty(row, WRITTEN, { value: (cells = new Map<string, string>()) });
  cells.set(column, text);
};

const writtenCell = (row: Row, column: string): string | undefined => (row as WithWritten)[WRITTEN]?.get(column);

/**
 * The file's column a command's field was read from, and what the file holds there: a refusal names
 * them (`occurred_at: "1899-12-31" ...`), not the command's field (`occurredAt`) or an id the
 * importer derived (a customer named by `customer_email`).
 */
export const columnOf = (type: CommandType, path: readonly PropertyKey[], row: Row): { column: string; value: unknown } | undefined => {
  const field = String(path[0] ?? '');
  if (field === '') return undefined;
  const nested = field === 'schedule' && path[1] !== undefined ? [snake(String(path[1]))] : undefined;
  const candidates = nested ??
    (field === 'occurredAt' ? (TIME_COLUMNS as Partial<Record<CommandType, readonly string[]>>)[type] : undefined) ??
    FIELD_COLUMNS_OF[type]?.[field] ??
    FIELD_COLUMNS[field] ?? [snake(field)];
  const column = candidates.find((name) => cell(row, name) !== undefined) ?? candidates[0];
  return column === undefined ? undefined : { column, value: writtenCell(row, column) ?? cell(row, column) };
};
