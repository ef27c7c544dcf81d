"use strict";
// The dashboard: what every PAL of an account is doing, from the public GraphQL API with the
// user's key only. No build step, no libraries.
//
// Per PAL: its live bots (and a bot's live transcript), upcoming joins in the viewer's time zone
// with "in 5 min", its meetings (title, organizer, when, decision and why, platform), past joins
// with their history and failure reasons, and the recent event log. Everything is (re)read with
// the PalActivity query; the palEvents subscription moves a join's state at once and asks for a
// re-read. It reconnects and resumes from the last event id seen. PALs load a page at a time,
// and the search box filters the loaded ones by name or address.

const MAX_SUBS = Number(document.querySelector('meta[name="max-subscriptions"]').content) || 20;
const PAGE = 20;  // PALs per page: each shown PAL holds one subscription
const LIVE = ["DISPATCHING", "JOINING", "WAITING_ROOM", "IN_CALL"];
// The GraphQL operations live in operations.graphql (typed clients are generated from it);
// each request sends the whole document and names its operation.
let OPERATIONS = "";
const PALS = "PalsPage", ACTIVITY = "PalActivity", EVENTS = "PalEvents", TRANSCRIPT = "LiveTranscript";

const state = {key: "", pals: new Map(), order: [], after: null, more: false, sockets: [], transcripts: null};

// --- time, in the viewer's zone -------------------------------------------------------------
let zone = "", clock = null;
function useViewerZone() {  // read when the page is used, so it follows the viewer's machine
  zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  clock = new Intl.DateTimeFormat("en-GB", {weekday: "short", day: "numeric", month: "short",
                                            hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: zone});
}
useViewerZone();
function local(iso) { return iso ? clock.format(new Date(iso)) : ""; }
function relative(iso) {
  const minutes = Math.round((new Date(iso) - Date.now()) / 60000);
  const size = Math.abs(minutes);
  const amount = size < 60 ? `${size} min` : size < 48 * 60 ? `${Math.round(size / 60)} h` : `${Math.round(size / 1440)} d`;
  if (minutes === 0) return "now";
  return minutes > 0 ? `in ${amount}` : `${amount} ago`;
}
function when(iso) {
  const node = el("time", {className: "when", dateTime: iso || ""}, iso ? `${local(iso)} (${relative(iso)})` : "");
  return node;
}
setInterval(() => document.querySelectorAll("time.when").forEach((t) => {
  if (t.dateTime) t.textContent = `${local(t.dateTime)} (${relative(t.dateTime)})`;
}), 30000);

// --- helpers --------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}
const words = (name) => (name || "").toLowerCase().replaceAll("_", " ");
function setConnection(status, text) {
  const node = document.getElementById("connection");
  node.dataset.state = status;
  node.textContent = text;
}
async function query(operationName, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST", headers: {"content-type": "application/json", "x-api-key": state.key},
    body: JSON.stringify({query: OPERATIONS, operationName, variables}),
  });
  const body = await response.json();
  if (body.errors) throw new Error(body.errors[0].message);
  return body.data;
}

// --- graphql-transport-ws: one socket, many operations, resubscribed after a reconnect --------
class Socket {
  constructor() {
    this.ops = new Map();  // id -> {operationName, variables(), onData}
    this.retries = 0; this.stopped = false; this.ready = false;
    this.open();
  }
  open() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
    this.ws = new WebSocket(url, "graphql-transport-ws");
    this.ws.onopen = () => this.send({type: "connection_init", payload: {apiKey: state.key}});
    this.ws.onmessage = (event) => this.message(JSON.parse(event.data));
    this.ws.onclose = (event) => {
      this.ready = false;
      if (this.stopped) return;
      if (event.code === 4403) { setConnection("rejected", "Rejected: unknown API key."); return; }
      const delay = Math.min(500 * 2 ** this.retries++, 15000);
      setConnection("reconnecting", `Disconnected; reconnecting in ${Math.round(delay / 1000)} s…`);
      setTimeout(() => this.open(), delay);
    };
  }
  send(message) { if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message)); }
  message(m) {
    if (m.type === "connection_ack") {
      this.retries = 0; this.ready = true; setConnection("live", "Live");
      for (const id of this.ops.keys()) this.start(id);
    } else if (m.type === "next") {
      const op = this.ops.get(m.id);
      if (!op) return;
      if (m.payload.errors) showError(m.id, m.payload.errors[0].message);
      else op.onData(m.payload.data);
    } else if (m.type === "error") {
      showError(m.id, m.payload[0].message);
    } else if (m.type === "ping") {
      this.send({type: "pong"});
    }
  }
  start(id) {
    const op = this.ops.get(id);
    this.send({id, type: "subscribe",
               payload: {query: OPERATIONS, operationName: op.operationName, variables: op.variables()}});
  }
  subscribe(id, operationName, variables, onData) {
    this.ops.set(id, {operationName, variables, onData});
    if (this.ready) this.start(id);
  }
  unsubscribe(id) { if (this.ops.delete(id)) this.send({id, type: "complete"}); }
  get size() { return this.ops.size; }
  close() { this.stopped = true; this.ws.close(1000); }
}

