// Drive Debian's Chromium (never a downloaded browser) to run a test page's entry function.
// Usage: node run_strophe.mjs '<json {pageUrl, boshUrl, jid, password, peer, text, timeoutMs}>'
// runs bosh_page.html's runBosh(); with "entry": "runConverse" the page's runConverse(args).
// Prints one JSON line: the entry's result plus the console errors the page logged.
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  await page.goto(args.pageUrl);
  const result = await page.evaluate(
    (a) => (a.entry ? window[a.entry](a)
      : window.runBosh(a.boshUrl, a.jid, a.password, a.peer, a.text, a.timeoutMs)), args);
  result.pageOrigin = new URL(args.pageUrl).origin;
  result.consoleErrors = consoleErrors;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
