/**
 * Delays between attempts to reach a service that failed: doubling from `initialMs` up to `maxMs`,
 * each drawn at random from its upper half, so that the loops of one process (and of several
 * processes) do not all retry in the same instant. Capped low on purpose: once the database is back,
 * every loop must notice within about a second.
 */
export interface Backoff {
  /** The delay before the next attempt (ms). */
  next(): number;
  /** After a success: the next failure starts from `initialMs` again. */
  reset(): void;
}

export const createBackoff = (options: { initialMs?: number; maxMs?: number } = {}): Backoff => {
  const initial = options.initialMs ?? 50;
  const max = options.maxMs ?? 1_000;
  let ceiling = initial;
  return {
    next() {
      const delay = ceiling / 2 + Math.random() * (ceiling / 2);
      ceiling = Math.min(max, ceiling * 2);
      return Math.round(delay);
    },
    reset() {
      ceiling = initial;
    },
  };
};

/** Waits `ms`; resolves early (without error) when `signal` aborts. */
export const pause = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
