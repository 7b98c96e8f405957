/**
 * Names in the order `?sort=name` lists them (dictionary order: case ignored, accents deciding only
 * between names otherwise equal), for the lists on PostgreSQL and on PGlite alike. The names of one
 * inner array tie: the id orders them. By code point, "Émile", "Łukasz" and "Ørjan" came after every
 * "Z", and "emile" and "Émile" were far apart.
 */
export const NAMES_IN_ORDER: readonly (string | readonly string[])[] = [
  'Ada Lovelace',
  'adam',
  'Bob',
  'emile',
  'Émile',
  'Łukasz',
  'Ørjan',
  'Strasse',
  'Straße',
  ['zoe', 'Zoe', 'ZOE'],
  'Zoë',
  'Zoë Adams',
  '김민준',
];

/** The names, ties included, as registered. */
export const NAMES = NAMES_IN_ORDER.flat();

/** The expected order of customers named `NAMES`, given their ids by name: a tie ordered by id (uuid order is its text's). */
export const expectedOrder = (idOf: ReadonlyMap<string, string>): string[] =>
  NAMES_IN_ORDER.flatMap((names) => (typeof names === 'string' ? [idOf.get(names)!] : names.map((n) => idOf.get(n)!).sort()));
