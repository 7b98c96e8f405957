import type { CliCommand, OptionWithHelp } from '../command.ts';
import { notWired } from './not-wired.ts';

export const replayCommand: CliCommand = {
  name: 'replay',
  summary: 'Build every read model as of a past instant into a separate schema',
  usage: 'replay --as-of <time> --schema <name>',
  details: `
Folds the events recorded up to --as-of (an ISO time) into new read-model tables in --schema,
so a reporting tool can query the past. The live read models are not touched. Safe to interrupt
and re-run (the target schema is rebuilt from the start).`,
  options: {
    'as-of': { type: 'string', description: 'the instant (ISO time, e.g. 2026-06-30T23:59:59Z)' },
    schema: { type: 'string', description: 'the schema to build the read models in (created; replaced if it exists)' },
  } satisfies Record<string, OptionWithHelp>,
  async run() {
    return notWired('crm replay');
  },
};
