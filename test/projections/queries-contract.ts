import type { ReadModelQueries } from '../../api/deps.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';

/** Compile-time check (tsc): the query functions fit the API's ReadModelQueries port. */
export const asApiQueries = (source: Parameters<typeof createReadModelQueries>[0]): ReadModelQueries => createReadModelQueries(source);
