import { z } from 'zod';
import { EmailAddress, Id, DisplayText } from '../shared.ts';
import { UserRole, UserVisibility } from './events.ts';

/** Compared and stored trimmed and lower-case. */
const Email = EmailAddress;
const TeamIds = z.array(Id).max(100);

/** User commands as clients send them (strict). Administration happens now: no `occurredAt`. */
export const RegisterUserPayload = z
  .object({
    userId: Id.optional(),
    name: DisplayText,
    email: Email,
    role: UserRole,
    teamIds: TeamIds.optional(),
    visibility: UserVisibility.default('team'),
  })
  .strict();

export const ChangeUserPayload = z
  .object({
    userId: Id,
    name: DisplayText.optional(),
    email: Email.optional(),
    role: UserRole.optional(),
    /** The whole set of teams: teams missing from it are left, new ones joined. */
    teamIds: TeamIds.optional(),
    visibility: UserVisibility.optional(),
    /** false deactivates the user (their keys stop working), true reactivates. */
    active: z.boolean().optional(),
  })
  .strict()
  .refine((c) => Object.keys(c).some((k) => k !== 'userId'), { message: 'at least one field to change' });

export const userCommandSchemas = { RegisterUser: RegisterUserPayload, ChangeUser: ChangeUserPayload } as const;

type Cmd<K extends string, Payload> = { type: K; occurredAt: string } & Payload;
/** The handler fills `knownTeams`: which of the named teams exist, so that `decide` stays pure. */
export type RegisterUser = Cmd<'RegisterUser', Omit<z.infer<typeof RegisterUserPayload>, 'userId'> & { userId: string; knownTeams: string[] }>;
export type ChangeUser = Cmd<'ChangeUser', z.infer<typeof ChangeUserPayload> & { knownTeams: string[] }>;
export type UserCommand = RegisterUser | ChangeUser;
