// One pool: its counts, and tabs for keys, export and settings.
import { api, can, courseTitles } from './api.js';
import { h, when, fieldError, showApiError, confirmDialog, announce, sleep, fill } from './dom.js';
import { poolFormView } from './pools.js';
import { recentActivity } from './activity.js';
import { funnelChart, perDayChart } from './charts.js';

const KEY_RE = /^[A-Z0-9]{4,64}$/;
const canonical = (line) => line.toUpperCase().replace(/[\s-]/g, '');

/** Per-line check of a paste, before anything is sent: what the API would reject for form. */
export function previewLines(text) {
  const seen = new Map();
  return text.split(/\r?\n/).map((raw, i) => ({ line: i + 1, raw: raw.trim() }))
    .filter((l) => l.raw && !/^key(,|$)/i.test(l.raw))
    .map((l) => {
      const value = l.raw.split(',')[0].replace(/^"|"$/g, '');
      const c = canonical(value);
      let error = '';
      if (!KEY_RE.test(c)) error = 'A key is 4 to 64 letters A-Z and digits 0-9 (spaces and dashes are ignored).';
      else if (seen.has(c)) error = `The same key as line ${seen.get(c)}.`;
      else seen.set(c, l.line);
      return { ...l, key: value, error };
    });
}

export async function poolView(main, poolId, tab, params = new URLSearchParams()) {
  let pool;
  try { pool = await api('GET', `/v1/pools/${encodeURIComponent(poolId)}`); } catch (e) {
    main.replaceChildren(h('h1', {}, 'Pool'), h('p', { class: 'alert', role: 'alert' }, e.message), h('a', { href: '#/' }, 'Back to pools'));
    return;
  }
  const counts = h('div', { class: 'counts', id: 'counts' });
  async function refreshCounts() {
    try { pool = await api('GET', `/v1/pools/${encodeURIComponent(poolId)}`); } catch { /* keep the last counts */ }
    fill(counts, 
      h('div', {}, 'Total keys', h('strong', { id: 'count-total' }, pool.total_keys.toLocaleString())),
      h('div', {}, 'Redeemed', h('strong', { id: 'count-redeemed' }, pool.redeemed_keys.toLocaleString())),
      h('div', {}, 'Available', h('strong', { id: 'count-available' }, pool.available_keys.toLocaleString())));
  }
  await refreshCounts();
  // A viewer reads keys and exports' status; settings are an admin's.
  const tabs = can.change() ? [['keys', 'Keys'], ['export', 'Export'], ['settings', 'Settings']] : [['keys', 'Keys'], ['export', 'Exports']];
  const panel = h('div', { role: 'tabpanel', id: 'panel', 'aria-labelledby': `tab-${tab}`, tabindex: 0 });
  const tablist = h('div', { role: 'tablist', 'aria-label': 'Pool' }, tabs.map(([id, label]) => h('button', {
    type: 'button', role: 'tab', id: `tab-${id}`, 'aria-selected': String(id === tab), 'aria-controls': 'panel', tabindex: id === tab ? 0 : -1,
    onclick: () => { location.hash = `#/pools/${encodeURIComponent(poolId)}/${id}`; },
    onkeydown: (ev) => {
      const i = tabs.findIndex(([t]) => t === id);
      const to = ev.key === 'ArrowRight' ? (i + 1) % tabs.length : ev.key === 'ArrowLeft' ? (i + tabs.length - 1) % tabs.length : -1;
      if (to >= 0) { ev.preventDefault(); location.hash = `#/pools/${encodeURIComponent(poolId)}/${tabs[to][0]}`; }
    },
  }, label)));
  const st = pool.status;
  const title = (await courseTitles()).get(pool.course_id) || pool.course_id;
  // The pool's latest changes, under whichever tab is open; read again after a change here.
  const activity = recentActivity(pool.pool_id, pool.name);
  main.replaceChildren(
    h('p', {}, h('a', { href: '#/' }, '← All pools')),
    h('h1', {}, pool.name, ' ', h('span', { class: `badge ${st}` }, st)),
    h('p', {}, `Course: ${title} · open ${when(pool.starts_at)} to ${when(pool.expires_at)} · ${pool.content_availability_days} days of access`),
    counts, progress(pool), tablist, panel, activity.section);
  if (tab === 'export') exportTab(panel, pool);
  else if (tab === 'settings' && can.change()) await settingsTab(panel, pool);
  else keysTab(panel, pool, refreshCounts, params.get('key'), activity.refresh);
}

