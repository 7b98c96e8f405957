import { ERASED } from '../../domain/shared.ts';
import { INVISIBLE_NAME_CHARACTERS } from './match-keys.ts';

/**
 * Where a name sorts in a list (`?sort=name`): dictionary order, written by the projection into a
 * `name_sort` column that is compared byte by byte (COLLATE "C") and indexed with the id as
 * tie-breaker. Stored rather than left to a database collation: the embedded engine (PGlite) and
 * PostgreSQL carry different ICU versions (or none), and a libc locale depends on the server, so
 * only a key computed here orders alike on both, and no library upgrade reorders a built index.
 *
 * The key is the name's letters without case or accents ("Émile" sorts as "emile", so between "adam"
 * and "zoe"), then, for a name that has accents, a separator below every character the first part
 * holds and the name in lower case with them: accents decide only between names otherwise equal,
 * an unaccented one first. Case decides nothing: "zoe" and "Zoe" tie, and the id orders them.
 */
const NAME_SORT_SEPARATOR = '\u0001';

/** Combining accents (and the blocks extending them) that a decomposed Latin, Greek or Cyrillic letter carries. */
// eslint-disable-next-line no-misleading-character-class -- the marks are matched alone on purpose: they are dropped
const ACCENTS = /[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]/g;
/** Letters with an accent of their own shape, which no decomposition separates from it. */
const FOLDED_LETTERS: Readonly<Record<string, string>> = { ø: 'o', đ: 'd', ł: 'l', ħ: 'h', ı: 'i', æ: 'ae', œ: 'oe', ß: 'ss', þ: 'th', ð: 'd' };
const FOLDED = new RegExp(`[${Object.keys(FOLDED_LETTERS).join('')}]`, 'g');
const INVISIBLE = new RegExp(INVISIBLE_NAME_CHARACTERS, 'g');
/** Control characters: none is left in the first part, so the separator sorts below all it holds. */
const CONTROLS = /\p{Cc}/gu;
/**
 * The last code point, a noncharacter, whose UTF-8 bytes sort after every other's: no name's key holds
 * it, so a key that starts with it sorts after every name's.
 */
const LAST_CODE_POINT = '\u{10ffff}';

/**
 * The key of a forgotten customer's name: after every name's, so that `?sort=name` lists the erased
 * last (and `-name` first, its exact reverse, as keyset pages need), ordered among themselves by id.
 * As `[erased]` itself, it sorted among the names, before every letter. It reads as `[erased]` after
 * the invisible U+10FFFF.
 */
export const ERASED_NAME_SORT = `${LAST_CODE_POINT}${ERASED}`;

/** A name in lower case, composed, without invisible or control characters (nor the last code point). */
const lowerForm = (name: string): string => name.replace(INVISIBLE, '').replace(CONTROLS, '').replaceAll(LAST_CODE_POINT, '').normalize('NFC').toLowerCase();

/** The `name_sort` key of a name (see above). */
export function nameSortOf(name: string): string {
  const lower = lowerForm(name);
  // Decomposed to take the accents off, composed again so that a Hangul syllable stays one character.
  const letters = lower
    .normalize('NFD')
    .replace(ACCENTS, '')
    .normalize('NFC')
    .replace(FOLDED, (c) => FOLDED_LETTERS[c]!);
  return letters === lower ? letters : `${letters}${NAME_SORT_SEPARATOR}${lower}`;
}
