import { describe, expect, it } from 'vitest';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { openWhenDatabaseAnswers } from '../../cli/wait-for-database.ts';
import { unavailableAdvice } from '../../cli/advice.ts';

/** What the wait reads of a command's run: its database, its signal and where it speaks. */
const runOn = (kind: 'postgres' | 'pglite', signal = new AbortController().signal) => {
  const lines: string[] = [];
  const database = kind === 'postgres' ? { kind, url: 'postgres://x@127.0.0.1:1/crm', preparedStatements: true } : { kind, dataDir: '/tmp/x' };
  return { lines, run: { config: { database } as never, signal, err: (line: string) => lines.push(line) } };
};

const refusing = () => {
  let attempts = 0;
  return {
    get attempts() {
      return attempts;
    },
    open: async (): Promise<string> => {
      attempts += 1;
      throw new EventStoreUnavailable('connect ECONNREFUSED 127.0.0.1:1');
    },
  };
};

describe('openWhenDatabaseAnswers', () => {
  it('tries again until the database answers, saying once that it waits and once that it starts', async () => {
    const { lines, run } = runOn('postgres');
    let attempts = 0;
    const opened = await openWhenDatabaseAnswers(run, async () => {
      attempts += 1;
      if (attempts < 3) throw new EventStoreUnavailable('connect ECONNREFUSED 127.0.0.1:1');
      return 'runtime';
    });
    expect(opened).toBe('runtime');
    expect(attempts).toBe(3);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^The database is not available: connect ECONNREFUSED 127\.0\.0\.1:1\n\s+Waiting for it/);
    expect(lines[1]).toMatch(/^The database answers after \d+ s; starting\.$/);
  });

  it('gives up with the last failure once the bound has passed', async () => {
    const { run } = runOn('postgres');
    const database = refusing();
    await expect(openWhenDatabaseAnswers(run, database.open, { maxWaitMs: 600 })).rejects.toThrow(EventStoreUnavailable);
    expect(database.attempts).toBeGreaterThan(1);
  });

  it('does not wait for a database that does not exist, nor on credentials the server refuses', async () => {
    for (const [code, told] of [
      ['3D000', 'does not exist'],
      ['28P01', 'refused the user or password'],
    ]) {
      const { lines, run } = runOn('postgres');
      let attempts = 0;
      const refused = async () => {
        attempts += 1;
        throw new EventStoreUnavailable('Cannot reach PostgreSQL', { cause: Object.assign(new Error('refused'), { code }) });
      };
      const error = await openWhenDatabaseAnswers(run, refused).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EventStoreUnavailable);
      expect(attempts).toBe(1);
      expect(lines).toEqual([]);
      expect(unavailableAdvice(error as EventStoreUnavailable, undefined)).toContain(told);
    }
  });

  it('does not wait on another error, nor for the embedded database', async () => {
    const { run } = runOn('postgres');
    let attempts = 0;
    const bad = async () => {
      attempts += 1;
      throw new Error('password authentication failed');
    };
    await expect(openWhenDatabaseAnswers(run, bad)).rejects.toThrow('password authentication failed');
    expect(attempts).toBe(1);

    const embedded = runOn('pglite');
    const database = refusing();
    await expect(openWhenDatabaseAnswers(embedded.run, database.open)).rejects.toThrow(EventStoreUnavailable);
    expect(database.attempts).toBe(1);
    expect(embedded.lines).toEqual([]);
  });

  it('stops waiting when the command is interrupted', async () => {
    const controller = new AbortController();
    const { run } = runOn('postgres', controller.signal);
    setTimeout(() => controller.abort(), 300);
    await expect(openWhenDatabaseAnswers(run, refusing().open)).rejects.toThrow('stopped while waiting for the database; nothing was started');
  });
});
