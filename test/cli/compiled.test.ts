import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
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

  it('never remove the build about to run, however long unused, even when it is an older one found again', async () => {
    const root = await project('first');
    const first = fileURLToPath(await compiledEntry(root));
    const firstBuild = join(first, '..');
    for (const greeting of ['second', 'third', 'fourth']) {
      await writeGreeting(root, greeting);
      await compiledEntry(root);
    }
    const twoDaysAgo = new Date(Date.now() - 48 * 60 * 60 * 1000);
    await utimes(firstBuild, twoDaysAgo, twoDaysAgo);
    // The sources as they were (a checkout of an older version): their build is found, and kept.
    await writeGreeting(root, 'first');
    expect(fileURLToPath(await compiledEntry(root))).toBe(first);
    expect((await start(pathToFileURL(first).href))[0]).toMatch(/^first /);
  });

  it('are compiled again when their build was damaged or cut short, and what was left of it goes', async () => {
    const root = await project();
    const entry = await compiledEntry(root);
    const build = join(fileURLToPath(entry), '..');
    // A power cut after an unsynced write leaves empty files.
    await writeFile(fileURLToPath(entry), '');
    expect(await compiledEntry(root)).toBe(entry);
    expect(await start(entry)).toEqual([expect.stringMatching(/^hello /)]);
    // A build without its list of files never finished.
    await rm(join(build, 'build.json'));
    expect(await compiledEntry(root)).toBe(entry);
    expect(await start(entry)).toEqual([expect.stringMatching(/^hello /)]);
    // Folders of builds cut short, an hour old, are removed by the next compile.
    const cache = join(root, 'node_modules', '.cache', 'crm');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await mkdir(join(cache, 'building-left-by-a-kill'));
    await utimes(join(cache, 'building-left-by-a-kill'), twoHoursAgo, twoHoursAgo);
    await writeGreeting(root, 'changed');
    await compiledEntry(root);
    expect((await readdir(cache)).filter((name) => !/^[0-9a-f]{16}$/.test(name))).toEqual(['manifest.json']);
  });

  it('are compiled again when tsconfig.json changes (esbuild follows some of its options)', async () => {
    const root = await project();
    const first = await compiledEntry(root);
    await writeFile(join(root, 'tsconfig.json'), JSON.stringify({ compilerOptions: { useDefineForClassFields: false } }));
    expect(await compiledEntry(root)).not.toBe(first);
  });

  it('name the TypeScript sources in stack traces, where node_modules is a symbolic link too', async () => {
    const root = await project();
    const elsewhere = await mkdtemp(join(tmpdir(), 'crm-compiled-modules-'));
    roots.push(elsewhere);
    await symlink(elsewhere, join(root, 'node_modules'));
    await writeFile(join(root, 'cli', 'main.ts'), "import { greeting } from './greeting.ts';\nif (greeting) throw new Error('from the sources');\n");
    const entry = await compiledEntry(root);
    const { stderr } = await run(process.execPath, ['--enable-source-maps', fileURLToPath(entry)]).then(
      () => ({ stderr: 'it did not throw' }),
      (error: { stderr: string }) => error,
    );
    expect(stderr).toContain(`${join(root, 'cli', 'main.ts')}:2`);
  });

  it('refuse a source that does not compile (the bin then runs the sources through tsx, which names the error)', async () => {
    const root = await project();
    await writeFile(join(root, 'cli', 'greeting.ts'), 'export const greeting: string = ;\n');
    await expect(compiledEntry(root)).rejects.toThrow();
    expect(await builds(root)).toEqual([]);
  });
});
