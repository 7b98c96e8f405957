import { terminalLines } from '../../shared/terminal-text.ts';
import { stringValue, UsageError, type CliCommand } from '../command.ts';
import { openReplacing } from '../files.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { createProgress, type Progress } from '../progress.ts';
import { projectionLag } from '../projection-lag.ts';
import { EXPORT_COLUMNS, EXPORT_KINDS, exportLines, type CsvLayout, type ExportKind } from '../../projections/queries/export.ts';

/** Resolves once `out` drains, or fails (the failure is kept by its error listener). */
const drained = (out: NodeJS.WritableStream): Promise<void> =>
  new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('error', done);
      resolve();
    };
    out.once('drain', done);
    out.once('error', done);
  });

export const exportCommand: CliCommand = {
  name: 'export',
  summary:
    'Write every customer, deal, feedback item, activity, purchase, refund, campaign, campaign response, campaign cost or exchange rate in force as CSV or NDJSON',
  usage: `export <${EXPORT_KINDS.join('|')}> [--format csv|ndjson] [--delimiter ,|;] [--bom] [--output <file>]`,
  details: `
Reads the read models page by page (memory stays flat) and writes one line per record to stdout or
--output: the same columns as GET /customers/export (and /deals/export, /feedback/export,
/activities/export, /purchases/export, /refunds/export, /campaigns/export, /responses/export, /costs/export: files
\`crm import\` reads back; responses and costs are read from the events, the rest from the read
models; /exchange-rates/export: the rates in force, a file \`crm import-rates\` reads back). An operator's export holds personal data unmasked: keep the file as carefully as the
database.

For a spreadsheet in a locale whose list separator is a semicolon (German, French, ...: Excel opens
a file separated by commas as one column there), --delimiter ';' separates the fields with semicolons
and writes numbers with a decimal comma (12,5); --bom starts the file with a UTF-8 byte order mark, so
that Excel reads its letters as UTF-8. \`crm import\` reads either back.`,
  onInterrupt: 'an --output file is left as it was; run the command again for the whole export',
  database: { kind: 'reads' },
  options: {
    format: { type: 'string', description: 'csv (default) or ndjson' },
    output: { type: 'string', description: 'file to write (default: stdout)' },
    delimiter: { type: 'string', description: "CSV: ',' (default) or ';' (with decimal commas), for a spreadsheet whose list separator it is" },
    bom: { type: 'boolean', description: 'CSV: start with a UTF-8 byte order mark (Excel reads the file as UTF-8)' },
  },
  async run(run) {
    const kind = run.positionals[0] as ExportKind | undefined;
    if (kind === undefined || !EXPORT_KINDS.includes(kind)) throw new UsageError(`export needs one of ${EXPORT_KINDS.join(', ')}`);
    const format = stringValue(run, 'format') ?? 'csv';
    if (format !== 'csv' && format !== 'ndjson') throw new UsageError('--format must be csv or ndjson');
    const delimiter = stringValue(run, 'delimiter') ?? ',';
    if (delimiter !== ',' && delimiter !== ';') throw new UsageError("--delimiter must be ',' or ';'");
    const layout: CsvLayout = { delimiter, bom: run.values.bom === true };
    // Both lay out a CSV for a spreadsheet; said of NDJSON they would be ignored without a word.
    if (format === 'ndjson' && (run.values.delimiter !== undefined || layout.bom))
      throw new UsageError('--delimiter and --bom are for CSV, not --format ndjson');
    const { openCrm } = await import('../../runtime/crm.ts');
    const given = stringValue(run, 'output');
    // `-` is standard output, as for most tools; an empty value names no file.
    if (given === '') throw new UsageError('--output needs a file name (or - for standard output)');
    const outputPath = given === '-' ? undefined : given;
    // Opened before the CRM, so that a path that cannot be written costs no start-up; written whole or
    // not at all, so that a failed run leaves an earlier export under that name as it was.
    const file = outputPath ? await openReplacing(outputPath, 'the export') : undefined;
    const out = file?.stream ?? process.stdout;
    // A reader that stops early (`crm export customers | head`) closes the pipe: the export stops there, quietly.
    // Kept for the life of the process: a write still buffered at exit may fail the same way.
    let readerGone = false;
    let failure: Error | undefined;
    out.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') readerGone = true;
      else failure ??= error;
    });
    let runtime: CrmRuntime | undefined;
    let progress: Progress | undefined;
    let written = false;
    try {
      runtime = await openCrm(run.config, { existingOnly: true, installedOnly: true });
      await runtime.prepareReadModels({ ifMissing: true });
      // What the HTTP export reads, with no scope (an operator's export holds every record, unmasked) and
      // the filters' defaults (the sort order) as for a request without filters.
      const { z } = await import('zod');
      const { exportSpecs } = await import('../../api/routes/exports.ts');
      const spec = exportSpecs[kind];
      // An export read from the events (responses) is as current as the store.
      const lag = spec.projection && (await projectionLag(runtime, run.config.schemas.read, spec.projection, 'the file holds the read model as it stands'));
      if (lag) run.err(`crm export: ${lag}`);
      const query = z.object(spec.filters).parse({}) as Record<string, unknown>;
      const complete = spec.complete?.(runtime.apiDeps);
      // On a terminal (no --output, no pipe), the records themselves are the progress: a progress line
      // on stderr would be drawn over them.
      const onTerminal = !file && Boolean(process.stdout.isTTY);
      progress = createProgress({ label: 'export', unit: 'records', quiet: onTerminal });
      const counted = progress;
      const lines = await exportLines(
        spec.list(runtime.apiDeps, null),
        query,
        format,
        EXPORT_COLUMNS[kind],
        async (page) => {
          const records = complete ? await complete(page) : page;
          counted.tick(records.items.length);
          return records;
        },
        layout,
      );
      // On a terminal, the records' control characters are shown, not obeyed.
      const shown = onTerminal ? terminalLines : (chunk: string) => chunk;
      for await (const chunk of lines) {
        if (readerGone || failure || run.signal.aborted) break;
        if (!out.write(shown(chunk))) await drained(out);
      }
      if (failure) throw failure;
      if (run.signal.aborted || readerGone) progress.done(readerGone ? 'the reader closed the pipe' : undefined, 'stopped');
      else progress.done(outputPath ? `written to ${outputPath}` : undefined);
      if (run.signal.aborted) {
        run.err(
          `crm export: interrupted; ${outputPath ? `nothing was written to ${outputPath} (what it held before is kept)` : 'what was written is incomplete'}. Run it again for the whole export.`,
        );
        return 130;
      }
      written = true;
      return 0;
    } catch (error) {
      progress?.done(undefined, 'stopped');
      throw error;
    } finally {
      if (written) await file?.commit();
      else await file?.discard();
      await runtime?.close();
    }
  },
};
