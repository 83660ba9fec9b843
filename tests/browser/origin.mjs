// Origin policy as a real browser sees it (SPEC §2.1): the same WebSocket attempt, with the right
// token, is made (a) from a page of a foreign origin served here by Node on 127.0.0.1:0, which the
// server must refuse (403 forbidden origin), and (b) from the server's own /console page, which it
// must accept with subprotocol "authbridge". Prints one JSON line with both outcomes.
//
// Inputs: `--name=value` arguments, or the environment variables in brackets.
//   --ws-url     [AUTHBRIDGE_WS_URL]     ws://127.0.0.1:PORT/
//   --http-base  [AUTHBRIDGE_HTTP_BASE]  http://127.0.0.1:PORT
//   --token      [AUTHBRIDGE_TOKEN]      capability token
//   --chromium   [AUTHBRIDGE_CHROMIUM]   browser binary (default /usr/bin/chromium)
// Exits 1 with a message on stderr on any failure; the whole run is bounded by OVERALL_MS.

import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { LAUNCH_ARGS, option as sharedOption } from "./common.mjs";

const OVERALL_MS = 25_000;
const PROBE_MS = 5_000;
const started = Date.now();

const option = (name, envName, fallback) => sharedOption("origin.mjs", name, envName, fallback);

const wsUrl = option("ws-url", "AUTHBRIDGE_WS_URL");
const httpBase = option("http-base", "AUTHBRIDGE_HTTP_BASE").replace(/\/+$/, "");
const token = option("token", "AUTHBRIDGE_TOKEN");
const executablePath = option("chromium", "AUTHBRIDGE_CHROMIUM", "/usr/bin/chromium");

let context = null;
let foreignServer = null;
let userDataDir = null;
let step = "starting";

async function cleanup() {
  const waits = [];
  if (context) {
    waits.push(context.close().catch(() => {}));
    context = null;
  }
  if (foreignServer) {
    foreignServer.closeAllConnections();
    waits.push(new Promise((resolve) => foreignServer.close(resolve)));
    foreignServer = null;
  }
  await Promise.race([Promise.all(waits), new Promise((resolve) => setTimeout(resolve, 3000))]);
  if (userDataDir) {
    try {
      rmSync(userDataDir, { recursive: true, force: true });
    } catch {
      // A browser still shutting down may hold files; the OS temp dir is cleaned eventually.
    }
    userDataDir = null;
  }
}

function fail(message) {
  process.stderr.write(`origin.mjs: FAILED during "${step}": ${message}\n`);
  cleanup().finally(() => process.exit(1));
  return new Promise(() => {});
}

const overall = setTimeout(() => fail(`overall timeout after ${OVERALL_MS} ms`), OVERALL_MS);
process.on("unhandledRejection", (error) => fail(error?.stack ?? String(error)));

/**
 * The connection attempt, run in the page under test. It is serialized into the foreign page's
 * script and passed to page.evaluate on the console page, so both origins run the same code.
 * Resolves (never rejects) with what the WebSocket reported.
 */
function probe({ url, token, timeoutMs }) {
  return new Promise((resolve) => {
    const events = [];
    let opened = false;
    let protocol = null;
    let ws;
    try {
      ws = new WebSocket(url, ["authbridge", `authbridge.bearer.${token}`]);
    } catch (error) {
      resolve({ origin: location.origin, opened, protocol, events: [`throw: ${error}`], closeCode: null, closeReason: null, timedOut: false });
      return;
    }
    const finish = (close, timedOut) => {
      clearTimeout(timer);
      resolve({
        origin: location.origin,
        opened,
        protocol,
        events,
        closeCode: close ? close.code : null,
        closeReason: close ? close.reason : null,
        timedOut,
      });
    };
    const timer = setTimeout(() => finish(null, true), timeoutMs);
    ws.onopen = () => {
      opened = true;
      protocol = ws.protocol;
      events.push("open");
      ws.close(1000, "probe done");
    };
    ws.onerror = () => events.push("error");
    ws.onclose = (event) => {
      events.push("close");
      finish(event, false);
    };
  });
}

