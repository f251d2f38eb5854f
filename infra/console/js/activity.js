// Activity: the organization's audit log (docs/audit.md), newest first, filtered by person,
// action, pool and dates, a page at a time with the API's cursor, and its CSV; and the few
// latest records of one pool for that pool's page. Admins, viewers and finance read it.
import { api, can, download, courseTitles, forgetCourses } from './api.js';
import { h, zone, fieldError, clearErrors, showApiError, announce, fill } from './dom.js';

/** The actions, grouped as the filter offers them, with words for a person. */
const ACTIONS = [
  ['Pools', [
    ['pool.created', 'Pool created'],
    ['pool.updated', 'Pool edited'],
    ['pool.deactivated', 'Pool deactivated'],
    ['pool.reactivated', 'Pool reactivated'],
  ]],
  ['Keys', [
    ['key.added', 'Key added'],
    ['keys.pasted', 'Keys pasted'],
    ['keys.generated', 'Keys generated'],
    ['key.removed', 'Key removed'],
    ['keys.generation_started', 'Key generation started'],
    ['keys.generation_finished', 'Key generation finished'],
    ['keys.import_started', 'Key import started'],
    ['keys.import_finished', 'Key import finished'],
  ]],
  ['Exports', [
    ['export.started', 'Export started'],
    ['export.finished', 'Export finished'],
    ['export.downloaded', 'Export downloaded'],
  ]],
  ['Courses', [
    ['course.created', 'Course created'],
    ['course.updated', 'Course edited'],
  ]],
  ['Redemptions', [
    ['assignment.cancelled', 'Redemption cancelled'],
  ]],
  ['Webhooks', [
    ['webhook.created', 'Webhook endpoint added'],
    ['webhook.updated', 'Webhook endpoint edited'],
    ['webhook.deleted', 'Webhook endpoint removed'],
    ['webhook.secret_rotated', 'Webhook secret rotated'],
    ['webhook.tested', 'Webhook test sent'],
    ['webhook.delivery_retried', 'Webhook delivery retried'],
  ]],
  ['Console', [
    ['console.signed_in', 'Signed in to the console'],
  ]],
];

/** Words for every action the API names (shared/src/domain/audit.rs). */
const LABELS = new Map(ACTIONS.flatMap(([, list]) => list));

/** Names of the fields that summaries carry. */
const FIELDS = {
  name: 'Name', title: 'Title', course_id: 'Course', pool_id: 'Pool', starts_at: 'Starts', expires_at: 'Expires',
  content_availability_days: 'Content availability (days)', deactivated: 'Deactivated', description: 'Description',
  launch_url: 'Launch URL', url: 'URL', events: 'Events', enabled: 'Enabled', secrets: 'Secrets signing',
  file_name: 'File', lines: 'Lines', keys: 'Keys', count: 'Keys', partial: 'Valid lines only', rejected_count: 'Rejected',
  total: 'Total', done: 'Done', status: 'Status', rows: 'Rows', key_status: 'Keys exported',
  undistributed: 'Only never distributed', mark_distributed: 'Marked distributed', delivery_id: 'Delivery', attempts: 'Attempts', method: 'Method',
};

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;
const PAGE_SIZES = ['10', '25', '50', '100'];
const DEFAULT_SIZE = '25';

/** Local time, to the second. */
const localTime = (d) => d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** When a record was made: local time shown, the instant in UTC in `datetime` and `title`. */
function at(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso || '—';
  return h('time', { datetime: iso, title: `${d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} UTC` }, localTime(d));
}

