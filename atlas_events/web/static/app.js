// atlas-events dashboard. Plain ES2020, no dependencies, no CDN.
// Every piece of server data reaches the page through textContent, never
// innerHTML: an event payload can hold any text and is shown as text.
"use strict";

(() => {
  const REPLAY = 500;        // recent events asked for on first load
  const MAX_EVENTS = 5000;   // events kept in memory (for re-filtering)
  const MAX_ROWS = 1000;     // rows kept in the timeline
  const MAX_NOTICES = 5;
  const STATS_EVERY_MS = 1000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    busName: $("bus-name"), status: $("status"), events: $("count-events"), rate: $("rate"),
    dropped: $("count-dropped"), gaps: $("count-gaps"), pause: $("pause"), clear: $("clear"),
    type: $("filter-type"), scope: $("filter-scope"), correlation: $("filter-correlation"),
    reset: $("filter-reset"), typeCounts: $("type-counts").tBodies[0], tree: $("scope-tree"),
    health: $("health"), sinks: $("sinks").tBodies[0], notices: $("notices"),
    pausedBanner: $("paused-banner"), rows: $("timeline").tBodies[0], empty: $("empty"),
    detail: $("detail"), detailTitle: $("detail-title"), detailJson: $("detail-json"),
    detailClose: $("detail-close"),
  };

  const state = {
    store: [],             // received events, oldest first
    lastSeq: null,         // resume point (the SSE id of the last message)
    received: 0,
    dropped: 0,
    gaps: 0,
    paused: false,
    pausedNew: 0,
    pending: [],           // events waiting to be drawn
    counts: new Map(),     // type -> count
    scopes: newNode(""),   // scope tree with counts
    filter: { type: "", scope: [], correlation: "" },
    retryMs: 2000,
    sideDirty: true,
    renderQueued: false,
  };
  const rowEvent = new WeakMap();

  // ------------------------------------------------------------ helpers

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function clip(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "\u2026" : text;
  }

  function pad(n, width) {
    return String(n).padStart(width, "0");
  }

  function clock(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
  }

  function hue(text) {
    let h = 0;
    for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
    return h % 360;
  }

  function scopeLabel(scope) {
    return scope.length ? scope.join("/") : "(root)";
  }

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.status.textContent = text;
  }

  function notice(text, kind, key) {
    // A notice with a key replaces the previous one with the same key.
    if (key) {
      for (const li of ui.notices.children) {
        if (li.dataset.key === key) { li.textContent = text; return; }
      }
    }
    const li = el("li", text, kind || "info");
    if (key) li.dataset.key = key;
    ui.notices.prepend(li);
    while (ui.notices.children.length > MAX_NOTICES) ui.notices.lastElementChild.remove();
  }

  // -------------------------------------------------------------- filters

  function readFilters() {
    state.filter = {
      type: ui.type.value,
      scope: ui.scope.value.split("/").map((s) => s.trim()).filter(Boolean),
      correlation: ui.correlation.value.trim(),
    };
    redraw();
  }

  function matches(ev) {
    const f = state.filter;
    if (f.type && ev.type !== f.type) return false;
    for (let i = 0; i < f.scope.length; i++) {
      if (ev.scope[i] !== f.scope[i]) return false;
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
    tr.appendChild(el("td", ev.seq, "num"));
    tr.appendChild(el("td", clock(ev.timestamp), "time"));
    tr.appendChild(el("td", scopeLabel(ev.scope), "scope"));
    const typeCell = el("td", null, "type");
    const chip = el("span", ev.type, "chip");
    chip.style.setProperty("--hue", String(hue(ev.type)));
    typeCell.appendChild(chip);
    tr.appendChild(typeCell);
    tr.appendChild(el("td", ev.source || "", "source"));
    tr.appendChild(el("td", ev.correlation_id || "", "correlation"));
    const data = el("td", null, "data");
    data.appendChild(el("code", ev.data === null ? "" : clip(JSON.stringify(ev.data), 160)));
    if (ev.truncated) data.appendChild(el("span", "truncated", "badge"));
    tr.appendChild(data);
    rowEvent.set(tr, ev);
    return tr;
  }

  function scheduleRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    setTimeout(render, 16);
  }

  function render() {
    state.renderQueued = false;
    const pending = state.pending;
    state.pending = [];
    if (pending.length) {
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
    if (state.paused) {
      ui.pausedBanner.hidden = false;
      ui.pausedBanner.textContent = `Paused: ${state.pausedNew} new event(s) not shown yet.`;
    } else {
      ui.pausedBanner.hidden = true;
    }
  }

  function redraw() {
    ui.rows.textContent = "";
    state.pending = state.store.filter(matches).slice(-MAX_ROWS);
    state.pausedNew = 0;
    render();
  }

  // -------------------------------------------------------------- sidebar

  function newNode(name) {
    return { name, count: 0, children: new Map() };
  }

  function addToTree(scope) {
    let node = state.scopes;
    node.count++;
    for (const part of scope) {
      let child = node.children.get(part);
      if (!child) { child = newNode(part); node.children.set(part, child); }
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
    if (!state.sideDirty) return;
    state.sideDirty = false;
    const types = [...state.counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    ui.typeCounts.textContent = "";
    for (const [type, count] of types) {
      const tr = el("tr");
      const name = el("td");
      const button = el("button", type, "link chip");
      button.type = "button";
      button.style.setProperty("--hue", String(hue(type)));
      button.addEventListener("click", () => setFilter("type", type));
      name.appendChild(button);
      tr.appendChild(name);
      tr.appendChild(el("td", count, "num"));
      ui.typeCounts.appendChild(tr);
    }
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

  function drawStats(stats) {
    ui.busName.textContent = stats.name ? `\u2014 ${stats.name}` : "";
    document.title = `atlas-events \u2014 ${stats.name || "dashboard"}`;
    const dash = stats.dashboard || {};
    const rows = [
      ["published", stats.published],
      ["delivered", stats.delivered],
      ["history", `${stats.history_size} / ${stats.history_limit}`],
      ["subscribers", Object.values(stats.subscribers || {}).reduce((a, b) => a + b, 0)],
      ["handler errors", stats.handler_errors],
      ["dropped by middleware", stats.dropped_by_middleware],
      ["dropped by stream queues", stats.stream_events_dropped],
      ["dashboard clients", `${dash.clients} / ${dash.max_clients}`],
    ];
    ui.health.textContent = "";
    for (const [label, value] of rows) {
      const div = el("div");
      div.appendChild(el("dt", label));
      div.appendChild(el("dd", value));
      ui.health.appendChild(div);
    }
    ui.sinks.textContent = "";
    for (const sink of stats.sinks || []) {
      const tr = el("tr");
      tr.appendChild(el("td", clip(sink.name || sink.kind || "?", 28)));
      tr.appendChild(el("td", `${sink.depth} / ${sink.capacity}`, "num"));
      tr.appendChild(el("td", sink.dropped, sink.dropped ? "num warn" : "num"));
      ui.sinks.appendChild(tr);
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

  // --------------------------------------------------------------- events

  function onEvent(ev) {
    if (state.lastSeq !== null && ev.seq <= state.lastSeq) return; // never shown twice
    state.lastSeq = ev.seq;
    state.received++;
    state.store.push(ev);
    if (state.store.length > MAX_EVENTS * 1.2) state.store.splice(0, state.store.length - MAX_EVENTS);
    const count = state.counts.get(ev.type);
    if (count === undefined) addTypeOption(ev.type);
    state.counts.set(ev.type, (count || 0) + 1);
    addToTree(ev.scope);
    state.sideDirty = true;
    if (state.paused) {
      state.pausedNew++;
    } else if (matches(ev)) {
      state.pending.push(ev);
      if (state.pending.length > MAX_ROWS) state.pending.splice(0, state.pending.length - MAX_ROWS);
    }
    scheduleRender();
  }

  function onMessage(kind, data, id) {
    switch (kind) {
      case "hello":
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
        notice("The server restarted: showing its events from the start.", "warn");
        state.lastSeq = 0;
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
  // name". Reconnecting sends Last-Event-ID, as EventSource would.
  async function connect() {
    const headers = { Accept: "text/event-stream" };
    let url = "events";
    if (state.lastSeq === null) url += `?replay=${REPLAY}`;
    else headers["Last-Event-ID"] = String(state.lastSeq);
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

  function retry(kind, text, delay) {
    setStatus(kind, text);
    setTimeout(connect, delay);
  }

  // ---------------------------------------------------------------- wiring

  ui.rows.addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    const ev = tr && rowEvent.get(tr);
    if (!ev) return;
    ui.detailTitle.textContent = `#${ev.seq} ${ev.type}`;
    ui.detailJson.textContent = JSON.stringify(ev, null, 2);
    ui.detail.hidden = false;
  });
  ui.detailClose.addEventListener("click", () => { ui.detail.hidden = true; });
  ui.pause.addEventListener("click", () => {
    state.paused = !state.paused;
    ui.pause.textContent = state.paused ? "Resume" : "Pause";
    ui.pause.setAttribute("aria-pressed", String(state.paused));
    document.body.classList.toggle("paused", state.paused);
    if (state.paused) render(); else redraw();
  });
  ui.clear.addEventListener("click", () => {
    state.store = [];
    state.pending = [];
    state.counts.clear();
    state.scopes = newNode("");
    state.sideDirty = true;
    while (ui.type.options.length > 1) ui.type.remove(1);
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

  let lastCount = 0;
  setInterval(() => {
    ui.rate.textContent = String(state.received - lastCount);
    lastCount = state.received;
  }, 1000);
  setInterval(drawSide, 500);

  setStatus("connecting", "connecting");
  drawSide();
  pollStats();
  connect();
})();
