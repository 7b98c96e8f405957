/**
 * The first of an error and its causes (five deep at most) that `matches`: drivers and the store wrap
 * what the database or the operating system said (`EventStoreUnavailable` around a SQLSTATE, an
 * import's failure around an EIO), and what to tell the operator is in the one wrapped.
 */
export const inCauses = (error: unknown, matches: (at: Error) => boolean): Error | undefined => {
  for (let at: unknown = error, depth = 0; at instanceof Error && depth < 5; at = at.cause, depth++) if (matches(at)) return at;
  return undefined;
};
