import { z } from 'zod';
import { Id, ShortText } from '../shared.ts';

export const TeamStreamPrefix = 'team-';

/** A team of users: what `team` visibility widens a user's view to (the records its members own). */
export const TeamCreated = z.object({ teamId: Id, name: ShortText });
export const TeamRenamed = z.object({ teamId: Id, name: ShortText });

export const teamEventSchemas = { TeamCreated, TeamRenamed } as const;

type Schemas = typeof teamEventSchemas;
export type TeamEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
