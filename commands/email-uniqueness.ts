import type { CustomerSnapshot } from '../domain/customer/decider.ts';
import { DomainError, invalidState } from '../domain/errors.ts';
import { normaliseEmail } from '../domain/shared.ts';
import type { UserState } from '../domain/user/decider.ts';
import type { EmailIndex } from '../eventstore/email-index.ts';
import { OutcomeUnknown } from '../eventstore/errors.ts';

/** A claim younger than this may belong to a registration still being appended; older and unregistered, it is abandoned. */
export const ABANDONED_CLAIM_SECONDS = 60;

/**
 * Whether the caller may see a customer (their scope); absent for callers who see every customer. A
 * holder outside it is never named: the refusal says only that someone they cannot see has the address.
 */
export type CustomerVisible = (customerId: string) => Promise<boolean>;

/**
 * What the holder of a claimed address means for a claimant: the one rule customers and users differ
 * in. `abandonedAfter` is the age (seconds) from which the holder's claim may be taken over (0: at
 * once), or undefined while the holder has the address; `taken` is the refusal when it may not.
 */
interface AddressHolders {
  abandonedAfter(holderId: string): Promise<number | undefined>;
  taken(holderId: string): Promise<DomainError>;
}

/**
 * Holds the address for `holderId` (`fresh` when it was not already theirs), or refuses with
 * `holders.taken`. The claim is made first and is atomic (see eventstore/email-index.ts), so two
 * concurrent registrations of one address cannot both pass.
 */
async function holdAddress(index: EmailIndex, email: string, holderId: string, holders: AddressHolders): Promise<{ fresh: boolean }> {
  const result = await index.claim(email, holderId);
  if (result.claimed) return { fresh: result.fresh };
  return takeOverOrRefuseWith(index, email, holderId, result.holder, holders);
}

/** An address another's claim holds: taken over when that claim is abandoned, else refused. */
async function takeOverOrRefuseWith(index: EmailIndex, email: string, claimant: string, holderId: string, holders: AddressHolders): Promise<{ fresh: true }> {
  const after = await holders.abandonedAfter(holderId);
  if (after !== undefined && (await index.takeOver(email, holderId, claimant, after))) return { fresh: true };
  throw await holders.taken(holderId);
}

/**
 * Runs a command with `email` held for `holderId` first; a claim it made is freed again when the
 * command is refused or fails, and after a `change` the holder's previous address is freed. A
 * registration whose outcome is unknown (the connection lost as the append was sent) keeps the claim:
 * the append may have committed, and a retry with the same key answers the first result without
 * claiming again (the customer exists), so the address stayed free for a twin registration. If nothing
 * was stored, the claim's holder does not exist and it is taken over after ABANDONED_CLAIM_SECONDS.
 * An email change frees it as any failure does: its holder exists, so a kept claim would never be
 * taken over (the address refused for good), and its retry claims the address again.
 */
async function withAddressHeld<R>(
  index: EmailIndex,
  email: string,
  holderId: string,
  change: boolean,
  run: () => Promise<R>,
  holders: AddressHolders,
): Promise<R> {
  const { fresh } = await holdAddress(index, email, holderId, holders);
  let result: R;
  try {
    result = await run();
  } catch (error) {
    // Refused or failed (a stale If-Match, the store down): the address is not theirs after all.
    if (fresh && (change || !(error instanceof OutcomeUnknown))) await index.release(email, holderId).catch(() => undefined);
    throw error;
  }
  if (change) await index.releaseOthers(holderId, email);
  return result;
}

/**
 * Customers as holders: an abandoned claim (never registered) is taken over after
 * `ABANDONED_CLAIM_SECONDS`, a forgotten customer's at once; otherwise 409 `customer.email_taken`
 * naming the customer who has it (the primary, if that one was merged), or, when the caller may not
 * see that customer, naming nobody.
 */
const customerHolders = (customerOf: (id: string) => Promise<CustomerSnapshot>, visible?: CustomerVisible): AddressHolders => ({
  async abandonedAfter(holderId) {
    const holder = await customerOf(holderId);
    if (holder.forgotten) return 0;
    return holder.exists ? undefined : ABANDONED_CLAIM_SECONDS;
  },
  async taken(holderId) {
    const holder = await customerOf(holderId);
    const shown = holder.mergedInto ?? holderId;
    if (visible && !(await visible(shown))) return emailTakenOutOfSight();
    return emailTaken(shown);
  },
});

/**
 * Holds the address for `customerId` (`fresh` when it was not already theirs) before its registration (or email change) is appended, or refuses
 * with 409 `customer.email_taken` naming the customer who has it (the primary, if that one was merged).
 */
export const claimEmail = (
  index: EmailIndex,
  email: string,
  customerId: string,
  customerOf: (id: string) => Promise<CustomerSnapshot>,
  visible?: CustomerVisible,
): Promise<{ fresh: boolean }> => holdAddress(index, email, customerId, customerHolders(customerOf, visible));

/** A claim of `claimEmails`: held (`fresh` when it was free), or refused with `customer.email_taken` (`user.email_taken`). */
export type ClaimOutcome = { fresh: boolean } | { refused: DomainError };

