import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of processes on this machine, from /proc (Linux; undefined elsewhere). A share of a
 * 2-core machine moves with whatever else runs; CPU milliseconds per request move far less, so
 * runs on a busy machine still compare.
 */
const TICK_MS = 10; // USER_HZ is 100 on Linux.

const cpuMsOf = (pid: number | string): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return undefined;
  }
};

/** CPU ms of every process named `postgres` (the server and its backends), when PostgreSQL runs here. */
const postgresCpuMs = (): number | undefined => {
  let total: number | undefined;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'postgres') continue;
    } catch {
      continue;
    }
    total = (total ?? 0) + (cpuMsOf(pid) ?? 0);
  }
  return total;
};

export interface CpuSnapshot {
  process: number | undefined;
  postgres: number | undefined;
}

export const cpuSnapshot = (pid: number | undefined): CpuSnapshot => {
  try {
    return { process: pid === undefined ? undefined : cpuMsOf(pid), postgres: postgresCpuMs() };
  } catch {
    return { process: undefined, postgres: undefined };
  }
};

/** CPU ms per unit of work between two snapshots, for what both could read. */
export const cpuMsPer = (before: CpuSnapshot, after: CpuSnapshot, units: number): { process?: number; postgres?: number } => {
  const per = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || units <= 0 ? undefined : Math.round(((b - a) / units) * 1000) / 1000;
  const process = per(before.process, after.process);
  const postgres = per(before.postgres, after.postgres);
  return { ...(process === undefined ? {} : { process }), ...(postgres === undefined ? {} : { postgres }) };
};
