"""The official `openai` package (PyPI) against authbridge's local Responses endpoint.

One scenario per run (SCENARIO), results as one JSON line on stdout; the test suite checks them.
BASE_URL is http://127.0.0.1:<port>/v1, TOKEN the listener's capability token, GATE_URL the fake
backend's gate, opened once the first delta has arrived.
"""

import json
import os
import urllib.request

import openai

client = openai.OpenAI(base_url=os.environ["BASE_URL"], api_key=os.environ["TOKEN"], max_retries=0)
REQUEST = {"model": "gpt-5.2", "input": "Say hello"}


def run(scenario):
    if scenario == "text":
        response = client.responses.create(**REQUEST)
        return {"text": response.output_text, "status": response.status}
    if scenario == "stream":
        # The gate opens only once a delta is here: a relay that buffered would never finish.
        deltas, completed = [], False
        for event in client.responses.create(**REQUEST, stream=True):
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
                if len(deltas) == 1:
                    urllib.request.urlopen(urllib.request.Request(os.environ["GATE_URL"], method="POST"))
            if event.type == "response.completed":
                completed = True
        return {"deltas": deltas, "completed": completed}
    if scenario == "abort":
        stream = client.responses.create(**REQUEST, stream=True)
        for event in stream:
            if event.type == "response.output_text.delta":
                stream.close()
                return {"aborted": event.delta}
        return {"aborted": None}
    if scenario == "error":
        try:
            client.responses.create(**REQUEST)
            return {"error": None}
        except openai.APIStatusError as error:
            body = error.body if isinstance(error.body, dict) else {}
            return {"class": type(error).__name__, "status": error.status_code, "message": body.get("message")}
    if scenario == "models":
        return {"ids": [model.id for model in client.models.list().data]}
    raise SystemExit(f"unknown scenario {scenario}")


print(json.dumps(run(os.environ["SCENARIO"])))
