import { eventSchemas, personalFields, schemaVersionOf, type CrmEvent, type CrmEventType } from '../domain/catalogue.ts';
import { customerSnapshot } from '../domain/customer/decider.ts';
import { userSnapshot, type UserSnapshot } from '../domain/user/decider.ts';
import { DomainError, invalidState } from '../domain/errors.ts';
import { isSameInstant } from '../domain/time.ts';
import type { FeedbackState } from '../domain/feedback/decider.ts';
import { defaultSlaPolicy, type SlaPolicy } from '../domain/feedback/sla.ts';
import { MAX_STREAMS_PER_APPEND, type AppendResult, type EventStore, type NewEvent, type StreamAppend, type StreamRead } from '../eventstore/contract.ts';
import { IdempotencyConflict, WrongExpectedRevision, WrongExpectedRevisions } from '../eventstore/errors.ts';
import { personalSubjectOf, type PersonalData } from '../eventstore/personal-data.ts';
import { readStoredEvent, UnreadableEvent } from '../eventstore/unreadable-event.ts';
import type { EmailIndex } from '../eventstore/email-index.ts';
import { resolveActivityParent } from './activity-parent.ts';
import { namingChainEnd, resolveMergedOrder } from './merged-order.ts';
import { aggregateFolders, streamOf, type Folder } from './aggregates.ts';
import { compactState, CompactIds, hashPrefix } from './compact-state.ts';
import { addressOf, claimEmails, emailToClaim } from './email-uniqueness.ts';
import { customerIdUnder, eventIdFor } from './ids.ts';
import { fieldsDiffering, registersAsStored } from './fingerprint.ts';
import { ioTurns } from '../shared/io-turns.ts';
import { LruMap } from '../shared/lru.ts';
import type { CommandContext } from './index.ts';
import {
  createDecide,
  customerDataKeyMissing,
  customerForgotten,
  fillDerivedIds,
  needsCustomerSnapshot,
  namedUserOf,
  needsFeedbackCustomer,
  prepareCommand,
  protectForCommand,
  type PreparedCommand,
} from './prepare.ts';
import { createSnapshotCodec, SNAPSHOT_AFTER_EVENTS, type PendingSnapshot, type SavedState } from './snapshots.ts';
import { createsExisting, differencesFromRecord, RecordedOtherwise, respondedAlready } from './recorded.ts';
import { commandTargets, type AggregateKind } from './schemas.ts';

/**
 * Many commands decided in memory and appended many streams per transaction (bulk import). Each
 * command goes through the same schema, metadata and decider as one sent to the API
 * (commands/prepare.ts); what changes is the I/O: the streams of a batch are read in one query,
 * personal-data keys are loaded and created in one query each, and the decided events of every
 * stream go out in one `appendToStreams` call with each stream's expected revision. A conflict
 * (someone else wrote one of those streams meanwhile) stores the streams not in conflict and decides
 * the others again on what was stored, so a concurrent write is never lost and never surfaces as an
 * error. Where the store keeps saved states (commands/snapshots.ts), a long customer stream is read
 * from its saved state on, and a stream that was costly to read is saved as soon as it is read.
 * Commands carry idempotency keys: a command whose events are already stored is answered as done,
 * and so is a row creating a record the store holds under another key when it says what that record
 * holds (commands/recorded.ts: the CRM's export of records made through the API, imported back).
 */

export interface BatchItem {
  command: { type: string; [field: string]: unknown };
  ctx: CommandContext;
}

export type BatchOutcome =
  /** `alreadyDone`: the command's events were stored before (a re-import, or a resumed one), or it decided none (its effect was there). */
  { ok: true; stream: string; eventIds: string[]; alreadyDone: boolean } | { ok: false; error: unknown };

/** Fields of a stream's state that steps after its creation move: not a difference of the creating row. */
const MOVED_BY_LATER_STEPS: ReadonlySet<string> = new Set(['stage', 'stageEnteredAt', 'status', 'completed']);

/**
 * A command validated and stamped, ready to be decided (or why it was refused). Preparing needs no
 * I/O and no stream state, so the importer prepares the next batch while the previous one is stored.
 */
export type PreparedItem = { prepared: PreparedCommand; firstEventId: string } | { refused: unknown };

/**
 * The streams a command's decider reads beside its own: the customer it needs a snapshot of, and the
 * owner (a user) it names, who must be an active user (a customers file's `owner_id`).
 */
const readAlso = (p: PreparedCommand): [string, AggregateKind][] => {
  const also: [string, AggregateKind][] = [];
  if (needsCustomerSnapshot(p.type)) also.push([streamOf('customer', p.command.customerId as string), 'customer']);
  // An activity's parent; a deal's customer, and a merged customer's primary, are read by loadForDecision.
  if (p.type === 'LogActivity') {
    const { customerId, dealId } = p.command;
    if (typeof dealId === 'string') also.push([streamOf('deal', dealId), 'deal']);
    else if (typeof customerId === 'string') also.push([streamOf('customer', customerId), 'customer']);
  }
  const named = namedUserOf(p.type, p.command);
  if (named) also.push([streamOf('user', named.userId), 'user']);
  return also;
};

/** The streams a prepared command reads or writes (its own, and those its decider reads: readAlso). */
export const streamsOf = (item: PreparedItem): string[] => {
  if (!('prepared' in item)) return [];
  const p = item.prepared;
  return [p.stream, ...readAlso(p).map(([stream]) => stream)];
};

/** A batch decided and on its way to the store. */
export interface SubmittedBatch {
  /** Outcomes in input order, once the batch is stored; rejects only for store faults. */
  outcomes: Promise<BatchOutcome[]>;
}

