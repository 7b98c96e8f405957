/**
 * The roles a user, an API key or an integration subscriber may hold (api/roles.ts says what each may
 * call). Free of zod: the web console bundles it through api/roles.ts.
 */
export const ROLES = ['admin', 'sales', 'marketing', 'support', 'analyst', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

/** Analysts see pseudonymised records: the personal fields are masked, in the API as in integration events. */
export const seesPersonalData = (role: Role): boolean => role !== 'analyst';
