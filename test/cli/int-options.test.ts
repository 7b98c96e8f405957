import { describe, expect, it } from 'vitest';
import { intValue, UsageError, type CommandRun } from '../../cli/command.ts';

/** Whole-number options (`--port`, `--seed`, `--customers`, `--horizon`) take digits and nothing else. */
const runWith = (value: string): CommandRun => ({ values: { port: value }, positionals: [] }) as unknown as CommandRun;

describe('intValue', () => {
  it('reads whole numbers within the bounds', () => {
    expect(intValue(runWith('8080'), 'port', 3000, 0, 65535)).toBe(8080);
    expect(intValue(runWith('0'), 'port', 3000, 0, 65535)).toBe(0);
    expect(intValue({ values: {}, positionals: [] } as unknown as CommandRun, 'port', 3000, 0, 65535)).toBe(3000);
  });

  it.each(['', ' ', '0x50', '1e3', '80.0', ' 80', '+80', '8080abc', '-1', '65536'])(
    'refuses %j with the option named instead of reading it as a number',
    (raw) => {
      expect(() => intValue(runWith(raw), 'port', 3000, 0, 65535)).toThrow(UsageError);
      expect(() => intValue(runWith(raw), 'port', 3000, 0, 65535)).toThrow(`--port must be a whole number between 0 and 65535 (got "${raw}")`);
    },
  );
});
