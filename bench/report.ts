import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PoolTimeouts } from '../eventstore/postgres/database.ts';

/** What every benchmark suite (`bench/suites/*.ts`) receives. */
export interface BenchContext {
  /** The PostgreSQL database every suite measures on. */
  databaseUrl: string;
  /** Creates an empty schema with a unique name for this run; the runner drops it afterwards. */
  freshSchema(label: string): Promise<string>;
  /** Workload multiplier (`--scale N`, default 1): suites multiply their case sizes by it. */
  scale: number;
  /** Suite settings given as `--option name=value` (each suite documents the names it reads). */
  options: Record<string, string>;
  /** Progress line on stderr, so that stdout keeps the summary. */
  log(message: string): void;
}

/**
 * Bounds of a suite's own connection where it seeds or reads in bulk (hundreds of thousands of rows a
 * statement), which takes longer than the API's 5 s statement bound.
 */
export const BULK_TIMEOUTS: PoolTimeouts = { statementMs: 600_000, lockMs: 60_000, idleInTransactionMs: 600_000, connectMs: 10_000 };

/** A suite module: `export async function run(ctx)` returning its figures (JSON-serializable; bigints become strings). */
export interface BenchSuite {
  run(ctx: BenchContext): Promise<Record<string, unknown>>;
  /** Optional one-line summaries printed after the run. */
  summarize?(result: Record<string, unknown>): string[];
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  node: string;
  database: string;
  scale: number;
  /** The machine's load average (1, 5 and 15 minutes) when the run started and ended: how quiet it was. */
  loadAverage: { atStart: number[]; atEnd: number[] };
  options?: Record<string, string>;
  suites: Record<string, { durationMs: number; result?: Record<string, unknown>; error?: string }>;
}

const toJson = (report: BenchReport): string => JSON.stringify(report, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value), 2);

/** Writes `bench/results/<timestamp>.json` and `bench/results/latest.json`; returns the first path. */
export const writeReport = async (directory: string, report: BenchReport): Promise<string> => {
  await mkdir(directory, { recursive: true });
  const file = join(directory, `${report.startedAt.replace(/[:.]/g, '-')}.json`);
  const json = `${toJson(report)}\n`;
  await writeFile(file, json);
  await writeFile(join(directory, 'latest.json'), json);
  return file;
};

/** Rounds rates and ratios for reading. */
export const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits;

/** Events (or operations) per second. */
export const rate = (count: number, ms: number): number => round((count * 1000) / Math.max(ms, 0.001), 0);

export const ratio = (a: number, b: number): number => round(a / Math.max(b, 1e-9), 2);

export const percentile = (values: number[], p: number): number => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  return round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!, 2);
};
