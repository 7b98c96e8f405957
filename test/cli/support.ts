import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestSchemas } from '../support/postgres.ts';

/** The `crm` bin as package.json declares it: run exactly as a user's shell would. */
export const CRM_BIN = fileURLToPath(new URL('../../cli/crm.js', import.meta.url));

/** A clean environment: nothing from the developer's shell leaks into the CLI under test. */
export const cleanEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? '/tmp',
  ...extra,
});

/** The environment that points a `crm` process at a test file's schemas. */
export const schemaEnv = (schemas: TestSchemas, extra: Record<string, string> = {}): Record<string, string> => ({
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  LOG_LEVEL: 'warn',
  ...extra,
});

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export const runCrm = (args: string[], options: { cwd: string; env: Record<string, string>; timeoutMs?: number }): Promise<RunResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CRM_BIN, ...args], { cwd: options.cwd, env: cleanEnv(options.env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`crm ${args.join(' ')} did not finish in time.\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });

/** A long-running `crm serve` (or `crm project`), with its output collected as it arrives. */
export class Server {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  /** `launcher`: the program and arguments before the command, `crm` itself unless a test starts it another way (`npm start`). */
  constructor(cwd: string, env: Record<string, string>, command: string | string[] = 'serve', launcher: readonly string[] = [process.execPath, CRM_BIN]) {
    const [program = process.execPath, ...before] = launcher;
    this.child = spawn(program, [...before, ...(Array.isArray(command) ? command : [command])], { cwd, env: cleanEnv(env) });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  /** Resolves with the first match of `pattern` in stdout (or stderr), failing with the output if it never comes. */
  async waitFor(pattern: RegExp, timeoutMs = 60_000, stream: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpMatchArray> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const match = this[stream].match(pattern);
      if (match) return match;
      if (this.child.exitCode !== null || Date.now() > until) {
        throw new Error(`no ${pattern} in the output of crm serve.\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
    this.child.kill(signal);
    return this.exited;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

export const poll = async <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
};

/**
 * A read with `?waitFor=` from another process than the projections' (split deployment). The server
 * answers 503 read-model-timeout with Retry-After when its read models have not reached the position
 * within its bound (5 s); on a loaded machine they may lag longer, as any transaction open anywhere
 * on the PostgreSQL server holds the gap-free feed back. Does what a client is told to: retries after
 * Retry-After, up to `timeoutMs`; any other answer is returned as it is.
 */
export const fetchCaughtUp = async (url: string, init: RequestInit, timeoutMs = 60_000): Promise<Response> => {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const response = await fetch(url, init);
    if (response.status !== 503 || Date.now() > until) return response;
    const problem = (await response
      .clone()
      .json()
      .catch(() => undefined)) as { type?: string } | undefined;
    if (!problem?.type?.endsWith('/read-model-timeout')) return response;
    await new Promise((r) => setTimeout(r, 1_000 * Number(response.headers.get('retry-after') ?? 1)));
  }
};
