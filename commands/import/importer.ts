import { ZodError } from 'zod';
import { DomainError } from '../../domain/errors.ts';
import type { Actor } from '../../domain/metadata.ts';
import { storableForm } from '../../domain/shared.ts';
import { IdempotencyConflict } from '../../eventstore/errors.ts';
import { MAX_STREAMS_PER_APPEND } from '../../eventstore/contract.ts';
import { RecordedOtherwise } from '../recorded.ts';
import { streamsOf, type BatchCommands, type BatchOutcome, type PreparedItem, type RegisteredAs } from '../batch.ts';
import { ioTurns } from '../../shared/io-turns.ts';
import { LruMap } from '../../shared/lru.ts';
import { unkeyedCustomerId } from '../ids.ts';
import { isUnnamedColumn, type ImportRecord } from './parse.ts';
import { checkDefaultOwner } from './default-owner.ts';
import {
  columnOf,
  customerEmailOf,
  DATING_COLUMNS,
  detectKind,
  FORMER_KEYS,
  importKinds,
  RowRejected,
  shownValue,
  knownColumns,
  rowCommands,
  takesDefaultOwner,
  type ImportKind,
  type Row,
  type RowCommand,
  type RowOptions,
} from './rows.ts';
import type { CommandType } from '../schemas.ts';

/**
 * The import loop shared by `crm import` and `POST /imports`: records in, batches of commands
 * through the batch handler, a line-numbered reason out for every bad row. Memory holds four batches
 * (plus the handler's bounded stream cache), whatever the file's length. Stopping (signal) happens
 * between batches: every batch is appended whole or not at all, and a rerun skips what is stored.
 *
 * The rows of the next batch are read, validated and stamped, then decided, while the store writes
 * the one before (commands/batch.ts submitBatch): each batch is decided on the states its predecessor
 * left, and stored after it.
 */

export interface ImportCounts {
  kind: ImportKind | undefined;
  /** Data rows read so far. */
  rows: number;
  /** Rows whose commands are stored (including `alreadyPresent`). */
  imported: number;
  /** Rows stored by an earlier run of the same file (or an interrupted one). */
  alreadyPresent: number;
  rejected: number;
}

export interface RejectedRow {
  line: number;
  reason: string;
}

export interface ImportOptions {
  kind?: ImportKind;
  actor: Actor;
  /**
   * Commands per batch (one multi-stream append each). Default 1,000; a batch also ends before it
   * would address more streams than one append takes (MAX_STREAMS_PER_APPEND).
   */
  batchSize?: number;
  signal?: AbortSignal;
  onRejected: (row: RejectedRow) => void | Promise<void>;
  /**
   * Why the caller may not send a command of this type, if it may not (an HTTP import checks each
   * command a row becomes against the caller's role: a customers row of an inactive customer also
   * deactivates it). A row with such a command is refused whole.
   */
  forbidden?: (type: CommandType) => string | undefined;
  /** After each batch is stored. */
  onProgress?: (counts: ImportCounts) => void;
  /**
   * The owner of the customers and deals whose row leaves `owner_id` empty: a user id, checked before
   * the first row (DefaultOwnerRefused). Without it, such a customer has no owner and such a deal row
   * is refused.
   */
  defaultOwner?: string;
  /** How the caller names a default owner (`--default-owner <userId>`): the reason of a deal row without an owner says it. */
  defaultOwnerHint?: string;
  /** The currency of a row that names none: the installation's base currency (EUR without). */
  currency?: string;
}

export interface ImportOutcome extends ImportCounts {
  /** Undefined only when the import ended before a row told it (stopped, or unreadable from its first row). */
  kind: ImportKind | undefined;
  interrupted: boolean;
  /**
   * Where the file stopped being readable (also in the report, though neither a row read nor a row
   * refused: nothing of it or after it was read).
   */
  unreadableFrom?: RejectedRow;
  /**
   * Columns of the file that no row's commands read, sorted: a misspelt one (`registerd_at`) or one
   * this kind has no use for. Its cells were left out, and nothing said so.
   */
  unreadColumns: string[];
}

/** The file's kind cannot be told (no `--kind`/`?kind=` and an unknown header). */
export class UnknownImportKind extends Error {}

