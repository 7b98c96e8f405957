import { useEffect, useState } from 'preact/hooks';

/** Screens are hash routes (`#/customers/<id>`), so no console path can shadow an API route. */
export interface Route {
  path: string[];
  params: URLSearchParams;
}

export const parseHash = (hash: string): Route => {
  const [path = '', search = ''] = hash.replace(/^#\/?/, '').split('?');
  return { path: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(search) };
};

export const href = (path: string, params?: Record<string, string | undefined>): string => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params ?? {})) if (value) search.set(name, value);
  const text = search.toString();
  return `#/${path}${text ? `?${text}` : ''}`;
};

export const navigate = (path: string, params?: Record<string, string | undefined>): void => {
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
