import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { SilentServiceProbe } from './silent-service.ts';

/** The probe the fault tests use to say what a silent `crm serve` was doing, tried on processes whose state is known. */
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

const start = async (probe: SilentServiceProbe, script: string): Promise<ChildProcess> => {
  const child = spawn(process.execPath, ['-e', script], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...probe.env },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  children.push(child);
  // The script says when its state is set up.
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  return child;
};

describe('what a silent service was doing', () => {
  it('names the socket a waiting process waits on, and that its loop turns', async () => {
    const probe = new SilentServiceProbe();
    const child = await start(
      probe,
      `const server = require('node:net').createServer(() => {}).listen(0, '127.0.0.1', () => {
         require('node:net').connect(server.address().port, '127.0.0.1', () => console.log('ready'));
       });`,
    );
    const said = await probe.describe(child.pid, true);
    expect(said).toMatch(/^waiting: the event loop turns/);
    expect(said).toMatch(/sockets to: 127\.0\.0\.1:\d+/);
  });

  it('tells a loop busy in JavaScript from one blocked in a call', async () => {
    const probe = new SilentServiceProbe();
    const busy = await start(probe, `console.log('ready'); for (;;) {}`);
    const blocked = await start(probe, `console.log('ready'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);`);
    const [saidBusy, saidBlocked] = await Promise.all([probe.describe(busy.pid, true), probe.describe(blocked.pid, true)]);
    expect(saidBusy).toMatch(/does not turn.*busy in JavaScript/);
    expect(saidBlocked).toMatch(/does not turn.*blocked in a call/);
  });

  it('says when the process is gone', async () => {
    expect(await new SilentServiceProbe().describe(undefined, false)).toBe('the process is gone');
  });
});
