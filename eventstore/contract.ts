import type { Observable } from 'rxjs';

/**
 * The one contract every event-store engine honours (PostgreSQL, PGlite, EventStoreDB).
 *
 * Revisions are per stream and start at 0. A stream's "current revision" is the revision of its
 * last event; `'no_stream'` stands for a stream with no events (revision -1).
 * Global positions are bigints that increase in feed order; they are not contiguous.
 */

export type ExpectedRevision = number | 'no_stream' | 'exists' | 'any';

import type { EventMetadataRecord, RecordedEvent } from '../shared/events.ts';

/** Metadata is opaque to the store (shared/events.ts); its shape is defined in `domain/metadata.ts`. */
export type { EventMetadataRecord, RecordedEvent } from '../shared/events.ts';

export interface NewEvent {
  /** UUID; the idempotency key of the append. */
  id: string;
  type: string;
  data: unknown;
  metadata: EventMetadataRecord;
}

export interface AppendOptions {
  /** Defaults to `'any'`. */
  expectedRevision?: ExpectedRevision;
  /**
   * Other streams the decision read (a deal's customer), each at the revision it was read at: the
   * append is refused with `WrongExpectedRevision` naming the first one that moved since, and nothing
   * is stored, so a deal is never opened after its customer was forgotten in between. PostgreSQL and
   * PGlite check them in the append's transaction, under the same stream locks as a write to them;
   * EventStoreDB reads them just before appending (a narrower window, not none: eventstore/README.md).
   */
  dependsOn?: readonly StreamRead[];
}

export interface StreamsAppendOptions {
  /**
   * Streams the batch's decisions read without writing them (the customers of a deals file), as in
   * `AppendOptions.dependsOn`: one that moved is named in `WrongExpectedRevisions` beside the streams
   * written, and nothing is appended. None of them may be one of the streams written.
   */
  dependsOn?: readonly StreamRead[];
}

/** A stream as a decision read it: the revision of its last event then (`'no_stream'`: it had none). */
export interface StreamRead {
  stream: string;
  revision: number | 'no_stream';
}

export interface AppendResult {
  /** The stream's current revision after the append: the revision of its last event. */
  nextExpectedRevision: number;
  /** Global position of the last event appended. */
  position: bigint;
  /**
   * Every event was stored already (the same ids, by another run of the same commands): nothing was
   * appended now. Stores that cannot tell leave it out.
   */
  duplicate?: true;
}

/** One stream's part of a multi-stream append. */
export interface StreamAppend {
  stream: string;
  events: NewEvent[];
  /** Defaults to `'any'`. */
  expectedRevision?: ExpectedRevision;
}

/** Streams per `appendToStreams` call: each holds a lock until the batch commits. */
export const MAX_STREAMS_PER_APPEND = 1_000;

export interface ReadStreamOptions {
  /** Inclusive. Defaults to 0 forwards, to the last revision backwards. */
  fromRevision?: number;
  direction?: 'forwards' | 'backwards';
  maxCount?: number;
  /** Inclusive upper bound on revision (forwards reads). */
  untilRevision?: number;
  /**
   * Record time bound. Forwards: the stream up to its first event recorded after this instant (a
   * record time is its append's start, so a revision can be recorded before the one ahead of it;
   * a read never skips one). Backwards: only events whose record time is <= this instant.
   */
  untilTime?: Date;
}

export interface EventFilter {
  /** Match streams whose name starts with any of these prefixes (e.g. `customer-`). */
  streamPrefixes?: string[];
  /** Match any of these event types. */
  eventTypes?: string[];
}

export interface ReadAllOptions {
  /** Exclusive: events strictly after this position. Defaults to the start. */
  fromPosition?: bigint;
  maxCount?: number;
  filter?: EventFilter;
  /** Defaults to `'forwards'`. Backwards reads return events strictly before `fromPosition` (default: the head), newest first. */
  direction?: 'forwards' | 'backwards';
  /**
   * PostgreSQL engine: how long a short forwards page, or a backwards read, may wait for events
   * committed behind an older open transaction to become readable (default 3000 ms). Followers that
   * poll anyway (publishers) pass 0 and take what is final now.
   */
  settleMs?: number;
}

export interface SubscribeOptions {
  /** Exclusive, like `readAll`. */
  fromPosition?: bigint;
  filter?: EventFilter;
  /**
   * Back-pressure from the consumer: while it answers true the engine reads no further events (it
   * asks again shortly), so a consumer that falls behind a large backlog bounds the memory held.
   */
  shouldPause?: () => boolean;
}

export type SubscriptionMessage =
  | { kind: 'event'; event: RecordedEvent }
  /** Emitted once the subscriber has read everything committed when it started (and again after each later catch-up). */
  | { kind: 'caughtUp'; position: bigint };

export type EngineName = 'postgres' | 'pglite' | 'eventstoredb';

