import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { ProblemError } from './problems.ts';

/** The built web console (`npm run build:console` writes it; the build is committed). */
export const CONSOLE_DIST = fileURLToPath(new URL('../console/dist/', import.meta.url));

/**
 * The console's own policy: its scripts, styles and API calls come from this origin only. The API's
 * routes keep helmet's `default-src 'none'`; this one applies to the console's routes only (the
 * plugin is encapsulated).
 */
const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join(';');

/** Where people look for the console besides `/`: each is sent to `/`, its one address. */
export const CONSOLE_ALIASES = ['/console', '/console/', '/console/index.html'] as const;

/**
 * Serves the console at `/` (its page) and `/console/*` (its hashed assets). Its screens are hash
 * routes (`/#/customers`), so no console path can shadow an API route.
 */
export const consoleRoutes: FastifyPluginAsync<{ root?: string }> = async (app, options) => {
  const root = options.root ?? CONSOLE_DIST;
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('content-security-policy', CONSOLE_CSP);
    return payload;
  });
  const page = { config: { rateLimit: false }, schema: { hide: true }, logLevel: 'warn' } as const;
  // The page under another address would be cached as an immutable asset (below) and go stale.
  for (const alias of CONSOLE_ALIASES) app.get(alias, page, async (_request, reply) => reply.redirect('/', 302));
  if (!existsSync(`${root}/index.html`)) {
    app.get('/', page, async () => {
      throw new ProblemError('unavailable', 'The web console is not built: run `npm run build:console`.');
    });
    return;
  }
  await app.register(fastifyStatic, {
    root,
    prefix: '/console/',
    index: false,
    // Asset names carry a content hash: cache them for good. The page itself is revalidated.
    immutable: true,
    maxAge: '365d',
    schemaHide: true,
  });
  // The page names the current asset hashes: revalidated on every load (max-age=0).
  app.get('/', page, async (_request, reply) => reply.sendFile('index.html', root, { maxAge: 0, immutable: false }));
};
