import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { campaignCommandSchemas } from '../../domain/campaign/commands.ts';
import { CampaignChannel, CampaignStatus } from '../../domain/campaign/events.ts';
import type { RouteContext } from '../route-context.ts';
import { commandRoute } from '../command-route.ts';
import { getRoute, listRoute } from '../query-route.ts';

const tags = ['campaigns'];

export const CampaignListFilters = {
  status: CampaignStatus.optional(),
  channel: CampaignChannel.optional(),
  sort: z.enum(['name', '-name', 'createdAt', '-createdAt', 'roi', '-roi', 'revenue', '-revenue']).default('-createdAt'),
};

export const campaignRoutes: FastifyPluginAsync<RouteContext> = async (app, context) => {
  const s = campaignCommandSchemas;
  const base = { idField: 'campaignId', tags } as const;
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns',
    type: 'CreateCampaign',
    payload: s.CreateCampaign,
    summary: 'Create a campaign (draft)',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/schedule',
    type: 'ScheduleCampaign',
    payload: s.ScheduleCampaign,
    summary: 'Schedule the campaign',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/launch',
    type: 'LaunchCampaign',
    payload: s.LaunchCampaign,
    summary: 'Launch the campaign',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/pause',
    type: 'PauseCampaign',
    payload: s.PauseCampaign,
    summary: 'Pause the campaign',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/resume',
    type: 'ResumeCampaign',
    payload: s.ResumeCampaign,
    summary: 'Resume the campaign',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/complete',
    type: 'CompleteCampaign',
    payload: s.CompleteCampaign,
    summary: 'Complete the campaign',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/cancel',
    type: 'CancelCampaign',
    payload: s.CancelCampaign,
    summary: 'Cancel the campaign',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/costs',
    type: 'RecordCampaignCost',
    payload: s.RecordCampaignCost,
    summary: 'Record a cost (costId makes it idempotent)',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/cost-corrections',
    type: 'CorrectCampaignCost',
    payload: s.CorrectCampaignCost,
    summary: 'Correct a recorded cost (amount 0 voids it); the cost keeps its id, its first amount stays in the history',
    description:
      'Records CampaignCostCorrected (previous and corrected amount, currency, reason). 404 campaign.cost_not_found naming costId for a cost never ' +
      'recorded; the same amount again changes nothing (200, no new event); an increase beyond the budget needs allowOverBudget, as a new cost does. ' +
      'The cost id travels in the body: invoice numbers hold slashes.',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/campaigns/:id/responses',
    type: 'RecordCampaignResponse',
    payload: s.RecordCampaignResponse,
    summary: "Record a customer's response (each kind once per customer); conversions carry revenue",
  });

  listRoute(app, context, {
    url: '/campaigns',
    operationId: 'listCampaigns',
    tags,
    summary: 'List campaigns',
    filters: CampaignListFilters,
    personalFields: [],
    fetch: (q, query) => q.listCampaigns(query),
  });
  getRoute(app, context, {
    url: '/campaigns/:id',
    operationId: 'getCampaign',
    tags,
    summary: 'One campaign with costs, responses, revenue and ROI',
    kind: 'campaign',
    personalFields: [],
    fetch: (q, id) => q.getCampaign(id),
  });
};
