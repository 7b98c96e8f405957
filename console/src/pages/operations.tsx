import { useState } from 'preact/hooks';
import { get, request } from '../api.ts';
import { announce, can, CommandForm, Loading, ProblemBox, problemOf, text, useLoad, when, Head, Grid } from '../ui.tsx';
import { ROLES, type Role } from '../../../api/roles.ts';
import type { Problem } from '../api.ts';

interface Ready {
  status: string;
  head: string;
  /** Why the server is not ready (empty when ready). */
  reasons: string[];
  /** What an operator must act on that keeps it ready: a projection stopped on a poison event (or stopped). */
  warnings: string[];
  projections: {
    name: string;
    position: string;
    eventsBehind: number | null;
    secondsBehind: number | null;
    state: string;
    /** Only in the detailed report (GET /audit/projections): /ready leaves them out. */
    lastError?: string | null;
    owner?: string | null;
    leaseExpiresAt: string | null;
  }[];
}
interface ApiKey {
  id: string;
  name: string;
  role: string;
  createdAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
  /** Who created and who revoked it, as the audit trail names actors; null for keys older than the trail. */
  createdBy: string | null;
  revokedBy: string | null;
}

/**
 * `/ready` answers 503 with the same body when not ready: both are a report to show. Through the
 * shared request, so a server that cannot be reached says so as on every other screen. It names no
 * lease owner and no error (it has no key): roles that may read GET /audit/projections get that report.
 */
const readiness = async (signal: AbortSignal, detailed: boolean): Promise<Ready> =>
  detailed ? get<Ready>('/audit/projections', { signal }) : ((await (await request('/ready', { signal, answers: [503] })).json()) as Ready);

export const OperationsPage = ({ role, companyWide }: { role: Role; companyWide: boolean }) => {
  const [tick, setTick] = useState(0);
  // The detailed report is company-wide: visibility all or the auditor role (api/auth/scope-guard.ts).
  const detailed = can(role, 'GET /audit/projections') && (companyWide || role === 'auditor');
  // An auditor lists keys and their trail; creating and revoking stay with the admins.
  const mayManageKeys = can(role, 'POST /admin/api-keys');
  const ready = useLoad((signal) => readiness(signal, detailed), [tick, detailed]);
  return (
    <section aria-labelledby="ops-title">
      <h1 id="ops-title">Operations</h1>
      <section aria-labelledby="projections-title">
        <h2 id="projections-title">
          Projections{' '}
          <button type="button" onClick={() => setTick(tick + 1)}>
            Refresh
          </button>
        </h2>
        <ProblemBox problem={ready.problem} />
        {ready.data ? (
          <>
            {/* One live region: the warnings are read out with the status they qualify. */}
            <div role="status">
              <p>
                Status: <strong>{ready.data.status}</strong> · store head {ready.data.head}
                {ready.data.reasons.length ? ` · ${ready.data.reasons.join('; ')}` : ''}
              </p>
              {/* Apart from the reasons: a projection stopped on a poison event keeps the server ready, yet needs a retry or skip. */}
              {ready.data.warnings.length ? (
                <div class="warning" data-testid="ready-warnings">
                  <p>
                    <strong>{ready.data.status === 'ready' ? 'Ready, with warnings' : 'Warnings, beside the reasons above'}:</strong>
                  </p>
                  <ul>
                    {ready.data.warnings.map((w) => (
                      <li key={w}>{w}</li>
                    ))}
                  </ul>
                </div>
              ) : null}
            </div>
            <Grid aria-labelledby="projections-title" data-testid="projections">
              <Head
                columns={[
                  'Projection',
                  'State',
                  ['Position', 'num'],
                  ['Events behind', 'num'],
                  ['Seconds behind', 'num'],
                  ...(detailed ? ['Lease owner'] : []),
                  'Lease expires',
                  ...(detailed ? ['Last failure'] : []),
                ]}
              />
              <tbody>
                {ready.data.projections.map((p) => (
                  <tr key={p.name}>
                    <td>{p.name}</td>
                    <td class={p.state === 'failed' ? 'word overdue' : 'word'}>{p.state}</td>
                    <td class="num">{p.position}</td>
                    <td class="num">{p.eventsBehind ?? '—'}</td>
                    <td class="num">{p.secondsBehind === null ? '—' : p.secondsBehind.toFixed(1)}</td>
                    {detailed ? <td>{p.owner ?? '—'}</td> : null}
                    <td>{when(p.leaseExpiresAt)}</td>
                    {detailed ? <td>{p.lastError ?? '—'}</td> : null}
                  </tr>
                ))}
              </tbody>
            </Grid>
          </>
        ) : ready.loading ? (
          <Loading what="projections" />
        ) : null}
      </section>
      {can(role, 'GET /admin/api-keys') ? <ApiKeys manage={companyWide && mayManageKeys} reason={mayManageKeys ? 'visibility' : 'role'} /> : null}
    </section>
  );
};

/** The keys; creating and revoking them only for a key that sees the whole company (a restricted admin would widen its own scope). */
const ApiKeys = ({ manage, reason }: { manage: boolean; reason: 'visibility' | 'role' }) => {
  const [tick, setTick] = useState(0);
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const keys = useLoad((signal) => get<{ items: ApiKey[] }>('/admin/api-keys', { signal }), [tick]);
  const revoke = async (key: ApiKey) => {
    if (!confirm(`Revoke the key "${key.name}" (${key.role})? Programs using it stop working at once.`)) return;
    setProblem(null);
    try {
      await request(`/admin/api-keys/${key.id}`, { method: 'DELETE' });
      announce(`Revoked the key "${key.name}".`);
      setTick(tick + 1);
    } catch (error) {
      setProblem(problemOf(error));
    }
  };
  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      {manage ? null : (
        <p class="muted">
          {reason === 'role'
            ? 'Keys are listed with who created and revoked them; creating and revoking them is for admins.'
            : 'Creating and revoking keys needs a key that sees the whole company (visibility all).'}
        </p>
      )}
      {manage ? (
        <CommandForm
          title="Create a key"
          submitLabel="Create key"
          fields={[
            { name: 'name', label: 'Name (who or what uses it)', required: true },
            { name: 'role', label: 'Role', type: 'select', options: ROLES, value: 'analyst', required: true },
          ]}
          submit={async (v) => {
            const body = (await (await request('/admin/api-keys', { method: 'POST', body: { name: text(v.name), role: v.role } })).json()) as {
              name: string;
              key: string;
            };
            setCreated(body);
            setTick(tick + 1);
          }}
        />
      ) : null}
      {created ? (
        <p class="notice" role="status">
          Key for {created.name}, shown only now: <code data-testid="new-key">{created.key}</code>
        </p>
      ) : null}
      <ProblemBox problem={problem ?? keys.problem} />
      <Grid aria-labelledby="keys-title" data-testid="keys">
        <Head columns={['Name', 'Role', 'Created', 'Created by', 'Last used', 'Revoked', 'Revoked by', ['Action', 'hidden']]} />
        <tbody>
          {keys.data?.items.map((k) => (
            <tr key={k.id}>
              <td>{k.name}</td>
              <td class="word">{k.role}</td>
              <td>{when(k.createdAt)}</td>
              <td>{k.createdBy ?? '—'}</td>
              <td>{when(k.lastUsedAt)}</td>
              <td>{when(k.revokedAt)}</td>
              <td>{k.revokedBy ?? '—'}</td>
              <td>
                {k.revokedAt || !manage ? null : (
                  <button type="button" onClick={() => void revoke(k)} aria-label={`Revoke ${k.name}`}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </Grid>
    </section>
  );
};
