import { sql, type Kysely } from 'kysely';
import { Observable, type Subscriber } from 'rxjs';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { EventStore, ReadAllOptions, RecordedEvent, SubscribeOptions, SubscriptionMessage } from '../../eventstore/contract.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import type { EventCodec } from '../../projections/apply-batch.ts';
import { readCheckpoints } from '../../projections/checkpoints.ts';
import { ProjectionLeases } from '../../projections/leases.ts';
import type { ProjectedEvent, Projection } from '../../projections/projection.ts';
import { ProjectionRunner, type ProjectionRunnerOptions } from '../../projections/runner.ts';
import { ensureSchema } from '../../shared/sql.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';

/**
 * The runner (projections/runner.ts) on a scripted feed: an event store double that keeps made-up
 * events in memory, delivers them page by page as a subscription does, asks the runner's
 * back-pressure before each page, and can be told to fail or to stall. The read models and
 * checkpoints are real tables: each projection writes every event it applies to a table keyed by
 * position, so an event applied twice fails loudly.
 */

export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** One subscription of the scripted feed. */
export interface Feed {
  from: bigint;
  shouldPause: (() => boolean) | undefined;
  closed: boolean;
  /** Delivers nothing more (a feed that hangs without failing). */
  stalled: boolean;
  /** Times the feed asked and was told to wait. */
  pauses: number;
  fail(error: Error): void;
}

const PAGE = 5;

export class ScriptedStore implements EventStore {
  readonly engine = 'postgres' as const;
  readonly events: RecordedEvent[] = [];
  readonly feeds: Feed[] = [];
  private readonly pumps = new Set<() => void>();

  /** `caughtUp`: whether subscriptions say so when they reach the head (back-pressure tests count only events). */
  constructor(private readonly options: { caughtUp?: boolean } = {}) {}

  get current(): Feed {
    return this.feeds.at(-1)!;
  }

  head(): bigint {
    return this.events.at(-1)?.position ?? 0n;
  }

  /** Appends `count` events (event i on `shape(i)`'s stream), recorded `ageMs` ago. */
  append(count: number, shape: (i: number) => { stream?: string; type?: string } = () => ({}), ageMs = 0): bigint {
    for (let k = 0; k < count; k += 1) {
      const i = this.events.length + 1;
      const { stream = `customer-c${i}`, type = 'CustomerTagged' } = shape(i);
      this.events.push({ id: `e${i}`, type, data: { n: i }, metadata: {}, stream, revision: 0, position: BigInt(i), recordedAt: new Date(Date.now() - ageMs) });
    }
    for (const pump of this.pumps) pump();
    return this.head();
  }

  subscribeToAll(options: SubscribeOptions = {}): Observable<SubscriptionMessage> {
    return new Observable<SubscriptionMessage>((subscriber: Subscriber<SubscriptionMessage>) => {
      let delivered = options.fromPosition ?? 0n;
      let scheduled = false;
      let caughtUpAt = -1n;
      const feed: Feed = {
        from: delivered,
        shouldPause: options.shouldPause,
        closed: false,
        stalled: false,
        pauses: 0,
        fail: (error) => subscriber.error(error),
      };
      this.feeds.push(feed);
      const page = () => {
        scheduled = false;
        if (feed.closed || feed.stalled) return;
        if (feed.shouldPause?.()) {
          feed.pauses += 1;
          return void setTimeout(pump, 2);
        }
        const events = this.events.filter((e) => e.position > delivered).slice(0, PAGE);
        for (const event of events) {
          delivered = event.position;
          subscriber.next({ kind: 'event', event });
        }
        if (events.length > 0) pump();
        else if (this.options.caughtUp !== false && caughtUpAt !== delivered) {
          caughtUpAt = delivered;
          subscriber.next({ kind: 'caughtUp', position: delivered });
        }
      };
      const pump = () => {
        if (scheduled || feed.closed) return;
        scheduled = true;
        setImmediate(page);
      };
      this.pumps.add(pump);
      pump();
      return () => {
        feed.closed = true;
        this.pumps.delete(pump);
      };
    });
  }

  async headPosition(): Promise<bigint> {
    return this.head();
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    const from = options.fromPosition ?? 0n;
    return this.events.filter((e) => e.position > from).slice(0, options.maxCount ?? Infinity);
  }

  appendToStream(): never {
    throw new Error('not scripted');
  }
  appendToStreams(): never {
    throw new Error('not scripted');
  }
  readStream(): never {
    throw new Error('not scripted');
  }
  readStreams(): never {
    throw new Error('not scripted');
  }
  async close(): Promise<void> {}
}

/** A recorded event as a projection gets it, without the codec's checks (made-up types and data). */
export const projectedOf = (r: RecordedEvent): ProjectedEvent =>
  ({
    event: { type: r.type, data: r.data },
    id: r.id,
    stream: r.stream,
    revision: r.revision,
    position: r.position,
    recordedAt: r.recordedAt,
    metadata: {},
  }) as unknown as ProjectedEvent;

export const scriptedCodec: EventCodec = {
  decode: async (r) => projectedOf(r),
  evict: () => undefined,
};

