import type { CustomerSnapshot } from '../domain/customer/decider.ts';
import { DomainError, invalidState } from '../domain/errors.ts';
import type { EmailIndex } from '../eventstore/email-index.ts';

/** A claim younger than this may belong to a registration still being appended; older and unregistered, it is abandoned. */
export const ABANDONED_CLAIM_SECONDS = 60;

/**
 * Whether the caller may see a customer (their scope); absent for callers who see every customer. A
 * holder outside it is never named: the refusal says only that someone they cannot see has the address.
 */
export type CustomerVisible = (customerId: string) => Promise<boolean>;

/**
 * Holds the address for `customerId` (`fresh` when it was not already theirs) before its registration (or email change) is appended, or refuses
 * with 409 `customer.email_taken` naming the customer who has it (the primary, if that one was merged).
 * The claim is made first and is atomic (see eventstore/email-index.ts), so two concurrent registrations
 * of one address cannot both pass.
 */
export async function claimEmail(
  index: EmailIndex,
  email: string,
  customerId: string,
  customerOf: (id: string) => Promise<CustomerSnapshot>,
  visible?: CustomerVisible,
): Promise<{ fresh: boolean }> {
  const result = await index.claim(email, customerId);
  if (result.claimed) return { fresh: result.fresh };
  return takeOverOrRefuse(index, email, customerId, result.holder, customerOf, visible);
}

/**
 * An address another customer's claim holds: taken over when that claim is abandoned (never
 * registered) or its customer forgotten, else refused with 409 `customer.email_taken` naming the
 * customer who has it (the primary, if that one was merged), or, when the caller may not see that
 * customer, naming nobody.
 */
export async function takeOverOrRefuse(
  index: EmailIndex,
  email: string,
  customerId: string,
  holderId: string,
  customerOf: (id: string) => Promise<CustomerSnapshot>,
  visible?: CustomerVisible,
): Promise<{ fresh: true }> {
  const holder = await customerOf(holderId);
  // Abandoned (never registered) or forgotten in a race with this claim: the address is free.
  if ((!holder.exists || holder.forgotten) && (await index.takeOver(email, holderId, customerId, holder.forgotten ? 0 : ABANDONED_CLAIM_SECONDS)))
    return { fresh: true };
  const shown = holder.mergedInto ?? holderId;
  if (visible && !(await visible(shown))) throw emailTakenOutOfSight();
  throw emailTaken(shown);
}

/** A claim of `claimEmails`: held (`fresh` when it was free), or refused with `customer.email_taken`. */
export type ClaimOutcome = { fresh: boolean } | { refused: DomainError };

/**
 * Many addresses claimed in one round trip (bulk import, `crm claim-emails`), each settled as
 * `claimEmail` settles one. An address held by another customer of the same call is refused, never
 * taken over: that customer's claim may be old (a run that stopped) and is theirs all the same.
 * `readHolders` may read the holders' states in one go before `customerOf` asks for them one by one.
 */
export async function claimEmails(
  index: EmailIndex,
  claims: readonly { email: string; customerId: string }[],
  customerOf: (id: string) => Promise<CustomerSnapshot>,
  readHolders?: (ids: string[]) => Promise<void>,
): Promise<ClaimOutcome[]> {
  if (claims.length === 0) return [];
  const answers = await index.claimMany(claims);
  const holders = answers.flatMap((a) => (a.claimed ? [] : [a.holder]));
  if (holders.length > 0 && readHolders) await readHolders(holders);
  const askers = new Set(claims.map((c) => c.customerId));
  const outcomes: ClaimOutcome[] = [];
  for (const [i, answer] of answers.entries()) {
    if (answer.claimed) {
      outcomes.push({ fresh: answer.fresh });
      continue;
    }
    try {
      if (askers.has(answer.holder)) throw emailTaken(answer.holder);
      outcomes.push(await takeOverOrRefuse(index, claims[i]!.email, claims[i]!.customerId, answer.holder, customerOf));
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      outcomes.push({ refused: error });
    }
  }
  return outcomes;
}

/** 409 `customer.email_taken`, naming the customer who has the address. */
export const emailTaken = (customerId: string) =>
  invalidState('customer.email_taken', `Customer ${customerId} already has this email address`, 'email', { customerId });

/**
 * 409 `customer.email_taken` for a caller who may not see the customer holding the address: neither
 * its id nor anything else of it, only what the caller can do next.
 */
export const emailTakenOutOfSight = () =>
  invalidState(
    'customer.email_taken',
    'Another customer, one you cannot see, already has this email address. Ask an administrator to find that customer ' +
      '(to merge the two or correct an address); a registration may instead send "allowDuplicate": true to keep both.',
    'email',
  );

/** The address a command names and means to hold (none with `allowDuplicate`), whatever the customer's state. */
export const addressOf = (command: Record<string, unknown>): string | undefined =>
  typeof command.email === 'string' && command.allowDuplicate !== true ? command.email : undefined;

/**
 * The address a command must hold before it is appended, if any: a registration's (of a customer not
 * yet registered) or an email change's (of a customer who can still change), unless `allowDuplicate`.
 * Commands the decider will refuse anyway claim nothing, so they leave no claim behind.
 */
export const emailToClaim = (command: Record<string, unknown>, self: CustomerSnapshot): string | undefined => {
  const email = addressOf(command);
  if (email === undefined) return undefined;
  if (command.type === 'RegisterCustomer') return self.exists ? undefined : email;
  if (command.type === 'ChangeCustomerDetails') return !self.exists || self.forgotten || self.mergedInto ? undefined : email;
  return undefined;
};

/**
 * Runs a registration or an email change with the address claimed first (unless `allowDuplicate`),
 * and, after an email change, frees the customer's previous address. Commands the decider will refuse
 * anyway (a customer already registered, unknown, forgotten or merged) claim nothing, so they leave no
 * claim behind.
 */
export async function withEmailClaim<R>(
  index: EmailIndex,
  command: Record<string, unknown>,
  run: () => Promise<R>,
  customerOf: (id: string) => Promise<CustomerSnapshot>,
  visible?: CustomerVisible,
): Promise<R> {
  const customerId = command.customerId as string;
  // No address to hold: no need to read the customer.
  if (addressOf(command) === undefined) return run();
  const email = emailToClaim(command, await customerOf(customerId));
  if (email === undefined) return run();
  const registering = command.type === 'RegisterCustomer';
  const { fresh } = await claimEmail(index, email, customerId, customerOf, visible);
  let result: R;
  try {
    result = await run();
  } catch (error) {
    // Refused or failed (a stale If-Match, the store down): the address is not this customer's after all.
    if (fresh) await index.release(email, customerId).catch(() => undefined);
    throw error;
  }
  if (!registering) await index.releaseOthers(customerId, email);
  return result;
}
