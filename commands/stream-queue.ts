import { WrongExpectedRevision } from '../eventstore/errors.ts';

/**
 * How commands on one stream meet each other.
 *
 * - Inside one process, commands on a stream run one after the other (a queue per stream), so they
 *   never race each other for a revision at all.
 * - Commands that may share an append (`join`) and wait on the same stream form a group: one place in
 *   the queue, decided one after the other in memory and appended together (commands/index.ts), each
 *   with its own outcome. A hot stream then pays one round trip per group, not one per command.
 * - A command that claims no revision (no If-Match) and still loses a race (another process, or a
 *   merge touching a second stream) is decided again on the fresh state, until its time is spent.
 *   Its caller asked for the fact to be recorded, not for a particular revision: the conflict is not
 *   the caller's to resolve.
 * - A command that claims a revision gets the conflict back as is (409 at the API).
 * - Every wait is bounded by time: when a command's window passes (waiting in the queue or
 *   re-deciding), or when too many commands already wait in this process, it is refused as
 *   `CommandsBusy` (503 with Retry-After at the API), never as a conflict.
 */

export interface StreamQueueOptions {
  /** Longest a command may spend waiting for its turn and re-deciding after lost races, ms. */
  windowMs: number;
  /** Most commands waiting or running in this process at once; the next is refused at once. */
  maxPending: number;
}

export const DEFAULT_STREAM_QUEUE: StreamQueueOptions = { windowMs: 5_000, maxPending: 1_000 };

export type BusyReason = 'queue_full' | 'queue_wait' | 'contention';

/** The command was not attempted to the end because the process is saturated: retry after a moment. */
export class CommandsBusy extends Error {
  constructor(
    readonly reason: BusyReason,
    readonly stream: string,
    /** Whole seconds a client should wait before retrying. */
    readonly retryAfterSeconds: number,
    message: string,
  ) {
    super(message);
    this.name = 'CommandsBusy';
  }
}

export interface StreamQueue {
  /**
   * Runs `attempt` when the stream's earlier commands are done, and again after each conflict that is
   * not the caller's (a conflict on `claimedStream` with a claimed revision goes back as is).
   */
  run<T>(stream: string, claimedStream: string | undefined, attempt: () => Promise<T>): Promise<T>;
  /**
   * Joins the group forming on the stream (or starts one), and resolves with this command's own
   * outcome. The group runs `attempt` on its members when the stream's earlier commands are done;
   * after a lost race the members still within their time run it again on fresh state.
   */
  join<C, T>(stream: string, command: C, attempt: GroupAttempt<C, T>): Promise<T>;
  /** Commands waiting or running now (for back-pressure and metrics). */
  pending(): number;
  /** Lost races re-decided since start (metrics, tests). */
  redecided(): number;
}

/** What became of one member of a group: decided (its result or its own refusal), or left for the next round. */
export type MemberOutcome<T> = { value: T } | { error: unknown } | 'later';

/**
 * Decides and appends a group's members in order. `'lost'`: the shared append lost a race (another
 * process wrote), nothing was stored, every member is decided again. 'later': not tried this round
 * (the append was full), tried again at once. An exception is every member's answer.
 */
export type GroupAttempt<C, T> = (commands: C[]) => Promise<'lost' | MemberOutcome<T>[]>;

interface Member<C, T> {
  command: C;
  deadline: number;
  /** Gave up waiting before the group's turn. */
  gone: boolean;
  resolve(value: T): void;
  reject(error: unknown): void;
}

interface Group<C, T> {
  members: Member<C, T>[];
  started: boolean;
  attempt: GroupAttempt<C, T>;
  /** Settles when the group's turn comes. */
  turn: Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves true when `promise` settles before `deadline` (performance.now() ms), false otherwise. */
const settlesBy = async (promise: Promise<unknown>, deadline: number): Promise<boolean> => {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()));
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
};

