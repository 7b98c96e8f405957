import { Component, Fragment, type ComponentChildren, type TableHTMLAttributes } from 'preact';
import { useCallback, useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError, whenStale, type Problem } from './api.ts';
import { isAllowed, ruleFor, seesPersonalData, type Role } from '../../api/roles.ts';

/** The server's own role matrix decides which actions a screen offers: one table, no second copy. */
export const can = (role: Role, route: string): boolean => {
  const [method = 'GET', url = '/'] = route.split(' ');
  return isAllowed(ruleFor(method, url), role);
};
export const seesNames = seesPersonalData;

export const problemOf = (error: unknown): Problem =>
  error instanceof ApiError ? error.problem : { status: 0, title: 'Unexpected error', detail: String((error as Error)?.message ?? error) };

/**
 * An API refusal, as the API worded it: title, detail and the fields it names. With `focus`, it takes
 * the keyboard focus when it appears: the button that was pressed is disabled while the request runs,
 * which had dropped the focus to <body>, far from the message.
 */
export const ProblemBox = ({ problem, focus }: { problem: Problem | null | undefined; focus?: boolean }) => {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (focus && problem) box.current?.focus();
  }, [problem, focus]);
  if (!problem) return null;
  const extra = (['currentRevision', 'role', 'allowedRoles'] as const).filter((k) => problem[k] !== undefined);
  return (
    <div class="problem" role="alert" tabIndex={-1} ref={box}>
      <strong>{problem.title ?? 'Refused'}</strong>
      {problem.status ? <span class="muted"> (HTTP {problem.status})</span> : null}
      {problem.detail ? <p>{problem.detail}</p> : null}
      {problem.errors?.length ? (
        <ul>
          {problem.errors.map((e) => (
            <li key={e.field}>
              <code>{e.field}</code>: {e.message}
            </li>
          ))}
        </ul>
      ) : null}
      {extra.length ? <p class="muted">{extra.map((k) => `${k}: ${JSON.stringify(problem[k])}`).join(' · ')}</p> : null}
    </div>
  );
};

/**
 * What an unexpected render error shows instead of a blank page: the navigation stays above it, and
 * another screen chosen (`screen` changes) is tried afresh.
 */
export class ErrorBoundary extends Component<{ screen: string; children: ComponentChildren }, { failure: string | null }> {
  override state = { failure: null as string | null };
  static getDerivedStateFromError(error: unknown) {
    return { failure: String((error as Error)?.message ?? error) };
  }
  override componentDidUpdate(previous: { screen: string }) {
    if (previous.screen !== this.props.screen && this.state.failure !== null) this.setState({ failure: null });
  }
  override render() {
    if (this.state.failure === null) return this.props.children;
    return (
      <div class="problem" role="alert" data-testid="screen-failed">
        <strong>This screen could not be shown</strong>
        <p>{this.state.failure}</p>
        <p>Choose a screen above, or reload the page.</p>
      </div>
    );
  }
}

export interface Loaded<T> {
  data: T | undefined;
  problem: Problem | undefined;
  loading: boolean;
  reload: () => void;
}

/** Loads once per change of `deps`; a newer load wins over an older one still in flight. */
export const useLoad = <T,>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> => {
  const [state, setState] = useState<{ data?: T; problem?: Problem; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(controller.signal).then(
      (data) => !controller.signal.aborted && setState({ data, loading: false }),
      (error: unknown) => !controller.signal.aborted && setState({ problem: problemOf(error), loading: false }),
    );
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data: state.data, problem: state.problem, loading: state.loading, reload };
};

/** Reloads the screen's records when a command was refused as stale (see `whenStale`; one screen shows at a time). */
export const useReloadWhenStale = (...reloads: (() => void)[]): void => {
  useEffect(() => whenStale(() => reloads.forEach((reload) => reload())), reloads);
};

export const Loading = ({ what }: { what: string }) => (
  <p class="muted" role="status">
    Loading {what}…
  </p>
);

/** The app shell's polite live region: what a screen says there, a screen reader reads out. */
let say: ((message: string) => void) | null = null;
export const announce = (message: string): void => say?.(message);
export const Announcer = () => {
  const [message, setMessage] = useState('');
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Emptied first: the same words twice in a row (two tasks completed) are read twice.
    say = (next) => {
      setMessage('');
      clearTimeout(timer);
      timer = setTimeout(() => setMessage(next), 100);
    };
    return () => {
      say = null;
      clearTimeout(timer);
    };
  }, []);
  return (
    <p class="sr-only" role="status" data-testid="announcement">
      {message}
    </p>
  );
};

