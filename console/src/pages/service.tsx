import { useEffect, useRef, useState } from 'preact/hooks';
import { command, get, getPages, query, type Accepted } from '../api.ts';
import { href } from '../router.ts';
import type { Feedback } from '../types.ts';
import {
  ActionPanel,
  allowed,
  can,
  CommandForm,
  focusOpened,
  Loading,
  numberOf,
  pct,
  ProblemBox,
  Stat,
  text,
  useLoad,
  useReloadWhenStale,
  useTitle,
  when,
  Head,
  Grid,
} from '../ui.tsx';
import type { Role } from '../../../api/roles.ts';
import { FEEDBACK_PRIORITIES } from '../types.ts';

const QUEUE_PAGE = 200;

/** "3 h 20 min left" or "overdue by 2 d 4 h", refreshed every 30 s. */
const Countdown = ({ due }: { due: string | null }) => {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 30_000);
    return () => clearInterval(timer);
  }, []);
  if (!due) return <span class="muted">no SLA</span>;
  const ms = new Date(due).getTime() - now;
  const minutes = Math.round(Math.abs(ms) / 60_000);
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const m = minutes % 60;
  const span = d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min`;
  return ms < 0 ? <span class="overdue">overdue by {span}</span> : <span>{span} left</span>;
};

const byUrgency = (a: Feedback, b: Feedback): number =>
  Number(b.breached) - Number(a.breached) || (a.resolutionDueAt ?? '9').localeCompare(b.resolutionDueAt ?? '9');

export const ServicePage = ({ role, selected }: { role: Role; selected: string | undefined }) => {
  const [waitFor, setWaitFor] = useState<string | undefined>();
  // Pages of QUEUE_PAGE tickets per status; "Show more" adds one (tickets past the first page were unreachable).
  const [pages, setPages] = useState(1);
  const queue = useLoad(
    async (signal) => {
      const lists = await Promise.all(
        ['open', 'in_progress'].map((status) =>
          getPages<Feedback>((cursor) => `/feedback${query({ status, sort: 'resolutionDueAt', limit: QUEUE_PAGE, cursor, waitFor })}`, pages, signal),
        ),
      );
      return { items: lists.flatMap((p) => p.items).sort(byUrgency), cut: lists.some((p) => p.nextCursor !== null) };
    },
    [waitFor, pages],
  );
  return (
    <section aria-labelledby="service-title">
      <h1 id="service-title">Service desk</h1>
      <div class="split">
        <section aria-labelledby="queue-title">
          <h2 id="queue-title">Queue: open and in progress, SLA breaches first</h2>
          <ProblemBox problem={queue.problem} />
          {queue.loading && !queue.data ? <Loading what="the queue" /> : null}
          <Grid aria-labelledby="queue-title" data-testid="queue">
            <Head columns={['Subject', 'Priority', 'Status', 'Assignee', 'Resolution SLA']} />
            <tbody>
              {queue.data?.items.map((f) => (
                <tr key={f.id} class={f.id === selected ? 'selected' : undefined}>
                  <td>
                    <a href={href(`service/${f.id}`)}>{f.subject}</a>
                  </td>
                  <td class="word">{f.priority}</td>
                  <td class="word">{f.status}</td>
                  <td>{f.assigneeId ?? '—'}</td>
                  <td>
                    <Countdown due={f.resolutionDueAt} />
                  </td>
                </tr>
              ))}
              {queue.data?.items.length === 0 ? (
                <tr>
                  <td colSpan={5}>No ticket is open or in progress.</td>
                </tr>
              ) : null}
            </tbody>
          </Grid>
          {queue.data?.cut ? (
            <p class="notice" role="status" data-testid="queue-cut">
              The queue shows the first {queue.data.items.length} tickets (up to {pages * QUEUE_PAGE} per status, the soonest due first); more are waiting.{' '}
              <button type="button" disabled={queue.loading} onClick={() => setPages(pages + 1)}>
                {queue.loading ? 'Loading…' : 'Show more'}
              </button>
            </p>
          ) : null}
        </section>
        {/* Keyed by the item: a reply typed for one ticket was sent to the next one opened. */}
        {selected ? <FeedbackDetail key={selected} id={selected} role={role} waitFor={waitFor} done={(a) => setWaitFor(a.position)} /> : null}
      </div>
      {can(role, 'GET /analytics/satisfaction') ? <Satisfaction /> : <p class="muted">CSAT and NPS are analytics, which the {role} role does not read.</p>}
    </section>
  );
};

const FeedbackDetail = (props: { id: string; role: Role; waitFor: string | undefined; done: (a: Accepted) => void }) => {
  const { id, role } = props;
  const item = useLoad((signal) => get<Feedback>(`/feedback/${id}${query({ waitFor: props.waitFor })}`, { signal }), [id, props.waitFor]);
  useReloadWhenStale(item.reload);
  useTitle(item.data?.subject, 'Service desk');
  // The ticket opened takes the focus (it stayed on its link in the queue, drawn before the ticket); once,
  // not again when it reloads after an action.
  const heading = useRef<HTMLHeadingElement>(null);
  const shown = item.data !== undefined;
  useEffect(() => {
    if (shown) focusOpened(heading.current);
  }, [shown]);
  if (item.problem) return <ProblemBox problem={item.problem} />;
  const f = item.data;
  if (!f) return <Loading what="the feedback item" />;
  const path = `/feedback/${f.id}`;
  const form = (
    title: string,
    submitLabel: string,
    fields: Parameters<typeof CommandForm>[0]['fields'],
    body: (v: Record<string, string | boolean>) => unknown,
    action: string,
    ifMatch: boolean,
  ) =>
    can(role, `POST /feedback/:id/${action}`) && {
      label: submitLabel,
      form: (close: () => void) => (
        <CommandForm
          title={title}
          submitLabel={submitLabel}
          onCancel={close}
          fields={fields}
          revision={f.revision}
          submit={async (v) => {
            props.done(await command(`${path}/${action}`, body(v), ifMatch ? { ifMatch: f.revision } : {}));
            close();
          }}
        />
      ),
    };
  const open = f.status === 'open' || f.status === 'in_progress';
  const actions = allowed([
    open &&
      form(
        'Respond to the customer',
        'Respond',
        [{ name: 'message', label: 'Message', type: 'textarea', required: true }],
        (v) => ({ message: text(v.message) }),
        'respond',
        false,
      ),
    open &&
      form(
        'Assign',
        'Assign',
        [{ name: 'assigneeId', label: 'Assignee', required: true, value: f.assigneeId ?? '' }],
        (v) => ({ assigneeId: text(v.assigneeId) }),
        'assign',
        true,
      ),
    open &&
      form(
        'Escalate',
        'Escalate',
        [
          { name: 'reason', label: 'Reason', required: true },
          { name: 'priority', label: 'New priority', type: 'select', options: FEEDBACK_PRIORITIES },
        ],
        (v) => ({ reason: text(v.reason), ...(text(v.priority) ? { priority: v.priority } : {}) }),
        'escalate',
        true,
      ),
    open &&
      form(
        'Resolve',
        'Resolve',
        [{ name: 'resolution', label: 'Resolution', type: 'textarea', required: true }],
        (v) => ({ resolution: text(v.resolution) }),
        'resolve',
        true,
      ),
    // The server's rules (domain/feedback/decider.ts): a closed item is never reopened; a rating comes once, after the resolution.
    f.status === 'resolved' &&
      form('Reopen', 'Reopen', [{ name: 'reason', label: 'Reason' }], (v) => (text(v.reason) ? { reason: text(v.reason) } : {}), 'reopen', true),
    // An item may also be closed unresolved (a duplicate, spam, a customer who went silent): its SLA stays as it stood.
    f.status !== 'closed' && form(f.status === 'resolved' ? 'Close' : 'Close without a resolution', 'Close', [], () => ({}), 'close', true),
    // The last rating stays with its time after a reopening: one dated before this resolution (or closing) rated an earlier one.
    (f.status === 'resolved' || f.status === 'closed') &&
      (f.ratedAt === null || Date.parse(f.ratedAt) < Date.parse(f.resolvedAt ?? f.closedAt ?? f.ratedAt)) &&
      form(
        "Record the customer's rating",
        'Rate',
        [
          { name: 'csat', label: 'CSAT (1-5)', type: 'number', required: true },
          { name: 'comment', label: 'Comment' },
        ],
        (v) => ({ csat: numberOf(v.csat, 'csat'), ...(text(v.comment) ? { comment: text(v.comment) } : {}) }),
        'rating',
        false,
      ),
  ]);
  return (
    <article aria-labelledby="feedback-detail-title" class="detail">
      <h2 id="feedback-detail-title" ref={heading}>
        {f.subject}
      </h2>
      <p class="muted">
        {f.kind} via {f.channel} · revision {f.revision} ·{' '}
        <a href={href(`customers/${f.customerId}`)} aria-label={`Customer of ${f.subject}`}>
          customer
        </a>
      </p>
      {f.body ? <blockquote>{f.body}</blockquote> : null}
      <dl class="stats">
        <Stat label="Status" value={f.status} />
        <Stat label="Priority" value={f.priority} />
        <Stat label="Assignee" value={f.assigneeId ?? '—'} />
        <Stat label="Submitted" value={when(f.submittedAt)} />
        <Stat label="First response due" value={when(f.firstResponseDueAt)} />
        <Stat label="First responded" value={when(f.firstRespondedAt)} />
        {f.resolvedAt ? (
          <Stat label="Resolved" value={`${when(f.resolvedAt)}${f.resolutionBreached ? ' (after its deadline)' : ''}`} />
        ) : (
          <Stat label="Resolution due" value={<Countdown due={f.resolutionDueAt} />} />
        )}
        <Stat label="Escalations" value={f.escalationCount} />
        <Stat label="CSAT / NPS" value={`${f.csat ?? '—'} / ${f.nps ?? '—'}`} />
      </dl>
      {actions.length ? <ActionPanel actions={actions} /> : <p class="muted">The {role} role has no actions on feedback.</p>}
    </article>
  );
};

interface SatisfactionRow {
  period?: string;
  channel?: string;
  csatResponses: number;
  npsResponses: number;
  csat: number | null;
  nps: number | null;
}

const Satisfaction = () => {
  const byPeriod = useLoad((signal) => get<{ items: SatisfactionRow[] }>(`/analytics/satisfaction?groupBy=period&granularity=quarter`, { signal }), []);
  const byChannel = useLoad((signal) => get<{ items: SatisfactionRow[] }>(`/analytics/satisfaction?groupBy=channel`, { signal }), []);
  const table = (title: string, key: 'period' | 'channel', rows: SatisfactionRow[] | undefined) => (
    <section aria-label={title}>
      <h3>{title}</h3>
      <Grid>
        <thead>
          <tr>
            <th scope="col">{key}</th>
            <th scope="col" class="num">
              CSAT
            </th>
            <th scope="col" class="num">
              ratings
            </th>
            <th scope="col" class="num">
              NPS
            </th>
            <th scope="col" class="num">
              answers
            </th>
          </tr>
        </thead>
        <tbody>
          {rows?.map((r) => (
            <tr key={r[key]}>
              <td>{r[key]}</td>
              <td class="num">{pct(r.csat, 0)}</td>
              <td class="num">{r.csatResponses}</td>
              <td class="num">{r.nps === null ? '—' : Math.round(r.nps)}</td>
              <td class="num">{r.npsResponses}</td>
            </tr>
          ))}
        </tbody>
      </Grid>
    </section>
  );
  return (
    <section aria-labelledby="satisfaction-title">
      <h2 id="satisfaction-title">Satisfaction</h2>
      <ProblemBox problem={byPeriod.problem ?? byChannel.problem} />
      <div class="columns">
        {table('CSAT and NPS by quarter', 'period', byPeriod.data?.items)}
        {table('CSAT and NPS by channel', 'channel', byChannel.data?.items)}
      </div>
    </section>
  );
};
