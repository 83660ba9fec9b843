// What an Electron main process does with authbridge:
//   1. start authbridge (or connect to one already running),
//   2. handshake,
//   3. log in with the host app's own ChatGPT tokens (they stay in authbridge's memory only),
//   4. answer `account/chatgptAuthTokens/refresh` by asking the host for fresh tokens,
//   5. read the account's rate limits.
// Each step prints one JSON line on stdout.
//
// Environment:
//   AUTHBRIDGE_SERVER_JSON  connect to a running server described by this server.json
//   AUTHBRIDGE_BIN          otherwise spawn this binary (default: `authbridge` on PATH)
//   AUTHBRIDGE_ARGS         extra `serve` arguments, as a JSON array (e.g. ["-c","chatgpt_base_url=\"http://…\""])

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { AuthBridgeClient } from "./authbridge-client.mjs";
import * as host from "./host.mjs";

const print = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

/** Spawns `authbridge serve` on a free port with a private home; resolves once it listens. */
function startAuthbridge() {
  const home = mkdtempSync(join(tmpdir(), "authbridge-example-"));
  const extra = JSON.parse(process.env.AUTHBRIDGE_ARGS ?? "[]");
  const child = spawn(
    process.env.AUTHBRIDGE_BIN ?? "authbridge",
    ["serve", "--home", home, "--listen", "ws://127.0.0.1:0", ...extra],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return new Promise((resolve, reject) => {
    let stderr = "";
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`authbridge exited (${code}): ${stderr}`)));
    const onData = (chunk) => {
      stderr += chunk;
      if (stderr.includes("authbridge listening on ")) {
        child.stderr.off("data", onData);
        child.stderr.resume();
        child.removeAllListeners("exit");
        const server = JSON.parse(readFileSync(join(home, "server.json"), "utf8"));
        const stop = () =>
          new Promise((done) => {
            child.once("exit", () => {
              rmSync(home, { recursive: true, force: true });
              done();
            });
            child.kill("SIGTERM");
          });
        resolve({ server, stop });
      }
    };
    child.stderr.on("data", onData);
  });
}

async function main() {
  const started = process.env.AUTHBRIDGE_SERVER_JSON
    ? { server: JSON.parse(readFileSync(process.env.AUTHBRIDGE_SERVER_JSON, "utf8")), stop: async () => {} }
    : await startAuthbridge();
  const { server, stop } = started;
  const client = await AuthBridgeClient.connect(server.url, server.token);
  try {
    const init = await client.initialize({ name: "node_client_example", title: "Node client example", version: "0.1.0" });
    print("initialized", { userAgent: init.userAgent });

    client.onNotification("account/updated", (params) => print("accountUpdated", { params }));
    client.onServerRequest("account/chatgptAuthTokens/refresh", async (params) => {
      print("refreshRequested", { params });
      return host.refreshTokens(params);
    });

    const login = await client.request("account/login/start", { type: "chatgptAuthTokens", ...host.currentTokens() });
    print("loggedIn", { result: login });

    const { account } = await client.request("account/read", {});
    print("account", { account });

    try {
      const { rateLimits } = await client.request("account/rateLimits/read");
      print("rateLimits", { rateLimits });
    } catch (error) {
      print("rateLimitsFailed", { code: error.code, message: error.message });
    }
  } finally {
    client.close();
    await stop();
  }
}

main().catch((error) => {
  console.error(`example failed: ${error.stack ?? error}`);
  process.exit(1);
});
