import type { Kysely } from 'kysely';
import { bufferTime, filter, type Subscription } from 'rxjs';
import type { EventStore, RecordedEvent, SubscriptionMessage } from '../eventstore/contract.ts';
import {
  applyBatch,
  applyTogether,
  decodeBatch,
  eventIdAt,
  matchesFilter,
  SharedBatchFenced,
  type ApplyOutcome,
  type BatchItem,
  type EventCodec,
  type SharedBatchResult,
} from './apply-batch.ts';
import { claimFeedEngine } from './feed-engine.ts';
import {
  checkpointsOffTheStore,
  clearFailure,
  builtOtherwise,
  awaitingRebuildBecause,
  awaitsRebuild,
  supersededBecause,
  supersedes,
  ensureCheckpoint,
  markAheadOfStore,
  migrateCheckpoints,
  offTheStoreBecause,
  readCheckpoints,
  skipAhead,
  type Checkpoint,
  type Lag,
} from './checkpoints.ts';
import { relaxDurability } from './durability.ts';
import { describeError, isTransient, ReadModelsFromNewerVersion, ReadModelStopped, ReadModelTimeout } from './errors.ts';
import { LeaseLost, type LeaseGuard } from './leases.ts';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import type { Projection } from './projection.ts';
import { readProjectionStatus, type ProjectionStatus } from './status.ts';
import { ANALYZE_MIN_CHANGED_ROWS, AnalyzeSchedule, analyzeTables } from './statistics.ts';
import { OutageLog, type Log } from '../shared/outage-log.ts';

export interface BatchOptions {
  /** Most events per batch (bufferTime's count). */
  maxEvents: number;
  /** Longest wait before a partial batch is applied (bufferTime's time span), in ms. */
  maxWaitMs: number;
  /** Most events applied at once when windows queued up behind a slow batch. */
  maxCoalescedEvents: number;
}

/**
 * `maxCoalescedEvents` only matters when the feed runs ahead of the projections (a catch-up after an
 * import or a restart): live, a batch is what arrived during the last one. 20,000 rather than 5,000:
 * a customer's row is then rewritten once per 20,000 events instead of once per 5,000 (a purchase
 * changes indexed columns, so each rewrite writes every index of `customers` and the analytics rows),
 * and each projection commits a quarter as many transactions. Measured on the import bench's
 * catch-up (93,229 events, 2 cores at load 5-6): 31-35 s against 50-57 s with 5,000 (10,000: 47 s at load 6.4-7.5;
 * 50,000: 28 s, for 2.5 times the memory held in batches). The feed pauses at twice this many waiting
 * events, so at most about 60,000 events are held at once. Those count as the projection backlog of an
 * API process running the projections inline (`backlog()`, CRM_MAX_PROJECTION_BACKLOG, default
 * 20,000), so `crm serve` caps this batch to stay under that bound (`readAheadUnder` in
 * runtime/crm.ts: 5,000 by default) and a catch-up alone does not refuse its commands.
 */
export const DEFAULT_BATCH: BatchOptions = { maxEvents: 500, maxWaitMs: 10, maxCoalescedEvents: 20_000 };

export interface ProjectionRunnerOptions {
  /** Where the read models live (pg pool or PGlite). */
  db: Kysely<unknown>;
  store: EventStore;
  /** Read-model schema (checkpoints live there too). */
  schema: string;
  projections: readonly Projection[];
  codec: EventCodec;
  batch?: Partial<BatchOptions>;
  /** Apply one batch to several projections concurrently (pg pool); PGlite has one connection. */
  concurrent?: boolean;
  /**
   * Called once at start for projections whose stored version differs from the code's: the default
   * composition passes `rebuildProjections` so the old model keeps serving while the new one builds.
   */
  onVersionChange?: (names: string[]) => Promise<void>;
  log?: Log;
  /**
   * Scale-out (projections/leases.ts): run only the projections whose lease this worker holds, and
   * check the lease inside each batch transaction so a worker that lost it cannot commit.
   * Without it the runner runs every projection (one process).
   */
  leases?: LeaseGuard;
  /**
   * How often the watchdog looks at the checkpoints (ms, default 1 000): it picks up a projection that
   * an operator retried or skipped from another process, and restarts the feed when a projection this
   * runner applies has not moved for `stallMs` (default 5 000) while events wait for it.
   */
  watchdogMs?: number;
  stallMs?: number;
  /**
   * When a projection's tables are analysed (projections/statistics.ts): first after `afterEvents`
   * applied events (default 10 000), then each time that count has grown fourfold, the tables where at least
   * `minChangedRows` rows changed (default 1 000) and half their size.
   */
  statistics?: { afterEvents?: number; minChangedRows?: number };
  /**
   * Apply each batch to all projections in one transaction (`applyTogether`): a fifth of the statements
   * of one transaction per projection (begin, checkpoint read, lease check, checkpoint write, commit
   * once instead of once each), which is what an API process running its projections inline spends
   * its CPU on. The price: a projection's checkpoint moves only when the slowest one of the batch is
   * done. A batch that fails together is applied again one projection at a time, so a poison event
   * still stops only its own projection. Live batches only (at most `maxEvents` events): a catch-up's
   * coalesced batches keep a transaction per projection, which run side by side with `concurrent`
   * (one shared transaction would put all their PostgreSQL work on one backend).
   */
  sharedBatches?: boolean;
}