export interface EventStore {
  readonly engine: EngineName;
  appendToStream(stream: string, events: NewEvent[], options?: AppendOptions): Promise<AppendResult>;
  /**
   * Several streams at once, each with its own expected revision (bulk import); results in input
   * order. PostgreSQL and PGlite: one round trip, atomic: a wrong revision on any stream throws
   * `WrongExpectedRevisions` naming every conflicting stream, an id reused with other content throws
   * `IdempotencyConflict`, and either way nothing is appended. A stream whose events are all stored
   * already (same ids and content) counts as done, as a retried single append does. EventStoreDB
   * appends stream by stream: each stream is atomic, the batch is not (see eventstore/README.md).
   */
  appendToStreams(appends: StreamAppend[], options?: StreamsAppendOptions): Promise<AppendResult[]>;
  /** Events of one stream; an empty array when the stream does not exist. */
  readStream(stream: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  /**
   * Whole streams in one read (bulk decisions); a missing stream maps to an empty array. A stream
   * named in `after` is read from the revision after the one given (what a saved state leaves to read).
   */
  readStreams(streams: string[], options?: ReadStreamsOptions): Promise<Map<string, RecordedEvent[]>>;
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>;
  /** Catch-up then live subscription in global order. Unsubscribing releases every resource. */
  subscribeToAll(options?: SubscribeOptions): Observable<SubscriptionMessage>;
  /** Position of the last event visible to readers (0n when empty). */
  headPosition(): Promise<bigint>;
  /**
   * Position of the newest committed event, final or not (0n when empty): every position an append
   * answered is at or below it. Engines whose committed events are final at once leave it out
   * (`headPosition` is the same there).
   */
  committedHeadPosition?(): Promise<bigint>;
  /**
   * Events of the feed after `fromPosition` (exclusive, as `readAll`; default the start) up to and
   * including `untilPosition`: what a replay will read, the total of its progress; counted up to
   * `atMost` when given (a lag figure needs no more, and costs no more however far behind). Engines
   * that cannot count them cheaply (EventStoreDB) leave it out.
   */
  countEvents?(range: { fromPosition?: bigint; untilPosition: bigint; atMost?: number }): Promise<number>;
  /**
   * The ids of the events at these positions; a position holding no event is left out. Projections
   * check with it that their checkpoints name this store's events (a store restored from an older
   * backup beside newer read models). Engines that cannot read an event by its position cheaply
   * (EventStoreDB) leave it out: their checkpoints are checked against the head only.
   */
  eventIdsAt?(positions: readonly bigint[]): Promise<Map<bigint, string>>;
  /**
   * Committed events not final yet: on PostgreSQL, those above the oldest transaction still open on the
   * server (any session's, another application's too), which no feed reads until it ends (README).
   * Engines whose committed events are final at once leave it out.
   */
  heldBack?(): Promise<HeldBack>;
  close(): Promise<void>;
  /**
   * Saved states of streams kept beside the events, where the engine has a place for them
   * (PostgreSQL and PGlite); absent on EventStoreDB. A cache of folds: never read by audits or
   * projections, and every saved state can be folded again from the events.
   */
  readonly snapshots?: StreamSnapshots;
}

export interface ReadStreamsOptions {
  /** The last revision already known of some streams: only their events after it are read. */
  after?: ReadonlyMap<string, number>;
  /** At most this many events of each stream, the first ones (after `after`): a creation's events, not years of purchases. */
  maxCount?: number;
}

/** A saved state: opaque text (the command layer's form, commands/snapshots.ts) as of `revision`. */
export interface StreamSnapshot {
  stream: string;
  /** The revision of the last event folded into it. */
  revision: number;
  /** Which fold and encoding wrote it: a snapshot of another format is never read. */
  format: string;
  state: string;
}

export interface StreamSnapshots {
  /**
   * The saved states of these streams in `format`. A snapshot beyond its stream's last event (a store
   * restored from an older backup beside newer snapshots) is not returned.
   */
  load(streams: string[], format: string): Promise<Map<string, StreamSnapshot>>;
  /** Saves (or replaces) each stream's state; an older revision never replaces a newer one. */
  save(snapshots: StreamSnapshot[]): Promise<void>;
}

export const NO_STREAM_REVISION = -1;

/**
 * Size limits, measured as EventStoreDB measures an append (data + metadata bytes + 2 x type length
 * per event, see `storedEventSize`): its default cap is 1 MiB per append, so every engine accepts
 * exactly what that server accepts. Events are further capped at half of it.
 */
export const MAX_EVENT_BYTES = 512 * 1024;
export const MAX_APPEND_BYTES = 1024 * 1024;

/** `<aggregate>-<id>`: lower-case aggregate name, a dash, then an id without spaces. */
export const STREAM_NAME_PATTERN = /^[a-z][a-z0-9_]*-[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$/;

/** Committed events the feed cannot read yet, and how long the oldest of them has waited. */
export interface HeldBack {
  events: number;
  /**
   * Seconds since the oldest was recorded, taken on the clock that recorded it (the database's): this
   * host's clock may be set apart from it by any amount.
   */
  oldestWaitedSeconds: number;
}

/** How long the oldest held-back event has waited, in whole seconds (0 when none waits). */
export const heldBackSeconds = (held: HeldBack): number => (held.events > 0 ? Math.max(0, Math.round(held.oldestWaitedSeconds)) : 0);
