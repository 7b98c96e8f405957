import { hostname } from 'node:os';
import { sql, type QueryExecutorProvider } from 'kysely';
import { createBackoff } from '../eventstore/backoff.ts';
import { OutageLog, type Log } from '../shared/outage-log.ts';
import { isRunning } from '../shared/processes.ts';
import { ensureSchema, isMissingTable } from '../shared/sql.ts';

/**
 * Projection work split across workers (DESIGN, scale-out): each projection is a partition held by
 * one worker under a lease. A worker claims free or expired leases up to its fair share, renews them,
 * runs only those projections and releases them when it stops cleanly; a crashed worker's leases
 * expire and the others take them over.
 *
 * Correctness does not rest on clocks or timers: every batch transaction locks the lease row
 * (`FOR SHARE`) and checks owner, fencing token and expiry against the database clock before it
 * commits. A claim, renewal or release updates that row, so it waits for the batch to commit; and a
 * worker that lost its lease (paused process, network split) finds another token there and rolls back.
 */

export const LEASE_TABLE = 'projection_leases';
/** Heartbeats of running workers: how a worker that holds nothing yet counts in everyone's fair share. */
export const WORKER_TABLE = 'projection_workers';

export async function migrateLeases(db: QueryExecutorProvider, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, LEASE_TABLE)} (
    projection text PRIMARY KEY,
    owner_id text,
    fencing_token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz,
    renewed_at timestamptz
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, WORKER_TABLE)} (
    worker_id text PRIMARY KEY,
    seen_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    host text,
    pid integer,
    given_up text[] NOT NULL DEFAULT '{}'
  )`.execute(db);
  // Tables made before the columns existed. Checked first: ALTER TABLE would wait for running rounds.
  const { rows } = await sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
    WHERE table_schema = ${schema} AND table_name = ${WORKER_TABLE} AND column_name IN ('pid', 'given_up')`.execute(db);
  if (!rows.some((r) => r.column_name === 'pid')) {
    await sql`ALTER TABLE ${sql.id(schema, WORKER_TABLE)} ADD COLUMN IF NOT EXISTS host text, ADD COLUMN IF NOT EXISTS pid integer`.execute(db);
  }
  if (!rows.some((r) => r.column_name === 'given_up')) {
    await sql`ALTER TABLE ${sql.id(schema, WORKER_TABLE)} ADD COLUMN IF NOT EXISTS given_up text[] NOT NULL DEFAULT '{}'`.execute(db);
  }
}

/** The batch transaction found that this worker no longer holds the projection's lease: nothing was committed. */
export class LeaseLost extends Error {
  constructor(
    readonly projection: string,
    readonly workerId: string,
  ) {
    super(`Worker ${workerId} no longer holds the lease of projection ${projection}; the batch was rolled back`);
    this.name = 'LeaseLost';
  }
}

/** What the runner needs from the leases: which projections to run, and the fence inside each transaction. */
export interface LeaseGuard {
  /** This worker believes it holds the lease (a cheap in-memory answer; the fence is the real check). */
  owns(name: string): boolean;
  /** Inside a batch transaction: locks the lease rows and returns the names still held (others are dropped locally). */
  fence(trx: QueryExecutorProvider, names: readonly string[]): Promise<string[]>;
  /** `fence` for one projection: throws `LeaseLost` unless held. */
  assertHeld(trx: QueryExecutorProvider, name: string): Promise<void>;
  /** This process will not run the projection again (another version rebuilt its read model): its lease goes to another worker. */
  giveUp(name: string): void;
}

export interface LeaseChange {
  acquired: string[];
  lost: string[];
}

export interface ProjectionLeasesOptions {
  db: QueryExecutorProvider;
  schema: string;
  /**
   * Stable across restarts by default (host and database, runtime/crm.ts), so that a process restarted
   * after a crash takes its own leases back at once: the claim gives them a new fencing token, which
   * fences off anything the dead process might still try to commit.
   */
  workerId: string;
  /**
   * Taken instead of `workerId` when a live process on this host already runs under `workerId` (two
   * processes sharing an id would take the leases from each other on every round).
   */
  fallbackWorkerId?: string;
  /** Every projection this worker can run (the partitions). */
  projections: readonly string[];
  /** Lease length in seconds (a crashed worker's projections stand still at most this long). */
  leaseSeconds: number;
  /** How often leases are renewed and rebalanced; default a third of the lease. */
  renewEveryMs?: number;
  /** Called after a tick that acquired or lost leases (the runner resubscribes for acquired ones). */
  onChange?: (change: LeaseChange) => void;
  log?: Log;
}