/** Says a list's new results (count, page) once loaded; not its first load, which the screen's heading introduces. */
export const useAnnounceResults = (data: unknown, message: () => string): void => {
  const first = useRef(true);
  useEffect(() => {
    if (data === undefined) return;
    if (first.current) first.current = false;
    else announce(message());
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [data]);
};

/** The document's title: the record (when there is one), the screen, the app. */
export const titleOf = (...parts: (string | undefined)[]): string => [...parts.filter(Boolean), 'CRM console'].join(' · ');
export const useTitle = (record: string | undefined, screen: string): void => {
  useEffect(() => {
    if (record !== undefined) document.title = titleOf(record, screen);
  }, [record, screen]);
};

/** A heading (or table) given the focus as a landing place: focusable by script only, not a tab stop. */
export const focusLanding = (element: HTMLElement): void => {
  if (!element.hasAttribute('tabindex')) element.tabIndex = -1;
  element.focus();
};

const typing = (): boolean => document.activeElement?.matches('input, textarea, select') ?? false;

/**
 * After a move to another screen its h1 takes the focus, once drawn (a record's page draws it when the
 * record is loaded): the focus stayed on a link of the screen left, or fell to <body>. Not when the user
 * is typing meanwhile. Returns a stop.
 */
export const focusScreenHeading = (): (() => void) => {
  const attempt = () => {
    if (typing()) return stop();
    const h1 = document.querySelector<HTMLElement>('main h1');
    if (h1) {
      focusLanding(h1);
      stop();
    }
  };
  const observer = new MutationObserver(attempt);
  const timer = setTimeout(() => stop(), 15_000);
  const stop = () => {
    observer.disconnect();
    clearTimeout(timer);
  };
  observer.observe(document.body, { childList: true, subtree: true });
  attempt();
  return stop;
};

/** The element given the focus when a record opens in a screen (a ticket in the service desk), unless the user is typing. */
export const focusOpened = (element: HTMLElement | null | undefined): void => {
  if (element && !typing()) focusLanding(element);
};

/** The headings of the sections around an element, nearest first: where its focus goes when it is gone. */
const landingsOf = (element: Element): HTMLElement[] => {
  const landings: HTMLElement[] = [];
  for (let at = element.parentElement?.closest('section[aria-labelledby], article[aria-labelledby]'); at;) {
    const heading = document.getElementById(at.getAttribute('aria-labelledby') ?? '');
    if (heading) landings.push(heading);
    at = at.parentElement?.closest('section[aria-labelledby], article[aria-labelledby]');
  }
  return landings;
};

/**
 * One rule for the focus when the control holding it goes (a completed task's button, a revoked key's,
 * a card whose deal was lost) or is disabled ("Next" on the last page): the heading of its nearest
 * section still on the page, else the screen's h1. It fell to <body>, the top of the page. A form at
 * work (aria-busy) or closed (data-returns-focus) is left alone: it puts the focus back itself.
 * Checked after the screen's own focus moves (effects run after the next frame), so that those win.
 */
export const useFocusKeeper = (): void => {
  useEffect(() => {
    let held: Element | null = null;
    let landings: HTMLElement[] = [];
    let pending = false;
    const onFocus = (event: FocusEvent) => {
      held = event.target as Element;
      landings = landingsOf(held);
    };
    const check = () => {
      pending = false;
      const active = document.activeElement;
      if (!held || (active && active !== document.body)) return;
      if ((held.isConnected && !(held as HTMLButtonElement).disabled) || held.closest('[aria-busy="true"], [data-returns-focus]')) return;
      const landing = [...landings, document.querySelector<HTMLElement>('main h1')].find((h) => h?.isConnected);
      if (landing) focusLanding(landing);
    };
    const observer = new MutationObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => setTimeout(check));
    });
    observer.observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ['disabled'] });
    document.addEventListener('focusin', onFocus);
    return () => {
      observer.disconnect();
      document.removeEventListener('focusin', onFocus);
    };
  }, []);
};

export interface FieldSpec {
  name: string;
  label: string;
  type?: 'text' | 'number' | 'date' | 'datetime-local' | 'select' | 'textarea' | 'checkbox' | 'email';
  options?: readonly string[];
  required?: boolean;
  value?: string | boolean;
  step?: string;
  hint?: string;
}
export type FormValues = Record<string, string | boolean>;

