// edgeroute hub dashboard: fetches /api/summary with the bearer token and draws every panel.
// Everything is built with DOM calls and textContent, never innerHTML: domain names, routes and
// edge ids come from edges and must never be able to inject markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const ROUTE_COLOURS = {
  exact_cache: "#2da44e", semantic_cache: "#57ab5a", asset_reuse: "#8ddb8c", edge_local: "#0969da",
  hub_oss: "#8250df", hub_finetuned: "#bf3989", frontier: "#cf222e",
};

// One formatter per kind; the browser test formats the API's numbers the same way.
const FORMAT = {
  pct: (v) => (v * 100).toFixed(1) + "%",
  usd: (v) => "$" + v.toFixed(Math.abs(v) >= 100 ? 2 : 6),
  ratio: (v) => v.toFixed(3) + "×",
  times: (v) => v.toFixed(1) + "×",
  secs: (v) => v.toFixed(3) + " s",
  num: (v) => v.toFixed(3),
  int: (v) => String(v),
  text: (v) => String(v),
};

function show(value, kind) {
  return value === null || value === undefined ? "—" : FORMAT[kind](value);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// A figure the API reports: its path in the summary and its format travel with it.
function metric(path, value, kind, tag = "span") {
  return el(tag, { "data-metric": path, "data-format": kind }, show(value, kind));
}

function tile(label, path, value, kind, sub) {
  const box = el("div", { class: "tile" }, el("div", { class: "label" }, label));
  const v = metric(path, value, kind, "div");
  v.classList.add("value");
  box.append(v);
  if (sub) box.append(el("div", { class: "sub" }, sub));
  return box;
}

function table(node, headers, rows, empty) {
  node.replaceChildren(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: String(headers.length) }, empty)));
  }
  for (const cells of rows) {
    body.append(el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))));
  }
  // a column of text cells gets a left-aligned header too
  const first = body.querySelector("tr");
  if (rows.length && first) {
    [...first.children].forEach((td, i) => {
      if (td.classList.contains("text")) node.querySelectorAll("th")[i].classList.add("text");
    });
  }
  node.append(body);
}

function textCell(text, cls) {
  const td = el("td", { class: "text" }, text);
  if (cls) td.classList.add(cls);
  return td;
}

// CSP forbids inline styles, so the colour is an SVG attribute
function swatch(route) {
  const colour = ROUTE_COLOURS[route] || "#6e7781";
  return svg("svg", { width: 12, height: 12, class: "swatch" }, svg("rect", { width: 12, height: 12, fill: colour }));
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 120) return seconds.toFixed(1) + " s ago";
  if (seconds < 7200) return (seconds / 60).toFixed(0) + " min ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}

function clock(epoch, hours) {
  const d = new Date(epoch * 1000);
  const hm = d.toTimeString().slice(0, 5);
  return hours > 48 ? d.toISOString().slice(5, 10) + " " + hm : hm;
}

// --- panels --------------------------------------------------------------------------------------

function headline(s) {
  const t = s.totals, ns = s.north_star, c = ns.cost_vs_frontier;
  const cheaper = c.times_cheaper === null ? "no frontier price or no priced requests" :
    show(c.times_cheaper, "times") + " cheaper, " + show(c.coverage, "pct") + " of answers priced";
  document.getElementById("headline").replaceChildren(
    tile("requests", "totals.requests", t.requests, "int"),
    tile("served without frontier", "north_star.served_without_frontier", ns.served_without_frontier, "pct"),
    tile("cost vs always-frontier", "north_star.cost_vs_frontier.ratio", c.ratio, "ratio", cheaper),
    tile("cost", "totals.cost_usd", t.cost_usd, "usd"),
    tile("cache hit rate", "totals.cache_hit_rate", t.cache_hit_rate, "pct"),
    tile("escalation rate", "totals.escalation_rate", t.escalation_rate, "pct"),
    tile("fallback rate", "totals.fallback_rate", t.fallback_rate, "pct"),
    tile("regeneration rate", "totals.regeneration_rate", t.regeneration_rate, "pct"),
    tile("error rate", "totals.error_rate", t.error_rate, "pct"),
    tile("mean rating", "totals.feedback_mean", t.feedback_mean, "num", t.feedback_n + " rated answers"),
  );
}

