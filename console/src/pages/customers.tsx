import { useEffect, useState } from 'preact/hooks';
import { command, get, query, type Page } from '../api.ts';
import { href, navigate } from '../router.ts';
import type { ListedCustomer } from '../types.ts';
import { can, CommandForm, day, Loading, money, Pager, ProblemBox, seesNames, text, useAnnounceResults, useLoad, Head, Grid } from '../ui.tsx';
import type { Role } from '../../../api/roles.ts';

const SORTS = [
  ['-createdAt', 'Newest first'],
  ['name', 'Name A–Z'],
  ['-revenue', 'Revenue, highest first'],
  ['-lastPurchaseAt', 'Last purchase, latest first'],
  ['-orderCount', 'Orders, most first'],
] as const;

const DEFAULT_SORT = '-createdAt';

interface Filters {
  search: string;
  tag: string;
  status: string;
  sort: string;
}

/**
 * The list's filters and pages live in the hash (`#/customers?search=…&cursor=…`): Back restores them
 * and a changed hash applies. A role that sees names masked gets no name search nor sort by name, even
 * from a link: the screen says they are not offered, and the API refuses them.
 */
const filtersOf = (params: URLSearchParams, names: boolean): Filters => {
  const sort = params.get('sort') ?? DEFAULT_SORT;
  return {
    search: names ? (params.get('search') ?? '') : '',
    tag: params.get('tag') ?? '',
    status: params.get('status') ?? '',
    sort: SORTS.some(([value]) => value === sort) && (names || sort.replace(/^-/, '') !== 'name') ? sort : DEFAULT_SORT,
  };
};

export const CustomersPage = ({ role, params }: { role: Role; params: URLSearchParams }) => {
  const names = seesNames(role);
  const applied = filtersOf(params, names);
  const cursors = params.getAll('cursor');
  const [search, setSearch] = useState(applied.search);
  const [tag, setTag] = useState(applied.tag);
  const [status, setStatus] = useState(applied.status);
  const [sort, setSort] = useState(applied.sort);
  const [creating, setCreating] = useState(false);
  const shown = JSON.stringify(applied);
  // The form shows what the list applies, also after Back or a link followed while the list is open.
  useEffect(() => {
    setSearch(applied.search);
    setTag(applied.tag);
    setStatus(applied.status);
    setSort(applied.sort);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shown]);
  const cursor = cursors[cursors.length - 1];
  const list = useLoad((signal) => get<Page<ListedCustomer>>(`/customers${query({ ...applied, limit: 25, cursor })}`, { signal }), [shown, cursor]);
  // A search, a filter or another page says what it found (it was silent).
  useAnnounceResults(list.data, () => {
    const count = list.data?.items.length ?? 0;
    if (count === 0) return 'No customer matches.';
    return `${count} customer${count === 1 ? '' : 's'} shown, page ${cursors.length + 1}${list.data?.nextCursor ? ' (more on the next page)' : ''}.`;
  });
  const go = (filters: Filters, pages: string[]) =>
    navigate('customers', { ...filters, sort: filters.sort === DEFAULT_SORT ? undefined : filters.sort, cursor: pages });
  const apply = (event: Event) => {
    event.preventDefault();
    go({ search: names ? search.trim() : '', tag: tag.trim(), status, sort }, []);
  };
  return (
    <section aria-labelledby="customers-title">
      <h1 id="customers-title">Customers</h1>
      <form class="filters" role="search" onSubmit={apply}>
        {names ? (
          <div class="field">
            <label for="customer-search">Name or email</label>
            <input id="customer-search" type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
          </div>
        ) : (
          <p class="muted">Search by name or email is not offered to the {role} role: names and emails are masked.</p>
        )}
        <div class="field">
          <label for="customer-tag">Tag</label>
          <input id="customer-tag" value={tag} onInput={(e) => setTag(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="customer-status">Status</label>
          <select id="customer-status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">any</option>
            {['active', 'inactive', 'merged', 'forgotten'].map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="customer-sort">Sort</label>
          <select id="customer-sort" value={sort} onChange={(e) => setSort(e.currentTarget.value)}>
            {/* Sorting by masked names would give their order away: the API refuses it to such roles. */}
            {SORTS.filter(([value]) => names || value.replace(/^-/, '') !== 'name').map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </div>
        <button type="submit" class="primary">
          Search
        </button>
        {can(role, 'POST /customers') ? (
          <button type="button" onClick={() => setCreating(!creating)} aria-expanded={creating}>
            New customer
          </button>
        ) : null}
      </form>
      {creating ? (
        <CommandForm
          title="Register a customer"
          submitLabel="Register"
          success="Customer registered."
          level={2}
          onCancel={() => setCreating(false)}
          fields={[
            { name: 'name', label: 'Name', required: true },
            { name: 'email', label: 'Email', type: 'email', required: true },
            { name: 'phone', label: 'Phone' },
            { name: 'company', label: 'Company' },
            { name: 'tags', label: 'Tags (comma separated)' },
            { name: 'marketingConsent', label: 'Marketing consent', type: 'checkbox' },
          ]}
          submit={async (v) => {
            const tags = text(v.tags)
              ?.split(',')
              .map((t) => t.trim())
              .filter(Boolean);
            const accepted = await command('/customers', {
              name: text(v.name),
              email: text(v.email),
              ...(text(v.phone) ? { phone: text(v.phone) } : {}),
              ...(text(v.company) ? { company: text(v.company) } : {}),
              ...(tags?.length ? { tags } : {}),
              marketingConsent: v.marketingConsent === true,
            });
            navigate(`customers/${accepted.id}`, { waitFor: accepted.position });
          }}
        />
      ) : null}
      <ProblemBox problem={list.problem} />
      {list.loading ? <Loading what="customers" /> : null}
      {list.data ? (
        <>
          <Grid>
            <caption class="sr-only">Customers</caption>
            <Head columns={['Name', 'Email', 'Company', 'Tags', 'Status', ['Orders', 'num'], ['Revenue', 'num'], 'Last purchase']} />
            <tbody>
              {list.data.items.map((c) => (
                <tr key={c.id}>
                  <td>
                    <a href={href(`customers/${c.id}`)}>{c.name}</a>
                  </td>
                  <td>{c.email}</td>
                  <td>{c.company ?? ''}</td>
                  <td>{c.tags.join(', ')}</td>
                  <td class="word">{c.status}</td>
                  <td class="num">{c.orderCount}</td>
                  <td class="num">{money(c.revenue, c.currency)}</td>
                  <td>{day(c.lastPurchaseAt)}</td>
                </tr>
              ))}
            </tbody>
          </Grid>
          {list.data.items.length === 0 ? <p>No customer matches.</p> : null}
          <Pager
            page={cursors.length + 1}
            nextCursor={list.data.nextCursor}
            next={(next) => go(applied, [...cursors, next])}
            previous={() => go(applied, cursors.slice(0, -1))}
          />
        </>
      ) : null}
    </section>
  );
};
