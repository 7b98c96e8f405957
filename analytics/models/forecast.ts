import { MultivariateLinearRegression } from 'ml-regression';
import { addMonths } from './time.ts';

/**
 * Monthly revenue forecasts, two ways:
 * - regression (`ml-regression` MultivariateLinearRegression): linear trend plus month-of-year
 *   dummies when there are at least two full years, trend only otherwise;
 * - Holt-Winters additive exponential smoothing (season 12) with at least two years, Holt's linear
 *   trend otherwise; smoothing constants chosen on a grid by one-step-ahead squared error.
 * Each is backtested: fitted without the last `holdout` months, then scored on them (MAPE, RMSE).
 * Forecasts (and the backtests' predictions) are floored at zero.
 */
export interface MonthlyValue {
  month: string;
  value: number;
}

export interface Backtest {
  holdout: number;
  /** Mean absolute percentage error in percent, over held-out months with non-zero revenue. */
  mape: number | null;
  rmse: number;
}

export interface MethodForecast {
  method: string;
  forecast: MonthlyValue[];
  backtest: Backtest | null;
  parameters?: Record<string, number>;
}

const SEASON = 12;

const regressionRow = (t: number, monthIndex: number, seasonal: boolean): number[] => {
  const row = [t];
  if (seasonal) for (let m = 1; m < SEASON; m++) row.push(monthIndex === m ? 1 : 0);
  return row;
};

/** Forecast `horizon` values after `values` with a trend (+ seasonal dummies) regression. */
export function regressionForecast(values: readonly number[], firstMonthOfYear: number, horizon: number): { forecast: number[] } {
  const seasonal = values.length >= 2 * SEASON;
  if (values.length < 2) return { forecast: new Array<number>(horizon).fill(values[0] ?? 0) };
  const x = values.map((_, t) => regressionRow(t, (firstMonthOfYear + t) % SEASON, seasonal));
  const model = new MultivariateLinearRegression(
    x,
    values.map((v) => [v]),
  );
  const forecast = Array.from({ length: horizon }, (_, h) => {
    const t = values.length + h;
    return model.predict(regressionRow(t, (firstMonthOfYear + t) % SEASON, seasonal))[0]!;
  });
  return { forecast };
}

interface SmoothingFit {
  forecast: number[];
  parameters: Record<string, number>;
}

function holtLinear(values: readonly number[], horizon: number, alpha: number, beta: number): { sse: number; forecast: number[] } {
  let level = values[0]!;
  let trend = values.length > 1 ? values[1]! - values[0]! : 0;
  let sse = 0;
  for (let t = 1; t < values.length; t++) {
    const predicted = level + trend;
    sse += (values[t]! - predicted) ** 2;
    const previousLevel = level;
    level = alpha * values[t]! + (1 - alpha) * (level + trend);
    trend = beta * (level - previousLevel) + (1 - beta) * trend;
  }
  return { sse, forecast: Array.from({ length: horizon }, (_, h) => level + (h + 1) * trend) };
}

function holtWintersAdditive(values: readonly number[], horizon: number, alpha: number, beta: number, gamma: number): { sse: number; forecast: number[] } {
  // Initial level/trend from the first two seasons, seasonal indices from the first season's deviations.
  const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
  const first = mean(values.slice(0, SEASON));
  const second = mean(values.slice(SEASON, 2 * SEASON));
  let trend = (second - first) / SEASON;
  // The first season's mean sits at its middle (t = 5.5): detrend before taking seasonal indices,
  // and start the level at the end of that season.
  const middle = (SEASON - 1) / 2;
  let level = first + trend * middle;
  const seasonals = values.slice(0, SEASON).map((v, i) => v - (first + trend * (i - middle)));
  let sse = 0;
  for (let t = SEASON; t < values.length; t++) {
    const s = seasonals[t % SEASON]!;
    const predicted = level + trend + s;
    sse += (values[t]! - predicted) ** 2;
    const previousLevel = level;
    level = alpha * (values[t]! - s) + (1 - alpha) * (level + trend);
    trend = beta * (level - previousLevel) + (1 - beta) * trend;
    seasonals[t % SEASON] = gamma * (values[t]! - level) + (1 - gamma) * s;
  }
  const n = values.length;
  return { sse, forecast: Array.from({ length: horizon }, (_, h) => level + (h + 1) * trend + seasonals[(n + h) % SEASON]!) };
}

