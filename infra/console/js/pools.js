// Pools list (search, status filter and cursor pages, all on the server; find a key's pool)
// and the create/edit pool form.
import { api, can, courseTitles, forgetCourses } from './api.js';
import { h, when, zone, localInput, fieldError, clearErrors, showApiError, announce, fill } from './dom.js';

const cursors = [];

/** A form that finds which pool holds a key a learner reports, and opens it. */
function findKeyForm() {
  const input = h('input', { id: 'find-key', name: 'key', type: 'search', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'find-key-hint', 'data-hint': 'find-key-hint' });
  return h('form', { class: 'row card', role: 'search', 'aria-label': 'Find a key', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    fieldError(input, '');
    const typed = input.value.trim();
    if (!typed) { fieldError(input, 'Enter the key, as the learner reports it.'); input.focus(); return; }
    try {
      const k = await api('GET', `/v1/keys/${encodeURIComponent(typed)}`);
      const by = k.redeemed_by ? `, redeemed by ${k.redeemed_by} on ${when(k.redeemed_at)}` : '';
      announce(`Key ${k.key} is in pool ${k.pool_name} (${k.status}${by}).`);
      location.hash = `#/pools/${encodeURIComponent(k.pool_id)}/keys?key=${encodeURIComponent(k.key)}`;
    } catch (e) {
      fieldError(input, e.code === 'key_not_found'
        ? 'No pool of your organization holds this key. Check it with the learner.' : e.message);
      input.focus();
    }
  } },
  h('div', {}, h('label', { for: 'find-key' }, 'Find a key'),
    h('p', { class: 'hint', id: 'find-key-hint' }, 'Any case, with or without dashes or spaces.'), input),
  h('div', {}, h('button', { type: 'submit', id: 'find-key-button' }, 'Find key')));
}

export async function poolsView(main, params) {
  const search = params.get('search') || '';
  const status = params.get('status') || '';
  const cursor = params.get('cursor') || '';
  const q = new URLSearchParams({ limit: '50' });
  if (search) q.set('search', search);
  if (status) q.set('status', status);
  if (cursor) q.set('cursor', cursor);
  const alert = h('p', { class: 'alert', role: 'alert' });
  const searchInput = h('input', { id: 'pool-search', name: 'search', type: 'search', value: search });
  const statusSelect = h('select', { id: 'pool-status', name: 'status' },
    ['', 'scheduled', 'active', 'expired', 'deactivated'].map((s) => h('option', { value: s, selected: s === status }, s || 'Any status')));
  const form = h('form', { class: 'row card', role: 'search', 'aria-label': 'Pools', onsubmit: (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    if (searchInput.value.trim()) next.set('search', searchInput.value.trim());
    if (statusSelect.value) next.set('status', statusSelect.value);
    cursors.length = 0;
    location.hash = `#/?${next}`;
  } },
  h('div', {}, h('label', { for: 'pool-search' }, 'Pool or course name'), searchInput),
  h('div', {}, h('label', { for: 'pool-status' }, 'Status'), statusSelect),
  h('div', {}, h('button', { type: 'submit' }, 'Search')));
  const body = h('div', {}, h('p', {}, 'Loading pools…'));
  main.replaceChildren(
    h('h1', {}, 'Pools'),
    can.change() ? h('div', { class: 'actions' }, h('a', { href: '#/pools/new', class: 'button-link', id: 'new-pool' }, 'Create a pool')) : null,
    form, findKeyForm(), alert, body);
  let page;
  try { page = await api('GET', `/v1/pools?${q}`); } catch (e) { alert.textContent = e.message; fill(body); return; }
  const items = page.items;
  const titles = await courseTitles();
  const rows = items.map((p) => {
    const st = p.status;
    return h('tr', {},
      h('td', { 'data-label': 'Pool' }, h('a', { href: `#/pools/${encodeURIComponent(p.pool_id)}` }, p.name)),
      h('td', { 'data-label': 'Course' }, p.course_title || titles.get(p.course_id) || p.course_id),
      h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${st}` }, st)),
      h('td', { 'data-label': 'Total', class: 'num' }, p.total_keys.toLocaleString()),
      h('td', { 'data-label': 'Redeemed', class: 'num' }, p.redeemed_keys.toLocaleString()),
      h('td', { 'data-label': 'Available', class: 'num' }, p.available_keys.toLocaleString()),
      h('td', { 'data-label': 'Expires' }, when(p.expires_at)));
  });
  const pager = h('nav', { 'aria-label': 'Pool pages', class: 'actions' },
    cursors.length ? h('button', { type: 'button', class: 'secondary', onclick: () => { const prev = cursors.pop(); go(prev); } }, 'Previous page') : null,
    page.next_cursor ? h('button', { type: 'button', class: 'secondary', id: 'next-pools', onclick: () => { cursors.push(cursor); go(page.next_cursor); } }, 'Next page') : null);
  function go(c) {
    const next = new URLSearchParams(params);
    if (c) next.set('cursor', c); else next.delete('cursor');
    location.hash = `#/?${next}`;
  }
  fill(body, 
    items.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'pools' },
        h('caption', { class: 'visually-hidden' }, 'Pools, with their key counts'),
        h('thead', {}, h('tr', {}, ['Pool', 'Course', 'Status'].map((t) => h('th', { scope: 'col' }, t)),
          ['Total', 'Redeemed', 'Available'].map((t) => h('th', { scope: 'col', class: 'num' }, t)), h('th', { scope: 'col' }, 'Expires'))),
        h('tbody', {}, rows)))
      : h('p', {}, search || status
        ? (page.next_cursor ? 'No pools match here yet; more may follow on the next page.' : 'No pools match.')
        : 'No pools yet. Create one to start adding keys.'),
    pager);
  announce(`${items.length} pools shown`);
}