/** What the pages of the console know by id, to say names instead: pools and courses. */
async function names() {
  const pools = new Map();
  if (!can.readPools()) return { pools, courses: new Map() };
  // Courses made since this page loaded are named too.
  forgetCourses();
  const courses = await courseTitles();
  let cursor = '';
  // An organization's pools, a few pages at most; an id not found here is shown as it is.
  for (let i = 0; i < 5; i++) {
    const q = new URLSearchParams({ limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    let page;
    try { page = await api('GET', `/v1/pools?${q}`); } catch { break; }
    for (const p of page.items) pools.set(p.pool_id, p.name);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { pools, courses };
}

/** A field's value in words: times local, yes or no, lists joined, ids named when known. */
function value(field, v, known) {
  if (v === null || v === undefined || v === '') return '(none)';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return v.toLocaleString();
  if (Array.isArray(v)) return v.length ? v.join(', ') : '(none)';
  if (typeof v === 'object') return JSON.stringify(v);
  if (field === 'pool_id') return known.pools.get(v) || v;
  if (field === 'course_id') return known.courses.get(v) || v;
  if (ISO.test(v)) return `${localTime(new Date(v))} (${zone})`;
  return String(v);
}

const fieldName = (f) => FIELDS[f] || f.replace(/_/g, ' ');
const ORDER = Object.keys(FIELDS);
/** Fields in the order a person reads them (the name first), whatever order the API sends. */
const ordered = (fields) => [...fields].sort((a, b) => (ORDER.indexOf(a) >>> 0) - (ORDER.indexOf(b) >>> 0));
const plural = (n, one, many) => `${Number(n).toLocaleString()} ${n === 1 ? one : many}`;

/** A record's summary in words: "field: before → after" for edits, counts otherwise. */
function summary(r, known) {
  const s = r.summary || {};
  const lines = [];
  if (s.before && s.after && typeof s.before === 'object') {
    const fields = ordered(new Set([...Object.keys(s.before), ...Object.keys(s.after)]));
    for (const f of fields) lines.push(`${fieldName(f)}: ${value(f, s.before[f], known)} → ${value(f, s.after[f], known)}`);
    if (!fields.length) lines.push('No field changed.');
  } else if (r.action === 'keys.pasted' || r.action === 'key.added') {
    lines.push(`${plural(s.keys ?? 0, 'key', 'keys')} added from ${plural(s.lines ?? 0, 'line', 'lines')}${s.partial ? ' (valid lines only)' : ''}`);
  } else if (r.action === 'keys.generated') {
    lines.push(`${plural(s.count ?? 0, 'key', 'keys')} generated`);
  } else {
    for (const f of ordered(Object.keys(s))) {
      const v = s[f];
      // The pool a record belongs to is its own column.
      if (f === 'pool_id' && r.pool_id === v) continue;
      lines.push(`${fieldName(f)}: ${value(f, v, known)}`);
    }
  }
  if (!lines.length) return '—';
  return lines.length === 1 ? lines[0] : h('ul', { class: 'changes' }, lines.map((l) => h('li', {}, l)));
}

/** The pool of a record: its own, or the one its summary names (records older than pool_id). */
const poolOf = (r) => r.pool_id || (r.resource?.type === 'pool' ? r.resource.id : r.summary?.pool_id) || '';

function poolLink(id, known) {
  const label = known.pools.get(id) || id;
  return can.readPools() ? h('a', { href: `#/pools/${encodeURIComponent(id)}` }, label) : h('span', { class: 'key' }, label);
}

/** What a record changed, named as a person would; a pool by name only once in its row. */
function resource(r, known, withPool) {
  const { type, id } = r.resource || {};
  if (type === 'pool') return withPool && poolOf(r) === id ? 'The pool' : withPool ? ['Pool ', poolLink(id, known)] : 'This pool';
  if (type === 'course') return `Course ${known.courses.get(id) || id}`;
  if (type === 'key') return ['Key ', h('span', { class: 'key' }, id)];
  if (type === 'webhook') return ['Webhook endpoint ', can.webhooks() && r.action !== 'webhook.deleted'
    ? h('a', { href: `#/webhooks/${encodeURIComponent(id)}`, class: 'key' }, id) : h('span', { class: 'key' }, id)];
  if (type === 'console') return 'The console';
  if (type === 'assignment') return ['Assignment ', h('span', { class: 'key' }, id)];
  // An export, a job, or what comes next: its kind as a word, then its id.
  const kind = (type || '').replace(/_/g, ' ');
  return [kind.charAt(0).toUpperCase() + kind.slice(1), ' ', h('span', { class: 'key' }, id || '')];
}

/** The action in words above its stable dotted name. */
const action = (name) => h('span', { class: 'action' }, LABELS.get(name) || name, h('br'), h('code', { class: 'event' }, name));

/** A table of records; `withPool` adds the pool column (the pool's own page leaves it out). */
function recordTable(items, known, { id, caption, withPool = true }) {
  const heads = ['When', 'Who', 'Action', 'Resource', withPool ? 'Pool' : null, 'Summary'].filter(Boolean);
  return h('div', { class: 'table-wrap' }, h('table', { class: 'responsive activity', id },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, heads.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, items.map((r) => {
      const pool = poolOf(r);
      return h('tr', { 'data-event': r.event_id },
        h('td', { 'data-label': 'When' }, at(r.at)),
        h('td', { 'data-label': 'Who' }, h('span', {}, r.actor?.sub || '—', ' ', h('span', { class: 'badge role' }, r.actor?.role || '?'))),
        h('td', { 'data-label': 'Action' }, action(r.action)),
        h('td', { 'data-label': 'Resource' }, h('span', {}, resource(r, known, withPool))),
        withPool ? h('td', { 'data-label': 'Pool' }, pool ? poolLink(pool, known) : '—') : null,
        h('td', { 'data-label': 'Summary', class: 'summary' }, summary(r, known)));
    }))));
}

/** The filters a hash names, as the API asks for them. */
function apiQuery(filters) {
  const q = new URLSearchParams();
  if (filters.actor) q.set('actor', filters.actor);
  if (filters.action) q.set('action', filters.action);
  if (filters.pool) q.set('pool_id', filters.pool);
  // Dates are the reader's days: from the first instant of `since` to the last of `until`.
  if (filters.since) q.set('since', new Date(`${filters.since}T00:00:00`).toISOString());
  if (filters.until) {
    const end = new Date(`${filters.until}T00:00:00`);
    end.setDate(end.getDate() + 1);
    q.set('until', new Date(end.getTime() - 1).toISOString());
  }
  return q;
}

const DATE = /^\d{4}-\d\d-\d\d$/;

/** The Activity page, its filters read from the hash (`#/activity?actor=&action=&pool=&since=&until=&limit=`). */
export async function activityView(main, params = new URLSearchParams()) {
  document.title = 'Activity · KeyPool console';
  const filters = {
    actor: (params.get('actor') || '').trim(),
    action: params.get('action') || '',
    pool: params.get('pool') || '',
    since: DATE.test(params.get('since') || '') ? params.get('since') : '',
    until: DATE.test(params.get('until') || '') ? params.get('until') : '',
    limit: PAGE_SIZES.includes(params.get('limit')) ? params.get('limit') : DEFAULT_SIZE,
  };
  const actor = h('input', { id: 'activity-actor', name: 'actor', type: 'text', autocomplete: 'off', spellcheck: 'false',
    value: filters.actor, 'aria-describedby': 'activity-actor-hint', 'data-hint': 'activity-actor-hint' });
  const actionSelect = h('select', { id: 'activity-action', name: 'action' },
    h('option', { value: '' }, 'All actions'),
    ACTIONS.map(([group, list]) => h('optgroup', { label: group },
      list.map(([name, label]) => h('option', { value: name, selected: name === filters.action }, `${label} (${name})`)))));
  // An action this console does not offer yet still filters, when a link names it.
  if (filters.action && !LABELS.has(filters.action)) actionSelect.append(h('option', { value: filters.action, selected: true }, filters.action));
  const pool = h('select', { id: 'activity-pool', name: 'pool_id' }, h('option', { value: '' }, 'All pools'));
  const since = h('input', { id: 'activity-since', name: 'since', type: 'date', min: '2000-01-01', max: '9999-12-31', value: filters.since,
    'aria-describedby': 'activity-dates-hint', 'data-hint': 'activity-dates-hint' });
  const until = h('input', { id: 'activity-until', name: 'until', type: 'date', min: '2000-01-01', max: '9999-12-31', value: filters.until,
    'aria-describedby': 'activity-dates-hint', 'data-hint': 'activity-dates-hint' });
  const size = h('select', { id: 'activity-limit', name: 'limit' }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === filters.limit }, n)));
  const alert = h('p', { class: 'alert', role: 'alert', id: 'activity-alert' });
  const results = h('div', { id: 'activity' }, h('p', {}, 'Loading activity…'));
  const resultsHeading = h('h2', { id: 'h-activity-results', tabindex: -1 }, 'Records');

  const form = h('form', { class: 'card filters', id: 'activity-filters', 'aria-label': 'Filter activity', novalidate: true, onsubmit: (ev) => {
    ev.preventDefault();
    clearErrors(form);
    alert.textContent = '';
    if (since.value && until.value && until.value < since.value) {
      fieldError(until, 'The last day is before the first.');
      until.focus();
      return;
    }
    Object.assign(filters, { actor: actor.value.trim(), action: actionSelect.value, pool: pool.value, since: since.value, until: until.value, limit: size.value });
    remember();
    pages.length = 0;
    load('');
  } },
  h('div', { class: 'row' },
    h('div', {}, h('label', { for: 'activity-actor' }, 'Person'), h('p', { class: 'hint', id: 'activity-actor-hint' }, 'Who made the change, as they sign in (such as demo-admin).'), actor),
    h('div', {}, h('label', { for: 'activity-action' }, 'Action'), actionSelect),
    can.readPools() ? h('div', {}, h('label', { for: 'activity-pool' }, 'Pool'), pool) : null),
  h('p', { class: 'hint', id: 'activity-dates-hint' }, `Days in your time zone (${zone}), both included.`),
  h('div', { class: 'row' },
    h('div', {}, h('label', { for: 'activity-since' }, 'From'), since),
    h('div', {}, h('label', { for: 'activity-until' }, 'To'), until),
    h('div', {}, h('label', { for: 'activity-limit' }, 'Per page'), size)),
  h('div', { class: 'actions' },
    h('button', { type: 'submit', id: 'activity-apply' }, 'Show activity'),
    h('button', { type: 'button', class: 'secondary', id: 'activity-clear', onclick: () => {
      actor.value = ''; actionSelect.value = ''; pool.value = ''; since.value = ''; until.value = '';
      form.requestSubmit();
    } }, 'Clear filters')));

  /** Puts the filters in the address, so that a reload or a shared link shows the same. */
  function remember() {
    const q = new URLSearchParams();
    for (const k of ['actor', 'action', 'pool', 'since', 'until']) if (filters[k]) q.set(k, filters[k]);
    if (filters.limit !== DEFAULT_SIZE) q.set('limit', filters.limit);
    const hash = `#/activity${q.toString() ? `?${q}` : ''}`;
    // The page stays as it is (no new route): focus stays where the reader is.
    if (hash !== location.hash) history.pushState(null, '', hash);
  }

  const pages = [];
  let cursor = '';
  let known = { pools: new Map(), courses: new Map() };
  async function load(c) {
    cursor = c;
    const q = apiQuery(filters);
    q.set('limit', filters.limit);
    if (c) q.set('cursor', c);
    results.setAttribute('aria-busy', 'true');
    let page;
    try { page = await api('GET', `/v1/audit?${q}`); } catch (e) {
      showApiError(form, e, alert);
      fill(results, h('p', {}, 'The activity could not be shown.'));
      return null;
    } finally { results.removeAttribute('aria-busy'); }
    const first = pages.length * Number(filters.limit) + 1;
    const filtered = ['actor', 'action', 'pool', 'since', 'until'].some((k) => filters[k]);
    const csvQuery = apiQuery(filters);
    fill(results,
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', id: 'activity-csv', onclick: async () => {
        try { await download(`/v1/audit.csv${csvQuery.toString() ? `?${csvQuery}` : ''}`, 'keypool-activity.csv'); announce('Activity CSV downloaded.'); } catch (e) { alert.textContent = e.message; }
      } }, filtered ? 'Download CSV of these records' : 'Download CSV')),
      page.items.length
        ? recordTable(page.items, known, { id: 'activity-table', caption: 'Activity, newest first' })
        : h('p', { id: 'activity-empty' }, filtered
          ? (pages.length ? 'No more records match these filters.' : 'No activity matches these filters. Change or clear them to see more.')
          : 'No activity yet. Changes to pools, keys, exports, courses and webhooks appear here.'),
      h('nav', { class: 'actions pager', 'aria-label': 'Activity pages' },
        page.items.length ? h('p', { class: 'hint', id: 'activity-range' }, `Records ${first.toLocaleString()} to ${(first + page.items.length - 1).toLocaleString()}, newest first.`) : null,
        pages.length > 1 ? h('button', { type: 'button', class: 'secondary', id: 'activity-newest', onclick: () => turn(() => { pages.length = 0; return ''; }) }, 'Back to newest') : null,
        pages.length ? h('button', { type: 'button', class: 'secondary', id: 'activity-newer', onclick: () => turn(() => pages.pop()) }, 'Newer records') : null,
        page.next_cursor ? h('button', { type: 'button', class: 'secondary', id: 'activity-older', onclick: () => turn(() => { pages.push(cursor); return page.next_cursor; }) }, 'Older records') : null));
    announce(page.items.length ? `Records ${first} to ${first + page.items.length - 1} shown.` : 'No records to show.');
    return page;
  }

  /** Goes to another page, keeping the keyboard on the pager (or on the results when its button is gone). */
  async function turn(to) {
    const from = document.activeElement?.id;
    await load(to());
    const again = from && results.querySelector(`#${CSS.escape(from)}`);
    (again || resultsHeading).focus();
  }

  fill(main,
    h('h1', {}, 'Activity'),
    h('p', {}, 'Every change your organization’s people made, newest first: who, what, when and from where.'),
    alert, form,
    h('section', { 'aria-labelledby': 'h-activity-results' }, resultsHeading, results));
  known = await names();
  for (const [id, name] of [...known.pools].sort((a, b) => a[1].localeCompare(b[1]))) pool.append(h('option', { value: id }, name));
  if (filters.pool && !known.pools.has(filters.pool)) pool.append(h('option', { value: filters.pool }, filters.pool));
  pool.value = filters.pool;
  await load('');
}

