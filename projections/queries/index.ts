import { customerActivities, dealActivities, getActivity, listActivities, type ActivityListQuery } from './activities.ts';
import { getCampaign, listCampaigns } from './campaigns.ts';
import { customerTimeline, getCustomer, listCustomers, type CustomerListQuery } from './customers.ts';
import { getDeal, listDeals, pipeline, type DealListQuery } from './deals.ts';
import { exchangeRates, listExchangeRates, type ExchangeRateListQuery, type ExchangeRateQuery } from './exchange-rates.ts';
import { likelyDuplicates } from './duplicates.ts';
import { getFeedback, listFeedback, type FeedbackListQuery } from './feedback.ts';
import { listPurchases, listRefunds, type PurchaseListQuery } from './purchases.ts';
import type { ReadModelSource } from './page.ts';
import { accountsOf, customersInScope, type ReadScope } from './scope.ts';
import type { ClosedDealsQuery } from './closed-deals.ts';

export * from './activities.ts';
export * from './campaigns.ts';
export * from './customers.ts';
export * from './deals.ts';
export * from './exchange-rates.ts';
export * from './duplicates.ts';
export * from './feedback.ts';
export * from './purchases.ts';
export { type Page, type ReadModelSource } from './page.ts';
export { type ReadScope } from './scope.ts';

/** The filters of each list, as the route schemas validate them. */
export type CampaignListQuery = NonNullable<Parameters<typeof listCampaigns>[1]>;
export type TimelineQuery = NonNullable<Parameters<typeof customerTimeline>[2]>;

/**
 * The query functions bound to one read schema: the API's `ReadModelQueries` port (api/deps.ts).
 * Bind to the live schema name: a rebuild swaps tables into it, so the binding stays valid.
 */
export function createReadModelQueries(source: ReadModelSource) {
  return {
    listCustomers: (query: CustomerListQuery = {}, scope?: ReadScope | null) => listCustomers(source, query, scope),
    getCustomer: (id: string, scope?: ReadScope | null) => getCustomer(source, id, scope),
    customerTimeline: (id: string, query: TimelineQuery = {}, scope?: ReadScope | null) => customerTimeline(source, id, query, scope),
    likelyDuplicates: (query: { limit?: number } = {}, scope?: ReadScope | null) => likelyDuplicates(source, query, scope),
    listDeals: (query: DealListQuery = {}, scope?: ReadScope | null) => listDeals(source, query, scope),
    getDeal: (id: string, scope?: ReadScope | null) => getDeal(source, id, scope),
    pipeline: (query: ClosedDealsQuery = {}, scope?: ReadScope | null) => pipeline(source, query, scope),
    listCampaigns: (query: CampaignListQuery = {}) => listCampaigns(source, query),
    getCampaign: (id: string) => getCampaign(source, id),
    listFeedback: (query: FeedbackListQuery = {}, scope?: ReadScope | null) => listFeedback(source, query, scope),
    getFeedback: (id: string, scope?: ReadScope | null) => getFeedback(source, id, scope),
    listPurchases: (query: PurchaseListQuery = {}, scope?: ReadScope | null) => listPurchases(source, query, scope),
    listRefunds: (query: PurchaseListQuery = {}, scope?: ReadScope | null) => listRefunds(source, query, scope),
    listExchangeRates: (query: ExchangeRateListQuery = {}) => listExchangeRates(source, query),
    customersInScope: (ids: readonly string[], scope: ReadScope) => customersInScope(source, ids, scope),
    accountsOf: (ids: readonly string[]) => accountsOf(source, ids),
    listActivities: (query: ActivityListQuery = {}, scope?: ReadScope | null) => listActivities(source, query, scope),
    customerActivities: (id: string, query: ActivityListQuery = {}, scope?: ReadScope | null) => customerActivities(source, id, query, scope),
    dealActivities: (id: string, query: ActivityListQuery = {}, scope?: ReadScope | null) => dealActivities(source, id, query, scope),
    getActivity: (id: string, scope?: ReadScope | null) => getActivity(source, id, scope),
    exchangeRates: (query: ExchangeRateQuery = {}) => exchangeRates(source, query),
  };
}

/** What the API reads the read models through: each answer typed by its view. */
export type ReadModelQueries = ReturnType<typeof createReadModelQueries>;
