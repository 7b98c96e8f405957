import { sql, type QueryExecutorProvider } from 'kysely';
import type { ModelParams, StoredModel } from './scoring.ts';

/** A stored model with the base currency its money parameters were fitted in (null: stored before it was recorded). */
export type FittedModel = StoredModel & { fittedCurrency: string | null };

export interface ModelRecord extends FittedModel {
  fittedAt: string;
  asOf: string;
  timeUnit: string;
  horizon: number;
  discountRate: number;
  metrics: Record<string, unknown>;
}

/** Parsed params by schema and version: a version never changes once stored, so the cache never goes stale. */
const cache = new Map<string, FittedModel>();

const parseJson = (v: unknown): any => (typeof v === 'string' ? JSON.parse(v) : v);

/** The latest model version in `schema`, or null before the first fit. One indexed query per call. */
export async function loadLatestModel(db: QueryExecutorProvider, schema: string): Promise<FittedModel | null> {
  const { rows } = await sql<{ version: number }>`SELECT version FROM ${sql.id(schema, 'analytics_models')} ORDER BY version DESC LIMIT 1`.execute(db);
  const version = rows[0]?.version;
  if (version === undefined) return null;
  const key = `${schema}:${version}`;
  const cached = cache.get(key);
  if (cached) return cached;
  const record = await loadModelRecord(db, schema, version);
  if (!record) return null;
  const model = { version: record.version, params: record.params, fittedCurrency: record.fittedCurrency };
  cache.set(key, model);
  return model;
}

/** The fit records the base currency of its amounts with Gamma-Gamma's figures (analytics/service.ts). */
const fittedCurrencyOf = (metrics: Record<string, unknown>): string | null => {
  const currency = (metrics.fits as { gammaGamma?: { baseCurrency?: unknown } } | undefined)?.gammaGamma?.baseCurrency;
  return typeof currency === 'string' ? currency : null;
};

export async function loadModelRecord(db: QueryExecutorProvider, schema: string, version?: number): Promise<ModelRecord | null> {
  const { rows } = await sql<Record<string, unknown>>`SELECT version, fitted_at, as_of::text AS as_of, time_unit, horizon, discount_rate, params, metrics
    FROM ${sql.id(schema, 'analytics_models')}
    ${version === undefined ? sql`` : sql`WHERE version = ${version}`}
    ORDER BY version DESC LIMIT 1`.execute(db);
  const r = rows[0];
  if (!r) return null;
  const metrics = parseJson(r.metrics) as Record<string, unknown>;
  return {
    version: Number(r.version),
    fittedAt: new Date(r.fitted_at as string).toISOString(),
    asOf: String(r.as_of),
    timeUnit: String(r.time_unit),
    horizon: Number(r.horizon),
    discountRate: Number(r.discount_rate),
    params: parseJson(r.params) as ModelParams,
    metrics,
    fittedCurrency: fittedCurrencyOf(metrics),
  };
}

/** Stores a new version (max + 1 under a table lock, so concurrent fits get distinct versions). */
export async function saveModel(
  trx: QueryExecutorProvider,
  schema: string,
  model: { fittedAt: string; asOf: string; params: ModelParams; metrics: Record<string, unknown> },
): Promise<number> {
  await sql`LOCK TABLE ${sql.id(schema, 'analytics_models')} IN EXCLUSIVE MODE`.execute(trx);
  const { rows } = await sql<{ next: number }>`SELECT COALESCE(MAX(version), 0) + 1 AS next FROM ${sql.id(schema, 'analytics_models')}`.execute(trx);
  const version = Number(rows[0]!.next);
  await sql`INSERT INTO ${sql.id(schema, 'analytics_models')} (version, fitted_at, as_of, time_unit, horizon, discount_rate, params, metrics)
    VALUES (${version}, ${model.fittedAt}, ${model.asOf}, ${model.params.timeUnit}, ${model.params.horizon}, ${model.params.discountRate},
      ${JSON.stringify(model.params)}::jsonb, ${JSON.stringify(model.metrics)}::jsonb)`.execute(trx);
  return version;
}