export function createStreamQueue(options: Partial<StreamQueueOptions> = {}): StreamQueue {
  const { windowMs, maxPending } = { ...DEFAULT_STREAM_QUEUE, ...options };
  const retryAfter = Math.max(1, Math.ceil(windowMs / 1000));
  /** The last command queued on each stream: the next one starts when it settles. */
  const tails = new Map<string, Promise<void>>();
  /** The group on each stream whose turn has not come yet: commands that may share an append join it. */
  const forming = new Map<string, Group<unknown, unknown>>();
  let pending = 0;
  let redecided = 0;

  const busy = (reason: BusyReason, stream: string, message: string) => new CommandsBusy(reason, stream, retryAfter, message);

  /**
   * Takes the next place in the stream's queue: `mine` settles when this place is done. Returns what to
   * wait for first (nothing when the stream is idle) and a release that forgets the place once every
   * earlier one is done too: one that gave up waiting must not let the next start beside one still running.
   */
  const enqueue = (stream: string, mine: Promise<void>) => {
    const waitFor = tails.get(stream);
    // The next place waits for this one and, through `waitFor`, for every earlier one, even when this
    // one gives up waiting before its turn.
    const tail = (waitFor ?? Promise.resolve()).then(() => mine);
    tails.set(stream, tail);
    // A group forming before this place is closed: later commands queue after this one.
    forming.delete(stream);
    const forget = () =>
      void tail.then(() => {
        if (tails.get(stream) === tail) tails.delete(stream);
      });
    return { waitFor, forget };
  };

  const admit = (stream: string) => {
    if (pending >= maxPending) {
      throw busy('queue_full', stream, `${pending} commands are already waiting in this process; retry shortly.`);
    }
    pending++;
  };

  const jitter = (round: number, deadline: number) => sleep(Math.min(Math.random() * 2 * (round + 1), Math.max(0, deadline - performance.now())));

  /** Runs a group when its turn has come: rounds until every member has its outcome or its time is spent. */
  const runGroup = async <C, T>(stream: string, group: Group<C, T>): Promise<void> => {
    let live = group.members.filter((m) => !m.gone);
    for (let round = 0; live.length > 0;) {
      let outcomes: 'lost' | MemberOutcome<T>[];
      try {
        outcomes = await group.attempt(live.map((m) => m.command));
      } catch (error) {
        for (const member of live) member.reject(error);
        return;
      }
      if (outcomes !== 'lost') {
        outcomes.forEach((outcome, i) => {
          if (outcome === 'later') return;
          if ('value' in outcome) live[i]!.resolve(outcome.value);
          else live[i]!.reject(outcome.error);
        });
        live = live.filter((_, i) => outcomes[i] === 'later');
        continue;
      }
      const now = performance.now();
      for (const member of live.filter((m) => now >= m.deadline)) {
        member.reject(busy('contention', stream, `${stream} kept changing under this command for ${windowMs} ms; retry shortly.`));
      }
      live = live.filter((m) => now < m.deadline);
      if (live.length === 0) return;
      redecided += live.length;
      await jitter(round++, Math.min(...live.map((m) => m.deadline)));
    }
  };

  return {
    pending: () => pending,
    redecided: () => redecided,
    async run(stream, claimedStream, attempt) {
      admit(stream);
      const deadline = performance.now() + windowMs;
      let release!: () => void;
      const mine = new Promise<void>((resolve) => {
        release = resolve;
      });
      const { waitFor, forget } = enqueue(stream, mine);
      try {
        // Nothing queued before this one (the common case): no timer to arm.
        if (waitFor && !(await settlesBy(waitFor, deadline))) {
          throw busy('queue_wait', stream, `Commands on ${stream} did not get a turn within ${windowMs} ms; retry shortly.`);
        }
        for (let round = 0; ; round++) {
          try {
            return await attempt();
          } catch (error) {
            if (!(error instanceof WrongExpectedRevision) || error.stream === claimedStream) throw error;
            if (performance.now() >= deadline) {
              throw busy('contention', stream, `${stream} kept changing under this command for ${windowMs} ms; retry shortly.`);
            }
            redecided++;
            // Another process won: a little jitter, growing, so two losers do not collide again.
            await jitter(round, deadline);
          }
        }
      } finally {
        pending--;
        release();
        forget();
      }
    },
    async join<C, T>(stream: string, command: C, attempt: GroupAttempt<C, T>): Promise<T> {
      admit(stream);
      const deadline = performance.now() + windowMs;
      let group = forming.get(stream) as Group<C, T> | undefined;
      let waitFor: Promise<void> | undefined;
      if (!group) {
        let done!: () => void;
        const mine = new Promise<void>((resolve) => {
          done = resolve;
        });
        const queued = enqueue(stream, mine);
        waitFor = queued.waitFor;
        const turn = waitFor ?? Promise.resolve();
        const created: Group<C, T> = { members: [], started: false, attempt, turn };
        group = created;
        forming.set(stream, created as unknown as Group<unknown, unknown>);
        void turn
          .then(async () => {
            if (forming.get(stream) === created) forming.delete(stream);
            created.started = true;
            await runGroup(stream, created);
          })
          .finally(() => {
            done();
            queued.forget();
          });
      } else {
        waitFor = group.turn;
      }
      const joined = group;
      let member!: Member<C, T>;
      const outcome = new Promise<T>((resolve, reject) => {
        member = { command, deadline, gone: false, resolve, reject };
      });
      joined.members.push(member);
      try {
        // Nothing queued before the group (the common case): no timer to arm.
        if (waitFor && !joined.started && !(await settlesBy(waitFor, deadline)) && !joined.started) {
          member.gone = true;
          outcome.catch(() => undefined);
          throw busy('queue_wait', stream, `Commands on ${stream} did not get a turn within ${windowMs} ms; retry shortly.`);
        }
        return await outcome;
      } finally {
        pending--;
      }
    },
  };
}