/**
 * The latest records of one pool, for its page: a section that loads by itself; `refresh()`
 * reads them again after a change made on the page.
 */
export function recentActivity(poolId, poolName) {
  const body = h('div', { id: 'pool-activity' }, h('p', {}, 'Loading activity…'));
  const section = h('section', { class: 'recent-activity', 'aria-labelledby': 'h-pool-activity' },
    h('h2', { id: 'h-pool-activity' }, 'Recent activity'), body,
    h('p', {}, h('a', { href: `#/activity?${new URLSearchParams({ pool: poolId })}`, id: 'pool-activity-all' }, 'All activity of this pool')));
  const known = { pools: new Map([[poolId, poolName]]), courses: new Map() };
  async function refresh() {
    body.setAttribute('aria-busy', 'true');
    try {
      known.courses = await courseTitles();
      const page = await api('GET', `/v1/audit?${new URLSearchParams({ pool_id: poolId, limit: '10' })}`);
      fill(body, page.items.length
        ? recordTable(page.items, known, { id: 'pool-activity-table', caption: 'The latest changes of this pool, newest first', withPool: false })
        : h('p', {}, 'No changes recorded for this pool yet.'));
    } catch (e) {
      fill(body, h('p', { class: 'alert' }, e.message));
    } finally { body.removeAttribute('aria-busy'); }
  }
  refresh();
  return { section, refresh };
}
