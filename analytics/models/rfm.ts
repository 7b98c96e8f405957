import { fromMinor, toMinor } from '../../domain/money.ts';
import { toUnits, type TimeUnit } from './time.ts';

/**
 * What the projection keeps per customer about purchases (see analytics/projection.ts): enough to
 * derive RFM in O(1). Values are net of refunds.
 */
export interface PurchaseSummary {
  /** Calendar day (days since epoch) of the first purchase. */
  firstDay: number;
  /** Calendar day of the last purchase. */
  lastDay: number;
  /** Number of distinct calendar days with a purchase (first day included). */
  purchaseDays: number;
  /** Net value of all purchases. */
  totalValue: number;
  /** Net value of the purchases made on the first day (excluded from monetary). */
  firstDayValue: number;
}

/** RFM as the BG/NBD literature defines it, in the chosen time unit. */
export interface Rfm {
  /** Repeat purchase days: days with a purchase after the first. */
  frequency: number;
  /** Time from the first to the last purchase. */
  recency: number;
  /** Time from the first purchase to the observation end. */
  T: number;
  /** Mean net value of the repeat purchase days (0 when frequency is 0). */
  monetary: number;
}

/**
 * RFM of a customer at `observationEndDay` (a calendar day: the customer's age T counts to the end of
 * that day's start, i.e. T = observationEnd - firstDay in days). Purchases are aggregated per calendar
 * day first, as Fader-Hardie-Lee do, so two orders on one day are one transaction.
 */
export function rfmOf(summary: PurchaseSummary, observationEndDay: number, unit: TimeUnit): Rfm {
  const frequency = summary.purchaseDays - 1;
  return {
    frequency,
    recency: toUnits(summary.lastDay - summary.firstDay, unit),
    T: toUnits(Math.max(observationEndDay, summary.lastDay) - summary.firstDay, unit),
    // In ten-thousandths, as the values are kept: 116.6667 - 100 in floats is 16.666700000000006.
    monetary: frequency > 0 ? fromMinor(toMinor(summary.totalValue) - toMinor(summary.firstDayValue)) / frequency : 0,
  };
}

/** Folds (day, value) purchases into a summary; the projection does the same incrementally. */
export function summarisePurchases(purchases: readonly { day: number; value: number }[]): PurchaseSummary | null {
  if (purchases.length === 0) return null;
  const byDay = new Map<number, number>();
  for (const p of purchases) byDay.set(p.day, (byDay.get(p.day) ?? 0) + p.value);
  const days = [...byDay.keys()].sort((a, b) => a - b);
  const firstDay = days[0]!;
  return {
    firstDay,
    lastDay: days[days.length - 1]!,
    purchaseDays: days.length,
    totalValue: [...byDay.values()].reduce((s, v) => s + v, 0),
    firstDayValue: byDay.get(firstDay)!,
  };
}
