import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CRM_BIN, cleanEnv, runCrm } from './support.ts';

/**
 * Files and folders of this machine the CRM could not make, open or write: an operator found each
 * printed as "crm: unexpected error" with a stack trace and exit 1. Each is now one line naming the
 * path and what to do, with a sysexits code.
 */
const folder = mkdtempSync(join(tmpdir(), 'crm-machine-files-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const noStack = (stderr: string) => expect(stderr).not.toMatch(/unexpected error|\n\s+at /);

describe('files of this machine the CRM cannot use', () => {
  it('a file where the data folder should be: named, with what to do (exit 73)', async () => {
    const inTheWay = join(folder, 'data-is-a-file');
    writeFileSync(inTheWay, '');
    const result = await runCrm(['demo'], { cwd: folder, env: { CRM_DATA_DIR: inTheWay } });
    expect(result.code, result.stderr).toBe(73);
    expect(result.stderr).toContain(`crm demo: EEXIST mkdir ${inTheWay}: a file is in the way of a folder the CRM makes`);
    noStack(result.stderr);
  });

  it('a file that fails to read: named, exit 74', async () => {
    const result = await runCrm(['import', '/proc/self/mem'], { cwd: folder, env: { CRM_DATA_DIR: join(folder, 'data') } });
    expect(result.code, result.stderr).toBe(74);
    expect(result.stderr).toContain('crm import: EIO read: the device failed to read or write');
    noStack(result.stderr);
  });

  it('an import report on a full disk: said in one line, exit 74, where it crashed with a stack or hung', async () => {
    const customers = join(folder, 'refused.csv');
    writeFileSync(customers, ['name,email', ...Array.from({ length: 500 }, (_, i) => `Row ${i},not-an-email-${i}`)].join('\n'));
    const result = await runCrm(['import', customers, '--report', '/dev/full'], {
      cwd: folder,
      env: { CRM_DATA_DIR: join(folder, 'data') },
      timeoutMs: 120_000,
    });
    expect(result.code, result.stderr).toBe(74);
    expect(result.stderr).toContain('crm import: ENOSPC write: the disk is full: free some space and run it again.');
    noStack(result.stderr);
  });

  it('a limit of open files too low to load the modules: said in one line with the limit to set, exit 71, not an uncaught EMFILE stack', async () => {
    // `ulimit -n 64` (128 fails the same; as a container or an init system may set it): the modules fail to load before main.ts runs.
    const child = spawn('/bin/sh', ['-c', `ulimit -n 64 && exec "${process.execPath}" "${CRM_BIN}" --help`], { cwd: folder, env: cleanEnv({}) });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(71);
    expect(stderr).toMatch(/^crm: EMFILE open \S+: too many open files: raise the limit of open files to 1024 or more \(`ulimit -n 1024`/);
    noStack(stderr);
  });

  it('output to a full disk: said in one line, exit 74', async () => {
    const full = openSync('/dev/full', 'w');
    try {
      const child = spawn(process.execPath, [CRM_BIN, '--help'], { cwd: folder, env: cleanEnv({}), stdio: ['ignore', full, 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code, stderr).toBe(74);
      expect(stderr).toContain('crm: cannot write the output: ENOSPC write: the disk is full');
      noStack(stderr);
    } finally {
      closeSync(full);
    }
  });
});
