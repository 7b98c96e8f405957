/**
 * The read models as the API answers them: the query side's own view types (type-only imports, so
 * nothing of the server lands in the bundle), and the audit and analytics answers the screens use.
 */
import type { ActivityView } from '../../projections/queries/activities.ts';
import type { CampaignInBase, CampaignListInBase, CampaignView } from '../../projections/queries/campaigns.ts';
import type { CustomerRevenue, CustomerView, TimelineEntry } from '../../projections/queries/customers.ts';
import type { DealView } from '../../projections/queries/deals.ts';
import type { FeedbackView } from '../../projections/queries/feedback.ts';

/** `GET /customers/:id` adds the revenue in every currency and in the base currency. */
export type Customer = CustomerView & CustomerRevenue;
/** A customer as `GET /customers` lists it: the base-currency revenue, not the split per currency. */
export type ListedCustomer = Omit<Customer, 'revenueByCurrency'>;
export type Deal = DealView;
export type Activity = ActivityView;
export type Feedback = FeedbackView & { body?: string };
/** A campaign as `GET /campaigns` lists it: its money in the base currency too. */
export type ListedCampaign = CampaignView & CampaignListInBase;
/** `GET /campaigns/:id` adds the revenue in every currency. */
export type Campaign = CampaignView & CampaignInBase;
export type TimelineItem = TimelineEntry;
export interface CustomerAnalytics {
  modelVersion: number | null;
  /** The currency of every money figure (clv, rfm.monetary); null while the analytics are rebuilt. */
  baseCurrency: string | null;
  /** Amounts still without an exchange rate ('JPY 2026-03'), valued 0 in the figures until it is set. */
  missingRates?: string[];
  clv: number;
  expectedPurchases: number;
  pAlive: number;
  churnScore: number;
  segment: string;
  cluster: number | null;
  cohort: string;
  rfm: null | { frequency: number; recency: number; T: number; monetary: number; timeUnit: string; scores: { r: number; f: number; m: number } | null };
}
export interface AuditEvent {
  position: string;
  stream: string;
  revision: number;
  id: string;
  type: string;
  data: Record<string, unknown>;
  actor: string;
  roles: string[];
  correlationId: string;
  causationId: string | null;
  command: string | null;
  reason: string | null;
  occurredAt: string;
  recordedAt: string;
}

export const DEAL_STAGES = ['lead', 'qualified', 'proposal', 'negotiation'] as const;
export const CURRENCIES = ['EUR', 'USD', 'GBP', 'CHF', 'SEK', 'JPY'] as const;
/** The feedback fields' values as the server takes them (domain/feedback/events.ts). */
export const FEEDBACK_KINDS = ['complaint', 'request', 'question', 'praise', 'survey'] as const;
export const FEEDBACK_CHANNELS = ['email', 'phone', 'chat', 'web', 'social', 'in_person'] as const;
export const FEEDBACK_PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;
