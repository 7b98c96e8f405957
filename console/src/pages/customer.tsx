import { useState } from 'preact/hooks';
import { ApiError, command, get, getPages, query, type Accepted, type Page, type Problem } from '../api.ts';
import { href, parseHash } from '../router.ts';
import {
  CURRENCIES,
  DEAL_STAGES,
  FEEDBACK_CHANNELS,
  FEEDBACK_KINDS,
  FEEDBACK_PRIORITIES,
  type Customer,
  type CustomerAnalytics,
  type Deal,
  type Activity,
  type Feedback,
  type TimelineItem,
} from '../types.ts';
import {
  announce,
  ActionPanel,
  allowed,
  can,
  CommandForm,
  day,
  Loading,
  money,
  num,
  numberOf,
  pct,
  ProblemBox,
  problemOf,
  Stat,
  text,
  useLoad,
  useReloadWhenStale,
  useTitle,
  when,
  type FormValues,
  Head,
  MONEY_STEP,
  Grid,
} from '../ui.tsx';
import type { Role } from '../../../api/roles.ts';

const PURCHASE_TYPES = /^(Purchase|Refund)/;
const TIMELINE_PAGE = 100;
const ACTIVITY_PAGE = 50;
const ACTIVITY_KINDS = ['note', 'call', 'meeting', 'task'] as const;

