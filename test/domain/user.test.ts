import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import { assertOwnerUsable, initialUserState, userDecider, userSnapshot } from '../../domain/user/decider.ts';
import { DomainError } from '../../domain/errors.ts';
import type { UserCommand } from '../../domain/user/commands.ts';
import type { UserEvent } from '../../domain/user/events.ts';
import { teamDecider } from '../../domain/team/decider.ts';
import type { TeamCommand } from '../../domain/team/commands.ts';
import type { TeamEvent } from '../../domain/team/events.ts';
import { deciderSpec, fold } from '../support/decider-spec.ts';

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
    spec.given([created]).when({ type: 'RenameTeam', teamId: TEAM_A, name: 'Team A', occurredAt: at }).thenNothing();
    spec
      .given([created])
      .when({ type: 'RenameTeam', teamId: TEAM_A, name: 'EMEA', occurredAt: at })
      .then([{ type: 'TeamRenamed', data: { teamId: TEAM_A, name: 'EMEA' } }]);
    expect(
      spec.given([]).when({ type: 'RenameTeam', teamId: TEAM_A, name: 'x', occurredAt: at }).thenRefused('team.not_found', 'teamId', { teamId: TEAM_A }).kind,
    ).toBe('not_found');
  });
  it('a rename is read back: the new name again records nothing, the old one is a rename', () => {
    const renamed: TeamEvent = { type: 'TeamRenamed', data: { teamId: TEAM_A, name: 'EMEA' } };
    spec.given([created, renamed]).when({ type: 'RenameTeam', teamId: TEAM_A, name: 'EMEA', occurredAt: at }).thenNothing();
    spec
      .given([created, renamed])
      .when({ type: 'RenameTeam', teamId: TEAM_A, name: 'Team A', occurredAt: at })
      .then([{ type: 'TeamRenamed', data: { teamId: TEAM_A, name: 'Team A' } }]);
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
  const change = (fields: Partial<Extract<UserCommand, { type: 'ChangeUser' }>>): UserCommand => ({
    type: 'ChangeUser',
    userId: USER,
    knownTeams: [TEAM_A, TEAM_B],
    occurredAt: at,
    ...fields,
  });
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
    expect(
      spec
        .given([])
        .when(register({ teamIds: [TEAM_A, TEAM_B], knownTeams: [TEAM_A] }))
        .thenRefused('team.not_found', 'teamIds').kind,
    ).toBe('rule_violated');
    spec.given([registered]).when(register()).thenRefused('user.already_registered', 'userId');
  });

  it('names every unknown team in the refusal, apart, in the order given', () => {
    const refusal = spec
      .given([])
      .when(register({ teamIds: [TEAM_B, TEAM_A], knownTeams: [] }))
      .thenRefused('team.not_found', 'teamIds', { teamIds: [TEAM_B, TEAM_A] });
    expect(refusal.message).toBe(`No team ${TEAM_B}, ${TEAM_A}`);
  });

  it('records role and visibility changes with the previous value, and nothing when unchanged', () => {
    spec
      .given([registered, joinedA])
      .when(change({ role: 'admin', visibility: 'own' }))
      .then([
        { type: 'UserRoleChanged', data: { userId: USER, role: 'admin', previousRole: 'sales' } },
        { type: 'UserVisibilityChanged', data: { userId: USER, visibility: 'own', previousVisibility: 'team' } },
      ]);
    spec
      .given([registered, joinedA])
      .when(change({ role: 'sales', visibility: 'team', email: 'ADA@crm.example', teamIds: [TEAM_A] }))
      .thenNothing();
  });

  it('takes teamIds as the whole set: leaves the missing ones, joins the new ones', () => {
    const state = spec
      .given([registered, joinedA])
      .when(change({ teamIds: [TEAM_B] }))
      .then([
        { type: 'UserLeftTeam', data: { userId: USER, teamId: TEAM_A } },
        { type: 'UserJoinedTeam', data: { userId: USER, teamId: TEAM_B } },
      ]);
    expect(state.teamIds).toEqual([TEAM_B]);
    // A team being left need not exist any more; one being joined must.
    spec
      .given([registered, joinedA])
      .when(change({ teamIds: [], knownTeams: [] }))
      .then([{ type: 'UserLeftTeam', data: { userId: USER, teamId: TEAM_A } }]);
    spec
      .given([registered, joinedA])
      .when(change({ teamIds: [TEAM_A, TEAM_B], knownTeams: [TEAM_A] }))
      .thenRefused('team.not_found', 'teamIds');
  });

  it('deactivates and reactivates; an unknown user is not found', () => {
    const off = spec
      .given([registered])
      .when(change({ active: false }))
      .then([{ type: 'UserDeactivated', data: { userId: USER } }]);
    expect(off.active).toBe(false);
    spec
      .given([registered, { type: 'UserDeactivated', data: { userId: USER } }])
      .when(change({ active: true }))
      .then([{ type: 'UserReactivated', data: { userId: USER } }]);
    spec
      .given([registered])
      .when(change({ active: true }))
      .thenNothing();
    expect(
      spec
        .given([])
        .when(change({ name: 'x' }))
        .thenRefused('user.not_found', 'userId').kind,
    ).toBe('not_found');
    expect(initialUserState().exists).toBe(false);
  });

  it('changes name and email only when they differ', () => {
    spec
      .given([registered])
      .when(change({ name: 'Ada L.', email: 'ada@crm.example' }))
      .then([{ type: 'UserChanged', data: { userId: USER, name: 'Ada L.' } }]);
  });
});

