import { useEffect, useState } from 'preact/hooks';

/** Screens are hash routes (`#/customers/<id>`), so no console path can shadow an API route. */
export interface Route {
  path: string[];
  params: URLSearchParams;
  /** The link had a broken `%` escape (`#/customers/%E0%A4%A`): no screen, rather than a blank page. */
  malformed?: boolean;
}

export const parseHash = (hash: string): Route => {
  const [path = '', search = ''] = hash.replace(/^#\/?/, '').split('?');
  const params = new URLSearchParams(search);
  try {
    return { path: path.split('/').filter(Boolean).map(decodeURIComponent), params };
  } catch {
    return { path: [], params, malformed: true };
  }
};

/** A parameter given as a list repeats (`cursor=a&cursor=b`): the customers list keeps its stack of pages so. */
export type HashParams = Record<string, string | string[] | undefined>;

export const href = (path: string, params?: HashParams): string => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params ?? {})) for (const one of [value ?? []].flat()) if (one) search.append(name, one);
  const text = search.toString();
  return `#/${path}${text ? `?${text}` : ''}`;
};

export const navigate = (path: string, params?: HashParams): void => {
  location.hash = href(path, params);
};

export const useRoute = (): Route => {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseHash(location.hash));
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return route;
};
