// skymesh status page: reads the node's JSON admin API every 2 s and fills the tables.
// Plain DOM code, no framework, nothing fetched from elsewhere. Text goes in through
// textContent only, so nothing a peer publishes can inject markup.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "skymesh-admin-token";

function token() {
  const m = location.hash.match(/token=([0-9a-fA-F]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  const res = await fetch(path, { headers, cache: "no-store" });
  if (res.status === 401) throw new Unauthorized(path);
  if (!res.ok) return null; // a part this node does not run (409/503): section stays hidden
  return res.json();
}

const $ = (id) => document.getElementById(id);
function set(id, text) { $(id).textContent = text; }
function show(id, on) { $(id).hidden = !on; }

function rows(tableId, list, cells) {
  const body = $(tableId).tBodies[0];
  const frag = document.createDocumentFragment();
  for (const item of list) {
    const tr = document.createElement("tr");
    for (const c of cells(item)) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      tr.appendChild(td);
    }
    frag.appendChild(tr);
  }
  body.replaceChildren(frag);
}

function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function duration(secs) {
  secs = Math.max(0, Math.round(secs));
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.floor(secs / 60) + " min " + (secs % 60) + " s";
  if (secs < 86400) return Math.floor(secs / 3600) + " h " + Math.floor((secs % 3600) / 60) + " min";
  return Math.floor(secs / 86400) + " d " + Math.floor((secs % 86400) / 3600) + " h";
}

function ago(ms) {
  if (ms == null) return "never";
  return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z") + " (" + duration((Date.now() - ms) / 1000) + " ago)";
}

function state(up) {
  const s = document.createElement("span");
  s.className = up ? "up" : "down";
  s.textContent = up ? "up" : "down";
  return s;
}

function renderInfo(info, dmsg) {
  set("role", info.role);
  set("public-key", info.public_key);
  set("peer-id", info.peer_id);
  set("kad-mode", info.kad_mode);
  set("listen", (info.listen_addrs || []).join("  "));
  set("last-bootstrap", ago(info.last_bootstrap));
  set("peer-count", info.peers);
  set("routing-table", info.routing_table);
  const peers = (info.full_nodes || []).map((p) => ({ id: p, kind: "full node", addr: "", up: true, rtt: null }));
  const mesh = dmsg && dmsg.server ? dmsg.server.mesh.peers : [];
  for (const m of mesh) peers.push({ id: m.pk, kind: "mesh (" + m.source + ")", addr: m.address, up: m.up, rtt: m.rtt_ms });
  rows("peers", peers, (p) => [p.id, p.kind, p.addr, state(p.up), p.rtt == null ? "" : p.rtt.toFixed(1) + " ms"]);
  const items = Object.entries(info.items || {});
  set("items-total", items.reduce((a, [, n]) => a + n, 0));
  rows("items", items, ([salt, n]) => [salt, String(n)]);
}

function renderDmsg(d) {
  if (!d) return;
  set("deployment", d.deployment);
  show("dmsg-server", !!d.server);
  if (d.server) {
    const s = d.server;
    set("srv-address", s.address);
    set("srv-sessions", s.sessions);
    set("srv-streams", s.streams_active + " open, " + s.streams_total + " relayed");
    set("srv-relayed", bytes(s.bytes_relayed));
    set("srv-mesh", s.mesh.enabled
      ? s.mesh.peers.filter((p) => p.up).length + "/" + s.mesh.peers.length + " links up, " +
        s.mesh.forwarded_streams + " streams forwarded (" + bytes(s.mesh.forwarded_bytes) + ")"
      : "off");
    // The mailbox it keeps for offline visors (docs/mailbox.md).
    const mb = s.mailbox;
    set("srv-mailbox", mb
      ? mb.messages + " messages for " + mb.recipients + " recipients, " +
        bytes(mb.bytes) + " of " + bytes(mb.capacity_bytes)
      : "–");
  }
  show("dmsg-client", !!d.client);
  if (d.client) {
    set("cli-ports", d.client.ports_in_use);
    // RTT: the last session ping of each held server (blank until it has answered one).
    const rtt = d.client.server_rtt_ms || {};
    rows("dmsg-servers", d.client.servers, (k) => [k, k in rtt ? rtt[k].toFixed(1) + " ms" : ""]);
  }
}

function renderTransports(t) {
  show("transports-section", !!t);
  if (!t) return;
  rows("transports", t.transports, (x) => [
    x.id, x.remote, x.kind, state(x.state === "up"), duration(x.uptime_secs),
    bytes(x.bytes_sent), bytes(x.bytes_received), x.last_error || "",
  ]);
}

function renderSync(list) {
  rows("sync", list || [], (s) => {
    const p = document.createElement("progress");
    p.max = Math.max(1, s.remote_last_change);
    p.value = s.state === "done" ? p.max : s.cursor;
    return [String(s.id), s.kind, s.peer, s.state + (s.error ? ": " + s.error : ""), p,
      s.accepted + " of " + s.items_received, duration(s.elapsed_ms / 1000)];
  });
}

function renderMailbox(inbox, sent) {
  show("mailbox", !!(inbox && sent));
  if (!inbox || !sent) return;
  set("mb-inbox", inbox.length);
  set("mb-sent", sent.length);
  set("mb-delivered", sent.filter((m) => m.status === "delivered").length);
}

async function refresh() {
  try {
    const [info, dmsg, tps, sync, inbox, sent] = await Promise.all([
      api("/api/v1/info"), api("/api/v1/dmsg"), api("/api/v1/tp"),
      api("/api/v1/status/sync"), api("/api/v1/msg/inbox"), api("/api/v1/msg/sent"),
    ]);
    if (!info) throw new Error("no node info");
    renderInfo(info, dmsg);
    renderDmsg(dmsg);
    renderTransports(tps);
    renderSync(sync);
    renderMailbox(inbox, sent);
    show("auth", false);
    document.body.dataset.state = "live";
    set("state", "live");
    set("updated", new Date().toISOString().replace(/\.\d+Z$/, "Z"));
  } catch (e) {
    document.body.dataset.state = "error";
    if (e instanceof Unauthorized) {
      show("auth", true);
      set("state", "admin token needed");
    } else {
      set("state", "unreachable: " + e.message);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    refresh();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