/** The course picker: search, choose, or create a course inline. */
function coursePicker(selectedId) {
  const find = h('input', { id: 'course-search', type: 'search', 'aria-describedby': 'course-search-hint' });
  const select = h('select', { id: 'course_id', name: 'course_id', required: true });
  const newTitle = h('input', { id: 'course-title', name: 'title', type: 'text' });
  const newUrl = h('input', { id: 'course-launch-url', name: 'launch_url', type: 'url', inputmode: 'url', placeholder: 'https://', 'aria-describedby': 'course-launch-url-hint', 'data-hint': 'course-launch-url-hint' });
  const status = h('p', { role: 'status', class: 'hint', id: 'course-picker-status' });
  async function load(chosen) {
    const q = new URLSearchParams({ limit: '50' });
    if (find.value.trim()) q.set('search', find.value.trim());
    try {
      const page = await api('GET', `/v1/courses?${q}`);
      fill(select, h('option', { value: '' }, page.items.length ? 'Choose a course' : 'No course matches'),
        page.items.map((c) => h('option', { value: c.course_id, selected: c.course_id === (chosen || select.value || selectedId) }, c.title)));
      status.textContent = `${page.items.length} courses found`;
    } catch (e) { status.textContent = e.message; }
  }
  let timer;
  find.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => load(), 250); });
  const create = h('button', { type: 'button', class: 'secondary', id: 'create-course', onclick: async () => {
    fieldError(newTitle, ''); fieldError(newUrl, '');
    try {
      const c = await api('POST', '/v1/courses', { title: newTitle.value.trim(), launch_url: newUrl.value.trim() || null });
      forgetCourses();
      find.value = '';
      await load(c.course_id);
      // A listing may lag behind the write that made the course: add it if it is missing.
      if (![...select.options].some((o) => o.value === c.course_id)) select.append(h('option', { value: c.course_id }, c.title));
      select.value = c.course_id;
      newTitle.value = '';
      newUrl.value = '';
      status.textContent = `Course “${c.title}” created and chosen.`;
      select.focus();
    } catch (e) {
      if (e.fields.launch_url) { fieldError(newUrl, e.fields.launch_url); newUrl.focus(); return; }
      fieldError(newTitle, e.fields.title || e.message); newTitle.focus();
    }
  } }, 'Create course');
  load();
  return h('fieldset', { class: 'stack card' }, h('legend', {}, 'Course'),
    h('label', { for: 'course-search' }, 'Find a course'),
    h('p', { class: 'hint', id: 'course-search-hint' }, 'Type part of the title; the list below updates.'),
    find,
    h('label', { for: 'course_id' }, 'Course of this pool'), select, status,
    h('label', { for: 'course-title' }, 'Or create a new course'), newTitle,
    h('label', { for: 'course-launch-url' }, 'Its launch URL (optional)'),
    h('p', { class: 'hint', id: 'course-launch-url-hint' }, 'Where the course runs (https); learners who launch go there with a signed token.'),
    h('div', { class: 'row' }, h('div', {}, newUrl), h('div', {}, create)));
}

