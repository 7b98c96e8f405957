import { describe, expect, it } from 'vitest';
import { completeMonths } from '../../analytics/service.ts';
import { dayOf } from '../../analytics/models/time.ts';

const rows = [
  { month: '2026-08', value: 100 },
  { month: '2026-10', value: 120 },
  { month: '2026-11', value: 3 },
];
const day = (iso: string) => dayOf(`${iso}T00:00:00Z`);

describe('complete months for the forecast', () => {
  it('leaves out a month the data reach the last day of while the calendar is still in it, and names it', () => {
    // Events dated the 30th of November on the 30th of November: the month is not over.
    expect(completeMonths(rows, day('2026-11-30'), day('2026-11-30'))).toEqual({
      months: [
        { month: '2026-08', value: 100 },
        { month: '2026-09', value: 0 },
        { month: '2026-10', value: 120 },
      ],
      partialMonth: '2026-11',
    });
  });

  it('leaves out a month the data stop in before its end', () => {
    expect(completeMonths(rows, day('2026-11-12'), day('2026-12-05')).partialMonth).toBe('2026-11');
  });

  it('keeps a month both the data and the calendar have passed; nothing partial then', () => {
    expect(completeMonths(rows, day('2026-11-30'), day('2026-12-01'))).toMatchObject({ partialMonth: null });
    expect(completeMonths(rows, day('2026-11-30'), day('2026-12-01')).months.at(-1)).toEqual({ month: '2026-11', value: 3 });
  });
});
