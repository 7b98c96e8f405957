import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * What a `crm serve` that stopped answering was doing. Node writes a diagnostic report when it gets
 * SIGUSR2 (`--report-on-signal`), from the event loop: a report names the JavaScript stack and every
 * handle the loop waits on; no report means the loop does not turn (busy in JavaScript or blocked in a
 * call), which the state of its main thread tells apart: runnable (R) while it computes, even while
 * it waits for a core on a loaded machine (its CPU share alone then read 27% for a busy loop), and
 * asleep (S) in a blocking call.
 */
export class SilentServiceProbe {
  private readonly directory = mkdtempSync(join(tmpdir(), 'crm-report-'));

  /** Environment for the process to watch. */
  get env(): Record<string, string> {
    return { NODE_OPTIONS: `--report-on-signal --report-signal=SIGUSR2 --report-directory=${this.directory} --report-compact` };
  }

  /** One paragraph on the process `pid`: gone, not turning (busy or blocked), or waiting (on what). */
  async describe(pid: number | undefined, running: boolean): Promise<string> {
    if (pid === undefined || !running) return 'the process is gone';
    const before = new Set(readdirSync(this.directory));
    const cpuBefore = cpuTicks(pid);
    process.kill(pid, 'SIGUSR2');
    const until = Date.now() + 5_000;
    let runnable = 0;
    let sampled = 0;
    for (;;) {
      const state = mainThreadState(pid);
      if (state !== undefined) {
        sampled += 1;
        if (state === 'R') runnable += 1;
      }
      const fresh = readdirSync(this.directory).find((name) => !before.has(name) && name.endsWith('.json'));
      if (fresh) {
        const text = readFileSync(join(this.directory, fresh), 'utf8');
        // The report is written in pieces: a half-written one parses on the next turn.
        try {
          return summarise(JSON.parse(text) as NodeReport);
        } catch {
          // not complete yet
        }
      }
      if (Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const cpuAfter = cpuTicks(pid);
    const cpu = cpuBefore !== undefined && cpuAfter !== undefined ? `${Math.round(((cpuAfter - cpuBefore) / 100 / 5) * 100)}%` : 'an unknown share';
    return (
      `the event loop does not turn: no diagnostic report within 5 s of SIGUSR2; ` +
      (sampled === 0
        ? `its state could not be read (it used ${cpu} of a core)`
        : `its main thread was runnable in ${runnable} of ${sampled} looks and used ${cpu} of a core (${runnable * 2 > sampled ? 'busy in JavaScript' : 'blocked in a call'})`)
    );
  }
}

interface NodeReport {
  javascriptStack?: { message?: string; stack?: string[] };
  libuv?: {
    type: string;
    is_active: boolean;
    is_referenced?: boolean;
    remoteEndpoint?: { host: string; ip4?: string; ip6?: string; port: number } | null;
    writeQueueSize?: number;
  }[];
  resourceUsage?: { userCpuSeconds?: number; kernelCpuSeconds?: number; maxRss?: number };
  javascriptHeap?: { usedMemory?: number; totalMemory?: number };
}

const summarise = (report: NodeReport): string => {
  const stack = report.javascriptStack?.stack?.slice(0, 12).join(' | ') || 'none (the loop was idle, waiting)';
  const handles = new Map<string, number>();
  const sockets: string[] = [];
  for (const handle of report.libuv ?? []) {
    if (!handle.is_active) continue;
    handles.set(handle.type, (handles.get(handle.type) ?? 0) + 1);
    const peer = handle.remoteEndpoint;
    // A write queue that does not drain is a peer that stopped reading (or a link that stalled).
    if (peer) sockets.push(`${peer.ip4 ?? peer.ip6 ?? peer.host}:${peer.port}${handle.writeQueueSize ? ` (${handle.writeQueueSize} bytes queued)` : ''}`);
  }
  const heapMb = report.javascriptHeap?.usedMemory === undefined ? '?' : Math.round(report.javascriptHeap.usedMemory / 2 ** 20);
  return (
    `waiting: the event loop turns (it wrote a diagnostic report); JavaScript stack: ${stack}; ` +
    `active handles: ${[...handles].map(([type, n]) => `${n} ${type}`).join(', ') || 'none'}; ` +
    `sockets to: ${sockets.join(', ') || 'none'}; heap used ${heapMb} MB; ` +
    `CPU so far ${report.resourceUsage?.userCpuSeconds?.toFixed(1) ?? '?'} s user, ${report.resourceUsage?.kernelCpuSeconds?.toFixed(1) ?? '?'} s system`
  );
};

/** utime + stime of a process, in clock ticks (100 a second on Linux). */
/** The state letter of the process's main thread (R runnable, S sleeping, D in uninterruptible I/O, ...). */
const mainThreadState = (pid: number): string | undefined => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[0];
  } catch {
    return undefined;
  }
};

const cpuTicks = (pid: number): number | undefined => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
};
