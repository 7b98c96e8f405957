import fc from 'fast-check';

/**
 * One seed per test file run, printed so a failure can be replayed: `FUZZ_SEED=<seed> npx vitest run <file>`.
 * fast-check also prints the seed and path of a failing property; this makes passing runs replayable too.
 */
export const fuzzSeed = (file: string): number => {
  const given = process.env.FUZZ_SEED;
  const seed = given !== undefined && /^-?\d+$/.test(given) ? Number(given) | 0 : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  console.log(`[fuzz] ${file}: seed ${seed} (replay with FUZZ_SEED=${seed})`);
  return seed;
};

/** Texts people really type, and the shapes that break storage: RTL, combining marks, emoji sequences, astral planes. */
const SAMPLES = [
  'Zoë Ångström',
  'محمد الأحمد',
  'שָׁלוֹם',
  'e\u0301\u0302\u0303 cafe\u0301',
  '👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱',
  '\u202eevil\u202c',
  '\ufeffBOM \u200bzero width',
  '日本語テキスト',
  "O'Brien; DROP TABLE customers;--",
  '%_\\ like wildcards',
  '__proto__',
  'constructor',
];

/** What PostgreSQL cannot store; the command side must refuse these. */
export const UNSTORABLE = ['a\u0000b', '\u0000', 'x\ud800', '\udc00y', 'a\udbff\u0041', '\ud83d'];

/** Full Unicode: any code point (NUL and lone surrogates included), real-world samples, and the unstorable ones. */
export const unicodeText = (constraints: { minLength?: number; maxLength?: number } = {}): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: 'binary', ...constraints }) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', ...constraints }) },
    { weight: 2, arbitrary: fc.constantFrom(...SAMPLES) },
    { weight: 1, arbitrary: fc.constantFrom(...UNSTORABLE) },
  );
