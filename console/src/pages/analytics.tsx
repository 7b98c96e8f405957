import { useMemo, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { command, get, query } from '../api.ts';
import { bars, Chart, HeatTable, indexAxis, type ChartOptions } from '../charts.tsx';
import { can, CommandForm, fieldProblem, Loading, num, numberOf, pct, ProblemBox, Stat, text, useLoad } from '../ui.tsx';
import type { Role } from '../../../api/roles.ts';

interface CalibrationBin {
  from: number;
  to: number;
  count: number;
  observedRate: number;
  meanPredicted: number;
}
interface Model {
  version: number;
  fittedAt: string;
  asOf: string;
  timeUnit: string;
  horizon: number;
  discountRate: number;
  customers: number;
  /** Null when the data were too thin to fit. */
  bgnbd: { r: number; alpha: number; a: number; b: number } | null;
  gammaGamma: { p: number; q: number; v: number } | null;
  churn: {
    auc: number | null;
    logLoss: number;
    brier: number;
    accuracy: number;
    trainSize: number;
    testSize: number;
    churnRate: number;
    windowDays: number;
    calibration: CalibrationBin[];
  };
  forecast?: { methods: { method: string; backtest: { mape: number; rmse: number; holdout: number } }[] };
}
interface ClvPage {
  items: { clv: number; pAlive: number }[];
  total: number;
}
interface Retention {
  cohorts: { cohort: string; size: number; retention: number[] }[];
  periods: { period: string; crr: number | null }[];
}
interface Segments {
  segments: { segment: string; customers: number; meanClv: number }[];
}
interface Forecast {
  history: { month: string; value: number }[];
  methods: { method: string; forecast: { month: string; value: number }[]; backtest: { rmse: number; mape: number } }[];
}

const TIME_UNITS = ['day', 'week', 'month'] as const;
const monthSeconds = (month: string): number => Date.UTC(Number(month.slice(0, 4)), Number(month.slice(5, 7)) - 1, 1) / 1000;
const MAX_CLV_PAGES = 10;
/** The API's bound on the horizon (POST /analytics/models). */
const MAX_HORIZON = 3650;

export const AnalyticsPage = ({ role }: { role: Role }) => {
  const [version, setVersion] = useState(0);
  const model = useLoad((signal) => get<Model>('/analytics/models/latest', { signal }), [version]);
  return (
    <section aria-labelledby="analytics-title">
      <h1 id="analytics-title">Analytics</h1>
      {can(role, 'POST /analytics/models') ? (
        <CommandForm
          title="Fit the models"
          submitLabel="Fit models"
          success="Models fitted."
          level={2}
          fields={[
            { name: 'asOf', label: 'As of (blank: the latest business day)', type: 'date' },
            { name: 'timeUnit', label: 'Time unit', type: 'select', options: TIME_UNITS, value: 'week', required: true },
            { name: 'horizon', label: 'Horizon (time units; blank: one year)', type: 'number' },
          ]}
          submit={async (v) => {
            // Blank is the default horizon; 0 or a fraction is refused here (it was dropped, and the default fitted unasked).
            const horizon = numberOf(v.horizon, 'horizon');
            if (horizon !== undefined && !(Number.isInteger(horizon) && horizon >= 1 && horizon <= MAX_HORIZON))
              throw fieldProblem('horizon', `a whole number of time units from 1 to ${MAX_HORIZON}, or blank for one year`);
            const fitted = await command('/analytics/models', {
              ...(text(v.asOf) ? { asOf: text(v.asOf) } : {}),
              timeUnit: v.timeUnit,
              ...(horizon !== undefined ? { horizon } : {}),
            });
            setVersion((fitted as unknown as { version: number }).version);
          }}
        />
      ) : null}
      {model.problem?.status === 404 ? (
        <p>No model is fitted yet{can(role, 'POST /analytics/models') ? ': fit one above.' : '.'}</p>
      ) : (
        <ProblemBox problem={model.problem} />
      )}
      {model.loading && !model.data ? <Loading what="the latest model" /> : null}
      {model.data ? <ModelView model={model.data} /> : null}
    </section>
  );
};

const ModelView = ({ model }: { model: Model }) => {
  const v = model.version;
  const clv = useLoad(
    async (signal) => {
      const items: ClvPage['items'] = [];
      for (let page = 0; page < MAX_CLV_PAGES; page++) {
        const next = await get<ClvPage>(`/analytics/clv${query({ limit: 500, offset: page * 500 })}`, { signal });
        items.push(...next.items);
        if (items.length >= next.total || next.items.length === 0) return { items, total: next.total };
      }
      return { items, total: items.length };
    },
    [v],
  );
  const retention = useLoad((signal) => get<Retention>('/analytics/retention', { signal }), [v]);
  const segments = useLoad((signal) => get<Segments>('/analytics/segments', { signal }), [v]);
  const forecast = useLoad((signal) => get<Forecast>('/analytics/forecast', { signal }), [v]);
  const c = model.churn;
  return (
    <div data-model-version={v}>
      <section aria-labelledby="model-title">
        <h2 id="model-title">
          Model version {v}{' '}
          <span class="muted">
            (as of {model.asOf}, fitted {model.fittedAt.slice(0, 16).replace('T', ' ')})
          </span>
        </h2>
        <dl class="stats" data-testid="model-stats">
          <Stat label="Customers" value={model.customers} />
          <Stat label="Horizon" value={`${model.horizon} ${model.timeUnit}s`} />
          <Stat label="BG/NBD r, α" value={model.bgnbd ? `${num(model.bgnbd.r, 3)}, ${num(model.bgnbd.alpha, 3)}` : 'not fitted'} />
          <Stat label="BG/NBD a, b" value={model.bgnbd ? `${num(model.bgnbd.a, 3)}, ${num(model.bgnbd.b, 3)}` : 'not fitted'} />
          <Stat
            label="Gamma-Gamma p, q, v"
            value={model.gammaGamma ? `${num(model.gammaGamma.p, 3)}, ${num(model.gammaGamma.q, 3)}, ${num(model.gammaGamma.v, 5)}` : 'not fitted'}
          />
          <Stat label="Churn AUC" value={num(c.auc, 3)} />
          <Stat label="Churn log loss" value={num(c.logLoss, 3)} />
          <Stat label="Brier score" value={num(c.brier, 3)} />
          <Stat label="Accuracy" value={pct(c.accuracy)} />
          <Stat label="Train / test" value={`${c.trainSize} / ${c.testSize}`} />
          <Stat label="Churn window" value={`${c.windowDays} days`} />
          {model.forecast?.methods.map((m) => (
            <Stat key={m.method} label={`Forecast MAPE: ${m.method}`} value={`${num(m.backtest.mape, 1)}%`} />
          ))}
        </dl>
      </section>
      <div class="charts">
        {clv.data ? (
          <ClvHistogram values={clv.data.items.map((i) => i.clv)} total={clv.data.total} unit={model.timeUnit} horizon={model.horizon} />
        ) : (
          <Loading what="CLV" />
        )}
        {model.bgnbd ? <PAliveMatrix bgnbd={model.bgnbd} horizon={model.horizon} timeUnit={model.timeUnit} /> : null}
        {retention.data ? <RetentionHeat retention={retention.data} /> : <ProblemBox problem={retention.problem} />}
        {segments.data ? <SegmentBars segments={segments.data} /> : <ProblemBox problem={segments.problem} />}
        {forecast.data ? <RevenueForecast forecast={forecast.data} /> : <ProblemBox problem={forecast.problem} />}
        {c?.auc !== null && c?.auc !== undefined && c.calibration?.length ? (
          <>
            <RocCurve bins={c.calibration} auc={c.auc} />
            <Calibration bins={c.calibration} />
          </>
        ) : (
          <p class="muted" data-testid="churn-not-evaluated">
            The churn model could not be evaluated on a held-out set (too few customers or a single outcome), so there is no ROC curve or calibration for this
            fit.
          </p>
        )}
      </div>
    </div>
  );
};

const ClvHistogram = ({ values, total, unit, horizon }: { values: number[]; total: number; unit: string; horizon: number }) => {
  const { data, options, summary } = useMemo(() => {
    const sorted = [...values].sort((a, b) => a - b);
    // The top 1% would squeeze every other bar into one: the last bin takes them.
    const top = sorted[Math.floor(sorted.length * 0.99)] ?? sorted[sorted.length - 1] ?? 1;
    const binCount = 20;
    const width = top / binCount || 1;
    const counts = new Array<number>(binCount).fill(0);
    for (const value of values) counts[Math.min(binCount - 1, Math.max(0, Math.floor(value / width)))]! += 1;
    const x = counts.map((_, i) => (i + 0.5) * width);
    const options: ChartOptions = {
      scales: { x: { time: false } },
      axes: [{ label: 'CLV', values: (_u, ticks) => ticks.map((t) => num(t, 0)) }, { label: 'customers' }],
      series: [{}, { label: 'customers', fill: '#2f6db5', stroke: '#1d4f8a', paths: bars(), points: { show: false } }],
      legend: { show: false },
    };
    return {
      data: [x, counts] as uPlot.AlignedData,
      options,
      summary: `Histogram of ${values.length} customers' CLV; median ${num(sorted[Math.floor(sorted.length / 2)] ?? 0)}`,
    };
  }, [values]);
  return (
    <Chart
      id="clv"
      title={`CLV distribution over ${horizon} ${unit}s (${values.length} of ${total} customers; last bar: top 1%)`}
      summary={summary}
      options={options}
      data={data}
    />
  );
};

/** P(alive | x, t_x, T) of BG/NBD (Fader, Hardie and Lee 2005, eq. 11), from the fitted parameters. */
const pAlive = (m: NonNullable<Model['bgnbd']>, x: number, tx: number, T: number): number =>
  x === 0 ? 1 : 1 / (1 + (m.a / (m.b + x - 1)) * ((m.alpha + T) / (m.alpha + tx)) ** (m.r + x));

const PAliveMatrix = ({ bgnbd, horizon, timeUnit }: { bgnbd: NonNullable<Model['bgnbd']>; horizon: number; timeUnit: string }) => {
  const T = horizon;
  const recencies = Array.from({ length: 9 }, (_, i) => Math.round((T * i) / 8));
  const rows = Array.from({ length: 11 }, (_, x) => ({ label: String(x), cells: recencies.map((tx) => pAlive(bgnbd, x, tx, T)) }));
  return (
    <HeatTable
      id="p-alive"
      caption={`P(alive) by frequency (repeat purchases) and recency (${timeUnit}s from first to last purchase), for a customer first seen T = ${T} ${timeUnit}s ago (BG/NBD parameters of this model)`}
      rowHeader="frequency ↓ · recency →"
      columns={recencies.map(String)}
      rows={rows.reverse()}
      format={(v) => `${Math.round(v * 100)}%`}
    />
  );
};

const RetentionHeat = ({ retention }: { retention: Retention }) => {
  const periods = Math.max(0, ...retention.cohorts.map((c) => c.retention.length));
  const shown = Math.min(periods, 13);
  return (
    <HeatTable
      id="retention"
      caption="Retention by first-purchase cohort: share of the cohort buying in each month after its first (months 0-12)"
      rowHeader="cohort (size)"
      columns={Array.from({ length: shown }, (_, i) => `+${i}`)}
      rows={retention.cohorts.map((c) => ({ label: `${c.cohort} (${c.size})`, cells: Array.from({ length: shown }, (_, i) => c.retention[i] ?? null) }))}
      format={(v) => `${Math.round(v * 100)}`}
    />
  );
};

const SegmentBars = ({ segments }: { segments: Segments }) => {
  const { data, options } = useMemo(() => {
    const rows = [...segments.segments].sort((a, b) => b.customers - a.customers);
    const options: ChartOptions = {
      scales: { x: { time: false, range: [-0.6, rows.length - 0.4] } },
      axes: [{ ...indexAxis(rows.map((r) => r.segment)), splits: () => rows.map((_, i) => i) }, { label: 'customers' }],
      series: [{}, { label: 'customers', fill: '#3c8d5a', stroke: '#276b40', paths: bars(), points: { show: false } }],
      legend: { show: false },
    };
    return { data: [rows.map((_, i) => i), rows.map((r) => r.customers)] as uPlot.AlignedData, options };
  }, [segments]);
  return (
    <Chart
      id="segments"
      title="RFM segment sizes"
      summary={segments.segments.map((s) => `${s.segment}: ${s.customers}`).join('; ')}
      options={options}
      data={data}
    />
  );
};

const COLORS = ['#b5482f', '#7a4fb5', '#2f8f8f'];

const RevenueForecast = ({ forecast }: { forecast: Forecast }) => {
  const { data, options, summary } = useMemo(() => {
    const months = [...forecast.history.map((h) => h.month), ...(forecast.methods[0]?.forecast.map((f) => f.month) ?? [])];
    const x = months.map(monthSeconds);
    const history = months.map((m) => forecast.history.find((h) => h.month === m)?.value ?? null);
    const lastHistory = forecast.history[forecast.history.length - 1];
    const best = [...forecast.methods].sort((a, b) => a.backtest.rmse - b.backtest.rmse)[0];
    const series: uPlot.Series[] = [{}, { label: 'revenue', stroke: '#1d4f8a', width: 2 }];
    const columns: (number | null)[][] = [history];
    for (const [i, method] of forecast.methods.entries()) {
      // Each forecast line starts at the last actual month so that it joins the history.
      columns.push(months.map((m) => (m === lastHistory?.month ? lastHistory.value : (method.forecast.find((f) => f.month === m)?.value ?? null))));
      series.push({ label: method.method, stroke: COLORS[i % COLORS.length], dash: [6, 4], width: 2 });
    }
    // An approximate 95% interval for the best method: ± 1.96 × its backtest RMSE.
    const band = (sign: 1 | -1) =>
      months.map((m) => {
        const point = best?.forecast.find((f) => f.month === m);
        return point ? point.value + sign * 1.96 * best!.backtest.rmse : null;
      });
    columns.push(band(1), band(-1));
    series.push(
      { label: '95% interval, upper (+1.96 RMSE)', stroke: 'rgba(0,0,0,0)', width: 0 },
      { label: '95% interval, lower', stroke: 'rgba(0,0,0,0)', width: 0 },
    );
    const upper = series.length - 2;
    const options: ChartOptions = {
      series,
      bands: [{ series: [upper, upper + 1], fill: 'rgba(181,72,47,0.15)' }],
      axes: [{}, { label: 'revenue', values: (_u, ticks) => ticks.map((t) => num(t, 0)) }],
    };
    return {
      data: [x, ...columns] as uPlot.AlignedData,
      options,
      summary: `Monthly revenue for ${forecast.history.length} months and a ${best?.forecast.length ?? 0}-month forecast by ${forecast.methods.map((m) => m.method).join(' and ')}`,
    };
  }, [forecast]);
  return <Chart id="forecast" title="Revenue by month, the forecast and its interval (best backtest method)" summary={summary} options={options} data={data} />;
};

/**
 * ROC points at the calibration bins' edges: the bins partition the held-out predictions, so
 * counting positives and negatives above each edge gives the exact TPR/FPR at that threshold.
 */
export const rocFromBins = (bins: CalibrationBin[]): { fpr: number[]; tpr: number[] } => {
  const sorted = [...bins].sort((a, b) => b.from - a.from);
  const positives = sorted.reduce((s, b) => s + b.count * b.observedRate, 0);
  const negatives = sorted.reduce((s, b) => s + b.count * (1 - b.observedRate), 0);
  const fpr = [0];
  const tpr = [0];
  let tp = 0;
  let fp = 0;
  for (const bin of sorted) {
    tp += bin.count * bin.observedRate;
    fp += bin.count * (1 - bin.observedRate);
    fpr.push(negatives ? fp / negatives : 0);
    tpr.push(positives ? tp / positives : 0);
  }
  return { fpr, tpr };
};

const RocCurve = ({ bins, auc }: { bins: CalibrationBin[]; auc: number }) => {
  const { data, options } = useMemo(() => {
    const { fpr, tpr } = rocFromBins(bins);
    const options: ChartOptions = {
      scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
      axes: [{ label: 'false positive rate' }, { label: 'true positive rate' }],
      series: [{}, { label: 'churn model', stroke: '#b5482f', width: 2, points: { show: true } }, { label: 'chance', stroke: '#777', dash: [4, 4] }],
    };
    return { data: [fpr, tpr, fpr] as uPlot.AlignedData, options };
  }, [bins]);
  return (
    <Chart
      id="roc"
      title={`Churn ROC curve on the held-out set (AUC ${num(auc, 3)})`}
      summary={`ROC curve with AUC ${num(auc, 3)}`}
      options={options}
      data={data}
    />
  );
};

const Calibration = ({ bins }: { bins: CalibrationBin[] }) => {
  const { data, options } = useMemo(() => {
    const sorted = [...bins].sort((a, b) => a.meanPredicted - b.meanPredicted);
    const options: ChartOptions = {
      scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
      axes: [{ label: 'mean predicted churn' }, { label: 'observed churn rate' }],
      series: [{}, { label: 'model', stroke: '#7a4fb5', width: 2, points: { show: true, size: 8 } }, { label: 'perfect', stroke: '#777', dash: [4, 4] }],
    };
    const x = sorted.map((b) => b.meanPredicted);
    return { data: [x, sorted.map((b) => b.observedRate), x] as uPlot.AlignedData, options };
  }, [bins]);
  return (
    <Chart
      id="calibration"
      title="Churn calibration (held-out set, by predicted-probability bin)"
      summary={bins.map((b) => `${pct(b.meanPredicted, 0)} predicted, ${pct(b.observedRate, 0)} observed, n=${b.count}`).join('; ')}
      options={options}
      data={data}
    />
  );
};