/**
 * The file's first line names none of its kind's columns: a file without a header row, whose first
 * line was read as one. Refused whole: its cells would have been reported (and kept with an HTTP
 * import's job) as columns not read, a customer's name, address and phone among them, and the first
 * row left out.
 */
export class NoHeaderRow extends Error {}

/** The command a refusal is about and the file's row it came from: the reason names the row's columns. */
export interface RefusedAt {
  type: CommandType;
  row: Row;
  /** The run's default owner, when the row took it (its `owner_id` is empty). */
  defaultOwner?: string;
}

/**
 * What to do with an old system's id (`CUST-00042`) where the CRM takes a UUID: "Invalid UUID" alone
 * left a migrator nowhere to go.
 */
const idHint = (column: string): string | undefined =>
  column !== 'id' && !column.endsWith('_id')
    ? undefined
    : column === 'customer_id'
      ? 'name the customer by customer_email instead, or by the id this CRM gave it'
      : column === 'campaign_id' || column === 'deal_id'
        ? `name it by the id this CRM gave it: import those records first, then \`crm export ${column === 'campaign_id' ? 'campaigns' : 'deals'}\` lists their ids`
        : "leave the column out (or its cell empty) and an id is derived from the row; keep the old system's id in another column, such as source or a tag";

const describeIssues = (error: ZodError, at?: RefusedAt): string =>
  error.issues
    .map((i) => {
      const file = at && columnOf(at.type, i.path, at.row);
      if (!file) return `${i.path.length ? i.path.join('.') : 'row'}: ${i.message}`;
      // Nothing to read (no such column, or an empty cell): zod's "expected string, received undefined" told a clerk nothing.
      if (file.value === undefined && i.code === 'invalid_type') return `${file.column}: required: the file has no such column, or its cell is empty`;
      const uuidHint = i.code === 'invalid_format' && i.format === 'uuid' ? idHint(file.column) : undefined;
      const hint = uuidHint ? ` (ids here are UUIDs: ${uuidHint})` : '';
      return `${file.column}: ${file.value === undefined ? '' : `${shownValue(file.value)} is refused: `}${i.message}${hint}`;
    })
    .join('; ');

/** A decider's refusal in the file's terms: its column, and the customer as the row names it. */
const describeRefusal = (error: DomainError, at?: RefusedAt): string => {
  const file = error.field && at ? columnOf(at.type, [error.field], at.row) : undefined;
  if (!file) return `${error.field ? `${error.field}: ` : ''}${error.message}`;
  // A forgotten customer named by address reads as no customer: its id and its having been one stay unsaid
  // (the reason handed back the id, and the id what history is left: the amounts of its orders).
  const byAddress = file.column !== 'customer_id' && file.column !== 'id';
  if (error.code === 'customer.forgotten' && error.field === 'customerId' && byAddress)
    return `${file.column}: no customer has the address ${shownValue(file.value)}`;
  if (error.code === 'customer.not_found' && error.field === 'customerId') {
    const mergedInto = at && typeof at.row.merged_into === 'string' && at.row.merged_into.trim() !== '' ? at.row.merged_into.trim() : undefined;
    if (mergedInto)
      return `${file.column}: ${shownValue(file.value)} was merged into ${mergedInto} (merged_into), and is no customer here; to record the row on that customer, write ${mergedInto} in customer_id`;
    if (byAddress) return `${file.column}: no customer has the address ${shownValue(file.value)}`;
    return `${file.column}: no customer ${shownValue(file.value)}`;
  }
  return `${file.column}: ${error.message}`;
};

/**
 * The columns of a row imported before whose values differ from the stored record, each with the
 * file's cell quoted as other refusals quote a refused cell. The stored value is not shown: the report
 * (kept with an HTTP import's job, printed by the CLI) quotes the file and never what the store holds.
 */
const differingColumns = (error: IdempotencyConflict | RecordedOtherwise, at?: RefusedAt): string => {
  const columns = at ? error.differsIn.map((field) => columnOf(at.type, [field], at.row)).filter((file) => file !== undefined) : [];
  if (columns.length === 0) return '';
  const inFile = columns.map(({ column, value }) => `${column} (${value === undefined || value === '' ? 'empty' : shownValue(value)} in this file)`);
  return ` in ${inFile.join(', ')}`;
};

/**
 * Why a row was refused, naming the file's column (the command's field when the row is not known);
 * anything else is a fault and propagates.
 */
