import { sql, type QueryExecutorProvider } from 'kysely';
import { quoteLiteral } from '../shared/sql.ts';

/**
 * What others made on the reporting views: the grants on them (a BI tool's read-only role, on whole
 * views or on columns) and the views a company built on them (in its own schema or beside ours), each
 * with its options, owner, comments and grants. A view replaced in place keeps all of that; one
 * dropped and made anew (its columns changed, or the tables it reads swapped in by a rebuild) loses
 * it, and `DROP ... CASCADE` takes the views built on it along. Read before anything is dropped, made
 * again after. Materialized views built on them are not made again (that would run their query while
 * a swap holds the read models): they are named as not restored.
 */
export interface KeptOnReportingViews {
  /** Each view built on ours, with the statements that make it (options, owner, comments), views built on others after them. */
  views: { name: string; statements: string[] }[];
  /** The grants on ours and on those views, whole or by column. */
  grants: string[];
  /** The views (and materialized views) built on ours, schema-qualified, for telling which are gone afterwards. */
  dependentViews: string[];
}

/** Views and materialized views depending on a reporting view, however many lie between them, nearest first. */
const DEPENDENTS = (schema: string, ours: readonly string[]) => sql<{
  oid: number;
  name: string;
  kind: 'v' | 'm';
  definition: string;
  options: string | null;
  comment: string | null;
  owner: string;
}>`
  WITH RECURSIVE ours AS (
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${schema} AND c.relkind = 'v' AND c.relname = ANY(${[...ours]}::text[])
  ), dependents(oid, depth) AS (
    SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid IN (SELECT oid FROM ours) AND r.ev_class NOT IN (SELECT oid FROM ours)
    UNION
    SELECT r.ev_class, x.depth + 1 FROM dependents x
      JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = x.oid AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
     WHERE r.ev_class <> x.oid AND x.depth < 16
  )
  SELECT c.oid::int AS oid, format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind, pg_get_viewdef(c.oid) AS definition,
         array_to_string(c.reloptions, ', ') AS options, obj_description(c.oid, 'pg_class') AS comment, quote_ident(pg_get_userbyid(c.relowner)) AS owner
    FROM dependents x JOIN pg_class c ON c.oid = x.oid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('v', 'm')
   GROUP BY c.oid, n.nspname, c.relname
   ORDER BY max(x.depth), c.oid`;

/** The temporary view a start makes to compare a reporting view with what this version would make. */
const PROBE = 'pg_temp.crm_view_probe';

/** What PostgreSQL stored of a view: its query as deparsed, its options, its columns with their types. */
const storedViewSql = (oid: string) =>
  `(SELECT pg_get_viewdef(c.oid) || ' WITH ' || COALESCE(array_to_string(c.reloptions, ','), '') || ' COLUMNS ' ||
     (SELECT string_agg(format('%s %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation), ',' ORDER BY a.attnum)
        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
     FROM pg_class c WHERE c.oid = ${oid})`;

/**
 * A view made anew in place where PostgreSQL allows it (the same columns, new ones only at the end):
 * its grants and the views others built on it stay. Where it does not (a column renamed, dropped or
 * of another type), it is dropped with what depends on it and made anew, and `restoreOnReportingViews`
 * makes those again. `createOrReplace` is a `CREATE OR REPLACE VIEW <name> ...` statement.
 *
 * A view that already is what the statement would make is left alone: replacing a view takes an
 * ACCESS EXCLUSIVE lock, which waits for every BI query or open transaction reading it (and queues
 * the readers after it), and every start made them all again. The same statement makes a temporary
 * view, and the two are compared as PostgreSQL stored them (the deparsed query, so a `*` expanded
 * over a table that has since grown a column counts as a change; options; column names and types).
 */
export const replaceViewStatement = (name: string, createOrReplace: string): string => {
  const prefix = `CREATE OR REPLACE VIEW ${name}`;
  if (!createOrReplace.startsWith(prefix)) throw new Error(`Not a statement that makes ${name}: ${createOrReplace.slice(0, 80)}`);
  const probe = `CREATE TEMPORARY VIEW ${PROBE}${createOrReplace.slice(prefix.length)}`;
  const made = `to_regclass(${quoteLiteral(name)})`;
  return (
    `DO $crm_view$ BEGIN ` +
    `IF ${made} IS NOT NULL THEN DROP VIEW IF EXISTS ${PROBE}; EXECUTE ${quoteLiteral(probe)}; ` +
    `IF ${storedViewSql(made)} IS NOT DISTINCT FROM ${storedViewSql(`'${PROBE}'::regclass`)} THEN DROP VIEW ${PROBE}; RETURN; END IF; ` +
    `DROP VIEW ${PROBE}; END IF; ` +
    `BEGIN ${createOrReplace}; EXCEPTION WHEN invalid_table_definition THEN DROP VIEW IF EXISTS ${name} CASCADE; ${createOrReplace}; END; ` +
    `END $crm_view$`
  );
};

