import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { compiledEntry } from '../../cli/compiled.js';

/**
 * The `crm` bin compiles the sources once and reuses them until one changes. Each test builds a small
 * project of its own (a `cli/main.ts` with an eager and a lazy import) in a scratch folder.
 */

const run = promisify(execFile);
const roots: string[] = [];

const project = async (greeting = 'hello'): Promise<string> => {
  const root = await mkdtemp(join(tmpdir(), 'crm-compiled-'));
  roots.push(root);
  await mkdir(join(root, 'cli'));
  await writeGreeting(root, greeting);
  await writeFile(join(root, 'cli', 'lazy.ts'), "console.log('lazy module loaded');\nexport const lazy: string = 'lazy';\n");
  await writeFile(
    join(root, 'cli', 'main.ts'),
    [
      "import { greeting, where } from './greeting.ts';",
      'console.log(greeting, where);',
      "if (process.argv.includes('--lazy')) console.log((await import('./lazy.ts')).lazy);",
    ].join('\n'),
  );
  return root;
};

const writeGreeting = (root: string, greeting: string) =>
  writeFile(join(root, 'cli', 'greeting.ts'), `export const greeting: string = ${JSON.stringify(greeting)};\nexport const where = import.meta.url;\n`);

const start = async (entry: string, ...args: string[]) => (await run(process.execPath, [fileURLToPath(entry), ...args])).stdout.trim().split('\n');

const builds = async (root: string) => (await readdir(join(root, 'node_modules', '.cache', 'crm'))).filter((name) => name !== 'manifest.json');

afterEach(async () => {
  await Promise.all(roots.splice(0).map((root) => rm(root, { recursive: true, force: true })));
});

describe('the compiled sources of the crm command', () => {
  it('are compiled on first use, run as the sources would, and each module keeps its own import.meta.url', async () => {
    const root = await project();
    const entry = await compiledEntry(root);
    expect(entry).toMatch(new RegExp(`^${pathToFileURL(join(root, 'node_modules', '.cache', 'crm')).href}/[0-9a-f]{16}/main\\.mjs$`));
    expect(await start(entry)).toEqual([`hello ${pathToFileURL(join(root, 'cli', 'greeting.ts')).href}`]);
  });

  it('are reused while no source changes, and compiled again when one does', async () => {
    const root = await project();
    const first = await compiledEntry(root);
    const compiledAt = (await stat(fileURLToPath(first))).mtimeMs;
    expect(await compiledEntry(root)).toBe(first);
    expect((await stat(fileURLToPath(first))).mtimeMs).toBe(compiledAt);

    await writeGreeting(root, 'good evening');
    const second = await compiledEntry(root);
    expect(second).not.toBe(first);
    expect((await start(second))[0]).toMatch(/^good evening /);
  });

  it('keep a lazy import lazy: its module is loaded only when the command reaches it', async () => {
    const root = await project();
    const entry = await compiledEntry(root);
    expect(await start(entry)).not.toContain('lazy module loaded');
    expect(await start(entry, '--lazy')).toEqual([expect.stringMatching(/^hello /), 'lazy module loaded', 'lazy']);
  });

  it('are compiled once and shared when several commands start at the same time', async () => {
    const root = await project();
    const entries = await Promise.all(Array.from({ length: 4 }, () => compiledEntry(root)));
    expect(new Set(entries).size).toBe(1);
    expect(await builds(root)).toHaveLength(1);
    expect((await start(entries[0]!))[0]).toMatch(/^hello /);
  });

  it('remove builds nobody has started from for a day, keeping the three newest', async () => {
    const root = await project();
    await compiledEntry(root);
    const cache = join(root, 'node_modules', '.cache', 'crm');
    const dayAndHourAgo = new Date(Date.now() - 25 * 60 * 60 * 1000);
    const old = ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004'];
    for (const [i, name] of old.entries()) {
      await mkdir(join(cache, name));
      await utimes(join(cache, name), dayAndHourAgo, new Date(dayAndHourAgo.getTime() + i * 1000));
    }
    await writeGreeting(root, 'changed');
    const current = fileURLToPath(await compiledEntry(root));
    const kept = await builds(root);
    // The new build, the one before it (used just now) and the most recently used of the old ones.
    expect(kept).toHaveLength(3);
    expect(kept).toContain(join(current, '..').split('/').pop());
    expect(kept).toContain('0000000000000004');
  });

  it('refuse a source that does not compile (the bin then runs the sources through tsx, which names the error)', async () => {
    const root = await project();
    await writeFile(join(root, 'cli', 'greeting.ts'), 'export const greeting: string = ;\n');
    await expect(compiledEntry(root)).rejects.toThrow();
    expect(await builds(root)).toEqual([]);
  });
});
