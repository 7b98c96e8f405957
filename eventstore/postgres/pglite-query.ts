import type { PGlite } from '@electric-sql/pglite';

/**
 * The embedded engine with its `query` replaced (the kysely dialect sends every statement through it);
 * everything else reaches the engine as it is.
 */
export const withQuery = (pglite: PGlite, query: PGlite['query']): PGlite =>
  new Proxy(pglite, {
    get: (target, name) => {
      if (name === 'query') return query;
      const value = Reflect.get(target, name) as unknown;
      // Bound to the engine itself: its methods read private fields, which a proxy does not have.
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
