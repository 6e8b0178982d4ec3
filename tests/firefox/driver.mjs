// Drives Debian's firefox-esr for Confide's browser tests, over WebDriver BiDi
// with puppeteer-core (Playwright needs its own patched Firefox, which Debian
// does not ship). pytest starts this file and speaks JSON lines to it:
//   request  {"id": 1, "op": "goto", "page": 0, "url": "..."}
//   response {"id": 1, "ok": true, "value": ...} or {"id": 1, "ok": false, "error": "..."}
// Each page lives in a browser context of its own, so people do not share storage.
import { createInterface } from 'node:readline';
import puppeteer from 'puppeteer-core';

const FAKE_MEDIA_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.peerconnection.ice.loopback': true,
  // Fake screen capture: getDisplayMedia without a picker.
  'media.getdisplaymedia.enabled': true,
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  // No updates, telemetry or other background traffic on the closed network.
  'app.update.enabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
};

let browser = null;
/** @type {Map<number, {page: import('puppeteer-core').Page, context: any, console: string[]}>} */
const pages = new Map();
let nextPage = 0;

function pageOf(request) {
  const entry = pages.get(request.page);
  if (!entry) throw new Error(`no page ${request.page}`);
  return entry;
}

const operations = {
  async launch({ executable, prefs = {}, headless = true }) {
    // Headless Firefox has no screen to share; on a virtual X display it has one.
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: executable,
      headless,
      acceptInsecureCerts: true,
      extraPrefsFirefox: { ...FAKE_MEDIA_PREFS, ...prefs },
    });
    return await browser.version();
  },
  async newPage({ width = 1280, height = 720 }) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({ width, height });
    const id = nextPage++;
    const entry = { page, context, console: [] };
    page.on('console', (message) => entry.console.push(message.text()));
    page.on('pageerror', (error) => entry.console.push(`pageerror: ${error.message}`));
    pages.set(id, entry);
    return id;
  },
  async addInitScript(request) {
    // Runs before the page's own scripts on every load, as Playwright's add_init_script.
    await pageOf(request).page.evaluateOnNewDocument(request.source);
    return null;
  },
  async goto(request) { await pageOf(request).page.goto(request.url); return null; },
  async url(request) { return pageOf(request).page.url(); },
  async evaluate(request) {
    // The function arrives as source text; it is called with one argument.
    const { page } = pageOf(request);
    return await page.evaluate(`(${request.fn})(${JSON.stringify(request.arg ?? null)})`);
  },
  // Wait until the element is there and visible, then click its middle as a person
  // would; a page that re-renders it meanwhile gets the new one.
  async click(request) {
    const { page } = pageOf(request);
    const deadline = Date.now() + (request.wait_ms ?? 20000);
    for (;;) {
      try {
        const element = await page.waitForSelector(request.selector,
          { visible: true, timeout: Math.max(1, deadline - Date.now()) });
        await element.click();
        return null;
      } catch (error) {
        if (Date.now() >= deadline || !/detached|not clickable|not visible/i.test(String(error))) throw error;
      }
    }
  },
  async fill(request) {
    await pageOf(request).page.locator(request.selector).setTimeout(request.wait_ms ?? 20000)
      .fill(request.text);
    return null;
  },
  async waitForSelector(request) {
    await pageOf(request).page.waitForSelector(request.selector,
      { timeout: request.wait_ms ?? 20000, visible: Boolean(request.visible) });
    return null;
  },
  async waitForFunction(request) {
    const { page } = pageOf(request);
    const handle = await page.waitForFunction(`(${request.fn})(${JSON.stringify(request.arg ?? null)})`,
      { timeout: request.wait_ms ?? 20000, polling: 200 });
    return await handle.jsonValue();
  },
  async screenshot(request) {
    await pageOf(request).page.screenshot({ path: request.path, fullPage: false });
    return request.path;
  },
  async console(request) { return pageOf(request).console.slice(); },
  async closePage(request) {
    const { context } = pageOf(request);
    pages.delete(request.page);
    await context.close();
    return null;
  },
  async close() {
    if (browser) await browser.close();
    browser = null;
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  const reply = { id: request.id };
  try {
    const operation = operations[request.op];
    if (!operation) throw new Error(`unknown operation ${request.op}`);
    reply.ok = true;
    reply.value = (await operation(request)) ?? null;
  } catch (error) {
    reply.ok = false;
    reply.error = String(error && error.stack ? error.stack : error);
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
});
lines.on('close', async () => {
  if (browser) await browser.close().catch(() => {});
  process.exit(0);
});
