import { get } from './api.ts';
import type { Role } from '../../api/roles.ts';

export interface Session {
  key: string;
  role: Role;
  /**
   * Whether the key sees the whole company (visibility `all`, or a service key): an admin of visibility
   * `own` or `team` may not change users or keys, nor run company-wide audits, so is not offered them.
   */
  companyWide: boolean;
}

const STORAGE = 'crm.console.session';

/** The session lives in sessionStorage: it ends with the tab, and never reaches a cookie. */
export const loadSession = (): Session | null => {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE) ?? 'null') as Session | null;
    return stored && typeof stored.key === 'string' && typeof stored.role === 'string' ? { ...stored, companyWide: stored.companyWide !== false } : null;
  } catch {
    return null;
  }
};

export const saveSession = (session: Session | null): void => {
  if (session) sessionStorage.setItem(STORAGE, JSON.stringify(session));
  else sessionStorage.removeItem(STORAGE);
};

/** Who the key is to the API (`GET /me`): its role now and whether it sees the whole company. An unknown or revoked key is a 401. */
export const signIn = async (key: string): Promise<Session> => {
  const me = await get<{ role: Role; visibility: 'all' | 'team' | 'own' }>('/me', { key });
  return { key, role: me.role, companyWide: me.visibility === 'all' };
};
