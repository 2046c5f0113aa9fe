// nexios_compat rooms client: an ES module with no dependencies and no build step.
//
//   import {RoomClient} from "/static/nexios_compat/rooms.js";
//   const client = new RoomClient("/ws/chat/lobby/", {historyUrl: "/room/lobby/history/"});
//   client.addEventListener("message", (e) => show(e.detail.payload));
//   client.addEventListener("reset", (e) => replaceAll(e.detail.messages));
//   await client.start();               // newest page over HTTP, then the socket
//
// The server's contract (README, "Resume"): with ?envelope=1 saved broadcasts
// come as {"room", "seq", "epoch", "payload"}; reconnecting with ?since=N&epoch=E
// first gets {"type": "resume", "recovered": true|false, "epoch", "last_seq"}.
// recovered: true means everything missed follows, in order, before live
// messages; false means nothing was replayed and the history must be reloaded.
//
// Events (CustomEvent, details in brackets):
//   "status"   {state: "connecting" | "open" | "reconnecting" | "forbidden" | "closed", delay?, code?}
//   "message"  {payload, seq, epoch}   a broadcast, saved (seq) or not (seq null), never twice
//   "reset"    {messages, epoch, lastSeq}   the history to show instead of what is shown (a reload)
//   "resume"   the server's resume answer, as sent
//   "presence" {room, state, count}   who is here changed: state is {key: {metas}} (null above
//              the server's list limit, when only count is known); count is the number of keys
//   "frame"    {data}   any other frame (replies a handler sends to this socket)
//   "ack"      {id, room, seq, epoch}   a message this client sent is stored (docs: "Exactly once")
//
// Exactly once: send() gives each object payload an "id" and keeps it until the
// server's {"type": "ack", "id", ...}; after a reconnect the unacknowledged ones
// are sent again, in order, and the server stores each id at most once. Resending
// starts once this client has seen an ack (or with options.acks), so an endpoint
// that does not ack is never sent a message twice. A {"type": "error", "error":
// "history_unavailable", "ids": [...]} frame (not stored: the database is down)
// sends them again too, after a growing, jittered pause; the server fails this
// socket's later sends until then, so the order typed holds (docs: "Exactly once").
//
// Fallback (options.eventsUrl, docs: "When WebSockets are blocked"): after
// options.fallbackAfter socket opens in a row that never reached "open", the
// client reads the room as Server-Sent Events from eventsUrl and sends by POST
// to it (same ids, so resends stay idempotent; the ack is the POST's answer).
// Every options.retrySocketAfter ms it leaves the stream to try the socket again.

const SOCKET_OPEN = 1;

// A server that shuts down (a rolling deploy) closes with 1001 "Server shutting
// down; retry-after=N" when SHUTDOWN_RETRY_AFTER is set: reconnect at a random
// moment in the next N seconds, so its clients do not land on the other
// processes all at once (docs/rolling.md).
const RETRY_AFTER = /(?:^|[;\s])retry-after=(\d+(?:\.\d+)?)/i;

/**
 * Milliseconds to wait before reconnection `attempt` (0 first): full jitter, a
 * uniform pick in [0, window), over the server's retry-after window if the
 * close reason has one, else over the capped exponential backoff.
 */
export function reconnectDelay({minDelay, maxDelay}, attempt, reason = "") {
  const hint = RETRY_AFTER.exec(reason || "");
  const window = hint ? Number(hint[1]) * 1000 : Math.min(maxDelay, minDelay * 2 ** attempt);
  return Math.random() * window;
}