/**
 * A command as a form: labelled fields, one submit button, the API's refusal shown in place with
 * the fields it names. `submit` resolves when the command is accepted (and read back).
 */
export const CommandForm = (props: {
  title: string;
  fields: FieldSpec[];
  submitLabel: string;
  submit: (values: FormValues) => Promise<void>;
  onCancel?: () => void;
  children?: ComponentChildren;
  danger?: boolean;
  /** What the live region says when the command is accepted; by default the form's title and "done". */
  success?: string;
  /** Its heading's level: 2 where it sits right under the screen's h1. */
  level?: 2 | 3;
  /**
   * The revision of the record the fields were filled from. When the record reloads (after a 409), the
   * fields the user has not changed take its current values: submitted again, they would otherwise
   * write back what the refused screen showed over the change that made it stale.
   */
  revision?: number;
}) => {
  const id = useId();
  const blank = (f: FieldSpec) => f.value ?? (f.type === 'checkbox' ? false : '');
  const [values, setValues] = useState<FormValues>(() => Object.fromEntries(props.fields.map((f) => [f.name, blank(f)])));
  const [touched] = useState(() => new Set<string>());
  useEffect(() => {
    setValues((all) => ({ ...all, ...Object.fromEntries(props.fields.filter((f) => !touched.has(f.name)).map((f) => [f.name, blank(f)])) }));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.revision]);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const form = useRef<HTMLFormElement>(null);
  const messages = new Map<string, string[]>();
  for (const e of problem?.errors ?? []) messages.set(e.field, [...(messages.get(e.field) ?? []), e.message]);
  // A refusal takes the focus (the submit button, disabled meanwhile, had dropped it to <body>): the
  // first field it names, whose message is read with it, or else the message itself.
  useEffect(() => {
    if (!problem) return;
    const target = form.current?.querySelector<HTMLElement>('[aria-invalid="true"]') ?? form.current?.querySelector<HTMLElement>('.problem');
    target?.focus();
  }, [problem]);
  // A form opened on demand (it can be cancelled) takes the focus: its first field, else its submit
  // button. Keyboard users were left on the button that opened it, with the form drawn elsewhere.
  // Closed (cancelled or done), it gives the focus back to that button, which it had dropped to <body>.
  useEffect(() => {
    if (!props.onCancel) return;
    const opener = document.activeElement as HTMLElement | null;
    form.current?.querySelector<HTMLElement>('input, select, textarea, button[type="submit"]')?.focus();
    return () =>
      setTimeout(() => {
        const lost = !document.activeElement || document.activeElement === document.body;
        if (lost && opener && opener !== document.body && opener.isConnected) opener.focus();
      });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  const onSubmit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      await props.submit(values);
      announce(props.success ?? `${props.title}: done.`);
    } catch (error) {
      setProblem(problemOf(error));
    } finally {
      setBusy(false);
    }
  };
  // Ids by kind, then the field's name: a field named `title` had the heading's id.
  const Heading = props.level === 2 ? 'h2' : 'h3';
  return (
    <form
      class="command"
      onSubmit={onSubmit}
      aria-labelledby={`${id}-heading`}
      aria-busy={busy || undefined}
      data-returns-focus={props.onCancel ? true : undefined}
      ref={form}
      // Escape closes the form as its Cancel button does.
      onKeyDown={(e) => {
        if (e.key === 'Escape' && props.onCancel && !busy) {
          e.preventDefault();
          props.onCancel();
        }
      }}
    >
      <Heading id={`${id}-heading`}>{props.title}</Heading>
      {props.children}
      {props.fields.map((f) => {
        const fieldId = `${id}-field-${f.name}`;
        const hintId = `${id}-hint-${f.name}`;
        const errorId = `${id}-error-${f.name}`;
        const zoneId = `${id}-zone-${f.name}`;
        const value = values[f.name];
        const set = (v: string | boolean) => {
          touched.add(f.name);
          setValues((all) => ({ ...all, [f.name]: v }));
        };
        // Not `name`: a form reaches its controls by name as properties, so a field named `remove` hid
        // the form's own remove(), which Preact calls to take it off the page (the page froze).
        const refused = messages.get(f.name);
        const described = [f.hint && hintId, refused && errorId, f.type === 'datetime-local' && zoneId].filter(Boolean).join(' ');
        const common = {
          id: fieldId,
          'data-field': f.name,
          required: f.required,
          'aria-invalid': refused ? true : undefined,
          'aria-describedby': described || undefined,
        };
        return (
          <div class={`field${f.type === 'checkbox' ? ' check' : ''}`} key={f.name}>
            <label for={fieldId}>{f.label}</label>
            {f.type === 'select' ? (
              <select {...common} value={String(value)} onChange={(e) => set(e.currentTarget.value)}>
                {f.required ? null : <option value="">—</option>}
                {f.options?.map((o) => (
                  <option key={o} value={o}>
                    {o}
                  </option>
                ))}
              </select>
            ) : f.type === 'textarea' ? (
              <textarea {...common} value={String(value)} onInput={(e) => set(e.currentTarget.value)} rows={3} />
            ) : f.type === 'checkbox' ? (
              <input {...common} type="checkbox" checked={value === true} onChange={(e) => set(e.currentTarget.checked)} />
            ) : (
              <input {...common} type={(f.type ?? 'text') as 'text'} step={f.step} value={String(value)} onInput={(e) => set(e.currentTarget.value)} />
            )}
            {f.hint ? (
              <small class="muted" id={hintId}>
                {f.hint}
              </small>
            ) : null}
            {refused ? (
              <small class="field-error" id={errorId}>
                {refused.join(' ')}
              </small>
            ) : null}
            {f.type === 'datetime-local' ? (
              <small class="muted" id={zoneId}>
                Your local time ({localZone()}); shown in UTC elsewhere
              </small>
            ) : null}
          </div>
        );
      })}
      <ProblemBox problem={problem} />
      <div class="buttons">
        <button type="submit" class={props.danger ? 'danger' : 'primary'} disabled={busy}>
          {busy ? 'Working…' : props.submitLabel}
        </button>
        {props.onCancel ? (
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
        ) : null}
      </div>
    </form>
  );
};