export const rowReason = (error: unknown, at?: RefusedAt): string | undefined => {
  if (error instanceof RowRejected) return error.message;
  if (error instanceof ZodError) return describeIssues(error, at);
  if (error instanceof DomainError) return describeRefusal(error, at);
  if (error instanceof RecordedOtherwise) {
    const record = `${error.kind[0]!.toUpperCase()}${error.kind.slice(1)} ${error.id}`;
    const differing = differingColumns(error, at) || ` in ${error.differsIn.join(', ')}`;
    return `row: ${record} is in the store already, with other values${differing} (the stored record stays; change it through the API where it can be)`;
  }
  if (error instanceof IdempotencyConflict) {
    // The key of a response is its campaign, customer and kind: a second conversion of one customer is
    // that key again, and the campaign keeps the first (as the API refuses the second with a 409).
    if (at?.type === 'RecordCampaignResponse')
      return "row: this customer's response of this kind to this campaign is recorded already (a campaign keeps one response of each kind per customer, the first; in the file or imported before)";
    const changed = `row: imported before with different values${differingColumns(error, at)} (a row is imported once and the stored one stays; change it through the API where it can be: a purchase is corrected with a refund)`;
    // The owner is part of what the row means: one that came from the run is a likely difference, and not in the file to see.
    if (at?.defaultOwner === undefined) return changed;
    return `${changed}; its owner_id is empty and took the default owner ${at.defaultOwner}: if it came in with another default owner, or none (a customer then has no owner; an earlier version gave such deals the owner "import"), it keeps that one`;
  }
  return undefined;
};

/**
 * Batches submitted and not yet stored at most. With two (one stored, one decided meanwhile), the
 * decider waited whenever an append took longer than deciding a batch; with three, a slow append is
 * absorbed by the next one. Measured on the 2-core machine at load 5-8 (three alternating pairs,
 * in-process CDNOW-sized files): customers 2,196-2,316 -> 2,550-3,596 rows/s, purchases
 * 2,698-4,915 -> 4,306-5,837 rows/s.
 */
export const BATCHES_IN_FLIGHT = 3;

/** Rows whose columns make the file's (an NDJSON line may name its own). */
const COLUMNS_FROM_ROWS = 1_000;

/** Addresses whose holder an import keeps between batches. */
const ADDRESSES_KEPT = 50_000;

interface PendingRow {
  line: number;
  items: PreparedItem[];
  /** The command type of each item. */
  types: CommandType[];
  /** The file's row (a refusal names its columns and values). */
  row: Row;
  /**
   * A row that names its customer by address: its commands went to the customer imported with that
   * address (BatchCommands.importedCustomerId) until the batch looks the address up (flush).
   */
  byEmail?: { row: Row; email: string };
  /** The row's commands keyed as importers before keyed it, where that differs (keyedAsBefore). */
  asBefore?: Commands[];
  /** A customers row's commands keyed as its registration was stored, where that is not its key (registeredBefore). */
  registeredUnder?: (stored: RegisteredAs) => Commands;
}

/** A row's commands, prepared, and their types. */
interface Commands {
  items: PreparedItem[];
  types: CommandType[];
}