export class RoomClient extends EventTarget {
  /**
   * @param {string} path  the room's WebSocket path, e.g. "/ws/chat/lobby/"
   * @param {object} [options]
   * @param {string} [options.historyUrl]  the room's HistoryView URL ("load older", reloads)
   * @param {object} [options.params]  extra query parameters for the socket
   * @param {number} [options.since]  position to resume from (default: the newest page's)
   * @param {string} [options.epoch]  the epoch that position belongs to
   * @param {number} [options.minDelay=500]  the first reconnection waits a random delay below this, ms
   * @param {number} [options.maxDelay=10000]  cap on the (doubling) window a reconnection delay is drawn from, ms
   * @param {number} [options.pageSize=50]  messages per history page
   * @param {boolean} [options.acks]  the endpoint acks ids: resend unacknowledged sends from the start
   * @param {string} [options.clientKey]  this client's stable id for its message ids (default: per tab)
   * @param {() => (string|Promise<string>)} [options.ticket]  for clients without the session
   *        cookie: returns a ticket (POST to TicketView) before every (re)connection; sent as ?ticket=
   * @param {string} [options.eventsUrl]  the room's RoomEventsView URL: the fallback when sockets fail
   * @param {number} [options.fallbackAfter=2]  socket opens that never reached "open" before falling back
   * @param {number} [options.retrySocketAfter=300000]  ms on the fallback before trying the socket again
   * @param {(answer: object) => (void|Promise<void>)} [options.onRecoveryFailed]
   *        called on recovered: false; the default reloads the history ("reset" event)
   */
  constructor(path, options = {}) {
    super();
    this.path = path;
    this.options = {
      minDelay: 500, maxDelay: 10000, pageSize: 50, params: {}, fallbackAfter: 2, retrySocketAfter: 300000, ...options,
    };
    this.lastSeq = options.since ?? null;
    this.epoch = options.epoch ?? null;
    this.oldest = null;  // the oldest seq shown: "load older" asks for what comes before it
    this.state = "closed";
    this.socket = null;
    this._attempt = 0;
    this._timer = null;
    this._stopped = false;
    this._held = null;  // messages that arrive while history reloads
    this.presence = null;  // {key: {metas: [...]}} once a presence_state came; null above the list limit
    this.presenceCount = null;  // keys (people) in the room, or the server's count above the limit
    this._unacked = [];  // [{id, text}] sent or to be sent, oldest first, until acked
    this._resendTimer = null;  // a resend after a history_unavailable error
    this._resendAttempt = 0;
    this._acks = Boolean(options.acks);
    this.transport = "websocket";  // or "sse" while on the fallback
    this._failedOpens = 0;  // socket opens in a row that never reached "open"
    this._retrySocket = null;
    this.clientKey = options.clientKey ?? tabKey();
    this._online = () => { if (!this.socket && !this._stopped) this.connect(); };
    addEventListener("online", this._online);
  }

  /** Load the newest history page (if there is a historyUrl and no position yet), then connect. */
  async start() {
    if (this.options.historyUrl && this.lastSeq === null) await this.reload();
    this.connect();
  }

  /** Open the socket, resuming from the last position when there is one. */
  connect() {
    clearTimeout(this._timer);
    this._stopped = false;
    const query = new URLSearchParams({...this.options.params, envelope: "1", client: this.clientKey});
    if (this.lastSeq !== null) {
      query.set("since", String(this.lastSeq));
      query.set("epoch", this.epoch ?? "");
    }
    if (this.options.ticket) {
      // A ticket opens one socket: a fresh one for every (re)connection. No ticket (logged out): stop.
      Promise.resolve().then(() => this.options.ticket()).then((ticket) => {
        if (this._stopped || this.socket) return;
        query.set("ticket", ticket);
        this._open(query);
      }, (error) => this._setState("forbidden", {error}));
      return;
    }
    this._open(query);
  }

