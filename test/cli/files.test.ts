import { spawn } from 'node:child_process';
import { chmodSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { finishWriting, openForWriting, openReplacing, writeText } from '../../cli/files.ts';

/**
 * `--output` of `crm export`: a file written whole or not at all, beside its path and moved there.
 * An operator found it replacing what the path was: a link (the file it named kept its old content),
 * a FIFO a reader waited on, `/dev/stdout` and `/dev/full` (as root), and a file readable by its owner
 * alone came back readable by everyone.
 */
const folder = mkdtempSync(join(tmpdir(), 'crm-files-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const writeWhole = async (path: string, text: string) => {
  const file = await openReplacing(path, 'the export');
  file.stream.write(text);
  await file.commit();
};

describe('openReplacing', () => {
  it('keeps the permissions of the file it replaces', async () => {
    const path = join(folder, 'secret.csv');
    writeFileSync(path, 'old\n');
    chmodSync(path, 0o600);
    await writeWhole(path, 'new\n');
    expect(readFileSync(path, 'utf8')).toBe('new\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('creates a new file readable by its owner alone (it holds personal data), whatever the umask', async () => {
    const path = join(folder, 'new.csv');
    await writeWhole(path, 'new\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const report = await openForWriting(join(folder, 'report.csv'), 'the report');
    report.end();
    await once(report, 'close');
    expect(statSync(join(folder, 'report.csv')).mode & 0o777).toBe(0o600);
  });

  it('replaces the file a link names and keeps the link, also a link to a file not there yet', async () => {
    const target = join(folder, 'target.csv');
    writeFileSync(target, 'old\n');
    const link = join(folder, 'link.csv');
    symlinkSync(target, link);
    await writeWhole(link, 'new\n');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe('new\n');

    const dangling = join(folder, 'dangling.csv');
    symlinkSync('later.csv', dangling);
    await writeWhole(dangling, 'first\n');
    expect(readlinkSync(dangling)).toBe('later.csv');
    expect(readFileSync(join(folder, 'later.csv'), 'utf8')).toBe('first\n');
  });

  it('writes into a FIFO as it is, for the reader waiting on it', async () => {
    const fifo = join(folder, 'out.fifo');
    const made = spawn('mkfifo', [fifo]);
    await new Promise((resolve) => made.on('close', resolve));
    const reader = spawn('cat', [fifo]);
    let read = '';
    reader.stdout.on('data', (chunk: Buffer) => (read += chunk.toString()));
    const ended = new Promise((resolve) => reader.on('close', resolve));
    await writeWhole(fifo, 'row\n');
    await ended;
    expect(read).toBe('row\n');
    expect(statSync(fifo).isFIFO()).toBe(true);
  });
});

describe('writeText and finishWriting on a disk that is full', () => {
  // /dev/full answers every write with ENOSPC, as a full disk does.
  it('reject with ENOSPC at each write after the first failure and at the close, instead of waiting for a drain that never comes', async () => {
    const report = await openForWriting('/dev/full', 'the report');
    // More than the stream buffers: the write waits for a drain, and the failure comes instead.
    await expect(writeText(report, 'x'.repeat(64 * 1024))).rejects.toMatchObject({ code: 'ENOSPC', syscall: 'write' });
    // The stream is destroyed now: a write never drains. It hung `crm import` for good before.
    await expect(writeText(report, '2,a refused row\n')).rejects.toMatchObject({ code: 'ENOSPC' });
    await expect(finishWriting(report)).rejects.toMatchObject({ code: 'ENOSPC' });
  });

  it('a failure nobody waits for (a short line, buffered) is kept for the next write, not thrown from an error event', async () => {
    const report = await openForWriting('/dev/full', 'the report');
    await writeText(report, 'line,reason\n');
    await new Promise<void>((resolve) => report.once('close', () => resolve()));
    await expect(writeText(report, '2,a refused row\n')).rejects.toMatchObject({ code: 'ENOSPC' });
  });
});
