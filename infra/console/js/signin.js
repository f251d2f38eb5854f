// Sign-in: locally a pasted token, or the demo admin when the server offers it
// (config.json {mode: "local", demo: true}, `keypool-local serve --demo`); in AWS the OIDC
// provider's hosted login (authorization code with PKCE), configured by config.json
// {mode: "oidc", issuer, client_id, authorize_url, token_url}.
import { api, setToken, claims, STAFF } from './api.js';
import { h, fieldError, fill } from './dom.js';

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** Goes to the hosted login; the provider returns to `/`, which then goes on to `returnTo`. */
export async function oidcStart(cfg, returnTo = '/') {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem('keypool.pkce', JSON.stringify({ verifier, state, returnTo }));
  const url = new URL(cfg.authorize_url);
  Object.entries({ response_type: 'code', client_id: cfg.client_id, redirect_uri: `${location.origin}/`, scope: cfg.scope || 'openid',
    code_challenge: challenge, code_challenge_method: 'S256', state }).forEach(([k, v]) => url.searchParams.set(k, v));
  location.assign(url);
}

/** Why a hosted login came back without a sign-in: a message for the sign-in screen. */
export class SignInFailed extends Error {}

/**
 * Finishes a hosted login when the provider sent us back with ?code= (or ?error=); true when
 * signed in. A callback that fails throws SignInFailed, and stores no token: one whose state is
 * not the one this tab sent is someone else's login (login CSRF), so its code is never used.
 */
export async function oidcFinish(cfg) {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  if (cfg.mode !== 'oidc' || !(code || params.get('error'))) return false;
  const saved = JSON.parse(sessionStorage.getItem('keypool.pkce') || '{}');
  sessionStorage.removeItem('keypool.pkce');
  history.replaceState(null, '', '/');
  if (!saved.state || saved.state !== params.get('state')) throw new SignInFailed('This sign-in did not start here, so it was not used. Sign in again.');
  if (!code) throw new SignInFailed(`Your organization’s sign-in did not sign you in (${params.get('error')}). Sign in again.`);
  const res = await fetch(cfg.token_url, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: cfg.client_id, code, redirect_uri: `${location.origin}/`, code_verifier: saved.verifier }) })
    .catch(() => null);
  const t = res && res.ok ? await res.json().catch(() => ({})) : {};
  if (!(t.id_token || t.access_token)) throw new SignInFailed('The sign-in could not be completed. Sign in again.');
  setToken(t.id_token || t.access_token);
  if (saved.returnTo && saved.returnTo !== '/') { location.replace(saved.returnTo); return false; }
  return true;
}

/** Whether this server signs in demo users (`keypool-local serve --demo`). */
export function demoOffered(cfg) { return cfg.mode === 'local' && cfg.demo === true; }

/** The sign-in screen, with why the last sign-in failed if it did; calls done() once a token is stored. */
export function signInView(main, cfg, done, failure = '') {
  const alert = h('p', { class: 'alert', role: 'alert' }, failure || null);
  const area = h('textarea', { id: 'token', name: 'token', rows: 4, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-hint', 'data-hint': 'token-hint' });
  const form = h('form', { class: 'stack card', onsubmit: (ev) => {
    ev.preventDefault();
    setToken(area.value.trim());
    const c = claims();
    if (!c || !STAFF.includes(c.role)) { setToken(null); fieldError(area, 'This is not a token of an organization’s staff (admin, viewer or finance). Print one with: keypool-local token --org ORG --role admin --sub YOU'); area.focus(); return; }
    done();
  } },
  h('label', { for: 'token' }, 'Admin token'),
  h('p', { class: 'hint', id: 'token-hint' }, 'Paste a token printed by keypool-local token, or one your identity provider issued.'),
  area,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: demoOffered(cfg) ? 'secondary' : '' }, 'Sign in with this token')));
  let other = null;
  if (cfg.mode !== 'local') {
    other = h('div', { class: 'card' }, h('button', { type: 'button', onclick: () => oidcStart(cfg) }, 'Sign in with your organization'));
  } else if (demoOffered(cfg)) {
    const demo = (role, label) => h('button', { type: 'button', id: `demo-${role}`, class: role === 'admin' ? '' : 'secondary', onclick: async () => {
      try { const s = await api('POST', '/local/session', { role }); setToken(s.token); done(); } catch (e) { alert.textContent = e.message; }
    } }, label);
    other = h('div', { class: 'card' }, h('p', {}, 'This is a demo server: you can sign in as one of the demo organization’s staff.'),
      h('div', { class: 'actions' }, demo('admin', 'Sign in as demo admin'), demo('viewer', 'Sign in as demo viewer'), demo('finance', 'Sign in as demo finance')));
  }
  fill(main, h('h1', {}, 'Sign in to the KeyPool console'), alert, other, form,
    h('p', {}, 'Learners: ', h('a', { href: '/redeem' }, 'redeem a key here'), '.'));
}
