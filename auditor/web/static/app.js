// The audit web view (and, under fuzz --serve, the tabs to the campaign's view: campaign.js): fetches JSON from the server and writes text nodes only (never innerHTML).
// Polls /api/status once a second; when the log grows (generation moves) it reloads the chart,
// the filter choices and the first page, so new records appear without reloading the page.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get("token");
  const state = { offset: 0, limit: 50, generation: -1, total: 0, maxRow: -1, open: null, filters: {} };

  async function api(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
      else if (v !== undefined && v !== null && v !== "") q.append(k, v);
    }
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const res = await fetch(path + (q.toString() ? "?" + q : ""), { headers: headers, cache: "no-store" });
    const body = await res.json();
    if (!res.ok || body.retry === true) { // 202 + retry: the SQL engine is still loading the log
      const err = new Error(body.error || res.statusText);
      err.retry = body.retry === true;
      err.waiting = res.status === 503;  // a campaign's audit log not written yet
      throw err;
    }
    return body;
  }

  function showError(err) {
    const box = $("error");
    if (err) { box.textContent = String(err.message || err); box.hidden = false; }
    else { box.textContent = ""; box.hidden = true; }
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function rowLine(tbody, r, fresh) {
    const tr = document.createElement("tr");
    tr.dataset.row = String(r.row);
    if (r.status === "bad") {
      tr.className = "bad";
      cell(tr, "–", "num");
      cell(tr, `${r.file}:${r.line}`);
      cell(tr, "(bad record)");
      cell(tr, "");
      cell(tr, r.problem);
      cell(tr, "");
      cell(tr, r.raw);
    } else {
      cell(tr, r.seq, "num");
      cell(tr, r.wall.replace("T", " ").replace("Z", ""));
      cell(tr, r.tenant);
      cell(tr, r.where);
      cell(tr, r.reason);
      cell(tr, r.desc);
      cell(tr, r.detail);
    }
    if (fresh) tr.classList.add("fresh");
    if (state.open === r.row) tr.classList.add("current");
    tr.addEventListener("click", () => openRecord(r.row));
    tbody.appendChild(tr);
  }

  // -- status --------------------------------------------------------------------------
  function renderStatus(s) {
    const chain = s.chain;
    const badge = $("chain");
    badge.className = "badge " + chain.state;
    let text = "chain: checking…";
    if (chain.state === "ok") {
      const lines = chain.chains.reduce((a, c) => a + c.lines, 0);
      text = `chain intact (${lines.toLocaleString("en")} records verified)`;
      if (chain.chains.length === 1) badge.title = "head " + chain.chains[0].head;
    } else if (chain.state === "tampered") {
      const n = chain.chains.reduce((a, c) => a + c.problems.length + c.more_problems, 0);
      text = `chain TAMPERED: ${n.toLocaleString("en")} problem${n === 1 ? "" : "s"}`;
    } else if (chain.state === "error") {
      text = "chain: cannot verify";
    }
    badge.textContent = text;
    const list = $("problems");
    list.replaceChildren();
    if (chain.error) { const li = document.createElement("li"); li.textContent = chain.error; list.appendChild(li); }
    for (const c of chain.chains) {
      for (const p of c.problems) {
        const li = document.createElement("li");
        li.textContent = `TAMPERED: ${p.problem} (${p.where}) at seq ${p.seq}`;
        list.appendChild(li);
      }
      if (c.more_problems) {
        const li = document.createElement("li");
        li.textContent = `… and ${c.more_problems.toLocaleString("en")} more problems`;
        list.appendChild(li);
      }
      for (const note of c.notes) { const li = document.createElement("li"); li.textContent = "note: " + note; list.appendChild(li); }
    }
    for (const note of s.notes) { const li = document.createElement("li"); li.textContent = note; list.appendChild(li); }
    $("files").textContent = "files: " + s.files.join(", ");
    const pending = s.pending_bytes ? ` · ${s.pending_bytes} bytes of a line being written` : "";
    $("live").textContent = `live: ${s.rows.toLocaleString("en")} rows (${s.bad} bad)` + pending;
    $("rows-note").textContent = s.indexing ? "indexing…" : `${s.rows.toLocaleString("en")} rows indexed`;
  }

  // -- filters -------------------------------------------------------------------------
  function fillSelect(select, items, value, label) {
    const keep = select.value;
    select.replaceChildren();
    const any = document.createElement("option");
    any.value = "";
    any.textContent = "(any)";
    select.appendChild(any);
    for (const it of items) {
      const o = document.createElement("option");
      o.value = value(it);
      o.textContent = label(it);
      select.appendChild(o);
    }
    select.value = keep;
    if (select.value !== keep) select.value = "";
  }

  async function loadFacets() {
    const f = await api("api/facets");
    fillSelect($("f-reason"), f.reasons, (r) => r.name, (r) => `${r.name} (${r.count})`);
    fillSelect($("f-tenant"), f.tenants, (t) => t.name, (t) => `${t.label} (${t.count})`);
  }

  function readFilters() {
    return {
      reason: $("f-reason").value,
      tenant: $("f-tenant").value,
      status: $("f-status").value,
      since: $("f-since").value.trim(),
      until: $("f-until").value.trim(),
      sql: $("f-sql").value.trim(),
    };
  }

  // -- chart and table -----------------------------------------------------------------
  async function loadChart() {
    const data = await api("api/chart", Object.assign({ by: $("by").value, buckets: 60 }, state.filters));
    const drawn = window.AuditChart.draw($("chart"), $("legend"), data);
    $("chart").dataset.bars = String(drawn);
    $("chart-note").textContent = `${data.total.toLocaleString("en")} records`;
  }

  async function loadTable() {
    const page = await api("api/records", Object.assign({ offset: state.offset, limit: state.limit, order: "desc" }, state.filters));
    const tbody = $("records").querySelector("tbody");
    tbody.replaceChildren();
    let max = state.maxRow;
    for (const r of page.rows) {
      rowLine(tbody, r, state.maxRow >= 0 && r.row > state.maxRow);
      max = Math.max(max, r.row);
    }
    state.maxRow = max;
    state.total = page.total;
    const a = page.total ? page.offset + 1 : 0, b = page.offset + page.rows.length;
    $("page-note").textContent = `rows ${a}–${b} of ${page.total.toLocaleString("en")} (newest first)`;
    $("prev").disabled = page.offset === 0;
    $("next").disabled = b >= page.total;
    $("records").dataset.total = String(page.total);
  }

  let retrying = null;
  async function reload() {
    if (retrying !== null) { clearTimeout(retrying); retrying = null; }
    try {
      await Promise.all([loadChart(), loadTable()]);
      showError(null);
    } catch (err) {
      showError(err);
      if (err.retry) retrying = setTimeout(reload, 1000); // "loading the log into DuckDB": ask again
    }
  }

  // -- one record ----------------------------------------------------------------------
  function kv(tbody, key, value) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = key;
    tr.appendChild(th);
    cell(tr, typeof value === "object" && value !== null ? JSON.stringify(value) : value);
    tbody.appendChild(tr);
  }

  async function openRecord(row) {
    let r;
    try { r = await api("api/record/" + row); } catch (err) { showError(err); return; }
    state.open = row;
    history.replaceState(null, "", location.pathname + location.search + "#row=" + row);
    $("record-section").hidden = false;
    $("record-title").textContent = r.status === "bad"
      ? `row ${r.row}: bad record (${r.file}:${r.line})`
      : `record seq ${r.seq} (${r.file}:${r.line})`;
    const fields = $("record-fields").querySelector("tbody");
    fields.replaceChildren();
    if (r.record) {
      for (const [k, v] of Object.entries(r.record)) {
        if (k === "detail" && v) for (const [dk, dv] of Object.entries(v)) kv(fields, "detail." + dk, dv);
        else kv(fields, k, v);
      }
    } else {
      kv(fields, "problem", r.problem);
    }
    const desc = $("record-desc").querySelector("tbody");
    desc.replaceChildren();
    if (r.descriptor) {
      $("record-layout").textContent = r.descriptor.layout + (r.descriptor.matches_stored ? " · matches the stored decoding" : " · DIFFERS from the stored decoding");
      for (const f of r.descriptor.fields) kv(desc, f.field, f.hex + (f.bits.length ? "  " + f.bits.join("|") : ""));
    } else {
      $("record-layout").textContent = "no descriptor in this record";
    }
    const near = $("record-neighbours").querySelector("tbody");
    near.replaceChildren();
    for (const n of r.neighbours) rowLine(near, n, false);
    $("record-raw").textContent = r.raw !== null && r.raw !== undefined ? r.raw : JSON.stringify(r.record);
    for (const tr of $("records").querySelectorAll("tbody tr")) tr.classList.toggle("current", tr.dataset.row === String(row));
    $("record-section").scrollIntoView({ block: "nearest" });
  }

  // -- live ----------------------------------------------------------------------------
  async function poll() {
    if ($("audit-view").hidden) {  // the campaign tab is shown: the server need not index the log for nobody
      setTimeout(poll, 1000);
      return;
    }
    try {
      const s = await api("api/status");
      renderStatus(s);
      if (s.generation !== state.generation && !$("audit-view").hidden) {  // a hidden view reloads when shown
        state.generation = s.generation;
        await loadFacets();
        await reload();
      }
    } catch (err) {
      $("live").textContent = err.waiting ? "live: " + err.message : "live: server unreachable (" + (err.message || err) + ")";
    }
    setTimeout(poll, 1000);
  }

  // -- views: the audit log, and a campaign's (fuzz --serve) ----------------------------
  function show(view) {
    $("campaign-view").hidden = view !== "campaign";
    $("audit-view").hidden = view !== "audit";
    for (const id of ["chain", "live"]) $(id).hidden = view !== "audit";
    $("tab-campaign").classList.toggle("active", view === "campaign");
    $("tab-audit").classList.toggle("active", view === "audit");
    if (view === "audit") state.generation = -1;  // reload what changed while hidden, at the next poll
  }

  async function begin() {
    let about = { audit: true, campaign: false };
    try { about = await api("api/about"); } catch (err) { /* an older server: the audit view alone */ }
    if (about.campaign) {
      document.title = "nic-sandbox fuzz";
      $("title").textContent = "nic-sandbox fuzz";
      $("tabs").hidden = false;
      $("tab-audit").disabled = !about.audit;
      if (!about.audit) $("tab-audit").title = "the campaign runs with --no-audit-log";
      $("tab-campaign").addEventListener("click", () => show("campaign"));
      $("tab-audit").addEventListener("click", () => show("audit"));
      show(/^#row=/.test(location.hash) && about.audit ? "audit" : "campaign");
      window.CampaignView.start(api);
    }
    if (about.audit) poll();
  }

  // -- wiring --------------------------------------------------------------------------
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.filters = readFilters();
    state.offset = 0;
    reload();
  });
  for (const id of ["f-reason", "f-tenant", "f-status"]) {
    $(id).addEventListener("change", () => { state.filters = readFilters(); state.offset = 0; reload(); });
  }
  $("clear").addEventListener("click", () => {
    for (const id of ["f-reason", "f-tenant", "f-status", "f-since", "f-until", "f-sql"]) $(id).value = "";
    state.filters = {};
    state.offset = 0;
    reload();
  });
  $("by").addEventListener("change", () => loadChart().catch(showError));
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); reload(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; reload(); });
  $("close-record").addEventListener("click", () => { $("record-section").hidden = true; state.open = null; });
  const m = /^#row=(\d+)$/.exec(location.hash);
  if (m) openRecord(Number(m[1]));
  begin();
})();
