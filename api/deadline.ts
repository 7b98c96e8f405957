/** Probes (/ready, /metrics) answer within a second whatever the database does. */
export const PROBE_DEADLINE_MS = 750;

export { withDeadline } from '../shared/deadline.ts';
