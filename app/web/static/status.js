"use strict";
// Live status page: lists the account's PALs, then follows each one over the
// palEvents subscription (graphql-transport-ws). No build step, no libraries.

const MAX_SUBS = Number(document.querySelector('meta[name="max-subscriptions"]').content) || 20;
// Statuses and event kinds are GraphQL enums: they arrive as names (IN_CALL, JOIN_SCHEDULED).
const LIVE = ["DISPATCHING", "JOINING", "WAITING_ROOM", "IN_CALL"];
const JOIN = "id status reason reasonDetail meetingUrl startAt joinAt";
const PALS = `query($after: String) { pals(first: 200, after: $after) {
  nodes { palId palName conferencingEmail } pageInfo { endCursor hasNextPage } } }`;
const SUBSCRIPTION = `subscription($palId: ID!, $after: Int) { palEvents(palId: $palId, after: $after) {
  __typename
  ... on PalSnapshot { lastEventId upcoming { ${JOIN} } live { ${JOIN} } }
  ... on PalEvent { id kind payload createdAt joinId } } }`;
const pals = new Map(); // palId -> {pal, joins: Map, lastId, log: []}
let sockets = [];

function setConnection(state, text) {
  const el = document.getElementById("connection");
  el.dataset.state = state;
  el.textContent = text;
}

async function query(key, text, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST", headers: {"content-type": "application/json", "x-api-key": key},
    body: JSON.stringify({query: text, variables}),
  });
  const body = await response.json();
  if (body.errors) throw new Error(body.errors[0].message);
  return body.data;
}

// --- graphql-transport-ws: init with the key, subscribe per PAL, reconnect with the last id seen
function liveConnection(key, palIds) {
  let ws = null, retries = 0, stopped = false;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
  const send = (message) => ws.send(JSON.stringify(message));
  const subscribe = (palId) => send({id: palId, type: "subscribe",
    payload: {query: SUBSCRIPTION, variables: {palId, after: pals.get(palId).lastId}}});
  function open() {
    ws = new WebSocket(url, "graphql-transport-ws");
    ws.onopen = () => send({type: "connection_init", payload: {apiKey: key}});
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      switch (message.type) {
        case "connection_ack": retries = 0; setConnection("live", "Live"); palIds.forEach(subscribe); break;
        case "next":
          if (message.payload.errors) showError(message.id, message.payload.errors[0].message);
          else onItem(message.id, message.payload.data.palEvents);
          break;
        case "error": showError(message.id, message.payload[0].message); break;
        case "ping": send({type: "pong"}); break;
        case "complete": break;
      }
    };
    ws.onclose = (event) => {
      if (stopped) return;
      if (event.code === 4403) { setConnection("rejected", "Rejected: unknown API key."); return; }
      const delay = Math.min(500 * 2 ** retries++, 15000);
      setConnection("reconnecting", `Disconnected; reconnecting in ${Math.round(delay / 1000)} s…`);
      setTimeout(open, delay);
    };
  }
  open();
  return {close() { stopped = true; ws.close(1000); }};
}

// --- state and rendering
function onItem(palId, item) {
  const entry = pals.get(palId);
  if (item.__typename === "PalSnapshot") {
    entry.joins = new Map([...item.upcoming, ...item.live].map((j) => [j.id, j]));
    if (entry.lastId === null) entry.lastId = item.lastEventId;
  } else {
    entry.lastId = Math.max(entry.lastId ?? 0, Number(item.id));
    entry.log = [`${item.createdAt} ${item.kind}`, ...entry.log].slice(0, 5);
    if (item.joinId !== null) applyJoinEvent(entry.joins, item);
  }
  render(palId);
}

function applyJoinEvent(joins, event) {
  const p = event.payload;
  const join = joins.get(event.joinId) || {id: event.joinId, reason: null};
  const status = {JOIN_SCHEDULED: "SCHEDULED", JOIN_RESCHEDULED: "SCHEDULED", JOIN_CANCELLED: "CANCELLED"}[event.kind];
  // The payload keeps the stored strings (in_call); the enums are their upper-case names.
  join.status = status || (p.status ? p.status.toUpperCase() : event.kind);
  join.reasonDetail = p.reason ?? null;
  for (const [from, to] of [["meeting_url", "meetingUrl"], ["start_at", "startAt"], ["join_at", "joinAt"]]) {
    if (p[from]) join[to] = p[from];
  }
  joins.set(join.id, join);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attrs);
  node.append(...children);
  return node;
}

function joinList(joins, empty) {
  const list = el("ul", {});
  if (!joins.length) list.append(el("li", {className: "empty"}, empty));
  for (const j of joins) {
    const item = el("li", {}, el("span", {className: "status"}, j.status.toLowerCase().replaceAll("_", " ")),
      ` ${j.startAt || ""} ${j.meetingUrl || ""}`, j.reasonDetail ? ` (${j.reasonDetail})` : "");
    item.dataset.joinId = j.id;
    item.dataset.status = j.status;
    list.append(item);
  }
  return list;
}

function render(palId) {
  const {pal, joins, log} = pals.get(palId);
  const all = [...joins.values()].sort((a, b) => (a.joinAt || "").localeCompare(b.joinAt || ""));
  const upcoming = joinList(all.filter((j) => j.status === "SCHEDULED"), "none");
  const live = joinList(all.filter((j) => LIVE.includes(j.status)), "none");
  upcoming.className = "upcoming";
  live.className = "live";
  const section = el("section", {className: "pal", id: `pal-${palId}`},
    el("h2", {}, pal.palName), el("div", {className: "email"}, pal.conferencingEmail || "(no conferencing email)"),
    el("h3", {}, "Live"), live, el("h3", {}, "Upcoming"), upcoming,
    el("h3", {}, "Recent events"), el("ul", {className: "log"}, ...log.map((line) => el("li", {}, line))));
  section.dataset.palId = palId;
  document.getElementById(`pal-${palId}`).replaceWith(section);
}

function showError(palId, text) {
  const section = document.getElementById(`pal-${palId}`);
  if (section) section.append(el("p", {className: "error"}, text));
  else setConnection("error", text);
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  sockets.forEach((s) => s.close());
  sockets = [];
  pals.clear();
  const main = document.getElementById("pals");
  main.replaceChildren();
  try {
    const all = [];
    for (let after = null, more = true; more;) {  // every page of the account's PALs
      const page = (await query(key, PALS, {after})).pals;
      all.push(...page.nodes);
      ({endCursor: after, hasNextPage: more} = page.pageInfo);
    }
    for (const pal of all) {
      pals.set(pal.palId, {pal, joins: new Map(), lastId: null, log: []});
      main.append(el("section", {className: "pal", id: `pal-${pal.palId}`}));
      render(pal.palId);
    }
    if (!all.length) { setConnection("live", "This account has no PALs."); return; }
    const ids = [...pals.keys()];
    for (let i = 0; i < ids.length; i += MAX_SUBS) sockets.push(liveConnection(key, ids.slice(i, i + MAX_SUBS)));
  } catch (error) {
    setConnection("error", error.message);
  }
});
