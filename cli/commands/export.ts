import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { stringValue, UsageError, type CliCommand } from '../command.ts';

const KINDS = ['customers', 'deals', 'feedback'] as const;

export const exportCommand: CliCommand = {
  name: 'export',
  summary: 'Write every customer, deal or feedback item of the read models as CSV or NDJSON',
  usage: 'export <customers|deals|feedback> [--format csv|ndjson] [--output <file>]',
  details: `
Reads the read models page by page (memory stays flat) and writes one line per record to stdout or
--output: the same columns as GET /customers/export (and /deals/export, /feedback/export). An
operator's export holds personal data unmasked: keep the file as carefully as the database.`,
  options: {
    format: { type: 'string', description: 'csv (default) or ndjson' },
    output: { type: 'string', description: 'file to write (default: stdout)' },
  },
  async run(run) {
    const kind = run.positionals[0];
    if (!KINDS.includes(kind as (typeof KINDS)[number])) throw new UsageError(`export needs one of ${KINDS.join(', ')}`);
    const format = stringValue(run, 'format') ?? 'csv';
    if (format !== 'csv' && format !== 'ndjson') throw new UsageError('--format must be csv or ndjson');
    const { openCrm } = await import('../../runtime/crm.ts');
    const { exportLines } = await import('../../projections/queries/export.ts');
    const runtime = await openCrm(run.config);
    const outputPath = stringValue(run, 'output');
    const out = outputPath ? createWriteStream(outputPath) : process.stdout;
    try {
      await runtime.prepareReadModels();
      const queries = runtime.apiDeps.queries;
      // The filters' defaults (the sort order) as the HTTP export applies them to a request without filters.
      const { z } = await import('zod');
      const { CustomerListFilters } = await import('../../api/routes/customers.ts');
      const { DealListFilters } = await import('../../api/routes/deals.ts');
      const { FeedbackListFilters } = await import('../../api/routes/feedback.ts');
      const [list, filters] =
        kind === 'customers'
          ? [(q: Record<string, unknown>) => queries.listCustomers(q), CustomerListFilters]
          : kind === 'deals'
            ? [(q: Record<string, unknown>) => queries.listDeals(q), DealListFilters]
            : [(q: Record<string, unknown>) => queries.listFeedback(q), FeedbackListFilters];
      const query = z.object(filters).parse({}) as Record<string, unknown>;
      for await (const chunk of exportLines(list, query, format)) if (!out.write(chunk)) await once(out, 'drain');
      return 0;
    } finally {
      if (outputPath) {
        out.end();
        await once(out, 'close');
      }
      await runtime.close();
    }
  },
};
