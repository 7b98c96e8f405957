import { useState } from 'preact/hooks';
import { get, query, request } from '../api.ts';
import { navigate } from '../router.ts';
import type { AuditEvent } from '../types.ts';
import { can, Loading, localZone, ProblemBox, problemOf, useLoad, useTitle, when, Head, Grid } from '../ui.tsx';
import type { Problem } from '../api.ts';
import type { Role } from '../../../api/roles.ts';

interface History {
  items: AuditEvent[];
  nextCursor: string | null;
}
/** Which time `asOf` is read on (GET /audit/state/:kind/:id?time=). */
type TimeAxis = 'record' | 'business';
interface StateAt {
  kind: string;
  id: string;
  asOf: string;
  time: TimeAxis;
  revision: number;
  recordedAt: string;
  occurredAt: string;
  record: Record<string, unknown>;
}
interface Verification {
  id: string;
  kind: string;
  status: string;
  done?: boolean;
  ok?: boolean;
  progress?: { done: number; phase: string; total: number | null };
  result?: Record<string, unknown> & { tables?: { table: string; equal: boolean; liveRows: number; replayedRows: number; differences: number }[] };
  error?: string | null;
}

const KINDS = ['customer', 'deal', 'campaign', 'feedback'] as const;
const show = (value: unknown): string => (value === null || value === undefined ? '—' : typeof value === 'object' ? JSON.stringify(value) : String(value));
/** `customer-<uuid>` -> ['customer', '<uuid>'] when it is a record the as-of view can fold. */
const recordOf = (stream: string): [string, string] | undefined => {
  const match = /^(customer|deal|campaign|feedback)-(.+)$/.exec(stream);
  return match ? [match[1]!, match[2]!] : undefined;
};

export const AuditPage = ({ role, companyWide, params }: { role: Role; companyWide: boolean; params: URLSearchParams }) => {
  const stream = params.get('stream') ?? '';
  const [input, setInput] = useState(stream);
  // Opened from a link by a role the audit trail is closed to: no controls the API would refuse.
  if (!can(role, 'GET /audit/events') && !can(role, 'GET /audit/streams/:stream'))
    return (
      <section aria-labelledby="audit-title">
        <h1 id="audit-title">Audit</h1>
        <p class="muted">The {role} role does not read the audit trail.</p>
      </section>
    );
  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          navigate('audit', { stream: input.trim() });
        }}
      >
        <div class="field wide">
          <label for="audit-stream">Record's stream (for example customer-&lt;id&gt;, deal-&lt;id&gt;)</label>
          <input id="audit-stream" value={input} onInput={(e) => setInput(e.currentTarget.value)} />
        </div>
        <button type="submit" class="primary">
          Open history
        </button>
      </form>
      {stream ? <StreamHistory stream={stream} key={stream} /> : null}
      {/* Company-wide checks need visibility all or the auditor role (api/auth/scope-guard.ts). */}
      {can(role, 'POST /audit/verify') && (companyWide || role === 'auditor') ? <Verify /> : null}
      {can(role, 'GET /audit/events') ? <GlobalLog mayExport={can(role, 'GET /audit/events/export')} /> : null}
    </section>
  );
};

