// Drives Debian's chromium (headless) through the fleet console the way an operator would:
// log in, see the devices, open one and look at its alerts and score plot, start a staged
// rollout and abort it, roll one device back. Run by tests/fleet/console_integration_test.cc,
// which starts the fleet and checks the effects on the store and on a real agent.
//
// Environment: CONSOLE_URL, TOKEN, ALERT_DEVICE (a device with alerts), ROLLBACK_DEVICE,
// ROLLOUT ("name/version", pending), MIN_DEVICES, USER_DATA_DIR, SCREENSHOT_DIR (optional).
// Prints one JSON line per step; exits 1 on the first failure.
import puppeteer from 'puppeteer-core';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const URL = env('CONSOLE_URL');
const TOKEN = env('TOKEN');
const ALERT_DEVICE = env('ALERT_DEVICE');
const ROLLBACK_DEVICE = env('ROLLBACK_DEVICE');
const ROLLOUT = env('ROLLOUT');
const MIN_DEVICES = Number(env('MIN_DEVICES', '1'));
const SHOTS = process.env.SCREENSHOT_DIR || '';

const log = (step, extra) => console.log(JSON.stringify({ step, ...extra }));
function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

async function waitForText(page, selector, text, timeoutMs) {
  await page.waitForFunction(
    (sel, t) => [...document.querySelectorAll(sel)].some(e => e.textContent.includes(t)),
    { timeout: timeoutMs, polling: 250 }, selector, text);
}

const browser = await puppeteer.launch({
  executablePath: '/usr/bin/chromium',
  headless: false,  // the flags below ask for headless mode explicitly
  userDataDir: env('USER_DATA_DIR'),
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    '--disable-dev-shm-usage', '--window-size=1366,900'],
});
const problems = [];
let code = 0;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1366, height: 900 });
  page.setDefaultTimeout(20000);
  page.on('pageerror', e => problems.push('page error: ' + e.message));
  page.on('console', m => { if (m.type() === 'error' && !m.text().includes('401')) problems.push('console: ' + m.text()); });
  page.on('dialog', d => d.accept());

  // Log in.
  await page.goto(URL, { waitUntil: 'networkidle0' });
  await page.waitForSelector('#login-token');
  await page.type('#login-token', TOKEN);
  await page.click('#login-submit');
  await page.waitForSelector('table#devices tbody tr[data-device]');
  const role = await page.$eval('#who-role', e => e.textContent);
  check(role === 'operator', `logged in as operator (got ${role})`);
  log('login', { role });

  // The simulated devices are listed.
  const ids = await page.$$eval('table#devices tbody tr[data-device]', rows => rows.map(r => r.dataset.device));
  check(ids.length >= MIN_DEVICES, `at least ${MIN_DEVICES} devices listed (got ${ids.length})`);
  check(ids.includes(ALERT_DEVICE), `${ALERT_DEVICE} is listed`);
  const counted = await page.$eval('#device-count', e => e.textContent);
  log('devices', { listed: ids.length, counted });
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/console-devices.png` });

  // Sorting by alerts puts a device with alerts first.
  await page.click('th[data-sort="alerts_24h"]');
  await page.waitForSelector('th.sorted[data-sort="alerts_24h"]');
  await page.click('th[data-sort="alerts_24h"]');
  await page.waitForSelector('th.sorted.desc[data-sort="alerts_24h"]');
  const firstAlerts = await page.$eval('table#devices tbody tr td:nth-child(10)', td => Number(td.textContent));
  check(firstAlerts > 0, 'sorting by alerts (24 h) descending shows a device with alerts first');

  // A device page: its alerts and the score plot with the thresholds.
  await page.goto(`${URL}#/device/${encodeURIComponent(ALERT_DEVICE)}`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('#score-plot circle.pt');
  const plot = await page.$eval('#score-plot', svg => ({
    points: svg.querySelectorAll('circle.pt').length,
    alerts: svg.querySelectorAll('circle.pt.alert').length,
    thresholds: [...svg.querySelectorAll('line.threshold')].map(l => l.dataset.threshold),
  }));
  check(plot.points > 5, `the plot shows scores (${plot.points})`);
  check(plot.alerts > 0, `the plot marks alerts (${plot.alerts})`);
  check(['LOW', 'MEDIUM', 'HIGH'].every(t => plot.thresholds.includes(t)), `threshold lines ${plot.thresholds}`);
  await page.waitForSelector('#alerts-table tbody tr');
  const alert = await page.$eval('#alerts-table tbody tr', tr => ({
    severity: tr.querySelector('.badge').textContent, top: tr.querySelector('td.top').textContent,
  }));
  check(['LOW', 'MEDIUM', 'HIGH'].includes(alert.severity), `alert severity ${alert.severity}`);
  check(alert.top.length > 0, 'alert lists its top features');
  log('device', { device: ALERT_DEVICE, plot, alert });
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/console-device.png`, fullPage: false });

  // Start the staged rollout, see the controller open it, then abort it.
  await page.goto(`${URL}#/rollouts`, { waitUntil: 'networkidle0' });
  const card = `div.card[data-rollout="${ROLLOUT}"]`;
  await page.waitForSelector(`${card} button[data-action="start"]`);
  await page.click(`${card} button[data-action="start"]`);
  await waitForText(page, `${card} .badge`, 'running', 30000);
  const waves = await page.$$eval(`${card} tbody tr`, rows => rows.map(r => r.className));
  log('rollout-started', { rollout: ROLLOUT, waves });
  await page.waitForSelector(`${card} button[data-action="abort"]`);
  await page.click(`${card} button[data-action="abort"]`);
  await waitForText(page, `${card} .badge`, 'aborted', 30000);
  const reason = await page.$eval(`${card} p.error`, p => p.textContent);
  check(reason.includes('aborted by'), `abort reason names the operator: ${reason}`);
  const buttons = await page.$$(`${card} button`);
  check(buttons.length === 0, 'an aborted rollout offers no actions');
  log('rollout-aborted', { reason });

  // Roll one device back.
  await page.goto(`${URL}#/device/${encodeURIComponent(ROLLBACK_DEVICE)}`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('#rollback:not([disabled])');
  const label = await page.$eval('#rollback', b => b.textContent);
  await page.type('#rollback-reason', 'browser test: false alarms');
  await page.click('#rollback');
  await page.waitForSelector('#action-result.notice');
  await page.waitForSelector('#rollback-requests li');
  const request = await page.$eval('#rollback-requests li', li => li.textContent);
  log('rollback', { device: ROLLBACK_DEVICE, button: label, request });

  // The audit log shows all of it.
  await page.goto(`${URL}#/audit`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('#audit-table tbody tr');
  const actions = await page.$$eval('#audit-table tbody tr td:nth-child(4)', tds => tds.map(t => t.textContent));
  for (const a of ['login', 'rollout', 'rollback']) check(actions.includes(a), `audit log lists ${a}`);
  log('audit', { actions });
  check(problems.length === 0, 'no page errors: ' + problems.join('; '));
  log('done', { ok: true });
} catch (e) {
  code = 1;
  const pages = await browser.pages();
  const page = pages[pages.length - 1];
  const text = page ? await page.$eval('main', m => m.innerText.slice(0, 2000)).catch(() => '') : '';
  log('failed', { error: e.message, problems, url: page ? page.url() : '', main: text });
  if (SHOTS && page) await page.screenshot({ path: `${SHOTS}/console-failure.png` }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(code);
