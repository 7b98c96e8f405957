import type { Decider } from '../decider.ts';
import { invalidState, notFound, ruleViolated } from '../errors.ts';
import { namesUser, normaliseEmail } from '../shared.ts';
import type { UserCommand } from './commands.ts';
import type { UserEvent, UserRole, UserVisibility } from './events.ts';

export interface UserState {
  exists: boolean;
  userId: string | null;
  name: string | null;
  email: string | null;
  role: UserRole | null;
  visibility: UserVisibility;
  teamIds: string[];
  active: boolean;
}

export const initialUserState = (): UserState => ({
  exists: false,
  userId: null,
  name: null,
  email: null,
  role: null,
  visibility: 'team',
  teamIds: [],
  active: false,
});

export const evolveUser = (state: UserState, event: UserEvent): UserState => {
  switch (event.type) {
    case 'UserRegistered': {
      const d = event.data;
      return { ...state, exists: true, userId: d.userId, name: d.name, email: d.email, role: d.role, visibility: d.visibility, active: true };
    }
    case 'UserChanged':
      return { ...state, name: event.data.name ?? state.name, email: event.data.email ?? state.email };
    case 'UserRoleChanged':
      return { ...state, role: event.data.role };
    case 'UserVisibilityChanged':
      return { ...state, visibility: event.data.visibility };
    case 'UserJoinedTeam':
      return state.teamIds.includes(event.data.teamId) ? state : { ...state, teamIds: [...state.teamIds, event.data.teamId] };
    case 'UserLeftTeam':
      return { ...state, teamIds: state.teamIds.filter((t) => t !== event.data.teamId) };
    case 'UserDeactivated':
      return { ...state, active: false };
    case 'UserReactivated':
      return { ...state, active: true };
  }
};

/** A team named in `teamIds` must exist; an unknown one is bad input (422 naming the field). */
const assertTeamsKnown = (teamIds: readonly string[], knownTeams: readonly string[]): void => {
  const unknown = teamIds.filter((t) => !knownTeams.includes(t));
  if (unknown.length > 0) throw ruleViolated('team.not_found', `No team ${unknown.join(', ')}`, 'teamIds', { teamIds: unknown });
};

/** Membership changes to reach `wanted` from `current`, each team once, in the order given. */
const membershipEvents = (userId: string, current: readonly string[], wanted: readonly string[]): UserEvent[] => {
  const target = [...new Set(wanted)];
  return [
    ...current.filter((t) => !target.includes(t)).map((teamId): UserEvent => ({ type: 'UserLeftTeam', data: { userId, teamId } })),
    ...target.filter((t) => !current.includes(t)).map((teamId): UserEvent => ({ type: 'UserJoinedTeam', data: { userId, teamId } })),
  ];
};

export const decideUser = (command: UserCommand, state: UserState): UserEvent[] => {
  const { userId } = command;
  if (command.type === 'RegisterUser') {
    if (state.exists) throw invalidState('user.already_registered', `User ${userId} is already registered`, 'userId');
    const teamIds = command.teamIds ?? [];
    assertTeamsKnown(teamIds, command.knownTeams);
    return [
      {
        type: 'UserRegistered',
        data: { userId, name: command.name, email: normaliseEmail(command.email), role: command.role, visibility: command.visibility },
      },
      ...membershipEvents(userId, [], teamIds),
    ];
  }
  if (!state.exists) throw notFound('user.not_found', `User ${userId} does not exist`, 'userId', { userId });
  const events: UserEvent[] = [];
  const details: { name?: string; email?: string } = {};
  if (command.name !== undefined && command.name !== state.name) details.name = command.name;
  if (command.email !== undefined && normaliseEmail(command.email) !== state.email) details.email = normaliseEmail(command.email);
  if (Object.keys(details).length > 0) events.push({ type: 'UserChanged', data: { userId, ...details } });
  if (command.role !== undefined && command.role !== state.role)
    events.push({ type: 'UserRoleChanged', data: { userId, role: command.role, previousRole: state.role! } });
  if (command.visibility !== undefined && command.visibility !== state.visibility)
    events.push({ type: 'UserVisibilityChanged', data: { userId, visibility: command.visibility, previousVisibility: state.visibility } });
  if (command.teamIds !== undefined) {
    // Teams being left need not exist any more; only the ones joined are checked.
    assertTeamsKnown(
      command.teamIds.filter((t) => !state.teamIds.includes(t)),
      command.knownTeams,
    );
    events.push(...membershipEvents(userId, state.teamIds, command.teamIds));
  }
  if (command.active === false && state.active) events.push({ type: 'UserDeactivated', data: { userId } });
  if (command.active === true && !state.active) events.push({ type: 'UserReactivated', data: { userId } });
  return events;
};

export const userDecider: Decider<UserCommand, UserEvent, UserState> = { initialState: initialUserState, evolve: evolveUser, decide: decideUser };

/** What a customer's owner must be: a registered, active user (filled by the handler). */
export interface UserSnapshot {
  exists: boolean;
  active: boolean;
}

export const userSnapshot = (state: UserState): UserSnapshot => ({ exists: state.exists, active: state.active });

/** Refuses an owner who is no user or is deactivated: bad input naming the field. */
export const assertOwnerUsable = (owner: UserSnapshot, ownerId: string, field = 'ownerId'): void => {
  if (!owner.exists) throw ruleViolated('user.not_found', `No user ${ownerId}`, field, { ownerId });
  if (!owner.active) throw ruleViolated('user.inactive', `User ${ownerId} is deactivated`, field, { ownerId });
};

/**
 * A person named by text (a deal's owner, a feedback item's assignee: domain/shared.ts `PersonRef`)
 * spelled as a user id is a registered, active user, as a customer's owner is: an unknown or
 * mistyped id was stored as an owner nobody is, and a deactivated user was given new work. A name
 * names no user and is taken as it is. `user` is the snapshot the handler filled (absent: no user).
 */
export const assertPersonUsable = (user: UserSnapshot | undefined, ref: string, field: string): void => {
  if (namesUser(ref)) assertOwnerUsable(user ?? { exists: false, active: false }, ref, field);
};