interface DecodedBatch {
  /** The feed delivered everything after this position before this batch. */
  from: bigint;
  events: RecordedEvent[];
  items: BatchItem[];
  endPosition: bigint;
}

interface Waiter {
  position: bigint;
  names: readonly string[] | undefined;
  resolve: () => void;
}

/**
 * Follows the global feed from each projection's checkpoint and keeps every read model current.
 * One subscription serves all projections (events are decoded once); each projection applies each
 * batch and advances its checkpoint in its own transaction, so a poison event stops only that one.
 */
export class ProjectionRunner {
  private readonly batch: BatchOptions;
  private readonly positions = new Map<string, bigint>();
  private readonly failed = new Set<string>();
  /** Of `failed`: those whose read model another version of the CRM built (`supersede`). */
  private readonly superseded = new Set<string>();
  /**
   * `start` has rebuilt what another version built. Before, a read model built otherwise awaits this
   * process's own rebuild (a lease taken at start reloads the checkpoints first); after, another
   * version rebuilt it under this process (`supersede`).
   */
  private started = false;
  private readonly waiters = new Set<Waiter>();
  private subscription: Subscription | undefined;
  private pending: SubscriptionMessage[][] = [];
  private draining: Promise<void> | undefined;
  private inFlight: Promise<void> = Promise.resolve();
  private running = false;
  private resubscribeTimer: NodeJS.Timeout | undefined;
  /** End of the last batch taken from the current subscription (its start position before the first). */
  private feedFrom = 0n;
  /** Highest position seen in the feed: the head as far as this runner knows. */
  private knownHead = 0n;
  private lastError: string | null = null;
  /** Delays between attempts to follow the feed again after it failed (database unreachable). */
  private readonly backoff = createBackoff();
  private recovering = false;
  private watchdog: NodeJS.Timeout | undefined;
  private watching = false;
  /**
   * Per projection: the position last seen by the watchdog and since when it has not moved, in
   * performance.now() ms: on Date.now(), a wall clock set back an hour (NTP, a VM resumed) left a
   * stalled feed unrestarted for that hour.
   */
  private readonly stillSince = new Map<string, { position: bigint; since: number }>();
  /** Events of the batch being applied now (back-pressure reads the backlog). */
  private applying = 0;
  /** Statistics of a projection's tables after bulk applies (projections/statistics.ts). */
  private readonly analyzeSchedule: AnalyzeSchedule;
  private readonly analyzing = new Map<string, Promise<void>>();
  /** One line when the feed or the batches start failing, one when they work again (database outages). */
  private readonly feedOutage: OutageLog;
  private readonly batchOutage: OutageLog;
  /** The watchdog failing for a reason other than the database being away (which the feed reports). */
  private readonly watchdogOutage: OutageLog;

  constructor(private readonly options: ProjectionRunnerOptions) {
    this.batch = { ...DEFAULT_BATCH, ...options.batch };
    this.analyzeSchedule = new AnalyzeSchedule(options.statistics?.afterEvents);
    this.feedOutage = new OutageLog(options.log, { failed: 'projection feed failed; resubscribing', recovered: 'projection feed resubscribed' });
    this.batchOutage = new OutageLog(options.log, { failed: 'transient error applying a batch; retrying', recovered: 'batches applied again' });
    this.watchdogOutage = new OutageLog(options.log, {
      failed: 'projection watchdog check failed; stalled projections are not restarted until it works again',
      recovered: 'projection watchdog checks again',
    });
  }

