import { getCampaign, listCampaigns } from './campaigns.ts';
import { customerTimeline, getCustomer, listCustomers } from './customers.ts';
import { getDeal, listDeals, pipeline } from './deals.ts';
import { exchangeRates } from './exchange-rates.ts';
import { likelyDuplicates } from './duplicates.ts';
import { getFeedback, listFeedback } from './feedback.ts';
import type { ReadModelSource } from './page.ts';

export * from './campaigns.ts';
export * from './customers.ts';
export * from './deals.ts';
export * from './exchange-rates.ts';
export * from './duplicates.ts';
export * from './feedback.ts';
export { type Page, type ReadModelSource } from './page.ts';

/**
 * The query functions bound to one read schema: the shape `api/deps.ts` ReadModelQueries expects.
 * Bind to the live schema name: a rebuild swaps tables into it, so the binding stays valid.
 */
export function createReadModelQueries(source: ReadModelSource) {
  return {
    listCustomers: (query: Record<string, unknown> = {}) => listCustomers(source, query),
    getCustomer: (id: string) => getCustomer(source, id),
    customerTimeline: (id: string, query: Record<string, unknown> = {}) => customerTimeline(source, id, query),
    likelyDuplicates: (query: { limit?: number } = {}) => likelyDuplicates(source, query),
    listDeals: (query: Record<string, unknown> = {}) => listDeals(source, query),
    getDeal: (id: string) => getDeal(source, id),
    pipeline: (query: Record<string, unknown> = {}) => pipeline(source, query),
    listCampaigns: (query: Record<string, unknown> = {}) => listCampaigns(source, query),
    getCampaign: (id: string) => getCampaign(source, id),
    listFeedback: (query: Record<string, unknown> = {}) => listFeedback(source, query),
    getFeedback: (id: string) => getFeedback(source, id),
    exchangeRates: (query: { currency?: string; at?: string } = {}) => exchangeRates(source, query),
  };
}
