import {
  databaseBusy,
  DiskFull,
  EventStoreUnavailable,
  MasterKeyMismatch,
  shortageIn,
  StoreDoesNotFitServer,
  StoreFromNewerVersion,
  StoreNotFound,
} from '../eventstore/errors.ts';
import { inCauses } from '../shared/causes.ts';
import { OPEN_FILE_LIMIT_ADVICE } from './open-files.js';
import { unavailableAdvice } from './advice.ts';
import { ReadModelRebuilding, ReadModelsFromNewerVersion, ReadModelsHeld, RebuildShadowLost } from '../projections/errors.ts';
import { helpText, Interrupted, parseCommandArgs, UsageError, type CliCommand, type CommandRun } from './command.ts';
import { ConfigError, loadConfig } from './config.ts';
import { commands } from './commands/index.ts';
import { terminalLines } from '../shared/terminal-text.ts';

/** The `crm` command: parses the subcommand, loads the configuration, runs it, maps errors to advice. */

// A reader that stops early (`crm export customers | head`) closes the pipe: the rest of the output
// has nowhere to go, which ends the command as SIGPIPE would, not with an unhandled error.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (error: NodeJS.ErrnoException) => {
    // The terminal hung up (a closed ssh session, whose SIGHUP stops the command cleanly): what is
    // written there is lost, and the stop goes on. Ended here, `crm serve` cut its requests in flight
    // and left the embedded store's crm.pid behind.
    if (error.code === 'EIO' || error.code === 'ERR_STREAM_DESTROYED') return;
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    // Output that cannot be written (a full disk under `> file`): said in one line, not thrown from here with a stack.
    const advice = FILE_ERRORS[error.code ?? '']?.advice;
    if (stream === process.stdout) process.stderr.write(`crm: cannot write the output: ${fileErrorText(error)}${advice ? `: ${advice}` : ''}.\n`);
    process.exit(74); // EX_IOERR
  });

const out = (line: string) => process.stdout.write(`${line}\n`);
/**
 * Messages name what an operator or a file gave (a file's path, an option's value, a column): its
 * control characters are shown escaped, never obeyed by the terminal. Line feeds and tabs are kept.
 */
const err = (line: string) => process.stderr.write(`${terminalLines(line)}\n`);

const overview = (): string =>
  [
    'Usage: crm <command> [options]',
    '',
    'An event-sourced CRM: commands become events, projections keep PostgreSQL read models current.',
    'With no configuration it runs on an embedded PostgreSQL (PGlite) in ./.crm-data.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(Math.max(13, ...commands.map((n) => n.name.length + 1)))}${c.summary}`),
    '',
    "Run `crm <command> --help` for a command's options. Configuration: environment variables (README.md).",
  ].join('\n');

