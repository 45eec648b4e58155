// Drives the router's /dashboard in headless Chromium: the page loads without errors, lists the
// workers, and its charts change while traffic flows; a screenshot is saved as a test artifact.
// Usage: node dashboard.mjs ROUTER_URL ARTIFACTS_DIR
import { chromium } from "playwright-core";
import path from "node:path";

const [url, artifacts] = process.argv.slice(2);
if (!url || !artifacts) {
  console.error("usage: node dashboard.mjs ROUTER_URL ARTIFACTS_DIR");
  process.exit(2);
}

function fail(message) {
  console.error(`dashboard: FAIL: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}

// Points with a value in a chart's series.
const seriesState = () => {
  const out = {};
  for (const [id, chart] of Object.entries(window.tandemDashboard.charts)) {
    out[id] = {};
    for (const [name, points] of chart.series) {
      out[id][name] = points.filter((p) => p.v !== null && Number.isFinite(p.v)).map((p) => p.v);
    }
  }
  return out;
};

async function sendTraffic(seconds) {
  const end = Date.now() + seconds * 1000;
  const one = async (i) => {
    while (Date.now() < end) {
      const response = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "model", prompt: `dashboard traffic ${i} ${Date.now()}`,
                               max_tokens: 8, temperature: 0 }),
      });
      if (response.status !== 200) fail(`traffic request answered ${response.status}`);
      await response.text();
    }
  };
  await Promise.all([0, 1, 2].map(one));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  const response = await page.goto(`${url}/dashboard`);
  if (!response || response.status() !== 200) fail(`GET /dashboard answered ${response?.status()}`);
  await page.waitForFunction(() => window.tandemDashboard && window.tandemDashboard.polls >= 2,
                             null, { timeout: 20000 });
  const workers = await page.locator("#workers tbody tr").count();
  if (workers !== 2) fail(`the workers table lists ${workers} rows, expected 2`);
  const roles = await page.locator("#workers tbody").innerText();
  if (!roles.includes("prefill") || !roles.includes("decode")) fail(`workers table: ${roles}`);
  const before = await page.evaluate(seriesState);
  const rateBefore = Math.max(0, ...(before.rate["requests/s"] || [0]));

  await sendTraffic(6);
  await page.waitForFunction(() => {
    const c = window.tandemDashboard.charts;
    const rate = c.rate.series.get("requests/s") || [];
    const ttft = c.ttft.series.get("p50") || [];
    return rate.some((p) => p.v > 0) && ttft.some((p) => p.v !== null && p.v > 0);
  }, null, { timeout: 20000 });
  const after = await page.evaluate(seriesState);
  const rateAfter = Math.max(...after.rate["requests/s"]);
  const ttftAfter = Math.max(...after.ttft.p50);
  if (!(rateAfter > rateBefore)) fail(`request rate did not rise (${rateBefore} -> ${rateAfter})`);
  const replicas = after.replicas;
  if (!replicas.decode || replicas.decode.at(-1) !== 1 || !replicas.prefill ||
      replicas.prefill.at(-1) !== 1) {
    fail(`replicas chart: ${JSON.stringify(replicas)}`);
  }
  const state = await page.evaluate(() => ({ polls: window.tandemDashboard.polls,
                                            errors: window.tandemDashboard.errors,
                                            lastError: window.tandemDashboard.lastError }));
  if (state.errors > 0) fail(`the page failed ${state.errors} polls: ${state.lastError}`);
  if (pageErrors.length > 0) fail(`page errors: ${pageErrors.join("; ")}`);
  const shot = path.join(artifacts, "dashboard.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ polls: state.polls, rate_before: rateBefore, rate_after: rateAfter,
                               ttft_p50_ms: ttftAfter, screenshot: shot }));
} catch (e) {
  if (!process.exitCode) console.error(`dashboard: FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
