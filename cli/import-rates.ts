import { createReadStream } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { CrmCommands } from '../commands/index.ts';
import { rowReason } from '../commands/import/importer.ts';
import { parseRecords } from '../commands/import/parse.ts';
import { csvField } from '../shared/csv.ts';
import { closeStream, finishWriting, openForWriting, writeText } from './files.ts';
import { refuseReportOverInput } from './import.ts';
import type { Progress } from './progress.ts';

/**
 * `crm import-rates <csv>`: exchange rates to the base currency from a CSV file with the columns
 * currency, rate, valid_from (and an optional reason). Each row is the SetExchangeRate command the
 * API runs, so the same rules apply. A rate already set to the same value records nothing, so
 * importing a file again is harmless; a changed rate for the same valid_from is recorded as a
 * correction (the earlier rate stays in the history).
 */

export const RATE_COLUMNS = ['currency', 'rate', 'valid_from'] as const;

/**
 * The columns read as numbers, as `crm import` reads its own: in a semicolon file `150,5` is 150.5
 * and `1.450` is refused as ambiguous (it was recorded as 1.45, maybe meant as 1450).
 */
const RATE_NUMBER_COLUMNS: ReadonlySet<string> = new Set(['rate']);

export interface RateImportResult {
  rows: number;
  /** Rates recorded (new or corrected). */
  recorded: number;
  /** Rows whose rate was already set to the same value. */
  unchanged: number;
  rejected: number;
  reportPath: string;
  interrupted: boolean;
}

export interface RateImportOptions {
  file: string;
  baseCurrency: string;
  reportPath: string;
  progress?: Progress;
  signal?: AbortSignal;
}

/** The command's field names, as the file spells them. */
const columnOf = (reason: string) => reason.replace(/\bvalidFrom\b/g, 'valid_from');

/** A plain date is midnight UTC of that day. */
const businessTime = (value: unknown): unknown => (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T00:00:00Z` : value);

export async function importRates(commands: Pick<CrmCommands, 'execute'>, options: RateImportOptions): Promise<RateImportResult> {
  refuseReportOverInput(options.file, options.reportPath, '--report');
  const report = await openForWriting(options.reportPath, 'the report');
  await writeText(report, 'line,reason\n');
  const result: RateImportResult = { rows: 0, recorded: 0, unchanged: 0, rejected: 0, reportPath: options.reportPath, interrupted: false };
  const reject = async (line: number, reason: string) => {
    result.rejected += 1;
    await writeText(report, `${line},${csvField(reason)}\n`);
  };
  const correlationId = `import-rates-${randomUUID()}`;
  try {
    for await (const record of parseRecords(createReadStream(options.file), 'csv', 'utf-8', RATE_NUMBER_COLUMNS)) {
      if (options.signal?.aborted) {
        result.interrupted = true;
        break;
      }
      result.rows += 1;
      options.progress?.tick();
      if ('unreadable' in record) {
        await reject(record.line, record.unreadable);
        continue;
      }
      // The reason says that nothing after it is read.
      if ('unreadableRest' in record) {
        await reject(record.line, record.unreadableRest);
        break;
      }
      const missing = RATE_COLUMNS.filter((c) => record.row[c] === undefined || record.row[c] === '');
      if (missing.length > 0) {
        await reject(record.line, missing.map((c) => `${c}: required`).join('; '));
        continue;
      }
      const { currency, rate, valid_from: validFrom, reason, base_currency: base } = record.row;
      // A rates export names the base its rates are against: recorded against another base, every
      // figure converted with them would be wrong.
      if (typeof base === 'string' && base.trim() !== '' && base.trim().toUpperCase() !== options.baseCurrency) {
        await reject(record.line, `base_currency: the rate is against ${base.trim()}, this CRM's base currency is ${options.baseCurrency} (CRM_BASE_CURRENCY)`);
        continue;
      }
      try {
        const outcome = await commands.execute(
          {
            type: 'SetExchangeRate',
            // Read as an import reads a currency cell (`gbp`, ` EUR`); the schema refuses what is no code.
            currency: typeof currency === 'string' ? currency.trim().toUpperCase() : currency,
            rate: typeof rate === 'string' ? rate.trim() : rate,
            validFrom: businessTime(validFrom),
            baseCurrency: options.baseCurrency,
            ...(typeof reason === 'string' && reason !== '' ? { reason } : {}),
          },
          { actor: { userId: 'crm-import-rates', roles: ['admin'] }, correlationId },
        );
        if (outcome.eventIds.length > 0) result.recorded += 1;
        else result.unchanged += 1;
      } catch (error) {
        const why = rowReason(error);
        // Anything but a refusal of the row (the database away...) stops the import: run it again.
        if (why === undefined) throw error;
        await reject(record.line, columnOf(why));
      }
    }
    await finishWriting(report);
    return result;
  } finally {
    await closeStream(report);
  }
}
