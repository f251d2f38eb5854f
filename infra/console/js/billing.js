// Assignments and billing: the month's invoice (totals, lines, CSV) and cancelling a redemption.
import { api, can, download } from './api.js';
import { h, when, fieldError, confirmDialog, announce, fill } from './dom.js';
import { monthsChart } from './charts.js';

/** The last 12 months' redemptions, beside the invoices (the same events, counted apart). */
function monthsSection() {
  const body = h('div', { id: 'months-body', 'aria-busy': 'true' }, h('p', {}, 'Loading…'));
  const box = h('section', { class: 'card', id: 'months', 'aria-labelledby': 'h-months' }, h('h2', { id: 'h-months' }, 'The last 12 months'), body);
  api('GET', '/v1/stats/redemptions?months=12').then((r) => {
    fill(body, r.months.some((m) => m.redeemed || m.cancelled) ? monthsChart(r.months) : h('p', { id: 'months-empty' }, 'No redemptions in the last 12 months.'),
      h('p', { class: 'hint' }, 'Counted from the same redemptions as the invoices, a moment behind them; the invoice is the account of record.'));
  }).catch((e) => fill(body, h('p', { class: 'alert', id: 'months-error' }, `The months could not be loaded: ${e.message}`)))
    .finally(() => body.removeAttribute('aria-busy'));
  return box;
}

const REFUSED = {
  assignment_launched: 'The learner has already launched the course, so this redemption can no longer be cancelled.',
  cancellation_window_passed: 'Redemptions can be cancelled only within 24 hours; this one is older.',
  assignment_cancelled: 'This redemption was already cancelled.',
  assignment_not_found: 'No assignment with this id in your organization.',
  cancellation_contended: 'The assignment is changing right now; try again in a moment.',
};

export async function billingView(main) {
  const now = new Date();
  const thisMonth = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
  const month = h('input', { id: 'month', name: 'month', type: 'month', value: thisMonth, required: true, 'aria-describedby': 'month-hint', 'data-hint': 'month-hint' });
  const live = h('p', { role: 'status', id: 'billing-status' });
  const invoice = h('div', { id: 'invoice' });
  const cancelId = h('input', { id: 'cancel-id', name: 'assignment_id', type: 'text', autocomplete: 'off', spellcheck: 'false' });

  async function cancel(id) {
    if (!(await confirmDialog('Cancel this redemption?', 'The learner loses the course, the key becomes available again and the invoice gets a credit.', 'Cancel redemption'))) return false;
    try {
      await api('POST', `/v1/assignments/${encodeURIComponent(id)}/cancel`);
      live.textContent = 'Redemption cancelled; the key is available again.';
      return true;
    } catch (e) {
      live.textContent = REFUSED[e.code] || e.message;
      return false;
    }
  }

  // The lines a page at a time with the API's cursor; the CSV always has the whole month.
  const pages = [];
  let cursor = '';
  async function load(c = cursor) {
    fieldError(month, '');
    cursor = c;
    const q = new URLSearchParams({ limit: '100' });
    if (c) q.set('cursor', c);
    let inv;
    try { inv = await api('GET', `/v1/invoices/${month.value}?${q}`); } catch (e) { fieldError(month, e.fields.month || e.message); return; }
    const first = pages.length * 100 + 1;
    fill(invoice, 
      h('div', { class: 'counts' },
        h('div', {}, 'Billable lines', h('strong', { id: 'invoice-count' }, inv.count)),
        h('div', {}, 'Redemptions', h('strong', {}, inv.redemptions)),
        h('div', {}, 'Credits', h('strong', {}, inv.credits))),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', id: 'invoice-csv', onclick: async () => {
        try { await download(`/v1/invoices/${month.value}.csv`, `invoice-${month.value}.csv`); live.textContent = 'Invoice CSV downloaded.'; } catch (e) { live.textContent = e.message; }
      } }, 'Download CSV')),
      inv.lines.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', id: 'invoice-lines' },
        h('caption', { class: 'visually-hidden' }, `Invoice lines of ${month.value}`),
        h('thead', {}, h('tr', {}, ['Redeemed at', 'Learner', 'Key', 'Pool', 'Kind', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, inv.lines.map((l) => h('tr', {},
          h('td', { 'data-label': 'Redeemed at' }, when(l.redeemed_at)),
          h('td', { 'data-label': 'Learner' }, l.learner),
          h('td', { 'data-label': 'Key', class: 'key' }, l.key),
          h('td', { 'data-label': 'Pool' }, h('a', { href: `#/pools/${encodeURIComponent(l.pool_id)}/keys` }, l.pool_id)),
          h('td', { 'data-label': 'Kind' }, l.cancelled_at ? `${l.kind} (cancelled)` : l.kind),
          h('td', { 'data-label': 'Action' }, l.kind === 'redemption' && !l.cancelled_at && can.change()
            ? h('button', { type: 'button', class: 'secondary', 'aria-label': `Cancel redemption of key ${l.key}`, onclick: async () => { if (await cancel(l.assignment_id)) load(); } }, 'Cancel') : '—')))))) : h('p', {}, 'No billable redemptions this month yet.'),
      inv.lines.length ? h('nav', { class: 'actions', 'aria-label': 'Invoice pages' },
        h('p', { class: 'hint', id: 'invoice-range' }, `Lines ${first.toLocaleString()} to ${(first + inv.lines.length - 1).toLocaleString()} of ${(inv.redemptions + inv.credits).toLocaleString()}; the CSV has them all.`),
        pages.length ? h('button', { type: 'button', class: 'secondary', id: 'prev-lines', onclick: () => load(pages.pop()) }, 'Previous lines') : null,
        inv.next_cursor ? h('button', { type: 'button', class: 'secondary', id: 'next-lines', onclick: () => { pages.push(cursor); load(inv.next_cursor); } }, 'Next lines') : null) : null);
    announce(`Invoice of ${month.value}: ${inv.count} lines${inv.lines.length ? `, showing ${first} to ${first + inv.lines.length - 1}` : ''}.`);
  }

  main.replaceChildren(
    h('h1', {}, 'Assignments and billing'),
    monthsSection(),
    h('form', { class: 'row card', onsubmit: (ev) => { ev.preventDefault(); pages.length = 0; load(''); } },
      h('div', {}, h('label', { for: 'month' }, 'Month'), h('p', { class: 'hint', id: 'month-hint' }, 'Months are counted in UTC.'), month),
      h('div', {}, h('button', { type: 'submit' }, 'Show invoice'))),
    live, invoice,
    !can.change() ? null : h('section', { class: 'card', 'aria-labelledby': 'h-cancel' }, h('h2', { id: 'h-cancel' }, 'Cancel a redemption'),
      h('p', { class: 'hint' }, 'Allowed within 24 hours of the redemption and before the learner launches the course.'),
      h('form', { class: 'row', onsubmit: async (ev) => { ev.preventDefault(); if (!cancelId.value.trim()) { fieldError(cancelId, 'Enter an assignment id.'); return; } fieldError(cancelId, ''); if (await cancel(cancelId.value.trim())) load(); } },
        h('div', {}, h('label', { for: 'cancel-id' }, 'Assignment id'), cancelId),
        h('div', {}, h('button', { type: 'submit', class: 'danger' }, 'Cancel redemption')))));
  await load('');
}
