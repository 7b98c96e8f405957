import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createCommandPlaces, NoPlace } from '../../api/back-pressure.ts';

/** The places against vitest's clock: `now` and the wait timers move together. */
const places = (maxCommandsInFlight: number, maxCommandWaitMs: number, overloadedCommandWaitMs: number) =>
  createCommandPlaces({ maxCommandsInFlight, maxCommandWaitMs, overloadedCommandWaitMs }, () => Date.now());

const outcome = (turn: Promise<void> | undefined) => {
  const seen = { admitted: false, refused: undefined as string | undefined };
  void turn?.then(
    () => (seen.admitted = true),
    (error: Error) => (seen.refused = error.message),
  );
  return seen;
};

/**
 * With its one place taken, a newcomer waits 200 ms (past a 50 ms overloaded wait, within a 300 ms
 * normal one) unrefused, and is admitted once the place is given back.
 */
const expectNormalBound = async (p: ReturnType<typeof places>) => {
  const newcomer = outcome(p.enter());
  await vi.advanceTimersByTimeAsync(200);
  expect(newcomer.refused).toBeUndefined();
  p.leave();
  await vi.advanceTimersByTimeAsync(0);
  expect(newcomer.admitted).toBe(true);
};

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('command places', () => {
  it('gives free places at once, then hands each freed place to the longest-waiting command', async () => {
    const p = places(2, 1_000, 100);
    expect(p.enter()).toBeUndefined();
    expect(p.enter()).toBeUndefined();
    const first = outcome(p.enter());
    const second = outcome(p.enter());
    expect(p.waiting()).toBe(2);
    p.leave(5);
    await vi.advanceTimersByTimeAsync(0);
    expect([first.admitted, second.admitted]).toEqual([true, false]);
    expect(p.inFlight()).toBe(2);
    p.leave(5);
    p.leave(5);
    p.leave(5);
    await vi.advanceTimersByTimeAsync(0);
    expect(second.admitted).toBe(true);
    expect(p.inFlight()).toBe(0);
  });

  it('refuses a command that found no place within its bound, and only it', async () => {
    const p = places(1, 200, 200);
    expect(p.enter()).toBeUndefined();
    const late = outcome(p.enter());
    await vi.advanceTimersByTimeAsync(199);
    expect(late.refused).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(late.refused).toMatch(/1 commands in flight; no turn within 200 ms/);
    expect(p.waiting()).toBe(0);
    // The place is still held by the first command; the next one waits anew.
    expect(p.enter()).toBeInstanceOf(Promise);
  });

  it('with no wait allowed, refuses at once when every place is taken', () => {
    const p = places(1, 0, 0);
    expect(p.enter()).toBeUndefined();
    expect(() => p.enter()).toThrow(NoPlace);
    p.leave(1);
    expect(p.enter()).toBeUndefined();
  });

  it('shortens the wait to the overloaded bound once the queue has not emptied for the normal bound', async () => {
    const p = places(1, 300, 50);
    expect(p.enter()).toBeUndefined();
    // Keep the queue busy: each waiter is admitted as the previous holder leaves, 40 ms apart.
    const waiters = [outcome(p.enter())];
    for (let i = 0; i < 10; i++) {
      await vi.advanceTimersByTimeAsync(40);
      waiters.push(outcome(p.enter()));
      p.leave(0);
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(waiters.slice(0, 10).every((w) => w.admitted)).toBe(true);
    // Waiting without a break for 400 ms now: a new command gets 50 ms, not 300.
    const overloaded = outcome(p.enter());
    await vi.advanceTimersByTimeAsync(49);
    expect(overloaded.refused).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(overloaded.refused).toMatch(/no turn within 50 ms/);
  });

  it('treats a burst after a quiet spell as a burst: its waiters get the normal bound, not the overloaded one', async () => {
    const p = places(1, 300, 50);
    expect(p.enter()).toBeUndefined();
    // No one waits for ten seconds, then two commands come 10 ms apart.
    await vi.advanceTimersByTimeAsync(10_000);
    const first = outcome(p.enter());
    await vi.advanceTimersByTimeAsync(10);
    const second = outcome(p.enter());
    await vi.advanceTimersByTimeAsync(100);
    expect([first.refused, second.refused]).toEqual([undefined, undefined]);
    p.leave(1);
    p.leave(1);
    await vi.advanceTimersByTimeAsync(0);
    expect([first.admitted, second.admitted]).toEqual([true, true]);
  });

  it('keeps a sustained overload through a moment in which the line empties; a longer pause ends it', async () => {
    const p = places(1, 300, 50);
    expect(p.enter()).toBeUndefined();
    const a = outcome(p.enter());
    await vi.advanceTimersByTimeAsync(250);
    const b = outcome(p.enter());
    await vi.advanceTimersByTimeAsync(10);
    p.leave();
    await vi.advanceTimersByTimeAsync(60);
    // The line has held someone for 320 ms: overload, a newcomer may wait 50 ms and the head has waited 70.
    expect(() => p.enter()).toThrow(/past the 50 ms a command may wait/);
    expect(a.admitted).toBe(true);
    p.leave();
    await vi.advanceTimersByTimeAsync(0);
    expect(b.admitted).toBe(true);
    expect(p.waiting()).toBe(0);
    // 10 ms later (a gap shorter than the overloaded wait): still the same overload.
    await vi.advanceTimersByTimeAsync(10);
    const d = outcome(p.enter());
    await vi.advanceTimersByTimeAsync(50);
    expect(d.refused).toMatch(/no turn within 50 ms/);
    // 100 ms with no one waiting: the overload is over, a newcomer gets the normal bound.
    await vi.advanceTimersByTimeAsync(100);
    await expectNormalBound(p);
  });

  it('does not take a line that is often briefly in use for an overload', async () => {
    const p = places(1, 300, 50);
    expect(p.enter()).toBeUndefined();
    // Every 40 ms for 400 ms, a command waits 1 ms for the place.
    for (let t = 0; t < 400; t += 40) {
      const waiter = outcome(p.enter());
      await vi.advanceTimersByTimeAsync(1);
      p.leave();
      await vi.advanceTimersByTimeAsync(0);
      expect(waiter.admitted).toBe(true);
      await vi.advanceTimersByTimeAsync(39);
    }
    // A burst now still gets the normal bound: no one has waited long.
    await expectNormalBound(p);
  });

  it('refuses at once a command whose turn would come after its bound at the pace places are given back', async () => {
    const p = places(1, 100, 100);
    expect(p.enter()).toBeUndefined();
    // Places have been held 60 ms each lately.
    p.leave(60);
    expect(p.enter()).toBeUndefined();
    const next = outcome(p.enter());
    expect(() => p.enter()).toThrow(/a turn expected in 120 ms, past the 100 ms a command may wait/);
    expect(next.refused).toBeUndefined();
    expect(p.waiting()).toBe(1);
  });

  it('refuses a newcomer at once when the head of the line has waited past the bound, however short places were held lately', () => {
    let clock = 0;
    const p = createCommandPlaces({ maxCommandsInFlight: 1, maxCommandWaitMs: 100, overloadedCommandWaitMs: 100 }, () => clock);
    expect(p.enter()).toBeUndefined();
    p.leave(1);
    expect(p.enter()).toBeUndefined();
    outcome(p.enter());
    clock = 60;
    // One place held 1 ms on average: the average alone would expect a turn in 2 ms.
    expect(() => p.enter()).not.toThrow();
    clock = 101;
    expect(() => p.enter()).toThrow(/a turn expected in 101 ms, past the 100 ms a command may wait/);
  });

  it('gives a freed place to the first command still within its bound, refusing those whose timer is due but has not run', async () => {
    // The clock moves while timers do not: an event loop too busy to run them.
    let clock = 0;
    const p = createCommandPlaces({ maxCommandsInFlight: 1, maxCommandWaitMs: 100, overloadedCommandWaitMs: 100 }, () => clock);
    expect(p.enter()).toBeUndefined();
    const stale = outcome(p.enter());
    clock = 50;
    const fresh = outcome(p.enter());
    clock = 120;
    p.leave(120);
    await vi.advanceTimersByTimeAsync(0);
    expect(stale.refused).toMatch(/no turn within 100 ms/);
    expect(fresh.admitted).toBe(true);
    expect(p.inFlight()).toBe(1);
    expect(p.waiting()).toBe(0);
  });

  it('withdraws a waiting command whose client went away, refusing it, and keeps the place for the next', async () => {
    const p = places(1, 1_000, 1_000);
    expect(p.enter()).toBeUndefined();
    const turn = p.enter()!;
    const gone = outcome(turn);
    const next = outcome(p.enter());
    expect(p.withdraw(turn)).toBe(true);
    expect(p.withdraw(turn)).toBe(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(gone.refused).toMatch(/its client went away/);
    p.leave(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(next.admitted).toBe(true);
  });
});