const StreamHistory = ({ stream }: { stream: string }) => {
  const history = useLoad((signal) => get<History>(`/audit/streams/${encodeURIComponent(stream)}${query({ limit: 1000 })}`, { signal }), [stream]);
  const record = recordOf(stream);
  const [asOf, setAsOf] = useState('');
  const [time, setTime] = useState<TimeAxis>('record');
  // The window's title names the history read, as a record's page names its record: once loaded, as
  // theirs (the screen's own title is set after a child's first effects).
  useTitle(history.data ? `History of ${stream}` : undefined, 'Audit');
  if (history.problem) return <ProblemBox problem={history.problem} />;
  if (!history.data) return <Loading what="the history" />;
  const events = history.data.items;
  return (
    <>
      <section aria-labelledby="history-title">
        <h2 id="history-title">History of {stream}</h2>
        <Grid data-testid="history">
          <thead>
            <tr>
              <th scope="col">Rev.</th>
              <th scope="col">Event</th>
              <th scope="col">Who</th>
              <th scope="col">When (business / recorded)</th>
              <th scope="col">Why</th>
              <th scope="col">Fields</th>
              {record ? <th scope="col">As of</th> : null}
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr key={e.id}>
                <td>{e.revision}</td>
                <td>
                  {e.type}
                  <div class="muted">{e.command ?? ''}</div>
                </td>
                <td>
                  {e.actor}
                  <div class="muted">{e.roles.join(', ')}</div>
                </td>
                <td>
                  {when(e.occurredAt)}
                  <div class="muted">{when(e.recordedAt)}</div>
                </td>
                <td>
                  {e.reason ?? '—'}
                  <div class="muted" title="correlation id">
                    {e.correlationId}
                  </div>
                </td>
                <td>
                  <dl class="fields">
                    {Object.entries(e.data)
                      .filter(([k]) => !k.endsWith('Id') || k === 'orderId')
                      .map(([k, v]) => (
                        <div key={k}>
                          <dt>{k}</dt>
                          <dd>{show(v)}</dd>
                        </div>
                      ))}
                  </dl>
                </td>
                {record ? (
                  <td>
                    <button
                      type="button"
                      // The revision as it was recorded: on record time, whatever axis was chosen before.
                      onClick={() => {
                        setTime('record');
                        setAsOf(e.recordedAt);
                      }}
                      aria-label={`Show the record as of revision ${e.revision}`}
                    >
                      View
                    </button>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </Grid>
      </section>
      {record ? <AsOf kind={record[0]} id={record[1]} asOf={asOf} setAsOf={setAsOf} time={time} setTime={setTime} /> : null}
    </>
  );
};

const toLocalInput = (iso: string): string => {
  if (!iso) return '';
  const d = new Date(iso);
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 19);
};

/**
 * The record as it stood at an instant, beside its current state, differences marked: on record time
 * (what the CRM knew then) or business time (what had happened by then: imported history as it happened).
 */
const AsOf = (props: { kind: string; id: string; asOf: string; setAsOf: (iso: string) => void; time: TimeAxis; setTime: (time: TimeAxis) => void }) => {
  const { kind, id, asOf, time } = props;
  const then = useLoad(
    (signal) =>
      asOf ? get<StateAt>(`/audit/state/${kind}/${id}${query({ asOf, ...(time === 'business' ? { time } : {}) })}`, { signal }) : Promise.resolve(undefined),
    [kind, id, asOf, time],
  );
  const now = useLoad((signal) => get<StateAt>(`/audit/state/${kind}/${id}${query({ asOf: new Date().toISOString() })}`, { signal }), [kind, id]);
  const fields = [...new Set([...Object.keys(then.data?.record ?? {}), ...Object.keys(now.data?.record ?? {})])];
  return (
    <section aria-labelledby="asof-title">
      <h2 id="asof-title">The {kind} as it stood then</h2>
      <div class="filters">
        <div class="field">
          <label for="asof-time">Time axis</label>
          <select id="asof-time" value={time} onChange={(e) => props.setTime(e.currentTarget.value as TimeAxis)}>
            <option value="record">record time: what the CRM knew then</option>
            <option value="business">business time: what had happened by then</option>
          </select>
        </div>
        <div class="field">
          <label for="asof-input">As of (your local time, {localZone()})</label>
          <input
            id="asof-input"
            type="datetime-local"
            step="0.001"
            value={toLocalInput(asOf)}
            onChange={(e) => e.currentTarget.value && props.setAsOf(new Date(e.currentTarget.value).toISOString())}
          />
        </div>
      </div>
      {!asOf ? <p class="muted">Pick an instant, or press "View" on an event above.</p> : null}
      <ProblemBox problem={then.problem ?? now.problem} />
      {then.data && now.data ? (
        <Grid data-testid="as-of">
          <caption>
            As of {when(then.data.asOf)} ({then.data.time} time): revision {then.data.revision} (current: revision {now.data.revision}). Changed fields are
            marked.
          </caption>
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Then (revision {then.data.revision})</th>
              <th scope="col">Now (revision {now.data.revision})</th>
            </tr>
          </thead>
          <tbody>
            {fields.map((f) => {
              const a = show(then.data!.record[f]);
              const b = show(now.data!.record[f]);
              return (
                <tr key={f} class={a !== b ? 'changed' : undefined}>
                  <th scope="row">
                    {f}
                    {a !== b ? <span class="badge warn">changed</span> : null}
                  </th>
                  <td>{a}</td>
                  <td>{b}</td>
                </tr>
              );
            })}
          </tbody>
        </Grid>
      ) : null}
    </section>
  );
};

const Verify = () => {
  const [job, setJob] = useState<Verification | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const start = async (kind: 'read_models' | 'chains') => {
    setProblem(null);
    try {
      const started = (await (await request('/audit/verify', { method: 'POST', body: { kind } })).json()) as Verification;
      setJob(started);
      // Poll until done, with a bound: a verification of a large store may take minutes.
      for (let i = 0; i < 600; i++) {
        await new Promise((r) => setTimeout(r, Math.min(2_000, 250 * (i + 1))));
        const status = await get<Verification>(`/audit/verify/${started.id}`);
        setJob(status);
        if (status.done) return;
      }
    } catch (error) {
      setProblem(problemOf(error));
    }
  };
  return (
    <section aria-labelledby="verify-title">
      <h2 id="verify-title">Verification</h2>
      <p class="muted">Replays every event into a shadow schema and compares the read models, or recomputes the hash chains.</p>
      <div class="buttons">
        <button type="button" onClick={() => void start('read_models')}>
          Verify read models against a replay
        </button>
        <button type="button" onClick={() => void start('chains')}>
          Verify hash chains
        </button>
      </div>
      <ProblemBox problem={problem} />
      {job ? (
        <div role="status" data-testid="verification">
          <p>
            {job.kind}: <strong class={job.ok === false ? 'overdue' : undefined}>{job.status}</strong>
            {job.progress ? ` (${job.progress.phase} ${job.progress.done}${job.progress.total ? `/${job.progress.total}` : ''})` : ''}
            {job.error ? ` — ${job.error}` : ''}
          </p>
          {job.result?.tables ? (
            <Grid>
              <Head columns={['Table', 'Equal', ['Live rows', 'num'], ['Replayed rows', 'num'], ['Differences', 'num']]} />
              <tbody>
                {job.result.tables.map((t) => (
                  <tr key={t.table}>
                    <td>{t.table}</td>
                    <td>{t.equal ? 'yes' : 'NO'}</td>
                    <td class="num">{t.liveRows}</td>
                    <td class="num">{t.replayedRows}</td>
                    <td class="num">{t.differences}</td>
                  </tr>
                ))}
              </tbody>
            </Grid>
          ) : job.result ? (
            <pre>{JSON.stringify(job.result, null, 2)}</pre>
          ) : null}
        </div>
      ) : null}
    </section>
  );
};

const GlobalLog = ({ mayExport }: { mayExport: boolean }) => {
  const [draft, setDraft] = useState({ actor: '', type: '', stream: '', from: '', to: '' });
  const [filters, setFilters] = useState(draft);
  const [cursor, setCursor] = useState<string | undefined>();
  const [problem, setProblem] = useState<Problem | null>(null);
  const params = {
    ...filters,
    from: filters.from ? new Date(filters.from).toISOString() : '',
    to: filters.to ? new Date(filters.to).toISOString() : '',
  };
  const log = useLoad(
    (signal) => get<History>(`/audit/events${query({ ...params, direction: 'backwards', limit: 50, cursor })}`, { signal }),
    [JSON.stringify(filters), cursor],
  );
  const download = async (format: 'csv' | 'ndjson') => {
    setProblem(null);
    try {
      const blob = await (await request(`/audit/events/export${query({ ...params, format })}`)).blob();
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob);
      link.download = `audit-events.${format}`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    } catch (error) {
      setProblem(problemOf(error));
    }
  };
  const input = (name: keyof typeof draft, label: string, type = 'text') => (
    <div class="field">
      <label for={`log-${name}`}>{type === 'datetime-local' ? `${label} (your local time, ${localZone()})` : label}</label>
      <input id={`log-${name}`} type={type as 'text'} value={draft[name]} onInput={(e) => setDraft({ ...draft, [name]: e.currentTarget.value })} />
    </div>
  );
  return (
    <section aria-labelledby="log-title">
      <h2 id="log-title">Global log</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setCursor(undefined);
          setFilters(draft);
        }}
      >
        {input('actor', 'Actor')}
        {input('type', 'Event type')}
        {input('stream', 'Stream')}
        {input('from', 'From', 'datetime-local')}
        {input('to', 'To', 'datetime-local')}
        <button type="submit" class="primary">
          Filter
        </button>
        {mayExport ? (
          <>
            <button type="button" onClick={() => void download('csv')}>
              Export CSV
            </button>
            <button type="button" onClick={() => void download('ndjson')}>
              Export NDJSON
            </button>
          </>
        ) : null}
      </form>
      <ProblemBox problem={problem ?? log.problem} />
      <Grid data-testid="log">
        <Head columns={['Recorded', 'Stream', 'Event', 'Who', 'Why']} />
        <tbody>
          {log.data?.items.map((e) => (
            <tr key={e.id}>
              <td>{when(e.recordedAt)}</td>
              <td>
                <a href={`#/audit?stream=${encodeURIComponent(e.stream)}`}>{e.stream}</a> #{e.revision}
              </td>
              <td>{e.type}</td>
              <td>{e.actor}</td>
              <td>{e.reason ?? '—'}</td>
            </tr>
          ))}
        </tbody>
      </Grid>
      <div class="buttons">
        <button type="button" disabled={!cursor} onClick={() => setCursor(undefined)}>
          Newest
        </button>
        <button type="button" disabled={!log.data?.nextCursor} onClick={() => setCursor(log.data?.nextCursor ?? undefined)}>
          Older →
        </button>
      </div>
    </section>
  );
};
