/**
 * Read-model lists as files (`GET /customers/export`, `crm export customers`): every page of a list
 * query, one line per record, CSV (a header row of the kind's columns, written first, so an export
 * that matches nothing still says what it would hold) or NDJSON. A generator, so a caller streams it
 * and holds one page at a time.
 */

import { csvField, csvNumber, type CsvDelimiter } from '../../shared/csv.ts';

export type ExportFormat = 'csv' | 'ndjson';

/**
 * How a CSV export is laid out: separated by commas (the default) or by semicolons with decimal
 * commas, for a spreadsheet in a locale whose list separator is `;`; `bom`: starting with a UTF-8 byte
 * order mark, so that Excel reads it as UTF-8 rather than in its locale's code page.
 * `crm import` reads both back.
 */
export interface CsvLayout {
  delimiter: CsvDelimiter;
  bom: boolean;
}

export const PLAIN_CSV: CsvLayout = { delimiter: ',', bom: false };

type Page = { items: Record<string, unknown>[]; nextCursor: string | null };

const csvCell = (value: unknown, delimiter: CsvDelimiter): string => {
  if (value === null || value === undefined) return '';
  const text =
    Array.isArray(value) && value.every((v) => typeof v === 'string')
      ? value.join(';')
      : typeof value === 'object' && !(value instanceof Date)
        ? JSON.stringify(value)
        : value instanceof Date
          ? value.toISOString()
          : typeof value === 'number'
            ? csvNumber(value, delimiter)
            : String(value);
  return csvField(text);
};

/** Whitespace-separated names, so that the lists below read as lists. */
const fields = (names: string): readonly string[] => names.trim().split(/\s+/);

/** The fields of a listed record of each kind, in file order (test/api/exports.test.ts holds them to the lists). */
export const EXPORT_COLUMNS: Record<
  'customers' | 'deals' | 'feedback' | 'activities' | 'purchases' | 'refunds' | 'campaigns' | 'responses' | 'costs' | 'exchange-rates',
  readonly string[]
> = {
  customers: fields(`
    id name email phone company source tags status mergedInto marketingConsent registeredAt
    firstPurchaseAt lastPurchaseAt orderCount revenue refunded currency forgottenAt ownerId updatedAt
    openFeedbackCount dealsOpen dealsWon dealsLost revision position baseCurrency revenueBase
    missingRates deactivatedAt deactivationReason`),
  deals: fields(`
    id customerId title stage status amount currency ownerId probability probabilityOverride
    weightedAmount expectedCloseDate stageEnteredAt openedAt closedAt lostReason updatedAt daysInStage
    wonReason revision amountAt baseCurrency amountBase weightedAmountBase missingRates mergedInto`),
  feedback: fields(`
    id customerId kind channel subject body priority status assigneeId submittedAt firstResponseDueAt
    resolutionDueAt firstRespondedAt resolvedAt closedAt escalationCount reopenCount csat nps ratedAt
    updatedAt firstResponseSeconds resolutionSeconds firstResponseBreached resolutionBreached breached
    revision firstResponse resolution ratingComment mergedInto`),
  // The columns an activities import reads (`id` as `activity_id`, a deal's activity by `dealId`), then
  // what the list derives, and the primary of a merged duplicate's customer.
  activities: fields(`
    id customerId dealId kind subject body dueAt assigneeId occurredAt completedAt open overdue loggedBy
    updatedAt revision mergedInto`),
  // The columns a purchases import reads (camel case reads as order_id, customer_id, ...), and the
  // primary of a merged duplicate's purchase.
  purchases: fields(`orderId customerId amount currency occurredAt mergedInto`),
  // The columns a refunds import reads (`refundId` tells the kind), and the primary as for purchases.
  refunds: fields(`refundId orderId customerId amount currency reason occurredAt mergedInto`),
  // What a campaigns import reads (`id` as `campaign_id`, the status with the times of its steps, the
  // segment as JSON), then the figures: costs, the responses by kind, revenue and ROI; and the same
  // money in the base currency, with conversions paid in other currencies than the campaign's.
  campaigns: fields(`
    id name channel status budget currency startsAt endsAt targetSegment createdAt launchedAt
    completedAt cancelledAt costs sent opened clicked converted unsubscribed revenue roi conversionRate
    overBudget updatedAt revision baseCurrency costsBase revenueBase roiBase missingRates`),
  // The columns a responses import reads.
  responses: fields(`campaignId customerId response revenue currency occurredAt`),
  // The columns a costs import reads (`costId` tells the kind).
  costs: fields(`campaignId costId amount currency description occurredAt`),
  // The columns `crm import-rates` reads (currency, rate, valid_from, reason), then the base currency they are against.
  'exchange-rates': fields(`currency rate validFrom reason baseCurrency setAt`),
};

export type ExportKind = keyof typeof EXPORT_COLUMNS;
export const EXPORT_KINDS = Object.keys(EXPORT_COLUMNS) as ExportKind[];

/**
 * The file's lines. The first page is read before this resolves, so that a failure to read (the
 * database away, a filter the query refuses) is an error the caller answers with, not a file that
 * stops after its header and reads as complete. A later page that fails ends the iteration with the
 * error (over HTTP, a response cut short).
 */
export async function exportLines(
  list: (query: Record<string, unknown>) => Promise<Page>,
  query: Record<string, unknown>,
  format: ExportFormat,
  columns: readonly string[],
  shape: (page: Page) => Page | Promise<Page> = (page) => page,
  { delimiter, bom }: CsvLayout = PLAIN_CSV,
): Promise<AsyncGenerator<string>> {
  const read = async (cursor: string | undefined) => shape(await list({ ...query, limit: 500, ...(cursor ? { cursor } : {}) }));
  // An NDJSON line holds the CSV's columns, in their order, whatever order the list or its completion built the record in.
  const inFileOrder = (item: Record<string, unknown>) => Object.fromEntries(columns.map((c) => [c, item[c]]));
  const linesOf = (page: Page): string => {
    let chunk = '';
    for (const item of page.items)
      chunk += format === 'ndjson' ? `${JSON.stringify(inFileOrder(item))}\n` : `${columns.map((c) => csvCell(item[c], delimiter)).join(delimiter)}\n`;
    return chunk;
  };
  const first = await read(undefined);
  return (async function* () {
    if (format === 'csv') yield `${bom ? '\uFEFF' : ''}${columns.join(delimiter)}\n`;
    for (let page = first; ; page = await read(page.nextCursor)) {
      const chunk = linesOf(page);
      if (chunk) yield chunk;
      if (!page.nextCursor) return;
    }
  })();
}
