import { accessSync, constants, createWriteStream, lstatSync, readlinkSync, realpathSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { chmod, chown, readdir, rename, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from './command.ts';

/**
 * Files named on the command line. A path that cannot be read or written is a usage error naming
 * it and why, not an unexpected error (a directory given as the input), nor an unhandled 'error'
 * event ending the process with a stack trace (a report or output in a folder that does not exist).
 */

/** Checks that `path` is a file this process can read; `what` names it in the message. */
export const assertReadableFile = (path: string, what: string): void => {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
    accessSync(path, constants.R_OK);
  } catch (error) {
    throw new UsageError(
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? `no such file: ${path}` : `cannot read ${what} ${path}: ${(error as Error).message}`,
    );
  }
  if (!isFile) throw new UsageError(`${what} ${path} is not a file`);
};

/**
 * `at` opened for writing, once it is open; the message names `path` (what the user gave) and `what`.
 * A file it creates is readable by its owner alone: exports and import reports hold personal data (a
 * refused cell may be an address), and the usual umask made them readable by every user of the host.
 */
const open = async (at: string, path: string, what: string): Promise<WriteStream> => {
  const stream = createWriteStream(at, { mode: 0o600 });
  try {
    await once(stream, 'open');
  } catch (error) {
    throw new UsageError(`cannot write ${what} to ${path}: ${(error as Error).message.replace(at, path)}`);
  }
  return stream;
};

/**
 * A file opened (created or emptied) for writing, once it is open; `what` names it in the message.
 * Written with `writeText` and closed with `finishWriting`, which throw a failed write (a full disk):
 * the failure is kept on the stream (`errored`) rather than thrown from an 'error' event with nobody
 * listening, which ended `crm import --report <full disk>` with a stack trace.
 */
export const openForWriting = async (path: string, what: string): Promise<WriteStream> => {
  const stream = await open(path, path, what);
  stream.on('error', () => undefined);
  return stream;
};

/** A file written whole or not at all (`openReplacing`). */
export interface ReplacingFile {
  stream: WriteStream;
  /** Closes the file and moves it to its path, replacing what was there. */
  commit(): Promise<void>;
  /** Closes and removes what was written: the path keeps what it held. */
  discard(): Promise<void>;
}

/** Whether a process of this host still runs (EPERM: it does, under another user). */
const running = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Removes the partial files that earlier runs for `path` on this host left when they were killed
 * (SIGKILL, a power cut: no chance to clean up), those whose process is gone.
 */
const removeAbandoned = async (path: string, prefix: string): Promise<void> => {
  const folder = dirname(path);
  for (const name of await readdir(folder).catch(() => [] as string[])) {
    const pid = name.startsWith(prefix) && name.endsWith('.partial') ? name.slice(prefix.length, -'.partial'.length) : '';
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid || running(Number(pid))) continue;
    await rm(join(folder, name), { force: true });
  }
};

/**
 * A file written beside `path` and moved there once complete (a rename within the folder), so that a
 * run that fails half way (the database gone, Ctrl-C) leaves neither a truncated file nor an emptied
 * earlier one under the name a reader trusts. The partial file goes with the process too: on an exit
 * before `commit` (a second Ctrl-C) it is removed, and one left by a killed run is removed by the next.
 */
export const openReplacing = async (given: string, what: string): Promise<ReplacingFile> => {
  // Checked first: the whole file would be written beside it, then fail to replace a folder.
  const found = statSync(given, { throwIfNoEntry: false });
  if (found?.isDirectory()) throw new UsageError(`cannot write ${what} to ${given}: it is a folder; name a file in it (${join(given, 'export.csv')})`);
  // A pipe, a device or a socket (`/dev/stdout`, a FIFO a reader waits on) is written to as it is:
  // renamed over, it was replaced by a plain file (as root, /dev/full among them) and its reader got nothing.
  if (found && !found.isFile()) {
    const stream = await open(given, given, what);
    const close = () => closeStream(stream);
    return { stream, commit: close, discard: close };
  }
  // A link is followed: the file it names is replaced and the link stays.
  const path = lstatSync(given, { throwIfNoEntry: false })?.isSymbolicLink() ? linkTarget(given) : given;
  // Host and process in the name: runs on two machines sharing the folder never take each other's file.
  const prefix = `.${basename(path)}.${hostname()}.`;
  await removeAbandoned(path, prefix);
  const partial = join(dirname(path), `${prefix}${process.pid}.partial`);
  const removeAtExit = () => rmSync(partial, { force: true });
  // Before the file is opened: it is on disk before its 'open' event has run, and a quit-now (a
  // second Ctrl-C) in between left it behind (seen once in CI).
  process.once('exit', removeAtExit);
  let stream: WriteStream;
  try {
    stream = await open(partial, path, what);
  } catch (error) {
    process.off('exit', removeAtExit);
    throw error;
  }
  const close = () => closeStream(stream);
  return {
    stream,
    commit: async () => {
      await close();
      // The file replaced keeps its permissions and owner: an export of personal data over a file
      // readable by its owner alone was left readable by everyone.
      if (found) {
        await chmod(partial, found.mode & 0o7777);
        await chown(partial, found.uid, found.gid).catch(() => undefined);
      }
      await rename(partial, path);
      process.off('exit', removeAtExit);
    },
    discard: async () => {
      await close();
      await rm(partial, { force: true });
      process.off('exit', removeAtExit);
    },
  };
};

/** Ends a stream and waits for its file to be closed (once); a failed or closed one is left as it is. */
export const closeStream = async (stream: WriteStream): Promise<void> => {
  if (stream.closed) return;
  stream.end();
  await once(stream, 'close').catch(() => undefined);
};

/** Where a symbolic link points, whether or not that file exists yet. */
const linkTarget = (link: string): string => {
  try {
    return realpathSync(link);
  } catch {
    return resolve(dirname(link), readlinkSync(link));
  }
};

/**
 * Writes `text`, waiting for the stream to drain when its buffer is full (reports stay bounded in memory).
 * A stream whose write failed (ENOSPC) rejects with that failure: it never drains, and the wait for
 * it hung `crm import` for good (Ctrl-C included).
 */
export const writeText = async (out: WriteStream, text: string): Promise<void> => {
  if (out.destroyed) throw out.errored ?? new Error(`${String(out.path)} was closed before everything was written`);
  if (!out.write(text)) await once(out, 'drain');
};

/** Closes a file written with `writeText`, with what was buffered; rejects with the failure of a write that failed on the way. */
export const finishWriting = async (out: WriteStream): Promise<void> => {
  await closeStream(out);
  if (out.errored) throw out.errored;
};