export interface Action {
  label: string;
  form: (close: () => void) => ComponentChildren;
}
/** The actions a role and a state allow: the others are given as `false` and left out. */
export const allowed = (actions: (Action | false)[]): Action[] => actions.filter((a): a is Action => a !== false);

/** A button that opens a command form in place (one open at a time per owner). */
export const ActionPanel = (props: { actions: Action[] }) => {
  // The open action by its label, not its place: the list changes with the record's state.
  const [open, setOpen] = useState<string | null>(null);
  const toolbar = useRef<HTMLDivElement>(null);
  if (props.actions.length === 0) return null;
  // Closed (done or cancelled), the focus goes back to the button that opened the form, or the first
  // one when the record's new state no longer offers it: it fell to <body>, the top of the page.
  const close = () => {
    const label = open;
    setOpen(null);
    setTimeout(() => {
      const buttons = [...(toolbar.current?.querySelectorAll<HTMLButtonElement>('button') ?? [])];
      (buttons.find((b) => b.dataset.action === label) ?? buttons[0])?.focus();
    });
  };
  const opened = props.actions.find((a) => a.label === open);
  return (
    <div class="actions">
      {/* A group, not a toolbar: a toolbar promises arrow keys between its buttons, and these are tab stops. */}
      <div class="buttons" role="group" aria-label="Actions" ref={toolbar}>
        {props.actions.map((a) => (
          <button key={a.label} type="button" data-action={a.label} aria-expanded={open === a.label} onClick={() => setOpen(open === a.label ? null : a.label)}>
            {a.label}
          </button>
        ))}
      </div>
      {/* Keyed by the action: forms sit at the same place, so without a key the next one opened kept the
          last one's field values (Refund then Tag showed and sent "undefined" as the tag). */}
      {opened ? <Fragment key={opened.label}>{opened.form(close)}</Fragment> : null}
    </div>
  );
};

const moneyFormats = new Map<string, Intl.NumberFormat>();
export const money = (amount: number | null | undefined, currency: string | null | undefined): string => {
  if (amount === null || amount === undefined) return '—';
  const code = currency ?? 'EUR';
  let format = moneyFormats.get(code);
  if (!format) {
    format = new Intl.NumberFormat('en-GB', { style: 'currency', currency: code, maximumFractionDigits: 2 });
    moneyFormats.set(code, format);
  }
  return format.format(amount);
};
export const num = (value: number | null | undefined, digits = 2): string =>
  value === null || value === undefined || Number.isNaN(value) ? '—' : value.toLocaleString('en-GB', { maximumFractionDigits: digits });
