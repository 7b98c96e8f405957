/**
 * The console's only way to the server: the public HTTP API, with the signed-in key as a bearer
 * token. Refusals arrive as problem+json and are thrown as `ApiError`, for screens to show as they are.
 */
export interface FieldError {
  field: string;
  message: string;
}
export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  errors?: FieldError[];
  [extra: string]: unknown;
}
export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
  }
}

/** What every command answers; `position` read back with `?waitFor=` gives read-your-writes. */
export interface Accepted {
  id: string;
  revision: number;
  position: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Called on 401: the key was revoked or is unknown, so the session ends. */
let onUnauthenticated: (problem: Problem) => void = () => {};
export const whenUnauthenticated = (handler: (problem: Problem) => void): void => {
  onUnauthenticated = handler;
};

/**
 * Told when a command sent with If-Match was refused because the record changed meanwhile: the screen
 * showing it reloads, so that what the user checks before submitting again is the record as it stands
 * (it kept the stale one until a reload, and every further try was refused the same way).
 */
const staleListeners = new Set<() => void>();
export const whenStale = (listener: () => void): (() => void) => {
  staleListeners.add(listener);
  return () => staleListeners.delete(listener);
};

/**
 * Called on a 403 that names the caller's role: an admin may have changed it since sign-in, so the
 * console shows the role the server applies now (and offers that role's actions), not the stored one.
 */
let onForbidden: (problem: Problem) => void = () => {};
export const whenForbidden = (handler: (problem: Problem) => void): void => {
  onForbidden = handler;
};

let currentKey = '';
export const useKey = (key: string): void => {
  currentKey = key;
};

export const query = (params: Record<string, string | number | boolean | undefined | null>): string => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
};

const asProblem = async (response: Response): Promise<Problem> => {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as Problem;
    return { ...body, status: body.status ?? response.status };
  } catch {
    return { status: response.status, title: response.statusText || 'Request failed', detail: text.slice(0, 300) };
  }
};

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  body?: unknown;
  /** The revision the screen shows, sent as If-Match so a stale screen is refused, never applied. */
  ifMatch?: number;
  key?: string;
  signal?: AbortSignal;
  /** Statuses besides 2xx whose body is an answer, not a refusal (`/ready` answers 503 with its report). */
  answers?: number[];
}

export const request = async (path: string, options: RequestOptions = {}): Promise<Response> => {
  const headers: Record<string, string> = { authorization: `Bearer ${options.key ?? currentKey}` };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.ifMatch !== undefined) headers['if-match'] = `"${options.ifMatch}"`;
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? 'GET',
      headers,
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    if ((error as Error).name === 'AbortError') throw error;
    throw new ApiError({ status: 0, title: 'The server cannot be reached', detail: (error as Error).message });
  }
  if (!response.ok && !options.answers?.includes(response.status)) {
    const problem = await asProblem(response);
    if (response.status === 401 && options.key === undefined) onUnauthenticated(problem);
    if (response.status === 403 && options.key === undefined) onForbidden(problem);
    if (response.status === 409 && options.ifMatch !== undefined) {
      problem.detail = `${problem.detail ?? 'The record changed meanwhile.'} The screen now shows it as it stands: check it and submit again.`;
      for (const listener of staleListeners) listener();
    }
    throw new ApiError(problem);
  }
  return response;
};

export const get = async <T>(path: string, options: Omit<RequestOptions, 'method' | 'body'> = {}): Promise<T> =>
  (await (await request(path, options)).json()) as T;

export const command = async (path: string, body: unknown = {}, options: { ifMatch?: number; method?: 'POST' | 'PATCH' } = {}): Promise<Accepted> =>
  (await (
    await request(path, { method: options.method ?? 'POST', body, ...(options.ifMatch !== undefined ? { ifMatch: options.ifMatch } : {}) })
  ).json()) as Accepted;

/**
 * The first `pages` pages of a cursor-paged list, one request after another, with the cursor after
 * them (null at its end): a screen that shows a list whole asks for more pages rather than cutting it.
 */
export const getPages = async <T>(path: (cursor: string | undefined) => string, pages: number, signal?: AbortSignal): Promise<Page<T>> => {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < pages; page++) {
    const next = await get<Page<T>>(path(cursor), signal ? { signal } : {});
    items.push(...next.items);
    if (!next.nextCursor) return { items, nextCursor: null };
    cursor = next.nextCursor;
  }
  return { items, nextCursor: cursor ?? null };
};