/**
 * Many addresses claimed in one round trip, each settled as `holdAddress` settles one. An address held
 * by another holder of the same call is refused with `takenInCall`, never taken over: that one's claim
 * may be old (a run that stopped) and is theirs all the same.
 */
async function claimAddresses(
  index: EmailIndex,
  claims: readonly { email: string; customerId: string }[],
  holders: AddressHolders,
  takenInCall: (holderId: string) => DomainError,
  readHolders?: (ids: string[]) => Promise<void>,
): Promise<ClaimOutcome[]> {
  if (claims.length === 0) return [];
  const answers = await index.claimMany(claims);
  const held = answers.flatMap((a) => (a.claimed ? [] : [a.holder]));
  if (held.length > 0 && readHolders) await readHolders(held);
  const askers = new Set(claims.map((c) => c.customerId));
  const outcomes: ClaimOutcome[] = [];
  for (const [i, answer] of answers.entries()) {
    if (answer.claimed) {
      outcomes.push({ fresh: answer.fresh });
      continue;
    }
    try {
      if (askers.has(answer.holder)) throw takenInCall(answer.holder);
      outcomes.push(await takeOverOrRefuseWith(index, claims[i]!.email, claims[i]!.customerId, answer.holder, holders));
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      outcomes.push({ refused: error });
    }
  }
  return outcomes;
}

/**
 * Many customers' addresses claimed in one round trip (bulk import, `crm claim-emails`), each settled
 * as `claimEmail` settles one. `readHolders` may read the holders' states in one go before
 * `customerOf` asks for them one by one.
 */
export const claimEmails = (
  index: EmailIndex,
  claims: readonly { email: string; customerId: string }[],
  customerOf: (id: string) => Promise<CustomerSnapshot>,
  readHolders?: (ids: string[]) => Promise<void>,
): Promise<ClaimOutcome[]> => claimAddresses(index, claims, customerHolders(customerOf), emailTaken, readHolders);

/** Many users' addresses claimed in one round trip (`crm claim-emails`), each as a registration claims one (`customerId` is the user's id). */
export const claimUserEmails = (
  index: EmailIndex,
  claims: readonly { email: string; customerId: string }[],
  userOf: (id: string) => Promise<UserState>,
): Promise<ClaimOutcome[]> => claimAddresses(index, claims, userHolders(userOf), (userId) => userEmailTaken(userId, true));

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
  return withAddressHeld(index, email, customerId, command.type !== 'RegisterCustomer', run, customerHolders(customerOf, visible));
}

/**
 * Users as holders (the users' own index, eventstore/email-index.ts): an address identifies one user.
 * A claim whose user never got registered is taken over after `ABANDONED_CLAIM_SECONDS`; any other
 * holder keeps it, a deactivated one too (their history and the read model still name them by it,
 * and reactivating them must not make two users of one address): 409 `user.email_taken` naming the
 * user, with what frees the address.
 */
const userHolders = (userOf: (id: string) => Promise<UserState>): AddressHolders => ({
  async abandonedAfter(holderId) {
    return (await userOf(holderId)).exists ? undefined : ABANDONED_CLAIM_SECONDS;
  },
  async taken(holderId) {
    return userEmailTaken(holderId, (await userOf(holderId)).active);
  },
});

/** 409 `user.email_taken`, naming the user who has the address. */
export const userEmailTaken = (userId: string, active: boolean) =>
  invalidState(
    'user.email_taken',
    active
      ? `User ${userId} already has this email address`
      : `User ${userId}, deactivated, still has this email address: change their email (PATCH /admin/users/${userId}) to give it to another user, or reactivate them`,
    'email',
    { userId, active },
  );

/**
 * The address a user command must hold before it is appended, if any: a registration's (of a user not
 * yet registered) or an email change's (of a registered user, to another address). Commands the
 * decider will refuse anyway claim nothing.
 */
export const userEmailToClaim = (command: Record<string, unknown>, self: UserState): string | undefined => {
  if (typeof command.email !== 'string') return undefined;
  if (command.type === 'RegisterUser') return self.exists ? undefined : command.email;
  if (command.type === 'ChangeUser') return self.exists && normaliseEmail(command.email) !== self.email ? command.email : undefined;
  return undefined;
};

/**
 * Runs a user's registration or email change with the address held first, as `withEmailClaim` for
 * customers. `formerHolderOf` names a user who has the address without a claim (registered before
 * users claimed theirs): the address is claimed for them first, so that it stays theirs.
 */
export async function withUserEmailClaim<R>(
  index: EmailIndex,
  command: Record<string, unknown>,
  run: () => Promise<R>,
  userOf: (id: string) => Promise<UserState>,
  formerHolderOf?: (email: string) => Promise<string | undefined>,
): Promise<R> {
  const userId = command.userId as string;
  if (typeof command.email !== 'string') return run();
  const email = userEmailToClaim(command, await userOf(userId));
  if (email === undefined) return run();
  const former = await formerHolderOf?.(email);
  if (former !== undefined && former !== userId && (await userOf(former)).exists) await index.claim(email, former);
  return withAddressHeld(index, email, userId, command.type === 'ChangeUser', run, userHolders(userOf));
}