function northStar(s) {
  const ns = s.north_star, w = s.window;
  const price = ns.frontier_price;
  document.getElementById("north-note").textContent = price === null
    ? "No priced frontier model in the hub config: cost against always-frontier is unknown."
    : "Cost ratio: what the router charged ÷ what " + price.model + " would have charged for the same tokens ($" +
      price.usd_per_1k_prompt + " / $" + price.usd_per_1k_completion + " per 1k prompt / completion tokens).";
  const W = 900, H = 260, L = 48, R = 28, T = 30, B = 28;
  const ratios = ns.series.map((p) => p.cost_ratio).filter((v) => v !== null);
  const top = Math.max(1, ...ratios);
  const x = (t) => L + ((t - w.since) / (w.until - w.since)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "north star over time" });
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#d8dee6" }));
    chart.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, top === 1 ? FORMAT.pct(v) : v.toFixed(2)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = w.since + ((w.until - w.since) * i) / 4;
    chart.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, clock(t, w.hours)));
  }
  const series = [
    ["served_without_frontier", "#1a7f37", "served without frontier", "pct"],
    ["cost_ratio", "#cf222e", "cost ÷ always-frontier", "ratio"],
  ];
  series.forEach(([key, colour, label, kind], k) => {
    const pts = [];
    ns.series.forEach((p, i) => {
      if (p[key] === null) return;
      const cx = x(Math.min(Math.max(p.start + w.bucket_s / 2, w.since), w.until)), cy = y(p[key]);
      pts.push(`${cx.toFixed(1)},${cy.toFixed(1)}`);
      chart.append(svg("circle", {
        cx, cy, r: 3.5, fill: colour, "data-metric": `north_star.series.${i}.${key}`, "data-value": String(p[key]),
      }, svg("title", {}, `${clock(p.start, w.hours)}: ${label} ${show(p[key], kind)} (${p.requests} requests)`)));
    });
    if (pts.length > 1) chart.prepend(svg("polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
    chart.append(svg("rect", { x: L + k * 220, y: 4, width: 10, height: 10, fill: colour }));
    chart.append(svg("text", { x: L + 14 + k * 220, y: 13 }, label));
  });
  document.getElementById("north-chart").replaceChildren(chart);
}

function routes(s) {
  const W = 900, H = 34;
  const bar = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "route mix" });
  let at = 0;
  s.routes.forEach((r, i) => {
    const width = (r.share || 0) * W;
    bar.append(svg("rect", {
      x: at, y: 4, width, height: H - 8, fill: ROUTE_COLOURS[r.route] || "#6e7781",
      "data-metric": `routes.${i}.share`, "data-value": String(r.share),
    }, svg("title", {}, `${r.route}: ${show(r.share, "pct")}`)));
    at += width;
  });
  document.getElementById("route-bar").replaceChildren(bar);
  table(document.getElementById("routes"),
    ["route", "requests", "share", "cost", "cost / request", "p50 latency", "p95 latency", "p50 first token", "errors"],
    s.routes.map((r, i) => [
      el("td", { class: "text" }, swatch(r.route), metric(`routes.${i}.route`, r.route, "text")),
      metric(`routes.${i}.requests`, r.requests, "int"), metric(`routes.${i}.share`, r.share, "pct"),
      metric(`routes.${i}.cost_usd`, r.cost_usd, "usd"), metric(`routes.${i}.cost_per_request`, r.cost_per_request, "usd"),
      metric(`routes.${i}.latency_p50_s`, r.latency_p50_s, "secs"), metric(`routes.${i}.latency_p95_s`, r.latency_p95_s, "secs"),
      metric(`routes.${i}.ttft_p50_s`, r.ttft_p50_s, "secs"), metric(`routes.${i}.errors`, r.errors, "int"),
    ]), "no requests in this window");
  latency(s);
}