export const CustomerPage = ({ id, role }: { id: string; role: Role }) => {
  // After a command, every section reads at least up to the position it returned (read your writes).
  const [waitFor, setWaitFor] = useState<string | undefined>(() => parseHash(location.hash).params.get('waitFor') ?? undefined);
  const done = (accepted: Accepted) => setWaitFor(accepted.position);
  const customer = useLoad((signal) => get<Customer>(`/customers/${id}${query({ waitFor })}`, { signal }), [id, waitFor]);
  // Pages of the timeline, newest first; "Show older" adds one (purchases past the first 100 events were dropped unsaid).
  const [timelinePages, setTimelinePages] = useState(1);
  const timeline = useLoad(
    (signal) =>
      getPages<TimelineItem>((cursor) => `/customers/${id}/timeline${query({ order: 'desc', limit: TIMELINE_PAGE, cursor, waitFor })}`, timelinePages, signal),
    [id, waitFor, timelinePages],
  );
  const olderEvents = timeline.data?.nextCursor ? (
    <TimelineCut shown={timeline.data.items.length} loading={timeline.loading} more={() => setTimelinePages(timelinePages + 1)} />
  ) : null;
  const deals = useLoad((signal) => get<Page<Deal>>(`/deals${query({ customerId: id, limit: 100, waitFor })}`, { signal }), [id, waitFor]);
  const feedback = useLoad((signal) => get<Page<Feedback>>(`/feedback${query({ customerId: id, limit: 100, waitFor })}`, { signal }), [id, waitFor]);
  const activities = useLoad(
    (signal) => get<Page<Activity>>(`/customers/${id}/activities${query({ limit: ACTIVITY_PAGE, waitFor })}`, { signal }),
    [id, waitFor],
  );
  const showsAnalytics = can(role, 'GET /analytics/customers/:id');
  // Read at the same position as the rest; a 404 is a customer with no analytics event yet (null), not a failure.
  const analytics = useLoad(
    (signal) =>
      showsAnalytics
        ? get<CustomerAnalytics>(`/analytics/customers/${id}${query({ waitFor })}`, { signal }).catch((error: unknown) => {
            if (error instanceof ApiError && error.problem.status === 404) return null;
            throw error;
          })
        : Promise.resolve(undefined),
    [id, waitFor],
  );
  useReloadWhenStale(customer.reload);
  useTitle(customer.data?.name, 'Customers');

  if (customer.problem) return <ProblemBox problem={customer.problem} />;
  const c = customer.data;
  if (!c) return <Loading what="the customer" />;
  const purchases = timeline.data?.items.filter((t) => PURCHASE_TYPES.test(t.type)) ?? [];
  return (
    <article aria-labelledby="customer-title">
      <p>
        <a href={href('customers')}>← Customers</a>
      </p>
      <h1 id="customer-title">{c.name}</h1>
      <p class="muted">
        {c.status}
        {c.deactivatedAt ? ` since ${day(c.deactivatedAt)}` : ''}
        {c.deactivationReason ? ` (${c.deactivationReason})` : ''} · revision {c.revision} · registered {day(c.registeredAt)} ·{' '}
        {can(role, 'GET /audit/streams/:stream') ? <a href={href('audit', { stream: `customer-${c.id}` })}>audit history</a> : null}
      </p>
      <div class="columns">
        <section aria-labelledby="contact-title">
          <h2 id="contact-title">Contact details</h2>
          <dl class="stats">
            <Stat label="Email" value={c.email} />
            <Stat label="Phone" value={c.phone ?? '—'} />
            <Stat label="Company" value={c.company ?? '—'} />
            <Stat label="Source" value={c.source ?? '—'} />
            <Stat label="Tags" value={c.tags.join(', ') || '—'} />
            <Stat label="Marketing consent" value={c.marketingConsent ? 'yes' : 'no'} />
            <Stat label="Orders" value={c.orderCount} />
            <RevenueStats customer={c} />
            <Stat label={`Refunded (${c.currency ?? 'first currency'})`} value={money(c.refunded, c.currency)} />
          </dl>
        </section>
        <section aria-labelledby="analytics-title">
          <h2 id="analytics-title">Analytics</h2>
          {!showsAnalytics ? (
            <p class="muted">The {role} role does not read analytics.</p>
          ) : analytics.problem ? (
            <ProblemBox problem={analytics.problem} />
          ) : analytics.data === null && c.mergedInto ? (
            // The analytics count a merged duplicate's history under its primary: "no analytics yet" misled.
            <p class="muted" data-testid="no-analytics">
              Merged into <a href={href(`customers/${c.mergedInto}`)}>another customer</a>: its figures count under that customer.
            </p>
          ) : analytics.data === null ? (
            <p class="muted" data-testid="no-analytics">
              No analytics yet: the figures appear once the analytics have taken in this customer's events.
            </p>
          ) : analytics.data && analytics.data.modelVersion === null ? (
            <p class="muted">No model is fitted yet: the scores appear after a fit (Analytics screen).</p>
          ) : analytics.data ? (
            <dl class="stats">
              {/* In the analytics' base currency (every purchase converted), not the customer's first one. */}
              <Stat label="CLV" value={analyticsMoney(analytics.data.clv, analytics.data)} />
              <Stat label="P(alive)" value={pct(analytics.data.pAlive)} />
              <Stat label="Churn score" value={pct(analytics.data.churnScore)} />
              <Stat label="Segment" value={analytics.data.segment} />
              <Stat label="Expected purchases" value={num(analytics.data.expectedPurchases)} />
              <RfmStats rfm={analytics.data.rfm} analytics={analytics.data} />
              <Stat label="Cohort" value={analytics.data.cohort} />
            </dl>
          ) : (
            <Loading what="analytics" />
          )}
        </section>
      </div>
      <CustomerActions customer={c} role={role} done={done} feedbackCount={feedback.data?.items.length ?? 0} />
      <section aria-labelledby="purchases-title">
        <h2 id="purchases-title">Purchases and refunds</h2>
        {timeline.loading ? <Loading what="purchases" /> : null}
        {olderEvents}
        <Grid aria-labelledby="purchases-title" data-testid="purchases">
          <Head columns={['When', 'What']} />
          <tbody>
            {purchases.map((p) => (
              <tr key={p.eventId}>
                <td>{when(p.occurredAt)}</td>
                <td>{p.summary}</td>
              </tr>
            ))}
          </tbody>
        </Grid>
      </section>
      <div class="columns">
        <section aria-labelledby="deals-title">
          <h2 id="deals-title">Deals</h2>
          <ul class="plain">
            {deals.data?.items.map((d) => (
              <li key={d.id}>
                {/* <bdi>: a title or owner holding U+202E turned the figures after it around. */}
                <a href={href('pipeline')}>
                  <bdi>{d.title}</bdi>
                </a>{' '}
                · {d.stage} · {money(d.amount, d.currency)} · <bdi>{d.ownerId}</bdi>
              </li>
            ))}
          </ul>
          {deals.data?.items.length === 0 ? <p class="muted">No deals.</p> : null}
        </section>
        <section aria-labelledby="feedback-title">
          <h2 id="feedback-title">Feedback</h2>
          <ul class="plain">
            {feedback.data?.items.map((f) => (
              <li key={f.id}>
                <a href={href(`service/${f.id}`)}>
                  <bdi>{f.subject}</bdi>
                </a>{' '}
                · {f.kind} · {f.status}
                {f.breached ? <span class="badge warn">SLA breached</span> : null}
              </li>
            ))}
          </ul>
          {feedback.data?.items.length === 0 ? <p class="muted">No feedback.</p> : null}
        </section>
      </div>
      <Activities page={activities.data} problem={activities.problem} role={role} done={done} />
      <section aria-labelledby="timeline-title">
        <h2 id="timeline-title">Timeline</h2>
        <ol class="timeline">
          {timeline.data?.items.map((t) => (
            <li key={t.eventId}>
              <time dateTime={t.occurredAt}>{when(t.occurredAt)}</time> <strong>{t.type}</strong> <bdi>{t.summary}</bdi>{' '}
              {/* A reply's summary names who answered: "by" the same actor again read as a stutter. Only a reply's:
                  a source typed to hold the actor's id hid the attribution of its registration. */}
              {t.type === 'FeedbackResponded' && t.summary.includes(`answered by ${t.actor}`) ? null : <span class="muted">by {t.actor}</span>}
            </li>
          ))}
        </ol>
        {olderEvents}
      </section>
    </article>
  );
};

