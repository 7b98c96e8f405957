/**
 * Whether a process with this id runs on this host (EPERM: it does, under another user). `signal` is
 * `process.kill` but for tests: the tests run as root, whom the system never answers EPERM.
 */
export const isRunning = (pid: number, signal: (pid: number, signal: 0) => void = (id, probe) => void process.kill(id, probe)): boolean => {
  try {
    signal(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};
