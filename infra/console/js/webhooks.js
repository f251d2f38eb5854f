// Webhooks: the organization's endpoints (add, edit, enable and disable, remove), their
// signing secret shown once after it is made, a test event, and each endpoint's delivery log
// with redelivery. Admins only (shared/src/http/access.rs).
import { api } from './api.js';
import { h, when, fieldError, clearErrors, confirmDialog, announce, sleep, fill } from './dom.js';

/** The events an endpoint may take, with what each means. */
const EVENTS = [
  ['assignment.created', 'A learner redeemed a key.'],
  ['assignment.cancelled', 'A redemption was cancelled.'],
  ['assignment.launched', 'A learner launched the course.'],
  ['job.finished', 'A generation or import of keys finished.'],
  ['export.finished', 'An export of keys finished.'],
];

const REFUSED = {
  webhook_not_found: 'This endpoint does not exist (or was removed meanwhile).',
  delivery_not_found: 'This delivery is no longer in the log.',
  too_many_webhooks: 'Your organization has as many endpoints as it may (20). Remove one first.',
  concurrent_update: 'The endpoint changed meanwhile. The page shows it as it is now; try again.',
};
const words = (e) => REFUSED[e.code] || e.message;

// A secret just made, for the endpoint's page to show once: set before going there.
let fresh = null;

/** The endpoint form, for a new endpoint (webhook = null) or to edit one. */
function endpointForm(webhook, onSaved) {
  const p = webhook ? 'edit' : 'new';
  const alert = h('p', { class: 'alert', role: 'alert' });
  const url = h('input', { id: `${p}-url`, name: 'url', type: 'url', inputmode: 'url', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'https://', value: webhook ? webhook.url : '', 'aria-describedby': `${p}-url-hint`, 'data-hint': `${p}-url-hint` });
  const description = h('input', { id: `${p}-description`, name: 'description', type: 'text', maxlength: 500,
    value: webhook ? webhook.description || '' : '' });
  const boxes = EVENTS.map(([name, meaning]) => h('input', { type: 'checkbox', id: `${p}-event-${name.replace('.', '-')}`, name: 'events', value: name,
    checked: webhook ? webhook.events.includes(name) : false }));
  const eventsError = h('p', { id: `${p}-events-error`, class: 'field-error', hidden: true });
  const events = h('fieldset', { class: 'events', id: `${p}-events` },
    h('legend', {}, 'Events to send'),
    eventsError,
    boxes.map((box, i) => h('label', { for: box.id }, box, ' ', h('code', {}, EVENTS[i][0]), h('span', { class: 'hint' }, ` ${EVENTS[i][1]}`))));
  const eventsProblem = (message) => {
    eventsError.textContent = message || '';
    eventsError.hidden = !message;
    if (message) events.setAttribute('aria-describedby', eventsError.id); else events.removeAttribute('aria-describedby');
  };
  const form = h('form', { class: 'stack', novalidate: true, 'aria-label': webhook ? 'Edit the endpoint' : 'Add an endpoint', onsubmit: async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    eventsProblem('');
    alert.textContent = '';
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    if (!url.value.trim()) fieldError(url, 'Enter the URL your receiver listens on.');
    if (!chosen.length) eventsProblem('Choose at least one event.');
    if (!url.value.trim() || !chosen.length) { (url.value.trim() ? boxes[0] : url).focus(); return; }
    const body = { url: url.value.trim(), events: chosen, description: description.value.trim() };
    try {
      const saved = webhook
        ? await api('PATCH', `/v1/webhooks/${encodeURIComponent(webhook.webhook_id)}`, body)
        : await api('POST', '/v1/webhooks', { ...body, description: body.description || undefined });
      onSaved(saved);
    } catch (e) {
      const f = e.fields;
      if (f.url) fieldError(url, f.url);
      if (f.description) fieldError(description, f.description);
      if (f.events) eventsProblem(f.events);
      if (f.url || f.description || f.events) {
        alert.textContent = 'Please correct the fields marked below.';
        (f.url ? url : f.description ? description : boxes[0]).focus();
      } else alert.textContent = words(e);
    }
  } },
  alert,
  h('label', { for: url.id }, 'Endpoint URL'),
  h('p', { class: 'hint', id: `${p}-url-hint` }, 'Where KeyPool posts the events: https, at a public address.'),
  url,
  h('label', { for: description.id }, 'Description (optional)'), description,
  events,
  h('div', { class: 'actions' }, h('button', { type: 'submit', id: `${p}-save` }, webhook ? 'Save changes' : 'Add endpoint')));
  return form;
}

