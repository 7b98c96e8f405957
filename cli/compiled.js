// @ts-check
// The `crm` command's sources compiled once into plain JavaScript modules, kept until a source changes.
// Running the TypeScript through tsx's loader costs a second thread with its own heap: about 66 MB
// more resident memory for every `crm` process (a one-row import peaked at 166 MB through tsx and
// 100 MB compiled). The compiled modules live in node_modules/.cache/crm/<hash of the sources>, so
// that the packages they import resolve as from the sources; code splitting keeps the lazy imports
// lazy (the EventStoreDB client, PGlite and the API are loaded only by the commands that use them).
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const KEPT_BUILDS = 3;
const STALE_MS = 24 * 60 * 60 * 1000;
const IN_USE_EVERY_MS = 60 * 60 * 1000;
const LEFTOVER_MS = 60 * 60 * 1000;
const BUILD_NAME = /^[0-9a-f]{16}$/;
const BUILD_SEAL = 'build.json';

/**
 * Each module keeps its own `import.meta.url`: files beside the sources (the console's) are found as
 * before. What was read is kept, so that the build is named after the sources it was compiled from
 * even when one is saved while it runs.
 * @param {Map<string, string>} read source text by absolute path
 * @returns {import('esbuild').Plugin}
 */
const ownModuleUrl = (read) => ({
  name: 'own-module-url',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      read.set(args.path, source);
      return { contents: source.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)), loader: 'ts' };
    });
  },
});

/**
 * @param {string} root
 * @param {string} outdir
 */
const buildOptions = (root, outdir) => ({
  entryPoints: { main: join(root, 'cli', 'main.ts') },
  absWorkingDir: root,
  bundle: true,
  splitting: true,
  format: /** @type {const} */ ('esm'),
  platform: /** @type {const} */ ('node'),
  target: 'node20',
  packages: /** @type {const} */ ('external'),
  sourcemap: /** @type {const} */ ('linked'),
  sourcesContent: false,
  // .mjs: the cache is inside node_modules, where no package.json says the files are modules.
  outExtension: { '.js': '.mjs' },
  outdir,
  metafile: true,
  logLevel: /** @type {const} */ ('silent'),
});

/**
 * Hash of the compiler's version and options, of the project's tsconfig.json (esbuild follows some of
 * its options), of this file, and of every source file's content.
 * @param {string} root
 * @param {string} esbuildVersion
 * @param {string[]} inputs paths relative to the root
 * @param {Map<string, string>} [read] source text already read, by absolute path
 */
const sourcesHash = async (root, esbuildVersion, inputs, read = new Map()) => {
  const hash = createHash('sha256').update(`${esbuildVersion}\0${JSON.stringify(buildOptions(root, ''))}\0`);
  hash.update(await readFile(join(root, 'tsconfig.json'), 'utf8').catch(() => '')).update('\0');
  // And this file: a change in how builds are made makes a new one.
  hash.update(await readFile(fileURLToPath(import.meta.url), 'utf8')).update('\0');
  for (const input of [...inputs].sort()) {
    const path = join(root, input);
    hash
      .update(`${input}\0`)
      .update(read.get(path) ?? (await readFile(path, 'utf8')))
      .update('\0');
  }
  return hash.digest('hex').slice(0, 16);
};

/**
 * @param {string} path
 * @returns {Promise<{ hash: string, inputs: string[] } | undefined>}
 */
