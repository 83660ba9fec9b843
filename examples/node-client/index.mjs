// What an Electron main process does with authbridge:
//   1. start authbridge (or connect to one already running),
//   2. handshake,
//   3. log in with the host app's own ChatGPT tokens (they stay in authbridge's memory only),
//   4. answer `account/chatgptAuthTokens/refresh` by asking the host for fresh tokens,
//   5. read the account's rate limits,
//   6. run one model turn on a new thread that offers a host tool (`get_time`), answering the
//      model's `item/tool/call` requests and printing the answer as it streams.
// Each step prints one JSON line on stdout.
//
// Environment:
//   AUTHBRIDGE_SERVER_JSON  connect to a running server described by this server.json
//   AUTHBRIDGE_BIN          otherwise spawn this binary (default: `authbridge` on PATH)
//   AUTHBRIDGE_ARGS         extra `serve` arguments, as a JSON array (e.g. ["-c","chatgpt_base_url=\"http://…\""])
//   PROMPT                  the turn's message (default: "What time is it? /tool" — `/tool` makes
//                           `authbridge dev-backend` ask for the tool)

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

/** A host tool: the model may call it; the host runs it and answers (TURNS §24). */
const GET_TIME = {
  name: "get_time",
  description: "The current time on the user's machine, ISO 8601.",
  inputSchema: { type: "object", properties: {} },
};

/** Starts a thread with the host tool, runs one turn and resolves when it completes. */
async function runTurn(client, prompt) {
  client.onServerRequest("item/tool/call", async ({ callId, tool, arguments: args }) => {
    print("toolCall", { callId, tool, arguments: args });
    if (tool !== GET_TIME.name) return { output: `unknown tool ${tool}`, success: false };
    return { output: new Date().toISOString(), success: true };
  });
  const { thread } = await client.request("thread/start", { dynamicTools: [GET_TIME] });
  print("threadStarted", { threadId: thread.id });
  let text = "";
  const completed = new Promise((resolve) => {
    client.onNotification("item/agentMessage/delta", ({ delta }) => {
      text += delta;
      process.stderr.write(delta);
    });
    client.onNotification("error", ({ error, willRetry }) => print("turnError", { error, willRetry }));
    client.onNotification("turn/completed", ({ turn }) => resolve(turn));
  });
  const { turn } = await client.request("turn/start", {
    threadId: thread.id,
    input: [{ type: "text", text: prompt, text_elements: [] }],
  });
  print("turnStarted", { turnId: turn.id });
  const done = await completed;
  process.stderr.write("\n");
  print("turnCompleted", { status: done.status, error: done.error, text });
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

    await runTurn(client, process.env.PROMPT ?? "What time is it? /tool");
  } finally {
    client.close();
    await stop();
  }
}

main().catch((error) => {
  console.error(`example failed: ${error.stack ?? error}`);
  process.exit(1);
});
