// The admin console: a hash router over the screens, and sign-in.
import { token, setToken, claims, config, can, STAFF } from './api.js';
import { $ } from './dom.js';
import { signInView, oidcFinish, SignInFailed } from './signin.js';
import { poolsView, poolFormView } from './pools.js';
import { poolView } from './pool.js';
import { billingView } from './billing.js';
import { coursesView } from './courses.js';
import { webhooksView, webhookView } from './webhooks.js';
import { activityView } from './activity.js';

const main = $('#main');
let cfg = { mode: 'local' };
// Why the hosted login that brought us here failed, shown once on the sign-in screen.
let failure = '';

function signedIn() { const c = claims(); return token() && c && STAFF.includes(c.role) && (!c.exp || c.exp * 1000 > Date.now()); }

async function route() {
  const nav = $('#nav');
  if (!signedIn()) {
    nav.hidden = true;
    document.title = 'Sign in · KeyPool console';
    signInView(main, cfg, () => { location.hash = '#/'; route(); }, failure);
    failure = '';
    return;
  }
  nav.hidden = false;
  // Finance reads invoices and activity: the pools and courses are not theirs to see.
  $('#nav-pools').parentElement.hidden = !can.readPools();
  $('#nav-courses').parentElement.hidden = !can.readPools();
  $('#nav-webhooks').parentElement.hidden = !can.webhooks();
  let path = location.hash.replace(/^#/, '') || '/';
  const query = new URLSearchParams(path.split('?')[1] || '');
  const activity = path === '/activity' || path.startsWith('/activity?');
  // Finance reads the invoices and the activity, nothing else.
  if (!can.readPools() && !activity) path = '/billing';
  // Webhooks are an admin's alone; anyone else lands on their first page.
  else if (path.startsWith('/webhooks') && !can.webhooks()) path = '/';
  for (const a of nav.querySelectorAll('a')) a.removeAttribute('aria-current');
  let m;
  if (activity) { $('#nav-activity').setAttribute('aria-current', 'page'); await activityView(main, query); }
  else if (path === '/billing') { $('#nav-billing').setAttribute('aria-current', 'page'); await billingView(main); }
  else if (path === '/courses') { $('#nav-courses').setAttribute('aria-current', 'page'); await coursesView(main); }
  else if (path === '/webhooks') { $('#nav-webhooks').setAttribute('aria-current', 'page'); await webhooksView(main); }
  else if ((m = path.match(/^\/webhooks\/([^/?]+)$/))) { $('#nav-webhooks').setAttribute('aria-current', 'page'); await webhookView(main, decodeURIComponent(m[1])); }
  else if (path === '/pools/new') { await poolFormView(main, null); }
  else if ((m = path.match(/^\/pools\/([^/?]+)(?:\/(\w+))?(?:\?(.*))?$/))) {
    await poolView(main, decodeURIComponent(m[1]), m[2] || 'keys', new URLSearchParams(m[3] || ''));
  }
  else { $('#nav-pools').setAttribute('aria-current', 'page'); await poolsView(main, query); }
  // Move focus to the new screen's heading so keyboard and screen-reader users land on it (or
  // to what the screen asks for first, such as a secret shown once).
  const h1 = main.querySelector('h1');
  if (h1) h1.tabIndex = -1;
  const first = (main.dataset.focus && main.querySelector(main.dataset.focus)) || h1;
  delete main.dataset.focus;
  if (first) first.focus({ preventScroll: false });
}

window.addEventListener('hashchange', route);
window.addEventListener('keypool:signed-out', () => { setToken(null); route(); });
$('#signout').addEventListener('click', () => { setToken(null); location.hash = '#/'; route(); });

(async () => {
  cfg = await config();
  try { await oidcFinish(cfg); } catch (e) { if (!(e instanceof SignInFailed)) throw e; failure = e.message; }
  route();
})();
