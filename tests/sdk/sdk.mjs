// The official `openai` package against authbridge's local Responses endpoint. One scenario per
// run (SCENARIO), results as one JSON line on stdout; the test suite checks them.
//   BASE_URL  http://127.0.0.1:<port>/v1    TOKEN  the listener's capability token
//   GATE_URL  the fake backend's gate: opened once the first delta has arrived
import OpenAI from "openai";

const { BASE_URL, TOKEN, GATE_URL, SCENARIO } = process.env;
const client = new OpenAI({ baseURL: BASE_URL, apiKey: TOKEN, maxRetries: 0 });
const request = { model: "gpt-5.2", input: "Say hello" };

async function run() {
  switch (SCENARIO) {
    case "text": {
      const response = await client.responses.create(request);
      return { text: response.output_text, status: response.status };
    }
    case "stream": {
      // The gate opens only once a delta is here: a relay that buffered would never finish.
      const stream = await client.responses.create({ ...request, stream: true });
      const deltas = [];
      let completed = false;
      for await (const event of stream) {
        if (event.type === "response.output_text.delta") {
          deltas.push(event.delta);
          if (deltas.length === 1) await fetch(GATE_URL, { method: "POST" });
        }
        if (event.type === "response.completed") completed = true;
      }
      return { deltas, completed };
    }
    case "abort": {
      const stream = await client.responses.create({ ...request, stream: true });
      for await (const event of stream) {
        if (event.type === "response.output_text.delta") {
          stream.controller.abort();
          return { aborted: event.delta };
        }
      }
      return { aborted: null };
    }
    case "error": {
      try {
        await client.responses.create(request);
        return { error: null };
      } catch (error) {
        return { class: error.constructor.name, status: error.status, message: error.error?.message ?? null };
      }
    }
    case "models": {
      const models = await client.models.list();
      return { ids: models.data.map((model) => model.id) };
    }
    default:
      throw new Error(`unknown scenario ${SCENARIO}`);
  }
}

console.log(JSON.stringify(await run()));
