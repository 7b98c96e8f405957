import { z } from 'zod';
import { Id, SafeText, ShortText } from '../shared.ts';
import { ROLES } from './roles.ts';

export const UserStreamPrefix = 'user-';

/** A role as events and commands hold it (domain/user/roles.ts lists them). */
export const UserRole = z.enum(ROLES);
export type UserRole = z.infer<typeof UserRole>;

/**
 * What a user's keys may see: `own` the records they own, `team` those owned by anyone in one of
 * their teams (and their own), `all` everything their role may read.
 */
export const UserVisibility = z.enum(['own', 'team', 'all']);
export type UserVisibility = z.infer<typeof UserVisibility>;

/**
 * Staff are not data subjects of the CRM's crypto-shredding (keys are per customer): a user's name
 * and work email stay readable in history, because the audit log must show who could see what.
 */
export const UserRegistered = z.object({
  userId: Id,
  name: ShortText,
  email: SafeText.max(320),
  role: UserRole,
  visibility: UserVisibility,
});
export const UserChanged = z.object({ userId: Id, name: ShortText.optional(), email: SafeText.max(320).optional() });
export const UserRoleChanged = z.object({ userId: Id, role: UserRole, previousRole: UserRole });
export const UserVisibilityChanged = z.object({ userId: Id, visibility: UserVisibility, previousVisibility: UserVisibility });
export const UserJoinedTeam = z.object({ userId: Id, teamId: Id });
export const UserLeftTeam = z.object({ userId: Id, teamId: Id });
/** A deactivated user's keys stop working at once; history keeps the user. */
export const UserDeactivated = z.object({ userId: Id });
export const UserReactivated = z.object({ userId: Id });

export const userEventSchemas = {
  UserRegistered,
  UserChanged,
  UserRoleChanged,
  UserVisibilityChanged,
  UserJoinedTeam,
  UserLeftTeam,
  UserDeactivated,
  UserReactivated,
} as const;

type Schemas = typeof userEventSchemas;
export type UserEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