function socketWithRoom() {
  let socket = state.sockets.find((s) => s.size < MAX_SUBS);
  if (!socket) state.sockets.push(socket = new Socket());
  return socket;
}

// --- one PAL ----------------------------------------------------------------------------------
function palEntry(pal) {
  return {pal, lastId: null, live: new Map(), activity: null, refresh: null, transcripts: new Map()};
}

function follow(entry) {
  const palId = entry.pal.palId;
  socketWithRoom().subscribe(palId, EVENTS, () => ({palId, after: entry.lastId}), (data) => {
    const item = data.palEvents;
    if (item.__typename === "PalSnapshot") {
      entry.live = new Map(item.live.map((j) => [j.id, j]));
      if (entry.lastId === null) entry.lastId = item.lastEventId;
    } else {
      entry.lastId = Math.max(entry.lastId ?? 0, Number(item.id));
      if (item.joinId !== null) moveJoin(entry, item);
      if (entry.activity) entry.activity.events.unshift(item);
    }
    render(palId);
    reread(entry);  // meetings, history and the log catch up with what the event changed
  });
}

function moveJoin(entry, event) {
  const p = event.payload;
  const status = {JOIN_SCHEDULED: "SCHEDULED", JOIN_RESCHEDULED: "SCHEDULED", JOIN_CANCELLED: "CANCELLED"}[event.kind]
    || (p.status ? p.status.toUpperCase() : null);
  if (!status) return;
  const known = entry.live.get(event.joinId) || findJoin(entry, event.joinId) || {id: event.joinId};
  const join = {...known, status, reasonDetail: p.reason ?? null};
  if (p.conversation_id) join.conversationId = p.conversation_id;
  if (LIVE.includes(status)) entry.live.set(join.id, join);
  else entry.live.delete(join.id);
}

function findJoin(entry, id) {
  const a = entry.activity;
  return a && [...a.upcoming, ...a.past].find((j) => j.id === id);
}

function reread(entry) {
  clearTimeout(entry.refresh);
  entry.refresh = setTimeout(async () => {
    try {
      const pal = (await query(ACTIVITY, {palId: entry.pal.palId})).pal;
      entry.activity = {meetings: pal.meetings.nodes, upcoming: pal.upcoming.nodes, past: pal.past.nodes,
                        events: pal.events.nodes};
      for (const j of pal.past.nodes) {  // the re-read is the truth for joins that are live now
        if (LIVE.includes(j.status)) entry.live.set(j.id, {...entry.live.get(j.id), ...j});
        else entry.live.delete(j.id);
      }
      render(entry.pal.palId);
    } catch (error) {
      showError(entry.pal.palId, error.message);
    }
  }, 200);
}

// A bot in the call: its live transcript, on the transcripts' own socket.
function followTranscripts(entry) {
  const wanted = new Set([...entry.live.values()].filter((j) => j.status === "IN_CALL" && j.conversationId)
    .map((j) => j.conversationId));
  for (const [cid, lines] of entry.transcripts) {
    if (!wanted.has(cid)) { if (state.transcripts) state.transcripts.unsubscribe(`t-${cid}`); entry.transcripts.delete(cid); }
  }
  for (const cid of wanted) {
    if (entry.transcripts.has(cid)) continue;
    entry.transcripts.set(cid, []);
    if (!state.transcripts) state.transcripts = new Socket();
    state.transcripts.subscribe(`t-${cid}`, TRANSCRIPT, () => ({conversationId: cid}), (data) => {
      const line = data.conversationTranscript;
      const lines = entry.transcripts.get(cid);
      if (!lines) return;
      lines.push(line);
      if (lines.length > 8) lines.shift();
      render(entry.pal.palId);
    });
  }
}

// --- rendering --------------------------------------------------------------------------------
function joinItem(j, {history = false, transcript = null} = {}) {
  const title = j.meeting ? j.meeting.summary || "(untitled)" : "API conversation";
  const item = el("li", {},
    el("span", {className: "status"}, words(j.status)), " ",
    el("span", {className: "title"}, title), " ", when(j.startAt),
    j.reasonDetail ? el("span", {className: "reason"}, ` — ${words(j.reasonDetail)}`) : null);
  item.dataset.joinId = j.id;
  item.dataset.status = j.status;
  if (history && j.history) {
    item.append(el("div", {className: "history"}, j.history.map((h) =>
      `${words(h.status)}${h.reasonDetail ? ` (${words(h.reasonDetail)})` : ""} ${local(h.at)}`).join(" → ")));
  }
  if (transcript && transcript.length) {
    item.append(el("ul", {className: "transcript"}, ...transcript.map((t) =>
      el("li", {className: t.self ? "self" : ""}, el("b", {}, `${t.speaker}: `), t.text))));
  }
  return item;
}