function latency(s) {
  const rows = s.routes.filter((r) => r.latency_p95_s !== null);
  const W = 900, row = 22, L = 130, R = 70, H = 20 + row * rows.length;
  const top = Math.max(0.001, ...rows.map((r) => r.latency_p95_s));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "latency per route" });
  chart.append(svg("text", { x: L, y: 12 }, "latency per route: p50 (dark) and p95 (light), seconds"));
  rows.forEach((r, k) => {
    const i = s.routes.indexOf(r), yy = 18 + k * row, scale = (v) => (v / top) * (W - L - R);
    const colour = ROUTE_COLOURS[r.route] || "#6e7781";
    chart.append(svg("text", { x: L - 6, y: yy + 13, "text-anchor": "end" }, r.route));
    chart.append(svg("rect", { x: L, y: yy + 2, width: scale(r.latency_p95_s), height: 14, fill: colour, opacity: 0.35,
      "data-metric": `routes.${i}.latency_p95_s`, "data-value": String(r.latency_p95_s) }));
    chart.append(svg("rect", { x: L, y: yy + 2, width: scale(r.latency_p50_s), height: 14, fill: colour,
      "data-metric": `routes.${i}.latency_p50_s`, "data-value": String(r.latency_p50_s) }));
    chart.append(svg("text", { x: L + scale(r.latency_p95_s) + 6, y: yy + 13 }, show(r.latency_p95_s, "secs")));
  });
  document.getElementById("latency-chart").replaceChildren(chart);
}

function cache(s) {
  const c = s.cache;
  document.getElementById("cache-tiles").replaceChildren(
    tile("any cache", "cache.hit_rate", c.hit_rate, "pct"),
    tile("exact cache", "cache.exact_hit_rate", c.exact_hit_rate, "pct"),
    tile("semantic cache", "cache.semantic_hit_rate", c.semantic_hit_rate, "pct"),
  );
  table(document.getElementById("audit"),
    ["domain", "semantic hits", "mean similarity", "lowest similarity", "re-asked", "rated", "rated down"],
    c.semantic_audit.map((a, i) => [
      textCell(metric(`cache.semantic_audit.${i}.domain`, a.domain, "text")),
      metric(`cache.semantic_audit.${i}.hits`, a.hits, "int"),
      metric(`cache.semantic_audit.${i}.similarity_mean`, a.similarity_mean, "num"),
      metric(`cache.semantic_audit.${i}.similarity_min`, a.similarity_min, "num"),
      metric(`cache.semantic_audit.${i}.reasked`, a.reasked, "int"),
      metric(`cache.semantic_audit.${i}.rated`, a.rated, "int"),
      metric(`cache.semantic_audit.${i}.rated_down`, a.rated_down, "int"),
    ]), "no semantic hits in this window");
}

