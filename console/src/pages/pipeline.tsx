import { useEffect, useState } from 'preact/hooks';
import { command, get, getPages, query, type Accepted, type Page, type Problem } from '../api.ts';
import { href } from '../router.ts';
import { CURRENCIES, DEAL_STAGES, type Deal } from '../types.ts';
import {
  announce,
  can,
  CommandForm,
  day,
  fieldProblem,
  Loading,
  money,
  pct,
  ProblemBox,
  problemOf,
  text,
  numberOf,
  useLoad,
  useReloadWhenStale,
  Head,
  MONEY_STEP,
  Grid,
} from '../ui.tsx';
import type { Role } from '../../../api/roles.ts';

interface PipelineRow {
  key: string;
  currency: string;
  dealCount: number;
  amount: number;
  weightedAmount: number;
}
interface ClosedRow {
  won: number;
  lost: number;
  winRate: number | null;
  wonAmount: number | null;
}
interface Pipeline {
  totals: PipelineRow[];
  byStage: PipelineRow[];
  byOwner: PipelineRow[];
  byMonth: PipelineRow[];
  /** Null only while the read models are rebuilt after an upgrade. */
  closed: null | { currency: string; totals: ClosedRow; byOwner: (ClosedRow & { ownerId: string })[] };
}

const BOARD_PAGE = 500;

