/**
 * Why a command was refused, in the CRM's words. `kind` decides the HTTP status later:
 * not_found -> 404, invalid_state -> 409, rule_violated -> 422.
 */
export type DomainErrorKind = 'not_found' | 'invalid_state' | 'rule_violated';

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    /** Stable machine code, e.g. `deal.terminal_stage`. */
    readonly code: string,
    message: string,
    /** The command field the refusal is about, when there is one. */
    readonly field?: string,
    /** Machine-readable facts about the refusal, e.g. `{ primaryId }` for a merged customer or `{ remaining }` for a refund. */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (code: string, message: string, field?: string, details?: Record<string, unknown>) =>
  new DomainError('not_found', code, message, field, details);
export const invalidState = (code: string, message: string, field?: string, details?: Record<string, unknown>) =>
  new DomainError('invalid_state', code, message, field, details);
export const ruleViolated = (code: string, message: string, field?: string, details?: Record<string, unknown>) =>
  new DomainError('rule_violated', code, message, field, details);