function quality(s) {
  const q = s.quality;
  const note = document.getElementById("quality-note");
  if (q.run === null) {
    note.textContent = "No evaluation run yet: run `cloud-hub eval run --home <hub home>`.";
  } else {
    note.replaceChildren("Run ", metric("quality.run.run_id", q.run.run_id, "text"), ", ",
      metric("quality.run.scored", q.run.scored, "int"), " scored answers; cells with fewer than " + q.run.min_n +
      " are thin. Targets default to " + show(q.run.default_target, "pct") + ".");
  }
  const W = 900, row = 24, L = 150, R = 20, H = 28 + row * q.domains.length;
  const x = (v) => L + v * (W - L - R);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "pass rate per domain" });
  for (let i = 0; i <= 4; i++) {
    chart.append(svg("line", { x1: x(i / 4), x2: x(i / 4), y1: 4, y2: H - 18, stroke: "#d8dee6" }));
    chart.append(svg("text", { x: x(i / 4), y: H - 4, "text-anchor": "middle" }, FORMAT.pct(i / 4)));
  }
  q.domains.forEach((d, i) => {
    const yy = 14 + i * row, colour = d.status === "below" ? "#cf222e" : d.status === "watch" ? "#9a6700" : "#1a7f37";
    chart.append(svg("text", { x: L - 8, y: yy + 4, "text-anchor": "end" }, d.domain));
    chart.append(svg("line", { x1: x(d.ci_low), x2: x(d.ci_high), y1: yy, y2: yy, stroke: colour, "stroke-width": 3,
      "data-metric": `quality.domains.${i}.ci_low`, "data-value": String(d.ci_low) }));
    chart.append(svg("line", { x1: x(d.target), x2: x(d.target), y1: yy - 8, y2: yy + 8, stroke: "#1d2330" }));
    chart.append(svg("circle", { cx: x(d.pass_rate), cy: yy, r: 5, fill: colour,
      "data-metric": `quality.domains.${i}.pass_rate`, "data-value": String(d.pass_rate) },
      svg("title", {}, `${d.domain}: ${show(d.pass_rate, "pct")} [${show(d.ci_low, "pct")}, ${show(d.ci_high, "pct")}]`)));
  });
  document.getElementById("quality-chart").replaceChildren(chart);
  table(document.getElementById("quality"),
    ["domain", "scored", "pass rate", "95% low", "95% high", "target", "status"],
    q.domains.map((d, i) => [
      textCell(metric(`quality.domains.${i}.domain`, d.domain, "text")),
      metric(`quality.domains.${i}.n`, d.n, "int"), metric(`quality.domains.${i}.pass_rate`, d.pass_rate, "pct"),
      metric(`quality.domains.${i}.ci_low`, d.ci_low, "pct"), metric(`quality.domains.${i}.ci_high`, d.ci_high, "pct"),
      metric(`quality.domains.${i}.target`, d.target, "pct"),
      textCell(metric(`quality.domains.${i}.status`, d.status, "text"), "status-" + d.status),
    ]), "no evaluation results");
  table(document.getElementById("flags"),
    ["domain", "route", "scored", "pass rate", "95% interval", "target", "status", "top failure"],
    q.flags.map((f, i) => [
      textCell(metric(`quality.flags.${i}.domain`, f.domain, "text")),
      textCell(metric(`quality.flags.${i}.route`, f.route, "text")),
      metric(`quality.flags.${i}.n`, f.n, "int"), metric(`quality.flags.${i}.pass_rate`, f.pass_rate, "pct"),
      el("td", {}, "[", metric(`quality.flags.${i}.ci_low`, f.ci_low, "pct"), ", ",
        metric(`quality.flags.${i}.ci_high`, f.ci_high, "pct"), "]"),
      metric(`quality.flags.${i}.target`, f.target, "pct"),
      textCell(metric(`quality.flags.${i}.status`, f.status, "text"), "status-" + f.status),
      textCell(metric(`quality.flags.${i}.top_failure`, f.top_failure, "text")),
    ]), q.run === null ? "no evaluation run yet" : "no cell below or near its target");
}

function canary(s) {
  const c = s.canary;
  const kv = el("dl", { class: "kv" },
    el("dt", {}, "serving policy"), el("dd", {}, metric("canary.version", c.version, "text"), " at threshold ",
      metric("canary.threshold", c.threshold, "num")),
    el("dt", {}, "canary"), el("dd", {}, c.running
      ? el("span", {}, metric("canary.canary_version", c.canary_version, "text"), " at threshold ",
        metric("canary.canary_threshold", c.canary_threshold, "num"), " on ", metric("canary.canary_share", c.canary_share, "pct"),
        " of traffic")
      : "none running"));
  if (c.difference_ci) {
    kv.append(el("dt", {}, "canary − control pass rate, 95%"), el("dd", {}, "[",
      metric("canary.difference_ci.0", c.difference_ci[0], "pct"), ", ", metric("canary.difference_ci.1", c.difference_ci[1], "pct"), "]"));
  }
  const arms = el("table");
  const rows = [["control", "control", c.control]];
  if (c.canary) rows.push(["canary", "canary", c.canary]);
  table(arms, ["arm", "requests", "escalation", "fallback", "regeneration", "scored", "pass rate", "95% low", "95% high"],
    rows.map(([name, key, a]) => {
      const e = a.eval || { scored: null, pass_rate: null, ci_low: null, ci_high: null };
      return [textCell(name), metric(`canary.${key}.requests`, a.requests, "int"),
        metric(`canary.${key}.escalation_rate`, a.escalation_rate, "pct"), metric(`canary.${key}.fallback_rate`, a.fallback_rate, "pct"),
        metric(`canary.${key}.regeneration_rate`, a.regeneration_rate, "pct"),
        a.eval ? metric(`canary.${key}.eval.scored`, e.scored, "int") : "—",
        a.eval ? metric(`canary.${key}.eval.pass_rate`, e.pass_rate, "pct") : "—",
        a.eval ? metric(`canary.${key}.eval.ci_low`, e.ci_low, "pct") : "—",
        a.eval ? metric(`canary.${key}.eval.ci_high`, e.ci_high, "pct") : "—"];
    }), "");
  const history = el("table");
  table(history, ["concluded", "version", "threshold", "decision"],
    c.history.slice().reverse().map((h) => [textCell(new Date(h.at * 1000).toISOString().slice(0, 16).replace("T", " ")),
      textCell(String(h.version)), show(h.threshold, "num"), textCell(String(h.decision))]), "no canary concluded yet");
  document.getElementById("canary").replaceChildren(kv, arms, history);
}

