import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The code map of README.md ("Code map"), enforced: every import of every source file (static,
 * type-only, re-exports and dynamic `import()`) is read with the TypeScript parser and checked
 * against which folder may import which. A failure names the file, the import and the rule.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Top-level folders of the server and what each may import (besides itself and npm packages). */
export const MAY_IMPORT: Record<string, readonly string[]> = {
  domain: [],
  shared: ['domain'],
  eventstore: ['domain', 'shared'],
  commands: ['domain', 'shared', 'eventstore'],
  projections: ['domain', 'shared', 'eventstore'],
  analytics: ['domain', 'shared', 'eventstore', 'projections'],
  integration: ['domain', 'shared', 'eventstore', 'projections'],
  audit: ['domain', 'shared', 'eventstore', 'projections'],
  api: ['domain', 'shared', 'eventstore', 'commands', 'projections', 'analytics', 'audit', 'integration'],
  runtime: ['domain', 'shared', 'eventstore', 'commands', 'projections', 'analytics', 'audit', 'integration', 'api'],
  cli: ['domain', 'shared', 'eventstore', 'commands', 'projections', 'analytics', 'audit', 'integration', 'api', 'runtime'],
  // The web console talks to the server over HTTP only (CONSOLE_MAY_USE below: the role matrix and response types).
  console: [],
  types: [],
};
/**
 * What the web console takes from the server's sources: the role matrix (bundled, so the console
 * shows what a role may do) and, erased at build time, the response types of the queries.
 */
const CONSOLE_MAY_USE: readonly { to: string; typeOnly: boolean }[] = [
  { to: 'api/roles.ts', typeOnly: false },
  { to: 'projections/queries/', typeOnly: true },
];
/** Folders that may import every folder above. */
const ANYTHING = ['test', 'bench', 'mutation'];

/**
 * Narrower rules inside the layers: the engines' internals stay behind the `EventStore` contract.
 * `from` and `to` are path prefixes; `except` lists the importers allowed anyway.
 */
const INTERNALS: readonly { to: string; except: readonly string[]; why: string }[] = [
  {
    to: 'eventstore/postgres/',
    except: ['eventstore/postgres/', 'runtime/', 'audit/sql/', ...ANYTHING.map((f) => `${f}/`)],
    why: 'PostgreSQL engine internals: only the composition root and audit/sql/ (the declared PostgreSQL-only audit features) may use them',
  },
  {
    to: 'eventstore/eventstoredb/',
    except: ['eventstore/eventstoredb/', 'runtime/', ...ANYTHING.map((f) => `${f}/`)],
    why: 'EventStoreDB engine internals: only the composition root opens the engine',
  },
  {
    to: 'runtime/',
    except: ['runtime/', 'cli/', ...ANYTHING.map((f) => `${f}/`)],
    why: 'the composition root is imported by the CLI, tests and benchmarks only',
  },
];

const SOURCE_FOLDERS = [...Object.keys(MAY_IMPORT), ...ANYTHING];
const SKIP = new Set(['node_modules', 'dist']);

const sourceFiles = (folder: string): string[] => {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of entries) {
      if (SKIP.has(name)) continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|tsx|mts|js|mjs)$/.test(name)) out.push(path);
    }
  };
  walk(join(ROOT, folder));
  return out;
};

/** Repository-relative, with forward slashes. */
const repoPath = (path: string) => relative(ROOT, path).split(sep).join('/');

interface Import {
  from: string;
  specifier: string;
  /** Repository-relative target, for relative specifiers. */
  to: string;
  /** Erased at build time (`import type`, `export type`, `typeof import()`). */
  typeOnly: boolean;
}

