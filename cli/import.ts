import { createReadStream, realpathSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import type { BatchCommands } from '../commands/batch.ts';
import { runImport, type ImportOutcome } from '../commands/import/importer.ts';
import type { ImportEncoding } from '../commands/import/encoding.ts';
import { parseRecords, type ImportFormat } from '../commands/import/parse.ts';
import type { ImportKind } from '../commands/import/rows.ts';
import { csvField } from '../shared/csv.ts';
import { UsageError } from './command.ts';
import { closeStream, finishWriting, openForWriting, writeText } from './files.ts';
import type { Progress } from './progress.ts';

export { detectKind, type ImportKind } from '../commands/import/rows.ts';

/**
 * `crm import <file>`: a CSV or NDJSON file streamed through the batch command handler, many rows
 * per transaction. Bad rows go to a report (line number and reason); good rows go in. Re-running
 * the same file appends nothing twice, so an interrupted or crashed import is resumed by running
 * it again.
 */

export interface ImportResult extends ImportOutcome {
  reportPath: string;
}

export interface ImportFileOptions {
  file: string;
  kind?: ImportKind;
  format?: ImportFormat;
  /** UTF-8 unless told. */
  encoding?: ImportEncoding;
  reportPath?: string;
  actor?: { userId: string; roles: string[] };
  batchSize?: number;
  /** The owner (a user id) of the customers and deals whose row leaves `owner_id` empty (ImportOptions.defaultOwner). */
  defaultOwner?: string;
  /** The currency of a row that names none (ImportOptions.currency): the installation's base currency. */
  currency?: string;
  progress?: Progress;
  signal?: AbortSignal;
}

/**
 * Refuses a report that is the file imported (by another name too: a link, `./f.csv`): opened for
 * writing, it was emptied before a row was read, and the run said "0 rows read", exit 0, the file gone.
 */
export const refuseReportOverInput = (file: string, reportPath: string, option: string): void => {
  // A report that does not exist yet is a new file, not the input.
  const report = statSync(reportPath, { bigint: true, throwIfNoEntry: false });
  const input = statSync(file, { bigint: true, throwIfNoEntry: false });
  if (!report || !input) return;
  // Where a file system gives no inode numbers, the paths the links resolve to.
  const same = report.ino !== 0n ? report.dev === input.dev && report.ino === input.ino : realpathSync(reportPath) === realpathSync(file);
  if (same)
    throw new UsageError(
      `${option} ${reportPath} is the file being imported: writing the report there would empty it; name another file for the report (or leave ${option} out for the default)`,
    );
};

export const formatOfFile = (file: string): ImportFormat => (/\.(nd)?jsonl?$|\.ndjson$/i.test(file) ? 'ndjson' : 'csv');

export async function importFile(batch: BatchCommands, options: ImportFileOptions): Promise<ImportResult> {
  const reportPath = options.reportPath ?? `import-report-${basename(options.file, extname(options.file))}.csv`;
  refuseReportOverInput(options.file, reportPath, '--report');
  const report = await openForWriting(reportPath, 'the report');
  await writeText(report, 'line,reason\n');
  let done = 0;
  try {
    const outcome = await runImport(batch, parseRecords(createReadStream(options.file), options.format ?? formatOfFile(options.file), options.encoding), {
      ...(options.kind ? { kind: options.kind } : {}),
      actor: options.actor ?? { userId: 'crm-import', roles: ['admin'] },
      ...(options.batchSize ? { batchSize: options.batchSize } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.defaultOwner !== undefined ? { defaultOwner: options.defaultOwner } : {}),
      defaultOwnerHint: '--default-owner <userId>',
      ...(options.currency !== undefined ? { currency: options.currency } : {}),
      onRejected: (row) => writeText(report, `${row.line},${csvField(row.reason)}\n`),
      onProgress: (counts) => {
        options.progress?.tick(counts.rows - done);
        done = counts.rows;
      },
    });
    await finishWriting(report);
    return { ...outcome, reportPath };
  } finally {
    await closeStream(report);
  }
}
