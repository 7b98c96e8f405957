import { describe, expect, it } from 'vitest';
import { RecordPurchasePayload } from '../../domain/customer/commands.ts';
import { Amount, CommandAmount, fromMinor, toMinor } from '../../domain/money.ts';

/** Amounts as a JSON body sends them: the text, read as JSON.parse reads it. */
const sent = (text: string): number => JSON.parse(text) as number;

describe('an amount in ten-thousandths', () => {
  it('is exact for every 3-decimal amount up to the largest taken, where scaling by a multiplication was off for 17% of those above 2^39', () => {
    // 899999999990.003 * 10,000 is 8999999999900031 as a double.
    expect(Math.round(sent('899999999990.003') * 10_000)).toBe(8_999_999_999_900_031);
    expect(toMinor(sent('899999999990.003'))).toBe(8_999_999_999_900_030);
    let off = 0;
    for (let i = 0; i < 20_000; i++) {
      const whole = 549_755_813_888 + ((i * 17_497_997) % 350_244_186_112);
      const thousandths = (i * 7_919) % 1_000;
      if (toMinor(sent(`${whole}.${String(thousandths).padStart(3, '0')}`)) !== whole * 10_000 + thousandths * 10) off += 1;
    }
    expect(off).toBe(0);
  });

  it('reads small amounts, negative ones and float noise as before', () => {
    expect(toMinor(0.1 + 0.2)).toBe(3_000);
    expect(toMinor(1234567.89)).toBe(12_345_678_900);
    expect(toMinor(-12.5)).toBe(-125_000);
    expect(toMinor(-899_999_999_990.003)).toBe(-8_999_999_999_900_030);
    expect(toMinor(8_589_934_592)).toBe(85_899_345_920_000);
    expect(fromMinor(toMinor(899_999_999_999.999))).toBe(899_999_999_999.999);
  });
});

describe('an amount a command takes', () => {
  const refused = (value: number) => CommandAmount.safeParse(value).error?.issues.map((issue) => issue.message) ?? [];

  it('takes 4 decimals below 2^39 and 3 from there up, where a fourth arrived as its neighbour (899999999999.0003 recorded as .0002)', () => {
    expect(CommandAmount.parse(sent('549755813887.9999'))).toBe(549_755_813_887.9999);
    expect(CommandAmount.parse(sent('899999999999.999'))).toBe(899_999_999_999.999);
    expect(CommandAmount.parse(sent('600000000000.5'))).toBe(600_000_000_000.5);
    for (const text of ['899999999999.0003', '600000000000.0008', '549755813888.0001']) {
      expect(refused(sent(text))).toEqual(['at most 3 decimal places from 549,755,813,888 up: a JSON number cannot carry a fourth decimal there']);
    }
    // The command says so naming the field; an event recorded before the rule stays readable.
    const purchase = RecordPurchasePayload.safeParse({
      customerId: '11111111-1111-4111-8111-111111111111',
      orderId: 'A-1',
      amount: sent('899999999999.0003'),
      currency: 'EUR',
    });
    expect(purchase.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['amount']);
    expect(Amount.parse(899_999_999_999.0002)).toBe(899_999_999_999.0002);
  });
});
