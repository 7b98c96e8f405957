import type { Decider } from '../decider.ts';
import { invalidState, notFound } from '../errors.ts';
import type { TeamCommand } from './commands.ts';
import type { TeamEvent } from './events.ts';

export interface TeamState {
  exists: boolean;
  teamId: string | null;
  name: string | null;
}

export const initialTeamState = (): TeamState => ({ exists: false, teamId: null, name: null });

export const evolveTeam = (state: TeamState, event: TeamEvent): TeamState => {
  switch (event.type) {
    case 'TeamCreated':
      return { exists: true, teamId: event.data.teamId, name: event.data.name };
    case 'TeamRenamed':
      return { ...state, name: event.data.name };
  }
};

export const decideTeam = (command: TeamCommand, state: TeamState): TeamEvent[] => {
  switch (command.type) {
    case 'CreateTeam':
      if (state.exists) throw invalidState('team.already_created', `Team ${command.teamId} already exists`, 'teamId');
      return [{ type: 'TeamCreated', data: { teamId: command.teamId, name: command.name } }];
    case 'RenameTeam':
      if (!state.exists) throw notFound('team.not_found', `Team ${command.teamId} does not exist`, 'teamId', { teamId: command.teamId });
      return state.name === command.name ? [] : [{ type: 'TeamRenamed', data: { teamId: command.teamId, name: command.name } }];
  }
};

export const teamDecider: Decider<TeamCommand, TeamEvent, TeamState> = { initialState: initialTeamState, evolve: evolveTeam, decide: decideTeam };
