import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { basename, extname } from 'node:path';
import { parse } from 'csv-parse';
import { ZodError } from 'zod';
import type { CommandPort } from '../api/deps.ts';
import { DomainError } from '../domain/errors.ts';
import { IdempotencyConflict } from '../eventstore/errors.ts';
import { customerCommandSchemas } from '../domain/customer/commands.ts';
import type { Progress } from './progress.ts';

/**
 * `crm import customers.csv | purchases.csv`: streamed, validated row by row with the commands' own
 * zod schemas, sent through the command handlers. Bad rows go to a report (line number and reason);
 * good rows go in. Every row's idempotency key comes from the file kind and a stable row key (the
 * email, the order id), so importing the same file again appends nothing twice.
 */

export type ImportKind = 'customers' | 'purchases';

export interface ImportResult {
  kind: ImportKind;
  rows: number;
  imported: number;
  rejected: number;
  reportPath: string;
  interrupted: boolean;
}

export interface ImportOptions {
  file: string;
  kind?: ImportKind;
  reportPath?: string;
  actor?: { userId: string; roles: string[] };
  progress?: Progress;
  signal?: AbortSignal;
}

type Row = Record<string, string>;
type Built = { command: { type: string } & Record<string, unknown>; key: string; occurredAt?: string };

const normalizeHeader = (header: string) => header.trim().toLowerCase().replace(/[\s-]+/g, '_');

/** Which file is it: purchases name an order, customers name a person. */
export const detectKind = (headers: string[]): ImportKind | undefined => {
  const h = new Set(headers.map(normalizeHeader));
  if (h.has('order_id') && h.has('amount')) return 'purchases';
  if (h.has('email') && h.has('name')) return 'customers';
  return undefined;
};

const hash = (text: string) => createHash('sha256').update(text).digest('hex');

