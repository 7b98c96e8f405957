/**
 * Money in read models: PostgreSQL `numeric(28,4)`, handled in memory as bigint ten-thousandths so
 * sums never drift through floats. Event amounts are JS numbers with at most 4 decimals (domain/money.ts).
 */
export const MONEY_TYPE = 'numeric(28,4)';

/** A JS amount in major units -> ten-thousandths. */
export const minorOf = (amount: number): bigint => BigInt(Math.round(amount * 10_000));

/** A numeric string from PostgreSQL ('120.5000', '-3', null) -> ten-thousandths. */
export const minorOfNumeric = (value: unknown): bigint => {
  if (value === null || value === undefined) return 0n;
  const text = String(value).trim();
  const negative = text.startsWith('-');
  const [whole = '0', fraction = ''] = text.replace(/^[-+]/, '').split('.');
  const minor = BigInt(whole || '0') * 10_000n + BigInt((fraction + '0000').slice(0, 4));
  return negative ? -minor : minor;
};

/** Ten-thousandths -> a numeric literal with 4 decimals ('120.5000'). */
export const numericOf = (minor: bigint): string => {
  const negative = minor < 0n;
  const abs = negative ? -minor : minor;
  const text = `${abs / 10_000n}.${String(abs % 10_000n).padStart(4, '0')}`;
  return negative ? `-${text}` : text;
};

/**
 * `numerator / denominator` rounded to a whole number half away from zero, as PostgreSQL rounds a
 * numeric: exact on integers, never a float in between.
 */
export const divideRounded = (numerator: bigint, denominator: bigint): bigint => {
  const negative = numerator < 0n !== denominator < 0n;
  const n = numerator < 0n ? -numerator : numerator;
  const d = denominator < 0n ? -denominator : denominator;
  let quotient = n / d;
  if (2n * (n % d) >= d) quotient += 1n;
  return negative ? -quotient : quotient;
};

/**
 * A JS number of any precision -> ten-thousandths, as a `numeric(p,4)` column stores it from its JSON
 * text (the shortest decimal that reads back as the number): rounded half away from zero at the fifth
 * decimal, on the decimal digits (a float product could land either side of a tie).
 */
export const roundedMinorOf = (value: number): bigint => {
  const [mantissa = '0', exponent = '0'] = String(value).toLowerCase().split('e');
  const negative = mantissa.startsWith('-');
  const [whole = '0', fraction = ''] = mantissa.replace(/^[-+]/, '').split('.');
  // value = digits x 10^(exponent - decimals), so ten-thousandths = digits x 10^shift.
  const digits = BigInt(whole + fraction);
  const shift = Number(exponent) - fraction.length + 4;
  const minor = shift >= 0 ? digits * 10n ** BigInt(shift) : divideRounded(digits, 10n ** BigInt(-shift));
  return negative ? -minor : minor;
};

/** Adds a JS amount to a stored numeric. */
export const addMoney = (stored: unknown, amount: number): string => numericOf(minorOfNumeric(stored) + minorOf(amount));
export const subtractMoney = (stored: unknown, amount: number): string => numericOf(minorOfNumeric(stored) - minorOf(amount));
