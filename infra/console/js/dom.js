// Small DOM helpers: build elements without innerHTML (no injection), show errors by fields,
// format dates with the time zone spelled out.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** A timestamp as the reader's local time with the zone named, e.g. "3 Dec 2026, 14:05 (Europe/Paris)". */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return `${d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })} (${zone})`;
}

/** A Date as the value of an <input type=datetime-local>, in local time. */
export function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** Shows an error next to its field: the field gets aria-invalid and aria-describedby. */
export function fieldError(input, message) {
  const id = `${input.id}-error`;
  let slot = document.getElementById(id);
  if (!slot) {
    slot = h('p', { id, class: 'field-error' });
    input.insertAdjacentElement('afterend', slot);
  }
  slot.textContent = message || '';
  slot.hidden = !message;
  if (message) {
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', [input.dataset.hint, id].filter(Boolean).join(' '));
  } else {
    input.removeAttribute('aria-invalid');
    if (input.dataset.hint) input.setAttribute('aria-describedby', input.dataset.hint);
    else input.removeAttribute('aria-describedby');
  }
}

/** Clears every field error in a form. */
export function clearErrors(form) {
  for (const el of form.querySelectorAll('[aria-invalid]')) fieldError(el, '');
}

/**
 * Shows an ApiError: per-field messages next to their inputs (by name), the rest in `alert`.
 * Returns true when at least one field took a message.
 */
export function showApiError(form, err, alert) {
  let placed = false;
  for (const [name, message] of Object.entries(err.fields || {})) {
    const input = form && form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input) { fieldError(input, message); placed = true; }
  }
  if (alert) alert.textContent = placed ? 'Please correct the fields marked below.' : err.message;
  const first = form && form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
  return placed;
}

/**
 * A modal confirmation: a native <dialog> keeps focus inside; on close focus returns to the
 * element that opened it. Resolves true when confirmed.
 */
export function confirmDialog(title, text, confirmLabel) {
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const dlg = h('dialog', { 'aria-labelledby': titleId, class: 'dialog' },
      h('h2', { id: titleId }, title),
      h('p', {}, text),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', value: 'no', onclick: () => dlg.close('no') }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', value: 'yes', onclick: () => dlg.close('yes') }, confirmLabel)));
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(dlg.returnValue === 'yes');
    });
    document.body.append(dlg);
    dlg.showModal();
    dlg.querySelector('button.secondary').focus();
  });
}

/** Announces text in the page's polite live region. */
export function announce(text) {
  const live = document.getElementById('announcer');
  if (live) { live.textContent = ''; setTimeout(() => { live.textContent = text; }, 30); }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Replaces an element's children, skipping null and false (which replaceChildren would print). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}