/** A stable customer id for an email, so a purchases file can refer to customers by email. */
export const customerIdForEmail = (email: string): string => {
  const h = hash(`crm-import:customer:${email.trim().toLowerCase()}`);
  const variant = ((parseInt(h[16] as string, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

const blankToUndefined = (value: string | undefined) => (value === undefined || value.trim() === '' ? undefined : value.trim());

const parseBoolean = (value: string | undefined): boolean | string | undefined => {
  const v = blankToUndefined(value)?.toLowerCase();
  if (v === undefined) return undefined;
  if (['true', 'yes', 'y', '1'].includes(v)) return true;
  if (['false', 'no', 'n', '0'].includes(v)) return false;
  return value; // left as text: the schema names the field and refuses it
};

const parseNumber = (value: string | undefined): number | string | undefined => {
  const v = blankToUndefined(value);
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) && /^-?\d+(\.\d+)?$/.test(v) ? n : v;
};

/** Accepts a full ISO time or a plain date (taken as midnight UTC). */
const parseTime = (value: string | undefined): string | undefined => {
  const v = blankToUndefined(value);
  if (v === undefined) return undefined;
  if (/^\d{4}-\d{2}-\d{2}$/.test(v)) return `${v}T00:00:00.000Z`;
  return v;
};

const describeIssues = (error: ZodError): string =>
  error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'row'}: ${i.message}`).join('; ');

class RowRejected extends Error {}

const buildCustomer = (row: Row): Built => {
  const email = blankToUndefined(row.email);
  const tags = blankToUndefined(row.tags)
    ?.split(/[;|]/)
    .map((t) => t.trim())
    .filter(Boolean);
  const candidate = {
    customerId: blankToUndefined(row.id ?? row.customer_id) ?? (email ? customerIdForEmail(email) : undefined),
    name: blankToUndefined(row.name),
    email,
    phone: blankToUndefined(row.phone) ?? null,
    company: blankToUndefined(row.company) ?? null,
    tags: tags ?? [],
    source: blankToUndefined(row.source) ?? 'import',
    marketingConsent: parseBoolean(row.marketing_consent ?? row.consent) ?? false,
  };
  const parsed = customerCommandSchemas.RegisterCustomer.safeParse(candidate);
  if (!parsed.success) throw new RowRejected(describeIssues(parsed.error));
  return {
    command: { type: 'RegisterCustomer', ...parsed.data },
    key: `import:customers:${hash(parsed.data.email).slice(0, 40)}`,
  };
};

const buildPurchase = (row: Row): Built => {
  const email = blankToUndefined(row.customer_email ?? row.email);
  const occurredAt = parseTime(row.occurred_at ?? row.date ?? row.purchased_at);
  const candidate = {
    customerId: blankToUndefined(row.customer_id) ?? (email ? customerIdForEmail(email) : undefined),
    orderId: blankToUndefined(row.order_id),
    amount: parseNumber(row.amount),
    currency: blankToUndefined(row.currency)?.toUpperCase() ?? 'EUR',
    occurredAt,
  };
  if (!candidate.customerId) throw new RowRejected('customer_id: required (or customer_email of an imported customer)');
  const parsed = customerCommandSchemas.RecordPurchase.safeParse(candidate);
  if (!parsed.success) throw new RowRejected(describeIssues(parsed.error));
  const { occurredAt: time, ...payload } = parsed.data;
  return {
    command: { type: 'RecordPurchase', ...payload },
    key: `import:purchases:${hash(`${payload.customerId}:${payload.orderId}`).slice(0, 40)}`,
    ...(time ? { occurredAt: time } : {}),
  };
};

const csvField = (text: string) => (/[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);

const write = async (out: WriteStream, text: string) => {
  if (!out.write(text)) await once(out, 'drain');
};

export async function importCsv(commands: CommandPort, options: ImportOptions): Promise<ImportResult> {
  const actor = options.actor ?? { userId: 'crm-import', roles: ['admin'] };
  const parser = createReadStream(options.file).pipe(
    parse({
      bom: true,
      columns: (headers: string[]) => headers.map(normalizeHeader),
      info: true,
      skip_empty_lines: true,
      relax_column_count: true,
      trim: true,
    }),
  );
  let kind = options.kind;
  const reportPath = options.reportPath ?? `import-report-${basename(options.file, extname(options.file))}.csv`;
  const report = createWriteStream(reportPath);
  await write(report, 'line,reason\n');
  const result: ImportResult = { kind: kind ?? 'customers', rows: 0, imported: 0, rejected: 0, reportPath, interrupted: false };
  const reject = (line: number, reason: string) => {
    result.rejected += 1;
    return write(report, `${line},${csvField(reason)}\n`);
  };

  let invalidSoFar = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: Row; info: { lines: number; invalid_field_length: number } }>) {
      if (options.signal?.aborted) {
        result.interrupted = true;
        break;
      }
      if (!kind) {
        kind = detectKind(Object.keys(record));
        if (!kind) {
          throw new Error(
            'Cannot tell the kind of file from its header: customers need "name" and "email", purchases "order_id" and "amount" (or pass --kind).',
          );
        }
        result.kind = kind;
      }
      result.rows += 1;
      const line = info.lines;
      try {
        // csv-parse counts rows with a wrong number of fields cumulatively: a rise means this row.
        const wrongLength = info.invalid_field_length > invalidSoFar;
        invalidSoFar = info.invalid_field_length;
        if (wrongLength) throw new RowRejected('row: the number of fields differs from the header');
        const built = kind === 'customers' ? buildCustomer(record) : buildPurchase(record);
        await commands.execute(built.command, {
          actor,
          correlationId: `import:${kind}:line-${line}`,
          idempotencyKey: built.key,
          ...(built.occurredAt ? { occurredAt: built.occurredAt } : {}),
          reason: `import of ${kind} (line ${line})`,
        });
        result.imported += 1;
      } catch (error) {
        if (error instanceof RowRejected) await reject(line, error.message);
        else if (error instanceof DomainError) await reject(line, `${error.field ? `${error.field}: ` : ''}${error.message}`);
        else if (error instanceof ZodError) await reject(line, describeIssues(error));
        else if (error instanceof IdempotencyConflict) await reject(line, 'row: imported before with different values (a row key is imported once; change it through the API)');
        else throw error;
      }
      options.progress?.tick();
      // Let signals and other I/O in between rows (PGlite answers through promise callbacks only).
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    report.end();
    await once(report, 'close');
  }
  return result;
}
