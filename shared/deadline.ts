/** `work`, or a rejection naming `what` once `ms` pass first (the work itself runs on, its result dropped). */
export const withDeadline = <T>(work: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms (database stalled or overloaded)`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
};

/**
 * Waits for `work` to settle (fulfilled or rejected), at most `ms`: true when it did, false when the
 * time ran out first (the work runs on). For closing steps, which go on to cut what did not end.
 */
export const settlesWithin = (work: Promise<unknown>, ms: number): Promise<boolean> =>
  withDeadline(
    work.then(
      () => true,
      () => true,
    ),
    ms,
    'closing',
  ).catch(() => false);
