import { z } from 'zod';
import { IsoCurrency } from '../money.ts';
import { IsoDateTime, MultiLineText, SafeText } from '../shared.ts';
import { MAX_RATE, RATE_DECIMALS, RateDecimal } from './events.ts';

/**
 * A JSON number is a double: it is read as its shortest round-trip decimal spelling (`String(n)`, which
 * writes an exponent below 1e-6) and spelled plainly, or undefined when that spelling has more than 10
 * decimals. So 1.0842 is '1.0842', and the JSON number 98360.32418256872 (the double 98360.32418256871)
 * is refused rather than rounded, however close it lies to a 10-decimal value. (The schema's `max`
 * keeps `n` below 1e21, so no exponent is positive.)
 */
const decimalOfNumber = (n: number): string | undefined => {
  const [digits = '', exponent = '0'] = String(n).split('e');
  const decimals = (digits.split('.')[1] ?? '').length - Number(exponent);
  // `toFixed` at exactly that many decimals gives back the same digits, without the exponent.
  return decimals <= RATE_DECIMALS ? n.toFixed(decimals) : undefined;
};

/** '001.2500' -> '1.25': one spelling per value, so a re-import of the same rate is recognised. */
export const canonicalRate = (text: string): string => {
  const [whole = '0', fraction = ''] = text.split('.');
  const w = whole.replace(/^0+(?=\d)/, '');
  const f = fraction.replace(/0+$/, '');
  return f === '' ? w : `${w}.${f}`;
};

/**
 * A rate as clients send it: a JSON number (1.0842) or a decimal string ('1.0842'), positive, at most
 * 10 decimals and 10 whole digits. Becomes the canonical decimal string the event stores.
 */
export const ExchangeRateInput = z
  .union([z.number().finite().positive().max(MAX_RATE), SafeText.trim().regex(/^\d{1,10}(\.\d{1,20})?$/, 'a positive decimal such as 1.0842')])
  .transform((value, ctx) => {
    const text = typeof value === 'number' ? decimalOfNumber(value) : canonicalRate(value);
    if (text === undefined || !RateDecimal.safeParse(text).success) {
      ctx.addIssue({ code: 'custom', message: `a positive decimal with at most ${RATE_DECIMALS} decimals` });
      return z.NEVER;
    }
    return text;
  });

export const SetExchangeRatePayload = z
  .object({
    currency: IsoCurrency,
    rate: ExchangeRateInput,
    validFrom: IsoDateTime,
    /** Filled by the caller from the configuration (CRM_BASE_CURRENCY), never by the client. */
    baseCurrency: IsoCurrency,
    /** Why (a correction's reason is what an auditor reads). */
    reason: MultiLineText.trim().min(1).max(2000).optional(),
  })
  .strict();

export const exchangeRateCommandSchemas = { SetExchangeRate: SetExchangeRatePayload } as const;

export type SetExchangeRate = { type: 'SetExchangeRate'; occurredAt: string } & z.infer<typeof SetExchangeRatePayload>;
export type ExchangeRateCommand = SetExchangeRate;