const readManifest = async (path) => {
  try {
    const manifest = JSON.parse(await readFile(path, 'utf8'));
    return typeof manifest.hash === 'string' && Array.isArray(manifest.inputs) ? manifest : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Writes a file whole or not at all: several `crm` processes may start at once.
 * @param {string} path
 * @param {string} text
 */
const writeAtomically = async (path, text) => {
  const temporary = `${path}.${randomUUID()}`;
  await writeFile(temporary, text);
  await rename(temporary, path);
};

/**
 * Source maps naming each source by its absolute URL: relative to the map, a source was looked for
 * beside the real path of the build, which is elsewhere when node_modules is a symbolic link.
 * @param {string} dir
 */
const absoluteSources = async (dir) => {
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.map')) continue;
    const map = JSON.parse(await readFile(join(dir, name), 'utf8'));
    map.sources = map.sources.map((/** @type {string} */ source) => pathToFileURL(resolve(dir, source)).href);
    await writeFile(join(dir, name), JSON.stringify(map));
  }
};

/**
 * The size of every file of a build, written last into it: a build without it was cut short, and a
 * file of another size was damaged (a power cut after an unsynced write leaves empty files).
 * @param {string} dir
 */
const sealBuild = async (dir) => {
  /** @type {Record<string, number>} */
  const sizes = {};
  for (const name of await readdir(dir)) sizes[name] = (await stat(join(dir, name))).size;
  await writeFile(join(dir, BUILD_SEAL), JSON.stringify(sizes));
};

/** @param {string} dir */
const isWhole = async (dir) => {
  try {
    const sizes = JSON.parse(await readFile(join(dir, BUILD_SEAL), 'utf8'));
    if (typeof sizes['main.mjs'] !== 'number') return false;
    for (const [name, size] of Object.entries(sizes)) if ((await stat(join(dir, name))).size !== size) return false;
    return true;
  } catch {
    return false;
  }
};

/** @param {string} path */
const exists = (path) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** @param {string} path */
const touch = async (path) => {
  const now = new Date();
  await utimes(path, now, now).catch(() => {});
};

/**
 * Builds are removed once three newer ones exist and none has been started from (or kept in use by
 * a running process, keepInUse) for a day; never the one about to run. Folders of builds cut short
 * (a compile interrupted) go after an hour.
 * @param {string} cache
 * @param {string} running
 */
const removeStaleBuilds = async (cache, running) => {
  const builds = [];
  for (const name of await readdir(cache)) {
    const stats = await stat(join(cache, name)).catch(() => undefined);
    if (!stats?.isDirectory()) continue;
    if (BUILD_NAME.test(name)) {
      if (name !== running) builds.push({ path: join(cache, name), used: stats.mtimeMs });
    } else if (Date.now() - stats.mtimeMs > LEFTOVER_MS) await rm(join(cache, name), { recursive: true, force: true });
  }
  builds.sort((a, b) => b.used - a.used);
  for (const { path, used } of builds.slice(KEPT_BUILDS - 1)) {
    if (Date.now() - used > STALE_MS) await rm(path, { recursive: true, force: true });
  }
};

/**
 * Puts a finished build in place under its hash. Another process may have put the same one there
 * meanwhile (theirs is as good as ours); a damaged one there is moved aside first.
 * @param {string} scratch
 * @param {string} target
 */
const install = async (scratch, target) => {
  try {
    await rename(scratch, target);
    return;
  } catch (error) {
    if (await isWhole(target)) return;
    if (!(await exists(target))) throw error;
  }
  const damaged = `${target}-damaged-${randomUUID()}`;
  if (
    await rename(target, damaged).then(
      () => true,
      () => false,
    )
  )
    await rm(damaged, { recursive: true, force: true });
  await rename(scratch, target).catch(async (error) => {
    if (!(await isWhole(target))) throw error;
  });
};

/**
 * The URL of the compiled `cli/main.ts` under `root`, compiled first if a source changed since the
 * last time (or its build was damaged). Throws when it cannot be compiled there (esbuild missing,
 * node_modules read-only): the caller then runs the sources through tsx.
 * @param {string} [root]
 */
export async function compiledEntry(root = PROJECT_ROOT) {
  // The compiler itself is loaded only to compile: loading it costs every start about 10 MB and 40 ms.
  const version = JSON.parse(await readFile(createRequire(import.meta.url).resolve('esbuild/package.json'), 'utf8')).version;
  const cache = join(root, 'node_modules', '.cache', 'crm');
  const manifestPath = join(cache, 'manifest.json');
  const manifest = await readManifest(manifestPath);
  if (manifest) {
    const hash = await sourcesHash(root, version, manifest.inputs).catch(() => undefined);
    if (hash === manifest.hash && (await isWhole(join(cache, hash)))) {
      await touch(join(cache, hash));
      return pathToFileURL(join(cache, hash, 'main.mjs')).href;
    }
  }
  await mkdir(cache, { recursive: true });
  const scratch = join(cache, `building-${randomUUID()}`);
  try {
    const read = new Map();
    const { build } = await import('esbuild');
    const result = await build({ ...buildOptions(root, scratch), plugins: [ownModuleUrl(read)] });
    const inputs = Object.keys(result.metafile?.inputs ?? {});
    const hash = await sourcesHash(root, version, inputs, read);
    await absoluteSources(scratch);
    await sealBuild(scratch);
    await install(scratch, join(cache, hash));
    await touch(join(cache, hash));
    await writeAtomically(manifestPath, JSON.stringify({ hash, inputs }));
    await removeStaleBuilds(cache, hash).catch(() => {});
    return pathToFileURL(join(cache, hash, 'main.mjs')).href;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * A process that runs for long (a server, a projection worker) marks its build as used every hour,
 * so that no other `crm` removes it while lazy chunks of it may still be loaded.
 * @param {string} entry the URL compiledEntry gave
 */
export const keepInUse = (entry) => {
  const build = dirname(fileURLToPath(entry));
  setInterval(() => void touch(build), IN_USE_EVERY_MS).unref();
};
