import { z } from 'zod';
import { Id, DisplayText } from '../shared.ts';

/** Team commands as clients send them (strict). Teams are administration: they happen now (no `occurredAt`). */
export const CreateTeamPayload = z.object({ teamId: Id.optional(), name: DisplayText }).strict();
export const RenameTeamPayload = z.object({ teamId: Id, name: DisplayText }).strict();

export const teamCommandSchemas = { CreateTeam: CreateTeamPayload, RenameTeam: RenameTeamPayload } as const;

type Cmd<K extends string, Payload> = { type: K; occurredAt: string } & Payload;
export type CreateTeam = Cmd<'CreateTeam', { teamId: string; name: string }>;
export type RenameTeam = Cmd<'RenameTeam', z.infer<typeof RenameTeamPayload>>;
export type TeamCommand = CreateTeam | RenameTeam;
