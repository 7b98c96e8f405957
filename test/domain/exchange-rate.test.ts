import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import { canonicalRate, type SetExchangeRate } from '../../domain/exchange-rate/commands.ts';
import { exchangeRateDecider } from '../../domain/exchange-rate/decider.ts';
import type { ExchangeRateEvent } from '../../domain/exchange-rate/events.ts';
import { deciderSpec } from '../support/decider-spec.ts';
import { fuzzSeed } from '../support/fuzz.ts';

const spec = deciderSpec(exchangeRateDecider);
const set = (rate: string, validFrom = '2026-03-01T00:00:00Z', currency = 'JPY'): SetExchangeRate => ({
  type: 'SetExchangeRate',
  occurredAt: '2026-03-02T08:00:00Z',
  currency,
  rate,
  validFrom,
  baseCurrency: 'EUR',
});
const wasSet = (rate: string, previousRate: string | null = null, validFrom = '2026-03-01T00:00:00Z'): ExchangeRateEvent => ({
  type: 'ExchangeRateSet',
  data: { currency: 'JPY', baseCurrency: 'EUR', rate, validFrom, previousRate },
});

describe('exchange rate: set and correct', () => {
  it('sets a rate from a business time', () => {
    spec
      .given([])
      .when(set('0.0061'))
      .then([wasSet('0.0061')]);
  });
  it('a new validFrom is a new rate, not a correction', () => {
    spec
      .given([wasSet('0.0061')])
      .when(set('0.0063', '2026-04-01T00:00:00Z'))
      .then([wasSet('0.0063', null, '2026-04-01T00:00:00Z')]);
  });
  it('the same validFrom with another rate is a correction that names the rate it supersedes', () => {
    spec
      .given([wasSet('0.0061')])
      .when(set('0.0062'))
      .then([wasSet('0.0062', '0.0061')]);
    // The same instant spelt with an offset is the same validFrom.
    spec
      .given([wasSet('0.0061')])
      .when(set('0.0062', '2026-03-01T09:00:00+09:00'))
      .then([wasSet('0.0062', '0.0061', '2026-03-01T09:00:00+09:00')]);
    // Corrected twice: the latest fact is the one superseded.
    spec
      .given([wasSet('0.0061'), wasSet('0.0062', '0.0061')])
      .when(set('0.0061'))
      .then([wasSet('0.0061', '0.0062')]);
  });
  it('the same rate again records nothing (a re-import)', () => {
    spec
      .given([wasSet('0.0061')])
      .when(set('0.0061'))
      .thenNothing();
  });
  it('refuses a rate for the base currency itself', () => {
    const error = spec
      .given([])
      .when(set('1', '2026-03-01T00:00:00Z', 'EUR'))
      .thenRefused('exchange_rate.base_currency', 'currency');
    expect(error.kind).toBe('rule_violated');
  });
});

describe('exchange rate: the command schema', () => {
  const parse = (rate: unknown) => commandSchemas.SetExchangeRate.safeParse({ currency: 'JPY', rate, validFrom: '2026-03-01T00:00:00Z', baseCurrency: 'EUR' });
  it('keeps a rate as a canonical decimal string, from a number or a string', () => {
    expect(parse(0.0061).data?.rate).toBe('0.0061');
    expect(parse(1e-7).data?.rate).toBe('0.0000001');
    expect(parse('001.2500').data?.rate).toBe('1.25');
    expect(parse(150).data?.rate).toBe('150');
    expect(parse('0.0000000001').data?.rate).toBe('0.0000000001');
    expect(parse(9_999_999_999).data?.rate).toBe('9999999999');
    // Strings take the same canonical spelling: whole numbers, inner zeros kept.
    expect(parse('150').data?.rate).toBe('150');
    expect(parse('0150').data?.rate).toBe('150');
    expect(parse('102.5').data?.rate).toBe('102.5');
    expect(parse('100.00').data?.rate).toBe('100');
  });
  it('a number with more than 10 decimals is refused with the rule, not rounded', () => {
    // The last two lie within a few units in the last place of a 10-decimal value (98360.3241825687, 0.0004882813):
    // a JSON number is a double, read as its shortest spelling, which has 11 decimals.
    for (const rate of [1.00000000001, JSON.parse('98360.32418256872') as number, 0.00048828125, 1.5e-11, 0.1 + 0.2]) {
      const refused = parse(rate);
      expect(refused.success, String(rate)).toBe(false);
      expect(refused.error?.issues[0]).toMatchObject({ code: 'custom', path: ['rate'], message: 'a positive decimal with at most 10 decimals' });
    }
  });
  it('a number is kept with exactly the digits it was written with (at most 15 significant digits, so the double holds them)', () => {
    expect(parse(98360.3241825687).data?.rate).toBe('98360.3241825687');
    expect(parse(1.5e-7).data?.rate).toBe('0.00000015');
    expect(parse(1.2345e-10).success).toBe(false);
    const rate = fc
      .tuple(fc.integer({ min: 0, max: 10 }), fc.bigInt({ min: 1n, max: 999_999_999_999_999n }))
      .map(([decimals, digits]) =>
        canonicalRate(`${digits / 10n ** BigInt(decimals)}.${(digits % 10n ** BigInt(decimals)).toString().padStart(decimals, '0')}`),
      )
      .filter((text) => Number(text) <= 9_999_999_999);
    fc.assert(
      fc.property(rate, (text) => {
        expect(parse(Number(text)).data?.rate).toBe(text);
      }),
      { numRuns: 5_000, seed: fuzzSeed('test/domain/exchange-rate.test.ts') },
    );
  });
  it('refuses zero, negatives, more than 10 decimals, too large and non-decimals', () => {
    for (const rate of [0, -1, '0', '0.0000', '0.00000000001', 1e-11, 10_000_000_000, '12345678901', '1e3', 'NaN', '', ' ', null, Number.POSITIVE_INFINITY]) {
      expect(parse(rate).success, String(rate)).toBe(false);
    }
  });
  it('refuses a lower-case or unknown-shaped currency and a bad validFrom', () => {
    const base = { currency: 'JPY', rate: 1, validFrom: '2026-03-01T00:00:00Z', baseCurrency: 'EUR' };
    expect(commandSchemas.SetExchangeRate.safeParse({ ...base, currency: 'jpy' }).success).toBe(false);
    expect(commandSchemas.SetExchangeRate.safeParse({ ...base, validFrom: '2026-03-01' }).success).toBe(false);
    expect(commandSchemas.SetExchangeRate.safeParse({ ...base, validFrom: '0000-01-01T00:00:00Z' }).success).toBe(false);
  });
});
