import type { CliCommand, OptionWithHelp } from '../command.ts';
import { notWired } from './not-wired.ts';

export const verifyCommand: CliCommand = {
  name: 'verify',
  summary: 'Check that the read models equal a replay of the events (--chain: check tamper evidence)',
  usage: 'verify [--chain]',
  details: `
Replays all events into a shadow schema and compares every read-model table with the live one
(row hashes, then the differing rows). Prints a summary; exits 1 when anything differs.
With --chain, recomputes each stream's hash chain and names the first broken link instead.`,
  options: {
    chain: { type: 'boolean', description: 'verify the hash chains of the events instead of the read models' },
  } satisfies Record<string, OptionWithHelp>,
  async run() {
    return notWired('crm verify');
  },
};
