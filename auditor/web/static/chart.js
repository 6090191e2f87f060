// Stacked bars of refusals per time bucket, drawn as SVG by hand: no library, nothing from a CDN.
// Every label is set with textContent: a key (a tenant's name comes from the log) is never parsed as markup.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"];
  const W = 900, H = 260, LEFT = 56, RIGHT = 10, TOP = 10, BOTTOM = 34;

  function el(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function seconds(ns) {
    const s = ns / 1e9;
    if (s >= 1) return s.toLocaleString("en", { maximumFractionDigits: 3 }) + " s";
    if (s >= 1e-3) return (s * 1e3).toLocaleString("en", { maximumFractionDigits: 3 }) + " ms";
    return (s * 1e6).toLocaleString("en", { maximumFractionDigits: 3 }) + " µs";
  }

  function draw(box, legend, data) {
    box.replaceChildren();
    legend.replaceChildren();
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", id: "chart-svg" });
    box.appendChild(svg);
    if (!data.series.length) {
      const t = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#777" });
      t.textContent = "no records match";
      svg.appendChild(t);
      return 0;
    }
    const n = data.buckets;
    const totals = new Array(n).fill(0);
    for (const s of data.series) s.counts.forEach((c, i) => { totals[i] += c; });
    const peak = Math.max(1, ...totals);
    const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    const bw = plotW / n;
    // axes and a few ticks
    svg.appendChild(el("line", { x1: LEFT, y1: TOP + plotH, x2: W - RIGHT, y2: TOP + plotH, stroke: "#999" }));
    svg.appendChild(el("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: TOP + plotH, stroke: "#999" }));
    for (const f of [0, 0.5, 1]) {
      const y = TOP + plotH - f * plotH;
      const t = el("text", { x: LEFT - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#555" });
      t.textContent = String(Math.round(f * peak));
      svg.appendChild(t);
    }
    const first = el("text", { x: LEFT, y: H - 18, "font-size": 10, fill: "#555" });
    first.textContent = data.start;
    svg.appendChild(first);
    const last = el("text", { x: W - RIGHT, y: H - 18, "text-anchor": "end", "font-size": 10, fill: "#555" });
    last.textContent = "+" + seconds(n * data.bucket_ns);
    svg.appendChild(last);
    const unit = el("text", { x: LEFT + plotW / 2, y: H - 4, "text-anchor": "middle", "font-size": 10, fill: "#555" });
    unit.textContent = "refusals per " + seconds(data.bucket_ns);
    svg.appendChild(unit);
    // bars, stacked
    const base = new Array(n).fill(0);
    let drawn = 0;
    data.series.forEach((s, k) => {
      const colour = COLOURS[k % COLOURS.length];
      s.counts.forEach((c, i) => {
        if (!c) return;
        const h = (c / peak) * plotH;
        const y = TOP + plotH - (base[i] / peak) * plotH - h;
        const r = el("rect", { x: LEFT + i * bw, y: y, width: Math.max(1, bw - 1), height: Math.max(0.5, h), fill: colour, class: "bar" });
        r.dataset.key = s.key;
        r.dataset.count = String(c);
        const tip = el("title");
        tip.textContent = `${s.key}: ${c}`;
        r.appendChild(tip);
        svg.appendChild(r);
        base[i] += c;
        drawn += 1;
      });
      const item = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colour;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(`${s.key} (${s.total.toLocaleString("en")})`));
      legend.appendChild(item);
    });
    return drawn;
  }

  window.AuditChart = { draw: draw };
})();
