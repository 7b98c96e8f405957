import type { CliCommand } from '../command.ts';
import { notWired } from './not-wired.ts';

export const rebuildCommand: CliCommand = {
  name: 'rebuild',
  summary: 'Rebuild read models from the events into a shadow schema, then swap them in',
  usage: 'rebuild [name]',
  details: `
Rebuilds one projection (or all) from position zero into a shadow schema while the live
read models keep answering queries, then swaps the new tables in atomically once caught up.
Interrupting it leaves the live read models untouched; run it again to start over.`,
  options: {},
  async run() {
    return notWired('crm rebuild');
  },
};