/** The secret of an endpoint, just made: shown this once, with a copy button. */
function secretBox(webhook, secret, rotated) {
  // A textarea wraps the whole secret into view, however narrow the screen.
  const field = h('textarea', { id: 'webhook-secret', readonly: true, rows: 2, class: 'key', spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': 'webhook-secret-note' }, secret);
  const copied = h('p', { role: 'status', id: 'secret-copy-status' });
  const box = h('section', { class: 'card secret', id: 'secret-box', 'aria-labelledby': 'h-secret' },
    h('h2', { id: 'h-secret', tabindex: -1 }, rotated ? 'Your new signing secret' : 'Your signing secret'),
    h('p', { id: 'webhook-secret-note', class: 'warn' }, 'Copy it now and keep it where your receiver reads it: KeyPool shows it only this once.',
      rotated ? ' The previous secret keeps signing beside it for 24 hours, so your receiver can switch without missing a delivery.' : ''),
    h('label', { for: 'webhook-secret' }, 'Signing secret'),
    field,
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'copy-secret', onclick: async () => {
        try {
          await navigator.clipboard.writeText(secret);
          copied.textContent = 'Secret copied.';
        } catch {
          field.focus(); field.select();
          copied.textContent = 'The secret is selected: press Ctrl+C (or ⌘C) to copy it.';
        }
      } }, 'Copy secret'),
      h('button', { type: 'button', class: 'secondary', id: 'secret-done', onclick: () => {
        box.remove();
        announce('The secret is hidden, and will not be shown again.');
        document.querySelector('main h1')?.focus();
      } }, 'I have stored it')),
    copied);
  return box;
}

/** The list of endpoints and the form to add one. */
export async function webhooksView(main) {
  document.title = 'Webhooks · KeyPool console';
  const list = h('section', { id: 'webhooks', 'aria-labelledby': 'h-endpoints' }, h('p', {}, 'Loading endpoints…'));
  fill(main,
    h('h1', {}, 'Webhooks'),
    h('p', {}, 'KeyPool posts an event to each endpoint that takes it, signed with the endpoint’s secret (Standard Webhooks), and retries a failed delivery for three days.'),
    list,
    h('section', { class: 'card', 'aria-labelledby': 'h-add' }, h('h2', { id: 'h-add' }, 'Add an endpoint'),
      endpointForm(null, (saved) => {
        fresh = { webhook_id: saved.webhook_id, secret: saved.secret, rotated: false };
        location.hash = `#/webhooks/${encodeURIComponent(saved.webhook_id)}`;
      })));
  let items;
  try { ({ items } = await api('GET', '/v1/webhooks')); } catch (e) { fill(list, h('h2', { id: 'h-endpoints' }, 'Endpoints'), h('p', { class: 'alert', role: 'alert' }, words(e))); return; }
  fill(list, h('h2', { id: 'h-endpoints' }, 'Endpoints'), items.length
    ? h('ul', { class: 'plain', id: 'webhook-list' }, items.map((w) => h('li', { class: 'card' },
      h('p', {}, h('a', { href: `#/webhooks/${encodeURIComponent(w.webhook_id)}`, class: 'key' }, w.url), ' ', stateBadge(w)),
      w.description ? h('p', {}, w.description) : null,
      h('p', { class: 'hint' }, `Events: ${w.events.join(', ')}`),
      w.disabled_reason ? h('p', { class: 'alert' }, reasonWords(w)) : null)))
    : h('p', {}, 'No endpoints yet. Add one below to have KeyPool tell your systems what happens.'));
  announce(`${items.length} endpoint${items.length === 1 ? '' : 's'}`);
}

