import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { openDatabase, processStartTime } from '../../runtime/crm.ts';

/**
 * The pid file that keeps a second process off an embedded database folder, as a crash leaves it:
 * after a restart its pid may belong to another program, which must not keep the folder locked.
 */
const folders: string[] = [];
const dataFolder = () => {
  const cwd = mkdtempSync(join(tmpdir(), 'crm-pid-'));
  folders.push(cwd);
  mkdirSync(join(cwd, '.crm-data'));
  return { config: loadConfig({}, cwd), pidFile: join(cwd, '.crm-data', 'crm.pid') };
};

afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

const noProc = processStartTime(1) === undefined;
if (noProc) console.warn('pid file tests skipped: no /proc here to read a process start time from');

describe.skipIf(noProc)('the embedded database folder lock', () => {
  it('takes over a pid file whose pid now belongs to another program (started at another time)', async () => {
    const { config, pidFile } = dataFolder();
    // Pid 1 runs, but it is not the process that wrote this file: its start time differs.
    writeFileSync(pidFile, `1 ${Number(processStartTime(1)) + 12345}`);
    const database = await openDatabase(config);
    try {
      expect(readFileSync(pidFile, 'utf8').split('\n')[0]).toBe(`${process.pid} ${processStartTime(process.pid)}`);
    } finally {
      await database.close();
    }
    expect(existsSync(pidFile)).toBe(false);
  }, 120_000);

  it('takes over the pid file of a folder copied while its process ran (the process holds the original, not the copy)', async () => {
    const original = dataFolder();
    const copy = dataFolder();
    const other = spawn('sleep', ['60']);
    try {
      // As the running process wrote it in the original folder, copied along with it.
      const { dev, ino } = statSync(join(original.pidFile, '..'));
      writeFileSync(copy.pidFile, `${other.pid} ${processStartTime(other.pid!)}\n${dev}:${ino}`);
      const database = await openDatabase(copy.config);
      await database.close();
      // The same file in the original folder still keeps a second process out.
      writeFileSync(original.pidFile, `${other.pid} ${processStartTime(other.pid!)}\n${dev}:${ino}`);
      await expect(openDatabase(original.config)).rejects.toThrow(`is in use by another crm process (pid ${other.pid})`);
    } finally {
      other.kill('SIGKILL');
    }
  }, 120_000);

  it('keeps out a second process while the one named (pid and start time) runs, saying how to recover', async () => {
    const { config, pidFile } = dataFolder();
    const other = spawn('sleep', ['60']);
    try {
      writeFileSync(pidFile, `${other.pid} ${processStartTime(other.pid!)}`);
      const opening = openDatabase(config);
      await expect(opening).rejects.toBeInstanceOf(EventStoreUnavailable);
      await expect(opening).rejects.toThrow(`is in use by another crm process (pid ${other.pid})`);
      await expect(opening).rejects.toThrow(`delete ${pidFile}`);
      // The file of the running process is left as it was.
      expect(readFileSync(pidFile, 'utf8')).toBe(`${other.pid} ${processStartTime(other.pid!)}`);
    } finally {
      other.kill('SIGKILL');
    }
  });
});
