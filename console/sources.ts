import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The console's folder. */
export const CONSOLE_ROOT = fileURLToPath(new URL('.', import.meta.url));
/** What the build stamps into `dist/build.json`, and what the staleness test recomputes. */
export const BUILD_STAMP = 'build.json';
/** The packages whose code lands in the bundle (or builds it): a version change means a rebuild. */
const BUNDLED = ['vite', 'preact', 'uplot'];

const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)]));

/**
 * A hash of everything the built console is made from: its sources, its build configuration and the
 * installed versions of the bundled packages. The committed build records it; a test fails when the
 * sources moved on without `npm run build:console`.
 */
export const consoleSourcesHash = (): string => {
  const hash = createHash('sha256');
  const files = [
    join(CONSOLE_ROOT, 'index.html'),
    join(CONSOLE_ROOT, 'vite.config.ts'),
    join(CONSOLE_ROOT, 'sources.ts'),
    ...filesUnder(join(CONSOLE_ROOT, 'src')),
  ];
  for (const file of files.sort()) {
    hash.update(relative(CONSOLE_ROOT, file).replaceAll('\\', '/')).update('\0').update(readFileSync(file)).update('\0');
  }
  const lock = JSON.parse(readFileSync(join(CONSOLE_ROOT, '..', 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
  for (const name of BUNDLED) hash.update(`${name}@${lock.packages[`node_modules/${name}`]?.version ?? 'missing'}\0`);
  return hash.digest('hex');
};
