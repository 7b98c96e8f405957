import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import { userDecider, initialUserState } from '../../domain/user/decider.ts';
import type { UserCommand } from '../../domain/user/commands.ts';
import type { UserEvent } from '../../domain/user/events.ts';
import { teamDecider } from '../../domain/team/decider.ts';
import type { TeamCommand } from '../../domain/team/commands.ts';
import type { TeamEvent } from '../../domain/team/events.ts';
import { deciderSpec } from '../support/decider-spec.ts';

const at = '2026-03-01T09:00:00.000Z';
const USER = '55555555-5555-4555-8555-555555555555';
const TEAM_A = '66666666-6666-4666-8666-666666666666';
const TEAM_B = '77777777-7777-4777-8777-777777777777';

describe('team', () => {
  const spec = deciderSpec(teamDecider);
  const create: TeamCommand = { type: 'CreateTeam', teamId: TEAM_A, name: 'Team A', occurredAt: at };
  const created: TeamEvent = { type: 'TeamCreated', data: { teamId: TEAM_A, name: 'Team A' } };
  it('is created once', () => {
    spec.given([]).when(create).then([created]);
    spec.given([created]).when(create).thenRefused('team.already_created', 'teamId');
  });
  it('is renamed when the name differs; an unknown team is not found', () => {
    spec.given([created]).when({ type: 'RenameTeam', teamId: TEAM_A, name: 'Team A' , occurredAt: at }).thenNothing();
    spec.given([created]).when({ type: 'RenameTeam', teamId: TEAM_A, name: 'EMEA', occurredAt: at }).then([{ type: 'TeamRenamed', data: { teamId: TEAM_A, name: 'EMEA' } }]);
    expect(spec.given([]).when({ type: 'RenameTeam', teamId: TEAM_A, name: 'x', occurredAt: at }).thenRefused('team.not_found', 'teamId').kind).toBe('not_found');
  });
});

describe('user', () => {
  const spec = deciderSpec(userDecider);
  const register = (fields: Partial<Extract<UserCommand, { type: 'RegisterUser' }>> = {}): UserCommand => ({
    type: 'RegisterUser',
    userId: USER,
    name: 'Ada',
    email: ' Ada@CRM.example ',
    role: 'sales',
    visibility: 'team',
    teamIds: [TEAM_A],
    knownTeams: [TEAM_A, TEAM_B],
    occurredAt: at,
    ...fields,
  });
  const change = (fields: Partial<Extract<UserCommand, { type: 'ChangeUser' }>>): UserCommand => ({ type: 'ChangeUser', userId: USER, knownTeams: [TEAM_A, TEAM_B], occurredAt: at, ...fields });
  const registered: UserEvent = { type: 'UserRegistered', data: { userId: USER, name: 'Ada', email: 'ada@crm.example', role: 'sales', visibility: 'team' } };
  const joinedA: UserEvent = { type: 'UserJoinedTeam', data: { userId: USER, teamId: TEAM_A } };

  it('registers with a normalised email and joins its teams, each membership an event', () => {
    const state = spec.given([]).when(register()).then([registered, joinedA]);
    expect(state).toMatchObject({ exists: true, active: true, role: 'sales', visibility: 'team', teamIds: [TEAM_A] });
  });

  it('visibility defaults to team (the HTTP schema fills it)', () => {
    const parsed = commandSchemas.RegisterUser.parse({ name: 'Ada', email: 'ada@crm.example', role: 'sales' });
    expect(parsed.visibility).toBe('team');
    expect(() => commandSchemas.RegisterUser.parse({ name: 'Ada', email: 'ada@crm.example', role: 'sales', visibility: 'everyone' })).toThrow();
  });

  it('refuses an unknown team (422 naming teamIds) and a second registration', () => {
    expect(spec.given([]).when(register({ teamIds: [TEAM_A, TEAM_B], knownTeams: [TEAM_A] })).thenRefused('team.not_found', 'teamIds').kind).toBe('rule_violated');
    spec.given([registered]).when(register()).thenRefused('user.already_registered', 'userId');
  });

  it('records role and visibility changes with the previous value, and nothing when unchanged', () => {
    spec.given([registered, joinedA]).when(change({ role: 'admin', visibility: 'own' })).then([
      { type: 'UserRoleChanged', data: { userId: USER, role: 'admin', previousRole: 'sales' } },
      { type: 'UserVisibilityChanged', data: { userId: USER, visibility: 'own', previousVisibility: 'team' } },
    ]);
    spec.given([registered, joinedA]).when(change({ role: 'sales', visibility: 'team', email: 'ADA@crm.example', teamIds: [TEAM_A] })).thenNothing();
  });

  it('takes teamIds as the whole set: leaves the missing ones, joins the new ones', () => {
    const state = spec.given([registered, joinedA]).when(change({ teamIds: [TEAM_B] })).then([
      { type: 'UserLeftTeam', data: { userId: USER, teamId: TEAM_A } },
      { type: 'UserJoinedTeam', data: { userId: USER, teamId: TEAM_B } },
    ]);
    expect(state.teamIds).toEqual([TEAM_B]);
    // A team being left need not exist any more; one being joined must.
    spec.given([registered, joinedA]).when(change({ teamIds: [], knownTeams: [] })).then([{ type: 'UserLeftTeam', data: { userId: USER, teamId: TEAM_A } }]);
    spec.given([registered, joinedA]).when(change({ teamIds: [TEAM_A, TEAM_B], knownTeams: [TEAM_A] })).thenRefused('team.not_found', 'teamIds');
  });

  it('deactivates and reactivates; an unknown user is not found', () => {
    const off = spec.given([registered]).when(change({ active: false })).then([{ type: 'UserDeactivated', data: { userId: USER } }]);
    expect(off.active).toBe(false);
    spec.given([registered, { type: 'UserDeactivated', data: { userId: USER } }]).when(change({ active: true })).then([{ type: 'UserReactivated', data: { userId: USER } }]);
    spec.given([registered]).when(change({ active: true })).thenNothing();
    expect(spec.given([]).when(change({ name: 'x' })).thenRefused('user.not_found', 'userId').kind).toBe('not_found');
    expect(initialUserState().exists).toBe(false);
  });

  it('changes name and email only when they differ', () => {
    spec.given([registered]).when(change({ name: 'Ada L.', email: 'ada@crm.example' })).then([{ type: 'UserChanged', data: { userId: USER, name: 'Ada L.' } }]);
  });
});
