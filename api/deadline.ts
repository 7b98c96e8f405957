/** Probes (/ready, /metrics) answer within a second whatever the database does. */
export const PROBE_DEADLINE_MS = 750;

/** `work`, or a rejection naming `what` once `ms` pass first (the work itself runs on, its result dropped). */
export const withDeadline = <T>(work: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms (database stalled or overloaded)`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
};