  get projections(): readonly Projection[] {
    return this.options.projections;
  }

  /** Whether this runner applies the projection now (always, unless leases split the work). */
  private owned(p: Projection): boolean {
    return !this.options.leases || this.options.leases.owns(p.name);
  }

  /**
   * Whether a batch starting after `from` may be applied to the projection. A projection whose lease
   * was just taken over can be behind the feed: applying this batch would skip the events in between,
   * so it waits for the resubscription from its checkpoint (the lease change triggers it).
   */
  private follows(p: Projection, from: bigint): boolean {
    return this.owned(p) && (!this.options.leases || (this.positions.get(p.name) ?? 0n) >= from);
  }

  /** Migrates, rebuilds projections whose version changed, then follows the feed. */
  async start(): Promise<void> {
    const { db, schema, projections } = this.options;
    await migrateCheckpoints(db, schema);
    await claimFeedEngine(db, schema, this.options.store.engine);
    const before = await readCheckpoints(db, schema);
    const newer = projections.flatMap((p) => {
      const built = before.get(p.name)?.version ?? 0;
      return built > p.version ? [{ name: p.name, built, here: p.version }] : [];
    });
    if (newer.length > 0) throw new ReadModelsFromNewerVersion(newer);
    const changed = projections.filter((p) => builtOtherwise(before.get(p.name), p));
    for (const p of projections) {
      if (changed.includes(p)) continue;
      await p.migrate(db, schema);
      await ensureCheckpoint(db, schema, p);
    }
    if (changed.length > 0) {
      if (!this.options.onVersionChange) {
        throw new Error(`Projections ${changed.map((p) => p.name).join(', ')} changed version or variant: rebuild them (crm rebuild)`);
      }
      this.options.log?.('rebuilding projections whose version or variant changed', { names: changed.map((p) => p.name) });
      const started = performance.now();
      await this.options.onVersionChange(changed.map((p) => p.name));
      // Said when done too: an operator watching an upgrade saw it begin and nothing after.
      this.options.log?.('rebuilt projections whose version or variant changed', {
        names: changed.map((p) => p.name),
        seconds: (performance.now() - started) / 1000,
      });
    }
    this.started = true;
    await this.reloadCheckpoints();
    await this.failCheckpointsOffTheStore();
    this.running = true;
    this.subscribe();
    this.watchdog = setInterval(() => void this.watch(), this.options.watchdogMs ?? 1_000);
    this.watchdog.unref?.();
  }

  /**
   * A checkpoint that names an event the store does not hold (past its last event, at a position where
   * it has none, or where it has another event) stands in a history the store no longer has: events were
   * cut from its end, or the store was restored from an older backup while the read models were not.
   * Followed from there, the projection would skip every new event below its checkpoint (on PostgreSQL
   * positions come from transaction ids, which a restored cluster hands out again), or go on from a
   * read model holding records the store does not, and report nothing wrong. It fails instead, saying
   * what to do. Returns how many it failed.
   */
  private async failCheckpointsOffTheStore(): Promise<number> {
    const { db, schema, store, projections } = this.options;
    // Read here, not taken from the watchdog's read: a rebuild may have swapped a checkpoint in since.
    const read = await readCheckpoints(db, schema);
    // Not one stopped in the table meanwhile (the watchdog picks that up): its own failure stays as it is.
    const stopped = (name: string) => ['failed', 'stopped'].includes(read.get(name)?.state ?? 'running');
    const running = projections.filter((p) => !this.failed.has(p.name) && !stopped(p.name)).map((p) => p.name);
    const off = await checkpointsOffTheStore(db, schema, store, running, read);
    let failed = 0;
    for (const found of off) {
      if (!(await markAheadOfStore(db, schema, found, offTheStoreBecause(found)))) continue;
      failed += 1;
      this.failed.add(found.projection);
      this.options.log?.(
        found.kind === 'past'
          ? "projection checkpoint past the event store's last event; not following the feed"
          : 'projection checkpoint names an event the event store does not hold (restored beside newer read models); not following the feed',
        {
          projection: found.projection,
          position: found.position.toString(),
          head: found.head.toString(),
          kind: found.kind,
        },
        'error',
      );
    }
    return failed;
  }

