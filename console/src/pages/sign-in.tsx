import { useState } from 'preact/hooks';
import type { Problem } from '../api.ts';
import { signIn, type Session } from '../session.ts';
import { ProblemBox, problemOf } from '../ui.tsx';

export const SignIn = ({ onSignedIn, notice }: { onSignedIn: (session: Session) => void; notice: string | null }) => {
  const [key, setKey] = useState('');
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      onSignedIn(await signIn(key.trim()));
    } catch (error) {
      setProblem(problemOf(error));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="sign-in">
      <h1>CRM console</h1>
      <form onSubmit={submit} aria-labelledby="sign-in-title">
        <h2 id="sign-in-title">Sign in</h2>
        <p class="muted">
          Use an API key (<code>crm_…</code>). It stays in this tab's session storage and is sent to this server only; the screens follow its role.
        </p>
        {notice ? (
          <p class="problem" role="alert">
            Signed out: {notice}
          </p>
        ) : null}
        <div class="field">
          <label for="api-key">API key</label>
          <input id="api-key" name="api-key" type="password" autocomplete="off" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        </div>
        <ProblemBox problem={problem} focus />
        <button type="submit" class="primary" disabled={busy || key.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
};