/** Said where the loaded timeline ends before the customer's first event, with the way to load older ones. */
const TimelineCut = (props: { shown: number; loading: boolean; more: () => void }) => (
  <p class="notice" role="status" data-testid="timeline-cut">
    Showing the latest {props.shown} events of the timeline, and the purchases and refunds among them; older ones are not loaded yet.{' '}
    <button type="button" disabled={props.loading} onClick={props.more}>
      {props.loading ? 'Loading…' : `Show ${TIMELINE_PAGE} older`}
    </button>
  </p>
);

/**
 * Revenue in every currency paid in (one figure in the first purchase's currency hid the others), and
 * the total in the base currency, or the amounts that wait for an exchange rate before it can be given.
 */
const RevenueStats = ({ customer: c }: { customer: Customer }) => {
  const byCurrency = Object.entries(c.revenueByCurrency ?? {});
  // While the read models are rebuilt the split is absent: the figure in the first currency is all there is.
  const revenue = byCurrency.length ? byCurrency.map(([currency, amount]) => money(amount, currency)).join(' · ') : money(c.revenue, c.currency);
  const pending = c.missingRates ?? [];
  return (
    <>
      <Stat label="Revenue" value={<span data-testid="revenue">{revenue}</span>} />
      {byCurrency.length > 1 || (byCurrency.length === 1 && byCurrency[0]![0] !== c.baseCurrency) || pending.length ? (
        <Stat
          label={`Revenue in ${c.baseCurrency}`}
          value={
            <span data-testid="revenue-base">
              {c.revenueBase === null ? '—' : money(c.revenueBase, c.baseCurrency)}
              {pending.length ? <small class="muted"> (pending, no exchange rate yet: {pending.join(', ')})</small> : null}
            </span>
          }
        />
      ) : null}
    </>
  );
};

