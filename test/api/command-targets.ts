import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { campaignCommandSchemas } from '../../domain/campaign/commands.ts';
import { customerCommandSchemas } from '../../domain/customer/commands.ts';
import { dealCommandSchemas } from '../../domain/deal/commands.ts';
import { feedbackCommandSchemas } from '../../domain/feedback/commands.ts';
import { activityCommandSchemas } from '../../domain/activity/commands.ts';
import { SetExchangeRatePayload } from '../../domain/exchange-rate/commands.ts';
import { ruleFor, type Role } from '../../api/roles.ts';

export type Payload = z.ZodObject<z.ZodRawShape>;
/** One command route: its payload schema and a body it accepts. */
export interface Target {
  method: 'POST' | 'PATCH';
  url: string;
  payload: Payload;
  idField: string;
  /** A body the route accepts, so that each mutation below is the only thing wrong with it. */
  valid: () => Record<string, unknown>;
}

const c = customerCommandSchemas;
const d = dealCommandSchemas;
const k = campaignCommandSchemas;
const f = feedbackCommandSchemas;
const a = activityCommandSchemas;
/** Every command route, with a valid body whose references point at `customerId()`. */
export const commandTargets = (customerId: () => string): Target[] => [
  { method: 'POST', url: '/customers', payload: c.RegisterCustomer, idField: 'customerId', valid: () => ({ name: 'A', email: 'a@example.com' }) },
  { method: 'PATCH', url: '/customers/:id', payload: c.ChangeCustomerDetails, idField: 'customerId', valid: () => ({ company: 'ACME' }) },
  {
    method: 'POST',
    url: '/customers/:id/purchases',
    payload: c.RecordPurchase,
    idField: 'customerId',
    valid: () => ({ orderId: 'o', amount: 1, currency: 'EUR', occurredAt: '2026-01-01T00:00:00Z' }),
  },
  {
    method: 'POST',
    url: '/customers/:id/refunds',
    payload: c.RefundPurchase,
    idField: 'customerId',
    valid: () => ({ orderId: 'o', amount: 1, currency: 'EUR' }),
  },
  { method: 'POST', url: '/customers/:id/merge', payload: c.MergeCustomer, idField: 'customerId', valid: () => ({ duplicateId: randomUUID() }) },
  { method: 'POST', url: '/customers/:id/forget', payload: c.ForgetCustomer, idField: 'customerId', valid: () => ({}) },
  { method: 'POST', url: '/customers/:id/tags', payload: c.TagCustomer, idField: 'customerId', valid: () => ({ tag: 't' }) },
  { method: 'POST', url: '/customers/:id/untag', payload: c.UntagCustomer, idField: 'customerId', valid: () => ({ tag: 't' }) },
  { method: 'POST', url: '/customers/:id/deactivate', payload: c.DeactivateCustomer, idField: 'customerId', valid: () => ({}) },
  { method: 'POST', url: '/customers/:id/reactivate', payload: c.ReactivateCustomer, idField: 'customerId', valid: () => ({}) },
  { method: 'POST', url: '/customers/:id/owner', payload: c.AssignCustomerOwner, idField: 'customerId', valid: () => ({ ownerId: randomUUID() }) },
  {
    method: 'POST',
    url: '/deals',
    payload: d.OpenDeal,
    idField: 'dealId',
    valid: () => ({ customerId: customerId(), title: 't', amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-01-01' }),
  },
  { method: 'PATCH', url: '/deals/:id', payload: d.ChangeDeal, idField: 'dealId', valid: () => ({ amount: 2 }) },
  { method: 'POST', url: '/deals/:id/stage', payload: d.MoveDealStage, idField: 'dealId', valid: () => ({ stage: 'qualified' }) },
  { method: 'POST', url: '/deals/:id/won', payload: d.WinDeal, idField: 'dealId', valid: () => ({}) },
  { method: 'POST', url: '/deals/:id/lost', payload: d.LoseDeal, idField: 'dealId', valid: () => ({ reason: 'r' }) },
  { method: 'POST', url: '/deals/:id/reopen', payload: d.ReopenDeal, idField: 'dealId', valid: () => ({}) },
  {
    method: 'POST',
    url: '/campaigns',
    payload: k.CreateCampaign,
    idField: 'campaignId',
    valid: () => ({ name: 'n', channel: 'email', budget: 1, currency: 'EUR' }),
  },
  { method: 'POST', url: '/campaigns/:id/schedule', payload: k.ScheduleCampaign, idField: 'campaignId', valid: () => ({ startsAt: '2026-01-01T00:00:00Z' }) },
  ...(['launch', 'resume', 'complete'] as const).map((a): Target => ({
    method: 'POST',
    url: `/campaigns/:id/${a}`,
    payload: k.LaunchCampaign,
    idField: 'campaignId',
    valid: () => ({}),
  })),
  ...(['pause', 'cancel'] as const).map((a): Target => ({
    method: 'POST',
    url: `/campaigns/:id/${a}`,
    payload: k.PauseCampaign,
    idField: 'campaignId',
    valid: () => ({}),
  })),
  { method: 'POST', url: '/campaigns/:id/costs', payload: k.RecordCampaignCost, idField: 'campaignId', valid: () => ({ amount: 1, currency: 'EUR' }) },
  {
    method: 'POST',
    url: '/campaigns/:id/cost-corrections',
    payload: k.CorrectCampaignCost,
    idField: 'campaignId',
    valid: () => ({ costId: 'inv-1', amount: 1, currency: 'EUR', reason: 'typed 10 for 1' }),
  },
  {
    method: 'POST',
    url: '/campaigns/:id/responses',
    payload: k.RecordCampaignResponse,
    idField: 'campaignId',
    valid: () => ({ customerId: customerId(), kind: 'opened' }),
  },
  {
    method: 'POST',
    url: '/feedback',
    payload: f.SubmitFeedback,
    idField: 'feedbackId',
    valid: () => ({ customerId: customerId(), kind: 'question', channel: 'web', subject: 's', body: 'b' }),
  },
  { method: 'POST', url: '/feedback/:id/assign', payload: f.AssignFeedback, idField: 'feedbackId', valid: () => ({ assigneeId: 'a' }) },
  { method: 'POST', url: '/feedback/:id/respond', payload: f.RespondToFeedback, idField: 'feedbackId', valid: () => ({ message: 'm' }) },
  { method: 'POST', url: '/feedback/:id/escalate', payload: f.EscalateFeedback, idField: 'feedbackId', valid: () => ({ reason: 'r' }) },
  { method: 'POST', url: '/feedback/:id/resolve', payload: f.ResolveFeedback, idField: 'feedbackId', valid: () => ({ resolution: 'r' }) },
  { method: 'POST', url: '/feedback/:id/reopen', payload: f.ReopenFeedback, idField: 'feedbackId', valid: () => ({}) },
  { method: 'POST', url: '/feedback/:id/close', payload: f.CloseFeedback, idField: 'feedbackId', valid: () => ({}) },
  { method: 'POST', url: '/feedback/:id/rating', payload: f.RateFeedback, idField: 'feedbackId', valid: () => ({ csat: 4 }) },
  // The parent (customerId, dealId) is the path: sent in the body it is an unknown field, named as such.
  {
    method: 'POST',
    url: '/customers/:id/activities',
    payload: a.LogActivity,
    idField: 'activityId',
    valid: () => ({ kind: 'task', subject: 's', body: 'b', dueAt: '2026-01-01T00:00:00Z' }),
  },
  { method: 'POST', url: '/deals/:id/activities', payload: a.LogActivity, idField: 'activityId', valid: () => ({ kind: 'note', subject: 's', body: 'b' }) },
  {
    method: 'PATCH',
    url: '/activities/:id',
    payload: a.ChangeActivity,
    idField: 'activityId',
    valid: () => ({ subject: 's2', body: 'b2', dueAt: '2026-02-01T00:00:00Z' }),
  },
  { method: 'POST', url: '/activities/:id/complete', payload: a.CompleteActivity, idField: 'activityId', valid: () => ({}) },
  // The base currency comes from the configuration, never from the body.
  {
    method: 'POST',
    url: '/exchange-rates',
    payload: SetExchangeRatePayload.omit({ baseCurrency: true }),
    idField: 'baseCurrency',
    valid: () => ({ currency: 'JPY', rate: 0.0061, validFrom: '2026-01-01T00:00:00Z' }),
  },
];

/** A role the route admits (admin where it may). */
export const roleFor = (t: Target): Role => {
  const rule = ruleFor(t.method, t.url);
  return rule.access === 'public' || rule.access.includes('admin') ? 'admin' : rule.access[0]!;
};
