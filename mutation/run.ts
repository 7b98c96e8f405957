import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { MUTATION_MODULES } from './modules.ts';

/**
 * `npm run mutation -- <module> [<module> ...]` (no module: all of them, one after another).
 * Reports: reports/mutation/<module>.html and .json (kept out of git).
 * Options: `--concurrency=N` overrides the module's number of parallel test runners (1 on a shared
 * machine); `--incremental` reuses the results of the module's previous run
 * (reports/mutation/<module>.incremental.json) for mutants whose code and covering tests did not change;
 * `--timeout-ms=N` is the grace added to a mutant's expected test time before it counts as timed out;
 * `--mutate=a.ts,b.ts` mutates only those files of the module (a partial run, against the same tests).
 */
const options = process.argv.slice(2).filter((arg) => arg.startsWith('-'));
const concurrencyOption = options.find((arg) => arg.startsWith('--concurrency='));
const concurrency = concurrencyOption === undefined ? undefined : Number(concurrencyOption.split('=')[1]);
if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1)) {
  console.error(`--concurrency needs a whole number of at least 1, got ${concurrencyOption}`);
  process.exit(2);
}
const incremental = options.includes('--incremental');
const timeoutOption = options.find((arg) => arg.startsWith('--timeout-ms='));
const timeoutMS = timeoutOption === undefined ? 60_000 : Number(timeoutOption.split('=')[1]);
if (!(Number.isInteger(timeoutMS) && timeoutMS >= 1_000)) {
  console.error(`--timeout-ms needs a whole number of milliseconds, at least 1000, got ${timeoutOption}`);
  process.exit(2);
}
const mutateOption = options.find((arg) => arg.startsWith('--mutate='));
const mutateOnly = mutateOption?.slice('--mutate='.length).split(',').filter(Boolean);
const requested = process.argv.slice(2).filter((arg) => !arg.startsWith('-'));
const unknown = requested.filter((name) => !(name in MUTATION_MODULES));
if (unknown.length > 0) {
  console.error(`Unknown module(s): ${unknown.join(', ')}. Choose from: ${Object.keys(MUTATION_MODULES).join(', ')}.`);
  process.exit(2);
}
const names = requested.length > 0 ? requested : Object.keys(MUTATION_MODULES);
let failed = 0;
for (const name of names) {
  const module = MUTATION_MODULES[name]!;
  console.log(`\n== mutation testing ${name}: ${(mutateOnly ?? module.mutate).join(' ')} against ${module.tests.join(' ')}`);
  const config = {
    testRunner: 'vitest',
    vitest: { configFile: 'mutation/vitest.config.ts', related: false },
    coverageAnalysis: 'perTest',
    // Module-level code (zod schemas, constant tables) runs once per process: its mutants need every test re-run
    // in a fresh process, most of the run's time. They are left out of the score and listed in the report.
    ignoreStatic: true,
    mutate: mutateOnly ?? module.mutate,
    concurrency: concurrency ?? module.concurrency,
    incremental,
    incrementalFile: `reports/mutation/${name}.incremental.json`,
    // Added to the covering tests' own time before a mutant counts as timed out (an endless loop):
    // every such mutant costs this much, so a smaller value shortens runs with many of them.
    timeoutMS,
    reporters: ['clear-text', 'progress', 'html', 'json'],
    htmlReporter: { fileName: `reports/mutation/${name}.html` },
    jsonReporter: { fileName: `reports/mutation/${name}.json` },
    tempDirName: `.stryker-tmp/${name}`,
    cleanTempDir: 'always',
    ignorePatterns: ['reports', 'bench/reference', 'docs', '.crm-data'],
  };
  mkdirSync('reports/mutation', { recursive: true });
  const configFile = `reports/mutation/${name}.stryker.json`;
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const result = spawnSync('npx', ['stryker', 'run', configFile], {
    stdio: 'inherit',
    env: { ...process.env, MUTATION_TESTS: module.tests.join(',') },
  });
  if (result.status !== 0) failed += 1;
}
process.exit(failed > 0 ? 1 : 0);
