import type { CliCommand, OptionWithHelp } from '../command.ts';
import { notWired } from './not-wired.ts';

export const fitCommand: CliCommand = {
  name: 'fit',
  summary: 'Fit the analytics models (BG/NBD, Gamma-Gamma, churn, segments) on the recorded events',
  usage: 'fit [--as-of <time>] [--time-unit day',
  details: `
week|month]|Trains every batch model on the events recorded so far (after the analytics projections catch
up) and stores it with a version; scoring after that is incremental. Safe to interrupt: nothing
is stored until the fit completes.`,
  options: {
    'as-of': { type: 'string', description: 'fit on events before this instant (default: now)' },
    'time-unit': { type: 'string', description: 'day, week or month (default week)' },
    horizon: { type: 'string', description: 'forecast horizon in time units (default 52)' },
    'discount-rate': { type: 'string', description: 'per time unit (default 0.01)' },
  } satisfies Record<string, OptionWithHelp>,
  async run() {
    return notWired('crm fit');
  },
};
