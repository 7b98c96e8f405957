import type { FastifyRequest } from 'fastify';
import { ProblemError } from './problems.ts';

export interface RoutePattern {
  method: string;
  /** As registered: `/customers/:id/purchases`, `/console/*`. */
  url: string;
}

/** A route pattern as a regular expression over concrete paths: a `:param` is one segment (empty too, as the router reads it), `*` the rest. */
const patternOf = (url: string): RegExp =>
  new RegExp(
    `^${url
      .split(/(:[A-Za-z0-9_]+|\*)/)
      .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('')}$`,
  );

/**
 * The answer to a request no route took: 405 with `Allow` when the path is served with other methods
 * (`PUT /customers`, `DELETE /customers/<id>`), else 404. `routes` is read when the first request
 * comes (every route is registered by then); the CORS catch-all `OPTIONS *` serves every path and
 * is left out, so it does not count as a method of each.
 */
export const createUnmatched = (routes: readonly RoutePattern[]) => {
  let compiled: { method: string; pattern: RegExp }[] | undefined;
  const methodsAt = (path: string): string[] => {
    compiled ??= routes.filter((r) => r.url !== '*').map((r) => ({ method: r.method, pattern: patternOf(r.url) }));
    return [...new Set(compiled.filter((r) => r.pattern.test(path)).map((r) => r.method))].sort();
  };
  return (request: FastifyRequest): ProblemError => {
    const path = request.url.split('?')[0] ?? request.url;
    const allowed = methodsAt(path);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      const allow = [...allowed, 'OPTIONS'].join(', ');
      return new ProblemError(
        'method_not_allowed',
        `${request.method} is not served at ${path}; it answers ${allow}.`,
        { errors: [{ field: 'method', message: `one of ${allow}` }] },
        { allow },
      );
    }
    return new ProblemError('not_found', `No route ${request.method} ${path}.`);
  };
};