const FOREIGN_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>foreign origin</title><link rel="icon" href="data:,"></head>
<body><h1>A page of another origin</h1><pre id="out">running…</pre>
<script>
const probe = ${probe.toString()};
const params = new URLSearchParams(location.hash.slice(1));
window.probeResult = probe({ url: params.get("url"), token: params.get("token"), timeoutMs: ${PROBE_MS} });
window.probeResult.then((r) => { document.getElementById("out").textContent = JSON.stringify(r, null, 2); });
</script></body></html>`;

/** Starts the foreign-origin page server on 127.0.0.1:0; resolves with its base URL. */
function startForeignServer() {
  return new Promise((resolve, reject) => {
    foreignServer = createServer((request, response) => {
      if (request.url === "/" || request.url === "/index.html") {
        response.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
        response.end(FOREIGN_PAGE);
      } else {
        response.writeHead(404, { "content-type": "text/plain" });
        response.end("not found");
      }
    });
    foreignServer.on("error", reject);
    foreignServer.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${foreignServer.address().port}`));
  });
}

async function stepDo(name, fn) {
  step = name;
  try {
    return await fn();
  } catch (error) {
    return fail(error instanceof Error ? error.message.split("\n")[0] : String(error));
  }
}

/** Collects the handshake status Chromium saw for WebSockets opened by `page` (via CDP). */
async function watchHandshakes(page) {
  const seen = [];
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketHandshakeResponseReceived", (event) => {
    seen.push({ status: event.response.status, statusText: event.response.statusText });
  });
  return seen;
}

function watchConsole(page) {
  const messages = [];
  page.on("console", (message) => messages.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => messages.push(`pageerror: ${error}`));
  return messages;
}

async function main() {
  const foreignBase = await stepDo("starting the foreign-origin server", startForeignServer);
  userDataDir = mkdtempSync(join(tmpdir(), "authbridge-origin-"));
  context = await stepDo("launching chromium", () =>
    chromium.launchPersistentContext(userDataDir, { executablePath, headless: true, args: LAUNCH_ARGS, timeout: 15_000 }),
  );

  // (a) A foreign origin: the page connects by itself on load.
  const foreignPage = context.pages()[0] ?? (await context.newPage());
  foreignPage.setDefaultTimeout(PROBE_MS + 3000);
  const foreignConsole = watchConsole(foreignPage);
  const foreignHandshakes = await stepDo("watching the foreign page's handshakes", () => watchHandshakes(foreignPage));
  const fragment = new URLSearchParams({ url: wsUrl, token }).toString();
  await stepDo("loading the foreign page", () => foreignPage.goto(`${foreignBase}/#${fragment}`, { waitUntil: "load" }));
  const foreign = await stepDo("waiting for the foreign page's attempt", () => foreignPage.evaluate(() => window.probeResult));

  // (b) The server's own console page: the same attempt from its context.
  const consolePage = await context.newPage();
  consolePage.setDefaultTimeout(PROBE_MS + 3000);
  const consoleConsole = watchConsole(consolePage);
  const consoleHandshakes = await stepDo("watching the console page's handshakes", () => watchHandshakes(consolePage));
  await stepDo("loading the console page", () => consolePage.goto(`${httpBase}/console`, { waitUntil: "load" }));
  const consoleState = await consolePage.locator('[data-testid="connection-state"]').getAttribute("data-state");
  const own = await stepDo("running the attempt on the console page", () =>
    consolePage.evaluate(probe, { url: wsUrl, token, timeoutMs: PROBE_MS }),
  );

  const observed = {
    foreign: { ...foreign, pageUrl: foreignBase, handshakes: foreignHandshakes, console: foreignConsole },
    console: {
      ...own,
      pageUrl: `${httpBase}/console`,
      stateBeforeProbe: consoleState,
      handshakes: consoleHandshakes,
      console: consoleConsole,
    },
    elapsedMs: Date.now() - started,
  };
  step = "closing the browser";
  await cleanup();
  clearTimeout(overall);
  // Exit explicitly once the line is flushed: the browser's pipes can keep the loop alive for seconds.
  process.stdout.write(`${JSON.stringify(observed)}\n`, () => process.exit(0));
}

main().catch((error) => fail(error?.stack ?? String(error)));
