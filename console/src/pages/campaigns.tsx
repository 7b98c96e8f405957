import { useState } from 'preact/hooks';
import { command, get, query, type Accepted, type Page } from '../api.ts';
import { href, navigate, parseHash } from '../router.ts';
import { CURRENCIES, type Campaign, type ListedCampaign } from '../types.ts';
import {
  ActionPanel,
  can,
  CommandForm,
  day,
  isoFromLocal,
  Loading,
  money,
  numberOf,
  pct,
  ProblemBox,
  Stat,
  text,
  useLoad,
  useAnnounceResults,
  useReloadWhenStale,
  usePager,
  useTitle,
  Pager,
  type FieldSpec,
  type FormValues,
  Head,
  MONEY_STEP,
  Grid,
} from '../ui.tsx';
import type { Role } from '../../../api/roles.ts';

const CHANNELS = ['email', 'sms', 'social', 'event', 'ads'] as const;
const RESPONSES = ['sent', 'opened', 'clicked', 'converted', 'unsubscribed'] as const;

export const CampaignsPage = ({ role }: { role: Role }) => {
  const [status, setStatus] = useState('');
  const [creating, setCreating] = useState(false);
  const pager = usePager([status]);
  const list = useLoad(
    (signal) => get<Page<ListedCampaign>>(`/campaigns${query({ status, sort: '-createdAt', limit: 25, cursor: pager.cursor })}`, { signal }),
    [status, pager.cursor],
  );
  // A filter or another page says what it found (it was silent).
  useAnnounceResults(list.data, () => {
    const count = list.data?.items.length ?? 0;
    if (count === 0) return 'No campaign matches.';
    return `${count} campaign${count === 1 ? '' : 's'} shown, page ${pager.page}${list.data?.nextCursor ? ' (more on the next page)' : ''}.`;
  });
  return (
    <section aria-labelledby="campaigns-title">
      <h1 id="campaigns-title">Campaigns</h1>
      <div class="filters">
        <div class="field">
          <label for="campaign-status">Status</label>
          <select id="campaign-status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">any</option>
            {['draft', 'scheduled', 'active', 'paused', 'completed', 'cancelled'].map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
        {can(role, 'POST /campaigns') ? (
          <button type="button" aria-expanded={creating} onClick={() => setCreating(!creating)}>
            New campaign
          </button>
        ) : null}
      </div>
      {creating ? (
        <CommandForm
          title="Create a campaign"
          submitLabel="Create"
          success="Campaign created."
          level={2}
          onCancel={() => setCreating(false)}
          fields={[
            { name: 'name', label: 'Name', required: true },
            { name: 'channel', label: 'Channel', type: 'select', options: CHANNELS, value: 'email', required: true },
            { name: 'budget', label: 'Budget', type: 'number', step: MONEY_STEP, required: true },
            { name: 'currency', label: 'Currency', type: 'select', options: CURRENCIES, value: 'EUR', required: true },
          ]}
          submit={async (v) => {
            const accepted = await command('/campaigns', {
              name: text(v.name),
              channel: v.channel,
              budget: numberOf(v.budget, 'budget'),
              currency: v.currency,
            });
            // With its position, as a new customer's page: the read model may not hold it yet (it answered 404).
            navigate(`campaigns/${accepted.id}`, { waitFor: accepted.position });
          }}
        />
      ) : null}
      <ProblemBox problem={list.problem} />
      {list.loading && !list.data ? <Loading what="campaigns" /> : null}
      <Grid aria-labelledby="campaigns-title">
        <Head
          columns={[
            'Name',
            'Channel',
            'Status',
            ['Budget', 'num'],
            ['Costs', 'num'],
            ['Sent', 'num'],
            ['Conversions', 'num'],
            ['Revenue (base)', 'num'],
            ['ROI (base)', 'num'],
          ]}
        />
        <tbody>
          {list.data?.items.map((c) => (
            <tr key={c.id}>
              <td>
                <a href={href(`campaigns/${c.id}`)}>{c.name}</a>
              </td>
              <td class="word">{c.channel}</td>
              <td class="word">{c.status}</td>
              <td class="num">{money(c.budget, c.currency)}</td>
              <td class="num">{money(c.costs, c.currency)}</td>
              <td class="num">{c.responses.sent}</td>
              <td class="num">{c.conversions}</td>
              {/* Conversions paid in every currency count here, each at its rate: the campaign currency's alone showed -100% for some. */}
              <td class="num">{c.revenueBase === null ? 'rate missing' : money(c.revenueBase, c.baseCurrency)}</td>
              <td class="num">{c.revenueBase === null ? '—' : pct(c.roiBase, 0)}</td>
            </tr>
          ))}
          {list.data?.items.length === 0 ? (
            <tr>
              <td colSpan={9}>No campaign matches{status ? ` the status ${status}` : ''}.</td>
            </tr>
          ) : null}
        </tbody>
      </Grid>
      {list.data ? <Pager page={pager.page} nextCursor={list.data.nextCursor} next={pager.next} previous={pager.previous} /> : null}
    </section>
  );
};

/** Which lifecycle commands the campaign's status allows (the decider refuses the others anyway). */
const LIFECYCLE: Record<string, string[]> = {
  draft: ['schedule', 'launch', 'cancel'],
  scheduled: ['launch', 'cancel'],
  active: ['pause', 'complete', 'cancel'],
  paused: ['resume', 'complete', 'cancel'],
};
const LIFECYCLE_FIELDS: Record<string, FieldSpec[]> = {
  schedule: [
    { name: 'startsAt', label: 'Starts', type: 'datetime-local', required: true },
    { name: 'endsAt', label: 'Ends', type: 'datetime-local' },
  ],
  pause: [{ name: 'reason', label: 'Reason' }],
  cancel: [{ name: 'reason', label: 'Reason' }],
};
const lifecycleBody = (action: string, v: FormValues): Record<string, unknown> => {
  const body: Record<string, unknown> = {};
  if (isoFromLocal(v.startsAt)) body.startsAt = isoFromLocal(v.startsAt);
  if (isoFromLocal(v.endsAt)) body.endsAt = isoFromLocal(v.endsAt);
  if (text(v.reason) && action !== 'schedule') body.reason = text(v.reason);
  return body;
};

export const CampaignPage = ({ id, role }: { id: string; role: Role }) => {
  const [waitFor, setWaitFor] = useState<string | undefined>(() => parseHash(location.hash).params.get('waitFor') ?? undefined);
  const campaign = useLoad((signal) => get<Campaign>(`/campaigns/${id}${query({ waitFor })}`, { signal }), [id, waitFor]);
  useReloadWhenStale(campaign.reload);
  useTitle(campaign.data?.name, 'Campaigns');
  if (campaign.problem) return <ProblemBox problem={campaign.problem} />;
  const c = campaign.data;
  if (!c) return <Loading what="the campaign" />;
  const path = `/campaigns/${c.id}`;
  const done = async (p: Promise<Accepted>, close: () => void) => {
    setWaitFor((await p).position);
    close();
  };
  const actions = [
    ...(LIFECYCLE[c.status] ?? [])
      .filter((action) => can(role, `POST /campaigns/:id/${action}`))
      .map((action) => ({
        label: action[0]!.toUpperCase() + action.slice(1),
        form: (close: () => void) => (
          <CommandForm
            title={`${action[0]!.toUpperCase()}${action.slice(1)} "${c.name}"`}
            // "Cancel campaign", not "Cancel": the form's own Cancel closes it.
            submitLabel={`${action[0]!.toUpperCase()}${action.slice(1)} campaign`}
            onCancel={close}
            fields={LIFECYCLE_FIELDS[action] ?? []}
            revision={c.revision}
            submit={(v) => done(command(`${path}/${action}`, lifecycleBody(action, v), { ifMatch: c.revision }), close)}
          />
        ),
      })),
    ...(can(role, 'POST /campaigns/:id/costs')
      ? [
          {
            label: 'Record cost',
            form: (close: () => void) => (
              <CommandForm
                title="Record a cost"
                submitLabel="Record cost"
                onCancel={close}
                fields={[
                  { name: 'amount', label: 'Amount', type: 'number', step: MONEY_STEP, required: true },
                  // The campaign's currency only: the API refuses a cost in any other.
                  { name: 'currency', label: 'Currency', type: 'select', options: [c.currency], value: c.currency, required: true },
                  { name: 'description', label: 'Description' },
                  // Overspend is refused unless asked for; the refusal named an option the form did not have.
                  {
                    name: 'allowOverBudget',
                    label: `Allow going over the budget (${money(c.budget, c.currency)}; costs so far ${money(c.costs, c.currency)})`,
                    type: 'checkbox',
                  },
                ]}
                submit={(v) =>
                  done(
                    command(`${path}/costs`, {
                      amount: numberOf(v.amount, 'amount'),
                      currency: v.currency,
                      ...(text(v.description) ? { description: text(v.description) } : {}),
                      ...(v.allowOverBudget === true ? { allowOverBudget: true } : {}),
                    }),
                    close,
                  )
                }
              />
            ),
          },
          {
            label: 'Record response',
            form: (close: () => void) => (
              <CommandForm
                title="Record a customer's response"
                submitLabel="Record response"
                onCancel={close}
                fields={[
                  { name: 'customerId', label: 'Customer id', required: true },
                  { name: 'kind', label: 'Response', type: 'select', options: RESPONSES, value: 'opened', required: true },
                  { name: 'revenue', label: 'Revenue (conversions)', type: 'number', step: MONEY_STEP },
                ]}
                submit={(v) =>
                  done(
                    command(`${path}/responses`, {
                      customerId: text(v.customerId),
                      kind: v.kind,
                      ...(numberOf(v.revenue, 'revenue') !== undefined ? { revenue: numberOf(v.revenue, 'revenue'), currency: c.currency } : {}),
                    }),
                    close,
                  )
                }
              />
            ),
          },
        ]
      : []),
  ];
  return (
    <article aria-labelledby="campaign-title">
      <p>
        <a href={href('campaigns')}>← Campaigns</a>
      </p>
      <h1 id="campaign-title">{c.name}</h1>
      <p class="muted">
        {c.channel} · {c.status} · revision {c.revision}
      </p>
      <dl class="stats">
        <Stat label="Budget" value={money(c.budget, c.currency)} />
        <Stat label="Costs" value={money(c.costs, c.currency)} />
        <Stat label={`Revenue in ${c.currency}`} value={money(c.revenue, c.currency)} />
        <Stat label={`ROI in ${c.currency}`} value={pct(c.roi, 1)} />
        <Stat
          label={`Revenue, every currency (${c.baseCurrency})`}
          value={c.revenueBase === null ? `rate missing: ${c.missingRates.join(', ')}` : money(c.revenueBase, c.baseCurrency)}
        />
        <Stat label={`ROI, every currency (${c.baseCurrency})`} value={c.revenueBase === null ? '—' : pct(c.roiBase, 1)} />
        <Stat label="Conversions" value={c.conversions} />
        <Stat label="Conversion rate" value={pct(c.conversionRate, 1)} />
        {/* A campaign launched without a schedule runs from its launch. */}
        <Stat label="Runs" value={`${day(c.startsAt ?? c.launchedAt)} → ${day(c.endsAt ?? c.completedAt ?? c.cancelledAt)}`} />
        {RESPONSES.map((r) => (
          <Stat key={r} label={r} value={c.responses[r] ?? 0} />
        ))}
      </dl>
      {actions.length ? (
        <section aria-labelledby="campaign-actions-title">
          <h2 id="campaign-actions-title" class="sr-only">
            Actions
          </h2>
          <ActionPanel actions={actions} />
        </section>
      ) : (
        <p class="muted">No actions for the {role} role in this state.</p>
      )}
    </article>
  );
};
