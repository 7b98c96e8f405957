import { readFileSync } from 'node:fs';

/**
 * The fields of /proc/<pid>/stat after the command name (Linux): [0] the state, [19] the start time
 * in clock ticks since boot. Undefined where there is no such process or no /proc.
 */
export const procStat = (pid: number): string[] | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
};

/**
 * Whether a process with this id runs on this host (EPERM: it does, under another user). `signal` is
 * `process.kill` but for tests: the tests run as root, whom the system never answers EPERM. A process
 * that has exited but is not reaped yet (a zombie, state Z: a `kill -9`ed crm for a second or so) still
 * answers the signal, and holds nothing any more: it does not run.
 */
export const isRunning = (pid: number, signal: (pid: number, signal: 0) => void = (id, probe) => void process.kill(id, probe)): boolean => {
  try {
    signal(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return procStat(pid)?.[0] !== 'Z';
};
