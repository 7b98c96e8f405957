/** Calendar days as integers (days since 1970-01-01, UTC) and the time units the models fit in. */

export const TIME_UNITS = ['day', 'week', 'month'] as const;
export type TimeUnit = (typeof TIME_UNITS)[number];

const MS_PER_DAY = 86_400_000;
/** A month is an average Gregorian month (365.25 / 12 days), so durations convert without a calendar. */
export const DAYS_PER_UNIT: Record<TimeUnit, number> = { day: 1, week: 7, month: 365.25 / 12 };

/** The UTC calendar day of an instant (purchases are aggregated per UTC calendar day). */
export const dayOf = (isoOrDate: string | Date): number =>
  Math.floor((typeof isoOrDate === 'string' ? Date.parse(isoOrDate) : isoOrDate.getTime()) / MS_PER_DAY);

export const dayToIsoDate = (day: number): string => new Date(day * MS_PER_DAY).toISOString().slice(0, 10);

/** `YYYY-MM` of a calendar day. */
export const monthOfDay = (day: number): string => dayToIsoDate(day).slice(0, 7);

export const toUnits = (days: number, unit: TimeUnit): number => days / DAYS_PER_UNIT[unit];

/** Months between two `YYYY-MM` strings (b - a). */
export const monthsBetween = (a: string, b: string): number =>
  (Number(b.slice(0, 4)) - Number(a.slice(0, 4))) * 12 + Number(b.slice(5, 7)) - Number(a.slice(5, 7));

export const addMonths = (month: string, n: number): string => {
  const index = Number(month.slice(0, 4)) * 12 + Number(month.slice(5, 7)) - 1 + n;
  return `${Math.floor(index / 12)}-${String((index % 12) + 1).padStart(2, '0')}`;
};
