// smsgw status page: reads the gateway's status feed and draws it. Every value goes in with
// textContent (never innerHTML), so nothing the gateway reports can become markup.
"use strict";

const FEED = "/api/v1/status/events";  // server-sent events, one `status` event every 2 s
const POLL = "/api/v1/status/live";    // the same document, polled where EventSource is missing
const STALE_MS = 8000;                 // no event for this long: call the feed down
const RETRY_MS = 3000;

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat();

function num(n) {
  return n === null || n === undefined ? "–" : fmt.format(Math.round(n));
}

function rate(n) {
  if (!n) return "0";
  return n < 10 ? n.toFixed(1) : fmt.format(Math.round(n));
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function clock(at) {
  return new Date(at * 1000).toLocaleString();
}

// One element with text and an optional class.
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

// Fill a table's body with rows of cells (strings or nodes); each cell is labelled by its
// column so the phone layout (one block per row) can show the name beside the value.
function fill(tableId, rows) {
  const table = $(tableId);
  const labels = Array.from(table.tHead.rows[0].cells, (th) => th.textContent);
  const body = table.tBodies[0];
  const fresh = document.createElement("tbody");
  for (const row of rows) {
    const tr = document.createElement("tr");
    if (row.key) tr.dataset.key = row.key;
    row.cells.forEach((cell, i) => {
      const td = document.createElement("td");
      td.dataset.label = labels[i] || "";
      if (cell instanceof Node) td.appendChild(cell);
      else td.appendChild(el("span", cell));
      tr.appendChild(td);
    });
    fresh.appendChild(tr);
  }
  table.replaceChild(fresh, body);
  table.hidden = rows.length === 0;
  const empty = table.parentElement.querySelector(".empty");
  if (empty && empty.previousElementSibling === table) empty.hidden = rows.length !== 0;
}

// 0-4 bars from dBm (GSM: -113 is none, -51 is full), as phones draw them.
function bars(dbm) {
  const span = el("span");
  const level = dbm === null || dbm === undefined ? 0
    : dbm >= -73 ? 4 : dbm >= -83 ? 3 : dbm >= -93 ? 2 : dbm >= -103 ? 1 : 0;
  const icon = el("span", null, "bars");
  icon.setAttribute("aria-label", `${level} of 4 bars`);
  for (let i = 1; i <= 4; i++) icon.appendChild(el("i", null, i <= level ? "on" : ""));
  span.appendChild(icon);
  span.appendChild(el("span", dbm === null || dbm === undefined ? "–" : `${dbm} dBm`));
  return span;
}

function stateCell(text, good, bad) {
  const cls = good ? "state-ok" : bad ? "state-bad" : "state-warn";
  return el("span", text, cls);
}

function renderModems(modems) {
  fill("modems", modems.map((m) => {
    const state = String(m.state || "").toLowerCase();
    const limit = m.limits && m.limits.day;
    const today = (m.used && m.used.day) || 0;
    return {
      key: `${m.bank}/${m.name}`,
      cells: [
        `${m.bank}/${m.name}`,
        stateCell(state, state === "ready", state === "failed" || state === "closed"),
        bars(m.signal_dbm),
        m.operator || "–",
        limit ? `${num(today)} / ${num(limit)}` : `${num(today)} (no limit)`,
        num(m.queue),
        m.last_error ? el("span", m.last_error, "error") : "–",
      ],
    };
  }));
}

function renderBinds(sessions) {
  fill("binds", sessions.map((b) => ({
    cells: [b.account, b.type, b.peer, `${b.window_used} / ${b.window}`, rate(b.accepted_per_s)],
  })));
}

function renderUpstreams(upstreams, targets) {
  fill("upstreams", Object.keys(upstreams).sort().map((name) => {
    const u = upstreams[name];
    const links = el("span");
    u.links.forEach((l, i) => {
      if (i) links.appendChild(document.createTextNode(" "));
      links.appendChild(stateCell(`${l.link} ${l.state}`, l.state === "bound", l.state === "down"));
    });
    const inFlight = u.links.reduce((n, l) => n + l.in_flight, 0);
    return {
      key: name,
      cells: [name, links, num(inFlight), rate(u.sent_per_s),
        u.last_error ? el("span", u.last_error, "error") : "–"],
    };
  }));
  fill("targets", targets.map((t) => ({
    key: t.name,
    cells: [t.name, t.kind, stateCell(t.usable ? "usable" : "unusable", t.usable, !t.usable),
      rate(t.sent_per_s)],
  })));
}

function renderQueues(q) {
  if (!q) {
    $("q-waiting").textContent = "not counted by this store";
    return;
  }
  $("q-waiting").textContent = num(q.messages_waiting);
  $("q-oldest").textContent = age(q.oldest_message_age);
  const deliveries = q.deliveries_waiting || {};
  const parts = Object.keys(deliveries).sort().map((a) => `${a} ${num(deliveries[a])}`);
  $("q-deliveries").textContent = parts.length ? parts.join(", ") : "none";
  $("q-oldest-delivery").textContent = age(q.oldest_delivery_age);
}

function secs(v) {
  return v === null || v === undefined ? "–" : `${v.toFixed(1)} s`;
}

function renderDelivery(rows, window) {
  $("delivery-window").textContent = window || "since start";
  fill("delivery", rows.map((r) => ({
    key: `${r.route}/${r.target}`,
    cells: [r.route, r.target, num(r.sent), num(r.delivered), num(r.failed), num(r.expired),
      r.pending === undefined ? "–" : num(r.pending),
      r.rate === null ? "–" : `${(r.rate * 100).toFixed(1)} %`,
      r.latency_p50 === undefined ? "–" : `${secs(r.latency_p50)} / ${secs(r.latency_p95)}`],
  })));
}

function renderReload(last) {
  const p = $("reload");
  p.replaceChildren();
  if (!last) {
    p.appendChild(el("span", "none since start", "muted"));
    return;
  }
  p.appendChild(stateCell(last.ok ? "applied" : "refused", last.ok, !last.ok));
  p.appendChild(el("span", ` at ${clock(last.at)}`));
  let detail = last.detail;
  if (Array.isArray(detail)) detail = detail.length ? detail.join(", ") : "no changes";
  if (detail) {
    p.appendChild(el("br"));
    p.appendChild(el("span", detail, last.ok ? "muted" : "error"));
  }
}

const SVG = "http://www.w3.org/2000/svg";

// Three lines (accepted, sent, delivered per interval) over the last 15 minutes, scaled to the
// busiest interval; the x axis is time, so gaps in sampling show as gaps in the line.
function renderChart(t) {
  const svg = $("chart");
  const W = 600, H = 140, PAD = 6;
  svg.replaceChildren();
  for (const y of [0.25, 0.5, 0.75]) {
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", 0); line.setAttribute("x2", W);
    line.setAttribute("y1", H * y); line.setAttribute("y2", H * y);
    line.setAttribute("class", "gridline");
    svg.appendChild(line);
  }
  if (!t) {
    $("chart-note").textContent = "metrics are off";
    return;
  }
  const points = t.points || [];
  const span = t.interval * 90;
  const end = points.length ? points[points.length - 1][0] : 0;
  let max = 0;
  for (const p of points) max = Math.max(max, p[1], p[2], p[3]);
  const top = max || 1;
  $("chart-max").textContent = `peak ${num(max)} per ${t.interval}s`;
  $("chart-note").textContent = points.length < 2 ? "collecting…" : "";
  ["accepted", "sent", "delivered"].forEach((name, i) => {
    const coords = points.map((p) => {
      const x = W - ((end - p[0]) / span) * W;
      const y = H - PAD - (p[i + 1] / top) * (H - 2 * PAD);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", coords.join(" "));
    line.setAttribute("class", name);
    svg.appendChild(line);
  });
}

function render(s) {
  $("node").textContent = String(s.node);
  $("uptime").textContent = age(s.uptime);
  const t = s.throughput;
  $("total-accepted").textContent = t ? num(t.accepted) : "–";
  $("total-sent").textContent = t ? num(t.sent) : "–";
  $("total-delivered").textContent = t ? num(t.delivered) : "–";
  renderChart(t);
  renderQueues(s.queues);
  renderModems(s.modems || []);
  renderBinds(s.sessions || []);
  renderUpstreams(s.upstreams || {}, s.targets || []);
  renderDelivery(s.delivery || [], s.delivery_window);
  renderReload(s.last_reload);
  document.body.dataset.updated = String(s.now);
}

// -- the feed --------------------------------------------------------------------------------

let lastEvent = 0;

function setConn(state) {
  const badge = $("conn");
  badge.className = `conn ${state}`;
  badge.textContent = state === "live" ? "live"
    : state === "down" ? "disconnected, retrying" : "connecting…";
}

function received(data) {
  lastEvent = Date.now();
  setConn("live");
  render(data);
}

function listen() {
  const source = new EventSource(FEED);
  source.addEventListener("status", (e) => received(JSON.parse(e.data)));
  source.onerror = () => {
    setConn("down");
    // A stream refused (401, 5xx) is not retried by the browser: start a new one.
    if (source.readyState === EventSource.CLOSED) setTimeout(listen, RETRY_MS);
  };
}

async function poll() {
  try {
    const r = await fetch(POLL, { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    received(await r.json());
  } catch (_e) {
    setConn("down");
  }
  setTimeout(poll, 2000);
}

setInterval(() => {
  if (lastEvent && Date.now() - lastEvent > STALE_MS) setConn("down");
}, 1000);

if (window.EventSource) listen();
else poll();