export const pct = (value: number | null | undefined, digits = 1): string =>
  value === null || value === undefined ? '—' : `${(value * 100).toFixed(digits)}%`;
/** An instant as the console shows it: in UTC, and labelled so (times are typed in local time). */
export const when = (iso: string | null | undefined): string => (iso ? `${new Date(iso).toISOString().replace('T', ' ').slice(0, 16)} UTC` : '—');
/**
 * The browser's time zone, e.g. `Europe/Berlin`: what a `datetime-local` value is read in, at the
 * offset of the day typed (an offset of today, UTC+01:00 in winter, misread a July date).
 */
export const localZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone || "the browser's time zone";
export const day = (iso: string | null | undefined): string => (iso ? iso.slice(0, 10) : '—');

/** A `datetime-local` value (local wall time) as an ISO instant, or undefined when empty. */
export const isoFromLocal = (value: string | boolean | undefined): string | undefined =>
  typeof value === 'string' && value ? new Date(value).toISOString() : undefined;
export const text = (value: string | boolean | undefined): string | undefined => (typeof value === 'string' && value.trim() ? value.trim() : undefined);
/** A refusal the console makes before sending, shown as the API's are: on the field it names. */
export const fieldProblem = (field: string, message: string): ApiError =>
  new ApiError({ status: 0, title: 'Check the form', detail: `${field}: ${message}`, errors: [{ field, message }] });
/**
 * A number field's value, or undefined when blank. Refuses what is not a finite number: 1e400 is
 * Infinity, which JSON sends as null, and the API then answered about a missing number.
 */
/**
 * The step of a money field: whatever the API takes (it checks the decimals). A step of 0.01 made the
 * browser refuse a deal's stored 100.005 in the edit form, where nothing was changed.
 */
export const MONEY_STEP = 'any';

export const numberOf = (value: string | boolean | undefined, field: string): number | undefined => {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const number = Number(value);
  if (!Number.isFinite(number)) throw fieldProblem(field, 'enter a finite number');
  return number;
};

/** A list that pages with the API's cursors: the stack of cursors seen gives "previous". */
export const usePager = (reset: unknown[]) => {
  const [cursors, setCursors] = useState<string[]>([]);
  useEffect(() => setCursors([]), reset);
  return {
    cursor: cursors[cursors.length - 1],
    page: cursors.length + 1,
    next: (cursor: string) => setCursors((c) => [...c, cursor]),
    previous: () => setCursors((c) => c.slice(0, -1)),
  };
};

export const Pager = (props: { page: number; nextCursor: string | null | undefined; next: (c: string) => void; previous: () => void }) => (
  <nav class="pager" aria-label="Pages">
    <button type="button" disabled={props.page === 1} onClick={props.previous}>
      ← Previous
    </button>
    <span>Page {props.page}</span>
    <button type="button" disabled={!props.nextCursor} onClick={() => props.nextCursor && props.next(props.nextCursor)}>
      Next →
    </button>
  </nav>
);

export const Stat = ({ label, value }: { label: string; value: ComponentChildren }) => (
  <div class="stat">
    <dt>{label}</dt>
    <dd>{value}</dd>
  </div>
);

/**
 * A table's column headers; `[label, 'num']` right-aligns a numeric column, `[label, 'hidden']` names a
 * column of buttons for screen readers only (an empty header was read as nothing).
 */
export const Head = ({ columns }: { columns: (string | [string, 'num' | 'hidden'])[] }) => (
  <thead>
    <tr>
      {columns.map((c) =>
        typeof c === 'string' ? (
          <th scope="col" key={c}>
            {c}
          </th>
        ) : c[1] === 'hidden' ? (
          <th scope="col" key={c[0]}>
            <span class="sr-only">{c[0]}</span>
          </th>
        ) : (
          <th scope="col" class="num" key={c[0]}>
            {c[0]}
          </th>
        ),
      )}
    </tr>
  </thead>
);

/** A table that scrolls sideways in its own box when it is wider than the screen, at any width (the page scrolled). */
export const Grid = ({ children, ...rest }: TableHTMLAttributes<HTMLTableElement>) => (
  <div class="grid-box">
    <table class="grid" {...rest}>
      {children}
    </table>
  </div>
);
