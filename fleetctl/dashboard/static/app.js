// fleetctl dashboard: renders the JSON twins of the page and polls them. No framework, no
// build step; text goes in through textContent only, never as HTML.
"use strict";

const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
const ACTIONS = meta("fleetctl-actions") === "on";
const TOKEN = meta("fleetctl-action-token");
const POLL = Math.max(1, parseInt(meta("fleetctl-poll"), 10) || 3) * 1000;
const HISTORY = 20; // checks kept per agent for the strip
const history = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// replaceChildren() would print a null child as the text "null".
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function duration(s) {
  if (s === null || s === undefined) return "-";
  s = Math.floor(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "K", "M", "G", "T"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n}B` : `${n.toFixed(1)}${units[i]}`;
}

function ago(ts) {
  if (!ts) return "never";
  return `${duration(Date.now() / 1000 - ts)} ago`;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || `${url}: HTTP ${r.status}`);
  return doc;
}

async function act(what, agent, say) {
  const r = await fetch(`/actions/${what}/${encodeURIComponent(agent)}`, {
    method: "POST",
    headers: { "X-Fleetctl-Token": TOKEN },
    credentials: "same-origin",
  });
  const doc = await r.json();
  say((doc.lines || []).concat(doc.error ? [doc.error] : []).join("\n") || `${what}: HTTP ${r.status}`);
  refresh();
}

function stateText(a) {
  if (a.load_state === "not-found") return "not installed";
  return `${a.active_state}/${a.sub_state}`;
}

function agentRow(a, say) {
  const h = (history[a.agent] = history[a.agent] || []);
  const strip = el("span", { class: "strip", title: "recent checks, oldest first" },
    h.map((lv) => el("i", { class: `tick ${lv}` })));
  const flags = [];
  if (a.held) flags.push(el("span", { class: "flag held", title: a.held.reason }, "held"));
  if (a.fallback_active) flags.push(el("span", { class: "flag warn" }, "fallback"));
  for (const v of a.violations.filter((c) => c !== "fallback-active")) flags.push(el("span", { class: "flag warn" }, v));
  flags.push(el("span", { class: `flag iso-${a.isolation}`, title: "isolation" }, a.isolation));
  const inc = a.last_incident;
  const actions = ACTIONS ? [
    el("button", { type: "button", onclick: () => act("restart", a.agent, say) }, "restart"),
    a.held ? el("button", { type: "button", onclick: () => act("ack", a.agent, say) }, "ack") : null,
    el("button", { type: "button", onclick: () => act("rollback", a.agent, say) }, "rollback"),
  ] : [];
  return el("tr", { id: `agent-${a.agent}`, class: `level-${a.level}`, "data-level": a.level, "data-state": a.active_state },
    el("td", {}, strip),
    el("td", { class: "name" }, el("a", { href: `/agent/${encodeURIComponent(a.agent)}` }, a.agent),
      a.description ? el("div", { class: "desc" }, a.description) : null),
    el("td", {}, a.role),
    el("td", { class: "state" }, stateText(a)),
    el("td", {}, a.health === "-" ? "-" : `${a.health} ${a.health_detail}`),
    el("td", {}, duration(a.uptime_seconds)),
    el("td", { class: "num" }, a.restarts),
    el("td", { class: "num" }, bytes(a.memory_bytes)),
    el("td", { class: "num" }, a.port),
    el("td", { class: "flags" }, flags),
    el("td", { class: "num" }, a.cost_today_usd === null ? "-" : `$${a.cost_today_usd.toFixed(2)}`),
    el("td", { class: "incident" }, inc ? `${inc.time}: ${inc.symptom} → ${inc.action} → ${inc.verification}` : ""),
    el("td", { class: "act-col" }, actions),
  );
}

function renderAgents(doc, say) {
  const body = document.querySelector("#agents tbody");
  for (const a of doc.agents) {
    const h = (history[a.agent] = history[a.agent] || []);
    h.push(a.level);
    if (h.length > HISTORY) h.shift();
  }
  fill(body, ...doc.agents.map((a) => agentRow(a, say)));
  if (!ACTIONS) document.querySelectorAll(".act-col").forEach((n) => n.classList.add("hidden"));
  document.getElementById("updated").textContent = `updated ${new Date(doc.generated * 1000).toLocaleTimeString()}`;
}

function renderCron(jobs) {
  const box = document.getElementById("cron");
  fill(box, ...Object.entries(jobs).map(([job, j]) => {
    const level = j.stale ? "down" : j.ok === false ? "warn" : j.last_run ? "ok" : "off";
    const mark = j.stale ? "STALE" : j.ok === false ? "FAILED" : j.last_run ? "ok" : "no run yet";
    return el("div", { id: `job-${job}`, class: `job level-${level}`, "data-stale": j.stale ? "yes" : "no" },
      el("h3", {}, job, " ", el("span", { class: "mark" }, mark)),
      el("div", {}, `last completed ${ago(j.last_run)} · every ${j.interval_minutes} min`),
      el("div", { class: "reason" }, j.reason));
  }));
}

function renderCounts(doc) {
  const c = doc.counts;
  fill(document.getElementById("counts"),
    el("span", { class: "pill level-ok" }, `${c.ok} up`),
    el("span", { class: "pill level-warn" }, `${c.warn} warn`),
    el("span", { class: "pill level-down" }, `${c.down} down`),
    c.off ? el("span", { class: "pill level-off" }, `${c.off} not installed`) : null);
  document.getElementById("problems").textContent = (doc.problems || []).join("\n");
  const v = document.getElementById("violations");
  fill(v, ...(doc.violations.length ? doc.violations.map((x) =>
    el("li", { class: `sev-${x.severity}` }, el("b", {}, x.severity.toUpperCase()), ` ${x.check} on ${x.agent || "fleet"}: ${x.summary}`,
      x.fix ? el("div", { class: "fix" }, `fix: ${x.fix}`) : null)) : [el("li", { class: "none" }, "none")]));
}

function feedItem(e) {
  return el("li", { class: `kind-${e.kind}` },
    el("time", {}, e.time), " ", el("span", { class: `kind` }, e.kind), " ",
    e.agent ? el("a", { href: `/agent/${encodeURIComponent(e.agent)}` }, e.agent) : "", " ",
    el("span", { class: "text" }, e.text), e.detail ? el("div", { class: "detail" }, e.detail) : null);
}

let feedPage = 1;
async function refreshFeed() {
  const agent = document.getElementById("feed-agent").value;
  const kind = document.getElementById("feed-kind").value;
  const q = new URLSearchParams({ page: feedPage });
  if (agent) q.set("agent", agent);
  if (kind) q.set("kind", kind);
  const doc = await getJSON(`/feed.json?${q}`);
  feedPage = doc.page;
  fill(document.getElementById("feed"), ...(doc.items.length ? doc.items.map(feedItem) : [el("li", { class: "none" }, "nothing yet")]));
  document.getElementById("feed-page").textContent = `page ${doc.page} of ${doc.pages} (${doc.total})`;
}

function renderAlerts(doc) {
  const box = document.getElementById("alerts");
  const sent = doc.sent.map((a) => el("li", { class: `sev-${a.severity}` },
    `${a.check} on ${a.agent || "fleet"} → ${a.channels.join(", ") || "no channel"}, last sent ${ago(a.last_sent)}`));
  const recent = (doc.deliveries || []).slice(0, 10).map((d) => el("li", { class: `sev-${d.severity}` },
    `${ago(d.time)}: ${d.check} on ${d.agent || "fleet"} (${d.state}) → ${d.channel}${d.note ? ` (${d.note})` : ""}`));
  const out = doc.outbox.map((o) => el("li", { class: "sev-warning" },
    `${o.key} (${o.state}) → ${o.channel}: ${o.attempts} attempt(s), queued ${ago(o.queued_at)}`,
    o.last_error ? el("div", { class: "detail" }, o.last_error) : null));
  fill(box,
    el("div", {}, `channels: ${doc.channels.map((c) => `${c.name} (${c.type})`).join(", ") || "none configured"}`),
    el("h3", {}, "sent, still open"), el("ul", { id: "alerts-sent" }, sent.length ? sent : [el("li", { class: "none" }, "none")]),
    el("h3", {}, "last deliveries"), el("ul", { id: "alerts-deliveries" }, recent.length ? recent : [el("li", { class: "none" }, "none yet")]),
    el("h3", {}, "outbox"), el("ul", { id: "alerts-outbox" }, out.length ? out : [el("li", { class: "none" }, "empty")]),
    (doc.problems || []).length ? el("p", { class: "problems" }, doc.problems.join("\n")) : null);
}

let knownAgents = "";
function fillAgentFilter(names) {
  const key = names.join(",");
  if (key === knownAgents) return;
  knownAgents = key;
  const sel = document.getElementById("feed-agent");
  const keep = sel.value;
  fill(sel, el("option", { value: "" }, "all"), ...names.map((n) => el("option", { value: n }, n)));
  sel.value = keep;
}

async function refreshFleet() {
  // Apart from #problems, which every refresh rewrites: an action's result stays until the next.
  const say = (t) => { document.getElementById("action-result").textContent = t; };
  // All three at once: the page costs the slowest of them, not their sum.
  const [agents, alerts] = await Promise.all([getJSON("/agents.json"), getJSON("/alerts.json"), refreshFeed()]);
  renderAgents(agents, say);
  renderCron(agents.jobs);
  renderCounts(agents);
  fillAgentFilter(agents.agents.map((a) => a.agent));
  renderAlerts(alerts);
}

let incPage = 1;
async function refreshAgent() {
  const name = meta("fleetctl-agent");
  const doc = await getJSON(`/agent/${encodeURIComponent(name)}.json?page=${incPage}`);
  const say = (t) => { document.getElementById("action-result").textContent = t; };
  renderAgents({ agents: [doc.agent], generated: Date.now() / 1000 }, say);
  document.getElementById("log-source").textContent = `(${doc.logs.source})`;
  document.getElementById("logs").textContent = doc.logs.lines.join("\n") || "no log lines";
  const c = doc.config;
  const rows = (c.versions || []).map((v) => el("tr", { class: v.version === c.current ? "current" : "" },
    el("td", {}, `${v.version}${v.version === c.current ? " (current)" : ""}${v.version === c.last_known_good ? " (last-known-good)" : ""}`),
    el("td", {}, v.time.slice(0, 19)), el("td", {}, v.source), el("td", {}, v.verified ? "yes" : "no"), el("td", {}, v.reason)));
  fill(document.querySelector("#versions tbody"), ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5 }, c.managed ? (c.error || "no version recorded") : "no config managed"))]));
  document.getElementById("diff").textContent = c.diff || (c.managed ? "current is the last-known-good" : "");
  const inc = doc.incidents;
  incPage = inc.page;
  fill(document.getElementById("incidents"), ...(inc.items.length ? inc.items.map((r) => el("li", {},
    el("time", {}, r.time), " ", `${r.symptom} → ${r.action} → ${r.verification}`,
    r.detail ? el("div", { class: "detail" }, r.detail) : null)) : [el("li", { class: "none" }, "no incidents")]));
  document.getElementById("inc-page").textContent = `page ${inc.page} of ${inc.pages} (${inc.total})`;
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    if (document.body.dataset.page === "agent") await refreshAgent();
    else await refreshFleet();
    document.body.dataset.loaded = "yes";
    document.body.classList.remove("offline");
  } catch (err) {
    document.body.classList.add("offline");
    document.getElementById("updated").textContent = `not updated: ${err.message}`;
  } finally {
    busy = false;
  }
}

function pager(prev, next, get, set) {
  const p = document.getElementById(prev), n = document.getElementById(next);
  if (p) p.addEventListener("click", () => { set(Math.max(1, get() - 1)); refresh(); });
  if (n) n.addEventListener("click", () => { set(get() + 1); refresh(); });
}

document.addEventListener("DOMContentLoaded", () => {
  pager("feed-prev", "feed-next", () => feedPage, (v) => { feedPage = v; });
  pager("inc-prev", "inc-next", () => incPage, (v) => { incPage = v; });
  for (const id of ["feed-agent", "feed-kind"]) {
    const s = document.getElementById(id);
    if (s) s.addEventListener("change", () => { feedPage = 1; refreshFeed(); });
  }
  refresh();
  setInterval(refresh, POLL);
});
