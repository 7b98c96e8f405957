/** The read models as the API answers them (the fields the screens use). */
export interface Customer {
  id: string;
  name: string;
  email: string;
  phone: string | null;
  company: string | null;
  source: string | null;
  tags: string[];
  status: string;
  mergedInto: string | null;
  marketingConsent: boolean;
  registeredAt: string;
  firstPurchaseAt: string | null;
  lastPurchaseAt: string | null;
  orderCount: number;
  revenue: number;
  refunded: number;
  currency: string | null;
  openFeedbackCount: number;
  dealsOpen: number;
  dealsWon: number;
  dealsLost: number;
  forgottenAt: string | null;
  revision: number;
}
export interface TimelineItem {
  eventId: string;
  occurredAt: string;
  recordedAt: string;
  actor: string;
  type: string;
  summary: string;
  stream: string;
  revision: number;
}
export interface Deal {
  id: string;
  customerId: string;
  title: string;
  stage: string;
  status: string;
  amount: number;
  currency: string;
  ownerId: string;
  probability: number;
  weightedAmount: number;
  expectedCloseDate: string;
  daysInStage: number;
  closedAt: string | null;
  wonReason: string | null;
  lostReason: string | null;
  revision: number;
}
export interface Feedback {
  id: string;
  customerId: string;
  kind: string;
  channel: string;
  subject: string;
  body?: string;
  priority: string;
  status: string;
  assigneeId: string | null;
  submittedAt: string;
  firstResponseDueAt: string | null;
  resolutionDueAt: string | null;
  firstRespondedAt: string | null;
  resolvedAt: string | null;
  breached: boolean;
  escalationCount: number;
  csat: number | null;
  nps: number | null;
  revision: number;
}
export interface Campaign {
  id: string;
  name: string;
  channel: string;
  status: string;
  budget: number;
  currency: string;
  startsAt: string | null;
  endsAt: string | null;
  costs: number;
  responses: Record<string, number>;
  conversions: number;
  revenue: number;
  roi: number | null;
  conversionRate: number | null;
  revision: number;
}
export interface CustomerAnalytics {
  modelVersion: number | null;
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