const stateBadge = (w) => h('span', { class: `badge ${w.enabled ? 'enabled' : 'disabled'}` }, w.enabled ? 'enabled' : 'disabled');
// The API's reason starts in lower case ("disabled by KeyPool: …"): a sentence here.
const reasonWords = (w) => `${w.disabled_reason.charAt(0).toUpperCase()}${w.disabled_reason.slice(1)}`;

/** An event's type, breaking only at its dot in a narrow column. */
const eventName = (type) => h('code', { class: 'event' }, type.split('.').flatMap((part, i) => (i ? [h('wbr'), `.${part}`] : [part])));

/** One endpoint: what it is, what can be done to it, and its delivery log. */
export async function webhookView(main, id) {
  const path = `/v1/webhooks/${encodeURIComponent(id)}`;
  let webhook;
  try { webhook = await api('GET', path); } catch (e) {
    fill(main, h('h1', {}, 'Webhook endpoint'), h('p', { class: 'alert', role: 'alert' }, words(e)), h('a', { href: '#/webhooks' }, 'Back to webhooks'));
    return;
  }
  document.title = 'Webhook endpoint · KeyPool console';
  const shown = fresh && fresh.webhook_id === webhook.webhook_id ? fresh : null;
  fresh = null;
  const live = h('p', { role: 'status', id: 'webhook-status' });
  const secretSlot = h('div', {}, shown ? secretBox(webhook, shown.secret, shown.rotated) : null);
  const facts = h('div', { id: 'webhook-facts' });
  const actions = h('div', { class: 'actions', id: 'webhook-actions' });
  const editSlot = h('div', {});
  const log = deliveryLog(path, live, () => webhook);

  function render() {
    fill(facts, h('dl', { class: 'facts' },
      h('dt', {}, 'URL'), h('dd', { class: 'key' }, webhook.url),
      h('dt', {}, 'State'), h('dd', { id: 'webhook-state' }, stateBadge(webhook),
        webhook.disabled_reason ? h('span', { class: 'alert' }, ` ${reasonWords(webhook)}`)
          : webhook.enabled ? null : ' It gets no events until it is enabled again.'),
      webhook.failing_since ? [h('dt', {}, 'Failing since'), h('dd', {}, when(webhook.failing_since))] : null,
      h('dt', {}, 'Events'), h('dd', { id: 'webhook-events' }, webhook.events.join(', ')),
      h('dt', {}, 'Description'), h('dd', {}, webhook.description || '—'),
      h('dt', {}, 'Added'), h('dd', {}, when(webhook.created_at))));
    fill(actions,
      webhook.enabled ? h('button', { type: 'button', id: 'send-test', onclick: sendTest }, 'Send test event') : null,
      h('button', { type: 'button', class: webhook.enabled ? 'secondary' : '', id: 'toggle-enabled', onclick: toggle }, webhook.enabled ? 'Disable' : 'Enable'),
      h('button', { type: 'button', class: 'secondary', id: 'rotate-secret', onclick: rotate }, 'Rotate secret'),
      h('button', { type: 'button', class: 'danger', id: 'delete-webhook', onclick: remove }, 'Remove endpoint'));
    fill(editSlot, endpointForm(webhook, (saved) => {
      webhook = saved;
      render();
      live.textContent = 'Endpoint saved.';
      document.getElementById('edit-save')?.focus();
    }));
    log.enabled();
  }

  async function sendTest() {
    try {
      const d = await api('POST', `${path}/test`);
      live.textContent = 'Test event sent; waiting for the answer…';
      await log.load('');
      const done = await log.follow(d.delivery_id, 0);
      if (done) live.textContent = outcome('Test event', done);
    } catch (e) { live.textContent = words(e); }
  }

  async function toggle() {
    const enabling = !webhook.enabled;
    if (!enabling && !(await confirmDialog('Disable this endpoint?', 'It gets no events while disabled; deliveries waiting for it are abandoned.', 'Disable'))) return;
    try {
      webhook = await api('PATCH', path, { enabled: enabling });
      render();
      live.textContent = enabling ? 'Endpoint enabled: it gets events again.' : 'Endpoint disabled: it gets no events.';
      document.getElementById('toggle-enabled').focus();
    } catch (e) { live.textContent = words(e); }
  }

  async function rotate() {
    if (!(await confirmDialog('Rotate the signing secret?', 'A new secret signs from now on, and is shown once. The current one keeps signing beside it for 24 hours.', 'Rotate secret'))) return;
    try {
      const r = await api('POST', `${path}/secret`);
      fill(secretSlot, secretBox(r, r.secret, true));
      live.textContent = 'A new secret was made. It is shown below this once.';
      document.getElementById('h-secret').focus();
    } catch (e) { live.textContent = words(e); }
  }

  async function remove() {
    if (!(await confirmDialog('Remove this endpoint?', `${webhook.url} will get no more events, and its waiting deliveries are abandoned. This cannot be undone.`, 'Remove endpoint'))) return;
    try {
      await api('DELETE', path);
      announce('Endpoint removed.');
      location.hash = '#/webhooks';
    } catch (e) { live.textContent = words(e); }
  }

  fill(main,
    h('p', {}, h('a', { href: '#/webhooks' }, '← All webhooks')),
    h('h1', { class: 'key' }, webhook.url),
    secretSlot,
    live,
    h('section', { class: 'card', 'aria-labelledby': 'h-endpoint' }, h('h2', { id: 'h-endpoint' }, 'Endpoint'), facts, actions),
    log.section,
    h('section', { class: 'card', 'aria-labelledby': 'h-edit' }, h('h2', { id: 'h-edit' }, 'Edit the endpoint'), editSlot));
  render();
  await log.load('');
  // A secret just made is what the admin must act on first.
  if (shown) main.dataset.focus = '#h-secret';
}

