import { Id } from '../../domain/shared.ts';
import type { BatchCommands } from '../batch.ts';

/**
 * An import's default owner: the user who owns the customers and deals whose rows leave `owner_id`
 * empty. A deal has an owner, and the one the importer used to make up (`import`) is no user: no
 * restricted user ever saw those deals, reports showed an owner nobody is, and nothing told the
 * importer. So the default is named for the run, and is a registered, active user (as a customer's
 * owner must be), checked once before the first row; without one, such a deal row is refused.
 */

/** The default owner can own nothing: the run is refused before its first row. */
export class DefaultOwnerRefused extends Error {
  constructor(
    readonly ownerId: string,
    message: string,
  ) {
    super(message);
    this.name = 'DefaultOwnerRefused';
  }
}

/** The default owner as the commands take it (a user id in lower case), or DefaultOwnerRefused saying what to do. */
export const checkDefaultOwner = async (batch: Pick<BatchCommands, 'user'>, given: string): Promise<string> => {
  const parsed = Id.safeParse(given.trim());
  if (!parsed.success) throw new DefaultOwnerRefused(given, `${JSON.stringify(given)} is not a user id: name a user by the id GET /admin/users lists (a UUID)`);
  const userId = parsed.data;
  const user = await batch.user(userId);
  if (!user.exists) throw new DefaultOwnerRefused(userId, `no user ${userId}: register the user first (POST /admin/users), or name one GET /admin/users lists`);
  if (!user.active)
    throw new DefaultOwnerRefused(
      userId,
      `user ${userId} is deactivated: reactivate the user (PATCH /admin/users/${userId} with "active": true), or name an active one`,
    );
  return userId;
};