  _open(query) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = this.transport === "sse"
      ? new EventStreamSocket(this.options.eventsUrl, query)
      : new WebSocket(`${scheme}://${location.host}${this.path}?${query}`);
    this.socket = socket;
    this._setState("connecting", {transport: this.transport});
    socket.onopen = () => {
      this._attempt = 0;
      clearTimeout(this._resendTimer);  // everything unacknowledged goes now
      this._resendTimer = null;
      if (this.transport === "websocket") this._failedOpens = 0;
      socket.opened = true;
      this._setState("open", {transport: this.transport});
      this._resend();
    };
    socket.onmessage = (event) => this._receive(event.data);
    socket.onclose = (event) => this._closed(socket, event);
  }

  /** Close for good (no reconnection). */
  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    removeEventListener("online", this._online);
    clearTimeout(this._retrySocket);
    clearTimeout(this._resendTimer);
    if (this.socket) this.socket.close(1000);
    this._setState("closed");
  }

  /**
   * Send a payload as JSON; an object gets an "id" and is resent until acked (see above).
   * Return whether it was sent, or kept to be sent once the socket is back (acks known).
   */
  send(payload) {
    if (!payload || typeof payload !== "object" || Array.isArray(payload)) return this.sendText(JSON.stringify(payload));
    const message = {...payload, id: payload.id ?? newId()};
    const entry = {id: message.id, text: JSON.stringify(message)};
    const sent = this.sendText(entry.text);
    if (sent || this._acks) this._unacked.push(entry);
    return sent || this._acks;
  }

  /** How many sent messages wait for their ack. */
  get unacked() { return this._unacked.length; }

  // A new socket: what was not acknowledged goes again first, in the order it was typed.
  _resend() {
    if (!this._acks) return;
    for (const {text} of this._unacked) this.sendText(text);
  }

  // A send was not stored (the database is down): what is unacknowledged goes again, oldest
  // first, after a pause that grows while sends keep failing. Meanwhile the server fails this
  // socket's later sends too, so none is stored ahead of one that failed.
  _unavailable(frame) {
    if (Array.isArray(frame.ids) && frame.ids.length) this._acks = true;  // the endpoint takes ids
    if (!this._acks || this._resendTimer) return;
    const delay = reconnectDelay(this.options, this._resendAttempt++);
    this._resendTimer = setTimeout(() => {
      this._resendTimer = null;
      this._resend();
    }, delay);
  }

  _acked(frame) {
    this._acks = true;
    this._resendAttempt = 0;
    this._unacked = this._unacked.filter((entry) => entry.id !== frame.id);
    this._emit("ack", {id: frame.id, room: frame.room, seq: frame.seq, epoch: frame.epoch});
  }

  /** Send text as is; return whether the socket was open. */
  sendText(text) {
    if (!this.socket || this.socket.readyState !== SOCKET_OPEN) return false;
    this.socket.send(text);
    return true;
  }

  /** Fetch the page before the oldest message shown; return its messages, oldest first ([] at the start). */
  async loadOlder() {
    if (this.oldest === null) return [];
    const page = await this._page(this.oldest);
    if (page.messages.length) this.oldest = page.messages[0].seq;
    if (page.before === null) this.oldest = null;
    return page.messages;
  }

  /** Replace the shown history with the newest page ("reset"); live messages wait meanwhile. */
  async reload() {
    if (!this.options.historyUrl) {
      this._emit("reset", {messages: [], epoch: this.epoch, lastSeq: this.lastSeq});
      return;
    }
    this._held = this._held ?? [];
    try {
      const page = await this._page(null);
      const newest = page.messages.length ? page.messages[page.messages.length - 1].seq : 0;
      this.lastSeq = Math.max(this.lastSeq ?? 0, page.last_seq, newest);
      this.epoch = page.epoch || this.epoch;
      this.oldest = page.before === null ? null : page.messages[0].seq;
      this._emit("reset", {messages: page.messages, epoch: this.epoch, lastSeq: this.lastSeq});
    } finally {
      const held = this._held;
      this._held = null;
      for (const frame of held) this._deliver(frame);
    }
  }

  async _page(before) {
    const url = new URL(this.options.historyUrl, location.href);
    url.searchParams.set("limit", String(this.options.pageSize));
    if (before !== null) url.searchParams.set("before", String(before));
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
    return response.json();
  }

  _receive(text) {
    let frame;
    try { frame = JSON.parse(text); } catch { return this._emit("frame", {data: text}); }
    if (frame && frame.type === "resume") return this._resumed(frame);
    if (frame && frame.type === "ack" && typeof frame.id === "string") return this._acked(frame);
    if (frame && frame.type === "error" && frame.error === "history_unavailable") this._unavailable(frame);
    if (this._presence(frame)) return;
    if (frame && typeof frame === "object" && "payload" in frame && "seq" in frame) {
      if (this._held) this._held.push(frame); else this._deliver(frame);
      return;
    }
    this._emit("frame", {data: frame});
  }

  _deliver(frame) {
    if (frame.seq !== null) {
      if (frame.epoch === this.epoch && this.lastSeq !== null && frame.seq <= this.lastSeq) return;  // seen
      // A new epoch mid-stream (a flush while connected): numbering continues, keep showing.
      this.epoch = frame.epoch ?? this.epoch;
      this.lastSeq = frame.seq;
      if (this.oldest === null && this.options.historyUrl) this.oldest = frame.seq;
    }
    this._emit("message", {payload: frame.payload, seq: frame.seq, epoch: frame.epoch ?? null});
  }

  async _resumed(answer) {
    this._emit("resume", answer);
    this.epoch = answer.epoch;
    if (answer.recovered) return;
    // Nothing was replayed; live messages continue after last_seq.
    this.lastSeq = answer.last_seq;
    this._held = this._held ?? [];
    if (this.options.onRecoveryFailed) {
      try { await this.options.onRecoveryFailed(answer); } finally {
        const held = this._held ?? [];
        this._held = null;
        for (const frame of held) this._deliver(frame);
      }
    } else {
      await this.reload();
    }
  }

  // Presence frames are never enveloped (README, "Live presence"): the latest
  // presence_state replaces what is known, diffs are applied to it, and above
  // PRESENCE_MAX_LIST only a count is known (this.presence is null meanwhile).
  _presence(frame) {
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") return false;
    if (frame.type === "presence_state") this.presence = syncState(frame.state);
    else if (frame.type === "presence_diff") {
      if (this.presence === null) return true;  // a diff without its state: the next state repairs it
      this.presence = syncDiff(this.presence, frame);
    } else if (frame.type === "presence_count") this.presence = null;
    else return false;
    this.presenceCount = this.presence === null ? frame.count : Object.keys(this.presence).length;
    this._emit("presence", {room: frame.room, state: this.presence, count: this.presenceCount});
    return true;
  }

  _closed(socket, event) {
    if (this.socket !== socket) return;
    this.socket = null;
    if (this._stopped) return this._setState("closed", {code: event.code});
    if (event.code === 4403) return this._setState("forbidden", {code: event.code});
    this._chooseTransport(socket);
    const delay = reconnectDelay(this.options, this._attempt++, event.reason);
    this._setState("reconnecting", {delay, code: event.code});
    this._timer = setTimeout(() => this.connect(), delay);
  }

  // Sockets that keep failing to open (a proxy that refuses the upgrade): the event stream instead,
  // until retrySocketAfter has passed; then the next connection tries the socket again.
  _chooseTransport(socket) {
    if (this.transport === "websocket" && !socket.opened) this._failedOpens++;
    if (this.transport !== "websocket" || !this.options.eventsUrl) return;
    if (this._failedOpens < this.options.fallbackAfter) return;
    this.transport = "sse";
    this._attempt = 0;
    clearTimeout(this._retrySocket);
    this._retrySocket = setTimeout(() => {
      this.transport = "websocket";
      this._failedOpens = 0;
      if (this.socket instanceof EventStreamSocket) this.socket.close(1000, true);
    }, this.options.retrySocketAfter);
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("status", {state, ...extra});
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, {detail})); }
}