/** Analytics money is in their base currency; while the analytics are rebuilt it is not known, so no symbol. */
const analyticsMoney = (amount: number | null | undefined, a: CustomerAnalytics): string => (a.baseCurrency ? money(amount, a.baseCurrency) : num(amount));

/** RFM figures; a customer without a repeat purchase in the fitted window has none. */
const RfmStats = ({ rfm, analytics }: { rfm: CustomerAnalytics['rfm'] | null | undefined; analytics: CustomerAnalytics }) =>
  rfm ? (
    <>
      <Stat
        label={`RFM (${rfm.timeUnit}s)`}
        value={`F ${rfm.frequency} · R ${num(rfm.recency, 1)} · T ${num(rfm.T, 1)} · M ${analyticsMoney(rfm.monetary, analytics)}`}
      />
      <Stat label="RFM scores" value={rfm.scores ? `${rfm.scores.r}-${rfm.scores.f}-${rfm.scores.m}` : '—'} />
    </>
  ) : (
    <Stat label="RFM" value="—" />
  );

const orderId = () => `ORD-${Date.now().toString(36).toUpperCase()}`;
const changed = (v: FormValues, c: Customer): Record<string, unknown> => {
  const body: Record<string, unknown> = {};
  for (const field of ['name', 'email', 'phone', 'company'] as const) {
    const value = text(v[field]);
    if (value !== undefined && value !== (c[field] ?? undefined)) body[field] = value;
    // An emptied phone or company is cleared (null), as the API takes it; name and email are required.
    else if (value === undefined && (field === 'phone' || field === 'company') && c[field] !== null) body[field] = null;
  }
  if (v.marketingConsent !== c.marketingConsent) body.marketingConsent = v.marketingConsent === true;
  return body;
};

const OPEN_WHEN_MERGED = ['POST /customers/:id/refunds', 'POST /customers/:id/forget'];
const OPEN_WHEN_FORGOTTEN = ['POST /customers/:id/refunds'];

