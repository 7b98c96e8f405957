import { useEffect, useRef, useState } from 'preact/hooks';
import type { Problem } from '../api.ts';
import { signIn, type Session } from '../session.ts';
import { ProblemBox, problemOf } from '../ui.tsx';

/**
 * `focusKey`: the page was just opened, so the key field takes the focus (the one thing to do here).
 * Not after a sign-out, where the screen's heading takes it as on any other change of screen.
 */
export const SignIn = ({ onSignedIn, notice, focusKey }: { onSignedIn: (session: Session) => void; notice: string | null; focusKey: boolean }) => {
  const [key, setKey] = useState('');
  const field = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (focusKey) field.current?.focus();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
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
          {/* Invalid, and described by the refusal, once a key was refused. */}
          <input
            id="api-key"
            name="api-key"
            type="password"
            autocomplete="off"
            required
            ref={field}
            aria-invalid={problem ? true : undefined}
            aria-describedby={problem ? 'sign-in-problem' : undefined}
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
          />
        </div>
        <div id="sign-in-problem">
          <ProblemBox problem={problem} focus />
        </div>
        <button type="submit" class="primary" disabled={busy || key.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
};
