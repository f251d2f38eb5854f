// The one door to the JSON API: adds the token, and turns the API's error shape
// ({"error": {"code", "message", "details"}}) into an ApiError with a plain-words message.

const TOKEN = 'keypool.token';

export function token() { return sessionStorage.getItem(TOKEN); }
export function setToken(t) { if (t) sessionStorage.setItem(TOKEN, t); else sessionStorage.removeItem(TOKEN); }

/** The claims of the stored token (not verified: the API does that), or null. */
export function claims() {
  const t = token();
  if (!t) return null;
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch { return null; }
}

/** The roles of an organization's staff, who use the console. */
export const STAFF = ['admin', 'viewer', 'finance'];

/**
 * What the signed-in role may do, so that the console shows nothing it would be refused (the
 * API decides; this follows its table in shared/src/http/access.rs): admins everything,
 * viewers read pools, keys and exports' status, finance only invoices; all three read the
 * activity (the audit log); webhooks are admins'.
 */
export const can = {
  change: () => claims()?.role === 'admin',
  webhooks: () => claims()?.role === 'admin',
  readPools: () => ['admin', 'viewer'].includes(claims()?.role),
  download: () => claims()?.role === 'admin',
};

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.retryAfter = retryAfter;
  }
  /** Per-field messages of a 400 invalid_input, as {field: message}. */
  get fields() { return (this.details && this.details.fields) || {}; }
}

const PLAIN = {
  unauthenticated: 'You are not signed in, or your sign-in has expired. Sign in again.',
  forbidden_role: 'Your role does not allow this.',
  pool_not_found: 'This pool does not exist (or belongs to another organization).',
  course_not_found: 'This course does not exist.',
  key_not_found: 'This key is not in the pool.',
  key_redeemed: 'This key has been redeemed, so it cannot be removed.',
  invalid_key: 'That is not a valid key. Check it and try again.',
  key_already_redeemed: 'This key has already been redeemed by someone else.',
  payload_too_large: 'That is too much at once. Split it into smaller parts.',
};

/** Refusals that pass with time: the plain words, then the wait (from Retry-After). */
const WAIT = {
  throttled: 'Too many failed attempts.',
  rate_limited: 'Too many requests right now.',
  store_busy: 'The service is busy right now.',
  collision_budget_spent: 'Too many keys collided with existing ones recently.',
  too_many_jobs: 'Your organization has too many jobs running.',
};

/** "Try again in 2 minutes." for a wait in seconds (a guess of a minute when none is given). */
export function waitWords(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 60));
  if (s < 90) return `Try again in ${s} second${s === 1 ? '' : 's'}.`;
  const m = Math.ceil(s / 60);
  return `Try again in ${m} minute${m === 1 ? '' : 's'}.`;
}

/** Calls the API; resolves to the parsed JSON (or null for 204), rejects with ApiError. */
export async function api(method, path, body, { text = false } = {}) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload;
  if (body !== undefined) {
    if (text) { headers['Content-Type'] = 'text/plain'; payload = body; }
    else { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached. Check that it is running and try again.');
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (res.ok) return { ...data, _status: res.status };
  const e = (data && data.error) || {};
  const retry = Number(res.headers.get('Retry-After')) || (e.details && e.details.retry_after_seconds);
  const waiting = WAIT[e.code] || (res.status === 429 || res.status === 503 ? 'The service is busy right now.' : null);
  const message = waiting ? `${waiting} ${waitWords(retry)}`
    : PLAIN[e.code] || e.message || `The server answered ${res.status}.`;
  if (res.status === 401 && t) window.dispatchEvent(new CustomEvent('keypool:signed-out'));
  throw new ApiError(res.status, e.code || 'error', message, e.details, retry);
}

/** Downloads an authorized URL as a file (the browser cannot send the token on a plain link). */
export async function download(path, fileName) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (!res.ok) {
    const data = await res.json().catch(() => ({}));
    throw new ApiError(res.status, data.error?.code, data.error?.message || 'The download failed.');
  }
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url; a.download = fileName;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** The console's settings: {mode: "local"} here, OIDC settings in AWS. */
export async function config() {
  const res = await fetch('/console/config.json');
  return res.ok ? res.json() : { mode: 'local' };
}

let courses;
/** Course titles by id (one listing per page load); ids stay shown when the listing fails. */
export async function courseTitles() {
  if (!courses) {
    courses = api('GET', '/v1/courses?limit=1000')
      .then((page) => new Map(page.items.map((c) => [c.course_id, c.title])))
      .catch(() => new Map());
  }
  return courses;
}
export function forgetCourses() { courses = undefined; }
