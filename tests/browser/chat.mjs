// Drives the console's chat view in headless Chromium against a server whose model backend is the
// fake one: the account shown on connect, the method list from the server, a host-owned-token login,
// a streamed answer with its reasoning collapsed and token usage, a host tool and a token refresh
// answered from the server-request panel, and an interrupted turn. Prints one JSON line
// (tests/suite/browser.rs).
//
// Inputs: --console-url [AUTHBRIDGE_CONSOLE_URL], --token [AUTHBRIDGE_TOKEN],
//         --id-token [AUTHBRIDGE_ID_TOKEN] (login and refresh idToken, a JWT),
//         --chromium [AUTHBRIDGE_CHROMIUM] (default /usr/bin/chromium).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { LAUNCH_ARGS, entryAddedBy, option as sharedOption } from "./common.mjs";

const option = (name, envName, fallback) => sharedOption("chat.mjs", name, envName, fallback);
const consoleUrl = option("console-url", "AUTHBRIDGE_CONSOLE_URL");
const token = option("token", "AUTHBRIDGE_TOKEN");
const idToken = option("id-token", "AUTHBRIDGE_ID_TOKEN");
const executablePath = option("chromium", "AUTHBRIDGE_CHROMIUM", "/usr/bin/chromium");

const T = (id) => `[data-testid="${id}"]`;
const ENTRY = T("log-entry");
let step = "starting";
const userDataDir = mkdtempSync(join(tmpdir(), "authbridge-chat-"));
let context = null;

async function finish(code, line) {
  if (context) await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
  try {
    rmSync(userDataDir, { recursive: true, force: true });
  } catch {
    // A browser still shutting down may hold files.
  }
  if (line) process.stdout.write(`${line}\n`, () => process.exit(code));
  else process.exit(code);
}

let dump = async () => "";

function fail(message) {
  process.stderr.write(`chat.mjs: FAILED during "${step}": ${message}\n`);
  Promise.race([dump(), new Promise((r) => setTimeout(() => r(""), 2000))])
    .then((seen) => process.stderr.write(`chat.mjs: the page showed:\n${seen}\n`))
    .finally(() => finish(1));
  return new Promise(() => {});
}