/** The command being run, for advice that fits it when it fails. */
let running: { command: CliCommand; args: Pick<CommandRun, 'positionals' | 'values'> } | undefined;
/** The embedded database's data folder, when the command runs on one: where a full disk needs space. */
let embeddedDataDir: string | undefined;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const target = name === 'help' ? commands.find((c) => c.name === rest[0]) : undefined;
    out(target ? helpText(target) : overview());
    return 0;
  }
  const command: CliCommand | undefined = commands.find((c) => c.name === name);
  if (!command) {
    err(`crm: unknown command "${name}"\n\n${overview()}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseCommandArgs(command, rest);
  } catch (error) {
    err(`crm ${command.name}: ${(error as Error).message}\n\n${helpText(command)}`);
    return 2;
  }
  if (parsed.values.help) {
    out(helpText(command));
    return 0;
  }

  running = { command, args: { positionals: parsed.positionals, values: parsed.values as CommandRun['values'] } };

  // Configuration is validated before anything opens: a bad variable is named, nothing half-starts.
  const config = loadConfig(process.env, process.cwd());
  if (config.database.kind === 'pglite') embeddedDataDir = config.database.dataDir;

  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts += 1;
    if (interrupts === 1) {
      const what = command.onInterrupt ?? 'work done so far is kept; run the command again to resume';
      err(`\n${signal}: stopping at the next safe point (${what}). Press Ctrl-C again to quit now.`);
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A terminal or ssh session closing sends SIGHUP, whose default ended the process at once: requests
  // in flight cut, outcome unknown, and the embedded store's crm.pid left behind.
  process.on('SIGHUP', onSignal);

  // The process lives as long as the command runs. Background loops (projection feed, lease renewal,
  // reconnects) keep their timers unref'd, so while the database is away nothing else would hold it:
  // with the pool's sockets closed, Node would find its event loop empty and end with exit 0 in the
  // middle of `crm project` (or a rebuild waiting on its feed). Released when the command returns.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    return await command.run({
      values: parsed.values as Record<string, string | boolean | string[] | undefined>,
      positionals: parsed.positionals,
      config,
      signal: controller.signal,
      out,
      err,
    });
  } finally {
    clearInterval(keepAlive);
  }
}

/** The message of the error, or of one of its causes (five deep at most), that `matches`. */
const messageInCauses = (error: unknown, matches: (at: Error) => boolean): string | undefined => inCauses(error, matches)?.message;

/** PostgreSQL's message when it refused a statement for want of a privilege (42501), here or in a cause. */
const insufficientPrivilege = (error: unknown): string | undefined => messageInCauses(error, (at) => (at as { code?: unknown }).code === '42501');

/**
 * The database's files could not be read (a truncated or damaged table file: SQLSTATE XX001, XX002,
 * 58030, 58P01), here or in a cause. It printed as an unexpected error with a WebAssembly stack, and
 * exited 1, as a failed check does.
 */
const damagedFiles = (error: unknown): string | undefined =>
  messageInCauses(error, (at) => {
    const code = (at as { code?: unknown }).code;
    return (
      (typeof code === 'string' && ['XX001', 'XX002', '58030', '58P01'].includes(code)) || /could not read blocks? |invalid page in block/.test(at.message)
    );
  });

/**
 * A file or folder of this machine that could not be made, opened or written (the data folder, a
 * report, the output): a permission, a full or read-only disk, a read that failed. Printed with the
 * stack as an unexpected error before, for what the operator fixes on the machine.
 */
const FILE_ERRORS: Record<string, { exit: number; advice: string }> = {
  EACCES: { exit: 77, advice: 'run it as a user that may, or change the permissions' },
  EPERM: { exit: 77, advice: 'run it as a user that may, or change the permissions' },
  EROFS: { exit: 73, advice: 'the file system is read-only: use a folder on a writable one' },
  ENOSPC: { exit: 74, advice: 'the disk is full: free some space and run it again' },
  EDQUOT: { exit: 74, advice: 'the disk quota is used up: free some space and run it again' },
  EEXIST: { exit: 73, advice: 'a file is in the way of a folder the CRM makes: move it, or choose another path (CRM_DATA_DIR)' },
  ENOTDIR: { exit: 73, advice: 'a file is in the way of a folder the CRM makes: move it, or choose another path (CRM_DATA_DIR)' },
  EIO: { exit: 74, advice: 'the device failed to read or write: check the disk, or choose another file' },
  EMFILE: { exit: 71, advice: OPEN_FILE_LIMIT_ADVICE },
  ENFILE: { exit: 71, advice: OPEN_FILE_LIMIT_ADVICE },
};

const fileErrorText = (error: NodeJS.ErrnoException): string =>
  `${error.code ?? 'error'} ${error.syscall ?? ''}${error.path ? ` ${error.path}` : ''}`.replace(/ +/g, ' ').trim();

/** An operating-system error about a path of this machine, here or in a cause. */
const fileError = (error: unknown): NodeJS.ErrnoException | undefined =>
  inCauses(error, (at) => {
    const e = at as NodeJS.ErrnoException;
    // A path, or a read or write of an open file: not a socket's refusal (a port is the listen's own message).
    return typeof e.code === 'string' && e.code in FILE_ERRORS && (e.path !== undefined || e.syscall === 'read' || e.syscall === 'write');
  });

/** Errors the user can act on are printed as advice; anything else keeps its stack for a bug report. */
const report = (error: unknown): number => {
  if (error instanceof ConfigError) {
    err(error.message);
    return 78; // EX_CONFIG
  }
  if (error instanceof UsageError) {
    err(`crm: ${error.message}`);
    return 2;
  }
  if (
    error instanceof MasterKeyMismatch ||
    error instanceof ReadModelsFromNewerVersion ||
    error instanceof StoreFromNewerVersion ||
    error instanceof StoreDoesNotFitServer
  ) {
    err(`crm: ${error.message}`);
    return 78; // EX_CONFIG
  }
  if (error instanceof Interrupted || error instanceof StoreNotFound) {
    err(`crm ${running?.command.name ?? ''}: ${error.message}`);
    return error instanceof Interrupted ? 130 : 66; // EX_NOINPUT
  }
  // Before the unavailable database: freeing space is what makes it available again.
  // Before an outage's advice: a wait does not free space. SQLSTATE 53100, or the embedded engine's
  // "could not write to file ...: No space left on device", printed as an unexpected error with a stack before;
  // the embedded database's reserve reached (DiskFull) says itself how much is free and needed.
  const shortage = shortageIn(error);
  if (shortage?.shortage === 'disk') {
    const where = embeddedDataDir ? ` on the disk of the data folder ${embeddedDataDir} (CRM_DATA_DIR)` : " on the database server's disk";
    const said = shortage.said;
    err(
      `crm ${running?.command.name ?? ''}: ${said instanceof DiskFull ? said.message : `the disk is full (${said.message}): free some space${where} and run it again.`}`,
    );
    return 74; // EX_IOERR
  }
  if (error instanceof EventStoreUnavailable) {
    err(unavailableAdvice(error, running));
    return 69; // EX_UNAVAILABLE
  }
  // A lock held past lock_timeout by another session (a BI tool's open transaction on a table a first
  // start of a new version alters): nothing is wrong with the command, which "unexpected error" said.
  if (databaseBusy(error)) {
    err(
      `crm ${running?.command.name ?? ''}: the database is busy: ${(error as Error).message}. Another session holds a lock this needs ` +
        '(pg_locks and pg_stat_activity name it): run the command again in a moment, or end that session.',
    );
    return 75; // EX_TEMPFAIL
  }
  if (error instanceof ReadModelRebuilding || error instanceof RebuildShadowLost || error instanceof ReadModelsHeld) {
    err(`crm: ${error.message}`);
    return 75; // EX_TEMPFAIL
  }
  const refused = insufficientPrivilege(error);
  if (refused) {
    err(
      `crm ${running?.command.name ?? ''}: the database refused this user: ${refused}. Every crm command sets up (or checks) its schemas: ` +
        'run it as a user that may create schemas in the database and owns the CRM schemas, or grant this one those rights.',
    );
    return 77; // EX_NOPERM
  }
  const damaged = damagedFiles(error);
  if (damaged) {
    err(
      `crm ${running?.command.name ?? ''}: the database's files are damaged (${damaged}). Stop every process using it, then restore the data folder ` +
        '(CRM_DATA_DIR) or the database from a backup, and check the restored one with `crm verify --chain --anchors-file <your anchors>`.',
    );
    return 74; // EX_IOERR
  }
  const file = fileError(error);
  if (file) {
    const { exit, advice } = FILE_ERRORS[file.code!]!;
    err(`crm ${running?.command.name ?? ''}: ${fileErrorText(file)}: ${advice}.`);
    return exit;
  }
  err(`crm: unexpected error\n${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return 1;
};

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Long-lived handles (pools, timers) are closed by the commands; a forced exit is the backstop.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (error: unknown) => {
    process.exitCode = report(error);
    setTimeout(() => process.exit(process.exitCode), 500).unref();
  },
);
