import type { CliCommand } from '../command.ts';
import { projectionLag } from '../projection-lag.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';

/** Customers sharing an address listed in full before the summary only counts them. */
const LISTED_SHARES = 20;

export const claimEmailsCommand: CliCommand = {
  name: 'claim-emails',
  maxArguments: 0,
  summary: "Hold each customer's and user's email address in the duplicate check (those from before it held theirs)",
  usage: 'claim-emails',
  details: `
Registrations and email changes claim their address in crm_events.customer_email_index, so that a
second customer with it is refused (409 customer.email_taken). Customers registered before that index
existed, and customers imported before imports claimed their addresses (2026-12-02), hold no claim:
the API would register a duplicate of them. This command claims the current address of every active
or inactive customer, oldest registration first, from the customers read model, which must be caught
up first (\`crm project\` or a running \`crm serve\`). Addresses already held stay with their holder; a
customer whose address another customer holds is listed (GET /customers/duplicates shows the
groups: merge them, or change one's email). Safe to run again and to interrupt.

Users (staff) claim theirs in crm_events.user_email_index the same way (409 user.email_taken), since
2026-12-04; users registered before hold none. This command claims every user's address too, active
or deactivated, oldest registration first, from the users read model (which must be caught up too),
and lists users whose address another user holds: change one's email (PATCH /admin/users/:id).`,
  database: { kind: 'rerunnable', note: 'addresses already claimed stay with their holder' },
  options: {},
  async run(run) {
    const { openCrm } = await import('../../runtime/crm.ts');
    const runtime = await openCrm(run.config);
    try {
      await runtime.prepareReadModels();
      const lag =
        (await projectionLag(runtime, run.config.schemas.read, 'customers', 'a customer it does not list yet would keep no claim, so nothing was claimed')) ??
        (await projectionLag(runtime, run.config.schemas.read, 'users', 'a user it does not list yet would keep no claim, so nothing was claimed'));
      if (lag) {
        run.err(`crm claim-emails: ${lag}`);
        return 1;
      }
      const counts = await claimAll(runtime, run);
      run.out(
        `Claimed ${counts.claimed} address(es); ${counts.held} were already held by their customers; ` +
          `${counts.shared} customer(s) have an address another customer holds${counts.shared > 0 ? " (GET /customers/duplicates shows them: merge, or change one's email)" : ''}.`,
      );
      // Stopped (Ctrl-C): the customers' line said so; the users wait for the next run.
      if (run.signal.aborted) return 0;
      const users = await claimUsers(runtime, run);
      run.out(
        `Users: claimed ${users.claimed} address(es); ${users.held} were already held by their users; ` +
          `${users.shared} user(s) have an address another user holds${users.shared > 0 ? " (change one's email: PATCH /admin/users/:id)" : ''}.`,
      );
      return 0;
    } finally {
      await runtime.close();
    }
  },
};

/** Pages through the customers read model, oldest registration first, claiming each page's addresses at once. */
const claimAll = async (runtime: CrmRuntime, run: { out: (line: string) => void; err: (line: string) => void; signal: AbortSignal }) => {
  const { customerSnapshot } = await import('../../domain/customer/decider.ts');
  const { claimEmails } = await import('../../commands/email-uniqueness.ts');
  const customerOf = async (id: string) => customerSnapshot((await runtime.commands.loadAggregate('customer', id)).state);
  const counts = { claimed: 0, held: 0, shared: 0, read: 0 };
  let cursor: string | undefined;
  do {
    if (run.signal.aborted) {
      run.err(`crm claim-emails: stopped after ${counts.read} customers; run it again to go on.`);
      break;
    }
    const page = await runtime.apiDeps.queries.listCustomers({ sort: 'createdAt', limit: 500, ...(cursor ? { cursor } : {}) }, null);
    counts.read += page.items.length;
    const customers = page.items.flatMap((item) => {
      const { id, email, status } = item as { id: string; email: string | null; status: string };
      return email && (status === 'active' || status === 'inactive') ? [{ email, customerId: id }] : [];
    });
    // The same rules as a registration: an abandoned or forgotten holder's claim is taken over.
    for (const [i, claim] of (await claimEmails(runtime.emailIndex, customers, customerOf)).entries()) {
      if (!('refused' in claim)) {
        counts[claim.fresh ? 'claimed' : 'held']++;
        continue;
      }
      counts.shared++;
      const holder = (claim.refused.details as { customerId?: string } | undefined)?.customerId;
      if (counts.shared <= LISTED_SHARES) run.out(`customer ${customers[i]!.customerId}: its address is held by customer ${holder}`);
    }
    cursor = page.nextCursor ?? undefined;
    run.err(`claim-emails: ${counts.read} customers read, ${counts.claimed} addresses claimed`);
  } while (cursor);
  return counts;
};

/** Every user's address, oldest registration first (a few thousand staff at most: one statement). */
const claimUsers = async (runtime: CrmRuntime, run: { out: (line: string) => void }) => {
  const { sql } = await import('kysely');
  const { claimUserEmails } = await import('../../commands/email-uniqueness.ts');
  const { rows } = await sql<{ user_id: string; email: string }>`SELECT user_id::text AS user_id, email
    FROM ${sql.id(runtime.config.schemas.read, 'users')} ORDER BY registered_at, user_id`.execute(runtime.database.db);
  const users = rows.map((r) => ({ email: r.email, customerId: r.user_id }));
  const userOf = async (id: string) => (await runtime.commands.loadAggregate('user', id)).state;
  const counts = { claimed: 0, held: 0, shared: 0 };
  for (const [i, claim] of (await claimUserEmails(runtime.userEmailIndex, users, userOf)).entries()) {
    if (!('refused' in claim)) {
      counts[claim.fresh ? 'claimed' : 'held']++;
      continue;
    }
    counts.shared++;
    const holder = (claim.refused.details as { userId?: string } | undefined)?.userId;
    if (counts.shared <= LISTED_SHARES) run.out(`user ${users[i]!.customerId}: its address is held by user ${holder}`);
  }
  return counts;
};