/**
 * The pool's progress as pictures: the funnel and redemptions and launches per day, loaded
 * after the page (the stats are a moment behind the keys), with loading, empty and error states.
 */
function progress(pool) {
  const body = h('div', { id: 'progress-body', 'aria-busy': 'true' }, h('p', {}, 'Loading the pictures…'));
  const box = h('section', { class: 'card', id: 'progress', 'aria-labelledby': 'h-progress' }, h('h2', { id: 'h-progress' }, 'Progress'), body);
  async function load() {
    body.setAttribute('aria-busy', 'true');
    let st;
    try { st = await api('GET', `/v1/pools/${encodeURIComponent(pool.pool_id)}/stats`); } catch (e) {
      fill(body, h('p', { class: 'alert', id: 'progress-error' }, `The pictures could not be loaded: ${e.message}`),
        h('button', { type: 'button', class: 'secondary', id: 'progress-retry', onclick: () => { fill(body, h('p', {}, 'Loading the pictures…')); load(); } }, 'Try again'));
      body.removeAttribute('aria-busy');
      return;
    }
    const any = st.days.some((d) => d.redeemed || d.launched);
    fill(body, h('div', { class: 'pictures' },
      h('div', {}, funnelChart(st.funnel)),
      h('div', {}, any ? perDayChart(st.days)
        : h('p', { id: 'progress-empty' }, st.days.length ? 'No redemptions yet.' : 'No redemptions yet: the pool has not opened.'))));
    body.removeAttribute('aria-busy');
  }
  load();
  return box;
}

/** The key that "Find a key" opened this pool for: its status and who redeemed it. */
function foundKey(typed) {
  const box = h('section', { class: 'card found', id: 'found-key', 'aria-labelledby': 'h-found' }, h('h2', { id: 'h-found' }, `Key ${typed}`), h('p', {}, 'Loading…'));
  api('GET', `/v1/keys/${encodeURIComponent(typed)}`).then((k) => {
    fill(box, h('h2', { id: 'h-found' }, `Key ${k.key}`),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Status'), h('dd', {}, h('span', { class: `badge ${k.status}` }, k.status)),
        h('dt', {}, 'Redeemed by'), h('dd', {}, k.redeemed_by || '—'),
        h('dt', {}, 'Redeemed at'), h('dd', {}, k.redeemed_at ? when(k.redeemed_at) : '—'),
        h('dt', {}, 'Distributed'), h('dd', {}, k.distributed_at ? when(k.distributed_at) : 'No'),
        k.assignment_id ? [h('dt', {}, 'Assignment'), h('dd', { class: 'key' }, k.assignment_id)] : null));
  }).catch((e) => fill(box, h('h2', { id: 'h-found' }, `Key ${typed}`), h('p', { class: 'alert' }, e.message)));
  return box;
}