/** The names (unquoted, without schema) of the views these statements make. */
export const viewsMadeBy = (statements: readonly string[]): string[] => [
  ...new Set(
    statements.flatMap((statement) =>
      [...statement.matchAll(/CREATE OR REPLACE VIEW "(?:[^"]|"")*"\."((?:[^"]|"")*)"/g)].map((m) => m[1]!.replace(/""/g, '"')),
    ),
  ),
];

/** Reads what others made on our views (`ours`, by name) in the reporting schema `schema`. */
export async function keptOnReportingViews(db: QueryExecutorProvider, schema: string, ours: readonly string[]): Promise<KeptOnReportingViews> {
  const { rows: dependents } = await DEPENDENTS(schema, ours).execute(db);
  const views = dependents.filter((d) => d.kind === 'v');
  // The relations whose grants are kept: ours, and the views built on them.
  const granted = sql`((n.nspname = ${schema} AND c.relname = ANY(${[...ours]}::text[])) OR c.oid = ANY(${views.map((d) => d.oid)}::oid[]))`;
  const grantee = sql`CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END`;
  const { rows: grants } = await sql<{ statement: string }>`
    SELECT format('GRANT %s ON %I.%I TO %s%s', a.privilege_type, n.nspname, c.relname, ${grantee},
             CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS statement
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(c.relacl) a
     WHERE ${granted} AND a.grantee <> c.relowner
    UNION ALL
    SELECT format('GRANT %s (%I) ON %I.%I TO %s%s', a.privilege_type, t.attname, n.nspname, c.relname, ${grantee},
             CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute t ON t.attrelid = c.oid AND t.attnum > 0 AND NOT t.attisdropped AND t.attacl IS NOT NULL
     CROSS JOIN LATERAL aclexplode(t.attacl) a
     WHERE ${granted} AND a.grantee <> c.relowner
     ORDER BY 1`.execute(db);
  const { rows: columnComments } = await sql<{ oid: number; statement: string }>`
    SELECT c.oid::int AS oid, format('COMMENT ON COLUMN %I.%I.%I IS %L', n.nspname, c.relname, t.attname, col_description(c.oid, t.attnum)) AS statement
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute t ON t.attrelid = c.oid AND t.attnum > 0 AND NOT t.attisdropped
     WHERE c.oid = ANY(${views.map((d) => d.oid)}::oid[]) AND col_description(c.oid, t.attnum) IS NOT NULL
     ORDER BY t.attnum`.execute(db);
  return {
    views: views.map((d) => ({
      name: d.name,
      statements: [
        `CREATE OR REPLACE VIEW ${d.name}${d.options ? ` WITH (${d.options})` : ''} AS ${d.definition.replace(/;\s*$/, '')}`,
        `ALTER VIEW ${d.name} OWNER TO ${d.owner}`,
        ...(d.comment === null ? [] : [`COMMENT ON VIEW ${d.name} IS ${quoteLiteral(d.comment)}`]),
        ...columnComments.filter((c) => c.oid === d.oid).map((c) => c.statement),
      ],
    })),
    grants: grants.map((g) => g.statement),
    dependentViews: dependents.map((d) => d.name),
  };
}

const WARNING = "RAISE WARNING 'crm: could not make again on the reporting views: %: %'";

/**
 * Makes again what was kept: each view built on ours that is gone (with its owner and comments, all or
 * nothing), then every grant, each on its own. One that fails (a view reading a column that is gone)
 * leaves the others made and is named in the server's log. Answers the views built on ours that do
 * not exist afterwards.
 */
export async function restoreOnReportingViews(db: QueryExecutorProvider, kept: KeptOnReportingViews): Promise<string[]> {
  for (const view of kept.views) {
    const made = view.statements.map((statement) => `EXECUTE ${quoteLiteral(statement)};`).join(' ');
    await sql
      .raw(
        `DO $crm_kept$ BEGIN IF to_regclass(${quoteLiteral(view.name)}) IS NULL THEN ${made} END IF; EXCEPTION WHEN others THEN ${WARNING}, ${quoteLiteral(view.name)}, SQLERRM; END $crm_kept$`,
      )
      .execute(db);
  }
  if (kept.grants.length > 0) {
    // One round trip: a grant that fails (its role dropped meanwhile) is named, the others are given.
    await sql
      .raw(
        `DO $crm_kept$ DECLARE s text; BEGIN FOREACH s IN ARRAY ARRAY[${kept.grants.map(quoteLiteral).join(', ')}]::text[] LOOP ` +
          `BEGIN EXECUTE s; EXCEPTION WHEN others THEN ${WARNING}, s, SQLERRM; END; END LOOP; END $crm_kept$`,
      )
      .execute(db);
  }
  if (kept.dependentViews.length === 0) return [];
  const { rows } = await sql<{ name: string }>`SELECT name FROM unnest(${kept.dependentViews}::text[]) AS v(name) WHERE to_regclass(name) IS NULL`.execute(db);
  return rows.map((r) => r.name);
}
