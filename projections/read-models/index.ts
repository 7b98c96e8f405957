import type { Projection } from '../projection.ts';
import { activitiesProjection } from './activities.ts';
import { campaignsProjection } from './campaigns.ts';
import { customersProjection } from './customers.ts';
import { dealsProjection } from './deals.ts';
import { exchangeRatesProjection } from './exchange-rates.ts';
import { feedbackProjection } from './feedback.ts';
import { timelineProjection } from './timeline.ts';
import { usersProjection } from './users.ts';

export {
  activitiesProjection,
  campaignsProjection,
  customersProjection,
  dealsProjection,
  exchangeRatesProjection,
  feedbackProjection,
  timelineProjection,
  usersProjection,
};

/** The CRM's read models, in the order they are applied. Analytics projections are added by the composition root. */
export const readModelProjections = (): Projection[] => [
  customersProjection,
  timelineProjection,
  dealsProjection,
  campaignsProjection,
  feedbackProjection,
  usersProjection,
  activitiesProjection,
  exchangeRatesProjection,
];
