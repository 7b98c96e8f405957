import { describe, expect, it } from 'vitest';
import { armShutdownDeadline, SHUTDOWN_TIMED_OUT } from '../../cli/shutdown.ts';
import { ClosingSteps } from '../../runtime/closing.ts';

describe('the closing steps of the runtime', () => {
  it('close the last opened first, go on past a failing step, and name what is still pending', async () => {
    const steps = new ClosingSteps();
    const closed: string[] = [];
    let releaseLeases!: () => void;
    steps.add('pool', async () => void closed.push('pool'));
    steps.add('leases', () => new Promise<void>((resolve) => (releaseLeases = resolve)).then(() => void closed.push('leases')));
    steps.add('projections', async () => {
      closed.push('projections');
      throw new Error('the database is away');
    });
    steps.add('sealer', async () => void closed.push('sealer'));
    expect(steps.pending()).toEqual(['sealer', 'projections', 'leases', 'pool']);

    const closing = steps.close();
    // Calls at once share one pass.
    const again = steps.close();
    await new Promise((r) => setImmediate(r));
    expect(steps.pending()).toEqual(['leases', 'pool']);
    releaseLeases();
    await Promise.all([closing, again]);
    expect(closed).toEqual(['sealer', 'projections', 'leases', 'pool']);
    expect(steps.pending()).toEqual([]);
  });
});

describe('the shutdown deadline', () => {
  it('starts on the signal, names the pending steps and exits 124 past it; disarmed, it does nothing', async () => {
    const controller = new AbortController();
    const lines: string[] = [];
    let pending = ['publishers', 'pool'];
    const exited = new Promise<number>((resolve) => {
      armShutdownDeadline({ signal: controller.signal, timeoutMs: 50, pending: () => pending, err: (line) => lines.push(line), exit: resolve });
    });
    controller.abort();
    pending = ['pool'];
    expect(await exited).toBe(SHUTDOWN_TIMED_OUT);
    expect(lines.join('\n')).toMatch(/longer than 50 ms \(CRM_SHUTDOWN_TIMEOUT_MS\); still pending: pool\. Exiting with code 124/);

    const quiet = new AbortController();
    const exits: number[] = [];
    const deadline = armShutdownDeadline({ signal: quiet.signal, timeoutMs: 20, pending: () => [], err: () => undefined, exit: (code) => exits.push(code) });
    quiet.abort();
    deadline.disarm();
    await new Promise((r) => setTimeout(r, 100));
    expect(exits).toEqual([]);
  });
});
