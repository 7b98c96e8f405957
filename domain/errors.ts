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
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (code: string, message: string) => new DomainError('not_found', code, message);
export const invalidState = (code: string, message: string, field?: string) =>
  new DomainError('invalid_state', code, message, field);
export const ruleViolated = (code: string, message: string, field?: string) =>
  new DomainError('rule_violated', code, message, field);
