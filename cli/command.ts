import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { CrmConfig } from './config.ts';

/** What every subcommand receives: its parsed arguments, the configuration and a way to notice Ctrl-C. */
export interface CommandRun {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  config: CrmConfig;
  /** Aborted on the first SIGINT/SIGTERM: long work stops at the next safe point. */
  signal: AbortSignal;
  out: (line: string) => void;
  err: (line: string) => void;
}

export interface CliCommand {
  name: string;
  summary: string;
  usage: string;
  /** Extra help text: what it does, what is safe to interrupt, examples. */
  details: string;
  options: Record<string, OptionWithHelp>;
  /** What the first Ctrl-C says will happen, when not the default (work done so far is kept, run again to resume). */
  onInterrupt?: string;
  /** How many arguments besides options it takes (0: none); unset, it reads its own. */
  maxArguments?: number;
  /**
   * What it does to the database, for the advice when the database fails under it (cli/main.ts); a
   * function when it depends on the subcommand. Default: `writes`.
   */
  database?: DatabaseUse | ((run: Pick<CommandRun, 'positionals' | 'values'>) => DatabaseUse);
  /** Returns the exit code. */
  run(run: CommandRun): Promise<number>;
}

/**
 * - `reads`: changes nothing (or only a scratch copy of its own): run it again once the database answers.
 * - `rerunnable`: writes that a second run does not repeat (idempotency keys, checks first): run the
 *   same command again; `note` says what a rerun does with what is already stored.
 * - `writes`: a write that a second run would make again: check whether it took effect first
 *   (`check` names how), when the connection was lost after the statement was sent.
 */
export type DatabaseUse = { kind: 'reads' } | { kind: 'rerunnable'; note?: string } | { kind: 'writes'; check?: string };

/** A mistake on the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The command stopped at a safe point on Ctrl-C (or SIGTERM): exit 130, its message says what is left. */
export class Interrupted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Interrupted';
  }
}

/** The options' names in one column, as wide as the longest needs: a long name ran into its description. */
const HELP_COLUMN = 30;

export const helpText = (command: CliCommand): string => {
  const rows = Object.entries(command.options)
    .filter(([name]) => name !== 'help')
    .map(([name, option]): [string, string] => {
      const short = option.short ? `-${option.short}, ` : '    ';
      const arg = option.type === 'string' ? ` <${name === 'as-of' ? 'time' : 'value'}>` : '';
      return [`  ${short}--${name}${arg}`, option.description];
    });
  rows.push(['  -h, --help', 'show this help']);
  const width = Math.max(HELP_COLUMN, ...rows.map(([left]) => left.length + 2));
  return [
    `Usage: crm ${command.usage}`,
    '',
    command.summary,
    '',
    command.details.trim(),
    '',
    'Options:',
    ...rows.map(([left, right]) => left.padEnd(width) + right),
  ].join('\n');
};

export const parseCommandArgs = (command: CliCommand, argv: string[]) => {
  // Descriptions are ours, not parseArgs's: strip them before handing the options over.
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, { description: _description, ...option }] of Object.entries(command.options)) options[name] = option;
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  // `crm verify extra` ran a whole verification as if the word were not there.
  const extra = command.maxArguments === undefined ? undefined : parsed.positionals[command.maxArguments];
  if (extra !== undefined)
    throw new UsageError(
      `unexpected argument ${JSON.stringify(extra)}: crm ${command.name} takes ${command.maxArguments === 0 ? 'options only' : `at most ${command.maxArguments} argument(s)`}`,
    );
  return parsed;
};

/** Option declarations with a description for --help. */
export type OptionWithHelp = { type: 'string' | 'boolean'; short?: string; multiple?: boolean; description: string };

export const stringValue = (run: CommandRun, name: string): string | undefined => {
  const value = run.values[name];
  return typeof value === 'string' ? value : undefined;
};

export const intValue = (run: CommandRun, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
  const raw = stringValue(run, name);
  if (raw === undefined) return fallback;
  // Digits only: Number() would read "" as 0 (`--port ""`: any free port), "0x50" as 80 and "1e3" as 1000.
  const value = /^-?[0-9]+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be a whole number between ${min} and ${max} (got "${raw}")`);
  }
  return value;
};
