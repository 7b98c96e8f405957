import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { CONSOLE_DIST } from '../../api/console.ts';
import { BUILD_STAMP, CONSOLE_ROOT, consoleSourcesHash } from '../../console/sources.ts';

/**
 * The console's build is committed (console/dist), so that `npm install && npm start` serves it with
 * no build step. These tests fail when the sources moved on without `npm run build:console`.
 */
const walk = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)]));
const files = (dir: string): string[] =>
  walk(dir)
    .map((file) => relative(dir, file))
    .sort();

const scratch = mkdtempSync(join(tmpdir(), 'crm-console-build-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the committed console build', () => {
  it('was made from the current sources and bundled package versions', () => {
    const stamp = JSON.parse(readFileSync(join(CONSOLE_DIST, BUILD_STAMP), 'utf8')) as { sources: string };
    expect(stamp.sources, 'console/dist is stale: run `npm run build:console` and commit console/dist').toBe(consoleSourcesHash());
  });

  it('is byte for byte what `npm run build:console` makes now', async () => {
    const vite = join(CONSOLE_ROOT, '..', 'node_modules', 'vite', 'bin', 'vite.js');
    await promisify(execFile)(
      process.execPath,
      [vite, 'build', '--config', join(CONSOLE_ROOT, 'vite.config.ts'), '--outDir', scratch, '--emptyOutDir', '--logLevel', 'error'],
      {
        timeout: 120_000,
        // As `npm run build:console` runs it: vitest's NODE_ENV=test would make a different bundle.
        env: { ...process.env, NODE_ENV: 'production' },
      },
    );
    const built = files(scratch);
    expect(files(CONSOLE_DIST)).toEqual(built);
    for (const file of built) expect(readFileSync(join(CONSOLE_DIST, file)).equals(readFileSync(join(scratch, file))), file).toBe(true);
  }, 150_000);

  it('names in its page only assets it contains', () => {
    const html = readFileSync(join(CONSOLE_DIST, 'index.html'), 'utf8');
    const assets = [...html.matchAll(/(?:src|href)="\/console\/([^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThanOrEqual(2);
    for (const asset of assets) expect(files(CONSOLE_DIST)).toContain(asset);
  });
});
