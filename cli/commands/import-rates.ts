import { basename, extname } from 'node:path';
import { stringValue, UsageError, type CliCommand } from '../command.ts';
import { assertReadableFile } from '../files.ts';
import { createProgress } from '../progress.ts';

export const importRatesCommand: CliCommand = {
  name: 'import-rates',
  summary: 'Import exchange rates to the base currency from a CSV file (currency, rate, valid_from); bad rows go to a report, re-running is harmless',
  usage: 'import-rates <rates.csv> [--report <path>]',
  details: `
Columns: currency (ISO 4217, not the base currency), rate (units of the base currency per unit of
currency, a positive decimal with at most 10 decimals), valid_from (an ISO time with offset, or a
plain date for midnight UTC), and optionally reason. The base currency is CRM_BASE_CURRENCY. A file
separated by semicolons writes rates with a decimal comma (0,0066), as crm import reads numbers there.

Each row is recorded as the API's POST /exchange-rates would record it. A rate already set to the same
value for the same valid_from records nothing, so importing the file again (after an interruption,
or with more rows added) is harmless. A different rate for a valid_from already set is a correction:
recorded as a new fact, the earlier rate kept in the history. Rows that fail are listed in the report
with their line number and the reason; the others go in. Base-currency figures follow as soon as the
projections have applied the rates.

Example:
  currency,rate,valid_from
  USD,0.9215,2026-01-01
  JPY,0.0061,2026-03-01T00:00:00Z`,
  database: { kind: 'rerunnable', note: 'a rate already set to the same value records nothing, so nothing is recorded twice' },
  options: {
    report: { type: 'string', description: 'where bad rows are listed (default: import-rates-report-<file>.csv)' },
  },
  async run(run) {
    const file = run.positionals[0];
    if (!file) throw new UsageError('import-rates needs a CSV file (see crm import-rates --help)');
    assertReadableFile(file, 'the file');
    const reportPath = stringValue(run, 'report') ?? `import-rates-report-${basename(file, extname(file))}.csv`;
    const { openCrm } = await import('../../runtime/crm.ts');
    const { importRates } = await import('../import-rates.ts');
    const { refuseReportOverInput } = await import('../import.ts');
    // Before the database is opened (importRates checks it too).
    refuseReportOverInput(file, reportPath, '--report');
    const runtime = await openCrm(run.config);
    try {
      const progress = createProgress({ label: 'import-rates', unit: 'rows' });
      const result = await importRates(runtime.commands, { file, baseCurrency: run.config.baseCurrency, reportPath, progress, signal: run.signal });
      progress.done(`${result.recorded} recorded, ${result.rejected} rejected`, result.interrupted ? 'stopped' : 'done');
      run.out(
        `Exchange rates to ${run.config.baseCurrency}: ${result.rows} rows read, ${result.recorded} recorded, ${result.unchanged} already set, ` +
          `${result.rejected} rejected${result.rejected ? ` (see ${result.reportPath})` : ''}.` +
          (result.interrupted ? ' Interrupted: run the same command again to finish.' : ''),
      );
      return result.interrupted ? 130 : result.rejected > 0 ? 3 : 0;
    } finally {
      await runtime.close();
    }
  },
};
