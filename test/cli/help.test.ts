import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runCrm } from './support.ts';

const SUBCOMMANDS = ['serve', 'project', 'rebuild', 'replay', 'verify', 'import', 'demo', 'fit', 'api-key', 'master-key', 'reporting-role', 'claim-emails'];
const cwd = tmpdir();
const run = promisify(execFile);

describe('the crm command', () => {
  it('lists every subcommand, and each explains itself with --help', async () => {
    const overview = await runCrm(['--help'], { cwd, env: {} });
    expect(overview.code).toBe(0);
    for (const name of SUBCOMMANDS) expect(overview.stdout).toMatch(new RegExp(`^  ${name}\\s+\\S`, 'm'));

    const helps = await Promise.all(SUBCOMMANDS.map((name) => runCrm([name, '--help'], { cwd, env: {} })));
    helps.forEach((help, i) => {
      const name = SUBCOMMANDS[i]!;
      expect(help.code, name).toBe(0);
      expect(help.stdout, name).toContain(`Usage: crm ${name}`);
      expect(help.stdout, name).toContain('-h, --help');
    });
    // Every option's description stands apart from its name (`--reporting-schema <value>also create` did not).
    for (const [i, help] of helps.entries())
      for (const line of help.stdout.split('\n').filter((l) => /^ {2}(-\w, |\s{4})--/.test(l)))
        expect(line, SUBCOMMANDS[i]).toMatch(/^ {2}(-\w, | {4})--[a-z-]+( <\w+>)? {2,}\S/);
    expect(helps[SUBCOMMANDS.indexOf('replay')]!.stdout).toContain('--as-of <time>');
    expect(helps[SUBCOMMANDS.indexOf('verify')]!.stdout).toContain('--chain');
  });

  it('ends quietly, exit 0, when its reader closes the pipe early (crm ... | head)', async () => {
    const crm = fileURLToPath(new URL('../../cli/crm.js', import.meta.url));
    for (let i = 0; i < 4; i++) {
      // `head -c 0` closes its end before the help is written: the write meets EPIPE.
      const { stdout, stderr } = await run('bash', ['-c', 'node "$0" --help | head -c 0; echo "${PIPESTATUS[0]}"', crm], { cwd });
      expect(stderr).toBe('');
      expect(stdout.trim()).toBe('0');
    }
  });

  it('refuses an unknown subcommand or option with the usage and exit code 2', async () => {
    const unknown = await runCrm(['frobnicate'], { cwd, env: {} });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badOption = await runCrm(['demo', '--seeds', '3'], { cwd, env: {} });
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain('Usage: crm demo');
    // `crm verify extra` ran a whole verification as if the word were not there.
    const extra = await runCrm(['verify', 'extra'], { cwd, env: {} });
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain('unexpected argument "extra": crm verify takes options only');
    expect(extra.stderr).toContain('Usage: crm verify');
  });

  it('names a bad variable before opening anything', async () => {
    const result = await runCrm(['demo', '--dry-run'], { cwd, env: { PORT: 'eighty', LOG_LEVEL: 'chatty' } });
    expect(result.code).toBe(78);
    expect(result.stderr).toContain('PORT: a port number from 0 to 65535 (got "eighty")');
    expect(result.stderr).toContain('LOG_LEVEL');
  });

  it('reports an unreachable database with what to check, not a stack trace', async () => {
    const result = await runCrm(['api-key', 'list'], { cwd, env: { DATABASE_URL: 'postgres://crm@127.0.0.1:1/crm' } });
    expect(result.code).toBe(69);
    expect(result.stderr).toContain('DATABASE_URL');
    expect(result.stderr).toContain('127.0.0.1:1');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