export class ProjectionLeases implements LeaseGuard {
  /** Held leases: projection name -> fencing token received when it was claimed. */
  private readonly held = new Map<string, string>();
  /**
   * Projections this process runs no more (`giveUp`): released, never claimed again, and said in the
   * heartbeat, so that the others leave this worker out of their fair share and take them over.
   */
  private readonly givenUp = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly backoff = createBackoff();
  private id: string;
  /** Failed renewals: a line when they start failing and one when a round works again (the end was never logged). */
  private readonly renewals: OutageLog;

  constructor(private readonly options: ProjectionLeasesOptions) {
    if (!(options.leaseSeconds > 0)) throw new Error('leaseSeconds must be positive');
    this.id = options.workerId;
    this.renewals = new OutageLog(options.log, { failed: 'projection lease renewal failed', recovered: 'projection leases renewed again' });
  }

  get workerId(): string {
    return this.id;
  }

  /** Whether the heartbeat under our id comes from another live process on this host. */
  private async idTakenByLiveProcess(): Promise<boolean> {
    const { rows } = await sql<{ host: string | null; pid: number | null }>`SELECT host, pid FROM ${sql.id(this.options.schema, WORKER_TABLE)}
      WHERE worker_id = ${this.id} AND expires_at > clock_timestamp()`.execute(this.options.db);
    const row = rows[0];
    return !!row && row.host === hostname() && row.pid !== null && row.pid !== process.pid && isRunning(row.pid);
  }

  /** Projections held now, by name. */
  heldNames(): string[] {
    return [...this.held.keys()].sort();
  }

  owns(name: string): boolean {
    return this.held.has(name);
  }

  ownsAll(): boolean {
    return this.options.projections.every((n) => this.held.has(n));
  }

  /**
   * Another version of the CRM rebuilt the projection's read model, so this process's code writes
   * nothing more to it: its lease is released in a round run now, and never claimed again by this
   * process. Held on, the lease kept the projection from a worker of the version that rebuilt it,
   * which took only its fair share of the others: the read model froze.
   */
  giveUp(name: string): void {
    if (this.givenUp.has(name)) return;
    this.givenUp.add(name);
    if (this.timer) void this.tickSafely();
  }

  /** Creates the rows, claims a first share and starts renewing. */
  async start(): Promise<LeaseChange> {
    const { db, schema, projections } = this.options;
    await migrateLeases(db, schema);
    if (projections.length > 0) {
      await sql`INSERT INTO ${sql.id(schema, LEASE_TABLE)} (projection)
        SELECT unnest(${[...projections]}::text[]) ON CONFLICT (projection) DO NOTHING`.execute(db);
    }
    this.stopped = false;
    if (this.options.fallbackWorkerId && (await this.idTakenByLiveProcess())) {
      this.options.log?.('worker id in use by a live process on this host; using another', { workerId: this.id, instead: this.options.fallbackWorkerId });
      this.id = this.options.fallbackWorkerId;
    }
    const change = await this.tick();
    const every = this.options.renewEveryMs ?? Math.max(50, Math.floor((this.options.leaseSeconds * 1000) / 3));
    this.timer = setInterval(() => void this.tickSafely(), every);
    this.timer.unref?.();
    return change;
  }