setTimeout(() => fail("overall timeout after 50000 ms"), 50_000);
process.on("unhandledRejection", (error) => fail(error?.stack ?? String(error)));

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: LAUNCH_ARGS,
    viewport: { width: 1440, height: 900 },
    timeout: 15_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  dump = async () =>
    `transcript: ${await page.locator(T("chat-transcript")).textContent()}\nlog: ${(
      await page.$$eval(T("log-entry-json"), (nodes) => nodes.slice(-20).map((n) => n.textContent.replace(/\s+/g, " ").slice(0, 300)))
    ).join("\n")}`;
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  const text = async (id) => (await page.locator(T(id)).textContent()).trim();
  const json = async (locator) => JSON.parse(await locator.locator(T("log-entry-json")).textContent());
  const idle = () => page.locator(`${T("chat")}[data-running="false"]`).waitFor({ state: "attached" });

  step = "connecting";
  await page.goto(`${consoleUrl}#token=${encodeURIComponent(token)}`, { waitUntil: "load" });
  await page.locator(`${T("connection-state")}[data-state="ready"]`).waitFor();
  step = "reading the account on connect";
  await page.locator(`${ENTRY}[data-direction="in"][data-reply-to="account/read"]`).first().waitFor({ state: "attached" });
  const accountOnConnect = await text("info-account");
  step = "reading the method list";
  await page.locator(`${T("method-select")} option[value="turn/start"]`).waitFor({ state: "attached" });
  const methods = await page.$$eval(`${T("method-select")} option`, (options) => options.map((o) => o.value));

  step = "logging in with host-owned tokens";
  await page.selectOption(T("method-select"), "login:chatgptAuthTokens");
  await page.fill(T("params-input"), JSON.stringify({ type: "chatgptAuthTokens", idToken, accessToken: "access-1" }));
  await page.click(T("send-button"));
  await page.locator(`${ENTRY}[data-method="account/updated"]`).first().waitFor({ state: "attached" });
  const accountAfterLogin = await text("info-account");

  step = "chatting";
  await page.fill(T("chat-input"), "hello");
  await page.click(T("chat-send"));
  const answer = page.locator(T("chat-agentMessage")).last();
  await page.locator(`${T("chat-agentMessage")}:text-is("Hello from fake backend.")`).waitFor();
  await idle();
  await page.locator(`${T("chat-usage")}:not(:empty)`).waitFor();
  const chat = {
    user: await page.locator(T("chat-userMessage")).first().textContent(),
    answer: await answer.textContent(),
    reasoningCollapsed: await page.locator("details.reasoning").first().evaluate((node) => !node.open),
    usage: await text("chat-usage"),
    threadPicked: await page.locator(T("chat-thread")).inputValue(),
    rateLimitsShown: await page.locator(T("rate-limits")).isVisible(),
  };

  step = "starting a thread with a host tool";
  const tool = { name: "get_time", description: "The current time.", inputSchema: { type: "object", properties: {} } };
  await page.selectOption(T("method-select"), "thread/start");
  await page.fill(T("params-input"), JSON.stringify({ dynamicTools: [tool] }));
  // The chat started a thread already: wait for this reply, not the one before it.
  const started = await json(
    await entryAddedBy(page.locator(`${ENTRY}[data-reply-to="thread/start"]`), () => page.click(T("send-button"))),
  );
  const toolThread = started.result.thread.id;
  await page.locator(`${T("chat-thread")} option[value="${toolThread}"]`).waitFor({ state: "attached" });
  await entryAddedBy(page.locator(`${ENTRY}[data-reply-to="thread/resume"]`), () =>
    page.selectOption(T("chat-thread"), toolThread),
  );

  step = "answering a tool call from the panel";
  await page.fill(T("chat-input"), "what time is it? /tool");
  await page.click(T("chat-send"));
  const panel = page.locator(T("refresh-panel"));
  await panel.waitFor({ state: "visible" });
  const toolRequest = {
    method: await text("refresh-method"),
    params: JSON.parse(await page.locator(T("refresh-params")).textContent()),
    countdown: await text("refresh-countdown"),
    prefilled: JSON.parse(await page.locator(T("refresh-raw")).inputValue()),
    note: (await page.locator(".chat-note.tool").first().textContent()).trim(),
  };
  await page.fill(T("refresh-raw"), JSON.stringify({ output: "12:00", success: true }));
  await page.click(T("refresh-send"));
  await panel.waitFor({ state: "hidden" });
  await page.locator(`${T("chat-agentMessage")}:text-is("Hello from fake backend.")`).waitFor();
  await idle();

  step = "answering a token refresh from the panel";
  await page.fill(T("chat-input"), "a 401 first /401");
  await page.click(T("chat-send"));
  await panel.waitFor({ state: "visible" });
  const refreshRequest = { method: await text("refresh-method"), countdown: await text("refresh-countdown") };
  await page.check(T("refresh-shape-idtoken"));
  await page.fill(T("refresh-id-token"), idToken);
  await page.fill(T("refresh-access-token"), "access-2");
  await page.click(T("refresh-send"));
  await panel.waitFor({ state: "hidden" });
  await page.locator(`${T("chat-agentMessage")}:text-is("Hello from fake backend.")`).nth(1).waitFor();
  await idle();

  step = "interrupting a slow answer";
  await page.fill(T("chat-input"), "take your time /slow");
  await page.click(T("chat-send"));
  await page.locator(`${T("chat")}[data-running="true"]`).waitFor({ state: "attached" });
  await page.locator(`${T("chat-agentMessage")}:not(:empty)`).nth(2).waitFor();
  await page.click(T("chat-interrupt"));
  await page.locator(`.chat-note:text-is("Turn interrupted.")`).waitFor();
  await idle();
  const interrupt = await json(page.locator(`${ENTRY}[data-direction="out"][data-method="turn/interrupt"]`).first());

  step = "closing";
  const observed = { accountOnConnect, methods, accountAfterLogin, chat, toolThread, toolRequest, refreshRequest, interrupt: interrupt.params, pageErrors };
  await finish(0, JSON.stringify(observed));
}

main().catch((error) => fail(error?.stack ?? String(error)));