const CustomerActions = (props: { customer: Customer; role: Role; done: (a: Accepted) => void; feedbackCount: number }) => {
  const { customer: c, role, done } = props;
  const path = `/customers/${c.id}`;
  const act = (close: () => void) => async (p: Promise<Accepted>) => {
    done(await p);
    close();
  };
  // The server's rules (domain/customer/decider.ts): a forgotten customer refuses every command but a
  // refund of one of its orders (no personal data; the books go on); a duplicate merged away refuses all
  // but those and forget.
  const forgotten = c.status === 'forgotten';
  const offers = (route: string) =>
    can(role, route) && (forgotten ? OPEN_WHEN_FORGOTTEN.includes(route) : c.status !== 'merged' || OPEN_WHEN_MERGED.includes(route));
  const actions = allowed([
    offers('PATCH /customers/:id') && {
      label: 'Edit details',
      form: (close: () => void) => (
        <CommandForm
          title="Edit contact details"
          submitLabel="Save"
          revision={c.revision}
          onCancel={close}
          fields={[
            { name: 'name', label: 'Name', value: c.name, required: true },
            { name: 'email', label: 'Email', type: 'email', value: c.email, required: true },
            { name: 'phone', label: 'Phone', value: c.phone ?? '' },
            { name: 'company', label: 'Company', value: c.company ?? '' },
            { name: 'marketingConsent', label: 'Marketing consent', type: 'checkbox', value: c.marketingConsent },
          ]}
          // If-Match: the revision on screen; a change made meanwhile is refused with 409, not overwritten.
          submit={async (v) => act(close)(command(path, changed(v, c), { method: 'PATCH', ifMatch: c.revision }))}
        />
      ),
    },
    offers('POST /customers/:id/purchases') && {
      label: 'Record purchase',
      form: (close: () => void) => (
        <CommandForm
          title="Record a purchase"
          submitLabel="Record purchase"
          onCancel={close}
          fields={[
            { name: 'orderId', label: 'Order id', value: orderId(), required: true },
            { name: 'amount', label: 'Amount', type: 'number', step: MONEY_STEP, required: true },
            { name: 'currency', label: 'Currency', type: 'select', options: CURRENCIES, value: c.currency ?? 'EUR', required: true },
            { name: 'occurredAt', label: 'When (blank: now)', type: 'datetime-local' },
          ]}
          submit={async (v) =>
            act(close)(
              command(`${path}/purchases`, {
                orderId: text(v.orderId),
                amount: numberOf(v.amount, 'amount'),
                currency: v.currency,
                ...(text(v.occurredAt) ? { occurredAt: new Date(String(v.occurredAt)).toISOString() } : {}),
              }),
            )
          }
        />
      ),
    },
    // A deal and a feedback item start on their customer's page (they were API-only).
    offers('POST /deals') && {
      label: 'Open deal',
      form: (close: () => void) => (
        <CommandForm
          title="Open a deal"
          submitLabel="Open deal"
          onCancel={close}
          fields={[
            { name: 'title', label: 'Title', required: true },
            { name: 'amount', label: 'Amount', type: 'number', step: MONEY_STEP, required: true },
            { name: 'currency', label: 'Currency', type: 'select', options: CURRENCIES, value: c.currency ?? 'EUR', required: true },
            { name: 'expectedCloseDate', label: 'Expected close (date)', type: 'date', required: true },
            { name: 'stage', label: 'Stage', type: 'select', options: DEAL_STAGES, value: 'lead', required: true },
            { name: 'ownerId', label: 'Owner (user id)', value: c.ownerId ?? '', required: true },
          ]}
          submit={async (v) =>
            act(close)(
              command('/deals', {
                customerId: c.id,
                title: text(v.title),
                amount: numberOf(v.amount, 'amount'),
                currency: v.currency,
                expectedCloseDate: v.expectedCloseDate,
                stage: v.stage,
                ownerId: text(v.ownerId),
              }),
            )
          }
        />
      ),
    },
    offers('POST /feedback') && {
      label: 'Record feedback',
      form: (close: () => void) => (
        <CommandForm
          title="Record the customer's feedback"
          submitLabel="Record feedback"
          success="Feedback recorded."
          onCancel={close}
          fields={[
            { name: 'kind', label: 'Kind', type: 'select', options: FEEDBACK_KINDS, value: 'question', required: true },
            { name: 'channel', label: 'Channel', type: 'select', options: FEEDBACK_CHANNELS, value: 'email', required: true },
            { name: 'subject', label: 'Subject', required: true },
            { name: 'body', label: 'What the customer said', type: 'textarea', required: true },
            { name: 'priority', label: 'Priority', type: 'select', options: FEEDBACK_PRIORITIES, value: 'normal', required: true },
          ]}
          submit={async (v) =>
            act(close)(
              command('/feedback', {
                customerId: c.id,
                kind: v.kind,
                channel: v.channel,
                subject: text(v.subject),
                body: text(v.body),
                priority: v.priority,
              }),
            )
          }
        />
      ),
    },
    // Calls, meetings and notes are facts of the past (when: blank is now); a task is open until completed.
    offers('POST /customers/:id/activities') && {
      label: 'Log activity',
      form: (close: () => void) => (
        <CommandForm
          title="Log a note, call, meeting or task"
          submitLabel="Log activity"
          success="Activity logged."
          onCancel={close}
          fields={[
            { name: 'kind', label: 'Kind', type: 'select', options: ACTIVITY_KINDS, value: 'note', required: true },
            { name: 'subject', label: 'Subject', required: true },
            { name: 'body', label: 'Notes', type: 'textarea' },
            { name: 'dueAt', label: 'Due (tasks only)', type: 'datetime-local' },
            { name: 'assigneeId', label: 'Assignee (user id; blank: nobody)' },
          ]}
          submit={async (v) =>
            act(close)(
              command(`${path}/activities`, {
                kind: v.kind,
                subject: text(v.subject),
                ...(text(v.body) ? { body: text(v.body) } : {}),
                ...(text(v.dueAt) ? { dueAt: new Date(String(v.dueAt)).toISOString() } : {}),
                ...(text(v.assigneeId) ? { assigneeId: text(v.assigneeId) } : {}),
              }),
            )
          }
        />
      ),
    },
    offers('POST /customers/:id/refunds') && {
      label: 'Refund',
      form: (close: () => void) => (
        <CommandForm
          title="Refund a purchase"
          submitLabel="Refund"
          onCancel={close}
          fields={[
            { name: 'orderId', label: 'Order id', required: true },
            { name: 'amount', label: 'Amount', type: 'number', step: MONEY_STEP, required: true },
            { name: 'currency', label: 'Currency', type: 'select', options: CURRENCIES, value: c.currency ?? 'EUR', required: true },
            { name: 'reason', label: 'Reason' },
          ]}
          submit={async (v) =>
            act(close)(
              command(`${path}/refunds`, {
                orderId: text(v.orderId),
                amount: numberOf(v.amount, 'amount'),
                currency: v.currency,
                ...(text(v.reason) ? { reason: text(v.reason) } : {}),
              }),
            )
          }
        />
      ),
    },
    offers('POST /customers/:id/tags') && {
      label: 'Tag',
      form: (close: () => void) => (
        <CommandForm
          title="Tag or untag"
          submitLabel="Add tag"
          onCancel={close}
          fields={[
            { name: 'tag', label: 'Tag', required: true, hint: `Current: ${c.tags.join(', ') || 'none'}. To remove one, tick "remove".` },
            { name: 'remove', label: 'Remove this tag instead', type: 'checkbox' },
          ]}
          submit={async (v) => act(close)(command(`${path}/${v.remove ? 'untag' : 'tags'}`, { tag: text(v.tag) }))}
        />
      ),
    },
    offers('POST /customers/:id/merge') && {
      label: 'Merge duplicate',
      form: (close: () => void) => (
        <CommandForm
          title="Merge a duplicate into this customer"
          submitLabel="Merge"
          onCancel={close}
          fields={[
            {
              name: 'duplicateId',
              label: 'Duplicate customer id',
              required: true,
              hint: 'Its purchases, deals and feedback count for this customer from now on; the duplicate is marked merged.',
            },
          ]}
          submit={async (v) => act(close)(command(`${path}/merge`, { duplicateId: text(v.duplicateId) }, { ifMatch: c.revision }))}
        />
      ),
    },
    offers(`POST /customers/:id/${c.status === 'inactive' ? 'reactivate' : 'deactivate'}`) && {
      label: c.status === 'inactive' ? 'Reactivate' : 'Deactivate',
      form: (close: () => void) => (
        <CommandForm
          title={c.status === 'inactive' ? 'Reactivate the customer' : 'Deactivate the customer'}
          submitLabel={c.status === 'inactive' ? 'Reactivate' : 'Deactivate'}
          onCancel={close}
          fields={c.status === 'inactive' ? [] : [{ name: 'reason', label: 'Reason' }]}
          submit={async (v) =>
            act(close)(
              command(`${path}/${c.status === 'inactive' ? 'reactivate' : 'deactivate'}`, text(v.reason) ? { reason: text(v.reason) } : {}, {
                ifMatch: c.revision,
              }),
            )
          }
        />
      ),
    },
    offers('POST /customers/:id/forget') && {
      label: 'Forget…',
      form: (close: () => void) => (
        <CommandForm
          title={`Forget ${c.name}`}
          submitLabel="Forget this customer for good"
          danger
          onCancel={close}
          fields={[
            { name: 'confirm', label: `I understand that this erases ${c.name}'s personal data and cannot be undone`, type: 'checkbox', required: true },
          ]}
          submit={async (v) => {
            if (v.confirm !== true) throw new Error('Tick the confirmation first.');
            await act(close)(command(`${path}/forget`, {}, { ifMatch: c.revision }));
          }}
        >
          <div class="warning">
            <p>Forgetting deletes this customer's encryption key (crypto-shredding). Erased for good, in every event and read model:</p>
            <ul>
              <li>
                name <strong>{c.name}</strong>, email <strong>{c.email}</strong>
                {c.phone ? (
                  <>
                    , phone <strong>{c.phone}</strong>
                  </>
                ) : null}
              </li>
              <li>the subject and text of {props.feedbackCount} feedback item(s) and the staff replies to them</li>
            </ul>
            <p>Kept: purchases, refunds, deals and amounts (anonymous), and the audit history, whose hash chains stay verifiable.</p>
          </div>
        </CommandForm>
      ),
    },
  ]);
  const gone = forgotten ? <p class="muted">This customer was forgotten: the server records nothing more on the record but refunds of its orders.</p> : null;
  if (actions.length === 0) return gone ?? <p class="muted">The {role} role has no actions on customers.</p>;
  return (
    <section aria-labelledby="customer-actions-title">
      {gone}
      <h2 id="customer-actions-title" class="sr-only">
        Actions
      </h2>
      <ActionPanel actions={actions} />
    </section>
  );
};