export interface BatchCommands {
  /** Schema, metadata and ids of one command, as the API would give them; never throws. */
  prepare(item: BatchItem): PreparedItem;
  /**
   * Decides a batch on the states the batches submitted before it leave, and resolves once it is
   * decided: its append waits for theirs, so the caller decides the next batch while this one is stored.
   */
  submitBatch(items: (BatchItem | PreparedItem)[]): Promise<SubmittedBatch>;
  /** Outcomes in input order; bad commands are outcomes, not exceptions. Throws only for store faults. */
  executeBatch(items: (BatchItem | PreparedItem)[]): Promise<BatchOutcome[]>;
  /** The id of a customer an import names by address alone (commands/ids.ts customerIdUnder, this installation's key). */
  importedCustomerId(email: string): string;
  /** The customers holding these addresses, by address as given (none without an email index). */
  customersByEmail(emails: readonly string[]): Promise<Map<string, string>>;
  /** Which of these customers have a stream (registered once, forgotten or merged since included). */
  customersStored(customerIds: readonly string[]): Promise<Set<string>>;
  /** Whether each command's first event is stored (under its key, in its stream): one read for all. */
  storedAlready(items: readonly PreparedItem[]): Promise<boolean[]>;
  /**
   * For each registration (other commands: undefined), the key and fingerprint an import stored the
   * same registration under in its customer's stream, where that key is not its own: an address that
   * file spelt in another case (commands/fingerprint.ts registersAsStored). One read for all, of the
   * first two events of each stream.
   */
  registeredAs(items: readonly PreparedItem[]): Promise<(RegisteredAs | undefined)[]>;
  /** A user as the user's stream holds it (an import checks its default owner with it before its first row). */
  user(userId: string): Promise<UserSnapshot>;
}

/** Where a registration stored the same registration before (BatchCommands.registeredAs). */
export interface RegisteredAs {
  /** The idempotency key it was stored under. */
  key: string;
  /** The fingerprint stored with it. */
  commandHash: string;
}

export interface BatchCommandDeps {
  store: EventStore;
  personalData: PersonalData;
  sla?: SlaPolicy;
  clock?: () => Date;
  /**
   * Current states kept between batches (a purchases file revisits its customers), in compact form
   * (commands/compact-state.ts), so the bound is a count of streams whatever their length. Default 50 000.
   */
  cachedStreams?: number;
  /** Re-decisions after conflicts before a batch gives up. Default 50. */
  maxAttempts?: number;
  /**
   * Where registrations and email changes hold their addresses, as the API's do: without it a batch
   * checks no address against other customers (tests of other concerns).
   */
  emailIndex?: EmailIndex;
  /**
   * The installation's secret that imported customers' ids are derived under (EmailIndex.customerIdKey):
   * the same address gets the same id on every import into this installation, and a guessed address
   * cannot be tested against ids without it.
   */
  customerIdKey: Uint8Array;
  /** The installation's key for idempotency fingerprints, as the one-at-a-time handler's (CrmCommandDeps.fingerprintKey). */
  fingerprintKey?: Uint8Array;
}

/**
 * Commands a batch refuses: they touch two streams or delete keys, or (users) hold an address in the
 * users' email index and read the teams they join, which only the one-at-a-time handler does. No
 * import kind makes users, nor changes activities.
 */
const NOT_IN_BATCH = new Set(['MergeCustomer', 'ForgetCustomer', 'ChangeActivity', 'RegisterUser', 'ChangeUser']);

/** What is kept of a stream between batches: its state (with compact dictionaries) and its keyed event ids. */
type Held = SavedState;

/** An address a row of the batch holds (by row), settled once the batch is stored. */
interface HeldAddress {
  email: string;
  customerId: string;
  /** Claimed by this batch (it was free): freed again if the row is not stored. */
  fresh: boolean;
  /** An email change: the customer's previous address is freed once it is stored. */
  change: boolean;
}

interface Working {
  kind: AggregateKind;
  base: Held;
  state: unknown;
  events: NewEvent[];
  /** Ids decided in this batch (a file may repeat a row), with their command hashes. */
  newIds: Map<string, string | undefined>;
}

