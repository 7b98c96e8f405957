import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { stringValue, UsageError, type CliCommand, type CommandRun, type OptionWithHelp } from '../command.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';

const POSITION = /^(0|[1-9][0-9]{0,19})$/;

/** Who ran the command, as recorded in the audit fact of a skip. */
const operator = (): string => {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers): the host still names the machine.
  }
  return `cli:${user}@${hostname()}`;
};

async function list(runtime: CrmRuntime, run: CommandRun): Promise<number> {
  // A store no `crm serve` or `crm project` has run on yet has no checkpoint table (it was an
  // unexpected error): the tables are made as `crm export` makes them, and every projection is listed.
  // Only then: a status read makes no DDL beside the projections at work.
  await runtime.prepareReadModels({ ifMissing: true });
  const statuses = await runtime.runner.status();
  for (const p of statuses) {
    const failure =
      p.state === 'failed'
        ? ` at position ${p.failedPosition ?? '?'} (stream ${p.failedStream ?? '?'}, event ${p.failedEventId ?? '?'}): ${p.lastError ?? ''}`
        : '';
    // `running` is the checkpoint's word for "not stopped": who runs it now is the lease's (with no process, it read as running).
    const runner = p.owner !== null ? `, run by ${p.owner}` : p.state === 'running' ? ', no process runs it now (crm serve or crm project does)' : '';
    run.out(`${p.name.padEnd(20)} ${p.state.padEnd(10)} position ${p.position} of ${p.headPosition}${failure}${runner}`);
  }
  const started = new Set(statuses.map((p) => p.name));
  const notStarted = runtime.projections.filter((p) => !started.has(p.name));
  if (notStarted.length > 0) {
    const head = await runtime.store.headPosition();
    for (const p of notStarted) run.out(`${p.name.padEnd(20)} ${'not run'.padEnd(10)} position 0 of ${head} (crm serve or crm project runs it)`);
  }
  return statuses.some((p) => p.state === 'failed') ? 1 : 0;
}

export const projectionsCommand: CliCommand = {
  name: 'projections',
  summary: 'Show the projections, and retry or skip the event one stopped on',
  usage: 'projections [list] | projections retry <name> | projections skip <name> --position <p> --reason "<why>"',
  details: `
A projection that fails on an event (a poison event) stops there, shown with the event's position,
stream and error in /ready, /metrics, reporting.projection_status and \`crm projections list\`; the
others keep running. Then, once the cause is understood:

  crm projections retry <name>
      runs it again from its checkpoint (after the code or data was fixed): the event is retried.
  crm projections skip <name> --position <p> --reason "<why>"
      leaves that one event out of that projection. The skip is recorded as an audit fact (event
      ProjectionEventSkipped in stream projection-<name>, with who and why); rebuilds and replays skip
      it too, and \`crm verify\` names it instead of reporting a difference. The position must be the
      one the projection failed at.

A running \`crm serve\` or \`crm project\` picks the change up within a second or two.
Exit code of list: 1 when a projection is failed.`,
  database: ({ positionals }) =>
    positionals[0] === 'skip'
      ? { kind: 'writes', check: 'crm projections list shows whether the projection runs again' }
      : positionals[0] === 'retry'
        ? { kind: 'rerunnable', note: 'a retry of a running projection changes nothing' }
        : { kind: 'reads' },
  options: {
    position: { type: 'string', description: 'skip: the position the projection failed at' },
    reason: { type: 'string', description: 'skip: why the event is left out (recorded for auditors)' },
  } satisfies Record<string, OptionWithHelp>,
  async run(run) {
    const [action = 'list', name, ...extra] = run.positionals;
    if (!['list', 'retry', 'skip'].includes(action)) throw new UsageError(`unknown action "${action}": use list, retry or skip`);
    if (action !== 'list' && !name) throw new UsageError(`${action} needs the projection's name (crm projections list names them)`);
    if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
    const position = stringValue(run, 'position');
    const reason = stringValue(run, 'reason')?.trim();
    if (action === 'skip') {
      if (!position || !POSITION.test(position)) throw new UsageError('skip needs --position <p>: the position the projection failed at (a whole number)');
      if (!reason) throw new UsageError('skip needs --reason "<why>": it is recorded for auditors');
      if (reason.length > 2000) throw new UsageError('--reason is at most 2000 characters');
      // Recorded in an event for auditors, as a command's reasons are: tabs and line breaks kept, other controls refused.
      const { MultiLineText } = await import('../../domain/shared.ts');
      const refused = MultiLineText.safeParse(reason).error;
      if (refused) throw new UsageError(`--reason ${refused.issues[0]?.message}`);
    }
    const { openCrm } = await import('../../runtime/crm.ts');
    const { ProjectionOperationRefused, retryProjection, skipPoisonEvent } = await import('../../projections/skips.ts');
    const { uuidV5 } = await import('../../commands/ids.ts');
    const runtime = await openCrm(run.config, { existingOnly: true, installedOnly: true });
    try {
      if (action === 'list') return await list(runtime, run);
      if (!runtime.projections.some((p) => p.name === name)) {
        throw new UsageError(`no projection "${name}": ${runtime.projections.map((p) => p.name).join(', ')}`);
      }
      const { db } = runtime.database;
      const schema = run.config.schemas.read;
      try {
        if (action === 'retry') {
          const before = await retryProjection(db, schema, name!);
          run.out(`Projection ${name} runs again from position ${before.position}; the event at ${before.failedPosition ?? '?'} is retried.`);
          return 0;
        }
        const skip = await skipPoisonEvent({
          db,
          schema,
          store: runtime.store,
          projection: name!,
          position: BigInt(position!),
          reason: reason!,
          actor: { userId: operator(), roles: ['admin'] },
          // The same skip run twice (say, after an interruption) is recorded once.
          eventId: uuidV5(`projection-skip\n${name}\n${position}`),
          correlationId: randomUUID(),
        });
        run.out(
          `Skipped ${skip.stream ? `event ${skip.eventId} of ${skip.stream}` : 'the event'} at position ${skip.position} for projection ${name}; ` +
            `recorded in stream projection-${name}. The projection runs again.`,
        );
        return 0;
      } catch (error) {
        if (!(error instanceof ProjectionOperationRefused)) throw error;
        run.err(`crm projections ${action}: ${error.message}`);
        return 1;
      }
    } finally {
      await runtime.close();
    }
  },
};