export async function runImport(batch: BatchCommands, records: AsyncIterable<ImportRecord>, options: ImportOptions): Promise<ImportOutcome> {
  const batchSize = options.batchSize ?? 1_000;
  // An HMAC a row, twice for a row named by address (4-6% of a purchases import's CPU): kept per
  // address for this run only, as a purchases file names its customers again and again; the handler
  // outlives the run in `crm serve`, and addresses kept there would outlive a forget.
  const customerIds = new LruMap<string, string>(ADDRESSES_KEPT);
  const importedCustomerId = (email: string): string => {
    let id = customerIds.get(email);
    if (id === undefined) customerIds.set(email, (id = batch.importedCustomerId(email)));
    return id;
  };
  // Before the first row: an owner that is no active user would be refused on every row, or given to every deal.
  const rowOptions: RowOptions = {
    customerIdFor: importedCustomerId,
    ...(options.defaultOwner !== undefined ? { defaultOwner: await checkDefaultOwner(batch, options.defaultOwner) } : {}),
    ...(options.defaultOwnerHint !== undefined ? { defaultOwnerHint: options.defaultOwnerHint } : {}),
    ...(options.currency !== undefined ? { currency: options.currency } : {}),
  };
  /** Where a refusal is about, for its reason: the command, the row, and the default owner when the row took it. */
  const whereRefused = (kind: ImportKind, type: CommandType, row: Row): RefusedAt =>
    takesDefaultOwner(kind, row, rowOptions) ? { type, row, defaultOwner: rowOptions.defaultOwner! } : { type, row };
  const counts: ImportCounts = { kind: options.kind, rows: 0, imported: 0, alreadyPresent: 0, rejected: 0 };
  let pending: PendingRow[] = [];
  let pendingItems = 0;
  // Streams the pending batch addresses.
  let pendingStreams = new Set<string>();
  // Rejections are written in line order: refusals found while reading wait for the batch before them.
  let early: RejectedRow[] = [];
  // Where the file stops being readable: reported, not counted as a row read or refused.
  let unreadableFrom: RejectedRow | undefined;

  // The file's columns (from its first rows: a CSV file's are its header) and those the commands read.
  const fileColumns = new Set<string>();
  const readColumns = new Set<string>();
  const tracked = (row: Row): Row =>
    new Proxy(row, {
      get: (target, name, receiver) => {
        if (typeof name === 'string') readColumns.add(name);
        return Reflect.get(target, name, receiver) as unknown;
      },
    });

  /**
   * A file that dates its rows: a CSV file has its time columns in every row, an NDJSON line may leave
   * one out. Such a line, after lines that had it, is read as the CSV row with an empty cell is
   * (refused where the time is needed), not recorded at the import's own time for good.
   */
  const datedColumns = new Set<string>();
  const datedAlike = (row: Row): void => {
    for (const column of Object.keys(row)) if (DATING_COLUMNS.has(column)) datedColumns.add(column);
    for (const column of datedColumns) if (!Object.hasOwn(row, column)) row[column] = '';
  };

  const reject = async (row: RejectedRow) => {
    if (row !== unreadableFrom) counts.rejected += 1;
    await options.onRejected(row);
  };

  /** A row's commands, prepared (and as importers before keyed them: asBefore, registeredUnder); throws why the row is refused. */
  const itemsOf = (kind: ImportKind, line: number, row: Row): Commands & Pick<PendingRow, 'asBefore' | 'registeredUnder'> => {
    const commands = rowCommands[kind](tracked(row), rowOptions);
    const keys = new Set([commands[0]?.key]);
    const asBefore = (FORMER_KEYS[kind] ?? []).flatMap((formerKeys) => {
      try {
        const former = rowCommands[kind](tracked(row), { ...rowOptions, formerKeys });
        if (keys.has(former[0]?.key)) return [];
        keys.add(former[0]?.key);
        return [prepared(kind, line, row, former)];
      } catch {
        // Refused so: no importer stored it so.
        return [];
      }
    });
    const registeredUnder =
      kind === 'customers'
        ? (stored: RegisteredAs) => prepared(kind, line, row, rowCommands.customers(tracked(row), { ...rowOptions, registeredUnder: stored.key }), stored)
        : undefined;
    return { ...prepared(kind, line, row, commands), ...(asBefore.length > 0 ? { asBefore } : {}), ...(registeredUnder ? { registeredUnder } : {}) };
  };

  /**
   * The commands of a row, prepared; throws why the row is refused. `stored`: where the row's
   * registration is stored, whose fingerprint is this row's (registeredBefore).
   */
  const prepared = (kind: ImportKind, line: number, row: Row, commands: RowCommand[], stored?: RegisteredAs): Commands => {
    const forbidden = options.forbidden && commands.map((c) => options.forbidden!(c.command.type)).find((why) => why !== undefined);
    if (forbidden) throw new RowRejected(forbidden);
    const items = commands.map((c) =>
      batch.prepare({
        command: c.command,
        ctx: {
          actor: options.actor,
          correlationId: `import:${kind}:line-${line}`,
          idempotencyKey: c.key,
          ...(c.occurredAt ? { occurredAt: c.occurredAt } : {}),
          ...(c.reason === null ? {} : { reason: c.reason ?? `import of ${kind} (line ${line})` }),
          fingerprint: {
            byMeaning: true,
            ...(c.formerly ? { formerly: c.formerly } : {}),
            ...(c.key === stored?.key ? { stored: [stored.commandHash] } : {}),
          },
        },
      }),
    );
    // A row refused by a schema sends none of its commands: a won deal whose outcome is refused must
    // not come in open, nor a feedback item without its resolution.
    const refusedAt = items.findIndex((item) => 'refused' in item);
    if (refusedAt >= 0) {
      const refused = (items[refusedAt] as { refused: unknown }).refused;
      const reason = rowReason(refused, whereRefused(kind, commands[refusedAt]!.command.type, row));
      // A row of one command is reported with its batch (report).
      if (reason !== undefined && items.length > 1) throw new RowRejected(reason);
    }
    return { items, types: commands.map((c) => c.command.type) };
  };

  /**
   * Holders of the addresses looked up in this run (null: free), so a file that comes back to a customer
   * looks it up once. Bounded, as the batch handler's states are.
   */
  const holdersSeen = new LruMap<string, string | null>(ADDRESSES_KEPT);

  /**
   * The batch's rows that name their customer by an address another customer holds (one registered
   * through the API with a random id, or imported before ids were keyed) are prepared again for that
   * customer: one lookup a batch. A customer imported by address holds it under the id derived from
   * it, so its rows stay as they are.
   */
  const findCustomers = async (kind: ImportKind, rows: PendingRow[], refusals: RejectedRow[]): Promise<PendingRow[]> => {
    const named = rows.filter((r) => r.byEmail !== undefined);
    if (named.length === 0) return rows;
    const unseen = [...new Set(named.map((r) => r.byEmail!.email))].filter((email) => holdersSeen.get(email) === undefined);
    if (unseen.length > 0) {
      const holders = await batch.customersByEmail(unseen);
      for (const email of unseen) holdersSeen.set(email, holders.get(email) ?? null);
    }
    // A customers row whose address nobody holds may still be a customer imported before ids were keyed:
    // one forgotten since (a forget frees the address), one whose address changed, one imported before
    // imports held addresses. Its stream under the unkeyed id says so: the row goes there, and is present,
    // refused as forgotten or as registered, as before, rather than registering the person again.
    // Unkeyed ids matter to customers rows only (a purchase goes to whoever holds the address), each worked out once.
    const unkeyedOf = new Map(kind === 'customers' ? named.map((r) => [r.byEmail!.email, unkeyedCustomerId(r.byEmail!.email)] as const) : []);
    const storedUnkeyed = await batch.customersStored([...unkeyedOf].filter(([email]) => !holdersSeen.get(email)).map(([, unkeyed]) => unkeyed));
    const found: PendingRow[] = [];
    for (const pendingRow of rows) {
      const email = pendingRow.byEmail?.email;
      const unkeyed = email === undefined ? undefined : unkeyedOf.get(email);
      const holder = email === undefined ? undefined : (holdersSeen.get(email) ?? (unkeyed !== undefined && storedUnkeyed.has(unkeyed) ? unkeyed : null));
      // A customers row registers the address's own customer: it is moved only onto one imported before
      // ids were keyed (the same row then), never onto another customer holding the address (refused).
      const movesTo = !!holder && (kind === 'customers' ? holder === unkeyed : holder !== importedCustomerId(email!));
      if (!holder || !movesTo) {
        found.push(pendingRow);
        continue;
      }
      try {
        found.push({ line: pendingRow.line, row: pendingRow.row, ...itemsOf(kind, pendingRow.line, { ...pendingRow.byEmail!.row, customer_id: holder }) });
      } catch (error) {
        const reason = rowReason(error);
        if (reason === undefined) throw error;
        refusals.push({ line: pendingRow.line, reason });
      }
    }
    return found;
  };

  /**
   * Rows that importers before keyed otherwise (a time in the key spelt as the file wrote it:
   * rows.ts FORMER_KEYS) and stored so keep that key: the file imported again, or re-saved by a
   * spreadsheet, appends nothing. One read a batch, of the streams those keys address.
   */
  const keyedAsBefore = async (rows: PendingRow[]): Promise<PendingRow[]> => {
    const asked = rows.flatMap((r) => (r.asBefore ?? []).map((former) => former.items[0]!));
    const stored = asked.length > 0 ? await batch.storedAlready(asked) : [];
    let at = 0;
    return rows.map(({ asBefore, ...row }) => {
      if (!asBefore) return row;
      const found = asBefore.find((_, i) => stored[at + i]);
      at += asBefore.length;
      return found ? { ...row, ...found } : row;
    });
  };

  /**
   * Customers rows whose registration is stored under another key: that of their address as the file
   * an importer before took it from spelt it (`Ana@Example.com`), whatever the case of this file's
   * (`ANA@example.com`). Such a row, the same by its stored events, is keyed as stored and present.
   * One read a batch, of the first events of the rows' customers.
   */
  const registeredBefore = async (rows: PendingRow[]): Promise<PendingRow[]> => {
    // Only a customer holding the row's address can have registered it: a file of new customers reads nothing.
    const asked = rows.map((r) => (r.registeredUnder && r.byEmail && holdersSeen.get(r.byEmail.email) ? r : undefined));
    if (!asked.some((r) => r)) return rows;
    const stored = await batch.registeredAs(asked.flatMap((r) => (r ? [r.items[0]!] : [])));
    let at = 0;
    return rows.map(({ registeredUnder, ...row }, i) => {
      const as = asked[i] ? stored[at++] : undefined;
      if (!as || !registeredUnder) return row;
      try {
        return { ...row, ...registeredUnder(as) };
      } catch {
        // Refused so, the row is refused as it is.
        return row;
      }
    });
  };

  /** Reports a stored batch's refusals (in line order, after those of the batches before). */
  const report = async (rows: PendingRow[], outcomes: BatchOutcome[], waiting: RejectedRow[]): Promise<void> => {
    const refusals: RejectedRow[] = [...waiting];
    let at = 0;
    for (const row of rows) {
      const mine = outcomes.slice(at, at + row.items.length);
      at += row.items.length;
      const failedAt = mine.findIndex((o) => !o.ok);
      const failed = mine[failedAt];
      if (failed && !failed.ok) {
        const reason = rowReason(failed.error, whereRefused(counts.kind!, row.types[failedAt]!, row.row));
        if (reason === undefined) throw failed.error;
        refusals.push({ line: row.line, reason });
      } else {
        counts.imported += 1;
        if (mine.every((o) => o.ok && o.alreadyDone)) counts.alreadyPresent += 1;
      }
    }
    refusals.sort((a, b) => a.line - b.line);
    for (const refusal of refusals) await reject(refusal);
    options.onProgress?.(counts);
  };

  // Batches submitted and not yet reported, oldest first: at most BATCHES_IN_FLIGHT (one being
  // stored, the next ones decided and waiting for it), so memory stays bounded. Each batch is decided
  // once the one before it is decided, on the states it left. A failure is kept until the loop waits
  // for the batches.
  let inFlight: Promise<void>[] = [];
  let decided: Promise<unknown> = Promise.resolve();
  let failure: { error: unknown } | undefined;
  /** Room for one more batch: the last one decided and fewer than BATCHES_IN_FLIGHT submitted and not stored. */
  const ready = async (): Promise<void> => {
    await decided;
    while (inFlight.length >= BATCHES_IN_FLIGHT) await inFlight.shift();
    if (failure) throw failure.error;
  };
  const stored = async (): Promise<void> => {
    await decided;
    await Promise.all(inFlight);
    inFlight = [];
    if (failure) throw failure.error;
  };
  const flush = async (): Promise<void> => {
    await ready();
    const waiting = early;
    // Looked up and decided while the next rows are read: the next batch is submitted after this one.
    const found = (counts.kind ? findCustomers(counts.kind, pending, waiting) : Promise.resolve(pending)).then(keyedAsBefore).then(registeredBefore);
    pending = [];
    pendingItems = 0;
    pendingStreams = new Set();
    early = [];
    const before = inFlight.at(-1) ?? Promise.resolve();
    const submitted = found.then((rows) =>
      rows.length > 0 ? batch.submitBatch(rows.flatMap((r) => r.items)) : { outcomes: Promise.resolve<BatchOutcome[]>([]) },
    );
    decided = submitted.catch(() => undefined);
    inFlight.push(
      (async () => {
        const rows = await found;
        const outcomes = await (await submitted).outcomes;
        await before;
        await report(rows, outcomes, waiting);
      })().catch((error: unknown) => {
        failure ??= { error };
      }),
    );
  };

  let interrupted = false;
  // Reading and preparing rows runs while a batch is stored: its reply is read between rows (shared/io-turns.ts).
  const turns = ioTurns();
  try {
    for await (const record of records) {
      if (turns.due()) await turns.give();
      // The rest of the file cannot be read: the rows before are stored as at the end of a file.
      if ('unreadableRest' in record) {
        unreadableFrom = { line: record.line, reason: record.unreadableRest };
        early.push(unreadableFrom);
        break;
      }
      // Told before a stop is heeded, so that an import stopped at its first row says what it was.
      if (!counts.kind && 'row' in record) counts.kind = detectKind(Object.keys(record.row));
      if (options.signal?.aborted) {
        interrupted = true;
        break;
      }
      counts.rows += 1;
      // A first row that cannot be read tells nothing: it is reported, and the next one tells the kind.
      if (!('row' in record)) {
        early.push({ line: record.line, reason: record.unreadable });
        continue;
      }
      if (!counts.kind) {
        throw new UnknownImportKind(
          `Cannot tell the kind of file from its columns; name it (one of ${importKinds.join(', ')}). ` +
            'Customers need "name" and "email", purchases "order_id" and "amount".',
        );
      }
      if (counts.rows <= COLUMNS_FROM_ROWS && fileColumns.size === 0 && !Object.keys(record.row).some((c) => knownColumns[counts.kind!].has(c)))
        throw new NoHeaderRow(
          `The first line names none of the columns of a ${counts.kind} file (such as ${[...knownColumns[counts.kind]].slice(0, 5).join(', ')}): ` +
            'the file needs a header row naming its columns. Nothing was imported.',
        );
      if (counts.rows <= COLUMNS_FROM_ROWS) for (const column of Object.keys(record.row)) fileColumns.add(column);
      // A value under a header cell left empty, in any row: the header bounds those columns.
      else for (const column of Object.keys(record.row)) if (isUnnamedColumn(column)) fileColumns.add(column);
      datedAlike(record.row);
      let items: PreparedItem[];
      let types: CommandType[];
      let asBefore: Commands[] | undefined;
      let registeredUnder: PendingRow['registeredUnder'];
      try {
        ({ items, types, asBefore, registeredUnder } = itemsOf(counts.kind, record.line, record.row));
      } catch (error) {
        const reason = rowReason(error);
        if (reason === undefined) throw error;
        early.push({ line: record.line, reason });
        continue;
      }
      const email = customerEmailOf(counts.kind, record.row);
      // A row's commands stay in one batch, so its outcome is decided in one place.
      const streams = items.flatMap(streamsOf);
      const newStreams = streams.filter((stream) => !pendingStreams.has(stream)).length;
      if (pendingItems + items.length > batchSize || pendingStreams.size + newStreams > MAX_STREAMS_PER_APPEND) {
        // A stop asked for while the batch before was decided: this one is not sent.
        await ready();
        if (options.signal?.aborted) {
          interrupted = true;
          break;
        }
        await flush();
      }
      pending.push({
        line: record.line,
        items,
        types,
        row: record.row,
        ...(email ? { byEmail: { row: record.row, email } } : {}),
        ...(asBefore ? { asBefore } : {}),
        ...(registeredUnder ? { registeredUnder } : {}),
      });
      pendingItems += items.length;
      for (const stream of streams) pendingStreams.add(stream);
    }
  } catch (error) {
    // The batches in flight still report their refusals before the caller closes the report.
    await Promise.all(inFlight);
    throw error;
  }
  // Refusals read before a stop are reported; the unsent batch is not (the rerun decides it).
  if (interrupted) pending = [];
  if (!interrupted || early.length > 0) await flush();
  await stored();
  const kind = counts.kind ?? options.kind;
  // Named as the file spells them, but storable: a header holding NUL made the job's record unsavable.
  // An NDJSON key that is empty once normalised names no column: nothing to report. (A CSV header's
  // empty cell is an unnamed column, in a row only where it holds a value: parse.ts unnamedColumn.)
  const unreadColumns = [
    ...new Set([...fileColumns].filter((column) => column !== '' && !readColumns.has(column) && !(kind && knownColumns[kind].has(column))).map(storableForm)),
  ].sort();
  return { ...counts, kind, interrupted, ...(unreadableFrom ? { unreadableFrom } : {}), unreadColumns };
}
