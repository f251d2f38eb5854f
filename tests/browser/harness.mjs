// The browser suite's harness: the server it walks (keypool-local on a free port, with a fresh
// data folder and the demo sign-in), tokens from that server, steps that report and show the
// pages of a failure, axe-core, screenshots and reflow, keyboard moves, and the run itself:
// its time budget, closing what the walk opened, and the summary.

import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createInterface } from 'node:readline';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository's root. */
export const root = join(here, '..', '..');
const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
/** Where the screenshots go (not in git; KEYPOOL_BROWSER_SHOTS moves them out of the tree). */
const SHOTS = process.env.KEYPOOL_BROWSER_SHOTS || join(here, 'screenshots');
const BUDGET_MS = Number(process.env.KEYPOOL_BROWSER_BUDGET_MS || 10 * 60 * 1000);
const BIN = process.env.KEYPOOL_BIN
  || join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'debug', 'keypool-local');
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];

const results = [];
let server;
/** What the walk opens, for the harness to show when a step fails and to close at the end. */
export const opened = { context: undefined, provider: undefined, receiver: undefined };
/** The run's own folder: the server's data and the browser's profile. */
export const temp = mkdtempSync(join(tmpdir(), 'keypool-browser-'));

function cleanup() {
  if (server && server.exitCode === null) server.kill('SIGTERM');
  if (opened.provider) opened.provider.close();
  if (opened.receiver) opened.receiver.close();
  rmSync(temp, { recursive: true, force: true });
}

/** Runs one step of the walk: `ok` with its time, or `FAIL` with the error and every open page. */
export async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
    results.push([name, 'ok', Date.now() - t]);
    console.log(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    results.push([name, 'FAIL', Date.now() - t]);
    console.log(`FAIL ${name}\n${e.stack || e}`);
    for (const [i, p] of (opened.context ? opened.context.pages() : []).entries()) {
      await p.screenshot({ path: join(SHOTS, `failure-${i}.png`), fullPage: true }).catch(() => {});
      console.log(`     page ${i} ${p.url()}: ${(await p.locator('main').innerText().catch(() => '')).slice(0, 1500)}`);
    }
    throw e;
  }
}

/**
 * Starts the server on a free port, with the demo sign-in and webhooks allowed to a receiver
 * on this machine; resolves to its base URL. A failed delivery is retried by itself no sooner
 * than five minutes later, so what the walk sees after a failure is the console's retry.
 */
export function startServer() {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: cargo build -p keypool-local first`);
  server = spawn(BIN, ['serve', '--demo', '--allow-private-webhooks', '--port', '0', '--data-dir', join(temp, 'data'), '--export-every', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn', KEYPOOL_WEBHOOK_FIRST_RETRY_MS: '600000' },
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: server.stdout });
    lines.once('line', (line) => {
      const url = line.split(/\s+/).find((w) => w.startsWith('http://'));
      url ? resolve(url) : reject(new Error(`no address in ${line}`));
    });
    server.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
}

/** A token the server accepts, printed by `keypool-local token` from the server's data folder. */
export async function mintToken(org, role, sub) {
  const { stdout } = await promisify(execFile)(BIN, ['token', '--org', org, '--role', role, '--sub', sub, '--data-dir', join(temp, 'data')]);
  return stdout.trim();
}

/** axe-core with the WCAG 2.2 AA tags: zero violations, or a failure naming them. */
export async function axe(page, label) {
  // evaluate() runs outside the page's CSP, so the strict policy stays on while axe runs.
  await page.evaluate(AXE);
  const r = await page.evaluate((tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags } }), TAGS);
  const v = r.violations.map((x) => `${x.id}: ${x.help} (${x.nodes.map((n) => n.target.join(' ')).join(', ')})`);
  assert.deepEqual(v, [], `axe violations on ${label}`);
}

/** Screenshots at 1280 and 375 px, and no horizontal scrolling at 320 px (WCAG 1.4.10). */
async function shoot(page, name) {
  for (const width of [1280, 375]) {
    await page.setViewportSize({ width, height: 900 });
    await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 320, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `${name} scrolls sideways at 320 px by ${overflow} px`);
  await page.setViewportSize({ width: 1280, height: 900 });
}

/** axe-core, then the screenshots and the reflow check. */
export async function check(page, name) {
  await axe(page, name);
  await shoot(page, name);
}

/** Presses Tab until the element matching `selector` has focus (at most `max` times). */
export async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** The visible text of what `sel` matches. */
export const text = (page, sel) => page.locator(sel).innerText();

/** Runs the walk within its time budget, closes what it opened, prints the summary, and exits
 * 1 when a step (or anything between them) failed. */
export async function run(walk) {
  const started = Date.now();
  const budget = setTimeout(() => {
    console.error(`FAIL: the browser suite ran past its budget of ${BUDGET_MS / 1000} s`);
    cleanup();
    process.exit(1);
  }, BUDGET_MS);

  let failed = false;
  try {
    mkdirSync(SHOTS, { recursive: true });
    await walk();
  } catch (e) {
    failed = true;
    if (!results.length || results[results.length - 1][1] !== 'FAIL') console.log(`FAIL before or between steps: ${e.stack || e}`);
  } finally {
    clearTimeout(budget);
    if (opened.context) await opened.context.close().catch(() => {});
    cleanup();
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`${results.filter((r) => r[1] === 'ok').length}/${results.length} steps passed in ${seconds} s; screenshots in ${SHOTS}`);
  process.exit(failed ? 1 : 0);
}
