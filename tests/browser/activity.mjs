// The Activity steps of the walk: the audit log after changes made through the API (a pool
// created, edited and given keys, and edits by a second admin), read and filtered by
// keyboard, paged with the cursor, downloaded as CSV, shown on the pool's page, and opened
// by a viewer and finance but not by a learner.

import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';

import { check, mintToken, step, tabTo, text } from './harness.mjs';

/** The walk's steps on Activity; `call` is the admin's API caller (method, path, body). */
export async function activitySteps({ base, context, admin, call }) {
  // Names with markup: the page must show them as text, never as elements.
  const created = 'Audit <b>bold</b> & "quotes"';
  const renamed = 'Audit <i>renamed</i>';
  const course = (await call('GET', '/v1/courses')).items[0];
  const pool = await call('POST', '/v1/pools', { name: created, course_id: course.course_id, starts_at: '2021-01-01T08:00:00Z', expires_at: '2099-06-01T08:00:00Z', content_availability_days: 30 });
  await call('PATCH', `/v1/pools/${pool.pool_id}`, { name: renamed, content_availability_days: 60 });
  await call('POST', `/v1/pools/${pool.pool_id}/keys`, { keys: ['AUDIT-5001', 'AUDIT-5002', 'AUDIT-5003'] });
  // A second admin's edits: more than two pages of ten, to filter by person and to page.
  const ops = await mintToken('demo-org', 'admin', 'ops-admin');
  for (let i = 0; i < 21; i++) {
    const res = await admin.request.fetch(`${base}/v1/pools/${pool.pool_id}`, { method: 'PATCH', headers: { Authorization: `Bearer ${ops}` },
      data: { content_availability_days: 61 + i } });
    assert.ok(res.ok(), `PATCH by ops-admin: ${res.status()}`);
  }
  const rows = (page, table = '#activity-table') => page.locator(`${table} tbody tr`);
  const cells = (page, column, table = '#activity-table') => page.locator(`${table} tbody td[data-label="${column}"]`).allInnerTexts();
  const apply = async (page) => {
    const reply = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/audit');
    await page.click('#activity-apply');
    await reply;
    await page.locator('#activity:not([aria-busy])').waitFor();
  };
  const today = await admin.evaluate(() => { const d = new Date(); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`; });

  await step('admin: Activity lists the changes in words, newest first, with names shown as text', async () => {
    await admin.goto(`${base}/#/`);
    await admin.locator('#nav-activity').click();
    await admin.locator('h1', { hasText: 'Activity' }).waitFor();
    assert.equal(await admin.getAttribute('#nav-activity', 'aria-current'), 'page');
    await admin.locator('#activity-filters').waitFor();
    // Only the second admin's edits, then what came just before them.
    await admin.selectOption('#activity-pool', pool.pool_id);
    await admin.selectOption('#activity-limit', '50');
    await apply(admin);
    assert.equal(await rows(admin).count(), 24);
    const actions = await cells(admin, 'Action');
    assert.match(actions[0], /Pool edited\s+pool\.updated/);
    assert.match(actions[21], /Keys pasted\s+keys\.pasted/);
    assert.match(actions[22], /Pool edited/);
    assert.match(actions[23], /Pool created\s+pool\.created/);
    const summaries = await cells(admin, 'Summary');
    assert.match(summaries[0], /^Content availability \(days\): 80 → 81$/);
    assert.match(summaries[21], /^3 keys added from 3 lines$/);
    assert.match(summaries[22], /Name: Audit <b>bold<\/b> & "quotes" → Audit <i>renamed<\/i>/);
    assert.match(summaries[22], /Content availability \(days\): 30 → 60/);
    assert.match(summaries[23], /Name: Audit <b>bold<\/b> & "quotes"[\s\S]*Course: Forklift safety/);
    assert.equal(await admin.locator('main b, main i').count(), 0, 'markup in names stays text');
    const who = await cells(admin, 'Who');
    assert.match(who[0], /ops-admin\s+admin/);
    assert.match(who[23], /demo-admin\s+admin/);
    const pools = await cells(admin, 'Pool');
    assert.ok(pools.every((p) => p === renamed), 'the pool by its name');
    // Local time shown; the instant in UTC for machines and on hover.
    const time = admin.locator('#activity-table tbody tr').first().locator('time');
    assert.match(await time.getAttribute('datetime'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.match(await time.getAttribute('title'), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    assert.match(await text(admin, '#activity-dates-hint'), /Europe\/Paris/);
    await check(admin, 'activity');
  });

  await step('admin: Activity filters by action, person and dates from the keyboard, and a reload keeps them', async () => {
    await admin.goto(`${base}/#/activity`);
    await admin.locator('#activity-table tbody tr').first().waitFor();
    // The action by typing its name on the select, then Enter on the button.
    await admin.focus('#activity-action');
    await admin.keyboard.type('Keys pasted');
    assert.equal(await admin.inputValue('#activity-action'), 'keys.pasted');
    await tabTo(admin, '#activity-apply');
    const reply = admin.waitForResponse((r) => new URL(r.url()).pathname === '/v1/audit' && new URL(r.url()).searchParams.get('action') === 'keys.pasted');
    await admin.keyboard.press('Enter');
    await reply;
    await admin.locator('#activity:not([aria-busy])').waitFor();
    assert.ok((await cells(admin, 'Action')).every((a) => /keys\.pasted/.test(a)), 'only pastes');
    assert.ok((await rows(admin).count()) >= 1);
    // The keyboard stays on the form; the address holds the filter.
    assert.equal(await admin.evaluate(() => document.activeElement.id), 'activity-apply');
    assert.match(admin.url(), /#\/activity\?action=keys\.pasted$/);
    // The person: type, then Enter in the field.
    await admin.click('#activity-clear');
    await admin.locator('#activity-table tbody tr').first().waitFor();
    await admin.focus('#activity-actor');
    await admin.keyboard.type('ops-admin');
    await admin.selectOption('#activity-limit', '10');
    await admin.focus('#activity-actor');
    let answered = admin.waitForResponse((r) => new URL(r.url()).searchParams.get('actor') === 'ops-admin');
    await admin.keyboard.press('Enter');
    await answered;
    await admin.locator('#activity:not([aria-busy])').waitFor();
    assert.equal(await rows(admin).count(), 10);
    assert.ok((await cells(admin, 'Who')).every((w) => /^ops-admin\s+admin$/.test(w)), 'only ops-admin');
    // Today, in the reader's days: the same records; from tomorrow: none.
    await admin.fill('#activity-since', today);
    await admin.fill('#activity-until', today);
    await apply(admin);
    assert.equal(await rows(admin).count(), 10);
    assert.match(admin.url(), new RegExp(`actor=ops-admin&since=${today}&until=${today}&limit=10$`));
    await admin.reload();
    await admin.locator('#activity-table tbody tr').first().waitFor();
    assert.equal(await admin.inputValue('#activity-actor'), 'ops-admin');
    assert.equal(await admin.inputValue('#activity-since'), today);
    assert.equal(await admin.inputValue('#activity-limit'), '10');
    assert.equal(await rows(admin).count(), 10);
    // A first day after the last is said at the field, and nothing is asked.
    await admin.fill('#activity-since', '2099-01-02');
    await admin.fill('#activity-until', '2099-01-01');
    await admin.click('#activity-apply');
    await admin.locator('#activity-until-error', { hasText: 'before the first' }).waitFor();
    assert.equal(await admin.evaluate(() => document.activeElement.id), 'activity-until');
    await check(admin, 'activity-date-error');
    await admin.fill('#activity-until', '2099-12-31');
    await apply(admin);
    await admin.locator('#activity-empty', { hasText: 'No activity matches these filters' }).waitFor();
    await check(admin, 'activity-empty');
    // The API's refusal, in plain words.
    const audit = (url) => url.pathname === '/v1/audit';
    await admin.route(audit, (route) => route.fulfill({ status: 503, headers: { 'Retry-After': '5', 'Content-Type': 'application/json' },
      body: JSON.stringify({ error: { code: 'store_busy', message: 'busy' } }) }));
    await apply(admin);
    await admin.locator('#activity-alert', { hasText: 'The service is busy right now. Try again in 5 seconds.' }).waitFor();
    await admin.unroute(audit);
  });

  await step('admin: Activity pages with the cursor, by keyboard, and its CSV holds the filtered records', async () => {
    await admin.goto(`${base}/#/activity?actor=ops-admin&limit=10`);
    await admin.locator('#activity-range', { hasText: 'Records 1 to 10' }).waitFor();
    const newest = (await cells(admin, 'Summary'))[0];
    assert.equal(await admin.locator('#activity-newer').count(), 0);
    await admin.focus('#activity-older');
    await admin.keyboard.press('Enter');
    await admin.locator('#activity-range', { hasText: 'Records 11 to 20' }).waitFor();
    assert.equal(await admin.evaluate(() => document.activeElement.id), 'activity-older', 'the keyboard stays on the pager');
    await admin.keyboard.press('Enter');
    await admin.locator('#activity-range', { hasText: 'Records 21 to 21' }).waitFor();
    assert.equal(await rows(admin).count(), 1);
    assert.equal(await admin.locator('#activity-older').count(), 0);
    assert.match((await cells(admin, 'Summary'))[0], /^Content availability \(days\): 60 → 61$/, 'the oldest last');
    await check(admin, 'activity-last-page');
    await admin.click('#activity-newest');
    await admin.locator('#activity-range', { hasText: 'Records 1 to 10' }).waitFor();
    assert.equal((await cells(admin, 'Summary'))[0], newest);
    await admin.click('#activity-older');
    await admin.locator('#activity-range', { hasText: 'Records 11 to 20' }).waitFor();
    await admin.click('#activity-newer');
    await admin.locator('#activity-range', { hasText: 'Records 1 to 10' }).waitFor();
    // The CSV: every record the filters admit, not one page, with the token (not a plain link).
    const [download] = await Promise.all([admin.waitForEvent('download'), admin.click('#activity-csv')]);
    assert.equal(download.suggestedFilename(), 'keypool-activity.csv');
    const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    assert.match(csv[0], /^at,event_id,action,actor,role/);
    assert.equal(csv.length, 22, 'a header and the 21 records');
    assert.ok(csv.slice(1).every((l) => l.includes(',pool.updated,ops-admin,admin,')), 'only ops-admin');
  });

  await step('admin: a pool\'s page shows its recent activity, refreshed after a change, linked to Activity', async () => {
    await admin.goto(`${base}/#/pools/${encodeURIComponent(pool.pool_id)}/keys`);
    await admin.locator('#pool-activity-table tbody tr').first().waitFor();
    assert.equal(await rows(admin, '#pool-activity-table').count(), 10);
    assert.match((await cells(admin, 'Summary', '#pool-activity-table'))[0], /80 → 81/);
    // A key added on the page is the newest line.
    await admin.fill('#one-key', 'AUDIT-5004');
    await admin.click('#add-one');
    await admin.locator('#pool-activity-table tbody tr:first-child', { hasText: 'Key added' }).waitFor();
    assert.match((await cells(admin, 'Who', '#pool-activity-table'))[0], /demo-admin/);
    assert.match((await cells(admin, 'Summary', '#pool-activity-table'))[0], /^1 key added from 1 line$/);
    await check(admin, 'pool-activity');
    await admin.click('#pool-activity-all');
    await admin.locator('h1', { hasText: 'Activity' }).waitFor();
    await admin.locator('#activity-table tbody tr').first().waitFor();
    assert.equal(await admin.inputValue('#activity-pool'), pool.pool_id);
    assert.ok((await cells(admin, 'Pool')).every((p) => p === renamed), 'only this pool');
  });

  await step('viewer and finance open Activity; a learner cannot', async () => {
    const viewer = await context.newPage();
    await viewer.goto(`${base}/`);
    await viewer.locator('#demo-viewer').click();
    await viewer.locator('h1', { hasText: 'Pools' }).waitFor();
    await viewer.locator('#nav-activity').click();
    await viewer.locator('#activity-table tbody tr').first().waitFor();
    assert.equal(await viewer.locator('#activity-pool').count(), 1, 'a viewer reads pools, so filters by them');
    await check(viewer, 'viewer-activity');
    await viewer.close();

    const finance = await context.newPage();
    await finance.goto(`${base}/`);
    await finance.locator('#demo-finance').click();
    await finance.locator('h1', { hasText: 'Assignments and billing' }).waitFor();
    assert.equal(await finance.locator('#nav-activity').isVisible(), true, 'Activity in the menu');
    await finance.locator('#nav-activity').click();
    await finance.locator('#activity-table tbody tr').first().waitFor();
    // Finance sees no pool pages: no pool filter, and pools by id without a link.
    assert.equal(await finance.locator('#activity-pool').count(), 0);
    assert.equal(await finance.locator('#activity-table a[href^="#/pools/"]').count(), 0);
    assert.ok((await cells(finance, 'Pool')).includes(pool.pool_id));
    await check(finance, 'finance-activity');
    // Reload keeps finance on Activity; another page still sends them to billing.
    await finance.reload();
    await finance.locator('#activity-table tbody tr').first().waitFor();
    await finance.goto(`${base}/#/pools/${encodeURIComponent(pool.pool_id)}/keys`);
    await finance.locator('h1', { hasText: 'Assignments and billing' }).waitFor();
    await finance.close();

    const learnerToken = await mintToken('demo-org', 'learner', 'demo-learner');
    const denied = await admin.request.fetch(`${base}/v1/audit`, { headers: { Authorization: `Bearer ${learnerToken}` } });
    assert.equal(denied.status(), 403);
    const learner = await context.newPage();
    await learner.goto(`${base}/`);
    await learner.evaluate((t) => sessionStorage.setItem('keypool.token', t), learnerToken);
    await learner.goto(`${base}/#/activity`);
    await learner.locator('#token').waitFor();
    assert.equal(await learner.locator('#nav').isHidden(), true);
    assert.equal(await learner.locator('#activity-table').count(), 0);
    await learner.close();
  });
}
