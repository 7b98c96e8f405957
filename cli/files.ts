import { accessSync, constants, createWriteStream, statSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
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

/** A file opened (created or emptied) for writing, once it is open; `what` names it in the message. */
export const openForWriting = async (path: string, what: string): Promise<WriteStream> => {
  const stream = createWriteStream(path);
  try {
    await once(stream, 'open');
  } catch (error) {
    throw new UsageError(`cannot write ${what} to ${path}: ${(error as Error).message}`);
  }
  return stream;
};

/** Writes `text`, waiting for the stream to drain when its buffer is full (reports stay bounded in memory). */
export const writeText = async (out: WriteStream, text: string): Promise<void> => {
  if (!out.write(text)) await once(out, 'drain');
};