function fleet(s) {
  table(document.getElementById("fleet"),
    ["edge", "enrolled", "status", "last heard", "requests", "errors", "spool backlog", "backlog reported", "dropped events"],
    s.fleet.map((e, i) => [
      textCell(metric(`fleet.${i}.edge`, e.edge, "text")),
      textCell(e.enrolled ? "yes" : "no"),
      textCell(e.online ? "online" : "offline", e.online ? "online" : "offline"),
      textCell(ago(e.seen_ago_s)),
      metric(`fleet.${i}.requests`, e.requests, "int"), metric(`fleet.${i}.errors`, e.errors, "int"),
      metric(`fleet.${i}.spool_backlog`, e.spool_backlog, "int"),
      textCell(e.backlog_at === null ? "never" : ago(s.generated_at - e.backlog_at)),
      metric(`fleet.${i}.dropped_events`, e.dropped_events, "int"),
    ]), "no edge enrolled or heard from");
}

// --- loading -------------------------------------------------------------------------------------

// Kept in memory only, never in browser storage: a reload asks again unless the link carries it.
let token = null;

function readToken() {
  const found = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (found) {
    token = decodeURIComponent(found[1]);
    // keep the token out of the address bar, history and screenshots
    history.replaceState(null, "", location.pathname + location.search);
  }
  return token;
}

function askForToken(message) {
  document.body.dataset.state = "login";
  document.getElementById("panels").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("status").textContent = "token needed";
}

let timer = null;

async function load() {
  clearTimeout(timer);
  if (!readToken()) return askForToken("");
  const hours = document.getElementById("hours").value;
  let resp;
  try {
    resp = await fetch(`/api/summary?hours=${encodeURIComponent(hours)}`, {
      headers: { Authorization: "Bearer " + token }, cache: "no-store",
    });
  } catch (err) {
    document.body.dataset.state = "error";
    document.getElementById("status").textContent = "hub unreachable: " + err;
    timer = setTimeout(load, 15000);
    return;
  }
  if (resp.status === 401) {
    token = null;
    return askForToken("That token was refused.");
  }
  if (!resp.ok) {
    document.body.dataset.state = "error";
    document.getElementById("status").textContent = "error " + resp.status;
    timer = setTimeout(load, 15000);
    return;
  }
  const s = await resp.json();
  render(s);
  timer = setTimeout(load, (s.refresh_s || 15) * 1000);
}

function render(s) {
  document.getElementById("login").hidden = true;
  document.getElementById("panels").hidden = false;
  headline(s);
  northStar(s);
  routes(s);
  cache(s);
  quality(s);
  canary(s);
  fleet(s);
  document.getElementById("status").textContent = "updated " + new Date(s.generated_at * 1000).toLocaleTimeString();
  document.body.dataset.generatedAt = String(s.generated_at);
  document.body.dataset.state = "ready";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = document.getElementById("token").value.trim();
    if (value) token = value;
    load();
  });
  document.getElementById("hours").addEventListener("change", load);
  load();
});