// ---- Ids -----------------------------------------------------------------------
// getRandomValues, not randomUUID: the latter exists only on https and localhost.

function newId() {
  return [...crypto.getRandomValues(new Uint8Array(12))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// One key per tab, kept across reloads of it: anonymous message ids are deduplicated per key.
function tabKey() {
  try {
    const key = sessionStorage.getItem("nexios_compat.client") ?? newId();
    sessionStorage.setItem("nexios_compat.client", key);
    return key;
  } catch { return newId(); }  // storage refused (privacy settings): one key per page
}

// ---- Presence -----------------------------------------------------------------
// Phoenix's Presence, reduced to what the server sends: a state is
// {key: {metas: [meta, ...]}} with one meta per connection, and a meta is told
// apart from another by its channel_id. Both functions return a new state and
// leave their arguments alone; applying the same join or leave twice changes nothing.

/** Return a presence_state's state as a state of its own (what was known before is replaced). */
export function syncState(state) {
  const next = {};
  for (const [key, {metas}] of Object.entries(state ?? {})) {
    if (metas.length) next[key] = {metas: uniqueMetas(metas)};
  }
  return next;
}

/** Return `state` with a presence_diff applied: its joins added, then its leaves removed. */
export function syncDiff(state, {joins = {}, leaves = {}}) {
  const next = {...state};
  for (const [key, {metas}] of Object.entries(joins)) {
    next[key] = {metas: uniqueMetas([...(next[key]?.metas ?? []), ...metas])};
  }
  for (const [key, {metas}] of Object.entries(leaves)) {
    if (!next[key]) continue;
    const gone = new Set(metas.map((meta) => meta.channel_id));
    const kept = next[key].metas.filter((meta) => !gone.has(meta.channel_id));
    if (kept.length) next[key] = {metas: kept}; else delete next[key];
  }
  return next;
}

// One meta per channel_id, the latest kept in the first one's place.
function uniqueMetas(metas) {
  const byId = new Map();
  for (const meta of metas) byId.set(meta.channel_id, meta);
  return [...byId.values()];
}

// The WebSocket surface rooms.js uses (readyState, send, close, onopen/onmessage/onclose),
// over a Server-Sent Events stream for receiving and POSTs (with Django's CSRF cookie) for sending.
class EventStreamSocket {
  constructor(url, query) {
    this.url = url;
    this.query = query;
    this.readyState = 0;
    this.onopen = this.onmessage = this.onclose = null;
    this._outgoing = [];  // texts to POST, the first one on its way
    this._source = new EventSource(`${url}?${query}`, {withCredentials: true});
    this._source.onopen = () => { this.readyState = SOCKET_OPEN; this.onopen?.(); };
    this._source.onmessage = (event) => this.onmessage?.({data: event.data});
    // EventSource would reconnect by itself; rooms.js reconnects instead, resuming from what it saw.
    this._source.onerror = () => this.close(1006, true);
  }

  // One POST at a time, in the order sent: concurrent requests may arrive in any order.
  send(text) {
    if (this.readyState !== SOCKET_OPEN) return false;
    this._outgoing.push(text);
    if (this._outgoing.length === 1) this._post();
    return true;
  }

  _post() {
    const query = new URLSearchParams(this.query);
    for (const name of ["since", "epoch", "envelope"]) query.delete(name);
    const failed = () => {
      // Not stored (or not known to be): the rest would overtake it. Drop them; rooms.js sends
      // everything unacknowledged again, oldest first, as after a history_unavailable frame.
      this._outgoing = [];
      if (this.readyState === SOCKET_OPEN) this.onmessage?.({data: UNAVAILABLE});
    };
    fetch(`${this.url}?${query}`, {
      method: "POST",
      body: this._outgoing[0],
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken")},
    }).then((response) => response.json().then((answer) => [response.status, answer])).then(([status, answer]) => {
      if (status === 503 || status === 504) return failed();
      // The ack comes as the answer; another refusal leaves the message unacked (resent on reconnect).
      if (answer && answer.type === "ack") this.onmessage?.({data: JSON.stringify(answer)});
      this._outgoing.shift();
      if (this._outgoing.length) this._post();
    }, failed);
  }

  close(code = 1000, notify = false) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._outgoing = [];
    this._source.close();
    if (notify) this.onclose?.({code});
  }
}

const UNAVAILABLE = JSON.stringify({type: "error", error: "history_unavailable"});

function cookie(name) {
  const found = document.cookie.split("; ").find((entry) => entry.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}
