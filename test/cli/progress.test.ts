import { describe, expect, it } from 'vitest';
import { createProgress } from '../../cli/progress.ts';

/** A stand-in for process.stderr that records what is written. */
const sink = (isTTY: boolean) => {
  const writes: string[] = [];
  return { writes, stream: { isTTY, write: (text: string) => writes.push(text) > 0 } as unknown as NodeJS.WriteStream };
};

describe('the progress bar', () => {
  it('prints plain lines with counts, percentage and rate when not on a terminal', () => {
    const { writes, stream } = sink(false);
    const progress = createProgress({ label: 'import', total: 200, unit: 'rows', stream, plainEveryMs: 0 });
    progress.tick(50);
    progress.tick(50);
    progress.done('3 rejected');
    expect(writes.every((w) => w.endsWith('\n') && !w.includes('\r'))).toBe(true);
    expect(writes[0]).toMatch(/^import 50\/200 rows \(25%\) [\d,]+ rows\/s/);
    expect(writes[1]).toMatch(/^import 100\/200 rows \(50%\)/);
    expect(writes.at(-1)).toMatch(/^import done: 100 rows in \d+s \([\d,]+ rows\/s\), 3 rejected\n$/);
  });

  it('redraws one line with a bar on a terminal, and counts without a total', () => {
    const { writes, stream } = sink(true);
    const bar = createProgress({ label: 'demo', total: 4, unit: 'commands', stream });
    bar.tick(); // first draw
    // eslint-disable-next-line no-control-regex -- the terminal's escape sequence is what is checked
    expect(writes[0]).toMatch(/^\r\x1b\[2Kdemo \[#{7}\.{21}\] 1\/4 commands \(25%\)/);
    const { writes: open, stream: openStream } = sink(false);
    const counter = createProgress({ label: 'rebuild', unit: 'events', stream: openStream, plainEveryMs: 0 });
    counter.update(1234);
    expect(open[0]).toMatch(/^rebuild 1,234 events [\d,]+ events\/s\n$/);
  });
});
