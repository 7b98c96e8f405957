/** What likely duplicates share, in the order `GET /customers/duplicates` lists their groups. */
export const DUPLICATE_REASONS = ['email', 'phone', 'name'] as const;
export type DuplicateReason = (typeof DUPLICATE_REASONS)[number];

/**
 * The `customers` columns that likely duplicates share, kept by the projection beside the profile
 * so that the duplicates report reads indexed keys instead of normalising every customer on each
 * request. Null when the customer takes no part (merged or forgotten, a phone of fewer than six
 * digits, a name without a letter or digit).
 */
export type MatchKeys = { email_key: string | null; phone_key: string | null; name_key: string | null };

/** The column of `customers` holding each reason's key. */
export const MATCH_KEY_COLUMN = { email: 'email_key', phone: 'phone_key', name: 'name_key' } as const satisfies Record<DuplicateReason, keyof MatchKeys>;

/**
 * Customers who can still be merged: the ones the report compares. Statuses are the fold's
 * (`CustomerStatus` in customer-fold.ts, which imports this file, so they are named as text here).
 */
const COMPARED: ReadonlySet<string> = new Set(['active', 'inactive']);

/**
 * The characters a pasted name may carry unseen (soft hyphen, combining grapheme joiner, Hangul
 * fillers, variation selectors, zero-width spaces and joiners, direction marks and isolates, word
 * joiner, byte-order mark), as a bracket expression that both
 * JavaScript and PostgreSQL's regular expressions read alike (the former definition in SQL uses it).
 */
export const INVISIBLE_NAME_CHARACTERS =
  '[\u00ad\u034f\u115f\u1160\u3164\uffa0\ufe00-\ufe0f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]';
// eslint-disable-next-line no-misleading-character-class -- the combining grapheme joiner is listed alone on purpose: it is dropped
const INVISIBLE_IN_NAMES = new RegExp(INVISIBLE_NAME_CHARACTERS, 'g');

/**
 * A name (or a search for one) as `?search=` compares it: lower case, without the invisible characters
 * a pasted name may carry ("Ad\u200ba" was not found by "ada"). Empty when nothing visible is left.
 */
export const searchFormOf = (text: string): string => text.replace(INVISIBLE_IN_NAMES, '').toLowerCase();

/**
 * What is not part of a name's words: all but letters, digits and the combining marks written with
 * letters (Devanagari's vowel signs, an accent typed apart). Marks broke words apart: `राम शर्मा` and
 * `रीमा शर्मा` both read `र म शर` and were reported as one person.
 */
const NOT_IN_WORDS = /[^\p{L}\p{M}\p{N}]+/gu;

let notInWordsBracket: string | undefined;

/**
 * NOT_IN_WORDS as a PostgreSQL regular expression, its characters listed by code point: PostgreSQL's
 * `[:alnum:]` depends on the database's locale (under C.UTF-8 it left out some marks, took superscript
 * digits as no digits), so a key it gave was not always the projection's. Built when first asked for.
 */
export const notInWordsSql = (): string => {
  if (notInWordsBracket === undefined) {
    const inWords = /[\p{L}\p{M}\p{N}]/u;
    const ranges: string[] = [];
    let start = -1;
    for (let point = 0; point <= 0x110000; point += 1) {
      const part = point < 0x110000 && (point < 0xd800 || point > 0xdfff) && inWords.test(String.fromCodePoint(point));
      if (part && start < 0) start = point;
      else if (!part && start >= 0 && !(point >= 0xd800 && point <= 0xdfff)) {
        ranges.push(start === point - 1 ? String.fromCodePoint(start) : `${String.fromCodePoint(start)}-${String.fromCodePoint(point - 1)}`);
        start = -1;
      }
    }
    notInWordsBracket = `[^${ranges.join('')}]+`;
  }
  return notInWordsBracket;
};

/** Fewer digits than this is not a phone number worth matching on (an extension, a typo). */
const MIN_PHONE_DIGITS = 6;

/**
 * The keys of a customer, as the report has always defined them: the email lower-cased without the
 * spaces around it; the phone's digits; the name's words (letters, their marks and digits, composed
 * (NFC) and lower-cased), sorted, so that case, punctuation, invisible characters and word order do not
 * matter. Accents are kept: `José` and `Jose` are two names.
 */
export function matchKeysOf(customer: { name: string; email: string; phone: string | null; status: string }): MatchKeys {
  if (!COMPARED.has(customer.status)) return { email_key: null, phone_key: null, name_key: null };
  const digits = (customer.phone ?? '').replace(/[^0-9]/g, '');
  const words = customer.name
    // Invisible characters are dropped, not a word break: "Ad\u200ba Lovelace" escaped the report beside "Ada Lovelace".
    .replace(INVISIBLE_IN_NAMES, '')
    // Composed, an accent typed apart is the letter's, as in the same name typed whole.
    .normalize('NFC')
    .replace(NOT_IN_WORDS, ' ')
    .toLowerCase()
    .split(' ')
    .filter((w) => w !== '')
    .sort();
  return {
    // PostgreSQL's trim(), which the report used: spaces only, not every kind of white space.
    email_key: customer.email.replace(/^ +| +$/g, '').toLowerCase(),
    phone_key: digits.length >= MIN_PHONE_DIGITS ? digits : null,
    name_key: words.length > 0 ? words.join(' ') : null,
  };
}
