import { terminalText } from '../../shared/terminal-text.ts';
import { stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';
import { assertReadableFile } from '../files.ts';
import { encodingExamples, importEncodingNamed } from '../../commands/import/encoding.ts';
import { importColumns, importKinds, isImportKind } from '../../commands/import/rows.ts';
import { createProgress } from '../progress.ts';
import { tuneHeapForImport } from '../../runtime/heap-tuning.ts';

const options: Record<string, OptionWithHelp> = {
  kind: { type: 'string', description: `${importKinds.join(', ')} (default: detected from the header)` },
  'batch-size': { type: 'string', description: 'rows per transaction (default 1000)' },
  encoding: { type: 'string', description: `the file's encoding: utf-8 (default), or the code page a spreadsheet saves in (${encodingExamples})` },
  report: { type: 'string', description: 'where bad rows are listed (default: import-report-<file>.csv)' },
  'default-owner': {
    type: 'string',
    description: 'the user (id) who owns the customers and deals whose row leaves owner_id empty; without it such deals are refused',
  },
};

export const importCommand: CliCommand = {
  name: 'import',
  summary:
    'Import customers, purchases, refunds, deals, campaigns, responses, costs, feedback or activities from a CSV or NDJSON file (bad rows go to a report; re-running is harmless)',
  usage: `import <file.csv|file.ndjson> [--kind ${importKinds.join('|')}] [--encoding <name>] [--report <path>] [--batch-size <n>] [--default-owner <userId>]`,
  details: `
Rows are streamed, validated with the same schemas and rules as the API, decided in memory in
batches and appended many customers per transaction. Rows that fail are listed in the report file
with their line number and the reason; the others go in. Importing the same file again appends
nothing twice (each row's idempotency key comes from the file kind and its natural key: email,
order id, ...), so an interrupted or crashed import is resumed by running it again. Files are read
as UTF-8 unless --encoding names another encoding (what a spreadsheet on Windows saves is in its
locale's code page: ${encodingExamples}; any name a browser knows is read); a byte order
mark at the start (UTF-8's, UTF-16's) says what a file is, whatever --encoding says; a file that
cannot be read past a line (not in its encoding, or a quote never closed) stops there, exit code 65.
The header tells the delimiter (comma, or semicolon or tab when it holds more of those); in a semicolon
file, as spreadsheets in decimal-comma locales save, numbers read 12,50 as 12.50. Afterwards run
\`crm project\` (or keep \`crm serve\` running) to bring the read models up to date.

A deal has an owner: a deals row without owner_id is refused unless --default-owner names a user
(an active one, as GET /admin/users lists them; anything else stops the import before its first
row, exit code 2), who then owns it; customers rows without owner_id get that owner too, or none.
Importing the file again with the same default owner appends nothing; with another one, the rows
that took the default are refused as changed (their owner is part of what they say).

Columns (times as ISO 8601, 2019-12-31, 2019-12-31 10:00 or 31.12.2019, UTC unless a zone is given;
12/31/2019 is refused as ambiguous; a file refers to customers by customer_id or by customer_email,
the address of a customer registered through the API or imported):
${importKinds.map((k) => `  ${k}: ${importColumns[k]}`).join('\n')}`,
  database: { kind: 'rerunnable', note: 'nothing is recorded twice; rows already stored are counted as already present' },
  options,
  async run(run) {
    const file = run.positionals[0];
    if (!file) throw new UsageError('import needs a CSV or NDJSON file (see crm import --help)');
    assertReadableFile(file, 'the file');
    const kind = stringValue(run, 'kind');
    if (kind !== undefined && !isImportKind(kind)) throw new UsageError(`--kind must be one of ${importKinds.join(', ')}`);
    const encodingName = stringValue(run, 'encoding');
    const encoding = encodingName === undefined ? undefined : importEncodingNamed(encodingName);
    if (encodingName !== undefined && !encoding) throw new UsageError(`--encoding must name an encoding: utf-8, ${encodingExamples}, ...`);
    const batchSize = stringValue(run, 'batch-size');
    if (batchSize !== undefined && !(Number.isSafeInteger(Number(batchSize)) && Number(batchSize) >= 1 && Number(batchSize) <= 1000))
      throw new UsageError('--batch-size must be a whole number from 1 to 1000');
    const defaultOwner = stringValue(run, 'default-owner');
    tuneHeapForImport();
    const { openCrm } = await import('../../runtime/crm.ts');
    const { importFile, refuseReportOverInput } = await import('../import.ts');
    const reportPath = stringValue(run, 'report');
    // Before the database is opened: nothing is touched by a run refused so (importFile checks it too).
    if (reportPath !== undefined) refuseReportOverInput(file, reportPath, '--report');
    const { NoHeaderRow, UnknownImportKind } = await import('../../commands/import/importer.ts');
    const { checkDefaultOwner, DefaultOwnerRefused } = await import('../../commands/import/default-owner.ts');
    const runtime = await openCrm(run.config);
    try {
      const ownerRefused = (error: unknown): never => {
        if (error instanceof DefaultOwnerRefused) throw new UsageError(`--default-owner: ${error.message}; nothing was imported`);
        throw error;
      };
      // Before the report is opened: a run refused up front leaves no file behind (the import checks it again).
      if (defaultOwner !== undefined) await checkDefaultOwner(runtime.batch, defaultOwner).catch(ownerRefused);
      const progress = createProgress({ label: 'import', unit: 'rows' });
      const result = await importFile(runtime.batch, {
        file,
        ...(kind ? { kind } : {}),
        ...(batchSize ? { batchSize: Number(batchSize) } : {}),
        ...(encoding ? { encoding } : {}),
        ...(reportPath ? { reportPath } : {}),
        ...(defaultOwner !== undefined ? { defaultOwner } : {}),
        currency: run.config.baseCurrency,
        progress,
        signal: run.signal,
      }).catch((error: unknown) => {
        if (error instanceof UnknownImportKind) throw new UsageError(`${error.message} Give it with --kind.`);
        if (error instanceof NoHeaderRow) throw new UsageError(error.message);
        return ownerRefused(error);
      });
      // An import that stopped (Ctrl-C, or a line it cannot read past) is not done: it says so, and how to go on.
      const stopped = result.interrupted || result.unreadableFrom !== undefined;
      progress.done(`${result.imported} imported, ${result.rejected} rejected`, stopped ? 'stopped' : 'done');
      run.out(
        `${result.kind ?? kind ?? 'import'}: ${result.rows} rows read, ${result.imported} imported (${result.alreadyPresent} of them already present), ` +
          `${result.rejected} rejected${result.rejected || result.unreadableFrom ? ` (see ${result.reportPath})` : ''}.` +
          (result.interrupted ? ' Interrupted before the end of the file: run the same command again to resume (the rows already imported are skipped).' : ''),
      );
      if (result.unreadColumns.length > 0 && result.kind)
        run.err(
          `crm: columns not read: ${terminalText(result.unreadColumns.join(', '))}. Their cells were left out of the rows imported (misspelt, or of no use to a ` +
            `${result.kind} file, whose columns are: ${importColumns[result.kind]}). For a misspelt one, mend the header; rows already imported keep ` +
            'what they got (an import does not change a row: a changed value is refused and reported), so change those through the API.',
        );
      if (result.unreadableFrom) {
        run.err(`crm: line ${result.unreadableFrom.line}: ${result.unreadableFrom.reason}`);
        return 65; // EX_DATAERR
      }
      // Not an error (an export of nothing reads back as nothing), but rarely what was meant.
      if (result.rows === 0 && !result.interrupted)
        run.err(`crm: ${file} holds no rows${result.kind ? ` (a ${result.kind} file by its header)` : ''}: nothing was imported.`);
      return result.interrupted ? 130 : result.rejected > 0 ? 3 : 0;
    } finally {
      await runtime.close();
    }
  },
};
