// Drives the authbridge browser console in headless Chromium through an external-tokens login and a
// refresh round trip, then prints one JSON line with what it observed (tests/suite/browser.rs checks it).
//
// Inputs: `--name=value` arguments, or the environment variables in brackets.
//   --console-url             [AUTHBRIDGE_CONSOLE_URL]            http://127.0.0.1:PORT/console
//   --token                   [AUTHBRIDGE_TOKEN]                  capability token (64 hex)
//   --id-token                [AUTHBRIDGE_ID_TOKEN]               login idToken (JWT)
//   --access-token            [AUTHBRIDGE_ACCESS_TOKEN]           login accessToken
//   --refreshed-id-token      [AUTHBRIDGE_REFRESHED_ID_TOKEN]     idToken for the refresh answer
//   --refreshed-access-token  [AUTHBRIDGE_REFRESHED_ACCESS_TOKEN] accessToken for the refresh answer
//   --screenshot              [AUTHBRIDGE_SCREENSHOT]             PNG path for the full-page screenshot
//   --chromium                [AUTHBRIDGE_CHROMIUM]               browser binary (default /usr/bin/chromium)
// Exits 1 with a message on stderr on any failure; the whole run is bounded by OVERALL_MS.

import { mkdtempSync, rmSync, mkdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";
import { LAUNCH_ARGS, entryAddedBy, option as sharedOption } from "./common.mjs";

const OVERALL_MS = 25_000;
const STEP_MS = 6_000;
const started = Date.now();

const option = (name, envName, fallback) => sharedOption("console.mjs", name, envName, fallback);

let context = null;
let page = null;
let userDataDir = null;
let step = "starting";

/** Best effort: what the page showed when a step failed, next to the requested screenshot. */
async function failureScreenshot() {
  if (!page || typeof screenshot !== "string") return;
  const path = screenshot.replace(/(\.png)?$/, "-failure.png");
  const shot = page.screenshot({ path, fullPage: true }).then(
    () => process.stderr.write(`console.mjs: the page at the failure: ${path}\n`),
    () => {},
  );
  await Promise.race([shot, new Promise((resolve) => setTimeout(resolve, 3000))]);
}

async function cleanup() {
  if (context) {
    const closing = context.close().catch(() => {});
    context = null;
    await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 3000))]);
  }
  if (userDataDir) {
    try {
      rmSync(userDataDir, { recursive: true, force: true });
    } catch {
      // A browser that is still shutting down may hold files; the OS temp dir is cleaned eventually.
    }
    userDataDir = null;
  }
}

function fail(message) {
  process.stderr.write(`console.mjs: FAILED during "${step}": ${message}\n`);
  failureScreenshot()
    .then(cleanup)
    .finally(() => process.exit(1));
  // Keep callers from continuing while cleanup runs.
  return new Promise(() => {});
}

const overall = setTimeout(() => fail(`overall timeout after ${OVERALL_MS} ms`), OVERALL_MS);
process.on("unhandledRejection", (error) => fail(error?.stack ?? String(error)));

const consoleUrl = option("console-url", "AUTHBRIDGE_CONSOLE_URL");
const token = option("token", "AUTHBRIDGE_TOKEN");
const idToken = option("id-token", "AUTHBRIDGE_ID_TOKEN");
const accessToken = option("access-token", "AUTHBRIDGE_ACCESS_TOKEN");
const refreshedIdToken = option("refreshed-id-token", "AUTHBRIDGE_REFRESHED_ID_TOKEN");
const refreshedAccessToken = option("refreshed-access-token", "AUTHBRIDGE_REFRESHED_ACCESS_TOKEN");
const screenshot = option("screenshot", "AUTHBRIDGE_SCREENSHOT");
const executablePath = option("chromium", "AUTHBRIDGE_CHROMIUM", "/usr/bin/chromium");

const T = (id) => `[data-testid="${id}"]`;
const ENTRY = T("log-entry");

/** Runs `fn`, turning a timeout or error into a failure that names the step. */
async function stepDo(name, fn) {
  step = name;
  try {
    return await fn();
  } catch (error) {
    return fail(error instanceof Error ? error.message.split("\n")[0] : String(error));
  }
}