/** How a delivery's last attempt went, in a sentence. */
function outcome(what, d) {
  if (d.status === 'delivered') return `${what} delivered (HTTP ${d.last_status_code}).`;
  const answer = d.last_status_code ? `HTTP ${d.last_status_code}` : d.last_error || 'no answer';
  return d.status === 'failed' ? `${what} failed (${answer}); KeyPool gave up on it.`
    : `${what} not delivered (${answer}); next attempt ${when(d.next_attempt_at)}.`;
}

const STATUS_WORDS = { pending: 'pending', delivered: 'delivered', failed: 'failed' };

/** The delivery log of the endpoint at `path`: a status filter, pages, and a retry per row. */
function deliveryLog(path, live, current) {
  const filter = h('select', { id: 'delivery-status', name: 'status' },
    [['', 'All deliveries'], ['pending', 'Pending'], ['delivered', 'Delivered'], ['failed', 'Failed']].map(([v, t]) => h('option', { value: v }, t)));
  const table = h('div', { id: 'deliveries' });
  const pages = [];
  let cursor = '';
  let rows = [];
  async function load(c = cursor) {
    cursor = c;
    const q = new URLSearchParams({ limit: '20' });
    if (filter.value) q.set('status', filter.value);
    if (c) q.set('cursor', c);
    table.setAttribute('aria-busy', 'true');
    let page;
    try { page = await api('GET', `${path}/deliveries?${q}`); } catch (e) { fill(table, h('p', { class: 'alert' }, words(e))); return null; } finally { table.removeAttribute('aria-busy'); }
    rows = page.items;
    const enabled = current().enabled;
    fill(table,
      rows.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'delivery-table' },
        h('caption', { class: 'visually-hidden' }, 'Deliveries to this endpoint, newest first'),
        h('thead', {}, h('tr', {}, ['Event', 'Created', 'Status', 'Attempts', 'Last answer', 'Last attempt', 'Next attempt', 'Action'].map((t) => h('th', { scope: 'col', class: t === 'Attempts' ? 'num' : null }, t)))),
        h('tbody', {}, rows.map((d) => h('tr', { 'data-delivery': d.delivery_id },
          h('td', { 'data-label': 'Event' }, eventName(d.type)),
          h('td', { 'data-label': 'Created' }, when(d.created_at)),
          h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${d.status}` }, STATUS_WORDS[d.status] || d.status)),
          h('td', { 'data-label': 'Attempts', class: 'num' }, d.attempts),
          h('td', { 'data-label': 'Last answer' }, d.last_status_code ? `HTTP ${d.last_status_code}` : d.last_error || '—'),
          h('td', { 'data-label': 'Last attempt' }, when(d.last_attempt_at)),
          h('td', { 'data-label': 'Next attempt' }, d.status === 'pending' ? when(d.next_attempt_at) : '—'),
          h('td', { 'data-label': 'Action' }, enabled && d.attempts > 0
            ? h('button', { type: 'button', class: 'secondary', onclick: (ev) => retry(d, ev.currentTarget),
              // The visible words first, so that speaking them finds the button.
              'aria-label': `${d.status === 'delivered' ? 'Send again' : 'Retry now'}: ${d.type} of ${when(d.created_at)}` },
            d.status === 'delivered' ? 'Send again' : 'Retry now')
            : '—')))))) : h('p', {}, filter.value ? 'No deliveries with this status.' : 'No deliveries yet. Send a test event to see one here.'),
      h('nav', { class: 'actions', 'aria-label': 'Delivery pages' },
        pages.length ? h('button', { type: 'button', class: 'secondary', id: 'newer-deliveries', onclick: () => load(pages.pop()) }, 'Newer deliveries') : null,
        page.next_cursor ? h('button', { type: 'button', class: 'secondary', id: 'older-deliveries', onclick: () => { pages.push(cursor); load(page.next_cursor); } }, 'Older deliveries') : null));
    return page;
  }

  /** Reloads the log until delivery `id` has had more than `attempts` attempts (about 30 s at most). */
  async function follow(id, attempts) {
    for (let i = 0; i < 30 && table.isConnected; i++) {
      await sleep(i < 5 ? 400 : 1000);
      const page = await load(cursor);
      const d = page && page.items.find((x) => x.delivery_id === id);
      if (d && d.attempts > attempts) return d;
      if (d && d.status !== 'pending') return d;
    }
    return null;
  }

  async function retry(d, button) {
    try {
      await api('POST', `${path}/deliveries/${encodeURIComponent(d.delivery_id)}/retry`);
      live.textContent = `Sending ${d.type} again…`;
      const done = await follow(d.delivery_id, d.attempts);
      if (done) live.textContent = outcome(`Retry of ${d.type}`, done);
      // The row was drawn again: keep the keyboard where it was.
      const again = table.querySelector(`tr[data-delivery="${CSS.escape(d.delivery_id)}"] button`);
      (again || (button.isConnected ? button : filter)).focus();
    } catch (e) { live.textContent = words(e); }
  }

  filter.addEventListener('change', () => { pages.length = 0; load(''); });
  const section = h('section', { 'aria-labelledby': 'h-deliveries' }, h('h2', { id: 'h-deliveries' }, 'Deliveries'),
    h('div', { class: 'row' },
      h('div', {}, h('label', { for: 'delivery-status' }, 'Show'), filter),
      h('div', {}, h('button', { type: 'button', class: 'secondary', id: 'refresh-deliveries', onclick: async () => { await load(cursor); announce(`${rows.length} deliveries shown.`); } }, 'Refresh'))),
    table);
  // Retry buttons follow the endpoint's state: a disabled endpoint's deliveries are abandoned.
  return { section, load, follow, enabled: () => { if (rows.length) load(cursor); } };
}