function keysTab(panel, pool, refreshCounts, found, changed) {
  const base = `/v1/pools/${encodeURIComponent(pool.pool_id)}`;
  // Add one key.
  const one = h('input', { id: 'one-key', name: 'key', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const oneStatus = h('p', { role: 'status' });
  const oneForm = h('form', { class: 'row', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    fieldError(one, '');
    try {
      const r = await api('POST', `${base}/keys`, { keys: [one.value] });
      if (r.rejected.length) { fieldError(one, r.rejected[0].message); one.focus(); return; }
      oneStatus.textContent = `Key ${r.added[0]} added.`;
      one.value = '';
      refreshCounts(); loadKeys(); changed();
    } catch (e) { fieldError(one, e.details?.rejected?.[0]?.message || e.message); one.focus(); }
  } }, h('div', {}, h('label', { for: 'one-key' }, 'Key'), one), h('div', {}, h('button', { type: 'submit', id: 'add-one' }, 'Add key')));

  // Paste many or upload a file, preview, then add the valid lines.
  const paste = h('textarea', { id: 'paste', name: 'keys', rows: 6, spellcheck: 'false', 'aria-describedby': 'paste-hint', 'data-hint': 'paste-hint' });
  const file = h('input', { id: 'upload', type: 'file', accept: '.txt,.csv,text/plain,text/csv' });
  const preview = h('div', { id: 'preview', 'aria-live': 'polite' });
  let checked = [];
  function showPreview() {
    checked = previewLines(paste.value);
    const bad = checked.filter((l) => l.error);
    const good = checked.filter((l) => !l.error);
    fill(preview, 
      h('p', { id: 'preview-summary' }, `${good.length} valid, ${bad.length} with errors.`),
      bad.length ? h('ul', { class: 'preview' }, bad.slice(0, 200).map((l) => h('li', { class: 'bad' }, `Line ${l.line} (${l.key}): ${l.error}`))) : null,
      h('div', { class: 'actions' }, good.length ? h('button', { type: 'button', id: 'add-valid', onclick: addValid },
        bad.length ? `Add the ${good.length} valid keys` : `Add ${good.length} keys`) : null));
  }
  async function addValid() {
    const good = checked.filter((l) => !l.error).map((l) => l.key);
    fill(preview, h('p', {}, 'Adding…'));
    try {
      const r = await api('POST', `${base}/keys?partial=true`, { keys: good });
      if (r.job_id) { await followJob(r.job_id, jobBox, 'Import'); return; }
      fill(preview, h('p', { class: 'ok', role: 'status' }, `${r.added.length} keys added.`),
        r.rejected.length ? h('ul', { class: 'preview' }, r.rejected.map((x) => h('li', { class: 'bad' }, `${x.key}: ${x.message}`))) : null);
      paste.value = '';
      refreshCounts(); loadKeys(); changed();
    } catch (e) { fill(preview, h('p', { class: 'alert', role: 'alert' }, e.message)); }
  }
  file.addEventListener('change', async () => { if (file.files[0]) { paste.value = await file.files[0].text(); showPreview(); } });
  const pasteForm = h('form', { class: 'stack', onsubmit: (ev) => { ev.preventDefault(); showPreview(); } },
    h('label', { for: 'paste' }, 'Paste keys, one per line'),
    h('p', { class: 'hint', id: 'paste-hint' }, 'Nothing is written until you confirm the preview.'),
    paste,
    h('label', { for: 'upload' }, 'Or upload a .txt or .csv file (first column)'), file,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'check-paste', class: 'secondary' }, 'Check lines')),
    preview);

  // Generate N, as a job with progress for large counts.
  const count = h('input', { id: 'gen-count', name: 'count', type: 'number', min: 1, max: 10000000, value: 100, inputmode: 'numeric' });
  const jobBox = h('div', { id: 'job' });
  const genForm = h('form', { class: 'row', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    fieldError(count, '');
    const n = Number(count.value);
    if (!Number.isInteger(n) || n < 1 || n > 10000000) { fieldError(count, 'Generate 1 to 10,000,000 keys.'); count.focus(); return; }
    try {
      const r = await api('POST', `${base}/keys/generate`, { count: n });
      if (r.job_id) await followJob(r.job_id, jobBox, 'Generation');
      else fill(jobBox, h('p', { role: 'status', class: 'ok' }, `${r.keys.length} keys generated.`));
      refreshCounts(); loadKeys(); changed();
    } catch (e) { showApiError(genForm, e, null) || fieldError(count, e.message); count.focus(); }
  } }, h('div', {}, h('label', { for: 'gen-count' }, 'How many keys'), count), h('div', {}, h('button', { type: 'submit', id: 'generate' }, 'Generate')));

  async function followJob(id, box, what) {
    const bar = h('progress', { id: 'job-progress', max: 100, value: 0, 'aria-labelledby': 'job-label' });
    const label = h('p', { id: 'job-label' }, `${what} starting…`);
    const live = h('p', { role: 'status', id: 'job-status' }, `${what} started.`);
    box.replaceChildren(label, bar, live);
    let lastSaid = -1;
    for (;;) {
      let j;
      try { j = await api('GET', `/v1/jobs/${encodeURIComponent(id)}`); } catch (e) { live.textContent = e.message; await sleep(1500); continue; }
      const pct = j.total ? Math.floor((j.done / j.total) * 100) : 0;
      bar.value = pct;
      label.textContent = `${what}: ${j.done.toLocaleString()} of ${j.total.toLocaleString()} keys (${pct}%)`;
      // Announce in steps of a quarter, not on every poll.
      if (Math.floor(pct / 25) !== lastSaid) { lastSaid = Math.floor(pct / 25); live.textContent = label.textContent; }
      if (j.status === 'done') { live.textContent = `${what} done: ${j.done.toLocaleString()} keys.${j.rejected_keys.length ? ` ${j.rejected_keys.length} taken by others.` : ''}`; break; }
      if (j.status === 'failed') { live.textContent = `${what} failed: ${j.error || 'unknown error'}`; break; }
      refreshCounts();
      await sleep(700);
    }
  }

  // The key table, a page at a time with the API's cursor.
  const filter = h('select', { id: 'key-status' }, [['', 'All keys'], ['available', 'Available'], ['redeemed', 'Redeemed']].map(([v, t]) => h('option', { value: v }, t)));
  const undistributed = h('input', { id: 'key-undistributed', type: 'checkbox' });
  const table = h('div', { id: 'keys' });
  const stack = [];
  let cursor = '';
  async function loadKeys(c = cursor) {
    cursor = c;
    const q = new URLSearchParams({ limit: '50' });
    if (filter.value) q.set('status', filter.value);
    if (undistributed.checked) q.set('undistributed', 'true');
    if (c) q.set('cursor', c);
    let page;
    table.setAttribute('aria-busy', 'true');
    try { page = await api('GET', `${base}/keys?${q}`); } catch (e) { fill(table, h('p', { class: 'alert' }, e.message)); return; } finally { table.removeAttribute('aria-busy'); }
    const rows = page.items.map((k) => h('tr', {},
      h('td', { 'data-label': 'Key', class: 'key' }, k.key),
      h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${k.status}` }, k.status)),
      h('td', { 'data-label': 'Redeemed by' }, k.redeemed_by || '—'),
      h('td', { 'data-label': 'Redeemed at' }, k.redeemed_at ? when(k.redeemed_at) : '—'),
      h('td', { 'data-label': 'Distributed' }, k.distributed_at ? when(k.distributed_at) : 'No'),
      h('td', { 'data-label': 'Action' }, k.status === 'available'
        && can.change() ? h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove key ${k.key}`, onclick: () => removeKey(k) }, 'Remove') : '—')));
    fill(table, 
      page.items.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'key-table' },
        h('caption', { class: 'visually-hidden' }, 'Keys of this pool'),
        h('thead', {}, h('tr', {}, ['Key', 'Status', 'Redeemed by', 'Redeemed at', 'Distributed', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))) : h('p', {}, 'No keys here yet.'),
      h('nav', { class: 'actions', 'aria-label': 'Key pages' },
        stack.length ? h('button', { type: 'button', class: 'secondary', onclick: () => loadKeys(stack.pop()) }, 'Previous page') : null,
        page.next_cursor ? h('button', { type: 'button', class: 'secondary', id: 'next-keys', onclick: () => { stack.push(cursor); loadKeys(page.next_cursor); } }, 'Next page') : null));
  }
  async function removeKey(k) {
    if (!(await confirmDialog('Remove this key?', `Key ${k.key} will no longer be redeemable. This cannot be undone.`, 'Remove key'))) return;
    try { await api('DELETE', `${base}/keys/${encodeURIComponent(k.key)}`); announce(`Key ${k.key} removed.`); refreshCounts(); loadKeys(); changed(); } catch (e) { announce(e.message); }
  }
  filter.addEventListener('change', () => { stack.length = 0; loadKeys(''); });
  undistributed.addEventListener('change', () => { stack.length = 0; loadKeys(''); });

  fill(panel,
    found ? foundKey(found) : null,
    ...(can.change() ? [
      h('section', { class: 'card', 'aria-labelledby': 'h-one' }, h('h2', { id: 'h-one' }, 'Add one key'), oneForm, oneStatus),
      h('section', { class: 'card', 'aria-labelledby': 'h-paste' }, h('h2', { id: 'h-paste' }, 'Add many keys'), pasteForm),
      h('section', { class: 'card', 'aria-labelledby': 'h-gen' }, h('h2', { id: 'h-gen' }, 'Generate keys'), genForm, jobBox),
    ] : []),
    h('section', { 'aria-labelledby': 'h-keys' }, h('h2', { id: 'h-keys' }, 'Keys'),
      h('div', { class: 'row' }, h('div', {}, h('label', { for: 'key-status' }, 'Show'), filter),
        h('div', {}, h('label', { for: 'key-undistributed' }, undistributed, ' Only never distributed'))),
      table));
  loadKeys('');
}

