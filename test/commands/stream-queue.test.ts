import { describe, expect, it } from 'vitest';
import { createStreamQueue, type GroupAttempt, type MemberOutcome } from '../../commands/stream-queue.ts';

/** The queue's groups on their own (commands/stream-queue.ts `join`), with attempts that record what they were given. */
const recording = <T>(answers: (commands: string[]) => 'lost' | MemberOutcome<T>[]) => {
  const calls: string[][] = [];
  const attempt: GroupAttempt<string, T> = async (commands) => {
    calls.push(commands);
    return answers(commands);
  };
  return { calls, attempt };
};

describe('groups of commands on one stream', () => {
  it('are formed of the commands that arrive while the stream is busy, in arrival order, one attempt per group', async () => {
    const queue = createStreamQueue({ windowMs: 60_000 });
    const { calls, attempt } = recording((commands) => commands.map((c) => ({ value: c.toUpperCase() })));
    const answers = await Promise.all(['a', 'b', 'c'].map((c) => queue.join('customer-1', c, attempt)));
    expect(answers).toEqual(['A', 'B', 'C']);
    expect(calls).toEqual([['a', 'b', 'c']]);
    expect(queue.pending()).toBe(0);
  });

  it('give each member its own outcome, and try again at once the members left for later', async () => {
    const queue = createStreamQueue({ windowMs: 60_000 });
    const { calls, attempt } = recording((commands) =>
      commands.length === 3 ? [{ value: 1 }, { error: new Error('refused') }, 'later'] : commands.map(() => ({ value: 2 })),
    );
    const outcomes = await Promise.allSettled(['a', 'b', 'c'].map((c) => queue.join('customer-1', c, attempt)));
    expect(outcomes).toMatchObject([
      { status: 'fulfilled', value: 1 },
      { status: 'rejected', reason: { message: 'refused' } },
      { status: 'fulfilled', value: 2 },
    ]);
    expect(calls).toEqual([['a', 'b', 'c'], ['c']]);
    expect(queue.redecided()).toBe(0);
  });

  it('decide every member again after a lost race, and refuse as busy the members whose window is spent', async () => {
    let lost = 1;
    const again = createStreamQueue({ windowMs: 60_000 });
    const first = recording((commands) => (lost-- > 0 ? 'lost' : commands.map((c) => ({ value: c }))));
    expect(await Promise.all(['a', 'b'].map((c) => again.join('customer-1', c, first.attempt)))).toEqual(['a', 'b']);
    expect(first.calls).toEqual([
      ['a', 'b'],
      ['a', 'b'],
    ]);
    expect(again.redecided()).toBe(2);

    const spent = createStreamQueue({ windowMs: 0 });
    const always = recording(() => 'lost');
    const refused = await Promise.allSettled(['a', 'b'].map((c) => spent.join('customer-1', c, always.attempt)));
    expect(refused).toMatchObject([
      {
        status: 'rejected',
        reason: { name: 'CommandsBusy', reason: 'contention', message: 'customer-1 kept changing under this command for 0 ms; retry shortly.' },
      },
      { status: 'rejected', reason: { name: 'CommandsBusy', reason: 'contention' } },
    ]);
    expect(always.calls).toHaveLength(1);
  });

  it('keep their place behind a command that runs alone, and a command alone keeps its place behind a group', async () => {
    const queue = createStreamQueue({ windowMs: 60_000 });
    const order: string[] = [];
    const { attempt } = recording((commands) => {
      order.push(commands.join('+'));
      return commands.map((c) => ({ value: c }));
    });
    const alone = (name: string) =>
      queue.run('customer-1', undefined, async () => {
        order.push(name);
        return name;
      });
    await Promise.all([queue.join('customer-1', 'a', attempt), queue.join('customer-1', 'b', attempt), alone('merge'), queue.join('customer-1', 'c', attempt)]);
    expect(order).toEqual(['a+b', 'merge', 'c']);
  });
  it('keep a group forming behind a command alone open to later commands while the group before it runs', async () => {
    const queue = createStreamQueue({ windowMs: 60_000 });
    const { calls, attempt } = recording((commands) => commands.map((c) => ({ value: c })));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // Given a group, a command alone held up behind it, and a group forming behind that one
    const first = queue.join('customer-1', 'a', attempt);
    const alone = queue.run('customer-1', undefined, async () => {
      await held;
      return 'merge';
    });
    const forming = queue.join('customer-1', 'c', attempt);
    // When the first group is done and another command arrives while the command alone still runs
    expect(await first).toBe('a');
    const late = queue.join('customer-1', 'd', attempt);
    release();
    // Then the late command joined the forming group: one attempt for both
    expect(await Promise.all([alone, forming, late])).toEqual(['merge', 'c', 'd']);
    expect(calls).toEqual([['a'], ['c', 'd']]);
  });
  it('refuse as busy every member, not only the first, whose window passes before the group’s turn', async () => {
    const queue = createStreamQueue({ windowMs: 50 });
    const { calls, attempt } = recording((commands) => commands.map((c) => ({ value: c })));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // Given a command alone that runs longer than the window, and two commands grouped behind it
    const alone = queue.run('customer-1', undefined, async () => {
      await held;
      return 'merge';
    });
    const waiting = Promise.allSettled([queue.join('customer-1', 'a', attempt), queue.join('customer-1', 'b', attempt)]);
    // Then both are refused once their window passes, and neither is decided when the turn comes
    expect(await waiting).toMatchObject([
      { status: 'rejected', reason: { name: 'CommandsBusy', reason: 'queue_wait' } },
      { status: 'rejected', reason: { name: 'CommandsBusy', reason: 'queue_wait' } },
    ]);
    release();
    expect(await alone).toBe('merge');
    expect(calls).toEqual([]);
    expect(queue.pending()).toBe(0);
  });
});
