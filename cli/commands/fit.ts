import { intValue, stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';
import { hasBegun } from '../../domain/shared.ts';

export const fitCommand: CliCommand = {
  name: 'fit',
  maxArguments: 0,
  summary: 'Fit the analytics models (BG/NBD, Gamma-Gamma, churn, segments) on the recorded events',
  usage: 'fit [--as-of <date>] [--time-unit day|week|month] [--horizon <n>] [--discount-rate <r>] [--json]',
  details: `
Catches the analytics projection up with every event recorded so far, then trains every batch
model (BG/NBD and Gamma-Gamma, churn regression with its metrics, RFM and k-means segments,
retention, revenue forecast) and stores it with a new version; scoring after that is incremental.
The same as POST /analytics/models. Safe to interrupt: nothing is stored until the fit completes.`,
  database: { kind: 'rerunnable', note: 'a fit only reads the events and stores a model run; another run stores another one' },
  options: {
    'as-of': { type: 'string', description: 'cutoff day YYYY-MM-DD (default: the last business day seen)' },
    'time-unit': { type: 'string', description: 'day, week or month (default week)' },
    horizon: { type: 'string', description: 'CLV horizon in time units (default 52 weeks)' },
    'discount-rate': { type: 'string', description: 'per time unit (default 0.002 per week)' },
    json: { type: 'boolean', description: 'print the whole model summary as JSON' },
  } satisfies Record<string, OptionWithHelp>,
  async run(run) {
    const asOf = stringValue(run, 'as-of');
    if (asOf !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(asOf)) throw new UsageError('--as-of must be a day, YYYY-MM-DD');
    if (asOf !== undefined && !hasBegun(asOf, Date.now())) throw new UsageError(`--as-of ${asOf} has not begun yet (UTC): give today or an earlier day`);
    const timeUnit = stringValue(run, 'time-unit');
    if (timeUnit !== undefined && !['day', 'week', 'month'].includes(timeUnit)) throw new UsageError('--time-unit must be day, week or month');
    const discountText = stringValue(run, 'discount-rate');
    const discountRate = discountText === undefined ? undefined : Number(discountText);
    if (discountRate !== undefined && !(discountRate >= 0 && discountRate < 1))
      throw new UsageError('--discount-rate must be a number of at least 0 and below 1');
    const horizon = stringValue(run, 'horizon') === undefined ? undefined : intValue(run, 'horizon', 52, 1, 10_000);

    const { openCrm } = await import('../../runtime/crm.ts');
    const { FitInterrupted, InsufficientData } = await import('../../analytics/service.ts');
    // The integration publishers and the chain sealer are serve's and project's work: a fit that
    // started them delivered webhooks (and sealed) from a process meant only to fit.
    const runtime = await openCrm(run.config, { holdSetUpLock: true, existingOnly: true, overrides: { publishers: false, chainSealer: false } });
    try {
      // This process follows the feed until the analytics projection has caught up, then fits.
      await runtime.startProjections();
      await runtime.setUpDone();
      run.err('Catching up the analytics projection, then fitting...');
      const started = performance.now();
      const summary = await runtime.analytics
        .fitModels({
          ...(asOf ? { asOf } : {}),
          ...(timeUnit ? { timeUnit: timeUnit as 'day' | 'week' | 'month' } : {}),
          ...(horizon !== undefined ? { horizon } : {}),
          ...(discountRate !== undefined ? { discountRate } : {}),
          signal: run.signal,
        })
        .catch((error: unknown) => {
          if (error instanceof InsufficientData || error instanceof FitInterrupted) return error;
          throw error;
        });
      // Not enough (or not varied enough) history is about the data, not the command line: exit 65
      // (EX_DATAERR), so that a script tells it from a mistyped option (2).
      if (summary instanceof InsufficientData) {
        run.err(`crm fit: ${summary.message}`);
        return 65;
      }
      if (summary instanceof FitInterrupted) {
        run.err('Interrupted before the model was stored: nothing changed. Run crm fit again to fit.');
        return 130;
      }
      if (run.values.json) {
        run.out(JSON.stringify(summary, null, 2));
        return 0;
      }
      const f = (x: number | null) => (x === null ? 'null' : String(Number(x.toPrecision(4))));
      run.out(
        `Model version ${summary.version} fitted on ${summary.customers} customers as of ${summary.asOf} (${summary.timeUnit}s) in ${((performance.now() - started) / 1000).toFixed(1)} s.`,
      );
      run.out(`  BG/NBD:      r=${f(summary.bgnbd.r)} alpha=${f(summary.bgnbd.alpha)} a=${f(summary.bgnbd.a)} b=${f(summary.bgnbd.b)}`);
      run.out(`  Gamma-Gamma: p=${f(summary.gammaGamma.p)} q=${f(summary.gammaGamma.q)} v=${f(summary.gammaGamma.v)}`);
      const spend = summary.fits.gammaGamma as { leftOutMissingRates?: number; baseCurrency?: string } | undefined;
      if (spend?.leftOutMissingRates)
        run.out(
          `               ${spend.leftOutMissingRates} customers left out: an amount of theirs has no rate to ${spend.baseCurrency} yet (GET /analytics/customers/:id names it).`,
        );
      run.out(`  Churn:       AUC=${f(summary.churn.auc)} log loss=${f(summary.churn.logLoss)}`);
      for (const warning of summary.warnings) run.out(`  Warning:     ${warning}`);
      run.out(`  Scored ${summary.scored ?? 0} customers. Details: crm fit --json, or GET /analytics/models/latest.`);
      return 0;
    } finally {
      await runtime.close();
    }
  },
};
