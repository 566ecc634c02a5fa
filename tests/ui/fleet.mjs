// A real local pgfleet for the UI tests: `pgfleet up` with four hosts on
// 127.0.77.x (an address block the Rust end-to-end tests never pick), a
// headless Chromium, and helpers that wait for conditions with deadlines.
// The fleet's folder is kept when a test fails (its path is printed).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const outputDir = path.join(here, 'output');

export const API = '127.0.77.1:7070';

const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

/** The pgfleet binary: $PGFLEET_BIN, else target/debug/pgfleet. */
function binary() {
  if (process.env.PGFLEET_BIN) return process.env.PGFLEET_BIN;
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, 'target');
  const candidate = path.join(targetDir, 'debug', 'pgfleet');
  if (!fs.existsSync(candidate)) {
    throw new Error(`${candidate} is missing: run \`cargo build -p pgfleet\` first (or set PGFLEET_BIN)`);
  }
  return candidate;
}

/** An error that ends a `waitFor` at once instead of being retried. */
class Fatal extends Error {}

/** Polls `check` (async, returns a truthy value when done) until `timeoutMs`. */
export async function waitFor(what, check, timeoutMs = 60_000, intervalMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      if (error instanceof Fatal) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export class Fleet {
  static async start() {
    const dataDir = fs.mkdtempSync('/tmp/pgfleet-ui-');
    // PostgreSQL runs as `postgres` and must traverse the folder.
    fs.chmodSync(dataDir, 0o755);
    const log = fs.openSync(path.join(dataDir, 'up.log'), 'a');
    const child = spawn(binary(), [
      'up', '--data-dir', dataDir, '--hosts', '4', '--api', API,
      '--dns', '127.0.77.1:8053', '--first-host-address', '127.0.77.2',
    ], { stdio: ['ignore', log, log], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' } });
    const fleet = new Fleet(dataDir, child);
    child.on('exit', (code, signal) => { fleet.exited = { code, signal }; });
    try {
      await fleet.waitUntilReady();
    } catch (error) {
      await fleet.stop({ keep: true }).catch(() => {});
      throw new Error(`${error.message}\n${fleet.agentErrors()}`);
    }
    return fleet;
  }

  async waitUntilReady() {
    // `pgfleet up` serves HTTPS with its own CA unless told otherwise; it
    // prints the API address (and so the scheme) once it is up.
    const log = path.join(this.dataDir, 'up.log');
    const scheme = await waitFor('pgfleet up to print its API address', () => {
      if (this.exited) throw new Fatal(`pgfleet up exited early (${JSON.stringify(this.exited)}); see ${log}`);
      return /API:\s+(https?):\/\//.exec(fs.readFileSync(log, 'utf8'))?.[1];
    }, 30_000);
    this.baseUrl = `${scheme}://${API}`;
    const tokenFile = path.join(this.dataDir, 'admin.token');
    await waitFor('the admin token file', () => {
      if (this.exited) throw new Fatal(`pgfleet up exited early (${JSON.stringify(this.exited)}); see ${this.dataDir}/up.log`);
      return fs.existsSync(tokenFile) && fs.readFileSync(tokenFile, 'utf8').trim();
    }, 30_000);
    this.token = fs.readFileSync(tokenFile, 'utf8').trim();
    await waitFor('four connected hosts', async () => {
      const hosts = await this.api('/api/v1/hosts');
      return hosts.filter((h) => h.status === 'connected').length === 4;
    }, 30_000);
  }

  /** Error lines of the agents' logs, to explain a fleet that did not start. */
  agentErrors() {
    const lines = [];
    const hostsDir = path.join(this.dataDir, 'hosts');
    for (const host of fs.existsSync(hostsDir) ? fs.readdirSync(hostsDir) : []) {
      const logFile = path.join(hostsDir, host, 'agent.log');
      if (!fs.existsSync(logFile)) continue;
      for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
        if (/error/i.test(line)) lines.push(`${host}: ${line}`);
      }
    }
    return lines.slice(-8).join('\n');
  }

  constructor(dataDir, child) {
    this.dataDir = dataDir;
    this.child = child;
    this.exited = null;
    this.token = '';
    this.baseUrl = '';
  }

  get tls() {
    return this.baseUrl.startsWith('https:');
  }

  /** A call to the REST API with the admin token; the JSON answer or null. */
  async api(urlPath, { method = 'GET', body } = {}) {
    const headers = { authorization: `Bearer ${this.token}` };
    if (body) headers['content-type'] = 'application/json';
    const payload = body && JSON.stringify(body);
    if (!this.tls) {
      const response = await fetch(this.baseUrl + urlPath, { method, headers, body: payload });
      return answer(method, urlPath, response.status, await response.text());
    }
    // HTTPS: trust the fleet's CA (fetch cannot be given a CA).
    const ca = fs.readFileSync(path.join(this.dataDir, 'ca.crt'));
    const { status, text } = await new Promise((resolve, reject) => {
      const request = https.request(this.baseUrl + urlPath, { method, headers, ca }, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => { text += chunk; });
        response.on('end', () => resolve({ status: response.statusCode, text }));
      });
      request.on('error', reject);
      request.end(payload);
    });
    return answer(method, urlPath, status, text);
  }

  /** SIGTERM to the `up` process we started; it stops its agents first. */
  async stop({ keep }) {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      try {
        await waitFor('pgfleet up to stop', () => this.exited, 60_000);
      } catch (error) {
        this.child.kill('SIGKILL');
        throw error;
      }
    }
    if (keep) {
      console.log(`# fleet data kept in ${this.dataDir}`);
    } else {
      fs.rmSync(this.dataDir, { recursive: true, force: true, maxRetries: 3 });
    }
  }
}

function answer(method, urlPath, status, text) {
  if (status < 200 || status >= 300) throw new Error(`${method} ${urlPath}: HTTP ${status} ${text}`);
  return status === 204 ? null : JSON.parse(text);
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_FLAGS });
}

/** Writes a full-page screenshot to tests/ui/output/NAME.png. */
export async function screenshot(page, name) {
  fs.mkdirSync(outputDir, { recursive: true });
  await page.screenshot({ path: path.join(outputDir, `${name}.png`), fullPage: true });
}

/** Waits until `locator`'s text matches `pattern`, without reloading. */
export async function expectText(locator, pattern, timeoutMs = 60_000) {
  let last = '';
  try {
    await waitFor(`text ${pattern}`, async () => {
      last = ((await locator.first().textContent({ timeout: 1000 })) ?? '').trim();
      return pattern.test(last);
    }, timeoutMs);
  } catch (error) {
    throw new Error(`${error.message} (last seen: ${JSON.stringify(last)})`);
  }
}
