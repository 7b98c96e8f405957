import { intValue, stringValue, UsageError, type CliCommand, type CommandRun, type OptionWithHelp } from '../command.ts';

const options: Record<string, OptionWithHelp> = {
  url: { type: 'string', description: 'create: the receiver URL (http or https)' },
  events: { type: 'string', description: 'create: event types, comma separated (PurchaseRecorded,Deal*,* ...)' },
  role: { type: 'string', description: 'create: whose view of personal data deliveries carry (default analyst: masked)' },
  description: { type: 'string', description: 'create: what the subscription is for' },
  from: { type: 'string', description: 'replay: global position to deliver again from (inclusive)' },
  'keep-previous': {
    type: 'string',
    description: 'rotate-secret: seconds the replaced secret still signs deliveries beside the new one (default 86400; 0: never again)',
  },
  json: { type: 'boolean', description: 'print JSON instead of text' },
};

const ACTIONS = ['list', 'create', 'enable', 'disable', 'delete', 'deliveries', 'replay', 'rotate-secret'];

export const webhooksCommand: CliCommand = {
  name: 'webhooks',
  summary: 'List, create, enable, disable, delete or replay webhook subscriptions, or replace their signing secret',
  usage:
    'webhooks [list] | webhooks create --url <url> --events <types> [--role <role>] | webhooks enable|disable|delete|deliveries <id> | webhooks replay <id> --from <position> | webhooks rotate-secret <id> [--keep-previous <seconds>]',
  details: `
Webhook subscriptions receive integration events as signed POSTs (Standard Webhooks headers; see
"Integration events" in README.md). The same operations as /webhooks in the API. The signing secret is
printed once, by create, and a new one once by rotate-secret: the replaced secret still signs deliveries
beside the new one for a day (--keep-previous, in seconds; 0 for a leaked secret), so the receiver can
switch without refusing any. Enabling a subscription shown as failing resumes it where it stopped.

Examples:
  crm webhooks
  crm webhooks create --url https://hooks.example.com/crm --events "PurchaseRecorded,Deal*" --role sales
  crm webhooks deliveries 2f1c...
  crm webhooks replay 2f1c... --from 0
  crm webhooks rotate-secret 2f1c... --keep-previous 0`,
  database: ({ positionals }) =>
    positionals[0] === undefined || positionals[0] === 'list' || positionals[0] === 'deliveries'
      ? { kind: 'reads' }
      : { kind: 'writes', check: 'crm webhooks' },
  options,
  async run(run) {
    const [action = 'list', id] = run.positionals;
    if (!ACTIONS.includes(action)) throw new UsageError(`webhooks: unknown action "${action}" (one of ${ACTIONS.join(', ')})`);
    if (action !== 'list' && action !== 'create' && !id) throw new UsageError(`webhooks ${action} needs the subscription id (see crm webhooks)`);
    const { openCrm } = await import('../../runtime/crm.ts');
    // A list or a change reads what a CRM stored; a subscription may be made before the first `crm serve`.
    const runtime = await openCrm(run.config, { installedOnly: action !== 'create' });
    try {
      const services = runtime.integration.services;
      await services.tables.migrate();
      return await perform(run, action, id, services);
    } finally {
      await runtime.close();
    }
  },
};

type Services = Awaited<ReturnType<typeof import('../../runtime/crm.ts').openCrm>>['integration']['services'];

