import type { ApiKeyStore } from './auth/api-keys.ts';
import type { CursorSeal } from './cursor-seal.ts';
import type { ApiDeps } from './deps.ts';
import type { IdempotencyGuard } from './idempotency.ts';
import type { ApiMetrics } from './metrics.ts';
import type { WriteRefusals } from './write-refusals.ts';

/**
 * Everything a route plugin (ours, analytics, audit) receives as options. Its own module, so that
 * the route files and api/app.ts, which registers them, do not import each other.
 */
export interface RouteContext {
  deps: ApiDeps;
  metrics: ApiMetrics;
  keys: ApiKeyStore;
  waitForTimeoutMs: number;
  idempotency: IdempotencyGuard;
  cursors: CursorSeal;
  /** Whether commands are refused for a full disk (GET /ready, crm_writes_refused). */
  writes: WriteRefusals;
}
