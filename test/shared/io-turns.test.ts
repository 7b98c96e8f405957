import { describe, expect, it } from 'vitest';
import { ioTurns } from '../../shared/io-turns.ts';

const busy = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

describe('io turns', () => {
  it('is due once its interval has run, and a turn runs the callbacks waiting meanwhile before the stretch goes on', async () => {
    const turns = ioTurns(50);
    expect(turns.due()).toBe(false);
    busy(55);
    expect(turns.due()).toBe(true);
    let ran = false;
    setImmediate(() => (ran = true));
    await turns.give();
    expect(ran).toBe(true);
    // The interval starts again at the turn.
    expect(turns.due()).toBe(false);
  });
});