async function perform(run: CommandRun, action: string, id: string | undefined, services: Services): Promise<number> {
  const { tables } = services;
  const { displayUrl, EventPatterns, ReplayPosition, WebhookDescription, WebhookUrl } = await import('../../integration/validation.ts');
  const print = (value: unknown, text: () => string) =>
    run.out(run.values.json ? JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) : text());
  if (action === 'list') {
    const [subscriptions, statuses] = await Promise.all([tables.listSubscriptions(), services.status()]);
    const rows = subscriptions.map((s) => ({ ...s, url: displayUrl(s.url), status: statuses.find((p) => p.name === `webhook:${s.id}`) }));
    print(rows, () =>
      rows.length === 0
        ? 'No webhook subscriptions.'
        : rows
            .map(
              (r) =>
                `${r.id}  ${(r.status?.state ?? '?').padEnd(8)} ${String(r.status ? (r.status.eventsBehind ?? '?') : 0).padStart(6)} behind  ${String(r.status?.delivered ?? 0).padStart(8)} delivered  ${r.url}  [${r.events.join(', ')}] as ${r.role}${r.status?.lastError ? `\n    last error: ${r.status.lastError}` : ''}`,
            )
            .join('\n'),
    );
    return 0;
  }
  if (action === 'create') {
    const { ROLES } = await import('../../api/roles.ts');
    const url = WebhookUrl.safeParse(stringValue(run, 'url') ?? '');
    if (!url.success) throw new UsageError(`--url: ${url.error.issues[0]?.message}`);
    const refused = services.urlRefusal(url.data);
    if (refused) throw new UsageError(`--url: ${refused}`);
    const events = EventPatterns.safeParse(
      (stringValue(run, 'events') ?? '')
        .split(',')
        .map((e) => e.trim())
        .filter(Boolean),
    );
    if (!events.success) throw new UsageError(`--events: ${events.error.issues[0]?.message}`);
    const description = WebhookDescription.optional().safeParse(stringValue(run, 'description'));
    if (!description.success) throw new UsageError(`--description: ${description.error.issues[0]?.message}`);
    const role = stringValue(run, 'role') ?? 'analyst';
    if (!(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
    const created = await services.subscribe({
      url: url.data,
      events: events.data,
      description: description.data ?? null,
      role: role as (typeof ROLES)[number],
    });
    print(created, () => `Created webhook ${created.id}.\nSigning secret (shown once, store it now): ${created.secret}`);
    return 0;
  }
  const subscriptionId = id!;
  if (!(await tables.getSubscription(subscriptionId).catch(() => undefined))) {
    run.err(`No webhook subscription ${subscriptionId}.`);
    return 1;
  }
  if (action === 'enable' || action === 'disable') {
    const updated = await tables.updateSubscription(subscriptionId, { enabled: action === 'enable' });
    print(updated && { ...updated, url: displayUrl(updated.url) }, () => `Webhook ${subscriptionId} ${action}d.`);
  } else if (action === 'delete') {
    await tables.deleteSubscription(subscriptionId);
    run.out(`Deleted webhook ${subscriptionId}.`);
  } else if (action === 'deliveries') {
    const attempts = await tables.deliveries(subscriptionId, 50);
    print(attempts, () =>
      attempts.length === 0
        ? 'No delivery attempts yet.'
        : attempts
            .map(
              (a) =>
                `${a.at.toISOString()}  ${a.eventId}  attempt ${a.attempt}  ${a.statusCode ?? '---'}  ${a.latencyMs} ms${a.error ? `  ${a.error}` : ''}${a.nextRetryAt ? `  retry ${a.nextRetryAt.toISOString()}` : ''}`,
            )
            .join('\n'),
    );
  } else if (action === 'rotate-secret') {
    const { DEFAULT_PREVIOUS_SECRET_SECONDS, MAX_PREVIOUS_SECRET_SECONDS } = await import('../../integration/validation.ts');
    const { RotationInGrace } = await import('../../integration/tables.ts');
    const keep = intValue(run, 'keep-previous', DEFAULT_PREVIOUS_SECRET_SECONDS, 0, MAX_PREVIOUS_SECRET_SECONDS);
    const rotated = await services.rotateSecret(subscriptionId, keep).catch((error: unknown) => {
      if (error instanceof RotationInGrace) throw new UsageError(error.message.replace('keepPreviousSeconds 0', '--keep-previous 0'));
      throw error;
    });
    if (!rotated) throw new UsageError(`No webhook subscription ${subscriptionId}.`);
    print(
      rotated,
      () =>
        `New signing secret of webhook ${subscriptionId} (shown once, store it now): ${rotated.secret}\n` +
        (rotated.previousSecretExpiresAt
          ? `Deliveries are signed with the replaced secret too until ${rotated.previousSecretExpiresAt.toISOString()}.`
          : 'The replaced secret signs no more deliveries.'),
    );
  } else {
    const from = ReplayPosition.safeParse(stringValue(run, 'from') ?? '');
    if (!from.success) throw new UsageError(`replay needs --from <position> (a whole number; 0 for the whole history): ${from.error.issues[0]?.message}`);
    const refusal = await services.replayRefusal(BigInt(from.data));
    if (refusal) throw new UsageError(`--from: ${refusal}`);
    await tables.replay(subscriptionId, BigInt(from.data));
    run.out(`Webhook ${subscriptionId} will deliver again from position ${from.data}.`);
  }
  return 0;
}