function exportTab(panel, pool) {
  const status = h('select', { id: 'export-status', name: 'status' }, [['', 'All keys'], ['available', 'Available only'], ['redeemed', 'Redeemed only']].map(([v, t]) => h('option', { value: v }, t)));
  const undist = h('input', { id: 'export-undistributed', type: 'checkbox', name: 'undistributed' });
  const mark = h('input', { id: 'export-mark', type: 'checkbox', name: 'mark_distributed' });
  const progress = h('div', { id: 'export-progress' });
  const list = h('div', { id: 'export-list' });
  const alert = h('p', { class: 'alert', role: 'alert' });
  const form = h('form', { class: 'stack', onsubmit: async (ev) => {
    ev.preventDefault();
    alert.textContent = '';
    const body = { undistributed: undist.checked, mark_distributed: mark.checked };
    if (status.value) body.status = status.value;
    try {
      const e = await api('POST', `/v1/pools/${encodeURIComponent(pool.pool_id)}/exports`, body);
      await follow(e.export_id);
    } catch (e) { showApiError(form, e, alert); }
  } },
  h('label', { for: 'export-status' }, 'Keys to export'), status,
  h('label', { for: 'export-undistributed' }, undist, ' Only keys never distributed'),
  h('label', { for: 'export-mark' }, mark, ' Mark the exported available keys as distributed'),
  h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'start-export' }, 'Start export')), alert);
  async function follow(id) {
    const live = h('p', { role: 'status', id: 'export-status-text' }, 'Export started…');
    fill(progress, live);
    for (;;) {
      const e = await api('GET', `/v1/exports/${encodeURIComponent(id)}`);
      latest = e;
      if (e.status === 'done') {
        live.textContent = `Export ready: ${e.rows.toLocaleString()} keys.`;
        progress.append(h('button', { type: 'button', id: 'download-export', onclick: () => saveExport(e) }, `Download ${e.file_name}`));
        break;
      }
      if (e.status === 'failed') { live.textContent = `The export failed: ${e.error || 'unknown error'}`; break; }
      live.textContent = `Exporting… ${e.rows.toLocaleString()} keys so far.`;
      await sleep(700);
    }
    pages.length = 0;
    showList();
  }
  async function saveExport(e) {
    // The link is signed and short-lived; read it fresh, then let the browser save the file.
    const fresh = await api('GET', `/v1/exports/${encodeURIComponent(e.export_id)}`);
    const a = h('a', { href: fresh.url, download: fresh.file_name });
    document.body.append(a); a.click(); a.remove();
  }
  // The pool's exports from the server, newest first, a page at a time.
  const pages = [];
  let listCursor = '';
  let latest = null;
  async function showList(c = '') {
    listCursor = c;
    const q = new URLSearchParams({ limit: '10' });
    if (c) q.set('cursor', c);
    let page;
    list.setAttribute('aria-busy', 'true');
    try { page = await api('GET', `/v1/pools/${encodeURIComponent(pool.pool_id)}/exports?${q}`); } catch (e) { fill(list, h('p', { class: 'alert' }, e.message)); return; } finally { list.removeAttribute('aria-busy'); }
    let items = page.items;
    // The listing may lag a moment behind the export just made: show that one anyway.
    if (!c && latest && !items.some((e) => e.export_id === latest.export_id)) items = [latest, ...items];
    const statusWords = { pending: 'Waiting', running: 'Running', done: 'Ready', failed: 'Failed' };
    fill(list,
      items.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'export-table' },
        h('caption', { class: 'visually-hidden' }, 'Recent exports of this pool, newest first'),
        h('thead', {}, h('tr', {}, ['Started', 'Status', 'Keys', 'Filters', 'File'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, items.map((e) => h('tr', {},
          h('td', { 'data-label': 'Started' }, when(e.created_at)),
          h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${e.status}` }, statusWords[e.status] || e.status),
            e.status === 'failed' && e.error ? ` ${e.error}` : ''),
          h('td', { 'data-label': 'Keys', class: 'num' }, e.rows.toLocaleString()),
          h('td', { 'data-label': 'Filters' }, [e.key_status || 'all keys', e.undistributed ? 'never distributed' : null,
            e.mark_distributed ? 'marked distributed' : null, e.kind === 'scheduled' ? 'scheduled' : null].filter(Boolean).join(', ')),
          h('td', { 'data-label': 'File' }, e.status === 'done' && can.download()
            ? h('button', { type: 'button', class: 'link', 'aria-label': `Download ${e.file_name}, started ${when(e.created_at)}`, onclick: () => saveExport(e) }, e.file_name) : '—')))))) : h('p', {}, 'No exports of this pool yet.'),
      h('nav', { class: 'actions', 'aria-label': 'Export pages' },
        pages.length ? h('button', { type: 'button', class: 'secondary', onclick: () => showList(pages.pop()) }, 'Newer exports') : null,
        page.next_cursor ? h('button', { type: 'button', class: 'secondary', id: 'older-exports', onclick: () => { pages.push(listCursor); showList(page.next_cursor); } }, 'Older exports') : null));
  }
  fill(panel, can.change() ? h('section', { class: 'card', 'aria-labelledby': 'h-exp' }, h('h2', { id: 'h-exp' }, 'Export keys to CSV'), form, progress) : null,
    h('section', { 'aria-labelledby': 'h-recent' }, h('h2', { id: 'h-recent' }, 'Recent exports'), list));
  showList();
}

async function settingsTab(panel, pool) {
  const nodes = await poolFormView(null, pool, { embedded: true });
  const live = h('p', { role: 'status' });
  const toggle = h('button', { type: 'button', class: pool.deactivated ? '' : 'danger', id: 'toggle-deactivated', onclick: async () => {
    if (!pool.deactivated && !(await confirmDialog('Deactivate this pool?', 'Learners will not be able to redeem its keys until you reactivate it.', 'Deactivate'))) return;
    try {
      await api('PATCH', `/v1/pools/${encodeURIComponent(pool.pool_id)}`, { deactivated: !pool.deactivated });
      dispatchEvent(new HashChangeEvent('hashchange'));
    } catch (e) { live.textContent = e.message; }
  } }, pool.deactivated ? 'Reactivate pool' : 'Deactivate pool');
  fill(panel, h('section', { class: 'card', 'aria-labelledby': 'h-edit' }, h('h2', { id: 'h-edit' }, 'Edit pool'), ...nodes),
    h('section', { class: 'card', 'aria-labelledby': 'h-deact' }, h('h2', { id: 'h-deact' }, pool.deactivated ? 'Deactivated' : 'Deactivate'), toggle, live));
}
