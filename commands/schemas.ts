import type { z } from 'zod';
import { campaignCommandSchemas } from '../domain/campaign/commands.ts';
import { customerCommandSchemas } from '../domain/customer/commands.ts';
import { dealCommandSchemas } from '../domain/deal/commands.ts';
import { feedbackCommandSchemas } from '../domain/feedback/commands.ts';
import { teamCommandSchemas } from '../domain/team/commands.ts';
import { userCommandSchemas } from '../domain/user/commands.ts';
import { activityCommandSchemas } from '../domain/activity/commands.ts';
import { exchangeRateCommandSchemas } from '../domain/exchange-rate/commands.ts';
import type { AggregateKind } from '../domain/catalogue.ts';

/**
 * One strict zod schema per command, keyed by command type. Path ids are fields of the payload
 * (`customerId`, `dealId`, `campaignId`, `feedbackId`), so an HTTP route validates `{ ...body, ...params }`.
 */
export const commandSchemas = {
  ...customerCommandSchemas,
  ...dealCommandSchemas,
  ...campaignCommandSchemas,
  ...feedbackCommandSchemas,
  ...teamCommandSchemas,
  ...userCommandSchemas,
  ...activityCommandSchemas,
  ...exchangeRateCommandSchemas,
} as const;

export type CommandType = keyof typeof commandSchemas;
export const commandTypes = Object.keys(commandSchemas) as CommandType[];
export const isCommandType = (type: unknown): type is CommandType => typeof type === 'string' && Object.hasOwn(commandSchemas, type);

/** A command as callers send it: its type plus the fields of its schema (input shape, before defaults). */
export type CrmCommand = { [K in CommandType]: { type: K } & z.input<(typeof commandSchemas)[K]> }[CommandType];

export type { AggregateKind };

/** Which aggregate each command addresses, and the payload field naming it. */
export const commandTargets: Record<CommandType, { kind: AggregateKind; idField: string; creates: boolean }> = {
  RegisterCustomer: { kind: 'customer', idField: 'customerId', creates: true },
  ChangeCustomerDetails: { kind: 'customer', idField: 'customerId', creates: false },
  TagCustomer: { kind: 'customer', idField: 'customerId', creates: false },
  UntagCustomer: { kind: 'customer', idField: 'customerId', creates: false },
  RecordPurchase: { kind: 'customer', idField: 'customerId', creates: false },
  RefundPurchase: { kind: 'customer', idField: 'customerId', creates: false },
  MergeCustomer: { kind: 'customer', idField: 'customerId', creates: false },
  DeactivateCustomer: { kind: 'customer', idField: 'customerId', creates: false },
  ReactivateCustomer: { kind: 'customer', idField: 'customerId', creates: false },
  ForgetCustomer: { kind: 'customer', idField: 'customerId', creates: false },
  OpenDeal: { kind: 'deal', idField: 'dealId', creates: true },
  ChangeDeal: { kind: 'deal', idField: 'dealId', creates: false },
  MoveDealStage: { kind: 'deal', idField: 'dealId', creates: false },
  WinDeal: { kind: 'deal', idField: 'dealId', creates: false },
  LoseDeal: { kind: 'deal', idField: 'dealId', creates: false },
  ReopenDeal: { kind: 'deal', idField: 'dealId', creates: false },
  CreateCampaign: { kind: 'campaign', idField: 'campaignId', creates: true },
  ScheduleCampaign: { kind: 'campaign', idField: 'campaignId', creates: false },
  LaunchCampaign: { kind: 'campaign', idField: 'campaignId', creates: false },
  PauseCampaign: { kind: 'campaign', idField: 'campaignId', creates: false },
  ResumeCampaign: { kind: 'campaign', idField: 'campaignId', creates: false },
  CompleteCampaign: { kind: 'campaign', idField: 'campaignId', creates: false },
  CancelCampaign: { kind: 'campaign', idField: 'campaignId', creates: false },
  RecordCampaignCost: { kind: 'campaign', idField: 'campaignId', creates: false },
  CorrectCampaignCost: { kind: 'campaign', idField: 'campaignId', creates: false },
  RecordCampaignResponse: { kind: 'campaign', idField: 'campaignId', creates: false },
  SubmitFeedback: { kind: 'feedback', idField: 'feedbackId', creates: true },
  AssignFeedback: { kind: 'feedback', idField: 'feedbackId', creates: false },
  RespondToFeedback: { kind: 'feedback', idField: 'feedbackId', creates: false },
  EscalateFeedback: { kind: 'feedback', idField: 'feedbackId', creates: false },
  ResolveFeedback: { kind: 'feedback', idField: 'feedbackId', creates: false },
  ReopenFeedback: { kind: 'feedback', idField: 'feedbackId', creates: false },
  CloseFeedback: { kind: 'feedback', idField: 'feedbackId', creates: false },
  RateFeedback: { kind: 'feedback', idField: 'feedbackId', creates: false },
  AssignCustomerOwner: { kind: 'customer', idField: 'customerId', creates: false },
  CreateTeam: { kind: 'team', idField: 'teamId', creates: true },
  RenameTeam: { kind: 'team', idField: 'teamId', creates: false },
  RegisterUser: { kind: 'user', idField: 'userId', creates: true },
  ChangeUser: { kind: 'user', idField: 'userId', creates: false },
  LogActivity: { kind: 'activity', idField: 'activityId', creates: true },
  ChangeActivity: { kind: 'activity', idField: 'activityId', creates: false },
  CompleteActivity: { kind: 'activity', idField: 'activityId', creates: false },
  SetExchangeRate: { kind: 'exchangeRate', idField: 'currency', creates: false },
};
