import { EmbeddedDatabaseInUse, OutcomeUnknown, refusedConnectionSettings, type EventStoreUnavailable } from '../eventstore/errors.ts';
import type { CliCommand, CommandRun, DatabaseUse } from './command.ts';

/**
 * The database went away or stalled under a command: the cause, then what to do, as fits the command
 * (its `database` declaration). One that only reads changed nothing, whatever the connection did; one
 * whose writes a second run does not repeat can simply be run again; any other write whose outcome is
 * unknown is checked before it is run again.
 */
export const unavailableAdvice = (
  error: EventStoreUnavailable,
  running: { command: CliCommand; args: Pick<CommandRun, 'positionals' | 'values'> } | undefined,
): string => {
  // Nothing to wait for: the message says which process holds the folder and what to do.
  if (error instanceof EmbeddedDatabaseInUse) return `crm: ${error.message}`;
  const name = running ? `crm ${running.command.name}${running.args.positionals[0] ? ` ${running.args.positionals[0]}` : ''}` : 'the command';
  const settings = refusedConnectionSettings(error);
  if (settings) return `crm: the database is not available.\n  ${error.message}\n  Nothing was changed: ${settings}, then run ${name} again.`;
  const declared = running?.command.database;
  const use: DatabaseUse = (typeof declared === 'function' ? declared(running!.args) : declared) ?? { kind: 'writes' };
  const unknown = error instanceof OutcomeUnknown;
  // "It may or may not have committed" means nothing to a command that wrote nothing.
  const cause = use.kind === 'reads' && unknown ? error.lost : error.message;
  const advice =
    use.kind === 'reads'
      ? `${name} only reads: nothing was changed. Run it again once the database answers.`
      : use.kind === 'rerunnable'
        ? `Run the same command again once the database answers: ${use.note ?? 'nothing already done is done twice'}.`
        : unknown
          ? `Once the database answers, check whether it took effect${use.check ? ` (${use.check})` : ''} before running ${name} again.`
          : `Run ${name} again once the database answers.`;
  return `crm: ${unknown ? 'lost the connection to the database' : 'the database is not available'}.\n  ${cause}\n  ${advice}`;
};