  /** Stops following the feed after the batch in progress commits. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.resubscribeTimer);
    clearInterval(this.watchdog);
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.pending = [];
    await this.inFlight.catch(() => undefined);
    await Promise.all(this.analyzing.values());
  }

  /**
   * ANALYZE of the projection's tables after bulk applies, beside the batches that follow (it takes
   * no lock that writers or readers wait for); a failure only leaves the statistics as they were.
   */
  private refreshStatistics(p: Projection): void {
    if (this.analyzing.has(p.name)) return;
    const work = analyzeTables(this.options.db, this.options.schema, p.tables, {
      minChangedRows: this.options.statistics?.minChangedRows ?? ANALYZE_MIN_CHANGED_ROWS,
    })
      .catch((error: unknown) => this.options.log?.('statistics of a projection not refreshed', { projection: p.name, error: describeError(error) }))
      .finally(() => this.analyzing.delete(p.name));
    this.analyzing.set(p.name, work);
  }

  /** Re-reads checkpoints (after a rebuild swapped tables in, or a failed projection was cleared). */
  async reloadCheckpoints(): Promise<Map<string, Checkpoint>> {
    const checkpoints = await readCheckpoints(this.options.db, this.options.schema);
    for (const p of this.options.projections) {
      const cp = checkpoints.get(p.name);
      if (!cp) continue;
      this.positions.set(p.name, cp.position);
      if (cp.state === 'failed' || cp.state === 'stopped') this.failed.add(p.name);
      else if (supersedes(cp, p)) {
        // Not run until start() rebuilt it (or refused a newer read model); no operator has anything to do.
        if (this.started) this.supersede(p, cp);
        else this.failed.add(p.name);
      } else {
        this.failed.delete(p.name);
        this.superseded.delete(p.name);
      }
    }
    this.notifyWaiters();
    return checkpoints;
  }

  /** Starts a failed projection again from its checkpoint (the poison event is retried). */
  async resume(name: string): Promise<void> {
    await clearFailure(this.options.db, this.options.schema, name);
    await this.restartSubscription();
  }

  /** Resubscribes from the lowest checkpoint (a rebuilt or resumed projection may be behind the others). */
  async restartSubscription(): Promise<void> {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.pending = [];
    await this.inFlight.catch(() => undefined);
    try {
      await this.reloadCheckpoints();
    } catch (error) {
      // Database unreachable: keep trying from here, whoever asked for the restart.
      this.feedFailed(error);
      throw error;
    }
    if (this.running) this.subscribe();
  }

  /** Events the feed delivered that are not applied yet: cheap, for back-pressure on commands. */
  backlog(): number {
    return this.applying + this.pending.reduce((n, window) => n + window.length, 0);
  }

  /** In-memory positions of this runner's projections (committed ones only). */
  currentPositions(): Map<string, bigint> {
    return new Map(this.positions);
  }

  /** Lag and state of every projection, for /ready and /metrics. */
  async status(): Promise<ProjectionStatus[]> {
    const statuses = await readProjectionStatus(
      this.options.db,
      this.options.schema,
      this.options.store,
      this.options.projections.map((p) => p.name),
    );
    return statuses.map((status) => {
      const p = this.options.projections.find((q) => q.name === status.name);
      if (!p || !supersedes(status, p)) return status;
      // Listed as `rebuilding` (README, Upgrading): the old tables serve until this version's rebuild swaps in.
      if (!this.started && awaitsRebuild(status, p)) return { ...status, state: 'rebuilding', lastError: awaitingRebuildBecause(status, p) };
      return { ...status, state: 'superseded', lastError: supersededBecause(status, p) };
    });
  }

  /**
   * Another version of the CRM rebuilt the projection's read model and swapped it in while this
   * process ran on: this code writes nothing more to it (its batches would mix rows of two versions),
   * and reads that wait for it end at once. Said once; it is an operator's to end (stop this process).
   * With leases, this process gives the projection's lease up for good (`LeaseGuard.giveUp`).
   */
  private supersede(p: Projection, built: Pick<Checkpoint, 'version' | 'variant'>): void {
    this.failed.add(p.name);
    if (this.superseded.has(p.name)) return;
    this.superseded.add(p.name);
    // Its lease to a worker of the version that rebuilt it: held here, the read model stood still.
    this.options.leases?.giveUp(p.name);
    this.options.log?.(
      'projection stopped here: another version of the CRM rebuilt its read model',
      {
        projection: p.name,
        error: supersededBecause(built, p),
      },
      'error',
    );
  }