export const PipelinePage = ({ role }: { role: Role }) => {
  const [waitFor, setWaitFor] = useState<string | undefined>();
  const [problem, setProblem] = useState<Problem | null>(null);
  // The one deal form open: mark won or lost, edit an open deal, or reopen a closed one.
  const [acting, setActing] = useState<{ deal: Deal; action: DealAction } | null>(null);
  // Pages of BOARD_PAGE deals the board shows; "Show more" adds one (the board said to filter a list the console has not).
  const [pages, setPages] = useState(1);
  const deals = useLoad(
    (signal) => getPages<Deal>((cursor) => `/deals${query({ status: 'open', limit: BOARD_PAGE, sort: 'expectedCloseDate', cursor, waitFor })}`, pages, signal),
    [waitFor, pages],
  );
  const closed = useLoad((signal) => get<Page<Deal>>(`/deals${query({ sort: '-updatedAt', limit: 100, waitFor })}`, { signal }), [waitFor]);
  const summary = useLoad((signal) => get<Pipeline>(`/pipeline${query({ waitFor })}`, { signal }), [waitFor]);
  useReloadWhenStale(deals.reload, summary.reload);
  const mayMove = can(role, 'POST /deals/:id/stage');
  const mayClose = can(role, 'POST /deals/:id/won');
  const mayEdit = can(role, 'PATCH /deals/:id');
  const mayReopen = can(role, 'POST /deals/:id/reopen');
  const run = async (p: Promise<Accepted>) => {
    setProblem(null);
    try {
      setWaitFor((await p).position);
      return true;
    } catch (error) {
      setProblem(problemOf(error));
      return false;
    }
  };
  // Deals with a move in flight, by the revision it was sent from: their controls stay disabled until the
  // board shows the deal as moved (a second move sent meanwhile was refused with a misleading 409).
  const [moving, setMoving] = useState<ReadonlyMap<string, number>>(new Map());
  const isMoving = (deal: Deal) => moving.get(deal.id) === deal.revision;
  // The card moved by its menu is drawn anew in its new column: the focus follows it there (it fell to <body>).
  const [follow, setFollow] = useState<{ id: string; stage: string } | null>(null);
  const move = async (deal: Deal, stage: string, focus = false) => {
    if (stage === deal.stage || isMoving(deal)) return;
    setMoving((m) => new Map(m).set(deal.id, deal.revision));
    const moved = await run(command(`/deals/${deal.id}/stage`, { stage }, { ifMatch: deal.revision }));
    if (moved) announce(`Moved "${deal.title}" to ${stage}.`);
    if (moved && focus) setFollow({ id: deal.id, stage });
    if (!moved)
      setMoving((m) => {
        const left = new Map(m);
        left.delete(deal.id);
        return left;
      });
  };
  const byId = new Map(deals.data?.items.map((d) => [d.id, d]));
  useEffect(() => {
    if (!follow || byId.get(follow.id)?.stage !== follow.stage) return;
    document.getElementById(`move-${follow.id}`)?.focus();
    setFollow(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [deals.data, follow]);
  // The deal as the board has it now: after a 409 the board reloads, and the form sends that revision
  // (it kept the one of the click, and every further try was refused the same way).
  const closedById = new Map(closed.data?.items.map((d) => [d.id, d]));
  const actingDeal = acting ? (byId.get(acting.deal.id) ?? closedById.get(acting.deal.id) ?? acting.deal) : null;
  const sent = (position: string) => {
    setWaitFor(position);
    setActing(null);
  };

  return (
    <section aria-labelledby="pipeline-title">
      <h1 id="pipeline-title">Pipeline</h1>
      <p class="muted">
        Open deals by stage.{' '}
        {mayMove
          ? 'Move a deal by choosing a stage in its "Move to" menu and pressing Move, or drag its card to another column; mark it won or lost with its buttons.'
          : `The ${role} role can look but not change deals.`}
      </p>
      {/* A refused move takes the focus: the control that sent it was disabled meanwhile. */}
      <ProblemBox problem={problem ?? deals.problem} focus={problem !== null} />
      {acting && actingDeal ? (
        <DealForm key={`${acting.action}-${actingDeal.id}`} deal={actingDeal} action={acting.action} sent={sent} cancel={() => setActing(null)} />
      ) : null}
      {deals.loading && !deals.data ? <Loading what="deals" /> : null}
      {deals.data?.nextCursor ? (
        <p class="notice" role="status" data-testid="board-cut">
          The board shows the first {deals.data.items.length} open deals by expected close date; the stage totals count every open deal.{' '}
          <button type="button" disabled={deals.loading} onClick={() => setPages(pages + 1)}>
            {deals.loading ? 'Loading…' : `Show ${BOARD_PAGE} more`}
          </button>
        </p>
      ) : null}
      <div class="board">
        {DEAL_STAGES.map((stage) => {
          const inStage = deals.data?.items.filter((d) => d.stage === stage) ?? [];
          const total = summary.data?.byStage.filter((r) => r.key === stage) ?? [];
          return (
            <section
              key={stage}
              class="column"
              aria-labelledby={`stage-${stage}`}
              data-stage={stage}
              onDragOver={(e) => mayMove && e.preventDefault()}
              onDrop={(e) => {
                e.preventDefault();
                const deal = byId.get(e.dataTransfer?.getData('text/plain') ?? '');
                if (deal) void move(deal, stage);
              }}
            >
              <h2 id={`stage-${stage}`}>
                {stage} <span class="muted">({inStage.length})</span>
              </h2>
              <p class="muted">{total.map((t) => `${money(t.amount, t.currency)} · weighted ${money(t.weightedAmount, t.currency)}`).join('; ') || '—'}</p>
              <ul class="cards">
                {inStage.map((d) => (
                  <li
                    key={d.id}
                    class="card"
                    draggable={mayMove && !isMoving(d)}
                    onDragStart={(e) => e.dataTransfer?.setData('text/plain', d.id)}
                    aria-label={`${d.title}, ${money(d.amount, d.currency)}`}
                  >
                    <strong>
                      <bdi>{d.title}</bdi>
                    </strong>
                    <div>
                      {money(d.amount, d.currency)} · {pct(d.probability, 0)}
                    </div>
                    <div class="muted">
                      <bdi>{d.ownerId}</bdi> · closes {day(d.expectedCloseDate)} · {d.daysInStage} d in stage
                    </div>
                    {/* Named with the deal: a list of links all read "customer" told them apart by nothing. */}
                    <a href={href(`customers/${d.customerId}`)} aria-label={`Customer of ${d.title}`}>
                      customer
                    </a>
                    {mayMove ? (
                      <div class="buttons">
                        <MoveDeal deal={d} moving={isMoving(d)} move={(stage) => move(d, stage, true)} />
                        {mayEdit ? (
                          <button type="button" aria-label={`Edit ${d.title}`} onClick={() => setActing({ deal: d, action: 'edit' })}>
                            Edit
                          </button>
                        ) : null}
                        {mayClose ? (
                          <>
                            <button type="button" aria-label={`Mark ${d.title} won`} onClick={() => setActing({ deal: d, action: 'won' })}>
                              Won
                            </button>
                            <button type="button" aria-label={`Mark ${d.title} lost`} onClick={() => setActing({ deal: d, action: 'lost' })}>
                              Lost
                            </button>
                          </>
                        ) : null}
                      </div>
                    ) : null}
                  </li>
                ))}
              </ul>
            </section>
          );
        })}
      </div>
      <div class="columns">
        <Totals title="Weighted by owner" rows={summary.data?.byOwner} />
        <Totals title="Weighted by close month" rows={summary.data?.byMonth} />
      </div>
      <WinRate closed={summary.data?.closed ?? null} />
      <section aria-labelledby="closed-title">
        <h2 id="closed-title">Recently won and lost</h2>
        <Grid aria-labelledby="closed-title" data-testid="closed-deals">
          <Head columns={['Deal', 'Outcome', ['Amount', 'num'], 'Reason', 'Closed', ...(mayReopen ? [['Action', 'hidden'] as [string, 'hidden']] : [])]} />
          <tbody>
            {closed.data?.items
              .filter((d) => d.status !== 'open')
              .map((d) => (
                <tr key={d.id}>
                  <td>{d.title}</td>
                  <td class="word">{d.status}</td>
                  <td class="num">{money(d.amount, d.currency)}</td>
                  <td>{d.wonReason ?? d.lostReason ?? ''}</td>
                  <td>{day(d.closedAt)}</td>
                  {mayReopen ? (
                    <td>
                      <button type="button" aria-label={`Reopen ${d.title}`} onClick={() => setActing({ deal: d, action: 'reopen' })}>
                        Reopen
                      </button>
                    </td>
                  ) : null}
                </tr>
              ))}
          </tbody>
        </Grid>
      </section>
    </section>
  );
};

type DealAction = 'won' | 'lost' | 'edit' | 'reopen';

/**
 * The form of one deal action. Edit sends only the fields changed from the deal as it stands (after a
 * 409 that is the deal as reloaded), so that it never writes back a value another user changed.
 */
const DealForm = (props: { deal: Deal; action: DealAction; sent: (position: string) => void; cancel: () => void }) => {
  const { deal, action } = props;
  const send = async (path: string, body: object, method?: 'PATCH') =>
    props.sent((await command(`/deals/${deal.id}${path}`, body, { ifMatch: deal.revision, ...(method ? { method } : {}) })).position);
  // Level 2: the form sits right under the screen's h1.
  const common = { onCancel: props.cancel, revision: deal.revision, level: 2 as const };
  switch (action) {
    case 'won':
    case 'lost':
      return (
        <CommandForm
          {...common}
          title={`Mark "${deal.title}" ${action}`}
          submitLabel={`Mark ${action}`}
          success={`"${deal.title}" marked ${action}.`}
          fields={
            action === 'won'
              ? [
                  { name: 'amount', label: `Final amount (${deal.currency}; blank: ${deal.amount})`, type: 'number', step: MONEY_STEP },
                  { name: 'reason', label: 'Why it was won (optional)' },
                ]
              : [{ name: 'reason', label: 'Reason lost', required: true }]
          }
          submit={async (v) => {
            const amount = numberOf(v.amount, 'amount');
            const reason = text(v.reason);
            await send(`/${action}`, action === 'won' ? { ...(amount !== undefined ? { amount } : {}), ...(reason ? { reason } : {}) } : { reason });
          }}
        />
      );
    case 'edit': {
      const override = deal.probabilityOverride === null ? '' : String(Math.round(deal.probabilityOverride * 10000) / 100);
      return (
        <CommandForm
          {...common}
          title={`Edit "${deal.title}"`}
          submitLabel="Save deal"
          success={`"${deal.title}" saved.`}
          fields={[
            { name: 'title', label: 'Title', value: deal.title, required: true },
            { name: 'amount', label: 'Amount', type: 'number', step: MONEY_STEP, value: String(deal.amount), required: true },
            { name: 'currency', label: 'Currency', type: 'select', options: currenciesWith(deal.currency), value: deal.currency, required: true },
            { name: 'ownerId', label: 'Owner (user id)', value: deal.ownerId, required: true },
            { name: 'expectedCloseDate', label: 'Expected close (date)', type: 'date', value: deal.expectedCloseDate ?? '', required: true },
            { name: 'probabilityOverride', label: "Win probability, % (blank: the stage's own)", type: 'number', step: '0.01', value: override },
          ]}
          submit={async (v) => {
            const amount = numberOf(v.amount, 'amount');
            const percent = numberOf(v.probabilityOverride, 'probabilityOverride');
            if (percent !== undefined && (percent < 0 || percent > 100)) throw fieldProblem('probabilityOverride', 'a percentage from 0 to 100');
            const probabilityOverride = percent === undefined ? null : Math.round(percent * 100) / 10000;
            const changed = {
              ...(text(v.title) !== deal.title ? { title: text(v.title) } : {}),
              ...(amount !== deal.amount ? { amount } : {}),
              ...(v.currency !== deal.currency ? { currency: v.currency } : {}),
              ...(text(v.ownerId) !== deal.ownerId ? { ownerId: text(v.ownerId) } : {}),
              ...(v.expectedCloseDate !== (deal.expectedCloseDate ?? '') ? { expectedCloseDate: v.expectedCloseDate } : {}),
              ...(probabilityOverride !== deal.probabilityOverride ? { probabilityOverride } : {}),
            };
            // Nothing changed: nothing to record (the server would refuse an empty change).
            if (Object.keys(changed).length === 0) return props.cancel();
            await send('', changed, 'PATCH');
          }}
        />
      );
    }
    case 'reopen':
      return (
        <CommandForm
          {...common}
          title={`Reopen "${deal.title}"`}
          submitLabel="Reopen deal"
          success={`"${deal.title}" reopened.`}
          fields={[{ name: 'stage', label: 'Stage (blank: the one it was closed from)', type: 'select', options: DEAL_STAGES }]}
          submit={async (v) => send('/reopen', text(v.stage) ? { stage: v.stage } : {})}
        />
      );
  }
};

/** The console's currencies, and the deal's own when it is another (a deal may be in any ISO 4217 currency). */
const currenciesWith = (currency: string) => (CURRENCIES.includes(currency as (typeof CURRENCIES)[number]) ? CURRENCIES : [...CURRENCIES, currency]);

/**
 * A card's "Move to" menu and its Move button. Choosing a stage only selects it: the arrow keys change a
 * closed <select> in Chromium, so moving on change sent the deal to the next stage on the first key.
 */
const MoveDeal = (props: { deal: Deal; moving: boolean; move: (stage: string) => Promise<void> }) => {
  const { deal } = props;
  const [target, setTarget] = useState<string>(deal.stage);
  return (
    <>
      <label class="sr-only" for={`move-${deal.id}`}>
        Move {deal.title} to
      </label>
      <select id={`move-${deal.id}`} value={target} disabled={props.moving} onChange={(e) => setTarget(e.currentTarget.value)}>
        {DEAL_STAGES.map((s) => (
          <option key={s} value={s}>
            {s === deal.stage ? `Move to… (${s})` : s}
          </option>
        ))}
      </select>
      <button type="button" disabled={props.moving || target === deal.stage} onClick={() => void props.move(target)}>
        {props.moving ? 'Moving…' : 'Move'}
      </button>
    </>
  );
};

/** Deals won and lost so far, by owner: the share won and the amount won in the base currency. */
const WinRate = ({ closed }: { closed: Pipeline['closed'] }) => {
  if (!closed) return null;
  const rows: (ClosedRow & { key: string })[] = [...closed.byOwner.map((r) => ({ ...r, key: r.ownerId })), { ...closed.totals, key: 'All owners' }];
  const amount = (r: ClosedRow) => (r.wonAmount === null ? 'rate missing' : money(r.wonAmount, closed.currency));
  return (
    <section aria-labelledby="win-rate-title">
      <h2 id="win-rate-title">Win rate</h2>
      <Grid aria-labelledby="win-rate-title" data-testid="win-rate">
        <Head columns={['Owner', ['Won', 'num'], ['Lost', 'num'], ['Win rate', 'num'], ['Amount won', 'num']]} />
        <tbody>
          {rows.map((r) => (
            <tr key={r.key}>
              <td>{r.key}</td>
              <td class="num">{r.won}</td>
              <td class="num">{r.lost}</td>
              <td class="num">{r.winRate === null ? '—' : pct(r.winRate, 0)}</td>
              <td class="num">{amount(r)}</td>
            </tr>
          ))}
        </tbody>
      </Grid>
    </section>
  );
};

const Totals = ({ title, rows }: { title: string; rows: PipelineRow[] | undefined }) => (
  <section aria-label={title}>
    <h2>{title}</h2>
    <Grid>
      <Head columns={['Key', ['Deals', 'num'], ['Amount', 'num'], ['Weighted', 'num']]} />
      <tbody>
        {rows?.map((r) => (
          <tr key={`${r.key}-${r.currency}`}>
            <td>{r.key}</td>
            <td class="num">{r.dealCount}</td>
            <td class="num">{money(r.amount, r.currency)}</td>
            <td class="num">{money(r.weightedAmount, r.currency)}</td>
          </tr>
        ))}
      </tbody>
    </Grid>
  </section>
);
