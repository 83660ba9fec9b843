// The official `openai` package using authbridge's local Responses endpoint: authbridge holds the
// account (API key or ChatGPT tokens, refreshed as needed); the SDK only needs the listener's
// address and its capability token.
//
// Environment: AUTHBRIDGE_SERVER_JSON (default ~/.authbridge/server.json), PROMPT.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

import OpenAI from "openai";

const serverJson = process.env.AUTHBRIDGE_SERVER_JSON ?? join(homedir(), ".authbridge", "server.json");
const { url, token } = JSON.parse(readFileSync(serverJson, "utf8"));
const client = new OpenAI({ baseURL: new URL("/v1", url.replace(/^ws/, "http")).href, apiKey: token });

const stream = await client.responses.create({
  model: "gpt-5.2",
  input: process.env.PROMPT ?? "Say hello",
  stream: true,
});
for await (const event of stream) {
  if (event.type === "response.output_text.delta") process.stdout.write(event.delta);
}
process.stdout.write("\n");
