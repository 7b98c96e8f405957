import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, useKey, whenForbidden, whenUnauthenticated } from './api.ts';
import { AnalyticsPage } from './pages/analytics.tsx';
import { AuditPage } from './pages/audit.tsx';
import { CampaignPage, CampaignsPage } from './pages/campaigns.tsx';
import { CustomerPage } from './pages/customer.tsx';
import { CustomersPage } from './pages/customers.tsx';
import { OperationsPage } from './pages/operations.tsx';
import { PipelinePage } from './pages/pipeline.tsx';
import { ServicePage } from './pages/service.tsx';
import { SignIn } from './pages/sign-in.tsx';
import { href, useRoute } from './router.ts';
import { loadSession, saveSession, signIn, type Session } from './session.ts';
import { Announcer, can, ErrorBoundary, focusScreenHeading, seesNames, titleOf, useFocusKeeper } from './ui.tsx';
import { ROLES, type Role } from '../../api/roles.ts';
import './style.css';

interface Screen {
  path: string;
  label: string;
  /** The API route the screen reads first: shown only to roles allowed to call it. */
  reads: string;
}
const SCREENS: Screen[] = [
  { path: 'customers', label: 'Customers', reads: 'GET /customers' },
  { path: 'pipeline', label: 'Pipeline', reads: 'GET /deals' },
  { path: 'campaigns', label: 'Campaigns', reads: 'GET /campaigns' },
  { path: 'service', label: 'Service desk', reads: 'GET /feedback' },
  { path: 'analytics', label: 'Analytics', reads: 'GET /analytics/models/latest' },
  { path: 'audit', label: 'Audit', reads: 'GET /audit/events' },
  { path: 'operations', label: 'Operations', reads: 'GET /ready' },
];

const App = () => {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [notice, setNotice] = useState<string | null>(null);
  const route = useRoute();
  useKey(session?.key ?? '');
  const signedOut = (detail: string | undefined) => {
    saveSession(null);
    setSession(null);
    setNotice(detail ?? 'The API key is no longer accepted.');
  };
  // A user's key takes the user's role as it is now, which an admin may change after sign-in: the
  // role is read again on every load of the page and after a refusal, so the screens follow it.
  const roleNow = (role: Role, companyWide?: boolean) =>
    setSession((s) => {
      if (!s || (s.role === role && (companyWide === undefined || s.companyWide === companyWide))) return s;
      const updated = { ...s, role, ...(companyWide === undefined ? {} : { companyWide }) };
      saveSession(updated);
      return updated;
    });
  const reread = (key: string) =>
    signIn(key).then(
      (s) => roleNow(s.role, s.companyWide),
      (error: unknown) => {
        if (error instanceof ApiError && error.problem.status === 401) signedOut(error.problem.detail);
      },
    );
  useEffect(() => {
    whenUnauthenticated((problem) => signedOut(problem.detail));
    whenForbidden((problem) => {
      const role = problem.role as Role;
      if (ROLES.includes(role)) roleNow(role);
      else void reread(loadSession()?.key ?? '');
    });
    const stored = loadSession();
    if (stored) void reread(stored.key);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  useFocusKeeper();
  const signedIn = session !== null;
  const path = route.path.join('/');
  // The screen's name; a record's page adds the record's once loaded (useTitle).
  useEffect(() => {
    const [first = ''] = route.path;
    // No path shows the role's first screen.
    const screen = first || route.malformed ? SCREENS.find((s) => s.path === first) : SCREENS.find((s) => session && can(session.role, s.reads));
    document.title = titleOf(!signedIn ? 'Sign in' : (screen?.label ?? 'No such screen'));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path, signedIn, session?.role]);
  // Another screen (signed in or out, a link followed) takes the focus to its h1; not the first one
  // loaded. The service desk stays the same screen when a ticket opens: the ticket takes the focus.
  const screenKey = route.path[0] === 'service' ? 'service' : path;
  const loaded = useRef(false);
  useEffect(() => {
    if (!loaded.current) {
      loaded.current = true;
      return;
    }
    return focusScreenHeading();
  }, [screenKey, signedIn]);

  if (!session) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(s) => {
          saveSession(s);
          useKey(s.key);
          setNotice(null);
          setSession(s);
          if (!location.hash || location.hash === '#/') location.hash = href('customers');
        }}
      />
    );
  }
  const role = session.role;
  const screens = SCREENS.filter((s) => can(role, s.reads));
  const [first = route.malformed ? '' : (screens[0]?.path ?? 'customers'), second] = route.path;
  const signOut = () => {
    saveSession(null);
    useKey('');
    setSession(null);
    location.hash = '';
  };
  let page;
  switch (first) {
    case 'customers':
      // Keyed by the record: another customer's page starts afresh, with no form left open holding the first one's values.
      page = second ? <CustomerPage key={second} id={second} role={role} /> : <CustomersPage role={role} params={route.params} />;
      break;
    case 'pipeline':
      page = <PipelinePage role={role} />;
      break;
    case 'campaigns':
      page = second ? <CampaignPage key={second} id={second} role={role} /> : <CampaignsPage role={role} />;
      break;
    case 'service':
      page = <ServicePage role={role} selected={second} />;
      break;
    case 'analytics':
      page = <AnalyticsPage role={role} />;
      break;
    case 'audit':
      page = <AuditPage role={role} companyWide={session.companyWide} params={route.params} />;
      break;
    case 'operations':
      page = <OperationsPage role={role} companyWide={session.companyWide} />;
      break;
    default:
      page = route.malformed ? (
        <p>No such screen: the link is malformed (a broken % escape). Choose a screen above.</p>
      ) : (
        <p>No such screen. Choose one above.</p>
      );
  }
  return (
    <>
      {/* Not href="#main": screens are hash routes, and that one read as a screen that does not exist. */}
      <a
        class="skip"
        href={location.hash || '#/'}
        onClick={(event) => {
          event.preventDefault();
          document.getElementById('main')?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <span class="brand">CRM console</span>
        <nav aria-label="Screens">
          <ul>
            {screens.map((s) => (
              <li key={s.path}>
                {/* Scrolled into view when focused: on a phone the list scrolls sideways and hid the link reached by Tab. */}
                <a
                  href={href(s.path)}
                  aria-current={s.path === first ? 'page' : undefined}
                  onFocus={(e) => e.currentTarget.scrollIntoView({ block: 'nearest', inline: 'nearest' })}
                >
                  {s.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          Role: <strong data-testid="role">{role}</strong>
          {seesNames(role) ? null : <span class="badge">personal data masked</span>}
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </span>
      </header>
      <main id="main" tabIndex={-1}>
        <ErrorBoundary screen={route.path.join('/')}>{page}</ErrorBoundary>
      </main>
      <Announcer />
    </>
  );
};

render(<App />, document.getElementById('app')!);