/** Create (pool = null) or edit a pool. */
export async function poolFormView(main, pool, { embedded = false } = {}) {
  const now = new Date();
  const inDays = (d) => new Date(now.getTime() + d * 86400000);
  const alert = h('p', { class: 'alert', role: 'alert' });
  const field = (id, label, input, hint) => [
    h('label', { for: id }, label), hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null, input];
  const name = h('input', { id: 'name', name: 'name', type: 'text', required: true, value: pool ? pool.name : '' });
  const starts = h('input', { id: 'starts_at', name: 'starts_at', type: 'datetime-local', required: true,
    value: localInput(pool ? new Date(pool.starts_at) : now), 'aria-describedby': 'starts_at-hint', 'data-hint': 'starts_at-hint' });
  const expires = h('input', { id: 'expires_at', name: 'expires_at', type: 'datetime-local', required: true,
    value: localInput(pool ? new Date(pool.expires_at) : inDays(90)), 'aria-describedby': 'expires_at-hint', 'data-hint': 'expires_at-hint' });
  const days = h('input', { id: 'content_availability_days', name: 'content_availability_days', type: 'number', min: 1, max: 180, required: true,
    inputmode: 'numeric', value: pool ? pool.content_availability_days : 30, 'aria-describedby': 'content_availability_days-hint', 'data-hint': 'content_availability_days-hint' });
  const checkDays = () => {
    const n = Number(days.value);
    fieldError(days, Number.isInteger(n) && n >= 1 && n <= 180 ? '' : 'Content availability is a whole number of days from 1 to 180.');
  };
  days.addEventListener('input', checkDays);
  const checkDates = () => {
    fieldError(expires, starts.value && expires.value && new Date(expires.value) <= new Date(starts.value) ? 'Expires must be after Starts.' : '');
  };
  expires.addEventListener('change', checkDates);
  starts.addEventListener('change', checkDates);
  const picker = pool ? null : coursePicker();
  const form = h('form', { class: 'stack', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    alert.textContent = '';
    checkDays(); checkDates();
    if (!name.value.trim()) fieldError(name, 'Give the pool a name.');
    if (picker && !form.querySelector('#course_id').value) fieldError(form.querySelector('#course_id'), 'Choose or create a course.');
    const firstBad = form.querySelector('[aria-invalid="true"]');
    if (firstBad) { firstBad.focus(); return; }
    const body = {
      name: name.value.trim(),
      starts_at: new Date(starts.value).toISOString(),
      expires_at: new Date(expires.value).toISOString(),
      content_availability_days: Number(days.value),
    };
    try {
      if (pool) {
        await api('PATCH', `/v1/pools/${encodeURIComponent(pool.pool_id)}`, body);
        announce('Pool saved.');
        location.hash = `#/pools/${encodeURIComponent(pool.pool_id)}/settings`;
        dispatchEvent(new HashChangeEvent('hashchange'));
      } else {
        body.course_id = form.querySelector('#course_id').value;
        const p = await api('POST', '/v1/pools', body);
        location.hash = `#/pools/${encodeURIComponent(p.pool_id)}/keys`;
      }
    } catch (e) { showApiError(form, e, alert); }
  } },
  field('name', 'Pool name', name),
  picker,
  field('starts_at', 'Starts', starts, `Your time zone: ${zone}. Learners can redeem from this moment.`),
  field('expires_at', 'Expires', expires, `Your time zone: ${zone}. Keys cannot be redeemed from this moment.`),
  field('content_availability_days', 'Content availability (days)', days, 'How long a learner keeps the course after redeeming: 1 to 180 days.'),
  h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'save-pool' }, pool ? 'Save changes' : 'Create pool')));
  const nodes = [alert, form];
  if (embedded) return nodes;
  main.replaceChildren(h('h1', {}, 'Create a pool'), ...nodes);
  return nodes;
}
