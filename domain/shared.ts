import { z } from 'zod';

/**
 * What every read model can store, so that whatever a command accepts is projectable (invariant 11).
 * PostgreSQL refuses NUL (U+0000) in `text` and `jsonb`, and a lone UTF-16 surrogate is invalid JSON
 * for `jsonb`; `JSON.parse` and `z.string()` accept both. Every text field of every command and event
 * is built on `SafeText`, and every business time on `IsoDateTime` / `IsoDate`, so the command side,
 * the event catalogue and the read models agree by construction (test/domain/safe-input.test.ts walks
 * the schemas to keep it so).
 */
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when PostgreSQL can store the text: no NUL and no unpaired UTF-16 surrogate. */
export const isStorableText = (text: string): boolean => !text.includes('\u0000') && !UNPAIRED_SURROGATE.test(text);
export const STORABLE_TEXT_RULE = 'must not contain NUL (U+0000) or an unpaired UTF-16 surrogate';
/**
 * The text with what PostgreSQL cannot store replaced by U+FFFD, for text a caller gave that is only
 * reported back (a file's column name), never for what a command records (that is refused instead).
 */
const UNPAIRED_SURROGATES = new RegExp(UNPAIRED_SURROGATE.source, 'g');
export const storableForm = (text: string): string =>
  isStorableText(text) ? text : text.replaceAll('\u0000', '\ufffd').replace(UNPAIRED_SURROGATES, '\ufffd');

/** The one base of every text field (names, ids, tags, reasons, free text, currency...). */
export const SafeText = z.string().refine(isStorableText, STORABLE_TEXT_RULE);

