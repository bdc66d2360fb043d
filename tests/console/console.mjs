// Drives the operator console in Debian's headless Chromium against a real
// server (tests/tests/console.rs starts it and passes, in the environment:
// CONSOLE_URL, CONSOLE_TOKEN, BUNDLE_V1, BUNDLE_V2, EVIL, EVIL_OPEN (zip paths), FOLDER (a bundle folder),
// SHOTS (where the screenshots go). Each step throws on failure; exit status 0 means all held.
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const { CONSOLE_URL: base, CONSOLE_TOKEN: token, BUNDLE_V1, BUNDLE_V2, FOLDER, EVIL, EVIL_OPEN, SHOTS } = process.env;
const KEY = "polyfaas.console.token";
const WAIT = 60_000;
mkdirSync(SHOTS, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "polyfaas-chromium-"));

const step = (name) => console.log(`step: ${name}`);
function check(cond, what) {
  if (!cond) throw new Error(`failed: ${what}`);
}
async function api(path) {
  const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  check(r.ok, `${path} answered ${r.status}`);
  return r.json();
}
async function deploy(name, zipPath) {
  const r = await fetch(`${base}/api/v1/functions/${name}`, {
    method: "PUT", body: readFileSync(zipPath),
    headers: { authorization: `Bearer ${token}`, "content-type": "application/zip" },
  });
  check(r.status === 201, `deploying ${name}: ${r.status} ${await r.text()}`);
}
async function until(what, cond, within = WAIT) {
  const end = Date.now() + within;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// A fresh profile (--user-data-dir, which playwright passes for a persistent context).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  // Nothing may come from anywhere but the server.
  const foreign = [];
  context.on("request", (r) => { if (!r.url().startsWith(base)) foreign.push(r.url()); });
  const failed = [];
  context.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url().slice(base.length)}`); });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  page.setDefaultTimeout(WAIT);
  const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  step("a wrong token is refused with the server's message");
  await page.goto(`${base}/console`);
  await page.fill("#token", "not-the-token");
  await page.click("#login-form button");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("forbidden"));
  check(await page.evaluate((k) => sessionStorage.getItem(k) === null, KEY), "a refused token is not kept");
  await shot("login-refused");

  step("the right token signs in; the empty state shows");
  await page.fill("#token", token);
  await page.click("#login-form button");
  await page.waitForSelector("#functions .empty");
  check((await page.textContent("#functions")).includes("No functions yet"), "empty state text");
  check(await page.evaluate(() => document.cookie === ""), "no cookie is set");

  step("deploy two versions through the file input");
  await page.fill("#deploy-name", "hello");
  await page.setInputFiles("#deploy-file", BUNDLE_V1);
  await page.waitForFunction(() => document.querySelector("#deploy-status").textContent.includes("Deployed hello v1"));
  await page.setInputFiles("#deploy-file", BUNDLE_V2);
  await page.waitForFunction(() => document.querySelector("#deploy-status").textContent.includes("Deployed hello v2"));
  await page.waitForSelector('#functions tr[data-function="hello"]');
  step("a rejected upload shows the server's error");
  await page.fill("#deploy-name", "broken");
  await page.setInputFiles("#deploy-file", { name: "broken.zip", mimeType: "application/zip", buffer: Buffer.from("not a zip") });
  await page.waitForFunction(() => document.querySelector("#deploy-status").textContent.includes("not_a_zip"));
  step("deploy a folder through the folder input");
  await page.fill("#deploy-name", "");
  await page.setInputFiles("#deploy-folder", FOLDER);
  await page.waitForFunction(() => document.querySelector("#deploy-status").textContent.includes("Deployed hello-folder v1"));
  const fromFolder = await page.evaluate(async () => (await fetch("/fn/hello-folder", { method: "POST", body: "{}" })).text());
  check(fromFolder.includes("Hello from"), `the folder's function answers: ${fromFolder}`);
  await shot("functions");

  step("invoke it and see the answer");
  await page.goto(`${base}/console#/invoke/hello`);
  await page.fill("#inv-path", "/from/console");
  await page.fill("#inv-query", "x=1");
  await page.fill("#inv-body", '{"who":"console"}');
  await page.click("#inv-send");
  await page.waitForSelector("#inv-status");
  check((await page.textContent("#inv-status")).startsWith("200"), "status 200");
  const body = JSON.parse(await page.textContent("#inv-resp-body"));
  check(body.input.who === "console" && body.path === "/from/console", `the answer: ${JSON.stringify(body)}`);
  check(Number(await page.textContent("#inv-pid")) > 0, "the worker pid is shown");
  const curl = await page.textContent("#inv-curl");
  check(curl.includes(`${base}/fn/hello/from/console?x=1`), `the curl line targets the main listener: ${curl}`);
  check(!curl.includes(token), "the curl line carries no admin token");
  const requestId = (await page.textContent("#inv-resp-headers")).match(/x-request-id: (\S+)/)[1];
  await shot("invoke");

  step("the invocation shows in the function's live logs");
  await page.goto(`${base}/console#/function/hello`);
  await page.waitForSelector(`#logs article[data-request-id="${requestId}"]`);
  // A later invocation arrives through the live tail, on top.
  await page.evaluate(() => fetch("/fn/hello/tailed", { method: "POST", body: "{}" }));
  await page.waitForFunction(() => {
    const first = document.querySelector("#logs article");
    return first && first.textContent.includes("200 ok") && first !== null && document.querySelectorAll("#logs article").length >= 2;
  });
  await shot("function");

  step("roll back to v1");
  check((await page.textContent("#current-version")) === "v2", "v2 is current");
  await page.click('#versions tr[data-version="1"] button');
  await page.waitForFunction(() => document.querySelector("#current-version").textContent === "v1");
  check((await api("/api/v1/functions/hello")).version === 1, "the server says v1 is current");

  step("restart the function's worker and see its pid change");
  // The worker that ran v2 retired at the rollback: the one that runs v1 now.
  const invokeForPid = () => page.evaluate(async () =>
    Number((await fetch("/fn/hello", { method: "POST", body: "{}" })).headers.get("x-polyfaas-worker-pid")));
  await page.goto(`${base}/console#/workers`);
  const before = await invokeForPid();
  const row = await page.waitForSelector(`#workers tr[data-pid="${before}"]`);
  await row.$("button").then((b) => b.click());
  await page.waitForFunction((p) => document.querySelector("#workers-status").textContent.includes("Restarted")
    && !document.querySelector(`#workers tr[data-pid="${p}"]`), before);
  const after = await invokeForPid();
  check(after > 0 && after !== before, `a new worker pid after the restart (${before} -> ${after})`);
  await page.waitForSelector(`#workers tr[data-pid="${after}"][data-function="hello"]`);
  step("a forced restart asks first");
  let asked = "";
  page.once("dialog", (d) => { asked = d.message(); d.accept(); });
  await page.click("#workers tr[data-function=\"hello\"] button.danger");
  await page.waitForFunction(() => document.querySelector("#workers-status").textContent.includes("forced"));
  check(asked.includes("Force restart"), `the confirmation: ${asked}`);
  await shot("workers");

  step("a chart with data after a short load");
  await page.evaluate(async () => {
    for (let i = 0; i < 40; i++) await fetch("/fn/hello", { method: "POST", body: "{}" });
  });
  await page.goto(`${base}/console#/charts`);
  await page.waitForFunction(() => Number(document.querySelector("#server-rate")?.dataset.points) >= 40);
  await page.waitForSelector("#server-rate canvas");
  await page.waitForFunction(() => Number(document.querySelector("#fn-hello-rate")?.dataset.points) >= 40);
  await shot("charts");

  step("phone width");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/console#/functions`);
  await page.waitForSelector('#functions tr[data-function="hello"]');
  check(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), "no sideways scroll at phone width");
  await shot("functions-phone");
  await page.setViewportSize({ width: 1280, height: 800 });

  step("keyboard: Tab reaches the navigation links");
  await page.goto(`${base}/console#/functions`);
  await page.waitForSelector('#functions tr[data-function="hello"]');
  let reached = false;
  for (let i = 0; i < 24 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => document.activeElement?.getAttribute("href") === "#/workers");
  }
  check(reached, "Tab reaches the Workers link");

  step("a function's page cannot read the console's token (security row 15)");
  check(await page.evaluate((k) => sessionStorage.getItem(k) !== null, KEY), "the console tab holds the token");
  await deploy("evil", EVIL);
  await deploy("evil-open", EVIL_OPEN);
  const popups = [];
  context.on("page", (p) => popups.push(p.url()));
  // The same tab, so the same sessionStorage: the sandboxed page first...
  await page.goto(`${base}/fn/evil`);
  await page.waitForSelector("#out");
  // ...then the unsandboxed control, whose script does run: once it reports,
  // the sandboxed one had more time than the control needed.
  await page.goto(`${base}/fn/evil-open`);
  const control = await until("the control page's report", async () =>
    (await api("/api/v1/functions/evil-open/logs")).logs.map((l) => l.text).find((t) => t.includes("report ")));
  check(control.includes(`own-session=${token}`), `the control (no sandbox) does read its tab's storage: ${control}`);
  check(!control.includes(`opened-session=${token}`), `not even the control reads the opened console's storage: ${control}`);
  const reports = (await api("/api/v1/functions/evil/logs")).logs.filter((l) => l.text.includes("report"));
  check(reports.length === 0, `the sandboxed page ran script: ${JSON.stringify(reports)}`);
  console.log(`sandboxed page: no script ran, no report; control: ${control.trim()}; popups opened: ${popups.length}`);

  check(foreign.length === 0, `requests to other origins: ${foreign.join(", ")}`);
  check(pageErrors.some((e) => e.includes("Blocked script execution") && e.includes("/fn/evil'") && e.includes("sandboxed")),
    `the browser says it blocked the sandboxed page's script: ${pageErrors.join(" | ")}`);
  // Expected: the refused sign-in (403), the refused upload (400), the evil pages' favicons.
  const expected = ["403 /admin/workers", "400 /api/v1/functions/broken", "404 /favicon.ico"];
  check(failed.every((f) => expected.includes(f)), `failed requests: ${failed.join(", ")}`);
  const unexpected = pageErrors.filter((e) => !e.startsWith("Failed to load resource") && !/Blocked script execution in '[^']*\/fn\/evil'/.test(e));
  check(unexpected.length === 0, `page errors: ${unexpected.join(" | ")}`);
  console.log("console: all steps passed");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
