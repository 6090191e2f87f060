// The campaign view of `nic-sandbox fuzz --serve`: per-class counts and rates, rates and coverage over time,
// escapes with their reproducer (download, and the replay command to copy).  Polls /api/campaign once a second;
// writes text nodes only (never innerHTML): class names, oracle text and paths are shown, never parsed.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const n = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en"));
  let api = null;
  let generation = -1;
  let seriesAt = 0;

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function seconds(s) {
    if (s === null || s === undefined) return "–";
    return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }

  function renderSummary(c) {
    const state = $("c-state");
    const labels = { starting: "campaign: starting…", running: "campaign: running", ending: "campaign: ending…", done: "campaign: done", interrupted: "campaign: interrupted" };
    state.textContent = labels[c.state] || c.state;
    state.className = "badge " + (c.state === "done" ? (c.totals.escapes || c.audit_problems.length ? "tampered" : "ok") : c.state === "interrupted" ? "error" : "checking");
    state.dataset.state = c.state;
    const budget = c.budget.iterations !== null ? `${n(c.iterations)} of ${n(c.budget.iterations)} batches` : `${seconds(c.elapsed)} of ${seconds(c.budget.seconds)}`;
    const parts = [
      `protection ${c.protection}`,
      `seed ${c.seed}`,
      `${c.jobs} job${c.jobs === 1 ? "" : "s"}`,
      budget,
      `${n(c.totals.generated)} descriptors in ${n(c.totals.batches)} batches`,
      c.state === "running" ? `${n(c.totals.rate_now)}/s now (${n(c.totals.rate_mean)}/s mean)` : `${n(c.totals.rate_mean)}/s mean`,
      `${n(c.totals.escapes)} escape findings, ${c.escapes.length} distinct`,
    ];
    if (c.coverage !== null) parts.push(`coverage ${n(c.coverage)} lines of verifier/`);
    $("c-headline").textContent = parts.join(" · ");
    const notes = [];
    if (c.note) notes.push(c.note);
    if (c.report) notes.push(`report: ${c.report}`);
    notes.push(`out: ${c.out}`);
    if (c.audit_logs.length) notes.push(`audit log: ${c.audit_logs.join(", ")}`);
    $("c-note").textContent = notes.join(" · ");
  }

  function renderClasses(c) {
    const tbody = $("c-classes").querySelector("tbody");
    tbody.replaceChildren();
    for (const r of c.classes) {
      const tr = document.createElement("tr");
      tr.dataset.name = r.name;
      cell(tr, r.name);
      cell(tr, n(r.generated), "num");
      cell(tr, n(r.rejected), "num");
      cell(tr, n(r.accepted_and_safe), "num");
      cell(tr, n(r.escapes), "num" + (r.escapes ? " hot" : ""));
      cell(tr, n(r.batches), "num");
      cell(tr, c.state === "running" ? n(Math.round(r.rate_now)) : "–", "num");
      if (!r.batches) tr.className = "idle";
      tbody.appendChild(tr);
    }
    const foot = $("c-classes").querySelector("tfoot");
    foot.replaceChildren();
    const tr = document.createElement("tr");
    const t = c.totals;
    cell(tr, "all");
    cell(tr, n(t.generated), "num");
    cell(tr, n(t.rejected), "num");
    cell(tr, n(t.accepted_and_safe), "num");
    cell(tr, n(t.escapes), "num" + (t.escapes ? " hot" : ""));
    cell(tr, n(t.batches), "num");
    cell(tr, c.state === "running" ? n(Math.round(t.rate_now)) : "–", "num");
    foot.appendChild(tr);
    $("c-classes").dataset.generated = String(t.generated);
  }

  function copy(text, button) {
    const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallback(text, button, done));
    } else {
      fallback(text, button, done);
    }
  }

  function fallback(text, button, done) {
    const input = button.previousSibling;
    input.focus();
    input.select();
    try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: the user copies it */ }
  }

  function renderEscapes(c) {
    const table = $("c-escapes");
    const tbody = table.querySelector("tbody");
    $("c-escapes-count").textContent = c.escapes.length ? `(${c.escapes.length} distinct)` : "";
    $("c-no-escapes").hidden = c.escapes.length > 0;
    $("c-no-escapes").textContent = c.state === "running" || c.state === "starting" ? "none yet" : "none";
    table.hidden = c.escapes.length === 0;
    tbody.replaceChildren();
    for (const e of c.escapes) {
      const tr = document.createElement("tr");
      tr.dataset.n = String(e.n);
      cell(tr, e.n, "num");
      cell(tr, e.class);
      cell(tr, e.kind);
      cell(tr, e.what, "what");
      cell(tr, seconds(e.seconds), "num");
      const repro = cell(tr, "");
      if (e.download) {
        const a = document.createElement("a");
        a.href = e.download;
        a.setAttribute("download", e.file);
        a.className = "download";
        a.textContent = e.file;
        repro.appendChild(a);
        const how = document.createElement("div");
        how.className = "live";
        how.textContent = !e.minimised ? "as found (minimised at the end)"
          : e.reproduces === false ? "minimised · does not escape alone" : "minimised · escapes alone";
        repro.appendChild(how);
      } else {
        repro.textContent = "not written yet";
      }
      const cmd = cell(tr, "", "replay");
      if (e.replay) {
        const input = document.createElement("input");
        input.type = "text";
        input.readOnly = true;
        input.value = e.replay;
        input.size = Math.min(80, e.replay.length);
        input.className = "command";
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "copy";
        button.addEventListener("click", () => copy(e.replay, button));
        cmd.appendChild(input);
        cmd.appendChild(button);
      }
      tbody.appendChild(tr);
    }
    const problems = $("c-audit-problems");
    problems.replaceChildren();
    for (const p of c.audit_problems) {
      const li = document.createElement("li");
      li.textContent = "audit incomplete: " + p;
      problems.appendChild(li);
    }
  }

  async function loadSeries(c) {
    const s = await api("api/campaign/series");
    const drawn = window.AuditChart.rates($("c-rate-chart"), $("c-rate-legend"), s);
    $("c-rate-chart").dataset.bars = String(drawn);
    $("c-rate-note").textContent = s.t.length ? `${s.t.length} samples, one every ${s.interval} s or more` : "";
    const series = [{ key: "escape findings", values: s.escapes, right: c.coverage !== null }];
    if (c.coverage !== null) series.unshift({ key: "coverage: lines of verifier/", values: s.coverage, right: false });
    $("c-cov-title").textContent = c.coverage !== null ? "Coverage and escapes" : "Escapes (coverage is off: fuzz --coverage)";
    const lines = window.AuditChart.lines($("c-cov-chart"), $("c-cov-legend"), s.t, series, c.coverage !== null ? "lines of verifier/ reached (left) and escape findings (right)" : "escape findings");
    $("c-cov-chart").dataset.lines = String(lines);
  }

  async function poll() {
    try {
      const c = await api("api/campaign");
      if (c.generation !== generation) {
        generation = c.generation;
        renderSummary(c);
        renderClasses(c);
        renderEscapes(c);
        if (Date.now() - seriesAt > 2000 || c.state !== "running") {
          seriesAt = Date.now();
          await loadSeries(c);
        }
      }
      $("c-error").hidden = true;
    } catch (err) {
      $("c-error").textContent = "campaign: " + String(err.message || err);
      $("c-error").hidden = false;
    }
    setTimeout(poll, 1000);
  }

  function start(fetcher) {
    api = fetcher;
    poll();
  }

  window.CampaignView = { start: start };
})();