function list(className, items, empty) {
  const node = el("ul", {className});
  node.append(...(items.length ? items : [el("li", {className: "empty"}, empty)]));
  return node;
}

function meetingsTable(meetings) {
  if (!meetings.length) return el("p", {className: "empty"}, "No invitations yet.");
  const head = el("tr", {}, ...["Meeting", "Organizer", "When", "Decision", "Platform"].map((h) => el("th", {}, h)));
  const rows = meetings.map((m) => {
    const next = m.occurrences.map((o) => o.startAt).find((s) => new Date(s) > Date.now()) ||
      (m.occurrences.length ? m.occurrences[m.occurrences.length - 1].startAt : null);
    const decision = el("td", {className: "decision"}, words(m.cancelled ? "CANCELLED" : m.decision));
    if (m.reason) decision.append(el("div", {className: "reason"}, m.reason));
    const row = el("tr", {}, el("td", {className: "title"}, m.summary || "(untitled)"),
      el("td", {className: "organizer"}, m.organizer), el("td", {}, next ? when(next) : "—"), decision,
      el("td", {className: "platform"}, words(m.platform || "none")));
    row.dataset.eventId = m.eventId;
    row.dataset.decision = m.decision;
    return row;
  });
  return el("table", {className: "meetings"}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function render(palId) {
  const entry = state.pals.get(palId);
  const old = document.getElementById(`pal-${palId}`);
  if (!old) return;
  const a = entry.activity || {meetings: [], upcoming: [], past: [], events: []};
  followTranscripts(entry);
  const live = [...entry.live.values()].map((j) => joinItem(j, {transcript: entry.transcripts.get(j.conversationId)}));
  const upcoming = a.upcoming.filter((j) => !entry.live.has(j.id)).map((j) => joinItem(j));
  const past = a.past.filter((j) => !LIVE.includes(j.status) && j.status !== "SCHEDULED")
    .map((j) => joinItem(j, {history: true}));
  const log = a.events.slice(0, 10).map((e) => {
    const item = el("li", {}, `${local(e.createdAt)} ${words(e.kind)}`);
    item.dataset.kind = e.kind;
    return item;
  });
  const section = el("section", {className: "pal", id: `pal-${palId}`},
    el("h2", {}, entry.pal.palName), el("div", {className: "email"}, entry.pal.conferencingEmail || "(no conferencing email)"),
    el("h3", {}, "Live"), list("live", live, "No bot in a meeting."),
    el("h3", {}, "Upcoming joins"), list("upcoming", upcoming, "None planned."),
    el("h3", {}, "Meetings"), meetingsTable(a.meetings),
    el("h3", {}, "Past joins"), list("past", past, "None yet."),
    el("h3", {}, "Recent events"), list("log", log, "No events yet."));
  section.dataset.palId = palId;
  section.hidden = old.hidden;
  old.replaceWith(section);
}

function showError(id, text) {
  const section = document.getElementById(`pal-${id}`);
  if (section) section.append(el("p", {className: "error"}, text));
  else setConnection("error", text);
}

function applySearch() {
  const needle = document.getElementById("search").value.trim().toLowerCase();
  for (const [palId, entry] of state.pals) {
    const hay = `${entry.pal.palName} ${entry.pal.conferencingEmail || ""}`.toLowerCase();
    document.getElementById(`pal-${palId}`).hidden = Boolean(needle) && !hay.includes(needle);
  }
}

// --- loading ----------------------------------------------------------------------------------
async function loadPage() {
  const page = (await query(PALS, {first: PAGE, after: state.after})).pals;
  state.after = page.pageInfo.endCursor;
  state.more = page.pageInfo.hasNextPage;
  document.getElementById("more").hidden = !state.more;
  const main = document.getElementById("pals");
  for (const pal of page.nodes) {
    const entry = palEntry(pal);
    state.pals.set(pal.palId, entry);
    main.append(el("section", {className: "pal", id: `pal-${pal.palId}`}));
    render(pal.palId);
    follow(entry);
    reread(entry);
  }
  applySearch();
  return page.nodes.length;
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.key = document.getElementById("api-key").value.trim();
  state.sockets.forEach((s) => s.close());
  if (state.transcripts) state.transcripts.close();
  // The transcripts' socket opens when a bot is first in a call (a wrong key then never opens one).
  Object.assign(state, {pals: new Map(), after: null, more: false, sockets: [], transcripts: null});
  document.getElementById("pals").replaceChildren();
  useViewerZone();
  document.getElementById("zone").textContent = `Times in ${zone}.`;
  try {
    if (!OPERATIONS) OPERATIONS = await (await fetch("/status/operations.graphql")).text();
    if (!(await loadPage())) setConnection("live", "This account has no PALs.");
  } catch (error) {
    setConnection("error", error.message);
  }
});
document.getElementById("more").addEventListener("click", () => loadPage().catch((e) => setConnection("error", e.message)));
document.getElementById("search").addEventListener("input", applySearch);
