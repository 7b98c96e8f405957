/**
 * `npm run bench [-- suite ...] [--scale N] [--option name=value ...]`: runs every `bench/suites/*.ts` (or the named ones)
 * against one PostgreSQL database and writes a JSON report to `bench/results/`.
 * This file is the benchmark's composition root: it alone reads DATABASE_URL.
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { writeReport, type BenchContext, type BenchReport, type BenchSuite } from './report.ts';
import { loggableUrl } from '../shared/loggable-url.ts';

const here = dirname(fileURLToPath(import.meta.url));
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

interface Arguments {
  suites: string[];
  scale: number;
  options: Record<string, string>;
}

const parseArguments = (argv: string[]): Arguments => {
  const suites: string[] = [];
  const options: Record<string, string> = {};
  let scale = 1;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const option = arg === '--option' ? argv[(i += 1)] : arg.startsWith('--option=') ? arg.slice('--option='.length) : undefined;
    if (option !== undefined) {
      const match = /^([a-z][a-z0-9-]*)=(.*)$/.exec(option);
      if (!match) throw new Error(`--option needs name=value, got ${option}`);
      options[match[1]!] = match[2]!;
      continue;
    }
    const scaleValue = arg === '--scale' ? argv[(i += 1)] : arg.startsWith('--scale=') ? arg.slice('--scale='.length) : undefined;
    if (scaleValue !== undefined) {
      scale = Number(scaleValue);
      if (!Number.isFinite(scale) || scale <= 0) throw new Error(`--scale needs a positive number, got ${scaleValue}`);
    } else if (arg.startsWith('-')) {
      throw new Error(`Unknown option ${arg}. Usage: npm run bench -- [suite ...] [--scale N] [--option name=value ...]`);
    } else {
      suites.push(arg);
    }
  }
  return { suites, scale, options };
};

const loadAverage = (): number[] => loadavg().map((l) => Math.round(l * 100) / 100);

async function main(): Promise<void> {
  const { suites: wanted, scale, options } = parseArguments(process.argv.slice(2));
  const databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  const suiteDirectory = join(here, 'suites');
  const available = (await readdir(suiteDirectory))
    .filter((file) => file.endsWith('.ts'))
    .map((file) => basename(file, '.ts'))
    .sort();
  const unknown = wanted.filter((name) => !available.includes(name));
  if (unknown.length > 0) throw new Error(`Unknown suite(s) ${unknown.join(', ')}; available: ${available.join(', ')}`);
  const selected = wanted.length > 0 ? available.filter((name) => wanted.includes(name)) : available;

  const admin = new pg.Client({ connectionString: databaseUrl });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`Cannot reach PostgreSQL at ${loggableUrl(databaseUrl)}: ${(error as Error).message}. Check DATABASE_URL and that PostgreSQL is running.`, {
      cause: error,
    });
  }
  const runId = randomBytes(3).toString('hex');
  const created: string[] = [];
  const ctx: BenchContext = {
    databaseUrl,
    scale,
    options,
    log: (message) => process.stderr.write(`  ${message}\n`),
    freshSchema: async (label) => {
      const name = `bench_${runId}_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${created.length}`.slice(0, 63);
      await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(name)} CASCADE`);
      await admin.query(`CREATE SCHEMA ${pg.escapeIdentifier(name)}`);
      created.push(name);
      return name;
    },
  };

  const report: BenchReport = {
    startedAt: new Date().toISOString(),
    finishedAt: '',
    node: process.version,
    database: loggableUrl(databaseUrl),
    scale,
    loadAverage: { atStart: loadAverage(), atEnd: [] },
    ...(Object.keys(options).length > 0 ? { options } : {}),
    suites: {},
  };
  const summaries: string[] = [];
  try {
    for (const name of selected) {
      process.stderr.write(`suite ${name}\n`);
      const started = performance.now();
      try {
        const suite = (await import(pathToFileURL(join(suiteDirectory, `${name}.ts`)).href)) as BenchSuite;
        if (typeof suite.run !== 'function') throw new Error(`bench/suites/${name}.ts does not export run(ctx)`);
        const result = await suite.run(ctx);
        report.suites[name] = { durationMs: Math.round(performance.now() - started), result };
        summaries.push(`${name} (${Math.round((performance.now() - started) / 1000)} s)`);
        for (const line of suite.summarize?.(result) ?? []) summaries.push(`  ${line}`);
      } catch (error) {
        report.suites[name] = { durationMs: Math.round(performance.now() - started), error: (error as Error).stack ?? String(error) };
        summaries.push(`${name}: FAILED ${(error as Error).message}`);
      }
    }
  } finally {
    for (const schema of created) await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`).catch(() => undefined);
    await admin.end();
  }
  report.finishedAt = new Date().toISOString();
  report.loadAverage.atEnd = loadAverage();
  summaries.push(`load average (1, 5, 15 min): ${report.loadAverage.atStart.join(' ')} at the start, ${report.loadAverage.atEnd.join(' ')} at the end`);
  const file = await writeReport(join(here, 'results'), report);
  console.log(summaries.join('\n'));
  console.log(`report: ${file} (and bench/results/latest.json)`);
  if (Object.values(report.suites).some((suite) => suite.error)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error((error as Error).message);
  process.exitCode = 1;
});