/** Every module specifier of a file: import and export declarations, `import()` calls and import types. */
const importsOf = (file: string): Import[] => {
  const source = ts.createSourceFile(
    file,
    readFileSync(file, 'utf8'),
    ts.ScriptTarget.Latest,
    false,
    file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS,
  );
  const found: { specifier: string; typeOnly: boolean }[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : undefined;
      const typeOnly = !!clause && (clause.isTypeOnly || (!clause.name && !!named && named.length > 0 && named.every((e) => e.isTypeOnly)));
      found.push({ specifier: node.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      found.push({ specifier: node.arguments[0].text, typeOnly: false });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found
    .filter((f) => f.specifier.startsWith('.'))
    .map((f) => ({ from: repoPath(file), specifier: f.specifier, to: repoPath(resolve(dirname(file), f.specifier)), typeOnly: f.typeOnly }));
};

const topFolder = (path: string): string => path.split('/')[0]!;

/** Names called (`name(...)`) or constructed (`new Name(...)`) in a file. */
const callsOf = (file: string): string[] => {
  const source = ts.createSourceFile(
    file,
    readFileSync(file, 'utf8'),
    ts.ScriptTarget.Latest,
    false,
    file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS,
  );
  const names: string[] = [];
  const visit = (node: ts.Node) => {
    if ((ts.isCallExpression(node) || ts.isNewExpression(node)) && ts.isIdentifier(node.expression)) names.push(node.expression.text);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return names;
};

const allImports = SOURCE_FOLDERS.flatMap(sourceFiles).flatMap(importsOf);
const SERVER_FILES = Object.keys(MAY_IMPORT).flatMap(sourceFiles);

/** What the composition root wires; anywhere else in the server, building one is a second wiring. */
const SERVICE_CONSTRUCTORS = [
  'createPostgresEventStore',
  'createEventStoreDbStore',
  'createPersonalData',
  'createEmailIndex',
  'createCrmCommands',
  'createBatchCommands',
  'ProjectionRunner',
  'ProjectionLeases',
  'createAuditServices',
  'createAnalyticsService',
  'createIntegration',
  'createReadModelQueries',
  'createImportJobs',
  'buildApp',
];
/** Where one is built on purpose outside runtime/: inside the module family that owns it. */
const BUILT_BESIDE: Record<string, readonly string[]> = {
  // The integration module starts its publishers' own lease partition.
  ProjectionLeases: ['integration/index.ts'],
};

describe('the code map (README.md "Code map")', () => {
  it('reads the imports of every source file', () => {
    // A parser that found nothing would pass every rule below: make sure it sees the known arrows.
    expect(allImports.length).toBeGreaterThan(500);
    expect(allImports.some((i) => i.from === 'runtime/crm.ts' && i.to === 'api/app.ts' && !i.typeOnly)).toBe(true);
    expect(allImports.some((i) => i.from === 'api/app.ts' && i.to === 'api/route-context.ts' && i.typeOnly)).toBe(true);
  });

  it('every import goes to a folder its folder may import', () => {
    const broken = allImports
      .filter((i) => {
        const from = topFolder(i.from);
        const to = topFolder(i.to);
        if (from === to || ANYTHING.includes(from)) return false;
        if (from === 'console' && CONSOLE_MAY_USE.some((use) => i.to.startsWith(use.to) && (i.typeOnly || !use.typeOnly))) return false;
        const allowed = MAY_IMPORT[from];
        if (!allowed) return false; // a top-level file (vitest.config.ts, ...)
        return !allowed.includes(to);
      })
      .map(
        (i) =>
          `${i.from} imports '${i.specifier}'${i.typeOnly ? ' (types)' : ''} (${topFolder(i.from)}/ may import ${MAY_IMPORT[topFolder(i.from)]!.join(', ') || 'no other folder'})`,
      );
    expect(broken).toEqual([]);
  });

  it("no engine's internals are reached around the EventStore contract", () => {
    const broken = allImports.flatMap((i) =>
      INTERNALS.filter((rule) => i.to.startsWith(rule.to) && !rule.except.some((prefix) => i.from.startsWith(prefix))).map(
        (rule) => `${i.from} imports '${i.specifier}': ${rule.why}`,
      ),
    );
    expect(broken).toEqual([]);
  });

  it('services are built in the composition root only (runtime/), never in the API or a route', () => {
    const built = SERVER_FILES.flatMap((file) => {
      const path = repoPath(file);
      if (path.startsWith('runtime/')) return [];
      return callsOf(file)
        .filter((name) => SERVICE_CONSTRUCTORS.includes(name) && !(BUILT_BESIDE[name] ?? []).includes(path))
        .map((name) => `${path} builds ${name}(...): services come from runtime/crm.ts (ApiDeps and the other ports)`);
    });
    expect(built).toEqual([]);
  });

  it('no circle between folders', () => {
    const edges = new Map<string, Set<string>>();
    for (const i of allImports) {
      const from = topFolder(i.from);
      const to = topFolder(i.to);
      if (from === to || ANYTHING.includes(from) || !(from in MAY_IMPORT) || !(to in MAY_IMPORT)) continue;
      if (!edges.has(from)) edges.set(from, new Set());
      edges.get(from)!.add(to);
    }
    expect(cycles(edges).map((c) => c.join(' -> '))).toEqual([]);
  });

  it('no circle between the files of the server (type-only imports count)', () => {
    const edges = new Map<string, Set<string>>();
    for (const i of allImports) {
      if (ANYTHING.includes(topFolder(i.from))) continue;
      if (!edges.has(i.from)) edges.set(i.from, new Set());
      edges.get(i.from)!.add(i.to);
    }
    expect(cycles(edges).map((c) => c.join(' -> '))).toEqual([]);
  });
});

/** One circle per strongly connected component of more than one node (Tarjan), shown as a path. */
function cycles(edges: Map<string, Set<string>>): string[][] {
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    indexOf.set(node, index);
    low.set(node, index);
    index++;
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node) ?? []) {
      if (!indexOf.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, indexOf.get(next)!));
      }
    }
    if (low.get(node) === indexOf.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) found.push(pathThrough(component.sort(), edges));
    }
  };
  for (const node of [...edges.keys()].sort()) if (!indexOf.has(node)) visit(node);
  return found;
}

/** A concrete circle inside a component: from its first node, following edges inside it, back to a node seen. */
function pathThrough(component: string[], edges: Map<string, Set<string>>): string[] {
  const inside = new Set(component);
  const path = [component[0]!];
  for (;;) {
    const next = [...(edges.get(path[path.length - 1]!) ?? [])].sort().find((n) => inside.has(n))!;
    const seen = path.indexOf(next);
    if (seen >= 0) return [...path.slice(seen), next];
    path.push(next);
  }
}