async function main() {
  userDataDir = mkdtempSync(join(tmpdir(), "authbridge-console-"));
  context = await stepDo("launching chromium", () =>
    chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: LAUNCH_ARGS,
      viewport: { width: 1440, height: 900 },
      timeout: 15_000,
    }),
  );
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const pageErrors = [];
  const consoleErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });

  const json = async (locator) => JSON.parse(await locator.locator(T("log-entry-json")).textContent());
  const outRequests = () => page.locator(`${ENTRY}[data-direction="out"][data-kind="request"]`);
  const replyTo = (id) =>
    page.locator(`${ENTRY}[data-direction="in"][data-id="${id}"]:is([data-kind="response"], [data-kind="error"])`).first();
  const notification = (method) =>
    page.locator(`${ENTRY}[data-direction="in"][data-kind="notification"][data-method="${method}"]`).first();

  /** Picks `value` in the method picker, replaces the params (unless undefined), sends; returns the sent message. */
  async function send(value, params) {
    await page.selectOption(T("method-select"), value);
    if (params !== undefined) await page.fill(T("params-input"), params === null ? "" : JSON.stringify(params, null, 2));
    return json(await entryAddedBy(outRequests(), () => page.click(T("send-button"))));
  }

  async function reply(id) {
    const entry = replyTo(id);
    await entry.waitFor({ state: "attached" });
    return json(entry);
  }

  await stepDo("loading the console", () => page.goto(`${consoleUrl}#token=${encodeURIComponent(token)}`, { waitUntil: "load" }));
  const urlAfterLoad = page.url();

  await stepDo("waiting for connected+initialized", async () => {
    const settled = page.locator(
      `${T("connection-state")}:is([data-state="ready"], [data-state="closed"], [data-state="init-failed"])`,
    );
    let waited = "";
    try {
      await settled.waitFor({ state: "visible" });
    } catch (error) {
      waited = `: ${error.message.split("\n")[0]}`;
    }
    if ((await page.locator(T("connection-state")).getAttribute("data-state")) !== "ready") {
      const text = await page.locator(T("connection-state")).textContent().catch(() => "?");
      const detail = await page.locator(T("connection-detail")).textContent().catch(() => "?");
      throw new Error(`not connected+initialized: state "${text?.trim()}" (${detail?.trim()})${waited}`);
    }
  });
  const stateText = (await page.locator(T("connection-state-text")).textContent()).trim();
  const initializeSent = await stepDo("reading the initialize request", () =>
    json(page.locator(`${ENTRY}[data-direction="out"][data-method="initialize"]`).first()),
  );
  const initialize = await stepDo("reading the initialize reply", () => reply(initializeSent.id));
  const initializedSent = await stepDo("reading the initialized notification", () =>
    json(page.locator(`${ENTRY}[data-direction="out"][data-kind="notification"][data-method="initialized"]`).first()),
  );

  // Invalid JSON in the params box: an inline error, nothing sent, no exception.
  const invalidJson = await stepDo("sending invalid JSON", async () => {
    await page.selectOption(T("method-select"), "account/read");
    await page.fill(T("params-input"), '{"refreshToken": fals');
    const before = await page.locator(`${ENTRY}[data-direction="out"]`).count();
    await page.click(T("send-button"));
    await page.locator(T("params-error")).waitFor({ state: "visible" });
    const after = await page.locator(`${ENTRY}[data-direction="out"]`).count();
    return {
      error: (await page.locator(T("params-error")).textContent()).trim(),
      ariaInvalid: await page.locator(T("params-input")).getAttribute("aria-invalid"),
      sent: after - before,
    };
  });

  const loginTemplate = await stepDo("reading the login template", async () => {
    await page.selectOption(T("method-select"), "login:chatgptAuthTokens");
    return JSON.parse(await page.locator(T("params-input")).inputValue());
  });
  const loginSent = await stepDo("sending account/login/start", () =>
    send("login:chatgptAuthTokens", { type: "chatgptAuthTokens", idToken, accessToken }),
  );
  const loginReply = await stepDo("waiting for the login reply", () => reply(loginSent.id));
  if (loginReply.error) await fail(`account/login/start failed: ${JSON.stringify(loginReply.error)}`);
  const loginCompleted = await stepDo("waiting for account/login/completed", () =>
    json(notification("account/login/completed")),
  );
  const accountUpdated = await stepDo("waiting for account/updated", () => json(notification("account/updated")));

  const rateSent = await stepDo("sending account/rateLimits/read", () => send("account/rateLimits/read", null));

  const panel = page.locator(T("refresh-panel"));
  const refresh = await stepDo("waiting for the refresh panel", async () => {
    await panel.waitFor({ state: "visible" });
    const logged = await json(page.locator(`${ENTRY}[data-direction="in"][data-kind="server-request"]`).first());
    return {
      method: (await page.locator(T("refresh-method")).textContent()).trim(),
      id: (await page.locator(T("refresh-id")).textContent()).trim(),
      params: JSON.parse(await page.locator(T("refresh-params")).textContent()),
      countdown: (await page.locator(T("refresh-countdown")).textContent()).trim(),
      logged,
    };
  });

  const refreshAnswer = await stepDo("answering the refresh request", async () => {
    await page.check(T("refresh-shape-idtoken"));
    await page.fill(T("refresh-id-token"), refreshedIdToken);
    await page.fill(T("refresh-access-token"), refreshedAccessToken);
    await page.click(T("refresh-send"));
    await panel.waitFor({ state: "hidden" });
    return json(page.locator(`${ENTRY}[data-direction="out"][data-kind="response"]`).first());
  });

  const rateReply = await stepDo("waiting for the rate-limits reply", () => reply(rateSent.id));
  if (rateReply.error) await fail(`account/rateLimits/read failed: ${JSON.stringify(rateReply.error)}`);
  const rateLimitsUpdated = await stepDo("waiting for account/rateLimits/updated", () =>
    json(notification("account/rateLimits/updated")),
  );
  const pairing = await stepDo("reading request/reply pairing", async () => ({
    login: await outRequests().and(page.locator(`[data-id="${loginSent.id}"]`)).getAttribute("data-pair"),
    rateLimits: await outRequests().and(page.locator(`[data-id="${rateSent.id}"]`)).getAttribute("data-pair"),
    rateLimitsReplyTo: await replyTo(rateSent.id).getAttribute("data-reply-to"),
    serverRequest: await page.locator(`${ENTRY}[data-kind="server-request"]`).first().getAttribute("data-pair"),
  }));
  const sessionPanel = await stepDo("reading the session panel", async () => ({
    account: (await page.locator(T("info-account")).textContent()).trim(),
    rateLimitsShown: await page.locator(T("rate-limits")).isVisible(),
  }));
  const kinds = await stepDo("counting log entries", () =>
    page.$$eval(ENTRY, (entries) => entries.map((e) => `${e.dataset.direction}:${e.dataset.kind}:${e.dataset.method}`)),
  );

  // The log's filters, then its compact density (the screenshot shows the whole conversation).
  const filters = await stepDo("filtering the log", async () => {
    const visible = () => page.locator(`${ENTRY}:visible`).count();
    await page.selectOption(T("log-kind"), "notification");
    const notifications = await visible();
    await page.selectOption(T("log-kind"), "");
    await page.fill(T("log-filter"), "org-initial");
    const text = await visible();
    const countText = (await page.locator(T("log-count")).textContent()).trim();
    await page.fill(T("log-filter"), "");
    return { notifications, text, countText, all: await visible() };
  });
  const compact = await stepDo("switching the log to compact", async () => {
    await page.check(T("log-compact"));
    const text = (await replyTo(rateSent.id).locator(T("log-entry-json")).textContent()).trim();
    return { singleLine: !text.includes("\n"), sameValue: JSON.stringify(JSON.parse(text)) === JSON.stringify(rateReply) };
  });

  await stepDo("taking the screenshot", async () => {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    if (statSync(screenshot).size === 0) throw new Error(`empty screenshot ${screenshot}`);
  });

  const observed = {
    stateText,
    urlAfterLoad,
    tokenInUrl: urlAfterLoad.includes(token),
    tokenInputFilled: (await page.locator(T("token-input")).inputValue()) === token,
    tokenInputType: await page.locator(T("token-input")).getAttribute("type"),
    initializeRequest: initializeSent,
    initialize,
    initialized: initializedSent,
    invalidJson,
    loginTemplate,
    loginRequest: { method: loginSent.method, params: loginSent.params },
    loginResult: loginReply.result ?? null,
    loginError: loginReply.error ?? null,
    loginCompleted: loginCompleted.params,
    accountUpdated: accountUpdated.params,
    refreshRequest: refresh.logged,
    refreshMethod: refresh.method,
    refreshId: refresh.id,
    refreshParams: refresh.params,
    refreshCountdown: refresh.countdown,
    refreshAnswer,
    rateLimits: rateReply.result?.rateLimits ?? null,
    rateLimitsError: rateReply.error ?? null,
    rateLimitsUpdated: rateLimitsUpdated.params?.rateLimits ?? null,
    pairing,
    sessionPanel,
    filters,
    compact,
    log: kinds,
    pageErrors,
    consoleErrors,
    screenshot,
    elapsedMs: Date.now() - started,
  };
  step = "closing the browser";
  await cleanup();
  clearTimeout(overall);
  // Exit explicitly once the line is flushed: the browser's pipes can keep the loop alive for seconds.
  process.stdout.write(`${JSON.stringify(observed)}\n`, () => process.exit(0));
}

main().catch((error) => fail(error?.stack ?? String(error)));
