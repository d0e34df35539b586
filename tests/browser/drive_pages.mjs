// One Debian Chromium (never a downloaded browser) for a whole test module, driven
// line by line: each stdin line is a JSON command {id, op, ...}, each answer one JSON
// line {id, ok, value | error} on stdout. Contexts are named, so a test can hold an
// admin's and a stranger's cookies at once. Ops: open(context, width, height),
// goto(url), fill(selector, value), click(selector) (waits for the navigation it
// starts), text(selector), url(), status (of the last navigation), screenshot(path),
// evaluate(script), close(context).
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const pages = new Map(); // context name -> { context, page, status }
const TIMEOUT = 20000;

function pageOf(command) {
  const entry = pages.get(command.context || "main");
  if (!entry) throw new Error(`no context ${command.context}`);
  return entry;
}

async function navigating(entry, action) {
  const [response] = await Promise.all([
    entry.page.waitForNavigation({ timeout: TIMEOUT }), action()]);
  entry.status = response ? response.status() : null;
  return entry.status;
}

const ops = {
  async open(c) {
    const context = await browser.newContext({
      ignoreHTTPSErrors: true, bypassCSP: true, javaScriptEnabled: c.javaScript !== false,
      viewport: { width: c.width || 1280, height: c.height || 800 },
    });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    pages.set(c.context || "main", { context, page, status: null });
    return true;
  },
  async viewport(c) {
    await pageOf(c).page.setViewportSize({ width: c.width, height: c.height });
    return true;
  },
  async goto(c) {
    const entry = pageOf(c);
    const response = await entry.page.goto(c.url);
    entry.status = response ? response.status() : null;
    return entry.status;
  },
  async fill(c) { await pageOf(c).page.fill(c.selector, c.value); return true; },
  async click(c) { const e = pageOf(c); return navigating(e, () => e.page.click(c.selector)); },
  async press(c) { const e = pageOf(c); return navigating(e, () => e.page.press(c.selector, c.key)); },
  async text(c) { return pageOf(c).page.textContent(c.selector); },
  async url(c) { return pageOf(c).page.url(); },
  async evaluate(c) { return pageOf(c).page.evaluate(c.script); },
  async screenshot(c) {
    await pageOf(c).page.screenshot({ path: c.path, fullPage: true });
    return c.path;
  },
  async close(c) {
    const entry = pageOf(c);
    pages.delete(c.context || "main");
    await entry.context.close();
    return true;
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  let answer;
  try {
    answer = { id: command.id, ok: true, value: await ops[command.op](command) };
  } catch (error) {
    answer = { id: command.id, ok: false, error: String(error && error.message || error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
