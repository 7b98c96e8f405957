/**
 * A progress bar for long work, on stderr so that stdout stays clean for data.
 * On a terminal it redraws one line; otherwise (CI, pipes, tests) it prints a plain line every few seconds.
 */

export interface Progress {
  /** Adds `n` done items (default 1). */
  tick(n?: number): void;
  /** Sets the done count (for work that reports positions rather than increments). */
  update(done: number, total?: number): void;
  /** Prints the final line with the total time and rate. */
  done(summary?: string, outcome?: 'done' | 'stopped'): void;
}

export interface ProgressOptions {
  label: string;
  total?: number;
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Plain-line interval when not a terminal. */
  plainEveryMs?: number;
  quiet?: boolean;
}

const WIDTH = 28;

const formatCount = (n: number): string => n.toLocaleString('en-US');
const formatDuration = (ms: number): string => {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
};

export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const tty = Boolean(stream.isTTY);
  const unit = options.unit ?? 'items';
  const started = performance.now();
  let total = options.total;
  let count = 0;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let finished = false;
  const plainEvery = options.plainEveryMs ?? 2000;

  const line = (): string => {
    const elapsed = Math.max(performance.now() - started, 1);
    const rate = (count * 1000) / elapsed;
    const rateText = `${formatCount(Math.round(rate))} ${unit}/s`;
    if (total && total > 0) {
      const ratio = Math.min(count / total, 1);
      const filled = Math.round(ratio * WIDTH);
      const eta = rate > 0 && count < total ? ` eta ${formatDuration(((total - count) / rate) * 1000)}` : '';
      const bar = tty ? `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ` : '';
      return `${options.label} ${bar}${formatCount(count)}/${formatCount(total)} ${unit} (${Math.round(ratio * 100)}%) ${rateText}${eta}`;
    }
    return `${options.label} ${formatCount(count)} ${unit} ${rateText}`;
  };

  const draw = (force = false): void => {
    if (options.quiet || finished) return;
    const now = performance.now();
    if (tty) {
      if (!force && now - lastDraw < 100) return;
      stream.write(`\r\x1b[2K${line()}`);
    } else {
      if (!force && now - lastDraw < plainEvery) return;
      stream.write(`${line()}\n`);
    }
    lastDraw = now;
  };

  return {
    tick(n = 1) {
      count += n;
      draw();
    },
    update(done, newTotal) {
      count = done;
      if (newTotal !== undefined) total = newTotal;
      draw();
    },
    done(summary, outcome = 'done') {
      if (finished) return;
      if (!options.quiet) {
        const elapsed = performance.now() - started;
        const rate = Math.round((count * 1000) / Math.max(elapsed, 1));
        const text = `${options.label} ${outcome}: ${formatCount(count)} ${unit} in ${formatDuration(elapsed)} (${formatCount(rate)} ${unit}/s)${summary ? `, ${summary}` : ''}`;
        stream.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
      }
      finished = true;
    },
  };
}