/** A character as U+XXXX, as refusals name it. */
const codePointOf = (character: string): string => `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
const LINE_BREAKS = new Set(['\n', '\r', '\u000b', '\u000c', '\u0085', '\u2028', '\u2029']);
const SEPARATORS: Record<string, string> = { '\u2028': 'line separator', '\u2029': 'paragraph separator' };
/**
 * A rule a command's text keeps: none of the characters `control` matches (NUL is SafeText's to
 * refuse). A bell, an ESC sequence or a line break in a name reached CSV exports, logs and the CLI,
 * where a terminal obeyed it (recoloured, retitled, a line forged). The refusal names the code point
 * and its position in the text sent (1 for the first character), and stops the field's later rules
 * (one error a field). One line is read trimmed, so what the trim drops at its ends (a tab or a line
 * end pasted with an address) is left to it.
 */
const refusing = (control: RegExp, oneLine: boolean) =>
  z.superRefine((text: string, context) => {
    const from = oneLine ? text.length - text.trimStart().length : 0;
    const found = control.exec(oneLine ? text.slice(from, text.trimEnd().length) : text);
    if (!found) return;
    const character = found[0][0]!;
    const position = [...text.slice(0, from + found.index)].length + 1;
    const lineBreak = oneLine && LINE_BREAKS.has(character) ? ' (a line break: this field takes one line)' : '';
    const message = `contains the ${SEPARATORS[character] ?? 'control character'} ${codePointOf(character)} at position ${position}${lineBreak}`;
    context.addIssue({ code: 'custom', message, input: text, continue: false });
  });
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const LINE_CONTROL = /[\u0001-\u001f\u007f-\u009f\u2028\u2029]/;
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const MULTI_LINE_CONTROL = /[\u0001-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]|\r(?!\n)/;
/** C0 and C1 controls, DEL and the line and paragraph separators: what one line of text may not hold. */
export const ONE_LINE = refusing(LINE_CONTROL, true);
/** The same, but for tabs and line breaks (`\n`, `\r\n`, U+2028, U+2029): a lone `\r` rewrites a terminal's line. */
export const SEVERAL_LINES = refusing(MULTI_LINE_CONTROL, false);
/**
 * Text a command takes on one line, trimmed (names, titles, subjects, company, tags, ids, owners), and
 * text it takes on several (notes, bodies, reasons, comments, descriptions). Commands only: events
 * keep SafeText, so that events recorded before with such characters still read and project.
 */
export const SingleLineText = SafeText.check(ONE_LINE).trim();
export const MultiLineText = SafeText.check(SEVERAL_LINES);

/**
 * Business times are years 1900-2200 inclusive (UTC). PostgreSQL has no year 0 (`0000-01-01` is out of
 * range) and read models, reports and cohorts have no use for times far outside a customer history.
 */
export const BUSINESS_YEARS = { first: 1900, last: 2200 } as const;
const BUSINESS_YEARS_RULE = `a time in the years ${BUSINESS_YEARS.first}-${BUSINESS_YEARS.last}`;
const inBusinessYears = (year: number): boolean => year >= BUSINESS_YEARS.first && year <= BUSINESS_YEARS.last;
/** An ISO instant (with offset) whose UTC year is within the business years. */
/**
 * How far a given instant may run ahead of our clock (clients' clocks drift a little): a command's
 * `occurredAt`, and the instant an auditor asks a record's state at.
 */
export const BUSINESS_TIME_SKEW_MS = 5 * 60_000;
/** Whether an instant lies past now by more than the clock skew allowed (nothing is known about it yet). */
export const isBeyondNow = (instantMs: number, nowMs: number): boolean => instantMs > nowMs + BUSINESS_TIME_SKEW_MS;
export const isBusinessInstant = (iso: string): boolean => inBusinessYears(new Date(iso).getUTCFullYear());
/**
 * Whether a day (`YYYY-MM-DD`) has begun (UTC, give or take the clock skew): figures at the end of a
 * later day (analytics as of a day, a model's cutoff) would change as that day's events arrive.
 */
export const hasBegun = (day: string, nowMs: number): boolean => !isBeyondNow(Date.parse(`${day}T00:00:00Z`), nowMs);
/** An ISO calendar date whose year is within the business years. */
export const isBusinessDate = (iso: string): boolean => inBusinessYears(Number(iso.slice(0, 4)));

/**
 * An aggregate id: a UUID, in lower case. A UUID is case-insensitive (RFC 9562) and the read models
 * store it as `uuid`, but a stream is named by its text: `customer-6F1C...` beside `customer-6f1c...`
 * would be a second stream of the same row, so registering the upper-case spelling of another
 * team's customer took that customer's row over.
 */
export const Id = z.uuid().toLowerCase();
/**
 * A person named by text where any text may name one (a deal's owner, a feedback item's assignee or
 * responder: `import` for an import's rows, or a user id). Spelled as a UUID it is a user's id and is
 * read in lower case as every id is: a scope compares it with user ids, so an owner sent as
 * `DE66...` never saw the deal, and the pipeline counted one owner twice.
 */
const UUID_SPELLING = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const personRefOf = (text: string): string => (UUID_SPELLING.test(text) ? text.toLowerCase() : text);
export const PersonRef = SingleLineText.min(1).max(200).overwrite(personRefOf);
/** Whether a PersonRef names a user (it is spelled as a user id); a name (an import's) names none. */
export const namesUser = (ref: string): boolean => UUID_SPELLING.test(ref);
/**
 * A person as a command names one: a PersonRef but `me`, which is no one until an API request makes
 * it the user its key belongs to (api/command-route.ts); stored as sent, it was an owner nobody is,
 * the same `me` for every caller. Events keep their own rule, so those stored with `me` before still read.
 */
export const CommandPersonRef = PersonRef.refine((text) => text !== 'me', {
  message: "'me' names no one here: send a user id ('me' is the caller's user only in an API request's body)",
}).refine((text) => text === 'me' || text.toLowerCase() !== 'me', {
  // `ME` or `Me` was stored as an owner nobody is, counted apart in the pipeline by owner.
  message: "write 'me' in lower case for your own user, or send a user id",
});
/**
 * The largest time zone offset, in minutes, that PostgreSQL's timestamptz takes (±15:59); ISO 8601 and
 * zod allow up to ±23:59, and an event holding `+16:00` was stored and then stopped every projection
 * that cast it ("time zone displacement out of range"). Real zones span -12:00 to +14:00.
 */
export const MAX_OFFSET_MINUTES = 15 * 60 + 59;
const OFFSET_RULE = 'a time zone offset within ±15:59 (real zones span -12:00 to +14:00)';
const OFFSET = /([+-])(\d{2}):?(\d{2})?$/;
/** Whether an ISO instant's offset (if any) is one PostgreSQL can store. */
export const hasStorableOffset = (iso: string): boolean => {
  const match = OFFSET.exec(iso.slice(19));
  return !match || Number(match[2]) * 60 + Number(match[3] ?? 0) <= MAX_OFFSET_MINUTES;
};
/**
 * Fractions of a second past milliseconds, cut off (not rounded). JavaScript's Date holds
 * milliseconds and cuts the rest; PostgreSQL's timestamptz holds microseconds and rounds the 7th digit.
 * `23:59:59.9999999Z` (.NET writes 7 digits, Java up to 9) was stored as the next day (month, year) in
 * the read models and as this day by every fold done in JavaScript (analytics days and cohorts, the
 * audit's record state); `10:00:00.123456Z` (Python's isoformat) was kept whole in a row until a later
 * event rewrote the row from its loaded Date as `.123`, so a replay (which keeps it whole) differed.
 */
export const cutToMilliseconds = (iso: string): string => iso.replace(/(\.\d{3})\d+/, '$1');
/**
 * `abort`: a text that is no time is not checked further. The rules after it read it as a time all the
 * same, and said a second, wrong thing: `2016-12-31T23:59:60Z` (a leap second, which zod refuses) was
 * also "a time in the years 1900-2200". So for a day and a month.
 */
const IsoDateTimeWithOffset = z.iso.datetime({ offset: true, abort: true });
/**
 * The pattern the API description gives such a time: zod's own, with offset hours up to 15 as
 * `hasStorableOffset` takes them (its 00-23 let a client that checks against the description send
 * `+16:00`, which the server refuses). Derived from zod's, so that it keeps whatever else zod checks.
 */
const ZOD_OFFSET_HOURS = '[+-](?:[01]\\d|2[0-3])';
const zodPattern = (z.toJSONSchema(IsoDateTimeWithOffset) as { pattern?: string }).pattern ?? '';
const STORABLE_DATETIME_PATTERN = zodPattern.includes(ZOD_OFFSET_HOURS) ? zodPattern.replace(ZOD_OFFSET_HOURS, '[+-](?:0\\d|1[0-5])') : undefined;
/** The ISO 8601 form every time the API takes is written in: with seconds, `Z` or a `+02:00` offset. */
export const IsoDateTimeText = IsoDateTimeWithOffset.refine(hasStorableOffset, OFFSET_RULE)
  .overwrite(cutToMilliseconds)
  .meta(STORABLE_DATETIME_PATTERN ? { pattern: STORABLE_DATETIME_PATTERN } : {});
/** A business time: ISO 8601 with offset, years 1900-2200. Every accepted `occurredAt` and schedule uses it. */
export const IsoDateTime = IsoDateTimeText.refine(isBusinessInstant, BUSINESS_YEARS_RULE);
/**
 * When a fact happened in the business (metadata.occurredAt), given on any command that records one,
 * e.g. to import history: the same schema as a purchase's `occurredAt`. Not in the future beyond a
 * small clock skew (checked by the command handler, which has the clock).
 */
export const BusinessTime = IsoDateTime;

type WithBusinessTime<S> =
  S extends z.ZodObject<infer Shape, infer Config> ? z.ZodObject<Omit<Shape, 'occurredAt'> & { occurredAt: z.ZodOptional<typeof BusinessTime> }, Config> : S;

/**
 * A command catalogue whose commands each accept `occurredAt` (business time), but those in `except`
 * (facts that can only happen now, such as forgetting a customer). Strictness and refinements are kept.
 */
export const withBusinessTime = <T extends Record<string, z.ZodObject>, X extends keyof T = never>(
  schemas: T,
  except: readonly X[] = [],
): { [K in keyof T]: K extends X ? T[K] : WithBusinessTime<T[K]> } =>
  Object.fromEntries(
    Object.entries(schemas).map(([type, schema]) => [type, except.includes(type as X) ? schema : schema.safeExtend({ occurredAt: BusinessTime.optional() })]),
  ) as never;
/** A business day (`YYYY-MM-DD`), years 1900-2200. */
export const IsoDate = z.iso.date({ abort: true }).refine(isBusinessDate, BUSINESS_YEARS_RULE);
/** A business month (`YYYY-MM`), years 1900-2200 (a month of year 0 reached PostgreSQL as an out-of-range date). */
export const IsoMonth = z
  .string()
  .regex(/^\d{4}-(0[1-9]|1[0-2])$/, { message: 'a month YYYY-MM', abort: true })
  .refine(isBusinessDate, BUSINESS_YEARS_RULE);
export const ShortText = SafeText.trim().min(1).max(200);
/** A text in Unicode NFC: one spelling of `é`, whether typed precomposed or decomposed (names, tags, search). */
export const inNfc = (text: string): string => text.normalize('NFC');
/**
 * A name, title or subject that people pick from a list: at least one visible character. `trim()`
 * leaves zero-width and other format characters (U+200B, U+2060, U+FEFF inside), so a customer named
 * only by them was listed as a blank row nobody could tell apart or search for. Commands use it; the
 * events keep `ShortText`, which every name recorded before still meets.
 */
// Not a space, control or format character, a mark alone, a default-ignorable one (the Hangul and
// half-width fillers U+3164, U+FFA0, U+115F) or the blank Braille pattern U+2800: each renders as nothing.
const VISIBLE_CHARACTER = /[^\p{White_Space}\p{Cc}\p{Cf}\p{Z}\p{M}\p{Default_Ignorable_Code_Point}\u2800]/u;
// Read in NFC, as tags are: `José` typed precomposed or decomposed (as macOS tools write it) is one
// name to search and to the duplicates report. Before its length is checked: NFC can lengthen a text.
export const DisplayText = SingleLineText.overwrite(inNfc)
  .min(1)
  .max(200)
  .refine(
    // An empty text is the length rule's to name (one error a field).
    (text) => text === '' || VISIBLE_CHARACTER.test(text),
    'must contain a visible character (not only spaces or zero-width characters)',
  );
/**
 * An e-mail address mail can reach: RFC 5321 bounds a local part to 64 octets, a domain label to 63
 * and an address to 254 (its forward path of 256 with the angle brackets). Longer ones passed the
 * syntax check, could never be written to, and were truncated by mail tools that export them. The
 * syntax check takes ASCII only, so characters are octets. Events keep their earlier bound (320).
 */
const fitsSmtp = (email: string): boolean => {
  const at = email.lastIndexOf('@');
  return (
    at <= 64 &&
    email
      .slice(at + 1)
      .split('.')
      .every((label) => label.length <= 63)
  );
};
/**
 * zod's address syntax (`z.regexes.email`), with a top-level domain in punycode too: its own takes
 * letters only, and `info@example.xn--p1ai` (Russia's `.рф`), India's `.xn--h2brj9c` and China's
 * `.xn--fiqs8s` were refused as invalid.
 */
const EMAIL_SYNTAX = /^(?:[A-Za-z0-9_'+-]+\.)*[A-Za-z0-9_'+-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9-]*\.)+(?:[A-Za-z]{2,}|xn--[A-Za-z0-9-]+)$/;
/** What an address pasted from a web page or a document may carry unseen: zero-width spaces, direction marks, the word joiner. */
const INVISIBLE_IN_ADDRESS = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/u;
/**
 * An address as commands take it: spaces around it (pasted from a mail client) are dropped, as emails
 * compare trimmed. An invisible character, or a domain not in punycode, is refused saying so: the
 * refusal "Invalid email address" showed an address that looked valid.
 */
export const EmailAddress = SingleLineText.superRefine((email, context) => {
  const invisible = INVISIBLE_IN_ADDRESS.exec(email);
  if (invisible)
    context.addIssue({ code: 'custom', message: `the address contains an invisible character (${codePointOf(invisible[0])}): type it again without it` });
  // eslint-disable-next-line no-control-regex -- ASCII is the range checked
  else if (/[^\x00-\x7f]/.test(email.slice(email.lastIndexOf('@') + 1)))
    context.addIssue({ code: 'custom', message: 'write the domain in punycode (xn--...): info@xn--mnchen-3ya.de for info@münchen.de' });
}).pipe(z.email({ pattern: EMAIL_SYNTAX }).max(254).refine(fitsSmtp, 'a local part of at most 64 characters and domain labels of at most 63 (RFC 5321)'));
export const LongText = SafeText.max(10_000);
/** A long text as commands take it (a note's or a feedback item's body): `LongText` on several lines. */
export const LongMultiLineText = MultiLineText.max(10_000);
/**
 * A tag: letters (with their combining marks: Devanagari's vowel signs, a decomposed `é`), digits,
 * space, `_ : . -`, read in NFC so that `café` typed precomposed or decomposed is one tag, as filters
 * and untagging expect. Without marks, `हिन्दी` and a decomposed `café` were refused as not letters.
 */
const tagOf = (text: typeof SafeText) =>
  text
    .trim()
    .overwrite(inNfc)
    .min(1)
    .max(50)
    .regex(/^[\p{L}\p{N}_:.\- ][\p{L}\p{M}\p{N}_:.\- ]*$/u, 'letters, digits, space, _ : . -');
export const Tag = tagOf(SafeText);
/**
 * A tag a command gives: one that shows. The Hangul filler U+3164 is a letter to the rule above and
 * renders as nothing, so a customer could carry a tag nobody can see or type. Events keep `Tag`, which
 * every tag recorded before meets; removing one (untag) takes any `Tag`.
 */
export const NewTag = tagOf(SingleLineText).refine(
  (tag) => tag === '' || VISIBLE_CHARACTER.test(tag),
  'must contain a visible character (not only fillers or spaces)',
);

/** What a personal field reads as once its customer has been forgotten (crypto-shredded). */
export const ERASED = '[erased]';

/** Emails compare trimmed and in lower case (customers and users alike). */
export const normaliseEmail = (email: string): string => email.trim().toLowerCase();
