// The console's end-to-end suite: starts keypool-local on a free port with a fresh data folder,
// drives Debian's headless Chromium through the admin walk (webhooks included, sent to a
// receiver of its own), the learner walk and an admin's sign-in through a fake OIDC provider
// (PKCE, as in AWS), runs axe-core (WCAG 2.2 AA tags) on every page, checks keyboard use,
// focus, live regions and reflow at 320 px, and writes screenshots at 1280 and 375 px to
// tests/browser/screenshots/.
//
//   node tests/browser/run.mjs            (KEYPOOL_BIN overrides the server binary)
//
// Every step is named here; tests/browser/harness.mjs holds what runs them, oidc-provider.mjs
// the fake OIDC provider, oidc-sign-in.mjs the OIDC step, webhook-receiver.mjs the
// receiver the webhook steps register, and activity.mjs the Activity steps (the audit log).

import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

import { axe, check, mintToken, opened, run, startServer, step, tabTo, temp, text } from './harness.mjs';
import { activitySteps } from './activity.mjs';
import { signInThroughOidc } from './oidc-sign-in.mjs';
import { signedBy, startReceiver } from './webhook-receiver.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

async function walk() {
  const base = await startServer();
  const context = await chromium.launchPersistentContext(join(temp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
    timezoneId: 'Europe/Paris',
    locale: 'en-GB',
  });
  opened.context = context;
  const cspErrors = [];
  context.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) cspErrors.push(m.text()); });
  // Nothing may come from anywhere but the server.
  await context.route('**/*', (route) => (route.request().url().startsWith(base) ? route.continue() : route.abort()));

  const admin = await context.newPage();
  const pasted = ['ALPHA-1001', 'bravo 1002', 'not a key!', 'charlie-1003', 'DELTA1004', 'ECHO-1005'];
  let poolId;
  let removed;

  await step('the server sends the console with a strict CSP and nosniff', async () => {
    const res = await admin.goto(`${base}/`);
    const headers = res.headers();
    assert.match(headers['content-type'], /^text\/html/);
    assert.match(headers['content-security-policy'], /default-src 'self'/);
    assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    const js = await admin.request.get(`${base}/console/js/app.js`);
    assert.match(js.headers()['content-type'], /^text\/javascript/);
    const missing = await admin.request.get(`${base}/console/../Cargo.toml`);
    assert.equal(missing.status(), 404);
  });

  await step('a server without --demo offers no demo sign-in', async () => {
    // The server says so in config.json (infra/local/tests/serve/console.rs checks that it does).
    const page = await context.newPage();
    await page.route(`${base}/console/config.json`, (route) => route.fulfill({ contentType: 'application/json', body: JSON.stringify({ mode: 'local', api: '', demo: false }) }));
    await page.goto(`${base}/`);
    await page.locator('#token').waitFor();
    assert.equal(await page.locator('#demo-admin').count(), 0);
    assert.doesNotMatch(await page.getByRole('button', { name: 'Sign in with this token' }).getAttribute('class') || '', /secondary/, 'the token is the way in');
    await axe(page, 'sign-in without demo');
    await page.goto(`${base}/redeem`);
    await page.locator('#token-input').waitFor();
    assert.equal(await page.locator('#demo-learner').isHidden(), true);
    await page.close();
  });

  await step('admin: sign in as demo admin by keyboard', async () => {
    await admin.locator('#demo-admin').waitFor();
    await check(admin, 'signin');
    await tabTo(admin, '#demo-admin');
    await admin.keyboard.press('Enter');
    await admin.locator('h1', { hasText: 'Pools' }).waitFor();
    // Focus moves to the new screen's heading.
    await admin.waitForFunction(() => document.activeElement.tagName === 'H1');
    await check(admin, 'pools-empty');
  });

  await step('admin: create a course inline and a pool, with inline validation', async () => {
    await tabTo(admin, '#new-pool');
    await admin.keyboard.press('Enter');
    await admin.locator('h1', { hasText: 'Create a pool' }).waitFor();
    assert.match(await text(admin, '#starts_at-hint'), /Europe\/Paris/);
    await admin.fill('#course-title', 'Forklift safety');
    await admin.click('#create-course');
    await admin.waitForFunction(() => { const s = document.querySelector('#course_id'); return s.selectedOptions[0]?.textContent === 'Forklift safety'; });
    assert.match(await text(admin, '#course-picker-status'), /created and chosen/);
    await admin.fill('#name', 'Warehouse spring intake');
    await admin.fill('#content_availability_days', '200');
    await admin.locator('#content_availability_days-error', { hasText: '1 to 180' }).waitFor();
    assert.equal(await admin.getAttribute('#content_availability_days', 'aria-invalid'), 'true');
    await check(admin, 'pool-create-error');
    await admin.fill('#content_availability_days', '30');
    assert.equal(await admin.locator('#content_availability_days-error').isHidden(), true);
    await admin.click('#save-pool');
    await admin.locator('#tab-keys[aria-selected="true"]').waitFor();
    poolId = decodeURIComponent(admin.url().split('/pools/')[1].split('/')[0]);
  });

  await step('admin: paste keys with one bad line, preview, add only the valid ones', async () => {
    await admin.fill('#paste', pasted.join('\n'));
    await admin.click('#check-paste');
    await admin.locator('#preview-summary', { hasText: '5 valid, 1 with errors' }).waitFor();
    assert.match(await text(admin, '#preview'), /Line 3 \(not a key!\)/);
    // Nothing written yet.
    assert.equal(await text(admin, '#count-total'), '0');
    await check(admin, 'keys-preview');
    await admin.click('#add-valid');
    await admin.locator('#preview', { hasText: '5 keys added' }).waitFor();
    await admin.locator('#count-total', { hasText: '5' }).waitFor();
  });

  await step('admin: a .txt upload fills the preview, and nothing is written until confirmed', async () => {
    await admin.setInputFiles('#upload', { name: 'keys.txt', mimeType: 'text/plain', buffer: Buffer.from('golf-1007\r\nbad key!\r\n\r\nGOLF1007\n') });
    await admin.locator('#preview-summary', { hasText: '1 valid, 2 with errors' }).waitFor();
    const preview = await text(admin, '#preview');
    assert.match(preview, /Line 2 \(bad key!\)/);
    assert.match(preview, /Line 4 \(GOLF1007\): The same key as line 1/);
    assert.equal(await text(admin, '#count-total'), '5');
    await admin.fill('#paste', '');
    await admin.setInputFiles('#upload', []);
  });

  await step('admin: add one key, and see a duplicate refused next to the field', async () => {
    await admin.fill('#one-key', 'foxtrot-1006');
    await admin.click('#add-one');
    await admin.locator('#count-total', { hasText: '6' }).waitFor();
    await admin.fill('#one-key', 'ALPHA1001');
    await admin.click('#add-one');
    await admin.locator('#one-key-error').waitFor();
    assert.equal(await admin.getAttribute('#one-key', 'aria-invalid'), 'true');
  });

  await step('admin: generate 20,000 keys as a job, the progress bar reaching 100%', async () => {
    const seen = [];
    await admin.fill('#gen-count', '20000');
    await admin.click('#generate');
    await admin.locator('#job-progress').waitFor();
    assert.equal(await admin.getAttribute('#job-status', 'role'), 'status');
    for (let i = 0; i < 600; i++) {
      seen.push(Number(await admin.getAttribute('#job-progress', 'value')));
      if (/done/.test(await text(admin, '#job-status'))) break;
      await admin.waitForTimeout(250);
    }
    assert.match(await text(admin, '#job-status'), /done: 20,000 keys/);
    assert.equal(Number(await admin.getAttribute('#job-progress', 'value')), 100);
    console.log(`     progress seen: ${[...new Set(seen)].join(', ')}`);
    await admin.locator('#count-total', { hasText: '20,006' }).waitFor();
    await check(admin, 'keys-generated');
  });

  await step('admin: the key table pages with the API cursor', async () => {
    await admin.locator('#key-table tbody tr').first().waitFor();
    assert.equal(await admin.locator('#key-table tbody tr').count(), 50);
    const first = await admin.locator('#key-table tbody tr td').first().innerText();
    await admin.click('#next-keys');
    await admin.waitForFunction((f) => document.querySelector('#key-table tbody td').textContent !== f, first);
  });

  await step('admin: remove an unredeemed key through a dialog that keeps and returns focus', async () => {
    await admin.selectOption('#key-status', 'available');
    await admin.locator('#keys:not([aria-busy])').waitFor();
    const button = admin.locator('#key-table button[aria-label^="Remove key"]').first();
    await button.waitFor();
    removed = (await button.getAttribute('aria-label')).replace('Remove key ', '');
    await button.focus();
    await admin.keyboard.press('Enter');
    await admin.locator('dialog[open]').waitFor();
    assert.equal(await admin.evaluate(() => !!document.activeElement.closest('dialog')), true);
    await axe(admin, 'remove dialog');
    await admin.keyboard.press('Escape');
    await admin.locator('dialog').waitFor({ state: 'detached' });
    assert.equal(await admin.evaluate(() => document.activeElement.getAttribute('aria-label')), `Remove key ${removed}`);
    await admin.keyboard.press('Enter');
    await admin.locator('dialog[open] button.danger').click();
    await admin.locator('#count-total', { hasText: '20,005' }).waitFor();
  });

  await step('admin: export available keys, wait for it, download and read the CSV', async () => {
    await admin.click('#tab-export');
    await admin.locator('#start-export').waitFor();
    await admin.selectOption('#export-status', 'available');
    await admin.click('#start-export');
    await admin.locator('#download-export').waitFor({ timeout: 60000 });
    assert.match(await text(admin, '#export-status-text'), /Export ready: 20,005 keys/);
    const [download] = await Promise.all([admin.waitForEvent('download'), admin.click('#download-export')]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    assert.match(csv[0], /^key,status/);
    assert.equal(csv.length, 20006);
    assert.ok(csv.some((l) => l.startsWith('BRAVO1002,available')), 'a pasted key is in the file');
    // The pool's exports come from the server, newest first, with their download.
    await admin.locator('#export-list table').waitFor();
    assert.equal(await admin.locator('#export-table tbody tr').count(), 1);
    assert.match(await text(admin, '#export-table'), /Ready[\s\S]*20,005[\s\S]*available/);
    await admin.selectOption('#export-status', '');
    await admin.click('#start-export');
    await admin.waitForFunction(() => {
      const rows = document.querySelectorAll('#export-table tbody tr');
      return rows.length === 2 && /Ready/.test(rows[0].textContent);
    }, null, { timeout: 60000 });
    assert.match(await admin.locator('#export-table tbody tr').first().innerText(), /all keys/);
    // Reloaded, the list is the server's, not this page's memory.
    await admin.reload();
    await admin.locator('#export-table tbody tr').nth(1).waitFor();
    const [again] = await Promise.all([admin.waitForEvent('download'),
      admin.locator('#export-table tbody tr').nth(1).getByRole('button').click()]);
    assert.equal(readFileSync(await again.path(), 'utf8').trim().split(/\r?\n/).length, 20006);
    await check(admin, 'export');
  });

  await step('admin: edit a pool with inline validation of dates and availability', async () => {
    await admin.click('#tab-settings');
    await admin.locator('#toggle-deactivated').waitFor();
    const starts = await admin.inputValue('#starts_at');
    await admin.fill('#expires_at', '2020-01-01T10:00');
    await admin.dispatchEvent('#expires_at', 'change');
    await admin.locator('#expires_at-error', { hasText: 'Expires must be after Starts' }).waitFor();
    await admin.fill('#content_availability_days', '0');
    await admin.locator('#content_availability_days-error', { hasText: '1 to 180' }).waitFor();
    await admin.click('#save-pool');
    // Nothing sent: focus goes to the first field in error.
    await admin.waitForFunction(() => document.activeElement.id === 'expires_at');
    await check(admin, 'settings-errors');
    await admin.fill('#expires_at', '2099-06-30T18:00');
    await admin.dispatchEvent('#expires_at', 'change');
    await admin.fill('#content_availability_days', '45');
    await admin.fill('#name', 'Warehouse intake');
    assert.equal(await admin.locator('#expires_at-error').isHidden(), true);
    await admin.click('#save-pool');
    await admin.locator('h1', { hasText: 'Warehouse intake' }).waitFor();
    assert.match(await text(admin, 'main'), /45 days of access/);
    assert.equal(await admin.inputValue('#starts_at'), starts);
    const pool = await admin.evaluate(async (id) => (await fetch(`/v1/pools/${id}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem('keypool.token')}` } })).json(), poolId);
    assert.equal(pool.expires_at, '2099-06-30T16:00:00.000Z', 'Paris summer time is UTC+2');
    assert.equal(pool.content_availability_days, 45);
  });

  await step('admin: deactivate a pool through a confirmation, then reactivate it', async () => {
    await admin.click('#toggle-deactivated');
    await admin.locator('dialog[open]').waitFor();
    await admin.locator('dialog[open] button.danger').click();
    await admin.locator('h1 .badge', { hasText: 'deactivated' }).waitFor();
    await admin.locator('#toggle-deactivated', { hasText: 'Reactivate pool' }).waitFor();
    await check(admin, 'settings-deactivated');
    await admin.click('#toggle-deactivated');
    await admin.locator('h1 .badge', { hasText: /^active$/ }).waitFor();
    await admin.locator('#toggle-deactivated', { hasText: 'Deactivate pool' }).waitFor();
  });

  await step('admin: settings, and the pools list with live counts', async () => {
    await admin.click('#tab-settings');
    await admin.locator('#toggle-deactivated').waitFor();
    await check(admin, 'settings');
    await admin.goto(`${base}/#/`);
    await admin.locator('#pools tbody tr').first().waitFor();
    assert.match(await text(admin, '#pools'), /Warehouse intake[\s\S]*Forklift safety[\s\S]*20,005/);
    await check(admin, 'pools');
  });

  // Pools that are not open, for the learner's messages, made through the API as a script would.
  const adminToken = await admin.evaluate(() => sessionStorage.getItem('keypool.token'));
  const call = async (method, path, body) => {
    const res = await admin.request.fetch(`${base}${path}`, { method, headers: { Authorization: `Bearer ${adminToken}` }, data: body });
    assert.ok(res.ok(), `${method} ${path}: ${res.status()} ${await res.text()}`);
    return res.json();
  };
  const course = (await call('GET', '/v1/courses')).items[0];
  const later = await call('POST', '/v1/pools', { name: 'Autumn', course_id: course.course_id, starts_at: '2099-09-01T08:00:00Z', expires_at: '2099-12-01T08:00:00Z', content_availability_days: 30 });
  await call('POST', `/v1/pools/${later.pool_id}/keys`, { keys: ['LATER-2001'] });
  const past = await call('POST', '/v1/pools', { name: 'Last year', course_id: course.course_id, starts_at: '2021-01-01T08:00:00Z', expires_at: '2021-06-01T08:00:00Z', content_availability_days: 30 });
  await call('POST', `/v1/pools/${past.pool_id}/keys`, { keys: ['PAST-3001'] });

  const paused = await call('POST', '/v1/pools', { name: 'Paused', course_id: course.course_id, starts_at: '2021-01-01T08:00:00Z', expires_at: '2099-06-01T08:00:00Z', content_availability_days: 30 });
  await call('PATCH', `/v1/pools/${paused.pool_id}`, { deactivated: true });

  await step('admin: the pools list filters by status on the server, page by page', async () => {
    const shows = async (status, names) => {
      await admin.goto(`${base}/#/`);
      await admin.locator('#pool-status').waitFor();
      await admin.selectOption('#pool-status', status);
      const reply = admin.waitForResponse((r) => new URL(r.url()).pathname === '/v1/pools'
        && new URL(r.url()).searchParams.get('status') === status);
      await admin.click('form[aria-label="Pools"] button[type="submit"]');
      await reply;
      await admin.waitForFunction((want) => [...document.querySelectorAll('#pools tbody tr td:first-child')]
        .map((td) => td.textContent).join('|') === want, names.join('|'));
    };
    await shows('scheduled', ['Autumn']);
    await shows('expired', ['Last year']);
    await shows('deactivated', ['Paused']);
    await shows('active', ['Warehouse intake']);
    assert.match(admin.url(), /status=active/);
    await check(admin, 'pools-filtered');
  });

  await step('admin: a busy or throttled API is explained in plain words, with the wait', async () => {
    const poolsListing = (url) => url.pathname === '/v1/pools';
    await admin.route(poolsListing, (route) => route.fulfill({ status: 503, headers: { 'Retry-After': '7', 'Content-Type': 'application/json' },
      body: JSON.stringify({ error: { code: 'store_busy', message: 'the store is busy' } }) }));
    await admin.goto(`${base}/#/?search=x`);
    await admin.locator('main .alert', { hasText: 'The service is busy right now. Try again in 7 seconds.' }).waitFor();
    await admin.unroute(poolsListing);
    await admin.route(poolsListing, (route) => route.fulfill({ status: 429, headers: { 'Retry-After': '150', 'Content-Type': 'application/json' },
      body: JSON.stringify({ error: { code: 'rate_limited', message: 'slow down' } }) }));
    await admin.goto(`${base}/#/?search=y`);
    await admin.locator('main .alert', { hasText: 'Too many requests right now. Try again in 3 minutes.' }).waitFor();
    await admin.unroute(poolsListing);
  });

  const learner = await context.newPage();
  const redeemRequests = [];
  learner.on('request', (r) => { if (r.url().endsWith('/v1/redemptions')) redeemRequests.push(r); });
  const redeemAs = async (key) => {
    await learner.fill('#key', key);
    await learner.click('#redeem-button');
    await learner.waitForFunction(() => !document.querySelector('#redeem-button').disabled && !/Redeeming/.test(document.querySelector('#result').textContent));
    return text(learner, '#result');
  };

  await step('learner: a deep link pre-fills the key after sign-in', async () => {
    await learner.goto(`${base}/redeem?key=alpha-1001`);
    await learner.locator('#demo-learner').waitFor();
    await check(learner, 'redeem-signin');
    await tabTo(learner, '#demo-learner');
    await learner.keyboard.press('Enter');
    await learner.locator('#key').waitFor();
    assert.equal(await learner.inputValue('#key'), 'alpha-1001');
  });

  await step('learner: a typo in a generated key is caught on the page, before anything is sent', async () => {
    redeemRequests.length = 0;
    // The shape of a generated key, with a check symbol that does not match the others.
    assert.match(await redeemAs('abcde-fghjk-mnpqr-stvwx'), /typo: its last symbol does not match/);
    assert.equal(redeemRequests.length, 0, 'nothing sent for a key the check symbol refuses');
    assert.match(await text(learner, '#key-error'), /mistyped/);
  });

  await step('learner: a removed key is "not a valid key"', async () => {
    assert.match(await redeemAs(removed.toLowerCase()), /not a valid key/);
    await check(learner, 'redeem-invalid');
  });

  await step('learner: a double click is one redemption; success shows course, expiry, Launch', async () => {
    await learner.fill('#key', ' bravo 1002 ');
    redeemRequests.length = 0;
    await learner.dblclick('#redeem-button');
    await learner.locator('#result', { hasText: 'Key redeemed' }).waitFor();
    assert.equal(redeemRequests.length, 1, 'one request for a double click');
    assert.equal(await learner.getAttribute('#result', 'role'), 'status');
    assert.match(await text(learner, '#result'), new RegExp(`Course: ${course.title}\\. Available until .*Europe/Paris`));
    await learner.locator('#assignment-list li').first().waitFor();
    assert.match(await text(learner, '#assignment-list'), new RegExp(course.title));
    await check(learner, 'redeem-success');
  });

  await step('learner: redeeming again returns the same course; launch works', async () => {
    assert.match(await redeemAs('BRAVO-1002'), /already redeemed this key/);
    await learner.getByRole('button', { name: 'Launch course' }).first().click();
    await learner.locator('#result', { hasText: 'launched' }).waitFor();
  });

  await step('admin: a course gets its launch URL on the Courses page, checked inline', async () => {
    await admin.goto(`${base}/#/courses`);
    await admin.locator('h1', { hasText: 'Courses' }).waitFor();
    await admin.getByRole('button', { name: `Edit ${course.title}` }).click();
    const url = admin.locator('input[name="launch_url"]');
    await url.fill('http://lab.example.com/forklift');
    await admin.getByRole('button', { name: 'Save' }).click();
    await admin.locator('.field-error', { hasText: 'https' }).waitFor();
    assert.equal(await url.getAttribute('aria-invalid'), 'true');
    await check(admin, 'courses-edit-error');
    await url.fill('https://lab.example.com/forklift');
    await admin.getByRole('button', { name: 'Save' }).click();
    await admin.locator('#course-list', { hasText: 'Launches at https://lab.example.com/forklift' }).waitFor();
    await check(admin, 'courses');
  });

  await step('learner: Launch course goes to the course platform with a token it can check alone', async () => {
    await learner.route('https://lab.example.com/**', (route) => route.fulfill({ contentType: 'text/html', body: '<!doctype html><html lang="en"><title>Lab</title><p>Lab</p></html>' }));
    await learner.goto(`${base}/redeem`);
    await learner.getByRole('button', { name: 'Launch course' }).first().click();
    await learner.waitForURL(/^https:\/\/lab\.example\.com\/forklift\?launch_token=/);
    const token = new URL(learner.url()).searchParams.get('launch_token');
    const [header, payload, signature] = token.split('.');
    // Checked as a platform would, with Node's own crypto and our published keys only.
    const jwks = await (await learner.request.get(`${base}/.well-known/jwks.json`)).json();
    const { alg, kid } = JSON.parse(Buffer.from(header, 'base64url'));
    assert.equal(alg, 'ES256');
    const jwk = jwks.keys.find((k) => k.kid === kid);
    assert.ok(jwk, 'the token names a published key');
    const valid = cryptoVerify('sha256', Buffer.from(`${header}.${payload}`),
      { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'));
    assert.ok(valid, 'the signature verifies');
    const claims = JSON.parse(Buffer.from(payload, 'base64url'));
    assert.equal(claims.aud, 'https://lab.example.com');
    assert.equal(claims.sub, 'demo-learner');
    assert.equal(claims.iss, base);
    assert.equal(claims.course_id, course.course_id);
    assert.ok(claims.exp - claims.iat <= 300 && claims.exp * 1000 > Date.now());
    await learner.goto(`${base}/redeem`);
    await learner.locator('#key').waitFor();
  });

  await step('learner: not yet open and expired keys say when', async () => {
    assert.match(await redeemAs('later-2001'), /cannot be used yet\. It opens on .*2099/);
    assert.match(await redeemAs('past 3001'), /expired on .*2021/);
  });

  await step('learner: a key another learner redeemed, and throttling with the wait', async () => {
    const other = await learner.evaluate(async () => {
      const r = await fetch('/local/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ role: 'learner', sub: 'demo-learner-2' }) });
      return (await r.json()).token;
    });
    await learner.evaluate((t) => sessionStorage.setItem('keypool.token', t), other);
    await learner.goto(`${base}/redeem`);
    await learner.locator('#key').waitFor();
    assert.match(await redeemAs('bravo-1002'), /already been redeemed by someone else/);
    let last = '';
    for (let i = 0; i < 12 && !/wait/.test(last); i++) last = await redeemAs(`WRONG-${4000 + i}`);
    assert.match(last, /Too many attempts.*Please wait \d+ (seconds|minutes)/);
    await check(learner, 'redeem-throttled');
  });

  await step('admin: the redemption appears in the keys table and on the invoice, CSV included', async () => {
    await admin.goto(`${base}/#/pools/${encodeURIComponent(poolId)}/keys`);
    await admin.selectOption('#key-status', 'redeemed');
    await admin.locator('#keys:not([aria-busy])').waitFor();
    await admin.locator('#key-table', { hasText: 'demo-learner' }).waitFor();
    await admin.locator('#count-redeemed', { hasText: '1' }).waitFor();
    // Billing reads the assignments stream; give the follower a few polls.
    // Under load (two cores, shared) the follower can take a while: up to about a minute.
    // (Going to the same #/billing again changes nothing: "Show invoice" reads it again.)
    await admin.goto(`${base}/#/billing`);
    await admin.locator('#invoice-count').waitFor();
    for (let i = 0; i < 60 && (await text(admin, '#invoice-count')) !== '1'; i++) {
      await admin.waitForTimeout(1000);
      const reply = admin.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/v1/invoices/'));
      await admin.getByRole('button', { name: 'Show invoice' }).click();
      await reply;
      await admin.waitForTimeout(300);
    }
    assert.match(await text(admin, '#invoice-lines'), /demo-learner[\s\S]*BRAVO1002/);
    const [download] = await Promise.all([admin.waitForEvent('download'), admin.click('#invoice-csv')]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    assert.equal(csv.length, 2);
    assert.match(csv[1], /BRAVO1002/);
    await check(admin, 'billing');
  });

  await step('admin: find a key a learner reports, in any form, and open its pool', async () => {
    await admin.goto(`${base}/#/`);
    await admin.locator('#find-key').waitFor();
    await admin.fill('#find-key', 'nope-0000-zzzz');
    await admin.click('#find-key-button');
    await admin.locator('#find-key-error', { hasText: 'No pool of your organization holds this key' }).waitFor();
    assert.equal(await admin.getAttribute('#find-key', 'aria-invalid'), 'true');
    await check(admin, 'find-key-missing');
    await admin.fill('#find-key', ' bravo 1002 ');
    await admin.keyboard.press('Enter');
    await admin.locator('#found-key').waitFor();
    assert.equal(decodeURIComponent(admin.url().split('/pools/')[1].split('/')[0]), poolId);
    await admin.locator('#found-key', { hasText: 'demo-learner' }).waitFor();
    assert.match(await text(admin, '#found-key'), /BRAVO1002[\s\S]*redeemed[\s\S]*demo-learner/);
    await check(admin, 'find-key');
    await admin.goto(`${base}/#/billing`);
    await admin.locator('#invoice-count').waitFor();
  });

  await step('admin: cancelling a launched redemption is refused, with the reason', async () => {
    await admin.getByRole('button', { name: 'Cancel redemption of key BRAVO1002' }).click();
    await admin.locator('dialog[open]').waitFor();
    await admin.getByRole('button', { name: 'Cancel redemption', exact: true }).last().click();
    await admin.locator('#billing-status', { hasText: 'already launched' }).waitFor();
  });

  await step('admin: the invoice pages past its first 100 lines, and its CSV has them all', async () => {
    // 101 more redemptions, each by a learner of its own (tokens from `keypool-local token`:
    // the demo sign-in has only a few learners), through the API from the console's page.
    const bulk = await call('POST', '/v1/pools', { name: 'Bulk', course_id: course.course_id, starts_at: '2021-01-01T08:00:00Z', expires_at: '2099-06-01T08:00:00Z', content_availability_days: 30 });
    const { keys } = await call('POST', `/v1/pools/${bulk.pool_id}/keys/generate`, { count: 101 });
    const learners = [];
    for (let i = 0; i < keys.length; i++) learners.push(await mintToken('demo-org', 'learner', `bulk-learner-${i}`));
    const made = await admin.evaluate(async ([keys, learners]) => {
      let ok = 0;
      for (const [i, key] of keys.entries()) {
        const r = await fetch('/v1/redemptions', { method: 'POST', headers: { Authorization: `Bearer ${learners[i]}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ key }) });
        if (r.status === 201) ok += 1;
      }
      return ok;
    }, [keys, learners]);
    assert.equal(made, 101);
    // Billing follows the stream: show the invoice again until every line is in.
    await admin.goto(`${base}/#/billing`);
    for (let i = 0; i < 90; i++) {
      const reply = admin.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/v1/invoices/'));
      await admin.getByRole('button', { name: 'Show invoice' }).click();
      await reply;
      await admin.waitForTimeout(300);
      if ((await text(admin, '#invoice-count')) === '102') break;
      await admin.waitForTimeout(700);
    }
    assert.equal(await text(admin, '#invoice-count'), '102');
    assert.equal(await admin.locator('#invoice-lines tbody tr').count(), 100);
    assert.match(await text(admin, '#invoice-range'), /Lines 1 to 100 of 102/);
    await admin.click('#next-lines');
    await admin.locator('#invoice-range', { hasText: 'Lines 101 to 102 of 102' }).waitFor();
    assert.equal(await admin.locator('#invoice-lines tbody tr').count(), 2);
    assert.equal(await admin.locator('#next-lines').count(), 0);
    await check(admin, 'billing-page-2');
    await admin.click('#prev-lines');
    await admin.locator('#invoice-range', { hasText: 'Lines 1 to 100 of 102' }).waitFor();
    const [download] = await Promise.all([admin.waitForEvent('download'), admin.click('#invoice-csv')]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    assert.equal(csv.length, 103, 'a header and every line of the month');
  });

  // Webhooks: an endpoint on a receiver of this walk, which answers 200 or 500 on cue.
  const receiver = await startReceiver();
  opened.receiver = receiver;
  let webhookId;
  let secret;
  const row = (n = 0) => admin.locator('#delivery-table tbody tr').nth(n);

  await step('admin: add a webhook endpoint, errors per field, and see its secret once', async () => {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    await admin.goto(`${base}/#/`);
    await admin.locator('#nav-webhooks').click();
    await admin.locator('h1', { hasText: 'Webhooks' }).waitFor();
    await admin.locator('#webhooks', { hasText: 'No endpoints yet' }).waitFor();
    assert.equal(await admin.getAttribute('#nav-webhooks', 'aria-current'), 'page');
    // No event chosen: said on the page, nothing sent.
    await admin.fill('#new-url', 'hooks.example.com');
    await admin.click('#new-save');
    await admin.locator('#new-events-error', { hasText: 'Choose at least one event' }).waitFor();
    assert.equal(await admin.getAttribute('#new-events', 'aria-describedby'), 'new-events-error');
    // A URL the API refuses: its message next to the field, and focus on it.
    await admin.check('#new-event-assignment-created');
    await admin.click('#new-save');
    await admin.locator('#new-url-error', { hasText: 'absolute URL' }).waitFor();
    assert.equal(await admin.getAttribute('#new-url', 'aria-invalid'), 'true');
    assert.equal(await admin.evaluate(() => document.activeElement.id), 'new-url');
    assert.equal(await admin.locator('#new-events-error').isHidden(), true);
    await check(admin, 'webhooks-add-error');
    // By keyboard: the URL, a second event with the space bar, Enter to add.
    await admin.fill('#new-url', receiver.url);
    await admin.fill('#new-description', 'Course platform');
    await admin.focus('#new-event-export-finished');
    await admin.keyboard.press('Space');
    assert.equal(await admin.isChecked('#new-event-export-finished'), true);
    await admin.focus('#new-url');
    await admin.keyboard.press('Enter');
    await admin.locator('#secret-box').waitFor();
    webhookId = decodeURIComponent(admin.url().split('/webhooks/')[1]);
    await admin.waitForFunction(() => document.activeElement.id === 'h-secret');
    secret = await admin.inputValue('#webhook-secret');
    assert.match(secret, /^whsec_[A-Za-z0-9+/=]{32,}$/);
    assert.match(await text(admin, '#secret-box'), /only this once/);
    await admin.click('#copy-secret');
    await admin.locator('#secret-copy-status', { hasText: 'Secret copied' }).waitFor();
    assert.equal(await admin.evaluate(() => navigator.clipboard.readText()), secret);
    assert.match(await text(admin, '#webhook-events'), /assignment\.created, export\.finished/);
    await check(admin, 'webhook-secret');
    await admin.click('#secret-done');
    await admin.locator('#secret-box').waitFor({ state: 'detached' });
    assert.equal(await admin.evaluate(() => document.activeElement.tagName), 'H1');
    // Shown once: the page read again has no secret, and neither has the API.
    await admin.reload();
    await admin.locator('#webhook-facts dl').waitFor();
    assert.equal(await admin.locator('#secret-box').count(), 0);
    assert.equal((await call('GET', `/v1/webhooks/${webhookId}`)).secret, undefined);
  });

  await step('admin: a test event is delivered, signed with that secret, and logged', async () => {
    const before = receiver.received.length;
    await admin.click('#send-test');
    const got = await receiver.next(before);
    assert.equal(got.event.type, 'webhook.test');
    assert.ok(signedBy(got, secret), 'signed with the secret shown');
    await admin.locator('#webhook-status', { hasText: 'Test event delivered (HTTP 200)' }).waitFor({ timeout: 30000 });
    assert.match(await row(0).innerText(), /webhook\.test[\s\S]*delivered[\s\S]*1[\s\S]*HTTP 200/);
  });

  await step('admin: a failing receiver leaves a pending attempt; Retry now delivers it once it recovers', async () => {
    receiver.status = 500;
    const before = receiver.received.length;
    await admin.click('#send-test');
    const failed = await receiver.next(before);
    await admin.locator('#webhook-status', { hasText: 'not delivered (HTTP 500); next attempt' }).waitFor({ timeout: 30000 });
    assert.match(await row(0).innerText(), /webhook\.test[\s\S]*pending[\s\S]*1[\s\S]*HTTP 500/);
    await check(admin, 'webhook-failed');
    receiver.status = 200;
    // By keyboard, and the same event again (one webhook-id for every attempt).
    await row(0).getByRole('button', { name: /^Retry now: webhook\.test/ }).focus();
    await admin.keyboard.press('Enter');
    const again = await receiver.next(before + 1);
    assert.equal(again.headers['webhook-id'], failed.headers['webhook-id']);
    await admin.locator('#webhook-status', { hasText: 'Retry of webhook.test delivered (HTTP 200)' }).waitFor({ timeout: 30000 });
    assert.match(await row(0).innerText(), /delivered[\s\S]*2[\s\S]*HTTP 200/);
    assert.equal(await admin.evaluate(() => document.activeElement.closest('tr')?.dataset.delivery), await row(0).getAttribute('data-delivery'));
    await admin.selectOption('#delivery-status', 'delivered');
    await admin.locator('#delivery-table tbody tr:nth-child(2)').waitFor();
    assert.equal(await admin.locator('#delivery-table tbody tr').count(), 2);
    await admin.selectOption('#delivery-status', 'pending');
    await admin.locator('#deliveries', { hasText: 'No deliveries with this status' }).waitFor();
    await admin.selectOption('#delivery-status', '');
    await row(1).waitFor();
  });

  await step('admin: disable (through a confirmation) and enable the endpoint; a reason KeyPool gives is shown', async () => {
    await admin.click('#toggle-enabled');
    await admin.locator('dialog[open]').waitFor();
    await axe(admin, 'disable dialog');
    await admin.locator('dialog[open] button.danger').click();
    await admin.locator('#webhook-state .badge', { hasText: 'disabled' }).waitFor();
    await admin.locator('#webhook-status', { hasText: 'Endpoint disabled' }).waitFor();
    assert.equal(await admin.locator('#send-test').count(), 0, 'no test event to a disabled endpoint');
    await admin.waitForFunction(() => !document.querySelector('#delivery-table button'));
    assert.equal(await admin.evaluate(() => document.activeElement.id), 'toggle-enabled');
    assert.equal((await call('GET', `/v1/webhooks/${webhookId}`)).enabled, false);
    await admin.keyboard.press('Enter');
    await admin.locator('#webhook-state .badge', { hasText: 'enabled' }).waitFor();
    await admin.locator('#send-test').waitFor();
    // KeyPool disables an endpoint after five days of failures, with its reason (the page
    // shows what the API answers; shared/src/domain/webhook.rs makes it).
    const reason = 'disabled by KeyPool: every delivery failed since 2026-01-05T10:00:00Z';
    const one = (url) => url.pathname === `/v1/webhooks/${webhookId}`;
    await admin.route(one, async (route) => {
      const real = await (await route.fetch()).json();
      await route.fulfill({ json: { ...real, enabled: false, disabled_reason: reason, failing_since: '2026-01-05T10:00:00Z' } });
    });
    await admin.reload();
    await admin.locator('#webhook-state', { hasText: 'Disabled by KeyPool: every delivery failed since 2026-01-05' }).waitFor();
    await admin.locator('#webhook-facts', { hasText: 'Failing since' }).waitFor();
    await check(admin, 'webhook-disabled-by-keypool');
    await admin.unroute(one);
    await admin.reload();
    await admin.locator('#webhook-state .badge', { hasText: 'enabled' }).waitFor();
  });

  await step('admin: rotate the secret; it is shown once, and the next delivery is signed by both', async () => {
    await admin.click('#rotate-secret');
    await admin.locator('dialog[open]').waitFor();
    await admin.locator('dialog[open] button.danger').click();
    await admin.locator('#secret-box', { hasText: 'new signing secret' }).waitFor();
    await admin.waitForFunction(() => document.activeElement.id === 'h-secret');
    const rotated = await admin.inputValue('#webhook-secret');
    assert.match(rotated, /^whsec_/);
    assert.notEqual(rotated, secret);
    assert.match(await text(admin, '#secret-box'), /previous secret keeps signing beside it for 24 hours/);
    const before = receiver.received.length;
    await admin.click('#send-test');
    const got = await receiver.next(before);
    assert.ok(signedBy(got, rotated) && signedBy(got, secret), 'signed by the new secret and the old one');
    await admin.locator('#webhook-status', { hasText: 'Test event delivered' }).waitFor({ timeout: 30000 });
    await check(admin, 'webhook-rotated');
  });

  await step('admin: change an endpoint\'s events, see the list, and remove it through a confirmation', async () => {
    await admin.uncheck('#edit-event-export-finished');
    await admin.check('#edit-event-assignment-launched');
    await admin.click('#edit-save');
    await admin.locator('#webhook-status', { hasText: 'Endpoint saved' }).waitFor();
    assert.match(await text(admin, '#webhook-events'), /^assignment\.created, assignment\.launched$/);
    await admin.goto(`${base}/#/webhooks`);
    await admin.locator('#webhook-list li').first().waitFor();
    assert.match(await text(admin, '#webhook-list'), /Course platform[\s\S]*assignment\.created, assignment\.launched/);
    await check(admin, 'webhooks');
    await admin.locator('#webhook-list a').first().click();
    await admin.locator('#delete-webhook').click();
    await admin.locator('dialog[open] button.danger').click();
    await admin.locator('#webhooks', { hasText: 'No endpoints yet' }).waitFor();
    assert.equal((await call('GET', '/v1/webhooks')).items.length, 0);
  });

  // Activity: the audit log of what this walk and the steps' own API calls changed.
  await activitySteps({ base, context, admin, call });

  // Pictures (issue 24): a pool of its own, redeemed and launched by learners through the API
  // as their apps would, then its charts and tables on the pool page and the months on billing.
  const adminOrg = JSON.parse(Buffer.from(adminToken.split('.')[1], 'base64url').toString()).org;
  const today = new Date().toISOString().slice(0, 10);
  const opened20 = new Date(Date.now() - 20 * 86400000).toISOString().replace(/\.\d+Z$/, 'Z');
  const pictured = await call('POST', '/v1/pools', { name: 'Pictured', course_id: course.course_id, starts_at: opened20, expires_at: '2099-06-01T08:00:00Z', content_availability_days: 30 });
  const untouched = await call('POST', '/v1/pools', { name: 'Untouched', course_id: course.course_id, starts_at: opened20, expires_at: '2099-06-01T08:00:00Z', content_availability_days: 30 });
  await call('POST', `/v1/pools/${untouched.pool_id}/keys`, { keys: ['QUIET-7001'] });
  const picturedPage = `${base}/#/pools/${encodeURIComponent(pictured.pool_id)}/keys`;

  await step('admin: pictures of a pool: redemptions and launches per day and the funnel, with tables', async () => {
    await call('POST', `/v1/pools/${pictured.pool_id}/keys`, { keys: ['PIC-6001', 'PIC-6002', 'PIC-6003', 'PIC-6004'] });
    const as = async (sub) => {
      const t = await mintToken(adminOrg, 'learner', sub);
      return async (method, path, body) => {
        const res = await admin.request.fetch(`${base}${path}`, { method, headers: { Authorization: `Bearer ${t}` }, data: body });
        assert.ok(res.ok(), `${method} ${path}: ${res.status()} ${await res.text()}`);
        return res.json();
      };
    };
    // Three redemptions; one assignment launched twice and one once: 3 launches, 2 launched.
    const learners = await Promise.all(['pic-learner-1', 'pic-learner-2', 'pic-learner-3'].map(as));
    const assignments = [];
    for (const [i, l] of learners.entries()) assignments.push((await l('POST', '/v1/redemptions', { key: `PIC-600${i + 1}` })).assignment_id);
    await learners[0]('POST', `/v1/me/assignments/${assignments[0]}/launch`);
    await learners[0]('POST', `/v1/me/assignments/${assignments[0]}/launch`);
    await learners[1]('POST', `/v1/me/assignments/${assignments[1]}/launch`);
    // The stats follow the stream a moment later: ask until they say so.
    let st;
    for (let i = 0; i < 120; i++) {
      st = await call('GET', `/v1/pools/${pictured.pool_id}/stats`);
      const sum = (f) => st.days.reduce((a, d) => a + d[f], 0);
      if (st.funnel.launched === 2 && sum('redeemed') === 3 && sum('launched') === 3) break;
      await admin.waitForTimeout(500);
    }
    assert.deepEqual(st.funnel, { keys: 4, handed_out: null, redeemed: 3, launched: 2 });
    assert.equal(st.days.length, 21);

    await admin.goto(picturedPage);
    await admin.locator('#per-day-chart svg[role="img"]').waitFor();
    const perDay = await admin.locator('#per-day-chart svg').getAttribute('aria-label');
    assert.match(perDay, /^Redemptions and launches per day\. 3 redemptions and 3 launches over 21 days/);
    assert.match(await admin.locator('#funnel-chart svg').getAttribute('aria-label'), /Keys: 4, Handed out: not tracked yet, Redeemed: 3, Launched: 2/);
    assert.equal(await admin.locator('#per-day-table').isVisible(), false, 'the table starts folded');
    // The disclosure is reached and opened from the keyboard.
    await admin.locator('h1').focus();
    await tabTo(admin, '#funnel-toggle');
    await admin.keyboard.press('Enter');
    await tabTo(admin, '#per-day-toggle', 5);
    await admin.keyboard.press('Enter');
    await admin.locator('#per-day-table').waitFor();
    const rows = await admin.locator('#per-day-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
    assert.equal(rows.length, 21);
    assert.deepEqual(rows[rows.length - 1], [today, '3', '3']);
    assert.deepEqual(rows[0].slice(1), ['0', '0']);
    const funnel = await admin.locator('#funnel-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
    assert.deepEqual(funnel, [['Keys', '4'], ['Handed out', 'not tracked yet'], ['Redeemed', '3'], ['Launched', '2']]);
    assert.match(await text(admin, '#per-day-table caption'), /Redemptions and launches per day/);
    await check(admin, 'pool-pictures');
    // Many days are grouped so bars stay visible at 375 px: weeks past 60 days, months past 420.
    const grouped = await admin.evaluate(async () => {
      const { bucketDays } = await import('/console/js/charts.js');
      const days = (n) => Array.from({ length: n }, (_, i) => ({ date: new Date(Date.UTC(2026, 0, 5 + i)).toISOString().slice(0, 10), redeemed: 1, launched: 2, cancelled: 0 }));
      return [60, 61, 420, 1000].map((n) => { const b = bucketDays(days(n)); return [b.unit, b.buckets.length, b.buckets.reduce((a, x) => a + x.redeemed, 0), b.buckets[0].label]; });
    });
    assert.deepEqual(grouped, [['day', 60, 60, '2026-01-05'], ['week', 9, 61, 'week of 2026-01-05'], ['week', 60, 420, 'week of 2026-01-05'], ['month', 33, 1000, '2026-01']]);
  });

  await step('admin: pictures while loading, with "no redemptions yet", and an error with a retry', async () => {
    await admin.goto(`${base}/#/pools/${encodeURIComponent(untouched.pool_id)}/keys`);
    await admin.locator('#progress-empty', { hasText: 'No redemptions yet.' }).waitFor();
    assert.match(await admin.locator('#funnel-chart svg').getAttribute('aria-label'), /Keys: 1, .*Redeemed: 0, Launched: 0/);
    await check(admin, 'pool-pictures-empty');
    const stats = (url) => url.pathname.endsWith('/stats');
    // Loading: the stats held back until the page has been checked.
    let release;
    const held = new Promise((r) => { release = r; });
    await admin.route(stats, async (route) => { await held; await route.continue(); });
    await admin.goto(picturedPage);
    await admin.locator('#progress-body[aria-busy="true"]', { hasText: 'Loading the pictures' }).waitFor();
    await axe(admin, 'pool pictures loading');
    release();
    await admin.locator('#per-day-chart svg').waitFor();
    await admin.unroute(stats);
    await admin.route(stats, (route) => route.fulfill({ status: 503, headers: { 'Retry-After': '5', 'Content-Type': 'application/json' },
      body: JSON.stringify({ error: { code: 'store_busy', message: 'busy' } }) }));
    await admin.reload();
    await admin.locator('#progress-error', { hasText: 'The service is busy right now. Try again in 5 seconds.' }).waitFor();
    await axe(admin, 'pool pictures error');
    await admin.unroute(stats);
    await admin.click('#progress-retry');
    await admin.locator('#per-day-chart svg').waitFor();
  });

  await step('admin: the billing page shows redemptions per month for the last year', async () => {
    const want = (await call('GET', '/v1/stats/redemptions?months=12')).months;
    assert.equal(want.length, 12);
    await admin.goto(`${base}/#/billing`);
    await admin.locator('#months-chart svg[role="img"]').waitFor();
    await admin.locator('#months-toggle').focus();
    await admin.keyboard.press('Space');
    await admin.locator('#months-table').waitFor();
    const rows = await admin.locator('#months-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
    assert.deepEqual(rows, want.map((m) => [m.month, String(m.redeemed), String(m.cancelled)]));
    assert.equal(rows[11][0], today.slice(0, 7));
    assert.ok(Number(rows[11][1]) >= 3, 'this month has the pictured pool\'s redemptions');
    await check(admin, 'billing-months');
  });

  await step('a viewer sees the pools, keys and exports, and nothing that would change them', async () => {
    const viewer = await context.newPage();
    await viewer.goto(`${base}/`);
    await viewer.locator('#demo-viewer').click();
    await viewer.locator('h1', { hasText: 'Pools' }).waitFor();
    await viewer.locator('#pools tbody tr').first().waitFor();
    assert.equal(await viewer.locator('#new-pool').count(), 0, 'no Create a pool');
    await viewer.goto(`${base}/#/pools/${encodeURIComponent(poolId)}/keys`);
    await viewer.locator('#key-table tbody tr').first().waitFor();
    for (const sel of ['#add-one', '#paste', '#generate', '#tab-settings']) assert.equal(await viewer.locator(sel).count(), 0, `no ${sel}`);
    assert.equal(await viewer.getByRole('button', { name: /^Remove key/ }).count(), 0, 'no Remove');
    await check(viewer, 'viewer-keys');
    await viewer.goto(`${base}/#/pools/${encodeURIComponent(poolId)}/export`);
    await viewer.locator('#export-list').waitFor();
    assert.equal(await viewer.locator('#start-export').count(), 0, 'no Start export');
    await viewer.locator('#export-table tbody tr').first().waitFor();
    assert.equal(await viewer.getByRole('button', { name: /^Download/ }).count(), 0, 'no download');
    await viewer.goto(`${base}/#/courses`);
    await viewer.locator('#course-list').waitFor();
    assert.equal(await viewer.getByRole('button', { name: /^Edit/ }).count(), 0, 'no Edit');
    // Webhooks are an admin's alone (shared/src/http/access.rs): no link, and no page.
    assert.equal(await viewer.locator('#nav-webhooks').isVisible(), false, 'no Webhooks in the menu');
    await viewer.goto(`${base}/#/webhooks`);
    await viewer.locator('h1', { hasText: 'Pools' }).waitFor();
    assert.equal(await viewer.locator('#new-url').count(), 0, 'no endpoint form');
    await viewer.close();
  });

  await step('finance sees the invoices (and Activity, in its own steps) only, and cannot cancel', async () => {
    const finance = await context.newPage();
    await finance.goto(`${base}/`);
    await finance.locator('#demo-finance').click();
    await finance.locator('h1', { hasText: 'Assignments and billing' }).waitFor();
    await finance.locator('#invoice-count').waitFor();
    await finance.locator('#months-chart svg[role="img"]').waitFor();
    assert.equal(await finance.locator('#nav-pools').isVisible(), false, 'no Pools in the menu');
    assert.equal(await finance.locator('#nav-webhooks').isVisible(), false, 'no Webhooks in the menu');
    assert.equal(await finance.locator('#cancel-id').count(), 0, 'no cancelling');
    assert.equal(await finance.getByRole('button', { name: /^Cancel redemption/ }).count(), 0);
    await check(finance, 'finance-billing');
    await finance.close();
  });

  await step('admin signs in through an OIDC provider (PKCE)', () => signInThroughOidc({ base, context, admin }));

  await step('no Content-Security-Policy violations in any page', async () => {
    assert.deepEqual(cspErrors, []);
  });
}

await run(walk);
