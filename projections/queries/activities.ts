import { sql } from 'kysely';
import {
  ACTIVITY_OWNER_COLUMNS,
  activityInScope,
  byCustomerOwner,
  customerInScope,
  dealInScope,
  ownerColumnsListScope,
  scoped,
  type ReadScope,
} from './scope.ts';
import { ofCustomerAndMerged } from './customers.ts';
import { iso, listOf, type Page, type ReadModelSource, rowById, type SortSpec, uuidOf } from './page.ts';
import type { ActivityRow } from '../read-models/activity-fold.ts';

export type ActivityView = {
  id: string;
  customerId: string;
  dealId: string | null;
  kind: 'note' | 'call' | 'meeting' | 'task';
  subject: string;
  /** Personal data: '[erased]' once the customer is forgotten. */
  body: string | null;
  dueAt: string | null;
  assigneeId: string | null;
  /** Business time: when the note, call or meeting happened; when the task was set. */
  occurredAt: string;
  completedAt: string | null;
  /** A task not completed yet. */
  open: boolean;
  /** An open task past its due time, at query time. */
  overdue: boolean;
  loggedBy: string;
  revision: number;
  updatedAt: string;
};

export interface ActivityListQuery {
  kind?: string;
  /** Open tasks (true), or everything else (false). */
  open?: boolean;
  assigneeId?: string;
  /** occurredAt | dueAt, `-` for descending. Default: `dueAt` for open tasks (overdue first), else `-occurredAt`. */
  sort?: string;
  limit?: number;
  cursor?: string;
}

const OPEN = sql`(t.kind = 'task' AND t.completed_at IS NULL)`;
/** The only place the clock is read. */
const OVERDUE_COLUMN = [sql`(${OPEN} AND COALESCE(now() > t.due_at, false)) AS overdue_now`];

const sorts: Record<string, SortSpec> = {
  occurredAt: { expr: sql`t.occurred_at`, type: 'timestamptz' },
  // Ascending: overdue tasks (the earliest due times) first; tasks without a due time last.
  dueAt: { expr: sql`COALESCE(t.due_at, 'infinity'::timestamptz)`, type: 'timestamptz' },
};

/** The order a list answers in when the caller names none; part of what a cursor is valid for. */
export const activitySort = (query: ActivityListQuery): string => query.sort ?? (query.open === true ? 'dueAt' : '-occurredAt');

/** An `activities` row as the queries read it: the fold's row and whether it is overdue now. */
type ActivityQueryRow = ActivityRow & { overdue_now: boolean };

/** What an activity's own row says, named as the API names it: the view's fields but those of the clock and the metadata. */
export type ActivityFields = Omit<ActivityView, 'overdue' | 'loggedBy' | 'revision'>;

/** The one naming of an activity row's fields: the view reads it, and so does the auditor's record as of an instant. */
export const activityFieldsOf = (r: ActivityRow): ActivityFields => ({
  id: r.activity_id,
  customerId: r.customer_id,
  dealId: r.deal_id,
  kind: r.kind,
  subject: r.subject,
  body: r.body,
  dueAt: iso(r.due_at),
  assigneeId: r.assignee_id,
  occurredAt: iso(r.occurred_at)!,
  completedAt: iso(r.completed_at),
  open: r.kind === 'task' && r.completed_at === null,
  updatedAt: iso(r.last_event_at)!,
});

const toActivityView = (r: ActivityQueryRow): ActivityView => ({ ...activityFieldsOf(r), overdue: r.overdue_now, loggedBy: r.logged_by, revision: r.revision });

const list = (
  source: ReadModelSource,
  where: ReturnType<typeof sql>[],
  query: ActivityListQuery,
  scope: ReadScope | null | undefined,
): Promise<Page<ActivityView>> => {
  const filters = [...where];
  if (query.kind) filters.push(sql`t.kind = ${query.kind}`);
  if (query.open === true) filters.push(OPEN);
  if (query.open === false) filters.push(sql`NOT ${OPEN}`);
  if (query.assigneeId) filters.push(sql`t.assignee_id = ${uuidOf(query.assigneeId)}`);
  return byCustomerOwner(scope, (lookup) =>
    listOf(
      {
        source,
        table: 'activities',
        key: 'activity_id',
        extra: OVERDUE_COLUMN,
        where: filters,
        ...ownerColumnsListScope(scope, ACTIVITY_OWNER_COLUMNS, lookup, (s) => activityInScope(source, s, lookup)),
        sorts,
        defaultSort: '-occurredAt',
      },
      { ...query, sort: activitySort(query) },
      toActivityView,
    ),
  );
};

/** `GET /activities`: by assignee, open tasks, kind. */
export const listActivities = (source: ReadModelSource, query: ActivityListQuery = {}, scope?: ReadScope | null): Promise<Page<ActivityView>> =>
  list(source, [], query, scope);

/**
 * `GET /customers/:id/activities`; undefined when the customer is unknown or outside the scope. A
 * visible customer shows its activities in the scope: all of them (its owner sees what colleagues
 * logged on it), but on a merged duplicate those that follow the primary's owner only when that owner
 * is in the scope too, as `GET /activities/:id` answers. The scope is a plain condition here: the
 * customer's index range is already narrow.
 */
export async function customerActivities(
  source: ReadModelSource,
  customerId: string,
  query: ActivityListQuery = {},
  scope?: ReadScope | null,
): Promise<Page<ActivityView> | undefined> {
  if (!(await rowById(source, 'customers', 'customer_id', customerId, [], scoped(scope, customerInScope)))) return undefined;
  return byCustomerOwner(scope, (lookup) =>
    list(
      source,
      [ofCustomerAndMerged(source, uuidOf(customerId), sql`t.customer_id`), ...scoped(scope, (s) => activityInScope(source, s, lookup))],
      query,
      null,
    ),
  );
}

/** `GET /deals/:id/activities`; undefined when the deal is unknown or outside the scope. */
export async function dealActivities(
  source: ReadModelSource,
  dealId: string,
  query: ActivityListQuery = {},
  scope?: ReadScope | null,
): Promise<Page<ActivityView> | undefined> {
  if (
    !(await byCustomerOwner(scope, (lookup) =>
      rowById(
        source,
        'deals',
        'deal_id',
        dealId,
        [],
        scoped(scope, (s) => dealInScope(source, s, lookup)),
      ),
    ))
  )
    return undefined;
  return list(source, [sql`t.deal_id = ${uuidOf(dealId)}`], query, null);
}

/** `GET /activities/:id`; undefined when unknown or outside the scope. */
export async function getActivity(source: ReadModelSource, id: string, scope?: ReadScope | null): Promise<ActivityView | undefined> {
  const row = await byCustomerOwner(scope, (lookup) =>
    rowById<ActivityQueryRow>(
      source,
      'activities',
      'activity_id',
      id,
      OVERDUE_COLUMN,
      scoped(scope, (s) => activityInScope(source, s, lookup)),
    ),
  );
  return row ? toActivityView(row) : undefined;
}
