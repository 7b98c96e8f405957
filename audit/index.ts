import { campaignCosts, campaignResponses, type CampaignCostView, type CampaignRecordQuery, type CampaignResponseView } from './campaign-records.ts';
import { InvalidAuditQuery, type Page } from './history.ts';
import { feedbackTexts, type FeedbackTexts } from './feedback-texts.ts';
import type { Projection } from '../projections/projection.ts';
import { readModelProjections } from '../projections/read-models/index.ts';
import { livenessOn } from '../projections/work-liveness.ts';
import { stateAsOf, type RecordAsOf, type TimeAxis } from './as-of.ts';
import { formatChainAnchor, sealChain, startChainSealer, verifyChains, type ChainAnchor, type ChainSealer, type ChainsVerification } from './sql/chain.ts';
import { eventsInSql, type AuditDeps } from './deps.ts';
import type { PersonalDataMode } from './event-view.ts';
import { subjectAccessExport, type SubjectAccessExport } from './subject-access.ts';
import { createVerificationJobs, type VerificationJobs, type VerificationKind } from './verification-jobs.ts';
import { verifyReadModels, type ReadModelVerification, type VerifyProgress } from './verify.ts';

export type { AuditDeps } from './deps.ts';
export { stateAsOf, TIME_AXES, type RecordAsOf, type TimeAxis } from './as-of.ts';
export { eventLog, streamHistory, streamNamed, iterateEventLog, iterateStreamHistory, InvalidAuditQuery } from './history.ts';
export { exportStream, type ExportFormat } from './export.ts';
export { ReadModelsNotBuilt, verifyReadModels, type ReadModelVerification } from './verify.ts';
export {
  chainHead,
  formatChainAnchor,
  parseChainAnchor,
  sealChain,
  startChainSealer,
  verifyChains,
  verifyGlobalChain,
  type AnchorCheck,
  type ChainAnchor,
  type ChainsVerification,
} from './sql/chain.ts';
export { VerificationRunning } from './verification-jobs.ts';
export { subjectAccessExport, type SubjectAccessExport } from './subject-access.ts';
export { describeChainsVerification, describeReadModelVerification } from './summary.ts';

/** Thrown for the chain checks on an engine without SQL access to its events (EventStoreDB). */
export class ChainNotAvailable extends Error {
  constructor(engine: string) {
    super(`Hash chains are kept by the PostgreSQL event store; this deployment stores events in ${engine}.`);
    this.name = 'ChainNotAvailable';
  }
}

/**
 * The auditor's services bound to one deployment. The composition root (runtime/crm.ts) builds
 * one and passes it as `ApiDeps.audit` (and to `crm verify`).
 */
export interface AuditServices {
  readonly deps: AuditDeps;
  /** `GET /audit/state/:kind/:id?asOf=`: the record as it stood at `asOf` (record time unless `time` says business). */
  stateAsOf(kind: string, id: string, asOf: Date | string, options?: { personalData?: PersonalDataMode; time?: TimeAxis }): Promise<RecordAsOf | null>;
  /** Adapter for `ApiDeps.pointInTime` (api/deps.ts `PointInTime`): `GET /customers/:id?asOf=` and friends. */
  pointInTime: {
    stateAt(kind: string, id: string, asOf: Date, time?: TimeAxis): Promise<{ state: Record<string, unknown>; revision: number } | undefined>;
  };
  verifyReadModels(options?: { onProgress?: (progress: VerifyProgress) => void; signal?: AbortSignal }): Promise<ReadModelVerification>;
  /** `anchors`: global hashes kept outside the database, each checked against the chain as it stands. */
  verifyChains(options?: {
    onProgress?: (progress: { phase: string; checked: number }) => void;
    anchors?: readonly ChainAnchor[];
  }): Promise<ChainsVerification>;
  /** Seals the global chain up to the final feed now; 0 on engines without one. */
  sealChain(): Promise<number>;
  /** Periodic sealer for the projection process (PostgreSQL engine only; undefined otherwise). */
  startChainSealer(options?: { intervalMs?: number; onError?: (error: unknown) => void; onSealed?: () => void }): ChainSealer | undefined;
  subjectAccess(customerId: string): Promise<SubjectAccessExport | undefined>;
  /** What each feedback item said when submitted (the read model keeps no body): for the exports. */
  feedbackTexts(feedbackIds: readonly string[]): Promise<Map<string, FeedbackTexts>>;
  /** Campaign responses one by one, from the events (the read model keeps counts): for the responses export. */
  campaignResponses(query: CampaignRecordQuery): Promise<Page<CampaignResponseView>>;
  /** Campaign costs one by one, from the events (the read model keeps their sum): for the costs export. */
  campaignCosts(query: CampaignRecordQuery): Promise<Page<CampaignCostView>>;
  /**
   * Starts a background verification recorded in `audit_verifications` (or joins the one of that kind
   * already running with the same anchors); resolves with its id. `anchors` go with `chains` only.
   */
  startVerification(
    kind: VerificationKind,
    requestedBy: string | null,
    options?: { anchors?: readonly ChainAnchor[] },
  ): Promise<{ id: string; done: Promise<void>; joined: boolean }>;
  verificationJobs(): Promise<VerificationJobs>;
  /** Records the verifications this process runs as ended by its shutdown. */
  stopVerifications(): Promise<void>;
}