/** Registers the file's hooks (its own schemas; runners stopped and gates opened after each test) and returns the helpers. */
export function scriptedRunnerKit(label: string) {
  let schemas: TestSchemas;
  let database: SqlDatabase;
  let db: Kysely<any>;
  let next = 0;
  const stops: (() => Promise<unknown>)[] = [];
  /** Gates of the test: opened after it, so that a failed test does not leave a batch waiting forever. */
  const gates: (() => void)[] = [];

  beforeAll(() => {
    schemas = testSchemas(label);
    database = connectPostgres(schemas.url, { max: 6 });
    db = database.db;
  });
  afterEach(async () => {
    for (const open of gates.splice(0)) open();
    for (const stop of stops.splice(0)) await stop();
  });
  afterAll(async () => {
    await database?.close();
    await schemas?.dropSchemas();
  });

  const freshSchema = () => `${schemas.read}_${(next += 1)}`;

  /** A gate an apply waits at until the test opens it. */
  const gate = () => {
    let open!: () => void;
    let reached!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    const arrived = new Promise<void>((resolve) => (reached = resolve));
    gates.push(() => open());
    return { open, arrived, wait: () => (reached(), opened) };
  };

  interface Recording {
    projection: Projection;
    /** Sizes of the batches `apply` was given (rolled-back ones included). */
    calls: number[];
  }

  /**
   * A projection writing each event it applies to `<name>_applied`. `before` runs first in each batch
   * (to fail or to hold the batch).
   */
  const recording = (
    name: string,
    options: {
      filter?: Projection['filter'];
      version?: number;
      variant?: string;
      before?: (events: ProjectedEvent[]) => Promise<void> | void;
    } = {},
  ): Recording => {
    const calls: number[] = [];
    const table = `${name}_applied`;
    return {
      calls,
      projection: {
        name,
        version: options.version ?? 1,
        ...(options.variant !== undefined ? { variant: options.variant } : {}),
        tables: [table],
        ...(options.filter ? { filter: options.filter } : {}),
        migrate: async (m, s) => {
          await ensureSchema(m, s);
          await sql`CREATE TABLE IF NOT EXISTS ${sql.id(s, table)} (position bigint PRIMARY KEY, id text NOT NULL)`.execute(m);
        },
        apply: async ({ trx, schema }, events) => {
          calls.push(events.length);
          await options.before?.(events);
          for (const e of events) await sql`INSERT INTO ${sql.id(schema, table)} (position, id) VALUES (${e.position.toString()}, ${e.id})`.execute(trx);
        },
      },
    };
  };

  const appliedIds = async (schema: string, name: string): Promise<string[]> => {
    const { rows } = await sql<{ id: string }>`SELECT id FROM ${sql.id(schema, `${name}_applied`)} ORDER BY position`.execute(db);
    return rows.map((r) => r.id);
  };

  const idsOf = (from: number, to: number, keep: (i: number) => boolean = () => true) =>
    Array.from({ length: to - from + 1 }, (_, k) => from + k)
      .filter(keep)
      .map((i) => `e${i}`);

  const checkpoint = async (schema: string, name: string) => (await readCheckpoints(db, schema)).get(name)!;

  interface Started {
    runner: ProjectionRunner;
    store: ScriptedStore;
    schema: string;
    logs: { message: string; details?: Record<string, unknown> }[];
    logged(message: string): { message: string; details?: Record<string, unknown> }[];
  }

  const startRunner = async (
    projections: Projection[],
    options: Partial<ProjectionRunnerOptions> & { store?: ScriptedStore; start?: boolean } = {},
  ): Promise<Started> => {
    const schema = options.schema ?? freshSchema();
    const store = options.store ?? new ScriptedStore();
    const logs: Started['logs'] = [];
    const runner = new ProjectionRunner({
      db,
      store,
      schema,
      projections,
      codec: scriptedCodec,
      batch: { maxEvents: 10, maxWaitMs: 5 },
      watchdogMs: 3_600_000,
      log: (message, details) => logs.push({ message, ...(details ? { details } : {}) }),
      ...options,
    });
    stops.push(() => runner.stop());
    if (options.start !== false) await runner.start();
    return { runner, store, schema, logs, logged: (message) => logs.filter((l) => l.message === message) };
  };

  /** A recording projection whose first batch waits at `held` until the test opens it; later batches go straight on. */
  const heldOnFirstBatch = (name: string, held: { wait: () => Promise<void> }): Recording => {
    let first = true;
    return recording(name, {
      before: async () => {
        if (first) {
          first = false;
          await held.wait();
        }
      },
    });
  };

  /** A recording projection whose first `times` batches fail with a PostgreSQL error of this `code` (a transient one, for retries). */
  const failingFirst = (name: string, times: number, error: { message: string; code: string }): Recording => {
    let failures = times;
    return recording(name, {
      before: () => {
        if (failures > 0) {
          failures -= 1;
          throw Object.assign(new Error(error.message), { code: error.code });
        }
      },
    });
  };

  /**
   * Holds the lock ANALYZE takes (SHARE UPDATE EXCLUSIVE; inserts do not need it) on a projection's
   * table until `release`: a statistics refresh then waits for the pool's lock_timeout and fails.
   */
  const holdAnalyzeLock = async (schema: string, table: string): Promise<{ release: () => Promise<void> }> => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const holding = new Promise<void>((resolve) => (locked = resolve));
    const holder = db.transaction().execute(async (trx) => {
      await sql`LOCK TABLE ${sql.id(schema, table)} IN SHARE UPDATE EXCLUSIVE MODE`.execute(trx);
      locked();
      await released;
    });
    await holding;
    return { release: async () => (release(), await holder) };
  };

  /** This worker's leases on the projections, taken now and not renewed during a test; stopped after it. */
  const startLeases = async (schema: string, projections: string[]): Promise<ProjectionLeases> => {
    const leases = new ProjectionLeases({ db, schema, workerId: 'mine', projections, leaseSeconds: 30, renewEveryMs: 3_600_000 });
    stops.push(() => leases.stop());
    await leases.start();
    return leases;
  };

  return {
    db: () => db,
    freshSchema,
    gate,
    recording,
    heldOnFirstBatch,
    failingFirst,
    appliedIds,
    idsOf,
    checkpoint,
    startRunner,
    startLeases,
    holdAnalyzeLock,
    stops,
  };
}
