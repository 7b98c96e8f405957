/** Pure date arithmetic on ISO-8601 instants (business time travels as strings). */

const HOUR_MS = 3_600_000;

export const addHours = (iso: string, hours: number): string => new Date(Date.parse(iso) + hours * HOUR_MS).toISOString();

/** The earlier of two instants, as given. */
export const earlierOf = (a: string, b: string): string => (Date.parse(a) <= Date.parse(b) ? a : b);

export const isBefore = (a: string, b: string): boolean => Date.parse(a) < Date.parse(b);

/** The instant in UTC (`...Z`), as every recorded time is written: text kept as it is when it is no instant. */
export const inUtc = (iso: string): string => {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? iso : new Date(ms).toISOString();
};
