// atlas-events dashboard. Plain ES2020, no dependencies, no CDN.
// Every piece of server data reaches the page through textContent (or SVG
// attributes set to numbers), never innerHTML: an event payload can hold any
// text and is shown as text.
"use strict";

(() => {
  const REPLAY = 500;        // recent events asked for on first load
  const MAX_EVENTS = 5000;   // events kept in memory (for re-filtering, rates)
  const MAX_ROWS = 1000;     // rows kept in the timeline
  const MAX_NOTICES = 5;
  const STATS_EVERY_MS = 1000;
  const RATE_SECONDS = 60;   // the rate charts' window
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const ui = {
    busName: $("bus-name"), status: $("status"), events: $("count-events"), rate: $("rate"),
    dropped: $("count-dropped"), gaps: $("count-gaps"), pause: $("pause"), clear: $("clear"),
    type: $("filter-type"), scope: $("filter-scope"), correlation: $("filter-correlation"),
    reset: $("filter-reset"), typeCounts: $("type-counts").tBodies[0], tree: $("scope-tree"),
    health: $("health"), sinks: $("sinks").tBodies[0], notices: $("notices"),
    pausedBanner: $("paused-banner"), rows: $("timeline").tBodies[0], empty: $("empty"),
    tableWrap: document.querySelector(".table-wrap"),
    detail: $("detail"), detailTitle: $("detail-title"), detailJson: $("detail-json"),
    detailClose: $("detail-close"), detailTrace: $("detail-trace"),
    rateChart: $("rate-chart"), rateNow: $("rate-now"), ratePeak: $("rate-peak"), rateScope: $("rate-scope"),
    bridgesPanel: $("bridges-panel"), bridges: $("bridges"),
    trace: $("trace"), traceTitle: $("trace-title"), traceSummary: $("trace-summary"),
    traceClose: $("trace-close"), traceLanes: $("trace-lanes"), traceAxis: $("trace-axis"),
    traceRows: $("trace-rows"),
  };

  const state = {
    store: [],             // received events, oldest first
    lastSeq: null,         // resume point (a seq of `incarnation`)
    incarnation: null,     // the bus incarnation the seqs belong to
    received: 0,
    dropped: 0,
    gaps: 0,
    paused: false,         // the Pause button
    hovering: false,       // the pointer is over the timeline
    held: 0,               // matching events not drawn yet (paused, hovering or scrolled)
    pending: [],           // events waiting to be drawn
    counts: new Map(),     // type -> count
    scopes: newNode(""),   // scope tree with counts
    filter: { type: "", scope: [], correlation: "" },
    retryMs: 2000,
    sideDirty: true,
    renderQueued: false,
    selected: null,        // the event in the detail panel
  };
  const rowEvent = new WeakMap();

  // ------------------------------------------------------------ helpers

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function clip(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "\u2026" : text;
  }

  function pad(n, width) {
    return String(n).padStart(width, "0");
  }

  function clock(epochSeconds) {
    if (typeof epochSeconds !== "number") return "\u2014";
    const d = new Date(epochSeconds * 1000);
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
  }

  function seconds(s) {
    if (s < 0.001) return `${(s * 1e6).toFixed(0)} \u00b5s`;
    if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`;
    return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  }

  function hue(text) {
    let h = 0;
    for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
    return h % 360;
  }

  function text(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function scopeLabel(scope) {
    return Array.isArray(scope) && scope.length ? scope.map(text).join("/") : "(root)";
  }

  function setStatus(kind, label) {
    ui.status.dataset.state = kind;
    ui.status.textContent = label;
  }

  function notice(message, kind, key) {
    // A notice with a key replaces the previous one with the same key.
    if (key) {
      for (const li of ui.notices.children) {
        if (li.dataset.key === key) { li.textContent = message; return; }
      }
    }
    const li = el("li", message, kind || "info");
    if (key) li.dataset.key = key;
    ui.notices.prepend(li);
    while (ui.notices.children.length > MAX_NOTICES) ui.notices.lastElementChild.remove();
  }

  function chip(type, tag) {
    const node = el(tag || "span", type, "chip");
    node.title = type;   // the full name where the chip is cut
    node.style.setProperty("--hue", String(hue(type)));
    return node;
  }

  // -------------------------------------------------------------- filters

  function readFilters() {
    state.filter = {
      type: ui.type.value,
      scope: ui.scope.value.split("/").map((s) => s.trim()).filter(Boolean),
      correlation: ui.correlation.value.trim(),
    };
    const f = state.filter;
    ui.rateScope.textContent = f.type || f.scope.length || f.correlation ? "(filtered view)" : "(all)";
    redraw();
    drawRates();
  }

  function matches(ev) {
    const f = state.filter;
    if (f.type && ev.type !== f.type) return false;
    for (let i = 0; i < f.scope.length; i++) {
      if (!Array.isArray(ev.scope) || ev.scope[i] !== f.scope[i]) return false;
    }
    if (f.correlation && ev.correlation_id !== f.correlation) return false;
    return true;
  }

  function setFilter(field, value) {
    ui[field].value = value;
    readFilters();
  }

  // ------------------------------------------------------------- timeline

  function row(ev) {
    const tr = document.createElement("tr");
    tr.dataset.seq = String(ev.seq);
    tr.dataset.type = ev.type;
    if (ev.malformed) tr.classList.add("malformed");
    tr.appendChild(el("td", ev.seq, "num"));
    tr.appendChild(el("td", clock(ev.timestamp), "time"));
    const scope = el("td", scopeLabel(ev.scope), "scope");
    scope.title = scopeLabel(ev.scope);
    tr.appendChild(scope);
    const typeCell = el("td", null, "type");
    typeCell.appendChild(chip(ev.type));
    tr.appendChild(typeCell);
    const source = el("td", ev.source == null ? "" : text(ev.source), "source");
    source.title = source.textContent;
    tr.appendChild(source);
    const corr = el("td", null, "correlation");
    if (ev.correlation_id) {
      const link = el("button", text(ev.correlation_id), "link trace-link");
      link.type = "button";
      link.title = `Trace run ${text(ev.correlation_id)}`;
      link.dataset.run = text(ev.correlation_id);
      corr.appendChild(link);
    }
    tr.appendChild(corr);
    const data = el("td", null, "data");
    const preview = ev.data === null ? "" : clip(JSON.stringify(ev.data), 300);
    const code = el("code", preview);
    code.title = clip(JSON.stringify(ev.data), 2000);
    data.appendChild(code);
    if (ev.truncated) data.appendChild(el("span", "truncated", "badge"));
    if (ev.malformed) data.appendChild(el("span", `malformed: ${ev.malformed.join(", ")}`, "badge error"));
    tr.appendChild(data);
    rowEvent.set(tr, ev);
    return tr;
  }

  function holding() {
    return state.paused || state.hovering || ui.tableWrap.scrollTop > 2;
  }

  function scheduleRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    setTimeout(render, 16);
  }

  function render() {
    state.renderQueued = false;
    if (!holding() && state.pending.length) {
      const pending = state.pending;
      state.pending = [];
      state.held = 0;
      const frag = document.createDocumentFragment();
      const start = Math.max(0, pending.length - MAX_ROWS);
      for (let i = pending.length - 1; i >= start; i--) frag.appendChild(row(pending[i]));
      ui.rows.insertBefore(frag, ui.rows.firstChild);
      while (ui.rows.rows.length > MAX_ROWS) ui.rows.deleteRow(-1);
    }
    ui.empty.hidden = ui.rows.rows.length > 0;
    ui.events.textContent = String(state.received);
    ui.dropped.textContent = String(state.dropped);
    ui.gaps.textContent = String(state.gaps);
    if (state.held > 0) {
      const why = state.paused ? "Paused" : "Held while you read";
      ui.pausedBanner.hidden = false;
      ui.pausedBanner.textContent = `${why}: ${state.held} new event(s) \u2014 ${state.paused ? "press Resume" : "click to show"}`;
    } else {
      ui.pausedBanner.hidden = !state.paused;
      ui.pausedBanner.textContent = "Paused: new events are counted, not shown.";
    }
  }

  function release() {
    // Show what was held, at the top, as the user asked for it.
    state.hovering = false;
    ui.tableWrap.scrollTop = 0;
    render();
  }

  function redraw() {
    ui.rows.textContent = "";
    state.pending = state.store.filter(matches).slice(-MAX_ROWS);
    state.held = 0;
    const wasHovering = state.hovering;
    state.hovering = false;
    const paused = state.paused;
    state.paused = false;
    render();
    state.paused = paused;
    state.hovering = wasHovering;
  }

  // ---------------------------------------------------------------- rates

  function rateSeries(filterFn) {
    // Per-second counts of the last RATE_SECONDS seconds, by arrival time.
    const now = Date.now();
    const series = new Array(RATE_SECONDS).fill(0);
    for (let i = state.store.length - 1; i >= 0; i--) {
      const ev = state.store[i];
      const age = Math.floor((now - ev._arrived) / 1000);
      if (age >= RATE_SECONDS) break;
      if (filterFn(ev)) series[RATE_SECONDS - 1 - age]++;
    }
    return series;
  }

  function sparkline(target, series, width, height) {
    target.textContent = "";
    const peak = Math.max(1, ...series);
    const step = width / (series.length - 1);
    const points = series.map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / peak) * (height - 3)).toFixed(1)}`);
    target.appendChild(svg("polygon", {
      points: `0,${height} ${points.join(" ")} ${width},${height}`, class: "spark-fill",
    }));
    target.appendChild(svg("polyline", { points: points.join(" "), class: "spark-line" }));
    return peak;
  }

  function drawRates() {
    const series = rateSeries(matches);
    sparkline(ui.rateChart, series, 240, 36);
    ui.rateNow.textContent = String(series[RATE_SECONDS - 2]);  // the last whole second
    ui.ratePeak.textContent = String(Math.max(...series));
    ui.rate.textContent = String(series[RATE_SECONDS - 2]);
    ui.rateChart.dataset.total = String(series.reduce((a, b) => a + b, 0));
  }

  // -------------------------------------------------------------- sidebar

  function newNode(name) {
    return { name, count: 0, children: new Map() };
  }

  function addToTree(scope) {
    let node = state.scopes;
    node.count++;
    for (const part of Array.isArray(scope) ? scope : []) {
      const key = text(part);
      let child = node.children.get(key);
      if (!child) { child = newNode(key); node.children.set(key, child); }
      child.count++;
      node = child;
    }
  }

  function drawTree(node, path) {
    const li = el("li");
    const button = el("button", null, "link");
    button.type = "button";
    button.appendChild(el("span", path.length ? node.name : "(all scopes)"));
    button.appendChild(el("span", node.count, "count"));
    button.addEventListener("click", () => setFilter("scope", path.join("/")));
    li.appendChild(button);
    if (node.children.size) {
      const ul = el("ul");
      const names = [...node.children.keys()].sort();
      for (const name of names) ul.appendChild(drawTree(node.children.get(name), [...path, name]));
      li.appendChild(ul);
    }
    return li;
  }

  function drawSide() {
    drawRates();
    const types = [...state.counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    ui.typeCounts.textContent = "";
    for (const [type, count] of types) {
      const tr = el("tr");
      tr.dataset.type = type;
      const name = el("td");
      const button = chip(type, "button");
      button.classList.add("link");
      button.type = "button";
      button.addEventListener("click", () => setFilter("type", type));
      name.appendChild(button);
      tr.appendChild(name);
      tr.appendChild(el("td", count, "num"));
      const spark = el("td", null, "spark-col");
      const chart = svg("svg", { viewBox: "0 0 60 14", preserveAspectRatio: "none", class: "spark" });
      const series = rateSeries((ev) => ev.type === type);
      sparkline(chart, series, 60, 14);
      chart.appendChild(svg("title")).textContent = `${type}: peak ${Math.max(...series)}/s in the last 60 s`;
      spark.appendChild(chart);
      tr.appendChild(spark);
      ui.typeCounts.appendChild(tr);
    }
    if (!state.sideDirty) return;
    state.sideDirty = false;
    ui.tree.textContent = "";
    ui.tree.appendChild(drawTree(state.scopes, []));
  }

  function addTypeOption(type) {
    const options = [...ui.type.options].slice(1);
    const before = options.find((o) => o.value.localeCompare(type) > 0) || null;
    const option = el("option", type);
    option.value = type;
    ui.type.insertBefore(option, before);
  }

  function definitionList(target, rows) {
    target.textContent = "";
    for (const [label, value, cls] of rows) {
      const div = el("div");
      div.appendChild(el("dt", label));
      div.appendChild(el("dd", value === undefined || value === null ? "\u2014" : value, cls));
      target.appendChild(div);
    }
  }

  function drawStats(stats) {
    ui.busName.textContent = stats.name ? `\u2014 ${stats.name}` : "";
    document.title = `atlas-events \u2014 ${stats.name || "dashboard"}`;
    const dash = stats.dashboard || {};
    definitionList(ui.health, [
      ["published", stats.published],
      ["delivered", stats.delivered],
      ["history", `${stats.history_size} / ${stats.history_limit}`],
      ["subscribers", Object.values(stats.subscribers || {}).reduce((a, b) => a + b, 0)],
      ["handler errors", stats.handler_errors, stats.handler_errors ? "warn" : ""],
      ["dropped by middleware", stats.dropped_by_middleware],
      ["dropped by stream queues", stats.stream_events_dropped],
      ["dashboard clients", `${dash.clients} / ${dash.max_clients}`],
      ["stalled clients dropped", dash.stalled_dropped],
      ["placeholders", dash.placeholders],
    ]);
    ui.sinks.textContent = "";
    for (const sink of stats.sinks || []) {
      const tr = el("tr");
      const name = el("td", sink.name || sink.kind || "?");
      name.title = name.textContent;
      tr.appendChild(name);
      tr.appendChild(el("td", `${sink.depth} / ${sink.capacity}`, "num"));
      tr.appendChild(el("td", sink.dropped, sink.dropped ? "num warn" : "num"));
      ui.sinks.appendChild(tr);
    }
    drawBridges(stats.health || {});
  }

  const BRIDGE_ROWS = [
    ["lag", "lag", (v) => seconds(v)],
    ["down for", "down_for", (v) => seconds(v)],
    ["in flight", "in_flight"],
    ["outbox", "outbox_depth", (v, h) => (h.outbox_capacity ? `${v} / ${h.outbox_capacity}` : v)],
    ["sent", "sent"], ["received", "received"], ["delivered", "delivered"],
    ["duplicates", "duplicates"], ["reconnects", "reconnects"], ["gaps", "gaps"],
    ["dead letters", "dead_lettered"], ["last error", "last_error"],
  ];

  function drawBridges(health) {
    const names = Object.keys(health);
    ui.bridgesPanel.hidden = names.length === 0;
    ui.bridges.textContent = "";
    for (const name of names) {
      const h = health[name] || {};
      const box = el("div", null, "bridge");
      box.dataset.name = name;
      const head = el("div", null, "bridge-head");
      head.appendChild(el("span", name, "bridge-name"));
      const st = el("span", text(h.state ?? "unknown"), "bridge-state");
      st.dataset.state = text(h.state ?? "unknown");
      head.appendChild(st);
      box.appendChild(head);
      const dl = el("dl", null, "health");
      const rows = [];
      for (const [label, key, fmt] of BRIDGE_ROWS) {
        if (!(key in h) || h[key] === null) continue;
        const value = fmt ? fmt(h[key], h) : h[key];
        const bad = (key === "dead_lettered" || key === "gaps") && h[key] > 0;
        rows.push([label, typeof value === "object" ? JSON.stringify(value) : value, bad ? "warn" : ""]);
      }
      if (h.error) rows.push(["error", h.error, "warn"]);
      definitionList(dl, rows);
      box.appendChild(dl);
      ui.bridges.appendChild(box);
    }
  }

  async function pollStats() {
    try {
      const resp = await fetch("stats", { cache: "no-store", credentials: "same-origin" });
      if (resp.ok) drawStats(await resp.json());
    } catch (err) {
      // the event stream reports connection problems
    }
    setTimeout(pollStats, STATS_EVERY_MS);
  }

  // ---------------------------------------------------------------- trace

  function flatten(roots) {
    const out = [];
    const stack = [...roots].reverse();
    while (stack.length) {
      const node = stack.pop();
      out.push(node);
      for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]);
    }
    return out;
  }

  // The latest offset in each node's subtree (by node), bottom-up: no recursion.
  function subtreeEnds(nodes) {
    const ends = new Map();
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i];
      let end = node.offset ?? 0;
      for (const child of node.children) end = Math.max(end, ends.get(child) ?? 0);
      ends.set(node, end);
    }
    return ends;
  }

  // A time axis with each idle gap squeezed into a narrow slice: the busy
  // stretches share the rest of the width in proportion to their length.
  function timeAxis(duration, gaps) {
    const sorted = [...gaps].sort((a, b) => a.start - b.start);
    const slice = sorted.length ? Math.min(0.06, 0.2 / sorted.length) : 0;
    const idle = sorted.reduce((sum, g) => sum + (g.end - g.start), 0);
    const busy = Math.max(0, duration - idle);
    const segments = [];
    let t = 0;
    for (const g of sorted) {
      segments.push({ t0: t, t1: g.start, gap: false });
      segments.push({ t0: g.start, t1: g.end, gap: true });
      t = g.end;
    }
    segments.push({ t0: t, t1: duration, gap: false });
    const busyCount = segments.length - sorted.length;
    const room = 1 - slice * sorted.length;
    let x = 0;
    for (const seg of segments) {
      const share = seg.gap ? slice : busy > 0 ? ((seg.t1 - seg.t0) / busy) * room : room / busyCount;
      seg.x0 = x;
      x += share;
      seg.x1 = x;
    }
    const at = (offset) => {
      const o = Math.min(duration, Math.max(0, offset ?? 0));
      const seg = segments.find((s) => !s.gap && o <= s.t1) || segments[segments.length - 1];
      const span = seg.t1 - seg.t0;
      return span > 0 ? seg.x0 + ((o - seg.t0) / span) * (seg.x1 - seg.x0) : seg.x0;
    };
    return { at, segments };
  }

  // Tick times: each busy stretch's start (and inner ticks on wide ones), the end.
  function axisTicks(axis, duration) {
    const ticks = [];
    for (const seg of axis.segments) {
      if (seg.gap) continue;
      const parts = Math.max(1, Math.floor((seg.x1 - seg.x0) / 0.22));
      for (let i = 0; i < parts; i++) ticks.push(seg.t0 + ((seg.t1 - seg.t0) * i) / parts);
    }
    ticks.push(duration);
    const kept = [];
    for (const t of ticks) {
      const x = axis.at(t);
      if (!kept.length || x - axis.at(kept[kept.length - 1]) >= 0.09) kept.push(t);
    }
    return kept;
  }

  function gapBand(axis, gap, label) {
    const band = el("div", label, label ? "gap-band labelled" : "gap-band");
    const x0 = axis.at(gap.start), x1 = axis.at(gap.end);
    band.style.left = `${(x0 * 100).toFixed(3)}%`;
    band.style.width = `${((x1 - x0) * 100).toFixed(3)}%`;
    band.title = `idle ${seconds(gap.seconds)}`;
    return band;
  }

  function drawTrace(trace) {
    const duration = trace.duration > 0 ? trace.duration : 1e-3;
    const axis = timeAxis(duration, trace.gaps);
    const pct = (offset) => `${(axis.at(offset) * 100).toFixed(3)}%`;
    ui.traceSummary.textContent =
      `${trace.count} event(s) over ${seconds(trace.duration)} \u00b7 ${trace.lanes.length} lane(s) \u00b7 ` +
      `${trace.errors} handler error(s) \u00b7 ${trace.gaps.length} gap(s)` +
      (trace.orphans ? ` \u00b7 ${trace.orphans} with a missing parent` : "") +
      (trace.cycles ? ` \u00b7 ${trace.cycles} parent cycle(s) cut` : "") +
      (trace.truncated ? " \u00b7 newest events only" : "");
    ui.traceLanes.textContent = "";
    for (const lane of trace.lanes) {
      const tag = el("span", lane, "lane-tag");
      tag.style.setProperty("--hue", String(hue(lane)));
      ui.traceLanes.appendChild(tag);
    }
    ui.traceAxis.textContent = "";
    const ticks = el("div", null, "trace-track");
    for (const gap of trace.gaps) ticks.appendChild(gapBand(axis, gap, null));
    const times = axisTicks(axis, duration);
    times.forEach((t, i) => {
      const last = i === times.length - 1 && i > 0;
      const tick = el("span", `+${seconds(t)}`, i === 0 ? "tick first" : last ? "tick last" : "tick");
      tick.style.left = pct(t);
      ticks.appendChild(tick);
    });
    ui.traceAxis.appendChild(el("div", "event", "trace-label"));
    ui.traceAxis.appendChild(ticks);
    ui.traceRows.textContent = "";
    const nodes = flatten(trace.roots);
    const ends = subtreeEnds(nodes);
    for (const node of nodes) {
      const ev = node.event;
      const line = el("div", null, "trace-row");
      line.dataset.seq = String(ev.seq);
      if (node.errors.length) line.classList.add("has-error");
      const label = el("div", null, "trace-label");
      label.style.paddingLeft = `${0.4 + Math.min(node.depth, 12) * 1.1}rem`;
      label.appendChild(chip(ev.type));
      const lane = el("span", node.lane, "lane-tag small");
      lane.style.setProperty("--hue", String(hue(node.lane)));
      label.appendChild(lane);
      if (node.parent_missing) label.appendChild(el("span", "parent missing", "badge"));
      if (node.parent_cycle) label.appendChild(el("span", "parent cycle", "badge"));
      label.title = `#${ev.seq} ${ev.type} in ${node.lane} at +${seconds(node.offset ?? 0)}`;
      line.appendChild(label);
      const track = el("div", null, "trace-track");
      for (const gap of trace.gaps) track.appendChild(gapBand(axis, gap, null));
      const end = ends.get(node);
      if (node.children.length && end > (node.offset ?? 0)) {
        const span = el("div", null, "span-bar");
        span.style.left = pct(node.offset);
        span.style.width = `calc(${pct(end)} - ${pct(node.offset)})`;
        span.style.setProperty("--hue", String(hue(node.lane)));
        span.title = `caused events until +${seconds(end)}`;
        track.appendChild(span);
      }
      const dot = el("div", null, node.errors.length ? "dot error" : "dot");
      dot.style.left = pct(node.offset);
      dot.style.setProperty("--hue", String(hue(node.lane)));
      track.appendChild(dot);
      const flip = axis.at(node.offset) > 0.6;  // labels go left of late events
      const at = el("span", `+${seconds(node.offset ?? 0)}`, flip ? "at flip" : "at");
      at.style.left = pct(node.offset);
      track.appendChild(at);
      node.errors.forEach((err, i) => {
        const mark = el("span", `\u26a0 ${clip(err.error, 80)}`, flip ? "error-mark flip" : "error-mark");
        mark.title = `${err.handler} raised ${err.error}`;
        mark.style.left = pct(node.offset);
        if (i) mark.style.marginTop = `${i * 0.9}rem`;
        track.appendChild(mark);
      });
      line.appendChild(track);
      line.addEventListener("click", () => showDetail(ev));
      ui.traceRows.appendChild(line);
    }
    if (trace.gaps.length) {
      const legend = el("div", null, "trace-row gap-legend");
      legend.appendChild(el("div", "gaps", "trace-label muted"));
      const track = el("div", null, "trace-track");
      for (const gap of trace.gaps) track.appendChild(gapBand(axis, gap, `idle ${seconds(gap.seconds)}`));
      legend.appendChild(track);
      ui.traceRows.appendChild(legend);
    }
  }

  async function openTrace(query, title) {
    ui.traceTitle.textContent = title;
    ui.traceSummary.textContent = "loading\u2026";
    ui.traceRows.textContent = "";
    ui.trace.hidden = false;
    try {
      const resp = await fetch(`trace?${new URLSearchParams(query)}`, { cache: "no-store", credentials: "same-origin" });
      const body = await resp.json();
      if (!resp.ok) { ui.traceSummary.textContent = body.error || `HTTP ${resp.status}`; return; }
      drawTrace(body);
    } catch (err) {
      ui.traceSummary.textContent = `could not load the trace: ${err}`;
    }
  }

  function traceOf(ev) {
    if (ev.correlation_id) openTrace({ correlation_id: ev.correlation_id }, `Trace of run ${text(ev.correlation_id)}`);
    else openTrace({ event: ev.id }, `Trace of event #${ev.seq}`);
  }

  // --------------------------------------------------------------- events

  function forget() {
    // A new incarnation of the bus: its seqs mean other events.
    state.store = [];
    state.pending = [];
    state.held = 0;
    state.counts.clear();
    state.scopes = newNode("");
    state.sideDirty = true;
    state.lastSeq = null;
    ui.rows.textContent = "";
    while (ui.type.options.length > 1) ui.type.remove(1);
  }

  function onEvent(ev) {
    if (state.lastSeq !== null && ev.seq <= state.lastSeq) return; // never shown twice
    if (typeof ev.type !== "string") ev.type = text(ev.type);
    state.lastSeq = ev.seq;
    state.received++;
    ev._arrived = Date.now();
    state.store.push(ev);
    if (state.store.length > MAX_EVENTS * 1.2) state.store.splice(0, state.store.length - MAX_EVENTS);
    const count = state.counts.get(ev.type);
    if (count === undefined) addTypeOption(ev.type);
    state.counts.set(ev.type, (count || 0) + 1);
    addToTree(ev.scope);
    state.sideDirty = true;
    if (matches(ev)) {
      state.pending.push(ev);
      if (holding()) state.held++;
      if (state.pending.length > MAX_ROWS) state.pending.splice(0, state.pending.length - MAX_ROWS);
    }
    scheduleRender();
  }

  function onMessage(kind, data, id) {
    switch (kind) {
      case "hello":
        state.incarnation = data.incarnation;
        setStatus("live", "live");
        break;
      case "gap":
        state.gaps++;
        if (state.lastSeq === null || data.last > state.lastSeq) state.lastSeq = data.last;
        notice(`Missed events #${data.first}\u2013#${data.last} (${data.missed}): the server's history no longer holds them.`, "warn");
        break;
      case "dropped":
        state.dropped += data.dropped;
        notice(`${state.dropped} event(s) dropped: this page fell behind the bus.`, "warn", "dropped");
        break;
      case "reset":
        forget();
        state.incarnation = data.incarnation;
        notice("The server restarted (a new bus): showing its events from the start.", "warn", "reset");
        break;
      case "malformed":
        onEvent(data);
        break;
      default:
        onEvent(data);
    }
    if (id !== null && kind !== "hello") {
      const seq = Number(id);
      if (Number.isFinite(seq) && (state.lastSeq === null || seq > state.lastSeq)) state.lastSeq = seq;
    }
    scheduleRender();
  }

  function onBlock(block) {
    let id = null;
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line) continue;
      if (line[0] === ":") { ui.status.title = `last heartbeat ${new Date().toLocaleTimeString()}`; continue; }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") kind = value;
      else if (field === "data") data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) state.retryMs = Number(value);
    }
    if (!data.length) return;
    let payload;
    try {
      payload = JSON.parse(data.join("\n"));
    } catch (err) {
      notice(`Unreadable message (${kind}): ${err}`, "error");
      return;
    }
    onMessage(kind, payload, id);
  }

  // The stream is read with fetch() rather than EventSource: every message
  // is named after its event type, and EventSource cannot listen to "any
  // name". Reconnecting sends Last-Event-ID with the bus incarnation, so a
  // restarted server is told apart from a dropped connection.
  async function connect() {
    const headers = { Accept: "text/event-stream" };
    let url = "events";
    if (state.lastSeq === null || state.incarnation === null) url += `?replay=${REPLAY}`;
    else headers["Last-Event-ID"] = `${state.incarnation}:${state.lastSeq}`;
    let resp;
    try {
      resp = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
    } catch (err) {
      return retry("offline", "server unreachable, retrying", state.retryMs);
    }
    if (resp.status === 401) {
      setStatus("error", "access token required");
      notice("This dashboard needs its access token: open the URL printed by 'atlas-events serve'.", "error");
      return undefined;
    }
    if (resp.status === 503) return retry("busy", "server busy, retrying", 5000);
    if (!resp.ok || !resp.body) return retry("error", `HTTP ${resp.status}, retrying`, state.retryMs);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        if (buffer.indexOf("\n\n") < 0) continue;
        const blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        for (const block of blocks) onBlock(block);
      }
    } catch (err) {
      // connection lost: reconnect below
    }
    return retry("reconnecting", "reconnecting", state.retryMs);
  }

  function retry(kind, label, delay) {
    setStatus(kind, label);
    setTimeout(connect, delay);
  }

  // ---------------------------------------------------------------- wiring

  function showDetail(ev) {
    state.selected = ev;
    ui.detailTitle.textContent = `#${ev.seq} ${ev.type}`;
    const shown = { ...ev };
    delete shown._arrived;
    ui.detailJson.textContent = JSON.stringify(shown, null, 2);
    ui.detail.hidden = false;
  }

  ui.rows.addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    const ev = tr && rowEvent.get(tr);
    if (!ev) return;
    if (e.target.closest(".trace-link")) { traceOf(ev); return; }
    showDetail(ev);
  });
  ui.tableWrap.addEventListener("mouseenter", () => { state.hovering = true; });
  ui.tableWrap.addEventListener("mouseleave", () => { state.hovering = false; scheduleRender(); });
  ui.tableWrap.addEventListener("scroll", () => { if (ui.tableWrap.scrollTop <= 2) scheduleRender(); });
  ui.pausedBanner.addEventListener("click", () => { if (!state.paused) release(); });
  ui.detailClose.addEventListener("click", () => { ui.detail.hidden = true; });
  ui.detailTrace.addEventListener("click", () => { if (state.selected) traceOf(state.selected); });
  ui.traceClose.addEventListener("click", () => { ui.trace.hidden = true; });
  ui.trace.addEventListener("click", (e) => { if (e.target === ui.trace) ui.trace.hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") ui.trace.hidden = true; });
  ui.pause.addEventListener("click", () => {
    state.paused = !state.paused;
    ui.pause.textContent = state.paused ? "Resume" : "Pause";
    ui.pause.setAttribute("aria-pressed", String(state.paused));
    document.body.classList.toggle("paused", state.paused);
    render();
  });
  ui.clear.addEventListener("click", () => {
    const last = state.lastSeq;
    forget();
    state.lastSeq = last;   // still the same stream: do not replay it
    ui.type.value = "";
    readFilters();
    drawSide();
  });
  ui.type.addEventListener("change", readFilters);
  ui.scope.addEventListener("input", readFilters);
  ui.correlation.addEventListener("input", readFilters);
  ui.reset.addEventListener("click", () => {
    ui.type.value = "";
    ui.scope.value = "";
    ui.correlation.value = "";
    readFilters();
  });

  setInterval(drawSide, 1000);

  setStatus("connecting", "connecting");
  drawSide();
  pollStats();
  connect();
})();
