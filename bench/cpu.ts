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

/** CPU ms of every process named `postgres` (the server and its backends) by pid, when PostgreSQL runs here. */
const postgresCpuMs = (): Map<string, number> => {
  const byPid = new Map<string, number>();
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'postgres') continue;
    } catch {
      continue;
    }
    const ms = cpuMsOf(pid);
    if (ms !== undefined) byPid.set(pid, ms);
  }
  return byPid;
};

export interface CpuSnapshot {
  process: number | undefined;
  postgres: Map<string, number>;
}

export const cpuSnapshot = (pid: number | undefined): CpuSnapshot => {
  try {
    return { process: pid === undefined ? undefined : cpuMsOf(pid), postgres: postgresCpuMs() };
  } catch {
    return { process: undefined, postgres: new Map() };
  }
};

/**
 * CPU ms per unit of work between two snapshots, for what both could read. PostgreSQL's processes are
 * summed over those alive at the end (one started meanwhile counts from zero; the time of one that
 * ended meanwhile is lost, so that figure is a floor).
 */
export const cpuMsPer = (before: CpuSnapshot, after: CpuSnapshot, units: number): { process?: number; postgres?: number } => {
  if (units <= 0) return {};
  const per = (ms: number) => Math.round((ms / units) * 1000) / 1000;
  const process = before.process === undefined || after.process === undefined ? undefined : per(after.process - before.process);
  let postgresMs = 0;
  for (const [pid, ms] of after.postgres) postgresMs += ms - (before.postgres.get(pid) ?? 0);
  const postgres = after.postgres.size === 0 ? undefined : per(postgresMs);
  return { ...(process === undefined ? {} : { process }), ...(postgres === undefined ? {} : { postgres }) };
};