/**
 * The customer's notes, calls, meetings and tasks (its deals' included), newest first; an open task
 * can be completed here, and an overdue one says so.
 */
const Activities = (props: { page: Page<Activity> | undefined; problem: Problem | null | undefined; role: Role; done: (a: Accepted) => void }) => {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [completing, setCompleting] = useState<string | null>(null);
  const mayComplete = can(props.role, 'POST /activities/:id/complete');
  const complete = async (a: Activity) => {
    setProblem(null);
    setCompleting(a.id);
    try {
      props.done(await command(`/activities/${a.id}/complete`, {}, { ifMatch: a.revision }));
      announce(`Completed "${a.subject}".`);
    } catch (error) {
      setProblem(problemOf(error));
    } finally {
      setCompleting(null);
    }
  };
  const items = props.page?.items ?? [];
  return (
    <section aria-labelledby="activities-title">
      <h2 id="activities-title">Activities</h2>
      <ProblemBox problem={problem ?? props.problem} focus={problem !== null} />
      {props.page === undefined && !props.problem ? <Loading what="activities" /> : null}
      {props.page && items.length === 0 ? <p class="muted">No activities.</p> : null}
      {items.length ? (
        <Grid aria-labelledby="activities-title" data-testid="activities">
          <Head columns={['When', 'Kind', 'Subject', 'Notes', 'Assignee', 'Status', ['Action', 'hidden']]} />
          <tbody>
            {items.map((a) => (
              <tr key={a.id}>
                <td>{when(a.occurredAt)}</td>
                <td class="word">{a.kind}</td>
                <td>{a.subject}</td>
                <td>{a.body ?? ''}</td>
                <td>{a.assigneeId ?? '—'}</td>
                <td>
                  {a.kind !== 'task' ? '' : a.completedAt ? `done ${when(a.completedAt)}` : a.dueAt ? `due ${when(a.dueAt)}` : 'open'}
                  {a.overdue ? <span class="badge warn">overdue</span> : null}
                </td>
                <td>
                  {a.open && mayComplete ? (
                    <button type="button" aria-label={`Complete ${a.subject}`} disabled={completing !== null} onClick={() => void complete(a)}>
                      {completing === a.id ? 'Working…' : 'Complete'}
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </Grid>
      ) : null}
      {props.page?.nextCursor ? <p class="muted">The latest {items.length} activities are shown; GET /customers/:id/activities lists them all.</p> : null}
    </section>
  );
};
