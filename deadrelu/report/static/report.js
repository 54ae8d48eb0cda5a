// deadrelu HTML report. Everything from the scan is set as text (textContent, attributes),
// never parsed as markup: site names come from model files and are untrusted.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("deadrelu-data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const SITES = DATA.sites;
  const DIFF = DATA.baseline !== undefined;
  // Above this many neurons the strip is one canvas instead of one element per neuron.
  const STRIP_DOM_MAX = 4096;
  const KIND_COLORS = {
    relu: "#1f77b4", relu6: "#17becf", hardtanh: "#0f8a8a", thresholded_relu: "#393b79",
    leaky_relu: "#9467bd", prelu: "#7b4ea3", rrelu: "#a98bd0", elu: "#ff7f0e",
    selu: "#e6550d", celu: "#fdae6b", gelu: "#2ca02c", silu: "#74c476", mish: "#31a354",
    softplus: "#8c6d31", hardswish: "#bcbd22", hardsigmoid: "#e377c2", sigmoid: "#d6616b",
    tanh: "#843c39",
  };
  const STATUS_NAMES = {
    a: "alive", d: "dead", s: "saturated", l: "dead-low", h: "dead-high",
    n: "negative-only", r: "rarely active", o: "dormant", u: "unobserved",
  };
  const DEAD_CODES = "dslh";

  // ---- small helpers
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function pct(x, digits) {
    if (x === null || x === undefined) return "–";
    return (100 * x).toFixed(digits === undefined ? 1 : digits) + "%";
  }
  function num(x) {
    if (x === null || x === undefined) return "–";
    const a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e4)) return x.toExponential(2);
    return String(Number(x.toPrecision(3)));
  }
  function kindColor(kind) { return KIND_COLORS[kind] || "#7f7f7f"; }
  // Activity fraction 0..1 -> white-to-blue ramp (dead neurons are drawn red elsewhere).
  function activityColor(f) {
    const t = Math.sqrt(Math.max(0, Math.min(1, f)));  // spreads the rarely-active end
    const r = Math.round(232 - 214 * t), g = Math.round(240 - 150 * t), b = Math.round(250 - 70 * t);
    return "rgb(" + r + "," + g + "," + b + ")";
  }
  function indexList(list, limit) {
    if (!list.length) return "none";
    const shown = list.slice(0, limit).join(", ");
    return list.length > limit ? shown + ", … (" + (list.length - limit) + " more)" : shown;
  }

  // ---- summary
  function renderSummary() {
    const box = document.getElementById("summary");
    const s = DATA.summary;
    box.appendChild(el("p", { class: "big" },
      s.dead + " of " + s.neurons + " neurons dead (" + pct(s.dead_rate, 2) + ") in " +
      s.sites_with_dead + " of " + s.sites + " sites"));
    for (const line of DATA.summary_lines) box.appendChild(el("p", {}, line));
    if (DATA.data.synthetic) {
      box.appendChild(el("p", { class: "synthetic" },
        "These figures come from SYNTHETIC inputs, not your data."));
    }
    if (DIFF) {
      const b = DATA.baseline;
      box.appendChild(el("p", { class: "big" },
        "Since the baseline (" + b.path + "): dead " + b.dead + " → " + s.dead + "; " +
        b.died + " neurons died, " + b.revived + " revived"));
    }
    const notes = document.getElementById("notes");
    for (const n of DATA.notes) notes.appendChild(el("li", {}, n));
    document.getElementById("footer").textContent =
      "deadrelu " + DATA.deadrelu_version + " · model " + DATA.model.path + " (" +
      DATA.model.format + ")" + (DATA.model.sha256 ? " sha256 " + DATA.model.sha256.slice(0, 16) + "…" : "") +
      " · eps " + DATA.settings.eps + ", tau " + DATA.settings.tau + ", min_active " + DATA.settings.min_active;
  }

  // ---- chart: dead rate and saturation per site, in execution order
  function renderLegend() {
    const kinds = [];
    for (const s of SITES) if (kinds.indexOf(s.kind) < 0) kinds.push(s.kind);
    const legend = document.getElementById("legend");
    for (const k of kinds) {
      const item = el("span", {});
      const sw = el("span", { class: "sw" });
      sw.style.background = kindColor(k);
      item.appendChild(sw);
      item.appendChild(document.createTextNode(k));
      legend.appendChild(item);
    }
    const sat = el("span", {}, "— saturation");
    legend.appendChild(sat);
    if (DIFF) legend.appendChild(el("span", {}, "▬ dead rate at the baseline"));
  }

  function renderChart() {
    const n = SITES.length;
    const left = 44, right = 12, top = 10, bottom = 34, height = 240;
    const wrap = document.getElementById("chart-wrap");
    const avail = Math.max(600, (wrap.clientWidth || 1100) - 24);  // room for a scrollbar
    const step = Math.max(3, (avail - left - right) / Math.max(n, 1));
    const width = left + right + step * n;
    const plotH = height - top - bottom;
    const y = (v) => top + plotH * (1 - v);
    const chart = svg("svg", { id: "chart", width: width, height: height,
      viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "dead rate and saturation per site" });
    // Layers, bottom to top: grid, bars, saturation line, click targets.
    const grid = svg("g"), bars = svg("g", { id: "bars" }), sat = svg("g"), hits = svg("g");
    for (const layer of [grid, bars, sat, hits]) chart.appendChild(layer);
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      grid.appendChild(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }));
      grid.appendChild(svg("text", { class: "axis", x: left - 6, y: y(v) + 4, "text-anchor": "end" }, pct(v, 0)));
    }
    const labelEvery = Math.max(1, Math.ceil(n / Math.floor((width - left - right) / 28)));
    const satPoints = [];
    SITES.forEach((s, i) => {
      const x = left + i * step;
      const bw = Math.min(48, Math.max(1, step * 0.78));  // 3 sites are not 3 billboards
      const h = plotH * s.dead_rate;
      bars.appendChild(svg("rect", { class: "bar", x: x + (step - bw) / 2, y: top + plotH - h,
        width: bw, height: h, fill: kindColor(s.kind), "data-site": String(i) }));
      if (DIFF && s.before.dead_rate !== null && s.before.dead_rate !== undefined) {
        const by = y(s.before.dead_rate);
        bars.appendChild(svg("line", { class: "before", x1: x + (step - bw) / 2, x2: x + (step + bw) / 2,
          y1: by, y2: by }));
      }
      if (s.saturation !== null) satPoints.push([x + step / 2, y(s.saturation)]);
      if (i % labelEvery === 0) {
        grid.appendChild(svg("text", { class: "axis", x: x + step / 2, y: height - bottom + 14,
          "text-anchor": "middle" }, String(i)));
      }
      const hit = svg("rect", { class: "hit", x: x, y: top, width: step, height: plotH,
        "data-site": String(i) });
      const tip = s.name + " (" + s.kind + ")\ndead " + s.dead + "/" + s.neurons + " (" +
        pct(s.dead_rate) + ")\nsaturation " + pct(s.saturation) +
        (DIFF && s.before.dead !== null ? "\nbaseline dead " + s.before.dead + "/" + s.before.neurons : "");
      hit.appendChild(svg("title", {}, tip));
      hit.addEventListener("click", () => select(i));
      hits.appendChild(hit);
    });
    if (satPoints.length) {
      sat.appendChild(svg("polyline", { class: "sat",
        points: satPoints.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ") }));
      if (satPoints.length <= 120) {
        for (const p of satPoints) sat.appendChild(svg("circle", { class: "satdot", cx: p[0], cy: p[1], r: 2 }));
      }
    }
    chart.appendChild(svg("text", { class: "axis", x: left + (width - left - right) / 2, y: height - 4,
      "text-anchor": "middle" }, "site (execution order; click for its neurons)"));
    wrap.appendChild(chart);
  }

  // ---- table
  const COLUMNS = [
    { key: "order", label: "#", value: (s) => s.order },
    { key: "name", label: "site", cls: "name", value: (s) => s.name, text: true },
    { key: "kind", label: "kind", cls: "kind", value: (s) => s.kind, text: true },
    { key: "neurons", label: "neurons", value: (s) => s.neurons },
    { key: "dead", label: "dead", cls: "dead", value: (s) => s.dead },
    { key: "dead_rate", label: "dead %", value: (s) => s.dead_rate },
    { key: "dormant", label: "dormant", value: (s) => s.dormant },
    { key: "saturation", label: "saturation", value: (s) => s.saturation },
    { key: "margin", label: "margin", value: (s) => s.margin },
    { key: "activity", label: "active", value: (s) => s.activity, text: true, nosort: true },
  ];
  if (DIFF) {
    COLUMNS.push({ key: "before", label: "dead before", value: (s) => s.before.dead });
    COLUMNS.push({ key: "died", label: "died", value: (s) => s.before.died.length });
    COLUMNS.push({ key: "revived", label: "revived", value: (s) => s.before.revived.length });
  }
  let sortKey = "order", sortDir = 1;
  const rows = [];

  function cellText(col, s) {
    const v = col.value(s);
    if (col.key === "dead_rate" || col.key === "saturation") return pct(v);
    if (col.key === "margin") return num(v);
    if (col.key === "before") {
      if (s.before.status === "added") return "new site";
      return s.before.status === "resized" ? v + " (resized)" : String(v);
    }
    return v === null || v === undefined ? "–" : String(v);
  }

  function renderTable() {
    const thead = document.querySelector("#sites thead");
    const tr = el("tr");
    for (const col of COLUMNS) {
      const th = el("th", { class: col.cls || "", "data-key": col.key }, col.label);
      if (!col.nosort) th.addEventListener("click", () => sortBy(col.key));
      tr.appendChild(th);
    }
    thead.appendChild(tr);
    const tbody = document.querySelector("#sites tbody");
    SITES.forEach((s, i) => {
      const row = el("tr", { "data-site": String(i) });
      if (s.dead) row.classList.add("has-dead");
      for (const col of COLUMNS) {
        const td = el("td", { class: col.cls || "" });
        if (col.key === "kind") {
          const dot = el("span", { class: "kind-dot" });
          dot.style.background = kindColor(s.kind);
          td.appendChild(dot);
          td.appendChild(document.createTextNode(s.kind));
        } else if (col.key === "dead_rate") {
          td.appendChild(document.createTextNode(pct(s.dead_rate)));
          const mini = el("span", { class: "mini" });
          const fill = el("span");
          fill.style.width = (100 * s.dead_rate).toFixed(1) + "%";
          mini.appendChild(fill);
          td.appendChild(mini);
        } else {
          td.textContent = cellText(col, s);
        }
        row.appendChild(td);
      }
      row.addEventListener("click", () => select(i));
      rows.push(row);
      tbody.appendChild(row);
    });
    document.getElementById("filter").addEventListener("input", applyFilter);
    document.getElementById("dead-only").addEventListener("change", applyFilter);
    applyFilter();
    if (DIFF && DATA.baseline.removed.length) {
      const box = document.getElementById("removed");
      box.appendChild(el("h3", {}, "Sites in the baseline only (removed)"));
      const ul = el("ul");
      for (const r of DATA.baseline.removed) {
        ul.appendChild(el("li", {}, r.name + " (" + r.kind + ", " + r.neurons + " neurons, " + r.dead + " dead)"));
      }
      box.appendChild(ul);
    }
  }

  function sortBy(key) {
    sortDir = key === sortKey ? -sortDir : (key === "name" || key === "kind" || key === "order" ? 1 : -1);
    sortKey = key;
    const col = COLUMNS.find((c) => c.key === key);
    const order = SITES.map((s, i) => i);
    order.sort((a, b) => {
      let va = col.value(SITES[a]), vb = col.value(SITES[b]);
      if (va === null || va === undefined) va = col.text ? "" : -Infinity;
      if (vb === null || vb === undefined) vb = col.text ? "" : -Infinity;
      const c = col.text ? String(va).localeCompare(String(vb)) : (va < vb ? -1 : va > vb ? 1 : 0);
      return c * sortDir || a - b;
    });
    const tbody = document.querySelector("#sites tbody");
    for (const i of order) tbody.appendChild(rows[i]);
    for (const th of document.querySelectorAll("#sites th")) {
      th.classList.remove("sorted-asc", "sorted-desc");
      if (th.getAttribute("data-key") === key) th.classList.add(sortDir > 0 ? "sorted-asc" : "sorted-desc");
    }
  }

  function applyFilter() {
    const q = document.getElementById("filter").value.trim().toLowerCase();
    const deadOnly = document.getElementById("dead-only").checked;
    let shown = 0;
    SITES.forEach((s, i) => {
      const match = (!q || s.name.toLowerCase().indexOf(q) >= 0 || s.kind.toLowerCase().indexOf(q) >= 0) &&
        (!deadOnly || s.dead > 0);
      rows[i].hidden = !match;
      if (match) shown++;
    });
    document.getElementById("shown").textContent = shown + " of " + SITES.length + " sites shown";
  }

  // ---- per-site detail (built on demand: a 100k-neuron model costs nothing until clicked)
  function select(i) {
    for (const r of document.querySelectorAll("#sites tr.selected")) r.classList.remove("selected");
    for (const h of document.querySelectorAll("#chart .hit.selected")) h.classList.remove("selected");
    rows[i].classList.add("selected");
    const hit = document.querySelector('#chart .hit[data-site="' + i + '"]');
    if (hit) hit.classList.add("selected");
    renderDetail(i);
  }

  function neuronText(s, j) {
    const code = s.status[j];
    let t = "neuron " + j + ": " + STATUS_NAMES[code] + ", active on " + pct(s.act[j] / 10000, 2) +
      " of its elements, largest pre-activation " + num(s.pre[j]);
    if (DIFF) {
      if (s.before.died.indexOf(j) >= 0) t += " — died since the baseline";
      if (s.before.revived.indexOf(j) >= 0) t += " — revived since the baseline";
    }
    return t;
  }

  function renderDetail(i) {
    const s = SITES[i];
    const section = document.getElementById("detail-section");
    const box = document.getElementById("detail");
    box.textContent = "";
    section.hidden = false;
    const close = el("button", { class: "close", type: "button" }, "close");
    close.addEventListener("click", () => { section.hidden = true; });
    box.appendChild(close);
    box.appendChild(el("h2", { id: "detail-title" }, s.name));
    const figs = el("div", { class: "figures" });
    const items = [
      ["kind", s.kind], ["neurons", s.neurons], ["channel axis", s.channel_axis],
      [s.dead_word, s.dead + " (" + pct(s.dead_rate) + ")"], ["dormant", s.dormant],
      ["rarely active", s.rarely_active], ["saturation", pct(s.saturation)],
      ["margin", num(s.margin)], ["samples", s.samples],
    ];
    if (s.negative_only) items.push(["negative-only", s.negative_only]);
    if (s.cap_fraction !== null) items.push(["at cap", pct(s.cap_fraction)]);
    if (s.nan) items.push(["NaN/Inf elements", s.nan]);
    if (s.module && s.module !== s.name) items.push(["module", s.module]);
    for (const [k, v] of items) {
      const span = el("span", {}, k + " ");
      span.appendChild(el("b", {}, v));
      figs.appendChild(span);
    }
    box.appendChild(figs);
    const deadIdx = [];
    for (let j = 0; j < s.neurons; j++) if (DEAD_CODES.indexOf(s.status[j]) >= 0) deadIdx.push(j);
    const p = el("p", { class: "idx" }, s.dead_word + " neurons: " + indexList(deadIdx, 200));
    box.appendChild(p);
    if (DIFF) {
      const b = s.before;
      const ch = el("p", { class: "changes" });
      if (b.status === "added") ch.textContent = "This site is not in the baseline.";
      else if (b.status === "resized") ch.textContent = "Resized since the baseline (" + b.neurons + " → " + s.neurons + " neurons): dead " + b.dead + " → " + s.dead + ".";
      else {
        ch.appendChild(document.createTextNode("Baseline: " + b.dead + " dead → now " + s.dead + ". "));
        ch.appendChild(el("span", { class: "died" }, "Died: " + indexList(b.died, 100) + ". "));
        ch.appendChild(el("span", { class: "revived" }, "Revived: " + indexList(b.revived, 100) + "."));
      }
      box.appendChild(ch);
    }
    box.appendChild(el("h3", {}, "Neurons (colour: fraction of elements active; red: " + s.dead_word +
      (DIFF ? "; black ring: died, green ring: revived" : "") + ")"));
    const hover = el("div", { id: "hover" }, "hover a neuron");
    if (s.neurons <= STRIP_DOM_MAX) box.appendChild(domStrip(s, hover));
    else box.appendChild(canvasStrip(s, hover));
    box.appendChild(hover);
    const hists = el("div", { class: "hists" });
    hists.appendChild(activityHistogram(s));
    hists.appendChild(marginHistogram(s));
    box.appendChild(hists);
    section.scrollIntoView({ block: "nearest" });
  }

  function neuronMarks(s) {
    const died = new Set(DIFF ? s.before.died : []);
    const revived = new Set(DIFF ? s.before.revived : []);
    return { died: died, revived: revived };
  }

  function domStrip(s, hover) {
    const strip = el("div", { class: "strip", id: "strip", "data-neurons": String(s.neurons) });
    const marks = neuronMarks(s);
    const frag = document.createDocumentFragment();
    for (let j = 0; j < s.neurons; j++) {
      const code = s.status[j];
      const c = document.createElement("div");
      c.className = "cell";
      if (DEAD_CODES.indexOf(code) >= 0) c.classList.add("dead");
      else if (code === "u") c.classList.add("unobserved");
      else c.style.background = activityColor(s.act[j] / 10000);
      if (marks.died.has(j)) c.classList.add("died");
      if (marks.revived.has(j)) c.classList.add("revived");
      c.dataset.n = String(j);
      frag.appendChild(c);
    }
    strip.appendChild(frag);
    // One listener for every cell; titles are made when hovered, not for all up front.
    strip.addEventListener("mouseover", (ev) => {
      const t = ev.target;
      if (t.dataset && t.dataset.n !== undefined) {
        const text = neuronText(s, Number(t.dataset.n));
        t.title = text;
        hover.textContent = text;
      }
    });
    return strip;
  }

  function canvasStrip(s, hover) {
    const cell = s.neurons > 40000 ? 3 : 4;
    const width = Math.min(1140, Math.max(300, (document.getElementById("detail").clientWidth || 1100) - 10));
    const cols = Math.floor(width / cell);
    const rowsN = Math.ceil(s.neurons / cols);
    const canvas = el("canvas", { class: "strip-canvas", id: "strip", width: String(cols * cell),
      height: String(rowsN * cell), "data-neurons": String(s.neurons), "data-cell": String(cell),
      "data-cols": String(cols) });
    const ctx = canvas.getContext("2d");
    const marks = neuronMarks(s);
    for (let j = 0; j < s.neurons; j++) {
      const code = s.status[j];
      ctx.fillStyle = DEAD_CODES.indexOf(code) >= 0 ? "#d62728" : code === "u" ? "#9e9e9e" : activityColor(s.act[j] / 10000);
      const x = (j % cols) * cell, y = Math.floor(j / cols) * cell;
      ctx.fillRect(x, y, cell, cell);
      if (marks.died.has(j) || marks.revived.has(j)) {
        ctx.strokeStyle = marks.died.has(j) ? "#000" : "#2ca02c";
        ctx.strokeRect(x + 0.5, y + 0.5, cell - 1, cell - 1);
      }
    }
    canvas.addEventListener("mousemove", (ev) => {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor((ev.clientY - r.top) / cell) * cols + Math.floor((ev.clientX - r.left) / cell);
      if (j >= 0 && j < s.neurons) hover.textContent = neuronText(s, j);
    });
    return canvas;
  }

  // A histogram as SVG: stacks[i] lists the [count, color, label] parts of bin i, bottom
  // first (part 0 is the dead neurons).
  function histogram(title, edges, stacks, xlabel, id) {
    const w = 520, h = 180, left = 40, bottom = 30, top = 20, right = 10;
    const n = stacks.length;
    let max = 1;
    for (const st of stacks) max = Math.max(max, st.reduce((a, b) => a + b[0], 0));
    const plotW = w - left - right, plotH = h - top - bottom;
    const g = svg("svg", { class: "hist", id: id, width: w, height: h, viewBox: "0 0 " + w + " " + h });
    g.appendChild(svg("text", { class: "t", x: left, y: 13 }, title));
    g.appendChild(svg("text", { class: "axis", x: left - 5, y: top + 4, "text-anchor": "end" }, String(max)));
    g.appendChild(svg("text", { class: "axis", x: left - 5, y: top + plotH, "text-anchor": "end" }, "0"));
    const bw = plotW / n;
    stacks.forEach((st, i) => {
      let base = 0;
      st.forEach(([count, color, label], k) => {
        if (!count) return;
        const bh = plotH * count / max;
        const r = svg("rect", { class: "hbar", x: left + i * bw + 0.5, y: top + plotH - base - bh,
          width: Math.max(1, bw - 1), height: bh, fill: color, "data-count": String(count),
          "data-stack": String(k) });
        r.appendChild(svg("title", {}, label + ": " + count + " neurons in [" + edges[i] + ", " + edges[i + 1] + ")"));
        g.appendChild(r);
        base += bh;
      });
    });
    g.appendChild(svg("line", { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, stroke: "#999" }));
    g.appendChild(svg("text", { class: "axis", x: left, y: h - 14, "text-anchor": "start" }, String(edges[0])));
    g.appendChild(svg("text", { class: "axis", x: left + plotW, y: h - 14, "text-anchor": "end" }, String(edges[n])));
    g.appendChild(svg("text", { class: "axis", x: left + plotW / 2, y: h - 2, "text-anchor": "middle" }, xlabel));
    return g;
  }

  function activityHistogram(s) {
    const bins = 20;
    const stacks = [];
    for (let b = 0; b < bins; b++) stacks.push([[0, "#d62728", s.dead_word], [0, "#3a7dc9", "alive"]]);
    for (let j = 0; j < s.neurons; j++) {
      const code = s.status[j];
      if (code === "u") continue;
      const f = s.act[j] / 10000;
      const b = Math.min(bins - 1, Math.floor(f * bins));
      stacks[b][DEAD_CODES.indexOf(code) >= 0 ? 0 : 1][0]++;
    }
    const edges = [];
    for (let b = 0; b <= bins; b++) edges.push(pct(b / bins, 0));
    return histogram("Activity: fraction of each neuron's elements that are active", edges, stacks,
      "active fraction", "hist-activity");
  }

  function marginHistogram(s) {
    const bins = 24;
    let lo = Infinity, hi = -Infinity;
    for (const v of s.pre) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo === Infinity) { lo = 0; hi = 1; }
    if (hi === lo) { hi = lo + 1; }
    const stacks = [];
    for (let b = 0; b < bins; b++) stacks.push([[0, "#d62728", s.dead_word], [0, "#3a7dc9", "alive"]]);
    for (let j = 0; j < s.neurons; j++) {
      const v = s.pre[j];
      if (v === null) continue;
      const b = Math.min(bins - 1, Math.floor((v - lo) / (hi - lo) * bins));
      stacks[b][DEAD_CODES.indexOf(s.status[j]) >= 0 ? 0 : 1][0]++;
    }
    const edges = [];
    for (let b = 0; b <= bins; b++) edges.push(num(lo + (hi - lo) * b / bins));
    const g = histogram("Margin: each neuron's largest pre-activation (how far the dead are from firing)",
      edges, stacks, "largest pre-activation", "hist-margin");
    if (lo < 0 && hi > 0) {  // where a ReLU starts to fire
      const x = 40 + 470 * (0 - lo) / (hi - lo);
      g.appendChild(svg("line", { class: "zero", x1: x, x2: x, y1: 20, y2: 150, stroke: "#333",
        "stroke-dasharray": "3,3" }));
      g.appendChild(svg("text", { class: "axis", x: x + 3, y: 30 }, "0"));
    }
    return g;
  }

  renderSummary();
  renderLegend();
  renderChart();
  renderTable();
  document.body.setAttribute("data-ready", "1");
})();