export interface AuditServicesOptions {
  /**
   * The projections whose tables `verifyReadModels` replays and compares (default: the read models).
   * Build them so that a replay into a shadow schema writes only there: e.g. the analytics projection
   * WITHOUT `modelSchema` (with it, replaying rescores customers into the live `analytics_scores`).
   */
  projections?: readonly Projection[];
}

export function createAuditServices(deps: AuditDeps, options: AuditServicesOptions = {}): AuditServices {
  const projections = options.projections ?? readModelProjections();
  let jobs: Promise<VerificationJobs> | undefined;
  const verificationJobs = () => {
    jobs ??= createVerificationJobs(deps.database.db, deps.schemas.read, livenessOn(deps.database, deps.sessionLock)).catch((error) => {
      jobs = undefined;
      throw error;
    });
    return jobs;
  };
  const requireSqlEvents = () => {
    if (!eventsInSql(deps)) throw new ChainNotAvailable(deps.store.engine);
  };

  const services: AuditServices = {
    deps,
    stateAsOf: (kind, id, asOf, opts) => stateAsOf(deps, kind, id, asOf, opts),
    pointInTime: {
      async stateAt(kind, id, asOf, time) {
        const found = await stateAsOf(deps, kind, id, asOf, time ? { time } : {});
        return found
          ? { state: { ...found.record, recordedAt: found.recordedAt, occurredAt: found.occurredAt, time: found.time }, revision: found.revision }
          : undefined;
      },
    },
    verifyReadModels: (opts = {}) => verifyReadModels(deps, { projections, ...opts }),
    async verifyChains(opts = {}) {
      requireSqlEvents();
      return verifyChains(deps.database, deps.schemas.events, opts);
    },
    async sealChain() {
      // Requested seals wait for one running in another process rather than answer 0.
      return eventsInSql(deps) ? sealChain(deps.database, deps.schemas.events, { wait: true }) : 0;
    },
    startChainSealer: (opts) => (eventsInSql(deps) ? startChainSealer(deps.database, deps.schemas.events, opts) : undefined),
    subjectAccess: (customerId) => subjectAccessExport(deps, customerId),
    feedbackTexts: (feedbackIds) => feedbackTexts(deps, feedbackIds),
    campaignResponses: (query) => campaignResponses(deps, query),
    campaignCosts: (query) => campaignCosts(deps, query),
    async startVerification(kind, requestedBy, opts = {}) {
      const anchors = opts.anchors ?? [];
      // Refused before anything is recorded: a replay of the read models has no chain to hold them against.
      if (anchors.length > 0 && kind !== 'chains') throw new InvalidAuditQuery('anchors', 'anchors go with kind chains (a check of the hash chains)');
      if (kind === 'chains') requireSqlEvents();
      const jobs = await verificationJobs();
      const recorded = { anchors: anchors.map(formatChainAnchor) };
      return jobs.start(
        kind,
        requestedBy,
        async (onProgress) =>
          kind === 'chains'
            ? services.verifyChains({ onProgress: (p) => onProgress({ phase: p.phase, done: p.checked, total: null }), anchors }).then((result) => {
                // Reported after each page only, and not for the page a broken link stops in: the counts checked, as the result says.
                onProgress({ phase: 'streams', done: result.streams.checked, total: result.streams.checked });
                onProgress({ phase: 'global', done: result.global.checked, total: result.global.checked });
                // The head in the form `anchors` takes back (as `crm verify --chain` prints it); none when either chain is
                // broken: the global walk can end intact over an edited event that only its stream chain catches.
                return { ...result, headAnchor: result.ok && result.global.head ? formatChainAnchor(result.global.head) : null };
              })
            : services.verifyReadModels({ onProgress: (p) => onProgress({ phase: p.phase, done: p.done, total: p.total }) }),
        recorded,
      );
    },
    verificationJobs,
    // Nothing to record where no job was ever asked for.
    stopVerifications: async () => (jobs ? (await jobs.catch(() => undefined))?.stop() : undefined),
  };
  return services;
}
