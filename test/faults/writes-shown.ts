import type { FastifyInstance } from 'fastify';
import { READY_REUSE_MS } from '../../api/routes/ops.ts';

/** What /ready says of writes (a new answer: past the one it shares for READY_REUSE_MS), and the gauge an alert watches. */
export const writesShown = async (app: FastifyInstance) => {
  await new Promise((resolve) => setTimeout(resolve, READY_REUSE_MS + 50));
  const ready = await app.inject({ method: 'GET', url: '/ready' });
  const metrics = await app.inject({ method: 'GET', url: '/metrics' });
  const body = ready.json<{ writes: { state: string; reason: string | null; since: string | null; detail: string | null }; warnings: string[] }>();
  return {
    status: ready.statusCode,
    writes: body.writes,
    warnings: body.warnings,
    gauge: /^crm_writes_refused\{reason="disk-full"\} (\d)$/m.exec(metrics.body)?.[1],
  };
};