/** Exponential smoothing with constants picked on a 0.05..0.95 grid (deterministic, no optimiser needed). */
export function smoothingForecast(values: readonly number[], horizon: number): SmoothingFit {
  if (values.length < 2) return { forecast: new Array<number>(horizon).fill(values[0] ?? 0), parameters: {} };
  const grid = Array.from({ length: 10 }, (_, i) => 0.05 + i * 0.1);
  let best: { sse: number; forecast: number[]; parameters: Record<string, number> } | null = null;
  const seasonal = values.length >= 2 * SEASON;
  for (const alpha of grid) {
    for (const beta of grid) {
      for (const gamma of seasonal ? grid : [0]) {
        const fit = seasonal ? holtWintersAdditive(values, horizon, alpha, beta, gamma) : holtLinear(values, horizon, alpha, beta);
        if (!best || fit.sse < best.sse) best = { ...fit, parameters: seasonal ? { alpha, beta, gamma } : { alpha, beta } };
      }
    }
  }
  return { forecast: best!.forecast, parameters: best!.parameters };
}

export function backtestError(actual: readonly number[], predicted: readonly number[]): Omit<Backtest, 'holdout'> {
  const pairs = actual.map((a, i) => [a, predicted[i]!] as const);
  const nonZero = pairs.filter(([a]) => a !== 0);
  return {
    mape: nonZero.length ? (100 * nonZero.reduce((s, [a, p]) => s + Math.abs((a - p) / a), 0)) / nonZero.length : null,
    rmse: Math.sqrt(pairs.reduce((s, [a, p]) => s + (a - p) ** 2, 0) / pairs.length),
  };
}

/** Both methods, each with a backtest on the last `holdout` months (default: min(6, n/4)). */
export function forecastRevenue(history: readonly MonthlyValue[], horizon: number, holdout?: number): { history: MonthlyValue[]; methods: MethodForecast[] } {
  const values = history.map((h) => h.value);
  const firstMonth = history[0] ? Number(history[0].month.slice(5, 7)) - 1 : 0;
  const lastMonth = history[history.length - 1]?.month;
  // Revenue does not go below zero: a trend fitted through a fall (a history that ends in empty
  // months, an import that stopped before today) extrapolated to -1.6M a month before this floor.
  const floor = (forecast: number[]): number[] => forecast.map((v) => Math.max(0, v));
  const label = (forecast: number[]): MonthlyValue[] => (lastMonth ? floor(forecast).map((value, h) => ({ month: addMonths(lastMonth, h + 1), value })) : []);
  const hold = holdout ?? Math.min(6, Math.floor(values.length / 4));
  const canBacktest = hold >= 1 && values.length - hold >= 3;
  const train = values.slice(0, values.length - hold);
  const tail = values.slice(values.length - hold);
  const regression = regressionForecast(values, firstMonth, horizon);
  const smoothing = smoothingForecast(values, horizon);
  return {
    history: [...history],
    methods: [
      {
        method: values.length >= 2 * SEASON ? 'linear trend + month-of-year dummies (ml-regression)' : 'linear trend (ml-regression)',
        forecast: label(regression.forecast),
        backtest: canBacktest ? { holdout: hold, ...backtestError(tail, floor(regressionForecast(train, firstMonth, hold).forecast)) } : null,
      },
      {
        method: values.length >= 2 * SEASON ? 'Holt-Winters additive, season 12' : "Holt's linear exponential smoothing",
        forecast: label(smoothing.forecast),
        backtest: canBacktest ? { holdout: hold, ...backtestError(tail, floor(smoothingForecast(train, hold).forecast)) } : null,
        parameters: smoothing.parameters,
      },
    ],
  };
}
