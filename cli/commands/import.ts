import { existsSync } from 'node:fs';
import { stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';
import type { ImportKind } from '../import.ts';
import { createProgress } from '../progress.ts';

const options: Record<string, OptionWithHelp> = {
  kind: { type: 'string', description: 'customers or purchases (default: detected from the header)' },
  report: { type: 'string', description: 'where bad rows are listed (default: import-report-<file>.csv)' },
};

export const importCommand: CliCommand = {
  name: 'import',
  summary: 'Import customers or purchases from a CSV file (bad rows go to a report; re-running is harmless)',
  usage: 'import <file.csv> [--kind customers|purchases] [--report <path>]',
  details: `
Rows are read as a stream, validated one by one with the same rules as the API, and recorded through
the command handlers. Rows that fail are listed in the report file with their line number and the
reason; the others go in. Importing the same file again appends nothing twice (each row's idempotency
key comes from the file kind and the email or order id), so an interrupted import is simply re-run.

customers.csv columns: name, email, phone, company, tags (separated by ;), source, marketing_consent,
  id (optional UUID; derived from the email when absent).
purchases.csv columns: order_id, amount, currency (default EUR), occurred_at (ISO time or date),
  customer_id or customer_email (of a customer imported from a customers file).`,
  options,
  async run(run) {
    const file = run.positionals[0];
    if (!file) throw new UsageError('import needs a CSV file (see crm import --help)');
    if (!existsSync(file)) throw new UsageError(`no such file: ${file}`);
    const kind = stringValue(run, 'kind');
    if (kind !== undefined && kind !== 'customers' && kind !== 'purchases') throw new UsageError('--kind must be customers or purchases');
    const { openCrm } = await import('../app.ts');
    const { importCsv } = await import('../import.ts');
    const runtime = await openCrm(run.config);
    try {
      const progress = createProgress({ label: 'import', unit: 'rows' });
      const result = await importCsv(runtime.commands, {
        file,
        ...(kind ? { kind: kind as ImportKind } : {}),
        ...(stringValue(run, 'report') ? { reportPath: stringValue(run, 'report') } : {}),
        progress,
        signal: run.signal,
      });
      progress.done(`${result.imported} imported, ${result.rejected} rejected`);
      run.out(
        `${result.kind}: ${result.rows} rows read, ${result.imported} imported (already present ones count as imported), ` +
          `${result.rejected} rejected${result.rejected ? ` (see ${result.reportPath})` : ''}.` +
          (result.interrupted ? ' Interrupted: run the same command again to finish.' : ''),
      );
      return result.interrupted ? 130 : result.rejected > 0 ? 3 : 0;
    } finally {
      await runtime.close();
    }
  },
};
