import { fileURLToPath } from 'node:url';
import { ROLES, routeRules, seesPersonalData } from './roles.ts';

/** The role matrix as Markdown (api/ROLES.md, pasted into the README). Regenerate: `npx tsx api/roles-doc.ts > api/ROLES.md`. */
export const rolesMarkdown = (): string => {
  const header = `| route | ${ROLES.join(' | ')} | If-Match | what |`;
  const rule = `|---|${ROLES.map(() => ':-:').join('|')}|:-:|---|`;
  const rows = routeRules.map((r) => {
    const cells = ROLES.map((role) => (r.access === 'public' ? 'public' : r.access.includes(role) ? 'yes' : '-'));
    return `| ${r.route} | ${cells.join(' | ')} | ${r.ifMatch ?? ''} | ${r.summary} |`;
  });
  const masked = ROLES.filter((role) => !seesPersonalData(role));
  return [
    '# API roles',
    '',
    'Generated from `api/roles.ts` (the table the auth guard enforces); do not edit by hand.',
    '',
    `Each API key has one role. \`public\` routes need no key. Roles that see personal data masked: ${masked.join(', ')}`,
    '(name, email, phone, feedback subject and body, activity body read as `[masked]`; `GET /customers?search=` and `?sort=name` are refused, and so are they on the export).',
    'A route missing from this table is admin-only. `/*` rows cover every route under that path.',
    'If-Match: `required` answers 428 without it; `optional` checks it when sent (409 on a stale revision).',
    '',
    header,
    rule,
    ...rows,
    '',
  ].join('\n');
};

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(rolesMarkdown());
