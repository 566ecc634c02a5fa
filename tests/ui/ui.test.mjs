// The web UI, end to end in headless Chromium against a real local fleet:
// the story of the seed blog post told through the browser. A platform
// engineer signs in, creates pg-dev-db-1, makes it highly available with two
// read replicas from the Cluster Settings wizard, promotes a replica and
// watches it become the primary without reloading, and meets readable
// refusals on the way. Screenshots of every page go to tests/ui/output/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Fleet, launchBrowser, screenshot, expectText, waitFor } from './fleet.mjs';

const DB = 'pg-dev-db-1';
let fleet;
let browser;
let page;
let failed = false;

before(async () => {
  fleet = await Fleet.start();
  console.log(`# fleet up at ${fleet.baseUrl} (data in ${fleet.dataDir})`);
  browser = await launchBrowser();
  page = await (await browser.newContext(contextOptions())).newPage();
  page.setDefaultTimeout(15_000);
});

after(async () => {
  await browser?.close();
  await fleet?.stop({ keep: failed });
});

/** The fleet's HTTPS certificate comes from its own CA, unknown to Chromium. */
function contextOptions() {
  return { viewport: { width: 1366, height: 900 }, ignoreHTTPSErrors: true };
}

/** Runs a step; a failure keeps the fleet's folder and stops later steps. */
function step(name, body) {
  test(name, { skip: false }, async (t) => {
    if (failed) return t.skip('an earlier step failed');
    try {
      await body();
    } catch (error) {
      failed = true;
      await screenshot(page, `failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
      throw error;
    }
  });
}

const nodeRow = (name) => page.locator(`#nodes-table tr[data-node="${name}"]`);

step('the sign-in page refuses a wrong token and accepts the admin token', async () => {
  await page.goto(fleet.baseUrl + '/');
  assert.match(page.url(), /\/login/);
  await screenshot(page, '01-sign-in');
  await page.getByLabel('API token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expectText(page.locator('#login-error'), /not a valid API token/);
  await page.getByLabel('API token').fill(fleet.token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/databases$/);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'pgfleet_session');
  assert.ok(session?.httpOnly, 'session cookie is HttpOnly');
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.secure, fleet.tls, 'session cookie is Secure over HTTPS');
});

step('an invalid database name is refused with a readable message', async () => {
  await page.getByLabel('Name').fill('Bad_Name');
  await page.getByRole('button', { name: 'Create database' }).click();
  await expectText(page.locator('#create-error'), /invalid name "Bad_Name".*lowercase letters/i, 5_000);
  assert.equal(await page.getByLabel('Name').inputValue(), 'Bad_Name', 'the form keeps what was typed');
  await screenshot(page, '02-databases-invalid-name');
});

step('a database created through the form goes online without a reload', async () => {
  await page.getByLabel('Name').fill(DB);
  await page.getByRole('button', { name: 'Create database' }).click();
  await page.waitForURL(new RegExp(`/databases/${DB}$`));
  await expectText(page.locator('.alert.ok'), /Creating database pg-dev-db-1/, 5_000);
  await page.evaluate(() => { window.__noReload = true; });
  await expectText(page.locator('#db-status'), /^Online$/, 90_000);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
  await screenshot(page, '03-database-summary');
});

step('the connection URI shows its password only after a click', async () => {
  const uri = page.locator('#uri');
  assert.match(await uri.inputValue(), /postgresql:\/\/pgadmin:•+@primary\.pg-dev-db-1\./);
  await page.getByRole('button', { name: 'Show password' }).click();
  await waitFor('the revealed URI', async () => /pgadmin:[A-Za-z0-9]{32}@/.test(await uri.inputValue()), 5_000);
  await screenshot(page, '04-database-summary-uri');
});

step('Cluster Settings shows HA status Unconfigured for a standalone database', async () => {
  await page.getByRole('link', { name: 'Cluster Settings' }).click();
  await page.waitForURL(/\/cluster$/);
  await expectText(page.locator('#ha-status'), /^Unconfigured$/, 5_000);
  await expectText(page.locator('#ha-missing'), /Complete/, 5_000);
  await expectText(nodeRow(DB).locator('[data-field="role"]'), /^Primary$/, 5_000);
  await screenshot(page, '05-cluster-unconfigured');
});

async function createReplica(name, haStatus, screenshotName) {
  await page.getByRole('link', { name: '+ Create' }).click();
  await page.waitForURL(/\/replicas\/new$/);
  if (screenshotName) await screenshot(page, screenshotName);
  await page.getByLabel('Replica name').fill(name);
  await page.getByRole('button', { name: 'Create read replica' }).click();
  await page.waitForURL(/\/cluster$/);
  await page.evaluate(() => { window.__noReload = true; });
  await expectText(page.locator('#ha-status'), haStatus, 150_000);
  await expectText(nodeRow(name).locator('[data-field="replication"]'), /^Active$/, 30_000);
  await expectText(nodeRow(name).locator('[data-field="status"]'), /^Online$/, 30_000);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
}

step('the first read replica from the wizard makes HA status Incomplete', async () => {
  await createReplica('pg-replica-1', /^Incomplete$/, '06-replica-wizard');
  await expectText(page.locator('#ha-missing + ul'), /one more read replica/, 5_000);
  await screenshot(page, '07-cluster-incomplete');
});

step('the wizard refuses an invalid replica name with a readable message', async () => {
  await page.getByRole('link', { name: '+ Create' }).click();
  assert.equal(await page.getByLabel('Failover priority').inputValue(), '50', 'priority defaults to 50');
  await page.getByLabel('Replica name').fill('Bad_Name');
  await page.getByRole('button', { name: 'Create read replica' }).click();
  await expectText(page.locator('#replica-error'), /invalid name "Bad_Name"/i, 5_000);
  await screenshot(page, '08-replica-wizard-invalid-name');
  await page.getByRole('link', { name: 'Cancel' }).click();
  await page.waitForURL(/\/cluster$/);
});

step('the second read replica makes HA status Complete, both replicas Active', async () => {
  await createReplica('pg-replica-2', /^Complete$/);
  await expectText(nodeRow('pg-replica-1').locator('[data-field="replication"]'), /^Active$/, 30_000);
  await expectText(nodeRow('pg-replica-2').locator('[data-field="replication"]'), /^Active$/, 30_000);
  await screenshot(page, '09-cluster-complete');
});

step('Promote Replica asks for confirmation and the replica becomes Primary live', async () => {
  // The page offers Promote Replica exactly when the API accepts it (the
  // view's `actions`); until then the menu shows it disabled with the reason.
  await waitFor('the view to offer promoting pg-replica-1', async () => {
    const db = await fleet.api(`/api/v1/databases/${DB}`);
    const node = db.nodes.find((n) => n.name === 'pg-replica-1');
    return node?.actions?.find((a) => a.action === 'promote')?.possible === true;
  }, 60_000);
  const row = nodeRow('pg-replica-1');
  await expectText(row.locator('[data-field="status"]'), /^Online$/, 5_000);
  await row.getByText('Database Actions').click();
  await screenshot(page, '10-database-actions');
  await row.getByRole('link', { name: 'Promote Replica…' }).click();
  await page.waitForURL(/\/promote$/);
  await screenshot(page, '11-promote-confirm');
  await page.getByRole('button', { name: 'Promote Replica' }).click();
  await page.waitForURL(/\/cluster$/);
  await page.evaluate(() => {
    window.__noReload = true;
    window.__seen = [];
    const record = () => {
      const cells = document.querySelector('#nodes-table tr[data-node="pg-replica-1"]');
      if (!cells) return;
      const role = cells.querySelector('[data-field="role"]')?.textContent.trim();
      const status = cells.querySelector('[data-field="status"]')?.textContent.trim();
      const last = window.__seen[window.__seen.length - 1];
      const now = `${status}/${role}`;
      if (now !== last) window.__seen.push(now);
    };
    record();
    new MutationObserver(record).observe(document.body, { childList: true, subtree: true });
  });
  const flash = (await page.locator('.alert').first().textContent()).trim();
  assert.match(flash, /Promoting pg-replica-1/, `the promote was accepted (page says: ${flash})`);
  await expectText(row.locator('[data-field="role"]'), /^Primary$/, 60_000);
  await expectText(row.locator('[data-field="status"]'), /^Online$/, 60_000);
  await expectText(nodeRow(DB).locator('[data-field="role"]'), /^Replica$/, 60_000);
  const seen = await page.evaluate(() => window.__seen);
  console.log(`# pg-replica-1 went through: Online/Replica → ${seen.join(' → ')}`);
  assert.ok(seen.some((state) => state.startsWith('Modifying/')), `Modifying was shown while it switched over (${seen})`);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
  await screenshot(page, '12-cluster-after-promote');
});

step('the Tasks and Events tabs show the history', async () => {
  const tabs = page.getByRole('navigation', { name: 'Database sections' });
  await tabs.getByRole('link', { name: 'Tasks' }).click();
  await page.waitForURL(/\/databases\/pg-dev-db-1\/tasks$/);
  await expectText(page.locator('.tasks-table tbody'), /Create replica/, 5_000);
  await screenshot(page, '13-database-tasks');
  await tabs.getByRole('link', { name: 'Events' }).click();
  await expectText(page.locator('main table tbody'), /pg-replica-1/, 30_000);
  await screenshot(page, '14-database-events');
});

step('the summary charts the last hour and draws the switchover\'s timeline', async () => {
  const tabs = page.getByRole('navigation', { name: 'Database sections' });
  await tabs.getByRole('link', { name: 'Summary' }).click();
  await page.waitForURL(new RegExp(`/databases/${DB}$`));
  await page.evaluate(() => { window.__noReload = true; });
  // One point every 10 s: the lag chart draws the replicas once sampled, the
  // commit rate once the new primary has two points (the region polls).
  const drawn = (chart) => page.locator(`${chart} g.series`).filter({ has: page.locator('polyline, circle') });
  await waitFor('replication lag drawn for the replicas', async () => (await drawn('#lag-svg').count()) >= 2, 60_000);
  await waitFor('the commit rate drawn', async () => (await drawn('#commits-svg').count()) === 1, 60_000);
  await expectText(page.locator('#lag-chart .legend'), /pg-dev-db-1[\s\S]*pg-replica-2|pg-replica-2[\s\S]*pg-dev-db-1/, 5_000);
  const timeline = page.locator('#failover-timelines figure.timeline').first();
  await expectText(timeline.locator('figcaption'), /Switchover: pg-dev-db-1 → pg-replica-1/, 5_000);
  for (const label of ['Switchover began', 'Promoted', 'DNS switched', 'First write']) {
    assert.equal(await timeline.locator(`g.step[data-step="${label}"]`).count(), 1, `a ${label} row`);
  }
  await expectText(timeline.locator('g.step[data-step="Promoted"] text').last(), /^\+\d/, 5_000);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
  await screenshot(page, '14b-database-summary-charts');
});

step('the fleet pages: hosts, tasks and the HA overview', async () => {
  const nav = page.getByRole('navigation', { name: 'Main' });
  // A second, standalone database gives the HA overview something to flag.
  await nav.getByRole('link', { name: 'Databases' }).click();
  await page.getByLabel('Name').fill('pg-dev-db-2');
  await page.getByRole('button', { name: 'Create database' }).click();
  await page.waitForURL(/\/databases\/pg-dev-db-2$/);
  await expectText(page.locator('#db-status'), /^Online$/, 90_000);
  await nav.getByRole('link', { name: 'Hosts' }).click();
  await expectText(page.locator('#hosts-table tbody'), /host-4/, 5_000);
  // Every host shows its certificate's remaining life (90 days by default).
  await expectText(page.locator('#hosts-table tbody tr[data-host="host-1"]'), /expires in (89|90) d/, 5_000);
  // Add a host: a one-time join token and the command that uses it.
  await page.getByRole('button', { name: 'Create join token' }).click();
  await expectText(page.locator('#join-command'), /PGFLEET_JOIN_TOKEN=[A-Za-z0-9]+ pgfleet agent/, 5_000);
  await screenshot(page, '15-hosts');
  await nav.getByRole('link', { name: 'Tasks' }).click();
  await expectText(page.locator('.tasks-table tbody'), /Create database/, 5_000);
  await screenshot(page, '16-tasks');
  await nav.getByRole('link', { name: 'HA overview' }).click();
  await expectText(page.locator('#attention-table tr[data-db="pg-dev-db-2"]'), /Unconfigured/, 5_000);
  await expectText(page.locator('#healthy-list'), /pg-dev-db-1/, 5_000);
  await screenshot(page, '17-ha-overview');
  await nav.getByRole('link', { name: 'Databases' }).click();
  await expectText(page.locator(`tr[data-db="${DB}"] [data-field="ha"]`), /^Complete$/, 5_000);
  await screenshot(page, '18-databases');
});

/** Waits until the latest task on the Cluster Settings tab has succeeded. */
async function latestTaskSucceeded(kind) {
  await expectText(page.locator('#latest-task'), new RegExp(`${kind}[\\s\\S]*Succeeded`), 90_000);
}

step('Maintenance goes on and off from Database Actions', async () => {
  await page.goto(`${fleet.baseUrl}/databases/${DB}/cluster`);
  const row = nodeRow('pg-replica-2');
  await row.getByText('Database Actions').click();
  await row.getByRole('button', { name: 'Maintenance on' }).click();
  await page.waitForURL(/\/cluster$/);
  await expectText(page.locator('.alert').first(), /Turning maintenance on for pg-replica-2/, 5_000);
  await expectText(row.locator('.badge.warn'), /Maintenance/, 30_000);
  await latestTaskSucceeded('Set maintenance');
  await screenshot(page, '20-cluster-maintenance');
  await row.getByText('Database Actions').click();
  await row.getByRole('button', { name: 'Maintenance off' }).click();
  await page.waitForURL(/\/cluster$/);
  await waitFor('the maintenance badge to go', async () => (await row.locator('.badge.warn').count()) === 0, 30_000);
  await latestTaskSucceeded('Set maintenance');
});

step('Delete replica asks for confirmation and HA status drops to Incomplete', async () => {
  const row = nodeRow('pg-replica-2');
  await row.getByText('Database Actions').click();
  await row.getByRole('link', { name: 'Delete replica…' }).click();
  await page.waitForURL(/\/replicas\/pg-replica-2\/delete$/);
  await screenshot(page, '21-delete-replica-confirm');
  await page.getByRole('button', { name: 'Delete replica' }).click();
  await page.waitForURL(/\/cluster$/);
  await waitFor('pg-replica-2 to leave the table', async () => (await row.count()) === 0, 90_000);
  await expectText(page.locator('#ha-status'), /^Incomplete$/, 30_000);
});

step('Delete database asks for confirmation and the database goes away', async () => {
  await page.goto(`${fleet.baseUrl}/databases/pg-dev-db-2`);
  await page.getByRole('link', { name: 'Delete database…' }).click();
  await page.waitForURL(/\/databases\/pg-dev-db-2\/delete$/);
  await page.getByRole('button', { name: 'Delete database' }).click();
  await page.waitForURL(/\/databases$/);
  await expectText(page.locator('.alert').first(), /Deleting database pg-dev-db-2/, 5_000);
  await waitFor('pg-dev-db-2 to leave the list', async () => (await page.locator('tr[data-db="pg-dev-db-2"]').count()) === 0, 90_000);
});

step('without JavaScript the pages read and forms still work', async () => {
  const context = await browser.newContext({ ...contextOptions(), javaScriptEnabled: false });
  const plain = await context.newPage();
  await plain.goto(fleet.baseUrl + '/databases/' + DB + '/cluster');
  await plain.getByLabel('API token').fill(fleet.token);
  await plain.getByRole('button', { name: 'Sign in' }).click();
  await plain.waitForURL(/\/cluster$/);
  await expectText(plain.locator('#ha-status'), /^Incomplete$/, 5_000);
  await plain.goto(fleet.baseUrl + '/databases');
  await plain.getByLabel('Name').fill('-bad');
  await plain.getByRole('button', { name: 'Create database' }).click();
  await expectText(plain.locator('#create-error'), /invalid name/i, 5_000);
  await context.close();
});

step('API tokens: a viewer token is created once, listed and revoked', async () => {
  const nav = page.getByRole('navigation', { name: 'Main' });
  await nav.getByRole('link', { name: 'API tokens' }).click();
  await page.waitForURL(/\/tokens$/);
  await expectText(page.locator('#tokens-table tr[data-token="admin"]'), /admin/, 5_000);
  await page.getByLabel('Token name').fill('ui-reader');
  await page.getByLabel('Role').selectOption('viewer');
  await page.getByRole('button', { name: 'Create token' }).click();
  await expectText(page.locator('#new-token-card'), /will not be shown again/, 5_000);
  assert.match(await page.locator('#new-token').inputValue(), /^\S{20,}$/, 'the new token is shown');
  assert.equal(await page.locator('#new-token-card [data-copy="new-token"]').count(), 1, 'a copy button');
  const row = page.locator('#tokens-table tr[data-token="ui-reader"]');
  await expectText(row.locator('[data-field="role"]'), /^viewer$/, 5_000);
  await screenshot(page, '22-api-tokens-created');
  await row.getByRole('link', { name: 'Revoke ui-reader' }).click();
  await page.waitForURL(/\/tokens\/ui-reader\/revoke$/);
  await screenshot(page, '23-revoke-token-confirm');
  await page.getByRole('button', { name: 'Revoke token' }).click();
  await page.waitForURL(/\/tokens$/);
  await expectText(page.locator('.alert.ok'), /Token ui-reader revoked/, 5_000);
  assert.equal(await row.count(), 0, 'ui-reader left the list');
  assert.equal(await page.locator('#new-token').count(), 0, 'the token is not shown again');
});

step('an unknown page answers with a 404 page that leads back to Databases', async () => {
  const response = await page.goto(fleet.baseUrl + '/no/such/page');
  assert.equal(response.status(), 404);
  await expectText(page.locator('h1'), /Page not found/, 5_000);
  await screenshot(page, '24-not-found');
  await page.getByRole('link', { name: 'Back to databases' }).click();
  await page.waitForURL(/\/databases$/);
});

step('a viewer token signs in read-only, and revoking it ends the session', async () => {
  const { token } = await fleet.api('/api/v1/tokens', { method: 'POST', body: { name: 'ui-viewer', role: 'viewer' } });
  const context = await browser.newContext(contextOptions());
  const viewer = await context.newPage();
  await viewer.goto(fleet.baseUrl + '/databases/' + DB + '/cluster');
  await viewer.getByLabel('API token').fill(token);
  await viewer.getByRole('button', { name: 'Sign in' }).click();
  await viewer.waitForURL(/\/cluster$/);
  await expectText(viewer.locator('.role-badge'), /Read-only/, 5_000);
  assert.equal(await viewer.getByRole('link', { name: '+ Create' }).count(), 0, 'no + Create for a viewer');
  assert.equal(await viewer.getByText('Database Actions').count(), 0, 'no Database Actions for a viewer');
  await screenshot(viewer, '19-viewer-cluster');
  const status = await viewer.evaluate(async (db) => {
    const csrf = document.querySelector('form.signout input[name=csrf]').value;
    const body = new URLSearchParams({ csrf, name: 'pg-replica-9' });
    return (await fetch(`/databases/${db}/replicas`, { method: 'POST', body })).status;
  }, DB);
  assert.equal(status, 403, 'a viewer cannot create a replica');
  assert.equal(await viewer.getByRole('link', { name: 'API tokens' }).count(), 0, 'no API tokens link for a viewer');
  await viewer.goto(fleet.baseUrl + '/tokens');
  await expectText(viewer.locator('main .alert.error'), /managed with an admin token only/, 5_000);
  await fleet.api('/api/v1/tokens/ui-viewer', { method: 'DELETE' });
  await viewer.goto(fleet.baseUrl + '/databases');
  assert.match(viewer.url(), /\/login/, 'the revoked token no longer signs in');
  await context.close();
});

step('a form without the CSRF token is refused, and sign-out ends the session', async () => {
  const status = await page.evaluate(async () => {
    const response = await fetch('/databases', { method: 'POST', body: new URLSearchParams({ name: 'x' }) });
    return response.status;
  });
  assert.equal(status, 403);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/login$/);
  await page.goto(fleet.baseUrl + '/databases');
  assert.match(page.url(), /\/login/);
});