  /**
   * One round: heartbeat, renew held leases, then move towards the fair share — release the excess
   * when more workers are alive, claim free or expired leases when below it.
   */
  tick(): Promise<LeaseChange> {
    const run = (async () => {
      await this.ticking?.catch(() => undefined);
      return this.round();
    })();
    // Observed here: a failed round must not surface as an unhandled rejection (it ends the process).
    this.ticking = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async tickSafely(): Promise<void> {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    try {
      await this.tick();
      this.backoff.reset();
      this.renewals.recovered({ workerId: this.workerId });
    } catch (error) {
      // Database unreachable: the leases may run out and the fence then stops our batches. Retry soon
      // (not a whole renewal period later), so that the projections move again once it answers.
      this.renewals.failed((error as Error).message, { workerId: this.workerId });
      if (this.stopped) return;
      this.retryTimer = setTimeout(() => void this.tickSafely(), this.backoff.next());
      this.retryTimer.unref?.();
    }
  }

  private async round(): Promise<LeaseChange> {
    const { db, schema, projections } = this.options;
    const workerId = this.id;
    const lease = `${this.options.leaseSeconds} seconds`;
    const change: LeaseChange = { acquired: [], lost: [] };
    if (this.stopped) return change;
    const givenUp = [...this.givenUp].sort();
    await sql`INSERT INTO ${sql.id(schema, WORKER_TABLE)} (worker_id, seen_at, expires_at, host, pid, given_up)
      VALUES (${workerId}, clock_timestamp(), clock_timestamp() + ${lease}::interval, ${hostname()}, ${process.pid}, ${givenUp}::text[])
      ON CONFLICT (worker_id) DO UPDATE SET seen_at = excluded.seen_at, expires_at = excluded.expires_at, host = excluded.host, pid = excluded.pid,
        given_up = excluded.given_up`.execute(db);
    // Heartbeats of workers gone for a while (default ids change with every process) would pile up.
    await sql`DELETE FROM ${sql.id(schema, WORKER_TABLE)} WHERE expires_at < clock_timestamp() - interval '1 hour'`.execute(db);

    // Given up: released now (a batch in flight commits first, or is fenced off), never renewed.
    const released = [...this.held.keys()].filter((n) => this.givenUp.has(n));
    if (released.length > 0) {
      change.lost.push(...released);
      await this.release(released);
    }

    // Renew: only a lease still ours (same token) and not yet expired; anything else is lost.
    const before = new Map(this.held);
    if (before.size > 0) {
      const { rows } = await sql<{ projection: string }>`UPDATE ${sql.id(schema, LEASE_TABLE)}
        SET expires_at = clock_timestamp() + ${lease}::interval, renewed_at = clock_timestamp()
        WHERE owner_id = ${workerId} AND expires_at > clock_timestamp()
          AND projection || ':' || fencing_token = ANY(${[...before].map(([n, t]) => `${n}:${t}`)}::text[])
        RETURNING projection`.execute(db);
      const renewed = new Set(rows.map((r) => r.projection));
      for (const name of before.keys()) {
        if (!renewed.has(name) && this.held.get(name) === before.get(name)) {
          this.held.delete(name);
          change.lost.push(name);
        }
      }
    }

    // A worker that gave projections up counts in no one's share but its own: the others take its
    // share between them, the projections it gave up included (they may run them; it may not).
    const { rows: live } = await sql<{ workers: string }>`SELECT count(*) AS workers FROM ${sql.id(schema, WORKER_TABLE)}
      WHERE (expires_at > clock_timestamp() AND cardinality(given_up) = 0) OR worker_id = ${workerId}`.execute(db);
    const share = Math.ceil(projections.length / Math.max(1, Number(live[0]?.workers ?? 1)));

    if (this.held.size > share) {
      // Hand the excess to workers that joined; the batch in flight for one of them commits first
      // (the release waits for its row lock) or is fenced off.
      const excess = [...this.held.keys()].sort().slice(share);
      change.lost.push(...excess);
      await this.release(excess);
    } else if (this.held.size < share) {
      // Free, expired, or left by an earlier process under this worker id (a restart): a new token
      // fences off whoever held it before. SKIP LOCKED: rows in a batch elsewhere are tried next round.
      const { rows } = await sql<{ projection: string; fencing_token: string }>`UPDATE ${sql.id(schema, LEASE_TABLE)} l
        SET owner_id = ${workerId}, fencing_token = l.fencing_token + 1,
            expires_at = clock_timestamp() + ${lease}::interval, renewed_at = clock_timestamp()
        WHERE l.projection IN (
          SELECT projection FROM ${sql.id(schema, LEASE_TABLE)}
          WHERE projection = ANY(${[...projections]}::text[]) AND NOT (projection = ANY(${[...this.held.keys(), ...givenUp]}::text[]))
            AND (owner_id IS NULL OR expires_at IS NULL OR expires_at <= clock_timestamp() OR owner_id = ${workerId})
          ORDER BY md5(projection || ${workerId})
          LIMIT ${share - this.held.size}
          FOR UPDATE SKIP LOCKED)
        RETURNING l.projection, l.fencing_token::text AS fencing_token`.execute(db);
      for (const r of rows) {
        this.held.set(r.projection, r.fencing_token);
        change.acquired.push(r.projection);
      }
    }
    if (change.acquired.length > 0 || change.lost.length > 0) {
      this.options.log?.('projection leases changed', { workerId, ...change, held: this.heldNames(), ...(givenUp.length > 0 ? { givenUp } : {}) });
      this.options.onChange?.(change);
    }
    return change;
  }

  /** Frees held leases at once for the other workers (forgotten here first: no batch of ours starts on them meanwhile). */
  private async release(names: readonly string[]): Promise<void> {
    const tokens = names.map((n) => `${n}:${this.held.get(n)}`);
    for (const n of names) this.held.delete(n);
    if (tokens.length === 0) return;
    await sql`UPDATE ${sql.id(this.options.schema, LEASE_TABLE)} SET owner_id = NULL, expires_at = NULL
      WHERE owner_id = ${this.id} AND projection || ':' || fencing_token = ANY(${tokens}::text[])`.execute(this.options.db);
  }

  async fence(trx: QueryExecutorProvider, names: readonly string[]): Promise<string[]> {
    const mine = names.filter((n) => this.held.has(n));
    if (mine.length === 0) return [];
    const tokens = mine.map((n) => `${n}:${this.held.get(n)}`);
    const { rows } = await sql<{ projection: string }>`SELECT projection FROM ${sql.id(this.options.schema, LEASE_TABLE)}
      WHERE projection || ':' || fencing_token = ANY(${tokens}::text[])
        AND owner_id = ${this.id} AND expires_at > clock_timestamp()
      FOR SHARE`.execute(trx);
    const still = new Set(rows.map((r) => r.projection));
    for (const [i, n] of mine.entries()) {
      if (!still.has(n) && this.held.get(n) === tokens[i]!.slice(n.length + 1)) this.held.delete(n);
    }
    return mine.filter((n) => still.has(n));
  }

  async assertHeld(trx: QueryExecutorProvider, name: string): Promise<void> {
    const held = await this.fence(trx, [name]);
    if (held.length === 0) throw new LeaseLost(name, this.id);
  }

  /**
   * Stops renewing. With `release` (a clean shutdown, after the runner stopped) the leases are freed
   * at once for the other workers; without it they run out after the lease length, as after a crash.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.timer = undefined;
    await this.ticking?.catch(() => undefined);
    if (options.release === false) return;
    await this.release([...this.held.keys()]);
    await sql`DELETE FROM ${sql.id(this.options.schema, WORKER_TABLE)} WHERE worker_id = ${this.id}`.execute(this.options.db);
  }
}

export interface LeaseHolder {
  owner: string | null;
  expiresAt: Date | null;
  fencingToken: bigint;
}

/** Who holds which projection, for /ready and status (empty when the table does not exist yet). */
export async function readLeaseHolders(db: QueryExecutorProvider, schema: string): Promise<Map<string, LeaseHolder>> {
  try {
    const { rows } = await sql<Record<string, any>>`SELECT projection, owner_id, fencing_token, expires_at,
        expires_at IS NOT NULL AND expires_at > clock_timestamp() AS fresh
      FROM ${sql.id(schema, LEASE_TABLE)}`.execute(db);
    return new Map(
      rows.map((r) => [
        r.projection as string,
        {
          // An expired lease is held by nobody, whatever the row still says.
          owner: r.fresh ? (r.owner_id as string) : null,
          expiresAt: r.fresh ? (r.expires_at instanceof Date ? r.expires_at : new Date(r.expires_at)) : null,
          fencingToken: BigInt(r.fencing_token),
        },
      ]),
    );
  } catch (error) {
    if (isMissingTable(error)) return new Map();
    throw error;
  }
}