  /**
   * Read-your-writes: resolves once every running projection (or those named) has applied
   * everything up to `position`; rejects with `ReadModelTimeout` after `timeoutMs`. Failed and stopped
   * projections are not waited for (they will not move until fixed): `stoppedBefore` names them.
   */
  waitForPosition(position: bigint, timeoutMs = 5_000, names?: readonly string[]): Promise<void> {
    if (this.reached(position, names)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        position,
        names,
        resolve: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new ReadModelTimeout(position, timeoutMs, this.behind(position, names)));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  private considered(names: readonly string[] | undefined): string[] {
    return this.options.projections.map((p) => p.name).filter((n) => (!names || names.includes(n)) && !this.failed.has(n));
  }

  private behind(position: bigint, names: readonly string[] | undefined) {
    return this.considered(names)
      .map((name) => ({ name, position: this.positions.get(name) ?? 0n }))
      .filter((p) => p.position < position);
  }

  private reached(position: bigint, names: readonly string[] | undefined): boolean {
    return this.behind(position, names).length === 0;
  }

  /**
   * The failed or stopped projections (of those named) short of `position`, as an error; undefined
   * when none is. Read-your-writes asks it before and after its wait: an answer without them would
   * read as complete (a deal just created, 404).
   */
  stoppedBefore(position: bigint, names: readonly string[] | undefined): ReadModelStopped | undefined {
    const stopped = this.options.projections
      .filter((p) => (!names || names.includes(p.name)) && this.failed.has(p.name) && (this.positions.get(p.name) ?? 0n) < position)
      .map((p) => ({ name: p.name, state: this.superseded.has(p.name) ? 'superseded' : 'failed', position: this.positions.get(p.name) ?? 0n }));
    return stopped.length > 0 ? new ReadModelStopped(position, stopped) : undefined;
  }

  private notifyWaiters(): void {
    for (const w of this.waiters) if (this.reached(w.position, w.names)) w.resolve();
  }

  private lowestPosition(): bigint {
    const active = this.options.projections.filter((p) => !this.failed.has(p.name) && this.owned(p));
    if (active.length === 0) {
      // A worker holding no lease yet follows from the furthest checkpoint, not from the start of
      // history: when it gets a lease it resubscribes from that projection's checkpoint anyway.
      if (this.options.leases) return [...this.positions.values()].reduce((max, p) => (p > max ? p : max), this.knownHead);
      return this.knownHead;
    }
    return active.reduce(
      (min, p) => {
        const pos = this.positions.get(p.name) ?? 0n;
        return pos < min ? pos : min;
      },
      this.positions.get(active[0]!.name) ?? 0n,
    );
  }

  private pendingEvents(): number {
    return this.pending.reduce((count, window) => count + window.length, 0);
  }

  private feedShouldPause(): boolean {
    const waiting = this.pendingEvents();
    if (waiting >= 2 * this.batch.maxCoalescedEvents) return true;
    // Live (a small window waits): hold the feed until the batch ends. Catching up (a full window
    // waits), keep reading ahead so the next batch is large.
    return this.applying > 0 && waiting > 0 && waiting < this.batch.maxEvents;
  }

  private subscribe(): void {
    // Two restarts at once (a lease change and the watchdog) must leave one subscription, not two.
    this.subscription?.unsubscribe();
    const fromPosition = this.lowestPosition();
    this.feedFrom = fromPosition;
    this.pending = [];
    this.subscription = this.options.store
      // The feed pauses when two coalesced batches wait (bounded memory on a large catch-up), and, live,
      // while a batch is being applied with a small window already waiting: what arrives meanwhile is
      // then read in one page when the batch ends, instead of a page per append (two statements each).
      .subscribeToAll({ fromPosition, shouldPause: () => this.feedShouldPause() })
      .pipe(
        bufferTime(this.batch.maxWaitMs, null, this.batch.maxEvents),
        filter((messages) => messages.length > 0),
      )
      .subscribe({
        next: (messages) => {
          this.pending.push(messages);
          this.drain();
        },
        error: (error) => this.feedFailed(error),
      });
  }

  /**
   * Applies what the feed delivered. Windows that arrived while a batch was being applied are
   * coalesced into the next batch (up to `maxCoalescedEvents`), so batches grow with the load
   * instead of queueing one small window after another.
   */
  private drain(): void {
    // With nothing to apply the loop below would end before `this.draining` is set, leaving it set for good.
    if (this.draining || !this.running || this.pending.length === 0) return;
    const work = (async () => {
      try {
        while (this.running && this.pending.length > 0) {
          const messages: SubscriptionMessage[] = [];
          while (this.pending.length > 0 && messages.length < this.batch.maxCoalescedEvents) messages.push(...this.pending.shift()!);
          this.applying = messages.length;
          const decoded = await this.decodeMessages(messages);
          if (decoded) await this.applyDecoded(decoded);
          this.applying = 0;
        }
      } catch (error) {
        this.feedFailed(error);
      } finally {
        this.draining = undefined;
        this.applying = 0;
      }
      if (this.running && this.pending.length > 0) this.drain();
    })();
    this.draining = work;
    this.inFlight = work;
  }

  private feedFailed(error: unknown): void {
    // Feed lost (database restarting, store closed) or a batch that could not be applied:
    // resubscribe from the checkpoints, again and again (with backoff) until the database answers.
    this.lastError = describeError(error);
    // Stopped: the pool closing under a batch or a lease change is our own doing, no failure.
    if (this.running) this.feedOutage.failed(this.lastError);
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.pending = [];
    this.scheduleRecovery();
  }

  private scheduleRecovery(): void {
    if (!this.running) return;
    clearTimeout(this.resubscribeTimer);
    this.recovering = true;
    this.resubscribeTimer = setTimeout(() => {
      if (!this.running) return;
      // On failure restartSubscription has scheduled the next attempt already.
      this.restartSubscription().then(
        () => {
          this.recovering = false;
          this.backoff.reset();
          this.feedOutage.recovered();
        },
        () => undefined,
      );
    }, this.backoff.next());
    this.resubscribeTimer.unref?.();
  }

  /**
   * The watchdog: every projection this runner applies either moves or has nothing to do. Also
   * notices checkpoints changed by another process (`crm projections retry|skip`).
   */
  private async watch(): Promise<void> {
    if (!this.running || this.recovering || this.watching) return;
    this.watching = true;
    try {
      const [checkpoints, head] = await Promise.all([readCheckpoints(this.options.db, this.options.schema), this.options.store.headPosition()]);
      const now = performance.now();
      const stallMs = this.options.stallMs ?? 5_000;
      let restart: string | undefined;
      // The store lost events under a running server (restored from an older backup, its tail cut): each
      // checkpoint's event looked up (one index probe), or, where the engine cannot look events up, the
      // checkpoints against the head; what looks off is checked again from a fresh read and failed as at start.
      const { db, schema, store } = this.options;
      const running = this.options.projections.filter((p) => !this.failed.has(p.name)).map((p) => p.name);
      const suspect = store.eventIdsAt
        ? (await checkpointsOffTheStore(db, schema, store, running, checkpoints)).length > 0
        : running.some((name) => (checkpoints.get(name)?.position ?? 0n) > head);
      if (suspect && (await this.failCheckpointsOffTheStore()) > 0) restart = 'a checkpoint names an event the event store does not hold';
      for (const p of this.options.projections) {
        const cp = checkpoints.get(p.name);
        if (!cp) continue;
        const stopped = cp.state === 'failed' || cp.state === 'stopped' || supersedes(cp, p);
        if (stopped !== this.failed.has(p.name)) restart ??= `projection ${p.name} is ${cp.state} in the checkpoint table`;
        if (stopped || !this.owned(p) || cp.position >= head) {
          this.stillSince.delete(p.name);
          continue;
        }
        const seen = this.stillSince.get(p.name);
        // A batch being applied is progress, however long it takes (a large catch-up batch on a busy
        // machine can take longer than stallMs): restarting then only read its events again.
        if (!seen || seen.position !== cp.position || this.applying > 0) this.stillSince.set(p.name, { position: cp.position, since: now });
        else if (now - seen.since >= stallMs)
          restart ??= `projection ${p.name} has not moved from ${cp.position} for ${Math.round(now - seen.since)} ms while the head is ${head}`;
      }
      if (restart && this.running && !this.recovering) {
        this.options.log?.('projection watchdog restarts the feed', { reason: restart });
        this.stillSince.clear();
        await this.restartSubscription();
      }
      this.watchdogOutage.recovered();
    } catch (error) {
      // The database unreachable is the feed's to report and recover from; anything else is said, once.
      if (!isTransient(error)) this.watchdogOutage.failed(describeError(error));
    } finally {
      this.watching = false;
    }
  }

  private async decodeMessages(messages: SubscriptionMessage[]): Promise<DecodedBatch | undefined> {
    if (!this.running) return undefined;
    const events: RecordedEvent[] = [];
    let endPosition = 0n;
    for (const m of messages) {
      if (m.kind === 'event') {
        events.push(m.event);
        if (m.event.position > endPosition) endPosition = m.event.position;
      } else if (m.position > endPosition) endPosition = m.position;
    }
    if (endPosition > this.knownHead) this.knownHead = endPosition;
    const from = this.feedFrom;
    if (endPosition > from) this.feedFrom = endPosition;
    const active = this.options.projections.filter(
      (p) => !this.failed.has(p.name) && this.follows(p, from) && (this.positions.get(p.name) ?? 0n) < endPosition,
    );
    if (active.length === 0) return undefined;
    const items = await decodeBatch(this.options.codec, events, (e) =>
      active.some((p) => e.position > (this.positions.get(p.name) ?? 0n) && matchesFilter(p.filter, e)),
    );
    return { from, events, items, endPosition };
  }

  private async applyDecoded({ from, events, items, endPosition }: DecodedBatch): Promise<void> {
    if (!this.running) return;
    const active = this.options.projections.filter(
      (p) => !this.failed.has(p.name) && this.follows(p, from) && (this.positions.get(p.name) ?? 0n) < endPosition,
    );
    if (active.length === 0) return;
    const last = events[events.length - 1];
    const lag: Lag = {
      // Delivered by the feed but still waiting behind this batch.
      eventsBehind: this.pending.reduce((n, window) => n + window.length, 0),
      newestRecordedAt: last?.recordedAt ?? null,
    };
    const leases = this.options.leases;
    const appliedCount = (p: Projection) => {
      const before = this.positions.get(p.name) ?? 0n;
      return items.filter((i) => i.recorded.position > before && matchesFilter(p.filter, i.recorded)).length;
    };
    const applyOne = async (p: Projection) => {
      const applied = appliedCount(p);
      const outcome = await applyBatch(this.options.db, this.options.schema, p, items, endPosition, lag, {
        fence: leases ? (trx) => leases.assertHeld(trx, p.name) : undefined,
        shouldRetry: () => this.running && this.owned(p),
        onTransientError: (error) => {
          this.lastError = describeError(error);
          if (this.running) this.batchOutage.failed(this.lastError, { projection: p.name });
        },
      }).catch((error: unknown) => {
        // Another worker holds it now and carries on from the checkpoint: nothing of ours committed.
        if (!(error instanceof LeaseLost)) throw error;
        this.options.log?.('projection lease lost; batch rolled back', { projection: p.name });
        return undefined;
      });
      if (!outcome) return;
      this.batchOutage.recovered();
      this.recordOutcome(p, outcome, applied);
    };
    // Projections with nothing to apply in this batch only move their checkpoints: one statement.
    const wants = (p: Projection) => items.some((i) => i.recorded.position > (this.positions.get(p.name) ?? 0n) && matchesFilter(p.filter, i.recorded));
    const idle = active.filter((p) => !wants(p));
    const busy = active.filter(wants);
    const end = { position: endPosition, eventId: eventIdAt(items, endPosition) };
    const skip = async () => {
      if (idle.length === 0) return;
      let moved: readonly Projection[] = idle;
      if (leases) {
        // Fenced like a batch: the lease rows stay locked until the checkpoints moved.
        moved = await this.options.db.transaction().execute(async (trx) => {
          const held = new Set(
            await leases.fence(
              trx,
              idle.map((p) => p.name),
            ),
          );
          const kept = idle.filter((p) => held.has(p.name));
          await skipAhead(trx, this.options.schema, kept, end, lag);
          return kept;
        });
      } else {
        await this.options.db.transaction().execute(async (trx) => {
          await relaxDurability(trx);
          await skipAhead(trx, this.options.schema, idle, end, lag);
        });
      }
      for (const p of moved) this.positions.set(p.name, endPosition);
    };
    const shared = busy.length > 0 && this.options.sharedBatches && events.length <= this.batch.maxEvents;
    const separate = shared ? await this.applyShared(busy, idle, items, endPosition, lag, appliedCount) : busy;
    if (separate === undefined) {
      this.notifyWaiters();
      return;
    }
    if (this.options.concurrent) await Promise.all([skip(), ...separate.map(applyOne)]);
    else {
      await skip();
      for (const p of separate) await applyOne(p);
    }
    this.notifyWaiters();
  }

  /**
   * The batch in one transaction for all its projections (`applyTogether`). Returns undefined when that
   * committed, else the projections to apply one at a time (`applyBatch`), where each failure (poison
   * event, moved checkpoint, database fault) is handled for its own projection. A projection whose
   * lease was lost is dropped (its new holder carries on from the checkpoint) and the others go again
   * together: it is applied neither here nor one at a time.
   */
  private async applyShared(
    busy: readonly Projection[],
    idle: readonly Projection[],
    items: BatchItem[],
    endPosition: bigint,
    lag: Lag,
    appliedCount: (p: Projection) => number,
  ): Promise<Projection[] | undefined> {
    const leases = this.options.leases;
    const applied = new Map(busy.map((p) => [p.name, appliedCount(p)]));
    let together = [...busy];
    let idling = [...idle];
    const backoff = createBackoff({ initialMs: 100 });
    for (;;) {
      let result: SharedBatchResult;
      const progress: { current?: string } = {};
      try {
        result = await applyTogether(
          this.options.db,
          this.options.schema,
          together,
          idling,
          items,
          endPosition,
          lag,
          leases ? (trx, names) => leases.fence(trx, names) : undefined,
          progress,
        );
      } catch (error) {
        if (isTransient(error)) {
          // Retried together, as applyBatch retries one projection's batch.
          this.lastError = describeError(error);
          if (!this.running) throw error;
          this.batchOutage.failed(this.lastError, { projection: progress.current ?? together.map((p) => p.name).join(', ') });
          await pause(backoff.next());
          together = together.filter((p) => this.owned(p));
          idling = idling.filter((p) => this.owned(p));
          if (together.length === 0) return [];
          continue;
        }
        if (!(error instanceof SharedBatchFenced)) return together;
        this.options.log?.('projection lease lost; batch rolled back', { projection: error.projection });
        // The fence forgot the lost lease (owned() is false now); each pass drops at least that one.
        together = together.filter((p) => p.name !== error.projection && this.owned(p));
        idling = idling.filter((p) => this.owned(p));
        if (together.length === 0) return [];
        continue;
      }
      this.batchOutage.recovered();
      for (const name of result.movedIdle) this.positions.set(name, endPosition);
      for (const p of together) {
        const outcome = result.outcomes.get(p.name);
        if (outcome) this.recordOutcome(p, outcome, applied.get(p.name) ?? 0);
      }
      return undefined;
    }
  }

  private recordOutcome(p: Projection, outcome: ApplyOutcome, applied: number): void {
    this.positions.set(p.name, outcome.position);
    if (outcome.kind === 'applied' && this.analyzeSchedule.record(p.name, applied)) this.refreshStatistics(p);
    if (outcome.kind === 'poison') {
      this.failed.add(p.name);
      this.options.log?.(
        'projection stopped on a poison event',
        {
          projection: p.name,
          eventId: outcome.failure.eventId,
          position: outcome.failure.position.toString(),
          error: describeError(outcome.failure.cause),
          // What the operator does about it, with this projection and position filled in (README, "poison events").
          next: `after a fix, crm projections retry ${p.name}; or leave the event out: crm projections skip ${p.name} --position ${outcome.failure.position} --reason "..."`,
        },
        'error',
      );
    } else if (outcome.kind === 'skipped') {
      this.failed.add(p.name);
    } else if (outcome.kind === 'superseded') {
      this.supersede(p, outcome.built);
    }
  }
}
