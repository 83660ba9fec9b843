// authbridge console: a dependency-free JSON-RPC client for the authbridge WebSocket.
//
// Rules this file keeps:
// - The capability token goes nowhere but the WebSocket subprotocol list. It is read from the
//   password box or from `#token=` (then removed from the address bar) and never stored.
// - Everything the server or the user supplies reaches the DOM through textContent / text nodes.
// - Nothing is evaluated; user input is parsed with JSON.parse inside try/catch.
"use strict";

(() => {
  const REFRESH_METHOD = "account/chatgptAuthTokens/refresh";
  const TOOL_CALL_METHOD = "item/tool/call";
  const MAX_LOG_ENTRIES = 2000;
  const HIGHLIGHT_LIMIT = 200_000;
  const CLIENT_INFO = { name: "authbridge_console", title: "authbridge console", version: "1" };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  };

  // ---------------------------------------------------------------- method catalogue

  // The methods come from the server (`/console/catalog.json`), with how long it waits for each
  // server request; "custom" is the page's own. Placeholders in example params are filled in.
  const CUSTOM = { group: "Other", value: "custom", label: "custom…", method: null, params: {}, doc: "Any method name; params are sent as typed." };
  const catalog = { methods: [CUSTOM], windows: {} };
  const methodByValue = new Map([[CUSTOM.value, CUSTOM]]);
  const DEFAULT_WINDOW_MS = 10_000;
  const windowOf = (method) => catalog.windows[method] ?? DEFAULT_WINDOW_MS;

  async function loadCatalog() {
    const response = await fetch("/console/catalog.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`catalog: HTTP ${response.status}`);
    const body = await response.json();
    catalog.methods = [...body.methods, CUSTOM];
    catalog.windows = isObject(body.serverRequests) ? body.serverRequests : {};
    methodByValue.clear();
    for (const item of catalog.methods) methodByValue.set(item.value, item);
  }

  function exampleParams(item) {
    if (item.params === null || item.params === undefined) return undefined;
    const fill = { "<thread id>": state.chat.threadId, "<turn id>": state.chat.turnId, "<login id>": state.lastLoginId };
    return JSON.parse(JSON.stringify(item.params), (_, value) => (typeof value === "string" && fill[value] ? fill[value] : value));
  }

  // ---------------------------------------------------------------- state

  const state = {
    ws: null,
    phase: "disconnected",
    opened: false,
    nextId: 1,
    initKey: null,
    pending: new Map(), // id key -> { method, sentAt, entry }
    serverRequests: new Map(), // id key -> { method, receivedAt, entry }
    refreshQueue: [],
    activeRefresh: null,
    refreshTimer: null,
    lastLoginId: null,
    account: null,
    seq: 0,
    // The chat view: the open thread, its running turn, and the transcript nodes by item id.
    chat: { threadId: null, turnId: null, items: new Map(), waiters: new Map() },
  };

  const idKey = (id) => JSON.stringify(id);

  // ---------------------------------------------------------------- elements

  const ui = {
    endpoint: $("endpoint"),
    state: $("connection-state"),
    stateText: $("connection-state-text"),
    detail: $("connection-detail"),
    connectForm: $("connect-form"),
    tokenInput: $("token-input"),
    tokenReveal: $("token-reveal"),
    connectButton: $("connect-button"),
    infoUserAgent: $("info-user-agent"),
    infoHome: $("info-home"),
    infoPlatform: $("info-platform"),
    infoAccount: $("info-account"),
    limits: $("limits"),
    limitsPlan: $("limits-plan"),
    limitPrimary: $("limit-primary"),
    limitSecondary: $("limit-secondary"),
    limitCredits: $("limit-credits"),
    composer: $("composer"),
    methodSelect: $("method-select"),
    customRow: $("custom-method-row"),
    customMethod: $("custom-method"),
    methodDoc: $("method-doc"),
    paramsInput: $("params-input"),
    paramsError: $("params-error"),
    formatButton: $("format-button"),
    nextId: $("next-id"),
    sendButton: $("send-button"),
    log: $("log"),
    logEmpty: $("log-empty"),
    logFilter: $("log-filter"),
    logKind: $("log-kind"),
    logFollow: $("log-follow"),
    logCompact: $("log-compact"),
    logCount: $("log-count"),
    logClear: $("log-clear"),
    refreshPanel: $("refresh-panel"),
    refreshTitle: $("refresh-title"),
    refreshDesc: $("refresh-desc"),
    refreshMethod: $("refresh-method"),
    refreshQueue: $("refresh-queue"),
    refreshCountdown: $("refresh-countdown"),
    refreshCountdownNote: $("refresh-countdown-note"),
    refreshExpired: $("refresh-expired"),
    refreshId: $("refresh-id"),
    refreshMeter: $("refresh-meter"),
    refreshParams: $("refresh-params"),
    refreshForm: $("refresh-form"),
    refreshIdToken: $("refresh-id-token"),
    refreshAccessToken: $("refresh-access-token"),
    refreshAccountId: $("refresh-account-id"),
    refreshPlanType: $("refresh-plan-type"),
    refreshRaw: $("refresh-raw"),
    refreshAnswerError: $("refresh-answer-error"),
    refreshRejectForm: $("refresh-reject-form"),
    refreshErrorCode: $("refresh-error-code"),
    refreshErrorMessage: $("refresh-error-message"),
    refreshRejectError: $("refresh-reject-error"),
    announcer: $("announcer"),
    chatPanel: $("chat"),
    chatThread: $("chat-thread"),
    chatUsage: $("chat-usage"),
    chatTranscript: $("chat-transcript"),
    chatForm: $("chat-form"),
    chatInput: $("chat-input"),
    chatInterrupt: $("chat-interrupt"),
  };

  const endpointUrl = () => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/`;

  // ---------------------------------------------------------------- helpers

  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const clock = (date) =>
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
  const duration = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

  function announce(text) {
    ui.announcer.textContent = "";
    // A new text node in a separate task makes screen readers announce repeats too.
    setTimeout(() => {
      ui.announcer.textContent = text;
    }, 30);
  }

  function showFieldError(node, input, message) {
    node.textContent = message;
    node.hidden = false;
    if (input) input.setAttribute("aria-invalid", "true");
  }

  function clearFieldError(node, input) {
    node.textContent = "";
    node.hidden = true;
    if (input) input.removeAttribute("aria-invalid");
  }

  /** Parses `text` as JSON; `{ ok, value }` or `{ ok: false, message }`, never throws. */
  function parseJson(text) {
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (error) {
      return { ok: false, message: error instanceof Error ? error.message : String(error) };
    }
  }

  const JSON_TOKEN = /("(?:[^"\\]|\\.)*")(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

  /** Fills `pre` with syntax-highlighted `text` (text nodes and spans only). */
  function renderJson(pre, text) {
    pre.textContent = "";
    if (text.length > HIGHLIGHT_LIMIT) {
      pre.textContent = text;
      return;
    }
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(JSON_TOKEN)) {
      if (match.index > last) fragment.append(text.slice(last, match.index));
      const span = document.createElement("span");
      if (match[1] !== undefined) {
        span.className = match[2] ? "j-key" : "j-str";
        span.textContent = match[1];
        fragment.append(span);
        if (match[2]) fragment.append(match[2]);
      } else {
        const word = match[0];
        span.className = word === "null" ? "j-null" : word === "true" || word === "false" ? "j-bool" : "j-num";
        span.textContent = word;
        fragment.append(span);
      }
      last = match.index + match[0].length;
    }
    if (last < text.length) fragment.append(text.slice(last));
    pre.append(fragment);
  }

  // ---------------------------------------------------------------- connection state

  const PHASE_TEXT = {
    disconnected: "Disconnected",
    connecting: "Connecting…",
    initializing: "Connected · initializing…",
    ready: "Connected · initialized",
    "init-failed": "Connected · initialize failed",
    closing: "Closing…",
    closed: "Closed",
  };

  function setPhase(phase, { text, detail } = {}) {
    state.phase = phase;
    ui.state.dataset.state = phase;
    ui.stateText.textContent = text ?? PHASE_TEXT[phase];
    if (detail) {
      ui.detail.textContent = detail;
      ui.detail.hidden = false;
    } else {
      ui.detail.textContent = "";
      ui.detail.hidden = true;
    }
    const live = phase === "connecting" || phase === "initializing" || phase === "ready" || phase === "init-failed";
    ui.connectButton.textContent = live ? "Disconnect" : "Connect";
    ui.connectButton.dataset.action = live ? "disconnect" : "connect";
    ui.connectButton.classList.toggle("primary", !live);
    ui.connectButton.disabled = phase === "closing";
    ui.tokenInput.disabled = live || phase === "closing";
    updateSendEnabled();
  }

  function socketOpen() {
    return state.ws !== null && state.ws.readyState === WebSocket.OPEN;
  }

  function updateSendEnabled() {
    ui.sendButton.disabled = !socketOpen();
    ui.nextId.textContent = socketOpen() ? `next id ${state.nextId}` : "not connected";
  }

  function connect() {
    const token = ui.tokenInput.value.trim();
    if (!token) {
      setPhase("disconnected", { detail: "Paste the capability token first." });
      ui.tokenInput.focus();
      return;
    }
    let ws;
    try {
      ws = new WebSocket(endpointUrl(), ["authbridge", `authbridge.bearer.${token}`]);
    } catch (error) {
      // The constructor rejects subprotocol values with characters outside HTTP token syntax.
      setPhase("closed", {
        text: "Not connected",
        detail: `The token cannot be sent as a WebSocket subprotocol (${error instanceof Error ? error.message : error}).`,
      });
      return;
    }
    state.ws = ws;
    state.opened = false;
    state.initKey = null;
    setPhase("connecting");

    ws.addEventListener("open", () => {
      if (ws !== state.ws) return;
      state.opened = true;
      setPhase("initializing");
      const id = state.nextId++;
      state.initKey = idKey(id);
      send({ id, method: "initialize", params: { clientInfo: CLIENT_INFO } });
    });
    ws.addEventListener("message", (event) => {
      if (ws !== state.ws) return;
      receive(event.data);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== state.ws) return;
      onClosed(event);
    });
  }

  function disconnect() {
    if (!state.ws) return;
    if (state.ws.readyState === WebSocket.CONNECTING) {
      // Closing a socket that is still handshaking gives a 1006 close; say why.
      const ws = state.ws;
      state.ws = null;
      ws.close();
      setPhase("closed", { text: "Closed", detail: "Connection attempt abandoned." });
      dropPending("the connection attempt was abandoned");
      return;
    }
    setPhase("closing");
    state.ws.close(1000, "closed by console user");
  }

  function onClosed(event) {
    const code = event.code;
    const reason = event.reason;
    const wasOpen = state.opened;
    state.ws = null;
    state.opened = false;
    let detail;
    if (!wasOpen) {
      detail =
        "The handshake failed: wrong token, forbidden host or origin, too many connections, or no server. " +
        "Browsers hide the HTTP status; the server log has the reason.";
    } else {
      detail = reason ? `Close code ${code}: ${reason}` : `Close code ${code}${code === 1006 ? " (no close frame)" : ""}.`;
    }
    setPhase("closed", { text: `Closed · ${code}${reason ? ` ${reason}` : ""}`, detail });
    ui.state.dataset.closeCode = String(code);
    ui.state.dataset.closeReason = reason;
    dropPending("the connection closed");
    announce(`Connection closed with code ${code}.`);
  }

  function dropPending(why) {
    for (const pending of state.pending.values()) markPair(pending.entry, `no reply: ${why}`, "lost");
    state.pending.clear();
    for (const request of state.serverRequests.values()) markPair(request.entry, `unanswered: ${why}`, "lost");
    state.serverRequests.clear();
    state.refreshQueue = [];
    closeRefreshPanel();
    for (const waiter of state.chat.waiters.values()) waiter({ error: { code: 0, message: why } });
    state.chat.waiters.clear();
    setTurn(null);
  }

  // ---------------------------------------------------------------- sending and receiving

  /** Sends one JSON-RPC message and logs it. Returns false when the socket is not open. */
  function send(message) {
    if (!socketOpen()) return false;
    const text = JSON.stringify(message);
    state.ws.send(text);
    const entry = logMessage("out", message, text);
    if (typeof message.method === "string" && "id" in message) {
      state.pending.set(idKey(message.id), { method: message.method, sentAt: performance.now(), entry });
      markPair(entry, "awaiting reply…", "waiting");
    } else if ("id" in message && !("method" in message)) {
      const request = state.serverRequests.get(idKey(message.id));
      if (request) {
        state.serverRequests.delete(idKey(message.id));
        const elapsed = performance.now() - request.receivedAt;
        const took = duration(elapsed);
        const late = elapsed > windowOf(request.method);
        markPair(request.entry, late ? `answered late, after ${took}` : `answered in ${took}`, late ? "failed" : "done", entry);
        pairWith(entry, `answers ${request.method} · ${took}`, request.entry);
        entry.dataset.replyTo = request.method;
      }
    }
    updateSendEnabled();
    return true;
  }

  function receive(data) {
    if (typeof data !== "string") {
      logRaw("in", "[binary frame ignored]", "invalid");
      return;
    }
    const parsed = parseJson(data);
    if (!parsed.ok) {
      logRaw("in", data, "invalid");
      return;
    }
    if (Array.isArray(parsed.value)) {
      // Batch replies: one entry per element, tagged.
      for (const item of parsed.value) handleIncoming(item, JSON.stringify(item), true);
      return;
    }
    handleIncoming(parsed.value, data, false);
  }

  function classify(message) {
    if (!isObject(message)) return "invalid";
    const hasId = "id" in message;
    if (typeof message.method === "string") return hasId ? "server-request" : "notification";
    if (hasId && "error" in message) return "error";
    if (hasId && "result" in message) return "response";
    return "invalid";
  }

  function handleIncoming(message, text, batched) {
    const kind = classify(message);
    const entry = logMessage("in", message, text, { kind, batched });
    if (kind === "response" || kind === "error") {
      const key = idKey(message.id);
      const pending = state.pending.get(key);
      if (pending) {
        state.pending.delete(key);
        const took = duration(performance.now() - pending.sentAt);
        markPair(pending.entry, `${kind === "error" ? "error" : "replied"} in ${took}`, kind === "error" ? "failed" : "done", entry);
        pairWith(entry, `${pending.method} · ${took}`, pending.entry);
        entry.dataset.replyTo = pending.method;
        onReply(key, pending.method, message);
      }
      const waiter = state.chat.waiters.get(key);
      if (waiter) {
        state.chat.waiters.delete(key);
        waiter(message);
      }
    } else if (kind === "notification") {
      onNotification(message);
    } else if (kind === "server-request") {
      const receivedAt = performance.now();
      state.serverRequests.set(idKey(message.id), { method: message.method, receivedAt, entry });
      markPair(entry, "awaiting your answer…", "waiting");
      if (message.method === TOOL_CALL_METHOD) chatToolCall(message.params);
      enqueueServerRequest(message);
    }
  }

  function onReply(key, method, message) {
    if (key === state.initKey) {
      state.initKey = null;
      if ("result" in message && isObject(message.result)) {
        showServerInfo(message.result);
        send({ method: "initialized" });
        setPhase("ready");
        announce("Connected and initialized.");
        call("account/read", {});
        loadThreads();
      } else {
        const why = isObject(message.error) ? `${message.error.code}: ${message.error.message}` : "unexpected reply";
        setPhase("init-failed", { detail: `initialize failed (${why}).` });
      }
      return;
    }
    if (!("result" in message) || !isObject(message.result)) return;
    const result = message.result;
    if (method === "account/read") showAccountRead(result);
    else if (method === "account/rateLimits/read" && isObject(result.rateLimits)) showRateLimits(result.rateLimits);
    else if (method === "account/login/start" && typeof result.loginId === "string") state.lastLoginId = result.loginId;
  }

  function onNotification(message) {
    const params = isObject(message.params) ? message.params : {};
    if (typeof params.threadId === "string" && params.threadId === state.chat.threadId) chatEvent(message.method, params);
    switch (message.method) {
      case "account/updated":
        showAccountMode(params.authMode ?? null, params.planType ?? null);
        break;
      case "account/rateLimits/updated":
        if (isObject(params.rateLimits)) showRateLimits(params.rateLimits);
        break;
      case "thread/started":
        if (isObject(params.thread)) addThreadOption(params.thread);
        break;
      case "account/login/completed":
        announce(params.success ? "Login completed." : `Login failed: ${params.error ?? "unknown error"}`);
        break;
      default:
        break;
    }
  }

  // ---------------------------------------------------------------- session panel

  function showServerInfo(result) {
    ui.infoUserAgent.textContent = String(result.userAgent ?? "—");
    ui.infoHome.textContent = String(result.codexHome ?? "—");
    const platform = [result.platformOs, result.platformFamily].filter((v) => typeof v === "string");
    ui.infoPlatform.textContent = platform.length ? platform.join(" · ") : "—";
  }

  function showAccountRead(result) {
    const account = result.account;
    if (result.requiresOpenaiAuth === false) ui.infoAccount.textContent = "not required";
    else if (account === null || account === undefined) ui.infoAccount.textContent = "signed out";
    else if (account.type === "apiKey") ui.infoAccount.textContent = "API key";
    else if (account.type === "chatgpt") ui.infoAccount.textContent = `${account.email} · ${account.planType}`;
    else ui.infoAccount.textContent = JSON.stringify(account);
  }

  function showAccountMode(authMode, planType) {
    const mode = authMode === "apikey" ? "API key" : String(authMode);
    ui.infoAccount.textContent = authMode === null ? "signed out" : planType ? `${mode} · ${planType}` : mode;
  }

  function renderWindow(container, title, window) {
    container.textContent = "";
    if (!isObject(window)) {
      container.hidden = true;
      return;
    }
    container.hidden = false;
    const used = Math.max(0, Math.min(100, Number(window.usedPercent) || 0));
    const mins = window.windowDurationMins;
    const span = typeof mins === "number" ? (mins % 1440 === 0 ? `${mins / 1440} d` : mins % 60 === 0 ? `${mins / 60} h` : `${mins} min`) : "";
    const resets =
      typeof window.resetsAt === "number" ? `resets ${new Date(window.resetsAt * 1000).toLocaleString()}` : "";
    const bar = el("div", {
      className: `bar${used >= 90 ? " hot" : used >= 70 ? " warm" : ""}`,
      role: "meter",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(used),
      "aria-label": `${title} window used`,
    });
    const fill = el("div", { className: "bar-fill" });
    fill.style.width = `${used}%`;
    bar.append(fill);
    container.append(
      el(
        "div",
        { className: "limit-head" },
        el("span", { text: `${title}${span ? ` · ${span}` : ""}` }),
        el("strong", { text: `${window.usedPercent}%` }),
      ),
      bar,
      el("div", { className: "hint", text: resets }),
    );
  }

  function showRateLimits(limits) {
    ui.limits.hidden = false;
    ui.limitsPlan.textContent = limits.planType ? `(${limits.planType})` : "";
    renderWindow(ui.limitPrimary, "Primary", limits.primary);
    renderWindow(ui.limitSecondary, "Secondary", limits.secondary);
    const credits = limits.credits;
    ui.limitCredits.textContent = isObject(credits)
      ? `Credits: ${credits.unlimited ? "unlimited" : credits.hasCredits ? credits.balance ?? "available" : "none"}`
      : "";
  }

  // ---------------------------------------------------------------- log

  function logRaw(direction, text, kind) {
    return appendEntry({ direction, kind, text, message: null, batched: false });
  }

  function logMessage(direction, message, rawText, { kind, batched = false } = {}) {
    const resolved = kind ?? (direction === "out" ? outgoingKind(message) : classify(message));
    return appendEntry({ direction, kind: resolved, text: rawText, message, batched });
  }

  function outgoingKind(message) {
    if (!isObject(message)) return "invalid";
    if (typeof message.method === "string") return "id" in message ? "request" : "notification";
    return "error" in message ? "error" : "response";
  }

  const KIND_LABEL = {
    request: "request",
    response: "response",
    error: "error",
    notification: "notification",
    "server-request": "server request",
    invalid: "unparsed",
  };

  const searchText = new WeakMap();
  /** The value (or raw text) each entry shows, to re-render on a density change. */
  const entryContent = new WeakMap();

  function renderEntryBody(pre, content) {
    if (content.message === null) renderJson(pre, content.text);
    else renderJson(pre, JSON.stringify(content.message, null, ui.logCompact.checked ? 0 : 2));
  }

  function appendEntry({ direction, kind, text, message, batched }) {
    const seq = ++state.seq;
    const now = new Date();
    const method = isObject(message) && typeof message.method === "string" ? message.method : "";
    const hasId = isObject(message) && "id" in message;
    const entry = el("article", {
      className: `entry kind-${kind} dir-${direction}`,
      "data-testid": "log-entry",
      id: `entry-${seq}`,
      "aria-label": `${direction === "out" ? "Sent" : "Received"} ${KIND_LABEL[kind]}${method ? ` ${method}` : ""}`,
      dataset: { seq: String(seq), kind, direction, method },
    });
    if (hasId) entry.dataset.id = idKey(message.id).replace(/^"|"$/g, "");

    const pretty = message !== null ? JSON.stringify(message, null, 2) : text;
    const head = el(
      "header",
      { className: "entry-head" },
      el("span", {
        className: "dir",
        title: direction === "out" ? "sent to server" : "received from server",
        text: direction === "out" ? "↑" : "↓",
      }),
      el("time", { dateTime: now.toISOString(), text: clock(now) }),
      el("span", { className: `badge badge-${kind}`, text: KIND_LABEL[kind] }),
    );
    if (batched) head.append(el("span", { className: "badge badge-batch", text: "batch" }));
    if (method) head.append(el("span", { className: "entry-method", text: method }));
    if (hasId) head.append(el("span", { className: "entry-id", text: `#${idKey(message.id)}` }));
    head.append(el("span", { className: "spacer" }));
    head.append(el("span", { className: "entry-pair", "data-testid": "log-entry-pair" }));
    head.append(
      el("button", {
        type: "button",
        className: "entry-copy",
        title: "Copy the raw frame",
        "aria-label": "Copy the raw frame",
        text: "copy",
        onclick: (event) => copyText(event.currentTarget, text),
      }),
    );
    const pre = el("pre", { className: "json", "data-testid": "log-entry-json" });
    const content = { message, text };
    entryContent.set(pre, content);
    renderEntryBody(pre, content);
    entry.append(head, pre);
    searchText.set(entry, `${method}\n${text}\n${pretty}`.toLowerCase());

    const follow = ui.logFollow.checked;
    ui.logEmpty.hidden = true;
    ui.log.append(entry);
    while (ui.log.querySelectorAll("article.entry").length > MAX_LOG_ENTRIES) {
      ui.log.querySelector("article.entry")?.remove();
    }
    applyFilter(entry);
    updateCount();
    if (follow && !entry.hidden) ui.log.scrollTop = ui.log.scrollHeight;
    return entry;
  }

  function pairLink(target, label) {
    return el("a", {
      href: `#${target.id}`,
      text: label,
      onclick: (event) => {
        event.preventDefault();
        target.hidden = false;
        target.scrollIntoView({ block: "nearest", behavior: "smooth" });
        target.classList.remove("flash");
        void target.offsetWidth;
        target.classList.add("flash");
      },
    });
  }

  /** Sets the pairing note of a request-like entry. */
  function markPair(entry, label, status, reply) {
    const slot = entry.querySelector(".entry-pair");
    slot.textContent = "";
    slot.dataset.status = status;
    slot.append(reply ? pairLink(reply, label) : label);
    entry.dataset.pair = status;
  }

  /** Marks a reply entry with a link back to what it answers. */
  function pairWith(entry, label, target) {
    const slot = entry.querySelector(".entry-pair");
    slot.textContent = "";
    slot.dataset.status = "reply";
    slot.append("↩ ", pairLink(target, label));
  }

  function copyText(button, text) {
    const done = (label) => {
      button.textContent = label;
      setTimeout(() => {
        button.textContent = "copy";
      }, 1200);
    };
    if (navigator.clipboard?.writeText) {
      navigator.clipboard.writeText(text).then(
        () => done("copied"),
        () => done("failed"),
      );
    } else {
      done("unavailable");
    }
  }

  function applyFilter(entry) {
    const kind = ui.logKind.value;
    const needle = ui.logFilter.value.trim().toLowerCase();
    const kindOk = !kind || entry.dataset.kind === kind;
    const textOk = !needle || (searchText.get(entry) ?? "").includes(needle);
    entry.hidden = !(kindOk && textOk);
  }

  function applyFilterAll() {
    for (const entry of ui.log.querySelectorAll("article.entry")) applyFilter(entry);
    updateCount();
    if (ui.logFollow.checked) ui.log.scrollTop = ui.log.scrollHeight;
  }

  function updateCount() {
    const all = ui.log.querySelectorAll("article.entry");
    const shown = [...all].filter((e) => !e.hidden).length;
    const noun = all.length === 1 ? "message" : "messages";
    ui.logCount.textContent = shown === all.length ? `${all.length} ${noun}` : `${shown} of ${all.length} ${noun}`;
  }

  function onDensityChange() {
    ui.log.classList.toggle("compact", ui.logCompact.checked);
    for (const pre of ui.log.querySelectorAll("article.entry > pre.json")) {
      const content = entryContent.get(pre);
      if (content) renderEntryBody(pre, content);
    }
    if (ui.logFollow.checked) ui.log.scrollTop = ui.log.scrollHeight;
  }

  function clearLog() {
    for (const entry of ui.log.querySelectorAll("article.entry")) entry.remove();
    ui.logEmpty.hidden = false;
    updateCount();
  }

  // ---------------------------------------------------------------- composer

  function fillMethodSelect() {
    const groups = new Map();
    ui.methodSelect.textContent = "";
    for (const item of catalog.methods) {
      let group = groups.get(item.group);
      if (!group) {
        group = el("optgroup", { label: item.group });
        groups.set(item.group, group);
        ui.methodSelect.append(group);
      }
      group.append(el("option", { value: item.value, text: item.label ?? item.value }));
    }
  }

  function onMethodChange() {
    const item = methodByValue.get(ui.methodSelect.value);
    if (!item) return;
    const params = exampleParams(item);
    ui.paramsInput.value = params === undefined ? "" : JSON.stringify(params, null, 2);
    ui.methodDoc.textContent = item.doc;
    ui.customRow.hidden = item.method !== null;
    clearFieldError(ui.paramsError, ui.paramsInput);
  }

  function readParams() {
    const text = ui.paramsInput.value.trim();
    if (text === "") return { ok: true, value: undefined };
    const parsed = parseJson(text);
    if (!parsed.ok) return { ok: false, message: `Invalid JSON: ${parsed.message}` };
    return parsed;
  }

  function onSend(event) {
    event.preventDefault();
    const item = methodByValue.get(ui.methodSelect.value);
    const method = item?.method ?? ui.customMethod.value.trim();
    if (!method) {
      showFieldError(ui.paramsError, ui.customMethod, "Enter a method name.");
      ui.customMethod.focus();
      return;
    }
    ui.customMethod.removeAttribute("aria-invalid");
    const params = readParams();
    if (!params.ok) {
      showFieldError(ui.paramsError, ui.paramsInput, params.message);
      ui.paramsInput.focus();
      return;
    }
    clearFieldError(ui.paramsError, ui.paramsInput);
    if (!socketOpen()) {
      showFieldError(ui.paramsError, null, "Not connected.");
      return;
    }
    call(method, params.value);
  }

  function onFormat() {
    const params = readParams();
    if (!params.ok) {
      showFieldError(ui.paramsError, ui.paramsInput, params.message);
      return;
    }
    clearFieldError(ui.paramsError, ui.paramsInput);
    if (params.value !== undefined) ui.paramsInput.value = JSON.stringify(params.value, null, 2);
  }

  // ---------------------------------------------------------------- server requests (refresh panel)

  function enqueueServerRequest(message) {
    const request = state.serverRequests.get(idKey(message.id));
    const receivedAt = request ? request.receivedAt : performance.now();
    const window = windowOf(message.method);
    state.refreshQueue.push({ message, window, deadline: receivedAt + window });
    if (!state.activeRefresh) showNextServerRequest();
    else updateQueueLabel();
    announce(`Server request ${message.method}: answer within ${window / 1000} seconds.`);
  }

  function updateQueueLabel() {
    const waiting = state.refreshQueue.length;
    ui.refreshQueue.textContent = waiting ? `· ${waiting} more waiting` : "";
  }

  function selectedShape() {
    return ui.refreshForm.querySelector('input[name="refresh-shape"]:checked').value;
  }

  function setShape(shape) {
    for (const radio of ui.refreshForm.querySelectorAll('input[name="refresh-shape"]')) radio.checked = radio.value === shape;
    for (const block of ui.refreshForm.querySelectorAll(".shape")) {
      block.hidden = !block.dataset.shape.split(" ").includes(shape);
    }
    clearFieldError(ui.refreshAnswerError, null);
  }

  function showNextServerRequest() {
    const next = state.refreshQueue.shift();
    if (!next) {
      closeRefreshPanel();
      return;
    }
    state.activeRefresh = next;
    const { message } = next;
    ui.refreshMethod.textContent = message.method;
    ui.refreshId.textContent = idKey(message.id);
    renderJson(ui.refreshParams, JSON.stringify(message.params ?? null, null, 2));
    ui.refreshPanel.dataset.method = message.method;
    ui.refreshPanel.dataset.id = idKey(message.id);
    ui.refreshPanel.classList.remove("expired");
    delete ui.refreshPanel.dataset.expired;
    ui.refreshDesc.textContent = REQUEST_HELP[message.method] ?? "The server waits for this client's answer.";
    ui.refreshExpired.textContent = `The server has stopped waiting (${next.window / 1000} s): a late reply is ignored.`;
    if (message.method !== REFRESH_METHOD) {
      setShape("raw");
      if (message.method === TOOL_CALL_METHOD) {
        ui.refreshRaw.value = JSON.stringify({ output: "", success: true }, null, 2);
      }
    } else if (selectedShape() === "raw") setShape("idToken");
    else setShape(selectedShape());
    clearFieldError(ui.refreshAnswerError, null);
    clearFieldError(ui.refreshRejectError, ui.refreshErrorCode);
    const previous = isObject(message.params) ? message.params.previousAccountId : undefined;
    if (typeof previous === "string" && !ui.refreshAccountId.value) ui.refreshAccountId.placeholder = previous;
    updateQueueLabel();
    ui.refreshPanel.hidden = false;
    tickRefresh();
    clearInterval(state.refreshTimer);
    state.refreshTimer = setInterval(tickRefresh, 100);
    const first = [...ui.refreshForm.querySelectorAll("input[type=text], textarea")].find((n) => n.offsetParent !== null);
    (first ?? ui.refreshTitle).focus({ preventScroll: true });
  }

  const REQUEST_HELP = {
    [REFRESH_METHOD]: "The server got HTTP 401 with the host-owned tokens and waits for fresh ones from this client.",
    [TOOL_CALL_METHOD]: "The model called a tool this client declared in dynamicTools: answer with its output (success:false tells the model it failed).",
  };

  function tickRefresh() {
    const active = state.activeRefresh;
    if (!active) return;
    const left = Math.max(0, active.deadline - performance.now());
    ui.refreshMeter.style.width = `${(left / active.window) * 100}%`;
    if (left > 0) {
      ui.refreshCountdown.textContent = `${(left / 1000).toFixed(1)} s`;
      ui.refreshCountdownNote.textContent = "left";
      ui.refreshExpired.hidden = true;
      ui.refreshPanel.classList.toggle("urgent", left < 3000);
    } else {
      ui.refreshCountdown.textContent = "0.0 s";
      ui.refreshCountdownNote.textContent = "window elapsed";
      ui.refreshExpired.hidden = false;
      ui.refreshPanel.classList.add("expired");
      ui.refreshPanel.dataset.expired = "true";
      clearInterval(state.refreshTimer);
    }
  }

  function closeRefreshPanel() {
    clearInterval(state.refreshTimer);
    state.refreshTimer = null;
    state.activeRefresh = null;
    ui.refreshPanel.hidden = true;
    ui.refreshPanel.classList.remove("urgent", "expired");
  }

  function answerActive(reply) {
    const active = state.activeRefresh;
    if (!active) return;
    if (!send({ id: active.message.id, ...reply })) {
      showFieldError(ui.refreshAnswerError, null, "Not connected.");
      return;
    }
    showNextServerRequest();
  }

  function onRefreshSend(event) {
    event.preventDefault();
    const shape = selectedShape();
    const accessToken = ui.refreshAccessToken.value.trim();
    let result;
    if (shape === "raw") {
      const parsed = parseJson(ui.refreshRaw.value);
      if (!parsed.ok) {
        showFieldError(ui.refreshAnswerError, ui.refreshRaw, `Invalid JSON: ${parsed.message}`);
        return;
      }
      result = parsed.value;
    } else if (shape === "idToken") {
      const idToken = ui.refreshIdToken.value.trim();
      if (!idToken || !accessToken) {
        showFieldError(ui.refreshAnswerError, null, "Both idToken and accessToken are required.");
        return;
      }
      result = { idToken, accessToken };
    } else {
      const chatgptAccountId = ui.refreshAccountId.value.trim();
      const plan = ui.refreshPlanType.value.trim();
      if (!accessToken || !chatgptAccountId) {
        showFieldError(ui.refreshAnswerError, null, "accessToken and chatgptAccountId are required.");
        return;
      }
      result = { accessToken, chatgptAccountId };
      if (plan) result.chatgptPlanType = plan;
    }
    clearFieldError(ui.refreshAnswerError, ui.refreshRaw);
    answerActive({ result });
  }

  function onRefreshReject(event) {
    event.preventDefault();
    const codeText = ui.refreshErrorCode.value.trim();
    const code = /^-?\d+$/.test(codeText) ? Number(codeText) : NaN;
    if (!Number.isSafeInteger(code)) {
      showFieldError(ui.refreshRejectError, ui.refreshErrorCode, "The code must be an integer.");
      return;
    }
    clearFieldError(ui.refreshRejectError, ui.refreshErrorCode);
    answerActive({ error: { code, message: ui.refreshErrorMessage.value } });
  }

  // ---------------------------------------------------------------- chat view

  /** Sends a request; resolves with its reply (result or error). */
  function call(method, params) {
    const id = state.nextId++;
    if (!send(params === undefined ? { id, method } : { id, method, params })) {
      state.nextId--;
      return Promise.resolve({ error: { code: 0, message: "Not connected." } });
    }
    return new Promise((resolve) => state.chat.waiters.set(idKey(id), resolve));
  }

  async function loadThreads() {
    const reply = await call("thread/list", { limit: 50 });
    const threads = reply.result?.data ?? [];
    ui.chatThread.textContent = "";
    ui.chatThread.append(el("option", { value: "", text: "New thread" }));
    for (const thread of threads) addThreadOption(thread);
    ui.chatThread.value = state.chat.threadId ?? "";
  }

  function addThreadOption(thread) {
    if ([...ui.chatThread.options].some((option) => option.value === thread.id)) return;
    const label = thread.name || thread.preview || thread.id;
    ui.chatThread.append(el("option", { value: thread.id, text: label.length > 60 ? `${label.slice(0, 59)}…` : label }));
  }

  function openThread(thread) {
    state.chat.threadId = thread?.id ?? null;
    state.chat.items.clear();
    ui.chatTranscript.textContent = "";
    ui.chatUsage.textContent = "";
    setTurn(null);
    for (const turn of thread?.turns ?? []) for (const item of turn.items ?? []) chatItem(item, true);
  }

  async function onThreadPick() {
    const threadId = ui.chatThread.value;
    if (!threadId) return openThread(null);
    const reply = await call("thread/resume", { threadId });
    if (reply.error) return chatNote(`thread/resume failed: ${reply.error.message}`, "error");
    openThread(reply.result.thread);
    if (reply.result.thread.status?.type === "active") setTurn(reply.result.thread.turns?.at(-1)?.id ?? null);
  }

  async function onChatSend(event) {
    event.preventDefault();
    const text = ui.chatInput.value.trim();
    if (!text || !socketOpen()) return;
    if (!state.chat.threadId) {
      const started = await call("thread/start", {});
      if (started.error) return chatNote(`thread/start failed: ${started.error.message}`, "error");
      openThread(started.result.thread);
      addThreadOption(started.result.thread);
      ui.chatThread.value = state.chat.threadId;
    }
    ui.chatInput.value = "";
    const reply = await call("turn/start", { threadId: state.chat.threadId, input: [{ type: "text", text }] });
    if (reply.error) chatNote(`turn/start failed: ${reply.error.message}`, "error");
    else if (!state.chat.turnId && reply.result.turn.status === "inProgress") setTurn(reply.result.turn.id);
  }

  function setTurn(turnId) {
    state.chat.turnId = turnId;
    ui.chatInterrupt.disabled = !turnId;
    ui.chatPanel.dataset.running = String(Boolean(turnId));
  }

  function chatNote(text, kind = "note") {
    ui.chatTranscript.append(el("p", { className: `chat-note ${kind}`, text }));
    ui.chatTranscript.scrollTop = ui.chatTranscript.scrollHeight;
  }

  const itemText = (item) =>
    item.type === "userMessage"
      ? (item.content ?? []).map((part) => part.text ?? "").join("")
      : item.type === "reasoning"
        ? (item.summary ?? []).join("\n")
        : item.text ?? "";

  /** The transcript node of an item, made when it starts; `final` sets the completed text. */
  function chatItem(item, final) {
    if (!["userMessage", "agentMessage", "reasoning"].includes(item.type)) return;
    let node = state.chat.items.get(item.id);
    if (!node) {
      const body = el("div", { className: "chat-text", dataset: { testid: `chat-${item.type}` } });
      node = item.type === "reasoning"
        ? el("details", { className: "chat-item reasoning" }, el("summary", { text: "Reasoning" }), body)
        : el("div", { className: `chat-item ${item.type}` }, el("span", { className: "chat-who", text: item.type === "userMessage" ? "You" : "Assistant" }), body);
      node.body = body;
      state.chat.items.set(item.id, node);
      ui.chatTranscript.append(node);
    }
    if (final || item.type === "userMessage") node.body.textContent = itemText(item);
    ui.chatTranscript.scrollTop = ui.chatTranscript.scrollHeight;
  }

  function chatEvent(method, params) {
    const node = state.chat.items.get(params.itemId);
    switch (method) {
      case "item/started":
      case "item/completed":
        if (isObject(params.item)) chatItem(params.item, method === "item/completed");
        break;
      case "item/agentMessage/delta":
      case "item/reasoning/summaryTextDelta":
        node?.body.append(String(params.delta ?? ""));
        break;
      case "turn/started":
        setTurn(params.turn?.id ?? null);
        break;
      case "turn/completed": {
        setTurn(null);
        const turn = params.turn ?? {};
        if (turn.status === "failed") chatNote(`Turn failed: ${turn.error?.message ?? "unknown error"}`, "error");
        else if (turn.status === "interrupted") chatNote("Turn interrupted.");
        break;
      }
      case "thread/tokenUsage/updated": {
        const usage = params.tokenUsage ?? {};
        ui.chatUsage.textContent = `tokens: ${usage.total?.totalTokens ?? "?"} in thread · ${usage.last?.totalTokens ?? "?"} last turn`;
        break;
      }
      default:
        break;
    }
  }

  function chatToolCall(params) {
    if (!isObject(params) || params.threadId !== state.chat.threadId) return;
    chatNote(`Tool call ${params.tool}(${JSON.stringify(params.arguments ?? null)}): answer it in the server-request panel.`, "tool");
  }

  // ---------------------------------------------------------------- token from the fragment

  /** Reads `#token=` and removes it from the address bar (and history). */
  function takeFragmentToken() {
    const hash = location.hash.replace(/^#/, "");
    if (!hash) return null;
    const params = new URLSearchParams(hash);
    const token = params.get("token");
    if (token === null) return null;
    params.delete("token");
    const rest = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
    return token.trim();
  }

  function connectWithFragmentToken() {
    const token = takeFragmentToken();
    if (!token) return;
    ui.tokenInput.value = token;
    if (state.ws) {
      const ws = state.ws;
      state.ws = null;
      ws.close(1000, "reconnecting with a new token");
      dropPending("reconnected with a new token");
    }
    connect();
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    ui.endpoint.textContent = endpointUrl();
    fillMethodSelect();
    loadCatalog()
      .then(() => {
        fillMethodSelect();
        ui.methodSelect.value = "account/read";
        onMethodChange();
      })
      .catch((error) => {
        ui.methodDoc.textContent = `The method list could not be loaded (${error.message}); use custom…`;
      });
    ui.chatForm.addEventListener("submit", onChatSend);
    ui.chatThread.addEventListener("change", onThreadPick);
    ui.chatInterrupt.addEventListener("click", () => {
      if (state.chat.turnId) call("turn/interrupt", { threadId: state.chat.threadId, turnId: state.chat.turnId });
    });
    ui.chatInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        ui.chatForm.requestSubmit();
      }
    });

    ui.connectForm.addEventListener("submit", (event) => {
      event.preventDefault();
      if (ui.connectButton.dataset.action === "disconnect") disconnect();
      else connect();
    });
    ui.tokenReveal.addEventListener("click", () => {
      const reveal = ui.tokenInput.type === "password";
      ui.tokenInput.type = reveal ? "text" : "password";
      ui.tokenReveal.setAttribute("aria-pressed", String(reveal));
      ui.tokenReveal.setAttribute("aria-label", reveal ? "Hide token" : "Show token");
      ui.tokenReveal.title = reveal ? "Hide token" : "Show token";
    });

    ui.methodSelect.addEventListener("change", onMethodChange);
    ui.composer.addEventListener("submit", onSend);
    ui.formatButton.addEventListener("click", onFormat);
    ui.paramsInput.addEventListener("input", () => clearFieldError(ui.paramsError, ui.paramsInput));
    ui.paramsInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        ui.composer.requestSubmit();
      }
    });

    ui.logFilter.addEventListener("input", applyFilterAll);
    ui.logKind.addEventListener("change", applyFilterAll);
    ui.logClear.addEventListener("click", clearLog);
    ui.logCompact.addEventListener("change", onDensityChange);

    for (const radio of ui.refreshForm.querySelectorAll('input[name="refresh-shape"]')) {
      radio.addEventListener("change", () => setShape(radio.value));
    }
    ui.refreshForm.addEventListener("submit", onRefreshSend);
    ui.refreshRejectForm.addEventListener("submit", onRefreshReject);

    window.addEventListener("hashchange", connectWithFragmentToken);
    setPhase("disconnected");
    updateCount();
    connectWithFragmentToken();
    if (!socketOpen() && state.phase === "disconnected") ui.tokenInput.focus();
  }

  init();
})();
