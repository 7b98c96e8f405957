import { WrongExpectedRevision } from '../eventstore/errors.ts';

/**
 * How commands on one stream meet each other.
 *
 * - Inside one process, commands on a stream run one after the other (a queue per stream), so they
 *   never race each other for a revision at all.
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
  /** Commands waiting or running now (for back-pressure and metrics). */
  pending(): number;
  /** Lost races re-decided since start (metrics, tests). */
  redecided(): number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves true when `promise` settles before `deadline` (epoch ms), false otherwise. */
const settlesBy = async (promise: Promise<unknown>, deadline: number): Promise<boolean> => {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
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
  let pending = 0;
  let redecided = 0;

  const busy = (reason: BusyReason, stream: string, message: string) => new CommandsBusy(reason, stream, retryAfter, message);

  return {
    pending: () => pending,
    redecided: () => redecided,
    async run(stream, claimedStream, attempt) {
      if (pending >= maxPending) {
        throw busy('queue_full', stream, `${pending} commands are already waiting in this process; retry shortly.`);
      }
      pending++;
      const deadline = Date.now() + windowMs;
      const waitFor = tails.get(stream);
      const previous = waitFor ?? Promise.resolve();
      let release!: () => void;
      const mine = new Promise<void>((resolve) => {
        release = resolve;
      });
      // The next command waits for this one and, through `previous`, for every earlier one, even
      // when this one gives up waiting before its turn.
      const tail = previous.then(() => mine);
      tails.set(stream, tail);
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
            if (Date.now() >= deadline) {
              throw busy('contention', stream, `${stream} kept changing under this command for ${windowMs} ms; retry shortly.`);
            }
            redecided++;
            // Another process won: a little jitter, growing, so two losers do not collide again.
            await sleep(Math.min(Math.random() * 2 * (round + 1), Math.max(0, deadline - Date.now())));
          }
        }
      } finally {
        pending--;
        release();
        // Forgotten only once every earlier command is done too: one that gave up waiting must not let
        // the next command start beside a command still running.
        void tail.then(() => {
          if (tails.get(stream) === tail) tails.delete(stream);
        });
      }
    },
  };
}
