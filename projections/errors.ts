import { isConnectionFault } from '../eventstore/errors.ts';

/**
 * A read model that a wait needs is failed or stopped behind the position (read-your-writes): it will
 * not move until an operator acts, so the wait ends at once, naming it, instead of answering from the
 * others as if everything were there (a deal just created read as 404). The API answers 503.
 */
export class ReadModelStopped extends Error {
  constructor(
    readonly position: bigint,
    readonly stopped: { name: string; state: string; position: bigint }[],
  ) {
    super(
      `Read models stopped before position ${position}: ${stopped.map((s) => `${s.name} (${s.state} at ${s.position})`).join(', ')}; ` +
        (stopped.some((s) => s.state === 'superseded')
          ? 'superseded: another version of the CRM rebuilt them, and this process writes nothing more to them: stop it, or run that version here'
          : '`crm projections` shows why, and `crm projections retry <name>` starts one again once its cause is fixed'),
    );
    this.name = 'ReadModelStopped';
  }
}

/** The read models did not reach a position in time (read-your-writes); the API answers 503. */
export class ReadModelTimeout extends Error {
  constructor(
    readonly position: bigint,
    readonly timeoutMs: number,
    /** Projections still behind the position, with where they are. */
    readonly behind: { name: string; position: bigint }[],
  ) {
    super(
      `Read models did not reach position ${position} within ${timeoutMs} ms ` +
        `(behind: ${behind.map((b) => `${b.name} at ${b.position}`).join(', ') || 'none'})`,
    );
    this.name = 'ReadModelTimeout';
  }
}

/**
 * Read models built by a newer version of the CRM than this process runs (an older process started
 * beside newer ones, or a version rolled back): rebuilt at this older version, they would halt the
 * newer processes' projections on their first batch (a column they write is gone) and bring back what
 * the newer version fixed. This process follows no projection; upgrade it (or stop it).
 */
export class ReadModelsFromNewerVersion extends Error {
  constructor(readonly projections: { name: string; built: number; here: number }[]) {
    super(
      `The read models ${projections.map((p) => `${p.name} (version ${p.built})`).join(', ')} were built by a newer version of the CRM than this process ` +
        `(${projections.map((p) => `${p.name} ${p.here}`).join(', ')}): run the newer version here, or stop this process. To go back to this version on purpose, ` +
        `stop every newer process and run this version's \`crm rebuild\`.`,
    );
    this.name = 'ReadModelsFromNewerVersion';
  }
}

/**
 * A query needs what only the new version of a projection holds, and the old tables still serve while
 * it is rebuilt after an upgrade (invariant 6): the API answers 503, to be retried once the rebuild ends.
 */
export class ReadModelRebuilding extends Error {
  constructor(readonly projection: string) {
    super(
      `The ${projection} read model is from an earlier version and is being rebuilt (by a running \`crm serve\` or \`crm project\`, or by \`crm rebuild\`); retry once that has finished (\`crm projections\` shows its state)`,
    );
    this.name = 'ReadModelRebuilding';
  }
}

/**
 * A rebuild's shadow schema went while it ran: its session lock lapsed (a connection lost for seconds)
 * and another process dropped it as abandoned. The live read models are as they were.
 */
export class RebuildShadowLost extends Error {
  constructor(
    readonly shadow: string,
    options?: ErrorOptions,
  ) {
    super(
      `the rebuild's shadow schema ${shadow} was removed by another crm process while this one's connection was lost (its lock had lapsed); the live read models are as they were: run the rebuild again`,
      options,
    );
    this.name = 'RebuildShadowLost';
  }
}

/** A session holding a lock on a read model or reporting view (pg_locks, pg_stat_activity). */
export interface HoldingSession {
  pid: number;
  user: string | null;
  application: string | null;
  /** active, idle in transaction, ... */
  state: string | null;
  /** When its transaction (else its query) began. */
  since: Date | null;
  relations: string[];
}

const describeSession = (s: HoldingSession): string =>
  `pid ${s.pid} (user ${s.user ?? '?'}, application ${JSON.stringify(s.application ?? '')}, ${s.state ?? 'state unknown'}` +
  `${s.since ? ` since ${s.since.toISOString()}` : ''}, holding ${s.relations.join(', ')})`;

/**
 * Other sessions (a BI tool's long query or open transaction on the reporting views) held what a
 * start or a rebuild's swap has to replace, past the bounded time it kept trying; running it again
 * once they are done is safe.
 */
export class ReadModelsHeld extends Error {
  constructor(
    readonly what: string,
    /** What stands meanwhile, e.g. 'the live read models are as they were'. */
    readonly left: string,
    readonly waitedMs: number,
    readonly sessions: HoldingSession[],
    options?: ErrorOptions,
  ) {
    super(
      `could not ${what}: other PostgreSQL sessions held what it replaces for ${Math.round(waitedMs / 1000)} s` +
        (sessions.length > 0 ? `: ${sessions.map(describeSession).join('; ')}` : ' (they have ended since)') +
        `; ${left}. Let their queries or transactions end (a BI tool holding a transaction open: commit or roll it back, or close that connection), ` +
        `or end them with SELECT pg_terminate_backend(<pid>); then run it again.`,
      options,
    );
    this.name = 'ReadModelsHeld';
  }
}

/** An event a projection cannot apply: the projection stops, the others go on. */
export class PoisonEvent extends Error {
  constructor(
    readonly projection: string,
    readonly eventId: string,
    readonly position: bigint,
    override readonly cause: unknown,
  ) {
    super(`Projection ${projection} failed on event ${eventId} at position ${position}: ${describeError(cause)}`);
    this.name = 'PoisonEvent';
  }
}

/** Another transaction moved the checkpoint while a batch was being applied: roll back, re-read, retry. */
export class CheckpointMoved extends Error {
  constructor(readonly projection: string) {
    super(`The checkpoint of ${projection} moved during the batch`);
    this.name = 'CheckpointMoved';
  }
}

export const describeError = (error: unknown): string => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));

/**
 * Failures that say nothing about the event (connection lost, server restarting, deadlock,
 * serialization): retry the batch instead of marking the event as poison.
 */
export const isTransient = (error: unknown): boolean => isConnectionFault(error) || error instanceof CheckpointMoved;
