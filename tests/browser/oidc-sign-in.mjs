// An admin's sign-in through an OIDC provider (the fake one of oidc-provider.mjs): the
// authorization code flow with PKCE under the CSP that AWS sends, a forged state refused, and
// a token endpoint that cannot be reached.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

import { axe, check, mintToken, opened, root } from './harness.mjs';
import { b64url, startProvider } from './oidc-provider.mjs';

/** The OIDC step of the walk: `admin` is a page of the console at `base` in `context`. */
export async function signInThroughOidc({ base, context, admin }) {
  // Another organization than the demo one, with a pool of its own, so the pools page shows
  // whose token the console holds.
  const minted = await mintToken('oidc-org', 'admin', 'oidc-admin');
  const asOidc = async (method, path, body) => {
    const res = await admin.request.fetch(`${base}${path}`, { method, headers: { Authorization: `Bearer ${minted}` }, data: body });
    assert.ok(res.ok(), `${method} ${path}: ${res.status()} ${await res.text()}`);
    return res.json();
  };
  const crane = await asOidc('POST', '/v1/courses', { title: 'Crane signals' });
  await asOidc('POST', '/v1/pools', { name: 'Harbour cranes', course_id: crane.course_id, starts_at: '2021-01-01T08:00:00Z', expires_at: '2099-06-01T08:00:00Z', content_availability_days: 30 });

  const clientId = 'keypool-console-test';
  const provider = await startProvider({ clientId, redirectUri: `${base}/`, idToken: minted });
  opened.provider = provider;
  const tokenUrl = `${provider.origin}/token`;
  const oidcConfig = { mode: 'oidc', issuer: provider.origin, client_id: clientId, authorize_url: `${provider.origin}/authorize`, token_url: tokenUrl };
  // The local server's CSP allows connect-src 'self' only; in AWS, CloudFront sends the same
  // policy with the token endpoint added (template.yaml). The console runs here under that one.
  const localCsp = (await admin.request.get(`${base}/`)).headers()['content-security-policy'];
  const templateCsp = readFileSync(join(root, 'template.yaml'), 'utf8').match(/ContentSecurityPolicy: !Sub "([^"]+)"/)[1];
  assert.equal(templateCsp.replace(' ${OidcTokenUrl}', ''), localCsp, 'the AWS CSP is the local one plus the token endpoint');
  const awsCsp = templateCsp.replace('${OidcTokenUrl}', tokenUrl);

  /** A tab (fresh sessionStorage) whose console is configured as in AWS, recording what it sends. */
  // A document a route answers has no address, so Chromium's local network access checks
  // treat the console as public and refuse its fetch to the loopback provider without this.
  await context.grantPermissions(['local-network-access'], { origin: base });
  const oidcPage = async () => {
    const page = await context.newPage();
    const seen = { navigations: [], api: [] };
    page.on('request', (r) => {
      if (r.isNavigationRequest() && r.frame() === page.mainFrame()) seen.navigations.push(r.url());
      if (new URL(r.url()).pathname.startsWith('/v1/')) seen.api.push(r);
    });
    await page.route(`${provider.origin}/**`, (route) => route.continue());
    // Playwright does not route the request a redirect leads to, so the callback document
    // would miss the AWS CSP: the provider's 302 becomes a meta refresh, a new navigation.
    await page.route((url) => url.origin === provider.origin && url.pathname === '/authorize', async (route) => {
      const res = await route.fetch({ maxRedirects: 0 });
      if (res.status() !== 302) return route.fulfill({ response: res });
      const to = res.headers().location.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
      return route.fulfill({ contentType: 'text/html', body: `<!doctype html><meta http-equiv="refresh" content="0;url=${to}">` });
    });
    await page.route(`${base}/console/config.json`, (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify(oidcConfig) }));
    await page.route((url) => url.origin === base && url.pathname === '/', async (route) => {
      const res = await route.fetch();
      await route.fulfill({ response: res, headers: { ...res.headers(), 'content-security-policy': awsCsp } });
    });
    return { page, seen };
  };
  const stored = (page) => page.evaluate(() => [sessionStorage.getItem('keypool.token'), sessionStorage.getItem('keypool.pkce')]);

  const { page, seen } = await oidcPage();
  await page.goto(`${base}/`);
  const signInButton = page.getByRole('button', { name: 'Sign in with your organization' });
  await signInButton.waitFor();
  assert.equal(await page.locator('#demo-admin').count(), 0, 'no local demo sign-in in OIDC mode');
  await check(page, 'signin-oidc');
  await signInButton.click();
  await page.locator('h1', { hasText: 'Pools' }).waitFor();
  await page.locator('#pools tbody tr', { hasText: 'Harbour cranes' }).waitFor();

  // Through the provider's /authorize, and back to the console with its code and state.
  assert.deepEqual(provider.problems, []);
  assert.equal(provider.authorizations.length, 1);
  const [auth] = provider.authorizations;
  assert.equal(auth.scope, 'openid');
  const authorizeUrl = seen.navigations.find((u) => u.startsWith(`${provider.origin}/authorize?`));
  assert.ok(authorizeUrl, `the browser went to /authorize: ${seen.navigations.join(' ')}`);
  const callback = seen.navigations.map((u) => new URL(u)).find((u) => u.origin === base && u.searchParams.has('code'));
  assert.ok(callback, `the browser came back with a code: ${seen.navigations.join(' ')}`);
  assert.equal(callback.searchParams.get('state'), auth.state);
  // One exchange of that code, from the console's page, with the verifier of the challenge;
  // the verifier itself never went through the browser's address bar.
  assert.equal(provider.exchanges.length, 1);
  const [exchange] = provider.exchanges;
  assert.equal(exchange.code, callback.searchParams.get('code'));
  assert.equal(exchange.origin, base);
  assert.equal(b64url(createHash('sha256').update(exchange.code_verifier).digest()), auth.code_challenge);
  assert.ok(!seen.navigations.some((u) => u.includes(exchange.code_verifier)), 'the verifier stays in the tab');
  // Signed in with the provider's token: stored, the code gone from the address, and the
  // console's API calls carry it.
  assert.deepEqual(await stored(page), [minted, null]);
  assert.doesNotMatch(page.url(), /code=|state=/);
  const poolsCall = seen.api.find((r) => new URL(r.url()).pathname === '/v1/pools');
  assert.ok(poolsCall, 'the console listed pools');
  assert.equal((await poolsCall.allHeaders()).authorization, `Bearer ${minted}`);
  assert.equal(await page.locator('#pools tbody tr', { hasText: 'Warehouse intake' }).count(), 0, 'the demo organization\u2019s pools are not shown');
  await check(page, 'pools-oidc');
  await page.close();

  // A callback whose state is not the one this tab sent (someone else's login) signs no one in,
  // and its code is never exchanged.
  const forged = await oidcPage();
  provider.forgeState = true;
  await forged.page.goto(`${base}/`);
  await forged.page.getByRole('button', { name: 'Sign in with your organization' }).click();
  await forged.page.locator('main .alert', { hasText: 'This sign-in did not start here' }).waitFor();
  provider.forgeState = false;
  assert.ok(forged.seen.navigations.some((u) => /[?&]state=forged-/.test(u)), 'the forged callback came back');
  assert.equal(provider.exchanges.length, 1, 'no token exchange for a forged state');
  assert.deepEqual(await stored(forged.page), [null, null]);
  assert.doesNotMatch(forged.page.url(), /code=/);
  assert.equal(await forged.page.locator('#nav').isHidden(), true);
  assert.equal(forged.seen.api.length, 0, 'no API call without a sign-in');
  await axe(forged.page, 'OIDC sign-in refused');
  // A link with a code but no sign-in started in this tab at all: refused alike.
  await forged.page.goto(`${base}/?code=stolen&state=guessed`);
  await forged.page.locator('main .alert', { hasText: 'This sign-in did not start here' }).waitFor();
  assert.equal(provider.exchanges.length, 1);
  assert.deepEqual(await stored(forged.page), [null, null]);
  // A token endpoint that cannot be reached says so instead of leaving "Loading…".
  await forged.page.route(tokenUrl, (route) => route.abort());
  await forged.page.getByRole('button', { name: 'Sign in with your organization' }).click();
  await forged.page.locator('main .alert', { hasText: 'The sign-in could not be completed' }).waitFor();
  assert.deepEqual(await stored(forged.page), [null, null]);
  assert.equal(forged.seen.api.length, 0);
  await forged.page.close();
  assert.deepEqual(provider.problems, []);
}
