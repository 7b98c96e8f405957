import { customerActivities, dealActivities, getActivity, listActivities } from './activities.ts';
import { getCampaign, listCampaigns } from './campaigns.ts';
import { customerTimeline, getCustomer, listCustomers } from './customers.ts';
import { getDeal, listDeals, pipeline } from './deals.ts';
import { exchangeRates } from './exchange-rates.ts';
import { likelyDuplicates } from './duplicates.ts';
import { getFeedback, listFeedback } from './feedback.ts';
import type { ReadModelSource } from './page.ts';
import type { ReadScope } from './scope.ts';

export * from './activities.ts';
export * from './campaigns.ts';
export * from './customers.ts';
export * from './deals.ts';
export * from './exchange-rates.ts';
export * from './duplicates.ts';
export * from './feedback.ts';
export { type Page, type ReadModelSource } from './page.ts';
export { type ReadScope } from './scope.ts';

/**
 * The query functions bound to one read schema: the shape `api/deps.ts` ReadModelQueries expects.
 * Bind to the live schema name: a rebuild swaps tables into it, so the binding stays valid.
 */
export function createReadModelQueries(source: ReadModelSource) {
  return {
    listCustomers: (query: Record<string, unknown> = {}, scope?: ReadScope | null) => listCustomers(source, query, scope),
    getCustomer: (id: string, scope?: ReadScope | null) => getCustomer(source, id, scope),
    customerTimeline: (id: string, query: Record<string, unknown> = {}, scope?: ReadScope | null) => customerTimeline(source, id, query, scope),
    likelyDuplicates: (query: { limit?: number } = {}, scope?: ReadScope | null) => likelyDuplicates(source, query, scope),
    listDeals: (query: Record<string, unknown> = {}, scope?: ReadScope | null) => listDeals(source, query, scope),
    getDeal: (id: string, scope?: ReadScope | null) => getDeal(source, id, scope),
    pipeline: (query: Record<string, unknown> = {}, scope?: ReadScope | null) => pipeline(source, query, scope),
    listCampaigns: (query: Record<string, unknown> = {}) => listCampaigns(source, query),
    getCampaign: (id: string) => getCampaign(source, id),
    listFeedback: (query: Record<string, unknown> = {}, scope?: ReadScope | null) => listFeedback(source, query, scope),
    getFeedback: (id: string, scope?: ReadScope | null) => getFeedback(source, id, scope),
    listActivities: (query: Record<string, unknown> = {}, scope?: ReadScope | null) => listActivities(source, query, scope),
    customerActivities: (id: string, query: Record<string, unknown> = {}, scope?: ReadScope | null) => customerActivities(source, id, query, scope),
    dealActivities: (id: string, query: Record<string, unknown> = {}, scope?: ReadScope | null) => dealActivities(source, id, query, scope),
    getActivity: (id: string, scope?: ReadScope | null) => getActivity(source, id, scope),
    exchangeRates: (query: { currency?: string; at?: string } = {}) => exchangeRates(source, query),
  };
}