export function createBatchCommands(deps: BatchCommandDeps): BatchCommands {
  const { store, personalData } = deps;
  const clock = deps.clock ?? (() => new Date());
  const folders = aggregateFolders(deps.sla ?? defaultSlaPolicy);
  const decide = createDecide(deps.sla ?? defaultSlaPolicy);
  const maxCached = deps.cachedStreams ?? 50_000;
  const maxAttempts = deps.maxAttempts ?? 50;
  // Bounded, so memory stays flat over a file of any length.
  const cache = new LruMap<string, Held>(maxCached);
  const snapshots = store.snapshots ? createSnapshotCodec(store.snapshots, personalData) : undefined;

  const forget = (stream: string): void => {
    cache.delete(stream);
  };
  const remember = (stream: string, held: Held): void => cache.set(stream, held);

  /**
   * The batch's streams: cached ones, and the others read in one query (with the keys of their
   * customers in another). Held by the batch, so that the cache bound never drops one in use.
   */
  const load = async (wanted: Map<string, AggregateKind>): Promise<Map<string, Held>> => {
    const streams = new Map<string, Held>();
    const missing: string[] = [];
    for (const stream of wanted.keys()) {
      const cached = cache.get(stream);
      if (cached) streams.set(stream, cached);
      else missing.push(stream);
    }
    if (missing.length === 0) return streams;
    // Registrations too: a customers file run again over years of purchases read every customer whole.
    const saved = snapshots ? await snapshots.load(missing) : new Map<string, SavedState>();
    const read = await store.readStreams(missing, { after: new Map([...saved].map(([stream, s]) => [stream, s.revision])) });
    const subjects: string[] = [];
    for (const events of read.values())
      for (const e of events) {
        const subject = personalSubjectOf(e.type, e.data);
        if (subject) subjects.push(subject);
      }
    await personalData.loadKeys(subjects);
    const turns = ioTurns();
    const costly: PendingSnapshot[] = [];
    for (const stream of missing) {
      if (turns.due()) await turns.give();
      const kind = wanted.get(stream)!;
      const folder = folders[kind] as Folder<unknown>;
      const from = saved.get(stream);
      // Only what follows the saved state is folded on it, whatever the read returned.
      const recorded = (read.get(stream) ?? []).filter((r) => !from || r.revision > from.revision);
      let state = from ? from.state : folder.initialState();
      const ids = from ? from.ids : new CompactIds();
      for (const r of recorded) {
        const e = await readStoredEvent(r, personalData);
        // Forgotten by another process: drop our cached key so nothing more is encrypted or read with it.
        if (e.event.type === 'CustomerForgotten') personalData.evict(e.event.data.customerId);
        state = folder.evolve(state, e.event, e.metadata.occurredAt);
        ids.add(r.id, e.metadata.commandHash);
      }
      const held: Held = { state: compactState(kind, state), revision: recorded.at(-1)?.revision ?? from?.revision ?? -1, ids };
      // A long read is saved at once (it holds stored events only), whether or not the batch appends.
      const taken = snapshots && recorded.length >= SNAPSHOT_AFTER_EVENTS ? snapshots.take(stream, held) : undefined;
      if (taken) costly.push(taken);
      streams.set(stream, held);
      remember(stream, held);
    }
    // A cache: a state not saved is folded from the events next time.
    if (snapshots && costly.length > 0) await snapshots.save(costly).catch(() => undefined);
    return streams;
  };

  /**
   * Streams a batch only reads (a deal's or a response's customer, an activity's parent) as the store
   * holds them now: a cached one that another writer (the API) changed since is dropped, to be read
   * again. A stream the batch writes needs no such check: its append's expected revision is one.
   */
  const refresh = async (streams: readonly string[]): Promise<void> => {
    const cached = streams.flatMap((stream): [string, number][] => {
      const held = cache.get(stream);
      return held ? [[stream, held.revision]] : [];
    });
    if (cached.length === 0) return;
    const newer = await store.readStreams(
      cached.map(([stream]) => stream),
      { after: new Map(cached) },
    );
    for (const [stream, events] of newer) if (events.length > 0) forget(stream);
  };

  /** Streams this pass has not read yet, caught up with the store, added to its states. */
  const readMore = async (more: Map<string, AggregateKind>, streams: Map<string, Held>): Promise<void> => {
    await refresh([...more.keys()]);
    for (const [stream, held] of await load(more)) streams.set(stream, held);
  };

  /**
   * The streams a pass decides on: those its commands name, the ones only read caught up first, then
   * the customers of the deals that activities are logged on, and those customers' primaries after a
   * merge (commands/activity-parent.ts reads them): two more reads for the batch, not one a row.
   */
  const loadForDecision = async (prepared: readonly (PreparedCommand | undefined)[]): Promise<Map<string, Held>> => {
    const wanted = streamsWanted(prepared);
    const written = new Set(prepared.flatMap((p) => (p ? [p.stream] : [])));
    await refresh([...wanted.keys()].filter((stream) => !written.has(stream)));
    const streams = await load(wanted);
    const deals = prepared.flatMap((p) => (p?.type === 'LogActivity' && typeof p.command.dealId === 'string' ? [streamOf('deal', p.command.dealId)] : []));
    let customers = deals.flatMap((deal) => {
      const customerId = (streams.get(deal)?.state as { customerId?: string | null } | undefined)?.customerId;
      return customerId ? [streamOf('customer', customerId)] : [];
    });
    for (let round = 0; round < 2 && customers.length > 0; round++) {
      await readMore(new Map(customers.filter((stream) => !streams.has(stream)).map((stream) => [stream, 'customer'])), streams);
      customers = customers.flatMap((stream) => {
        const primary = (streams.get(stream)?.state as { mergedInto?: string | null } | undefined)?.mergedInto;
        return primary ? [streamOf('customer', primary)] : [];
      });
    }
    return streams;
  };

  /** A customer's snapshot as stored (or as this handler keeps it), for the holder of a claimed address. */
  const customerOf = async (customerId: string) => {
    const stream = streamOf('customer', customerId);
    return customerSnapshot((await load(new Map([[stream, 'customer']]))).get(stream)!.state as never);
  };

  /**
   * Registrations and email changes hold their addresses before they are decided, as the API's do
   * (commands/email-uniqueness.ts), in one round trip for the batch: a row whose address another
   * customer holds is refused with 409 `customer.email_taken` and left out of the pass.
   */
  const holdAddresses = async (
    streams: Map<string, Held>,
    prepared: (PreparedCommand | undefined)[],
    outcomes: BatchOutcome[],
    held: Map<number, HeldAddress>,
  ): Promise<void> => {
    const index = deps.emailIndex;
    if (!index) return;
    const rows: number[] = [];
    const asked: { email: string; customerId: string }[] = [];
    prepared.forEach((p, i) => {
      // Purchases and the like name no address: no snapshot of their customer is made for them.
      if (p?.kind !== 'customer' || addressOf(p.command) === undefined) return;
      const email = emailToClaim(p.command, customerSnapshot(streams.get(p.stream)!.state as never));
      if (email === undefined) return;
      rows.push(i);
      asked.push({ email, customerId: p.id });
    });
    const claims = await claimEmails(index, asked, customerOf, async (holders) => {
      await load(new Map(holders.map((h) => [streamOf('customer', h), 'customer'])));
    });
    for (const [n, i] of rows.entries()) {
      const claim = claims[n]!;
      if ('refused' in claim) {
        outcomes[i] = { ok: false, error: claim.refused };
        prepared[i] = undefined;
        continue;
      }
      const { email, customerId } = asked[n]!;
      held.set(i, { email, customerId, fresh: claim.fresh || held.get(i)?.fresh === true, change: prepared[i]!.type === 'ChangeCustomerDetails' });
    }
  };

  /**
   * Once a batch is stored: an address claimed by a row that was refused is freed, and an email change
   * frees the customer's previous address. A release that fails leaves a claim without a registration,
   * which the next registration of that address takes over after a minute.
   */
  const settleAddresses = async (held: Map<number, HeldAddress>, outcomes: BatchOutcome[]): Promise<void> => {
    const index = deps.emailIndex;
    if (!index) return;
    for (const [i, address] of held) {
      if (!outcomes[i]?.ok) {
        if (address.fresh) await index.release(address.email, address.customerId).catch(() => undefined);
      } else if (address.change) await index.releaseOthers(address.customerId, address.email).catch(() => undefined);
    }
  };

  /** The command hash (prefix) stored or decided in this batch under an event id of the stream. */
  const hashOf = (w: Working, id: string): string | undefined => {
    if (w.newIds.has(id)) return hashPrefix(w.newIds.get(id));
    return w.base.ids.hashOf(id);
  };

  /**
   * Whether the event a command stored first was recorded at the business time this command gives
   * (`untimedHashes`). Read only then (a re-import of an export), from the stream's start: it is the
   * first event of a creation, the usual case.
   */
  const storedAtSameTime = async (p: PreparedCommand, eventId: string): Promise<boolean> => {
    const first = await store.readStream(p.stream, { maxCount: 1 });
    const event = first[0]?.id === eventId ? first[0] : (await store.readStream(p.stream)).find((e) => e.id === eventId);
    const storedAt = event?.metadata.occurredAt;
    return typeof storedAt === 'string' && isSameInstant(storedAt, p.metadata.occurredAt);
  };

  /**
   * The command's fields that differ from what its stream holds now (an import's refusal names them):
   * compared with the folded state at hand, no read. None for a forgotten customer, whose data is
   * erased; nor the steps a row's own later commands take (a won deal's stage, a launched campaign's
   * status), which the state holds and the creating command does not.
   */
  const storedDifferences = (p: PreparedCommand, state: unknown): string[] => {
    const held = state as Record<string, unknown> & { forgotten?: boolean; orders?: Record<string, unknown>; refunds?: Record<string, unknown> };
    if (held.forgotten) return [];
    const record =
      p.type === 'RecordPurchase'
        ? held.orders?.[p.command.orderId as string]
        : p.type === 'RefundPurchase'
          ? held.refunds?.[p.command.refundId as string]
          : held;
    if (record === null || typeof record !== 'object') return [];
    return fieldsDiffering(p.command, record as Record<string, unknown>).filter((field) => !MOVED_BY_LATER_STEPS.has(field));
  };

  /** One pass: decide every command on the current states; returns the appends and the outcomes. */
  const decideAll = async (
    streams: Map<string, Held>,
    prepared: (PreparedCommand | undefined)[],
    firstEventIds: (string | undefined)[],
    outcomes: BatchOutcome[],
  ): Promise<Map<string, Working>> => {
    const working = new Map<string, Working>();
    const workOn = (kind: AggregateKind, stream: string): Working => {
      let w = working.get(stream);
      if (!w) {
        const base = streams.get(stream)!;
        // Not a copy (some folds update in place): a failed append evicts every stream it decided on.
        w = { kind, base, state: base.state, events: [], newIds: new Map() };
        working.set(stream, w);
      }
      return w;
    };
    // As the one-at-a-time handler reads them, on the states this pass decides on (loadForDecision read
    // an activity's parents); one it did not read (a longer merge chain, a merged duplicate) is read now.
    const stateOf = async (kind: AggregateKind, id: string): Promise<never> => {
      const stream = streamOf(kind, id);
      if (!streams.has(stream)) await readMore(new Map([[stream, kind]]), streams);
      return workOn(kind, stream).state as never;
    };
    // Rows naming a record stored under another key (commands/recorded.ts): each decided on a record of
    // its own, from the kind's initial state, and compared with the stored one once the pass is decided.
    const rows: { at: number; steps: number[]; stream: string; kind: AggregateKind; key: string; record: { state: unknown } }[] = [];
    const rowOn = new Map<string, (typeof rows)[number]>();
    const recordOf = (p: PreparedCommand, w: Working, at: number): { state: unknown } | undefined => {
      const key = p.metadata.idempotencyKey!;
      if (createsExisting(commandTargets[p.type].creates, w.state)) {
        const row = { at, steps: [at], stream: p.stream, kind: p.kind, key, record: { state: folders[p.kind].initialState() } };
        rows.push(row);
        rowOn.set(p.stream, row);
        return row.record;
      }
      // The row's later steps: keyed after its creation (rows.ts).
      const row = rowOn.get(p.stream);
      if (!row || !key.startsWith(`${row.key}:`)) return undefined;
      row.steps.push(at);
      return row.record;
    };
    // The batch before is being stored meanwhile: its reply is read between commands (shared/io-turns.ts).
    const turns = ioTurns();
    for (let i = 0; i < prepared.length; i++) {
      const p = prepared[i];
      if (!p) continue;
      if (turns.due()) await turns.give();
      try {
        const w = workOn(p.kind, p.stream);
        // A command seen before has stored its first event: its result is the events under its key
        // (commands/index.ts firstResult), unless the key was used for a different command.
        const firstHash = hashOf(w, firstEventIds[i]!);
        if (firstHash !== undefined) {
          const same =
            CompactIds.sameCommand(firstHash, p.metadata.commandHash) ||
            p.earlierHashes?.().some((h) => CompactIds.sameCommand(firstHash, h)) ||
            (p.untimedHashes?.().some((h) => CompactIds.sameCommand(firstHash, h)) && (await storedAtSameTime(p, firstEventIds[i]!)));
          if (!same) throw new IdempotencyConflict(firstEventIds[i]!, p.stream, storedDifferences(p, w.state));
          const eventIds = [firstEventIds[i]!];
          for (let n = 1; hashOf(w, eventIdFor(p.stream, p.metadata.idempotencyKey!, n)) !== undefined; n++)
            eventIds.push(eventIdFor(p.stream, p.metadata.idempotencyKey!, n));
          outcomes[i] = { ok: true, stream: p.stream, eventIds, alreadyDone: true };
          continue;
        }
        // A response the campaign records already for the customer (one through the API): present, as
        // the state keeps no more of it to compare (its revenue and time are the events').
        if (p.type === 'RecordCampaignResponse' && respondedAlready(w.state, p.command)) {
          outcomes[i] = { ok: true, stream: p.stream, eventIds: [], alreadyDone: true };
          continue;
        }
        const record = recordOf(p, w, i);
        const command = { ...p.command };
        if (needsCustomerSnapshot(p.type)) {
          const customer = workOn('customer', streamOf('customer', command.customerId as string));
          command.customer = customerSnapshot(customer.state as never);
        }
        if (needsFeedbackCustomer(p.type)) {
          const { customerId } = w.state as FeedbackState;
          if (customerId) command.customer = customerSnapshot(await stateOf('customer', customerId));
        }
        const named = namedUserOf(p.type, command);
        if (named) command[named.into] = userSnapshot(workOn('user', streamOf('user', named.userId)).state as never);
        if (p.type === 'RecordPurchase' || p.type === 'RefundPurchase')
          await resolveMergedOrder({ ...p, command }, w.state as never, (id) => stateOf('customer', id));
        if (p.kind === 'activity') {
          await resolveActivityParent(
            { ...p, command },
            { customer: (id) => stateOf('customer', id), deal: (id) => stateOf('deal', id), activity: (id) => stateOf('activity', id) },
          );
        }
        const decided = decide(p.kind, command, (record ?? w).state);
        for (const e of decided) {
          const subject = personalSubjectOf(e.type, e.data);
          if (subject !== undefined && e.type !== 'CustomerRegistered' && keyless.has(subject)) throw customerDataKeyMissing(subject);
        }
        const key = p.metadata.idempotencyKey!;
        const eventIds: string[] = [];
        const folder = folders[p.kind] as Folder<unknown>;
        const events: NewEvent[] = decided.map((event, index) => {
          const type = event.type as CrmEventType;
          // A safety net: nothing the catalogue would refuse on read is ever stored.
          const data = eventSchemas[type].parse(event.data);
          const id = index === 0 ? firstEventIds[i]! : eventIdFor(p.stream, key, index);
          eventIds.push(id);
          return { id, type, data, metadata: { ...p.metadata, schemaVersion: schemaVersionOf(type) } };
        });
        if (record) {
          // Compared below, never stored.
          for (const e of events) record.state = folder.evolve(record.state, { type: e.type, data: e.data } as CrmEvent, p.metadata.occurredAt);
          outcomes[i] = { ok: true, stream: p.stream, eventIds: [], alreadyDone: true };
          continue;
        }
        // Evolved only once every event passed its schema, so a refused command leaves the state as it was.
        for (const e of events) w.state = folder.evolve(w.state, { type: e.type, data: e.data } as CrmEvent, p.metadata.occurredAt);
        for (const e of events) w.newIds.set(e.id, p.metadata.commandHash);
        w.events.push(...events);
        // A command whose decider records nothing found its effect there already (a cost id recorded
        // through the API, a tag the customer has): the row is present, not imported now.
        outcomes[i] = { ok: true, stream: p.stream, eventIds, alreadyDone: events.length === 0 };
      } catch (error) {
        outcomes[i] = { ok: false, error: await namingChainEnd(error, (id) => stateOf('customer', id)) };
      }
    }
    // A row whose steps were all taken is present where its record is the stored one, else refused
    // naming the fields that differ (a step it was refused stays its reason).
    for (const row of rows) {
      if (row.steps.some((step) => !outcomes[step]?.ok)) continue;
      const differsIn = differencesFromRecord(row.kind, row.record.state, working.get(row.stream)!.state);
      if (differsIn.length > 0) outcomes[row.at] = { ok: false, error: new RecordedOtherwise(row.kind, prepared[row.at]!.id, differsIn) };
    }
    return working;
  };

  const prepare = (item: BatchItem): PreparedItem => {
    try {
      const key = item.ctx.idempotencyKey;
      if (!key) throw new TypeError('A batch command needs an idempotency key (its events ids derive from it)');
      const p = prepareCommand(item.command, item.ctx, clock(), deps.fingerprintKey);
      if (NOT_IN_BATCH.has(p.type)) throw invalidState('command.not_in_batch', `${p.type} cannot be run in a batch; send it on its own`, 'type');
      fillDerivedIds(p, item.ctx.actor.userId);
      return { prepared: p, firstEventId: eventIdFor(p.stream, key, 0) };
    } catch (error) {
      return { refused: error };
    }
  };

  /** The streams these commands read or write, with the kind of aggregate each holds. */
  const streamsWanted = (prepared: readonly (PreparedCommand | undefined)[]): Map<string, AggregateKind> => {
    const wanted = new Map<string, AggregateKind>();
    for (const p of prepared) {
      if (!p) continue;
      wanted.set(p.stream, p.kind);
      for (const [stream, kind] of readAlso(p)) wanted.set(stream, kind);
    }
    return wanted;
  };

  /** Failed attempts of a batch after which one that won nothing makes the next decide half as many commands. */
  const FAILURES_BEFORE_NARROWING = 3;

  /** The first `count` commands still pending, in file order; the others as done (undefined) for this attempt. */
  const firstPending = (pending: readonly (PreparedCommand | undefined)[], count: number): (PreparedCommand | undefined)[] => {
    let left = count;
    return pending.map((p) => (p && left-- > 0 ? p : undefined));
  };

  /** The batch's commands prepared, their first event ids and the streams they read or write. */
  const readyBatch = (items: (BatchItem | PreparedItem)[]) => {
    const outcomes = new Array<BatchOutcome>(items.length);
    const ready = items.map((item) => ('command' in item ? prepare(item) : item));
    const prepared = ready.map((item, i): PreparedCommand | undefined => {
      if ('prepared' in item) return item.prepared;
      outcomes[i] = { ok: false, error: item.refused };
      return undefined;
    });
    const firstEventIds = ready.map((item) => ('prepared' in item ? item.firstEventId : undefined));
    const wanted = streamsWanted(prepared);
    if (wanted.size > MAX_STREAMS_PER_APPEND) {
      throw new RangeError(`A batch addresses ${wanted.size} streams; the limit is ${MAX_STREAMS_PER_APPEND}`);
    }
    return { outcomes, prepared, firstEventIds, addresses: new Map<number, HeldAddress>() };
  };
  type ReadyBatch = ReturnType<typeof readyBatch>;

  /**
   * Customers found without a data key (never forgotten: the row was deleted or lost to a restore):
   * the batch is decided again and their rows refused (`decideAll`), as the API refuses such a command.
   * Kept while the batches run, cleared when one ends, so a key put back is seen.
   */
  const keyless = new Set<string>();
  const protectNoting = async (e: NewEvent): Promise<unknown> => {
    try {
      return await protectForCommand(personalData, e.type as CrmEventType, e.data);
    } catch (error) {
      const subject = personalSubjectOf(e.type, e.data);
      if (error instanceof DomainError && error.code === 'customer.data_key_missing' && subject) keyless.add(subject);
      throw error;
    }
  };

  /**
   * The streams a pass decided on that have events to append, with their keys loaded and personal data
   * encrypted; and those it only read (a deal's customer), at the revisions read: the append stands
   * only while they do (`dependsOn`), so a deals file opens no deal for a customer forgotten meanwhile.
   */
  const appendsOf = async (working: Map<string, Working>): Promise<{ appending: [string, Working][]; appends: StreamAppend[]; reads: StreamRead[] }> => {
    const appending = [...working.entries()].filter(([, w]) => w.events.length > 0);
    const reads = [...working.entries()].flatMap(([stream, w]): StreamRead[] =>
      w.events.length > 0 ? [] : [{ stream, revision: w.base.revision < 0 ? 'no_stream' : w.base.revision }],
    );
    // Keys are created for registrations only: another event of a customer without one is refused (protect).
    const subjectsOf = (registering: boolean) =>
      appending.flatMap(([, w]) =>
        w.events.filter((e) => (e.type === 'CustomerRegistered') === registering).flatMap((e) => personalSubjectOf(e.type, e.data) ?? []),
      );
    const registering = subjectsOf(true);
    const others = subjectsOf(false);
    if (registering.length > 0) await personalData.loadKeys(registering, { create: true });
    if (others.length > 0) await personalData.loadKeys(others);
    const appends: StreamAppend[] = [];
    for (const [stream, w] of appending) {
      const events: NewEvent[] = [];
      // Only events with personal fields are copied to be encrypted; the others go as decided.
      for (const e of w.events) events.push(personalFields[e.type as CrmEventType] ? { ...e, data: await protectNoting(e) } : e);
      appends.push({ stream, events, expectedRevision: w.base.revision < 0 ? 'no_stream' : w.base.revision });
    }
    return { appending, appends, reads: appending.length > 0 ? reads : [] };
  };

  /**
   * The store's append, after one fresh look at the customers whose personal data the events carry.
   * A batch is decided and encrypted while the one before it is stored, a second or more earlier: a
   * customer forgotten in that time (through the API, by this process or another) took the batch's
   * events after its `CustomerForgotten` (999 activities in one run). Refused as the API refuses a
   * forgotten customer, and the batch decided again, where the decider refuses those rows.
   */
  const appendUnlessForgotten = async (appends: StreamAppend[], reads: readonly StreamRead[]): Promise<AppendResult[]> => {
    const subjects = appends.flatMap((a) => a.events.flatMap((e) => personalSubjectOf(e.type, e.data) ?? []));
    const [forgotten] = subjects.length > 0 ? await personalData.refreshForgotten(subjects) : [];
    if (forgotten !== undefined) throw customerForgotten(forgotten);
    return store.appendToStreams(appends, reads.length > 0 ? { dependsOn: reads } : {});
  };

  /** What the stream holds once a pass's events are stored: kept for the next batches. */
  const rememberDecided = (stream: string, w: Working, revision: number): void => {
    const ids = w.base.ids;
    for (const [id, commandHash] of w.newIds) ids.add(id, commandHash);
    remember(stream, { state: w.state, revision, ids });
  };

  /**
   * The commands of streams whose append found every event stored already were done before this batch
   * (another run of the same file stored them between our read and our append): counted as present,
   * not imported (two runs at once each said they imported every row).
   */
  const markStoredBefore = (
    appends: readonly StreamAppend[],
    results: readonly AppendResult[],
    outcomes: BatchOutcome[],
    // The commands this append decided (a pass of a narrowed retry decides some; the others' outcomes stand).
    decidedNow: (index: number) => boolean = () => true,
  ): void => {
    const storedBefore = new Set(appends.filter((_, i) => results[i]?.duplicate).map((a) => a.stream));
    if (storedBefore.size === 0) return;
    outcomes.forEach((outcome, i) => {
      if (outcome?.ok && decidedNow(i) && storedBefore.has(outcome.stream)) outcomes[i] = { ...outcome, alreadyDone: true };
    });
  };

  /**
   * Decides on the stored states (read again where a pass before failed) and appends, again after a
   * conflict: a concurrent write is never lost and never surfaces as an error.
   */
  const decideAndAppend = async (batch: ReadyBatch): Promise<BatchOutcome[]> => {
    const { outcomes, firstEventIds } = batch;
    // The commands still to decide. Those of a stream a partial append below stored leave (their
    // outcome stands as decided then), so a retry reads and decides only the streams still in
    // conflict: re-reading every stream of the batch each time kept the window in which a busy
    // writer could win again as long as a whole batch, and an import could lose 50 times running.
    const pending = [...batch.prepared];
    // How many of them, in file order, an attempt decides: all at first, half as many after each attempt
    // in which every stream was in conflict, from the third failure on. A writer that keeps changing
    // every stream of the batch (an API client cycling through the same customers) still won every
    // attempt when all 20 streams were read and appended together (50 times running, seen in CI); a
    // shorter prefix is a shorter window, down to one command read, decided and appended at once. A
    // prefix decides as a smaller batch would.
    let share = Infinity;
    for (let failures = 0; ;) {
      const slice = firstPending(pending, share);
      const streams = await loadForDecision(slice);
      await holdAddresses(streams, slice, outcomes, batch.addresses);
      const working = await decideAll(streams, slice, firstEventIds, outcomes);
      let appends: StreamAppend[] = [];
      let reads: StreamRead[] = [];
      try {
        const decided = await appendsOf(working);
        const { appending } = decided;
        ({ appends, reads } = decided);
        if (appending.length > 0) {
          const results = await appendUnlessForgotten(appends, reads);
          markStoredBefore(appends, results, outcomes, (i) => slice[i] !== undefined);
          appending.forEach(([stream, w], i) => rememberDecided(stream, w, results[i]!.nextExpectedRevision));
        }
        slice.forEach((p, i) => {
          if (p) pending[i] = undefined;
        });
        if (pending.every((p) => p === undefined)) {
          keyless.clear();
          return outcomes;
        }
      } catch (error) {
        failures += 1;
        // Someone else wrote (or a crashed earlier run stored) some of these streams: read them again and decide again.
        const stale = error instanceof WrongExpectedRevision || error instanceof IdempotencyConflict;
        // The states of this batch were evolved in place: read every one of them again.
        for (const [stream] of working) forget(stream);
        // A DomainError here is a customer forgotten meanwhile: decided again, the decider refuses the row as the API would.
        if (!(stale || error instanceof DomainError) || failures >= maxAttempts) throw error;
        // Streams that others keep writing (API clients during an import) must not hold the rest of the
        // batch back: the streams that were not in conflict are appended now, the others decided again.
        let progress = false;
        // Not when a stream only read moved: the rows decided on it are not told apart from the others.
        if (error instanceof WrongExpectedRevisions && !error.conflicts.some((c) => reads.some((r) => r.stream === c.stream))) {
          const conflicted = new Set(error.conflicts.map((c) => c.stream));
          const rest = appends.filter((a) => !conflicted.has(a.stream));
          if (rest.length > 0 && rest.length < appends.length) {
            progress = await appendUnlessForgotten(rest, reads).then(
              (results) => {
                markStoredBefore(rest, results, outcomes, (i) => slice[i] !== undefined);
                return true;
              },
              () => false,
            );
            if (progress) {
              const done = new Set(rest.map((a) => a.stream));
              slice.forEach((p, i) => {
                if (p && done.has(p.stream)) pending[i] = undefined;
              });
            }
          }
        }
        // A conflict or two is an ordinary race, decided again whole; a third means a writer that keeps winning.
        if (!progress && failures >= FAILURES_BEFORE_NARROWING) share = Math.max(1, Math.ceil(slice.filter(Boolean).length / 2));
        await new Promise((resolve) => setTimeout(resolve, Math.min(200, 2 ** failures)));
      }
    }
  };

  /*
   * Pipelining. A batch is decided on the states the batch before it decided, while that one is still
   * being stored, and appended after it. Deciding runs one batch at a time (`exclusive`), and so does
   * every pass that decides again. When an append fails, every batch submitted and not yet stored is
   * marked `doomed`: it was (or is being) decided on states that may never be stored, so it forgets
   * what it touched and is decided again on the stored states after the batches before it. Batches
   * submitted while one is doomed are doomed too, so no state decided but unstored is ever read by a
   * pass that decides again.
   */
  interface InFlight {
    doomed: boolean;
    /** A store fault of a batch before this one: this one is not stored either (as if the process had stopped there). */
    fault?: { error: unknown };
  }
  const inFlight = new Set<InFlight>();
  let tail: Promise<void> = Promise.resolve();
  let lock: Promise<void> = Promise.resolve();
  const exclusive = <T>(run: () => Promise<T>): Promise<T> => {
    const result = lock.then(run);
    lock = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  };
  const doomAll = (fault?: { error: unknown }): void => {
    for (const batch of inFlight) {
      batch.doomed = true;
      if (fault) batch.fault ??= fault;
    }
    cache.clear();
  };

  const submitBatch = async (items: (BatchItem | PreparedItem)[]): Promise<SubmittedBatch> => {
    const batch = readyBatch(items);
    const mine: InFlight = { doomed: [...inFlight].some((b) => b.doomed) };
    inFlight.add(mine);
    const previous = tail;
    let done!: () => void;
    tail = new Promise<void>((resolve) => (done = resolve));
    const finish = (): void => {
      inFlight.delete(mine);
      done();
    };
    let first: Awaited<ReturnType<typeof appendsOf>> | undefined;
    if (!mine.doomed) {
      try {
        first = await exclusive(async () => {
          const streams = await loadForDecision(batch.prepared);
          await holdAddresses(streams, batch.prepared, batch.outcomes, batch.addresses);
          const working = await decideAll(streams, batch.prepared, batch.firstEventIds, batch.outcomes);
          let decided: Awaited<ReturnType<typeof appendsOf>> | undefined;
          try {
            decided = await appendsOf(working);
          } catch (error) {
            // A customer forgotten meanwhile: decided again, the decider refuses the row as the API would.
            if (!(error instanceof DomainError)) throw error;
          }
          if (decided && !mine.doomed) {
            // Kept as if stored: the next batch decides on them.
            for (const [stream, w] of decided.appending) rememberDecided(stream, w, w.base.revision + w.events.length);
            return decided;
          }
          // Evolved in place and not to be stored: read again by the pass that decides again.
          for (const [stream] of working) forget(stream);
          return undefined;
        });
      } catch (error) {
        doomAll({ error });
        // The next batch still waits for the ones before this one.
        void previous.then(finish);
        throw error;
      }
    }
    const outcomes = (async (): Promise<BatchOutcome[]> => {
      try {
        await previous;
        if (mine.fault) throw mine.fault.error;
        if (!first || mine.doomed) return await exclusive(() => decideAndAppend(batch));
        const { appending, appends, reads } = first;
        if (appends.length === 0) return batch.outcomes;
        let results: AppendResult[];
        try {
          results = await appendUnlessForgotten(appends, reads);
          markStoredBefore(appends, results, batch.outcomes);
        } catch (error) {
          const stale = error instanceof WrongExpectedRevision || error instanceof IdempotencyConflict;
          if (!(stale || error instanceof DomainError)) throw error;
          doomAll();
          return await exclusive(() => decideAndAppend(batch));
        }
        // A stream found stored already (a crashed run's batch) may stand at another revision than
        // decided: what was decided after it is decided again.
        if (appending.some(([, w], i) => results[i]!.nextExpectedRevision !== w.base.revision + w.events.length)) doomAll();
        return batch.outcomes;
      } catch (error) {
        doomAll({ error });
        throw error;
      } finally {
        finish();
      }
    })();
    const settled = outcomes.then(async (stored) => {
      await settleAddresses(batch.addresses, stored);
      return stored;
    });
    // Outcomes are awaited by the caller; a rejection must not go unhandled meanwhile.
    settled.catch(() => undefined);
    return { outcomes: settled };
  };

  const executeBatch = async (items: (BatchItem | PreparedItem)[]): Promise<BatchOutcome[]> => (await submitBatch(items)).outcomes;

  const customersByEmail = (emails: readonly string[]) => (deps.emailIndex ? deps.emailIndex.holders(emails) : Promise.resolve(new Map<string, string>()));

  /**
   * Read afresh: the user may have been registered or deactivated since a batch last read the stream
   * (the handler outlives an import in `crm serve`). Kept then for the rows that name the user.
   */
  const user = async (userId: string): Promise<UserSnapshot> => {
    const stream = streamOf('user', userId);
    forget(stream);
    return userSnapshot((await load(new Map([[stream, 'user']]))).get(stream)!.state as never);
  };
  const importedCustomerId = (email: string): string => customerIdUnder(deps.customerIdKey, email);
  const customersStored = async (customerIds: readonly string[]): Promise<Set<string>> => {
    if (customerIds.length === 0) return new Set();
    const found = await store.readStreams(customerIds.map((id) => streamOf('customer', id)));
    return new Set(customerIds.filter((id) => (found.get(streamOf('customer', id))?.length ?? 0) > 0));
  };
  const storedAlready = async (items: readonly PreparedItem[]): Promise<boolean[]> => {
    const streams = [...new Set(items.flatMap((item) => ('prepared' in item ? [item.prepared.stream] : [])))];
    if (streams.length === 0) return items.map(() => false);
    // Read past the cache: what is stored, not what this handler decided and may not have stored yet.
    // From the saved states on: a customer's stream may hold years of purchases.
    const saved = snapshots ? await snapshots.load(streams) : new Map<string, SavedState>();
    const found = await store.readStreams(streams, { after: new Map([...saved].map(([stream, state]) => [stream, state.revision])) });
    return items.map(
      (item) =>
        'prepared' in item &&
        (saved.get(item.prepared.stream)?.ids.hashOf(item.firstEventId) !== undefined ||
          (found.get(item.prepared.stream) ?? []).some((e) => e.id === item.firstEventId)),
    );
  };
  const registeredAs = async (items: readonly PreparedItem[]): Promise<(RegisteredAs | undefined)[]> => {
    const asked = items.map((item) => ('prepared' in item && item.prepared.type === 'RegisterCustomer' ? item.prepared : undefined));
    const streams = [...new Set(asked.flatMap((p) => (p ? [p.stream] : [])))];
    if (streams.length === 0) return items.map(() => undefined);
    // A registration's events: the customer's, and the owner it assigned. Not the purchases after them.
    const read = await store.readStreams(streams, { maxCount: 2 });
    // Stored by a row of the same kind of file (`import:customers:`), under another key: the others are
    // this row (found by its key) or another's, and are not decrypted.
    const candidates = asked.map((p) => {
      const [registered, next] = p ? (read.get(p.stream) ?? []) : [];
      const key = registered?.metadata.idempotencyKey;
      const own = p?.metadata.idempotencyKey ?? '';
      if (!p || registered?.type !== 'CustomerRegistered' || typeof key !== 'string' || key === own) return undefined;
      if (!key.startsWith(own.slice(0, own.lastIndexOf(':') + 1))) return undefined;
      return { p, registered, next, key };
    });
    await personalData.loadKeys(candidates.flatMap((c) => (c ? (personalSubjectOf(c.registered.type, c.registered.data) ?? []) : [])));
    const found: (RegisteredAs | undefined)[] = [];
    for (const candidate of candidates) {
      const commandHash = candidate?.registered.metadata.commandHash;
      if (!candidate || typeof commandHash !== 'string') {
        found.push(undefined);
        continue;
      }
      const { p, registered, next, key } = candidate;
      const event = await readStoredEvent(registered, personalData).catch((error: unknown) => {
        // A forgotten customer's, erased: not told the same (the row is refused as forgotten).
        if (error instanceof UnreadableEvent) return undefined;
        throw error;
      });
      const owner = next?.id === eventIdFor(p.stream, key, 1) && next.type === 'CustomerOwnerAssigned' ? (next.data as { ownerId: string }).ownerId : undefined;
      const same = event !== undefined && registersAsStored(p.command, { data: event.event.data, ownerId: owner, occurredAt: event.metadata.occurredAt });
      found.push(same ? { key, commandHash } : undefined);
    }
    return found;
  };
  return { prepare, submitBatch, executeBatch, importedCustomerId, customersByEmail, customersStored, storedAlready, registeredAs, user };
}
