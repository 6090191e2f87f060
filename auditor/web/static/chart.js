// Stacked bars of refusals per time bucket (and a campaign's rates and coverage over time), drawn as SVG by hand: no library, nothing from a CDN.
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

  // -- over a campaign's time (fuzz --serve): x is seconds since the start --------------------------
  function frame(box, legend, tmax, peak, ylabel, rightPeak) {
    box.replaceChildren();
    legend.replaceChildren();
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
    box.appendChild(svg);
    const plotW = W - LEFT - RIGHT - (rightPeak === undefined ? 0 : 46), plotH = H - TOP - BOTTOM;
    svg.appendChild(el("line", { x1: LEFT, y1: TOP + plotH, x2: LEFT + plotW, y2: TOP + plotH, stroke: "#999" }));
    svg.appendChild(el("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: TOP + plotH, stroke: "#999" }));
    const ticks = (x, anchor, top) => {
      for (const f of [0, 0.5, 1]) {
        const t = el("text", { x: x, y: TOP + plotH - f * plotH + 4, "text-anchor": anchor, "font-size": 10, fill: "#555" });
        t.textContent = (f * top).toLocaleString("en", { maximumFractionDigits: top < 10 ? 1 : 0 });
        svg.appendChild(t);
      }
    };
    ticks(LEFT - 4, "end", peak);
    if (rightPeak !== undefined) {
      svg.appendChild(el("line", { x1: LEFT + plotW, y1: TOP, x2: LEFT + plotW, y2: TOP + plotH, stroke: "#999" }));
      ticks(LEFT + plotW + 4, "start", rightPeak);
    }
    for (const f of [0, 0.5, 1]) {
      const t = el("text", { x: LEFT + f * plotW, y: H - 18, "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle", "font-size": 10, fill: "#555" });
      t.textContent = (f * tmax).toLocaleString("en", { maximumFractionDigits: 1 }) + " s";
      svg.appendChild(t);
    }
    const unit = el("text", { x: LEFT + plotW / 2, y: H - 4, "text-anchor": "middle", "font-size": 10, fill: "#555" });
    unit.textContent = ylabel;
    svg.appendChild(unit);
    return { svg: svg, x: (t) => LEFT + (t / tmax) * plotW, y: (v, top) => TOP + plotH - (v / top) * plotH, plotH: plotH };
  }

  function swatch(legend, colour, text) {
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = colour;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(text));
    legend.appendChild(item);
  }

  function empty(box, legend, text) {
    box.replaceChildren();
    legend.replaceChildren();
    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
    const t = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#777" });
    t.textContent = text;
    svg.appendChild(t);
    box.appendChild(svg);
    return 0;
  }

  // Stacked bars: per interval between two samples, each class's descriptors per second (a bar as wide as its interval).
  function rates(box, legend, data) {
    const n = data.t.length;
    if (!n || !data.classes.length) return empty(box, legend, "no batches yet");
    const tmax = Math.max(data.t[n - 1], 1e-3);
    const peak = Math.max(1, ...data.rate);
    const f = frame(box, legend, tmax, peak, "descriptors per second (each bar: the time between two samples)");
    const base = new Array(n).fill(0);
    let drawn = 0;
    data.classes.forEach((s, k) => {
      const colour = COLOURS[k % COLOURS.length];
      s.rates.forEach((r, i) => {
        if (!r) return;
        const x0 = f.x(i ? data.t[i - 1] : 0), x1 = f.x(data.t[i]);
        const h = (r / peak) * f.plotH;
        const rect = el("rect", { x: x0, y: f.y(base[i], peak) - h, width: Math.max(1, x1 - x0 - 1), height: Math.max(0.5, h), fill: colour, class: "bar" });
        rect.dataset.key = s.key;
        const tip = el("title");
        tip.textContent = `${s.key}: ${r.toLocaleString("en")} /s`;
        rect.appendChild(tip);
        f.svg.appendChild(rect);
        base[i] += r;
        drawn += 1;
      });
      swatch(legend, colour, `${s.key} (${s.total.toLocaleString("en")})`);
    });
    return drawn;
  }

  // Lines over time: each series {key, values, right} against the left axis, or the right one when ``right``.
  function lines(box, legend, t, series, ylabel) {
    const n = t.length;
    const shown = series.filter((s) => s.values.some((v) => v !== null));
    if (!n || !shown.length) return empty(box, legend, "nothing yet");
    const tmax = Math.max(t[n - 1], 1e-3);
    const top = (s) => Math.max(1, ...s.values.filter((v) => v !== null));
    const left = shown.filter((s) => !s.right), right = shown.filter((s) => s.right);
    const lpeak = left.length ? Math.max(...left.map(top)) : 1, rpeak = right.length ? Math.max(...right.map(top)) : undefined;
    const f = frame(box, legend, tmax, lpeak, ylabel, rpeak);
    let drawn = 0;
    shown.forEach((s, k) => {
      const colour = COLOURS[(k * 2 + 2) % COLOURS.length];
      const peak = s.right ? rpeak : lpeak;
      const points = [];
      s.values.forEach((v, i) => { if (v !== null) points.push(`${f.x(t[i]).toFixed(1)},${f.y(v, peak).toFixed(1)}`); });
      if (points.length === 1) points.push(points[0]);
      const line = el("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2, class: "line" });
      line.dataset.key = s.key;
      f.svg.appendChild(line);
      drawn += 1;
      swatch(legend, colour, `${s.key}${s.right ? " (right axis)" : ""}: ${s.values[n - 1] === null ? "–" : s.values[n - 1].toLocaleString("en")}`);
    });
    return drawn;
  }

  window.AuditChart = { draw: draw, rates: rates, lines: lines };
})();
