// The learner's page: redeem a key (deep link /redeem?key=...), see the result, launch courses.
import { api, token, setToken, claims, config } from './api.js';
import { h, $, when, fieldError, fill } from './dom.js';
import { oidcStart, demoOffered } from './signin.js';

const form = $('#redeem-form');
const input = $('#key');
const button = $('#redeem-button');
const result = $('#result');
let busy = false;

function showResult(kind, ...content) {
  result.className = `result ${kind}`;
  fill(result, ...content);
}

function launchButton(a) {
  return h('button', { type: 'button', onclick: () => launch(a) }, 'Launch course');
}

/** The course's title, or its id for an assignment made before titles were kept. */
function courseName(a) {
  return a.course_title || `Course ${a.course_id}`;
}

async function launch(a) {
  try {
    const r = await api('POST', `/v1/me/assignments/${encodeURIComponent(a.assignment_id)}/launch`);
    if (r.launch) {
      // The course runs elsewhere: go there, with the signed token that lets the learner in.
      showResult('success', h('p', {}, `Opening ${courseName(r)}…`));
      location.assign(r.launch.url);
      return;
    }
    showResult('success', h('p', {}, `${courseName(r)} launched (launch ${r.launch_count}). Available until ${when(r.expires_at)}.`));
  } catch (e) {
    const msg = e.code === 'assignment_expired'
      ? `Your access to this course ended on ${when(e.details.expires_at)}.`
      : e.code === 'assignment_cancelled' ? 'This assignment was cancelled by your training administrator.' : e.message;
    showResult('error', h('p', {}, msg));
  }
}

/** Crockford base32, the generated keys' alphabet. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * True when `text` is a generated key (20 symbols of the alphabet, spaces and dashes aside)
 * whose last symbol, the check symbol, does not match the others: public arithmetic, the
 * same the server does (`acc = x·acc + s` in GF(32)), so the learner hears of the typo
 * before anything is sent.
 */
export function mistypedGeneratedKey(text) {
  const symbols = text.toUpperCase().replace(/[ -]/g, '');
  if (symbols.length !== 20) return false;
  let acc = 0;
  for (const c of symbols) {
    const v = ALPHABET.indexOf(c);
    if (v < 0) return false;
    const shifted = acc << 1;
    acc = ((shifted & 0x20) ? (shifted ^ 0x25) & 0x1f : shifted) ^ v;
  }
  return acc !== 0;
}

const TYPO = 'This key has a typo: its last symbol does not match the others. Compare each symbol with the key you received.';

function redeemError(e) {
  switch (e.code) {
    case 'key_mistyped':
      return TYPO;
    case 'invalid_input':
    case 'invalid_key':
      return 'That is not a valid key. Check each character and try again.';
    case 'key_already_redeemed':
      return 'This key has already been redeemed by someone else. Ask your training administrator for a new key.';
    case 'pool_not_active': {
      const d = e.details || {};
      const now = Date.now();
      if (d.starts_at && Date.parse(d.starts_at) > now) return `This key cannot be used yet. It opens on ${when(d.starts_at)}.`;
      if (d.expires_at && Date.parse(d.expires_at) <= now) return `This key expired on ${when(d.expires_at)}.`;
      return 'This key’s course offer has been closed by your training administrator.';
    }
    case 'throttled': {
      const s = Number(e.retryAfter) || 60;
      const m = Math.ceil(s / 60);
      return `Too many attempts with keys that did not work. Please wait ${s >= 120 ? `${m} minutes` : `${s} seconds`} before trying again.`;
    }
    default:
      return e.message;
  }
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  // One redemption however often the button is pressed: ignore submits while one is in flight.
  if (busy) return;
  const key = input.value.trim();
  if (!key) { fieldError(input, 'Enter the key you received.'); input.focus(); return; }
  if (mistypedGeneratedKey(key)) {
    showResult('error', h('p', {}, TYPO));
    fieldError(input, 'A symbol of this key is mistyped.');
    input.focus();
    return;
  }
  fieldError(input, '');
  busy = true;
  button.disabled = true;
  showResult('', h('p', {}, 'Redeeming…'));
  try {
    const a = await api('POST', '/v1/redemptions', { key });
    const again = a._status === 200;
    showResult('success',
      h('p', { class: 'ok' }, again ? 'You had already redeemed this key: here is your course.' : 'Key redeemed. Your course is ready.'),
      h('p', {}, `Course: ${a.course_title || a.course_id}. Available until ${when(a.expires_at)}.`),
      launchButton(a));
    loadAssignments();
  } catch (e) {
    showResult('error', h('p', {}, redeemError(e)));
    if (['invalid_key', 'invalid_input'].includes(e.code)) fieldError(input, 'Not a valid key.');
    if (e.code === 'key_mistyped') fieldError(input, 'A symbol of this key is mistyped.');
  } finally {
    busy = false;
    button.disabled = false;
  }
});

async function loadAssignments() {
  const box = $('#assignments');
  try {
    const page = await api('GET', '/v1/me/assignments');
    if (!page.items.length) { fill(box, h('p', {}, 'No courses yet. Redeem a key to get one.')); return; }
    fill(box, h('ul', { class: 'plain', id: 'assignment-list' }, page.items.map((a) => h('li', { class: 'card' },
      h('p', {}, h('strong', {}, courseName(a))),
      h('p', {}, a.valid ? `Available until ${when(a.expires_at)}` : a.cancelled_at ? 'Cancelled' : `Ended ${when(a.expires_at)}`),
      a.valid ? launchButton(a) : null))));
  } catch (e) {
    fill(box, h('p', { class: 'alert' }, e.message));
  }
}

function showSignedIn() {
  $('#signin').hidden = true;
  $('#redeem').hidden = false;
  $('#signout').hidden = false;
  const key = new URLSearchParams(location.search).get('key');
  if (key && !input.value) input.value = key;
  loadAssignments();
}

async function start() {
  const cfg = await config();
  $('#signout').addEventListener('click', () => { setToken(null); location.reload(); });
  const c = claims();
  if (token() && c && c.role === 'learner') { showSignedIn(); return; }
  $('#signin').hidden = false;
  if (cfg.mode === 'oidc') {
    const go = h('button', { type: 'button', id: 'oidc-learner' }, 'Sign in');
    go.addEventListener('click', () => oidcStart(cfg, location.pathname + location.search));
    $('#signin .actions').append(go);
  }
  if (demoOffered(cfg)) {
    const demo = $('#demo-learner');
    demo.hidden = false;
    demo.addEventListener('click', async () => {
      const s = await api('POST', '/local/session', { role: 'learner' });
      setToken(s.token);
      showSignedIn();
      input.focus();
    });
  }
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('#token-input');
    setToken(t.value.trim());
    const cl = claims();
    if (!cl || cl.role !== 'learner') { setToken(null); fieldError(t, 'This is not a learner token.'); t.focus(); return; }
    showSignedIn();
  });
}

start();
