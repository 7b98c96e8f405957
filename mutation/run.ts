import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { MUTATION_MODULES } from './modules.ts';

/**
 * `npm run mutation -- <module> [<module> ...]` (no module: all of them, one after another).
 * Reports: reports/mutation/<module>.html and .json (kept out of git).
 */
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
  console.log(`\n== mutation testing ${name}: ${module.mutate.join(' ')} against ${module.tests.join(' ')}`);
  const config = {
    testRunner: 'vitest',
    vitest: { configFile: 'mutation/vitest.config.ts', related: false },
    coverageAnalysis: 'perTest',
    // Module-level code (zod schemas, constant tables) runs once per process: its mutants need every test re-run
    // in a fresh process, most of the run's time. They are left out of the score and listed in the report.
    ignoreStatic: true,
    mutate: module.mutate,
    concurrency: module.concurrency,
    timeoutMS: 60_000,
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
