// A small JSON-RPC client for authbridge over a WebSocket (the `ws` package).
//
// It pairs replies with requests, hands notifications to listeners, and answers server→client
// requests (such as `account/chatgptAuthTokens/refresh`) with the handler registered for them.

import WebSocket from "ws";

export class AuthBridgeClient {
  #socket;
  #nextId = 1;
  #pending = new Map();
  #notificationListeners = new Map();
  #requestHandlers = new Map();

  /** Connects with the capability token (or none for `--ws-auth none`). */
  static connect(url, token) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const socket = new WebSocket(url, { headers });
    const client = new AuthBridgeClient(socket);
    return new Promise((resolve, reject) => {
      socket.once("open", () => resolve(client));
      socket.once("error", reject);
      socket.once("unexpected-response", (_request, response) =>
        reject(new Error(`upgrade refused: HTTP ${response.statusCode}`)),
      );
    });
  }

  constructor(socket) {
    this.#socket = socket;
    socket.on("message", (data, isBinary) => {
      if (!isBinary) this.#dispatch(JSON.parse(data.toString("utf8")));
    });
    socket.on("close", (code, reason) => {
      const error = new Error(`connection closed (${code} ${reason})`);
      for (const { reject } of this.#pending.values()) reject(error);
      this.#pending.clear();
    });
  }

  /** Sends a request and resolves with its `result` (rejects with its `error`). */
  request(method, params) {
    const id = this.#nextId++;
    const message = params === undefined ? { id, method } : { id, method, params };
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#socket.send(JSON.stringify(message));
    });
  }

  notify(method, params) {
    this.#socket.send(JSON.stringify(params === undefined ? { method } : { method, params }));
  }

  /** The `initialize` handshake, then `initialized`. */
  async initialize(clientInfo) {
    const result = await this.request("initialize", { clientInfo });
    this.notify("initialized");
    return result;
  }

  onNotification(method, listener) {
    const listeners = this.#notificationListeners.get(method) ?? [];
    listeners.push(listener);
    this.#notificationListeners.set(method, listeners);
  }

  /** `handler(params)` returns the result, or throws `{code, message}` to answer with an error. */
  onServerRequest(method, handler) {
    this.#requestHandlers.set(method, handler);
  }

  close() {
    this.#socket.close(1000);
  }

  #dispatch(message) {
    if (Array.isArray(message)) {
      message.forEach((entry) => this.#dispatch(entry));
    } else if (message.method !== undefined && message.id !== undefined) {
      this.#answer(message);
    } else if (message.method !== undefined) {
      for (const listener of this.#notificationListeners.get(message.method) ?? []) listener(message.params);
    } else if (this.#pending.has(message.id)) {
      const { resolve, reject } = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.error) reject(Object.assign(new Error(message.error.message), { code: message.error.code }));
      else resolve(message.result);
    }
  }

  async #answer({ id, method, params }) {
    const handler = this.#requestHandlers.get(method);
    let reply;
    try {
      if (!handler) throw { code: -32601, message: `no handler for ${method}` };
      reply = { id, result: await handler(params) };
    } catch (error) {
      reply = { id, error: { code: error.code ?? -32000, message: error.message ?? String(error) } };
    }
    this.#socket.send(JSON.stringify(reply));
  }
}
