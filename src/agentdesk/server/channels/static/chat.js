// The web chat widget (server/channels/webchat.py describes the protocol). Plain JS, no build step.
// Every text that came from outside (agents' names and messages, even our own visitor's) goes into the page
// with textContent, never as markup.
"use strict";

(() => {
  const SESSION_KEY = "agentdesk.chat.session";
  const PRECHAT_KEY = "agentdesk.chat.prechat";
  const PENDING_KEY = "agentdesk.chat.pending";
  const TYPING_SHOWN_MS = 4000;
  const TYPING_EVERY_MS = 3000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    state: $("state"), prechat: $("prechat"), name: $("prechat-name"), email: $("prechat-email"), phone: $("prechat-phone"),
    prechatError: $("prechat-error"), prechatSubmit: $("prechat-submit"), conversation: $("conversation"),
    messages: $("messages"), typing: $("typing"), notice: $("notice"), composer: $("composer"), text: $("text"),
  };

  function randomHex(bytes) {
    const values = new Uint8Array(bytes);
    crypto.getRandomValues(values);
    return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // localStorage may be unavailable (a blocked third-party frame): the chat then lasts as long as the page.
  function load(key) {
    try { return JSON.parse(localStorage.getItem(key)); } catch { return null; }
  }
  function store(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* kept in memory only */ }
  }

  function sessionId() {
    let id = load(SESSION_KEY);
    if (typeof id !== "string" || !/^[0-9a-f]{32}$/.test(id)) {
      id = randomHex(16); // 128 bits
      store(SESSION_KEY, id);
    }
    return id;
  }

  const chat = {
    session: sessionId(),
    prechat: load(PRECHAT_KEY), // what the server accepted before
    candidate: null, // what the form sent, until the server accepts it
    pending: Array.isArray(load(PENDING_KEY)) ? load(PENDING_KEY) : [], // [{client_id, text}] not yet stored
    shown: new Set(), // message ids on screen
    socket: null,
    ready: false, // pre-chat done on this connection: messages may be sent
    helloSent: false,
    attempt: 0,
    reconnectTimer: null,
    typingTimer: null,
    lastTyping: 0,
  };

  // --- connection ------------------------------------------------------------------------------------------

  function socketUrl() {
    const url = new URL("chat/ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "?session=" + chat.session;
    url.hash = "";
    return url.href;
  }

  function setState(text, offline) {
    ui.state.textContent = text;
    ui.state.classList.toggle("offline", Boolean(offline));
  }

  function connect() {
    clearTimeout(chat.reconnectTimer);
    chat.reconnectTimer = null;
    setState(chat.attempt ? "Reconnecting…" : "Connecting…", chat.attempt > 0);
    const socket = new WebSocket(socketUrl());
    chat.socket = socket;
    chat.ready = false;
    chat.helloSent = false;
    socket.onopen = () => {
      chat.attempt = 0;
      setState("Connected");
    };
    socket.onmessage = (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch { return; }
      if (data && typeof data === "object") handle(data);
    };
    socket.onclose = () => {
      if (chat.socket !== socket) return;
      chat.socket = null;
      chat.ready = false;
      chat.attempt += 1;
      setState("Reconnecting…", true);
      const delay = Math.min(30000, 500 * 2 ** Math.min(chat.attempt, 6)) * (0.5 + Math.random() / 2);
      chat.reconnectTimer = setTimeout(connect, delay);
    };
  }

  function send(frame) {
    if (chat.socket && chat.socket.readyState === WebSocket.OPEN) {
      chat.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function handle(data) {
    if (data.type === "history") onHistory(data);
    else if (data.type === "message") addMessage(data);
    else if (data.type === "typing") showTyping(data.author);
    else if (data.type === "error") onError(data);
  }

  // --- pre-chat ----------------------------------------------------------------------------------------------

  function showPrechat(message) {
    ui.conversation.hidden = true;
    ui.prechat.hidden = false;
    ui.prechatSubmit.disabled = false;
    ui.prechatError.textContent = message || "";
    if (!ui.name.value && chat.prechat) {
      ui.name.value = chat.prechat.name || "";
      ui.email.value = chat.prechat.email || "";
      ui.phone.value = chat.prechat.phone || "";
    }
    ui.name.focus();
  }

  function sendHello(details) {
    chat.candidate = details;
    chat.helloSent = true;
    send({ type: "hello", ...details });
  }

  ui.prechat.addEventListener("submit", (event) => {
    event.preventDefault();
    const details = { name: ui.name.value.trim() };
    if (ui.email.value.trim()) details.email = ui.email.value.trim();
    if (ui.phone.value.trim()) details.phone = ui.phone.value.trim();
    if (!details.name) return showPrechat("Please tell us your name.");
    if (!details.email && !details.phone) return showPrechat("Please give an email address or a phone number.");
    ui.prechatSubmit.disabled = true;
    ui.prechatError.textContent = "";
    sendHello(details);
    if (!chat.socket || chat.socket.readyState !== WebSocket.OPEN) showPrechat("Not connected yet; please try again in a moment.");
  });

  // --- conversation --------------------------------------------------------------------------------------------

  function onHistory(data) {
    if (data.prechat_required) {
      const known = chat.candidate || chat.prechat;
      if (known && !chat.helloSent) return sendHello(known);
      return showPrechat();
    }
    if (chat.candidate) {
      chat.prechat = chat.candidate;
      chat.candidate = null;
      store(PRECHAT_KEY, chat.prechat);
    }
    ui.prechat.hidden = true;
    ui.conversation.hidden = false;
    ui.messages.replaceChildren();
    chat.shown.clear();
    for (const message of Array.isArray(data.messages) ? data.messages : []) addMessage(message);
    chat.ready = true;
    for (const item of chat.pending) {
      showPending(item);
      send({ type: "message", client_id: item.client_id, text: item.text });
    }
    ui.text.focus();
  }

  function formatTime(at) {
    const when = new Date(at);
    return Number.isNaN(when.getTime()) ? "" : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function messageElement(from, author, text, at) {
    const item = document.createElement("li");
    item.className = "message " + (from === "agent" ? "agent" : "visitor");
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = [from === "agent" ? String(author || "Agent") : "You", formatTime(at)].filter(Boolean).join(" · ");
    const body = document.createElement("p");
    body.className = "text";
    body.textContent = String(text ?? "");
    item.append(meta, body);
    return item;
  }

  function pendingElement(clientId) {
    return ui.messages.querySelector(`li[data-client-id="${CSS.escape(clientId)}"]`);
  }

  function addMessage(message) {
    if (typeof message.id !== "string" || chat.shown.has(message.id)) return;
    chat.shown.add(message.id);
    if (typeof message.client_id === "string") settle(message.client_id);
    const item = messageElement(message.from, message.author, message.text, message.at);
    item.dataset.id = message.id;
    ui.messages.insertBefore(item, ui.messages.querySelector("li.pending")); // unsent ones stay last
    if (message.from === "agent") hideTyping();
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function showPending(item) {
    if (pendingElement(item.client_id)) return;
    const element = messageElement("visitor", "", item.text, new Date().toISOString());
    element.classList.add("pending");
    element.dataset.clientId = item.client_id;
    ui.messages.append(element);
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function settle(clientId) {
    chat.pending = chat.pending.filter((item) => item.client_id !== clientId);
    store(PENDING_KEY, chat.pending);
    const element = pendingElement(clientId);
    if (element) element.remove();
  }

  function resend(clientId) {
    const item = chat.pending.find((pending) => pending.client_id === clientId);
    if (item && chat.ready) send({ type: "message", client_id: item.client_id, text: item.text });
  }

  function fail(clientId, reason) {
    const element = pendingElement(clientId);
    chat.pending = chat.pending.filter((item) => item.client_id !== clientId);
    store(PENDING_KEY, chat.pending);
    if (element) {
      element.classList.remove("pending");
      element.classList.add("failed");
      element.querySelector(".meta").textContent = "Not sent: " + reason;
    }
  }

  function onError(data) {
    const message = String(data.message || "Something went wrong.");
    const clientId = typeof data.client_id === "string" ? data.client_id : null;
    if (data.reason === "invalid_prechat") {
      chat.candidate = null;
      ui.prechatSubmit.disabled = false;
      return showPrechat(message);
    }
    if (data.reason === "prechat_required") {
      chat.ready = false;
      return showPrechat(message);
    }
    if (clientId && (data.reason === "rate_limited" || data.reason === "unavailable")) {
      setTimeout(() => resend(clientId), data.reason === "rate_limited" ? 1000 : 3000);
      return;
    }
    if (clientId) return fail(clientId, message);
    ui.notice.textContent = message;
    setTimeout(() => { if (ui.notice.textContent === message) ui.notice.textContent = ""; }, 8000);
  }

  function showTyping(author) {
    ui.typing.textContent = `${String(author || "Agent")} is typing…`;
    ui.typing.hidden = false;
    clearTimeout(chat.typingTimer);
    chat.typingTimer = setTimeout(hideTyping, TYPING_SHOWN_MS);
  }

  function hideTyping() {
    clearTimeout(chat.typingTimer);
    ui.typing.hidden = true;
  }

  function submitMessage() {
    const text = ui.text.value;
    if (!text.trim()) return;
    const item = { client_id: randomHex(16), text };
    chat.pending.push(item);
    store(PENDING_KEY, chat.pending);
    ui.text.value = "";
    showPending(item);
    if (chat.ready) send({ type: "message", client_id: item.client_id, text: item.text }); // else: sent on reconnect
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submitMessage();
  });

  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitMessage();
    }
  });

  ui.text.addEventListener("input", () => {
    const now = Date.now();
    if (chat.ready && now - chat.lastTyping > TYPING_EVERY_MS) {
      chat.lastTyping = now;
      send({ type: "typing" });
    }
  });

  window.addEventListener("online", () => {
    if (chat.reconnectTimer) connect(); // back online: try now rather than after the backoff
  });

  connect();
})();
