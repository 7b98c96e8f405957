import { ApiError, get } from './api.ts';
import type { Role } from '../../api/roles.ts';

export interface Session {
  key: string;
  role: Role;
}

const STORAGE = 'crm.console.session';

/** The session lives in sessionStorage: it ends with the tab, and never reaches a cookie. */
export const loadSession = (): Session | null => {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE) ?? 'null') as Session | null;
    return stored && typeof stored.key === 'string' && typeof stored.role === 'string' ? stored : null;
  } catch {
    return null;
  }
};

export const saveSession = (session: Session | null): void => {
  if (session) sessionStorage.setItem(STORAGE, JSON.stringify(session));
  else sessionStorage.removeItem(STORAGE);
};

/**
 * Which role a key has, through the public API: an admin may list keys; any other role is refused
 * with a 403 problem that names the caller's role. An unknown or revoked key is a 401.
 */
export const signIn = async (key: string): Promise<Session> => {
  try {
    await get('/admin/api-keys', { key });
    return { key, role: 'admin' };
  } catch (error) {
    const problem = error instanceof ApiError ? error.problem : undefined;
    if (problem?.status === 403 && typeof problem.role === 'string') return { key, role: problem.role as Role };
    throw error;
  }
};