describe('user: what the folded state remembers', () => {
  const spec = deciderSpec(userDecider);
  const registered: UserEvent = { type: 'UserRegistered', data: { userId: USER, name: 'Ada', email: 'ada@crm.example', role: 'sales', visibility: 'team' } };
  const change = (fields: Partial<Extract<UserCommand, { type: 'ChangeUser' }>>): UserCommand => ({
    type: 'ChangeUser',
    userId: USER,
    knownTeams: [TEAM_A, TEAM_B],
    occurredAt: at,
    ...fields,
  });
  const joined = (teamId: string): UserEvent => ({ type: 'UserJoinedTeam', data: { userId: USER, teamId } });

  it('registers without teams', () => {
    const register: UserCommand = {
      type: 'RegisterUser',
      userId: USER,
      name: 'Ada',
      email: 'ada@crm.example',
      role: 'sales',
      visibility: 'team',
      knownTeams: [],
      occurredAt: at,
    };
    spec.given([]).when(register).then([registered]);
  });
  it('every recorded change is read back, so the same command afterwards decides nothing', () => {
    const all = change({ name: 'Ada L.', email: 'Ada.L@crm.example', role: 'admin', visibility: 'all', teamIds: [TEAM_B], active: false });
    const state = spec
      .given([registered, joined(TEAM_A)])
      .when(all)
      .then([
        { type: 'UserChanged', data: { userId: USER, name: 'Ada L.', email: 'ada.l@crm.example' } },
        { type: 'UserRoleChanged', data: { userId: USER, role: 'admin', previousRole: 'sales' } },
        { type: 'UserVisibilityChanged', data: { userId: USER, visibility: 'all', previousVisibility: 'team' } },
        { type: 'UserLeftTeam', data: { userId: USER, teamId: TEAM_A } },
        { type: 'UserJoinedTeam', data: { userId: USER, teamId: TEAM_B } },
        { type: 'UserDeactivated', data: { userId: USER } },
      ]);
    expect(state).toMatchObject({ name: 'Ada L.', email: 'ada.l@crm.example', role: 'admin', visibility: 'all', teamIds: [TEAM_B], active: false });
    expect(userDecider.decide(all, state)).toEqual([]);
    const back = spec
      .given([registered, { type: 'UserDeactivated', data: { userId: USER } }])
      .when(change({ active: true }))
      .then([{ type: 'UserReactivated', data: { userId: USER } }]);
    expect(userSnapshot(back)).toEqual({ exists: true, active: true });
  });
  it('a name change keeps the email and an email change keeps the name', () => {
    const foldUser = (events: UserEvent[]) => fold(userDecider, events);
    expect(foldUser([registered, { type: 'UserChanged', data: { userId: USER, name: 'Ada L.' } }])).toMatchObject({ name: 'Ada L.', email: 'ada@crm.example' });
    expect(foldUser([registered, { type: 'UserChanged', data: { userId: USER, email: 'al@crm.example' } }])).toMatchObject({
      name: 'Ada',
      email: 'al@crm.example',
    });
  });
  it('leaving one team keeps the others', () => {
    const state = spec
      .given([registered, joined(TEAM_A), joined(TEAM_B)])
      .when(change({ teamIds: [TEAM_B] }))
      .then([{ type: 'UserLeftTeam', data: { userId: USER, teamId: TEAM_A } }]);
    expect(state.teamIds).toEqual([TEAM_B]);
  });
  it('a team kept need not be known any more; only a team joined is checked', () => {
    spec
      .given([registered, joined(TEAM_A)])
      .when(change({ teamIds: [TEAM_A, TEAM_B], knownTeams: [TEAM_B] }))
      .then([joined(TEAM_B)]);
    spec
      .given([registered])
      .when(change({ teamIds: [TEAM_A, TEAM_B], knownTeams: [TEAM_A] }))
      .thenRefused('team.not_found', 'teamIds', { teamIds: [TEAM_B] });
  });
  it('a deactivated user stays deactivated through other changes; the same name records nothing', () => {
    const off: UserEvent[] = [registered, { type: 'UserDeactivated', data: { userId: USER } }];
    spec
      .given(off)
      .when(change({ role: 'support' }))
      .then([{ type: 'UserRoleChanged', data: { userId: USER, role: 'support', previousRole: 'sales' } }]);
    spec
      .given(off)
      .when(change({ name: 'Ada' }))
      .thenNothing();
    spec
      .given([])
      .when(change({ name: 'x' }))
      .thenRefused('user.not_found', 'userId', { userId: USER });
  });
  it('an owner must be a registered, active user; the refusal names the id', () => {
    const refusal = (owner: { exists: boolean; active: boolean }) => {
      try {
        assertOwnerUsable(owner, USER);
      } catch (e) {
        return e as DomainError;
      }
      throw new Error('not refused');
    };
    expect(refusal({ exists: false, active: false })).toMatchObject({ code: 'user.not_found', field: 'ownerId', details: { ownerId: USER } });
    expect(refusal({ exists: true, active: false })).toMatchObject({ code: 'user.inactive', field: 'ownerId', details: { ownerId: USER } });
  });
});

describe('user: the command schemas', () => {
  it('a change needs a field beside the user id', () => {
    expect(commandSchemas.ChangeUser.safeParse({ userId: USER, name: 'Ada' }).success).toBe(true);
    expect(commandSchemas.ChangeUser.safeParse({ userId: USER }).success).toBe(false);
  });
});
