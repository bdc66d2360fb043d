// One function: its facts, last error, versions (make any current, delete the
// function), a live tail of its invocations' logs (newest first) and its charts.
import { api } from "./api.js";
import { cell, clear, h, ms, table, time } from "./dom.js";
import { deployPanel } from "./deploy.js";
import { seriesCharts } from "./charts.js";

const MAX_SHOWN = 200;

export async function functionView(view, { arg: name, signal, onAuthError }) {
  const path = `/api/v1/functions/${encodeURIComponent(name)}`;
  const facts = h("div", { id: "facts" });
  const versions = h("div", { id: "versions" });
  const status = h("p", { id: "function-status", role: "status" });
  const lastError = h("div", { id: "last-error" });
  const logs = h("div", { id: "logs", "aria-live": "polite" }, h("p", { class: "muted empty" }, "No invocations yet."));
  const charts = h("div", { class: "grid", id: "function-charts" });
  view.append(
    h("h1", {}, name),
    h("p", {}, h("a", { href: `#/invoke/${encodeURIComponent(name)}` }, "Invoke it"), " · ", h("a", { href: "#/functions" }, "All functions")),
    status,
    h("section", { class: "card" }, h("h2", {}, "Current version"), facts, lastError),
    h("section", { class: "card" }, h("h2", {}, "Versions"), versions),
    deployPanel({ fixedName: name, onDeployed: () => load().catch(report) }),
    h("section", { class: "card" }, h("h2", {}, "Last 15 minutes"), charts),
    h("section", { class: "card" }, h("h2", {}, "Recent invocations (live)"), logs));

  const report = (e) => {
    if (e.name === "AbortError" || onAuthError(e)) return;
    status.className = "error";
    status.textContent = String(e);
  };

  async function act(label, method, url) {
    status.className = "";
    status.textContent = `${label}…`;
    try {
      await api(method, url, { signal });
      status.className = "ok";
      status.textContent = `${label}: done.`;
      await load();
    } catch (e) {
      report(e);
    }
  }

  async function load() {
    const [f, figures] = await Promise.all([api("GET", path, { signal }), api("GET", "/admin/functions", { signal })]);
    const s = figures.functions.find((x) => x.name === name);
    clear(facts, h("dl", { class: "facts" },
      h("dt", {}, "Version"), h("dd", { id: "current-version" }, `v${f.version}`),
      h("dt", {}, "Language"), h("dd", {}, f.language),
      h("dt", {}, "Entrypoint"), h("dd", {}, f.entrypoint),
      h("dt", {}, "Limits"), h("dd", {}, `${f.limits.timeoutMs} ms timeout · ${f.limits.memoryMb} MiB · concurrency ${f.limits.concurrency}`),
      h("dt", {}, "sha256"), h("dd", {}, f.sha256),
      h("dt", {}, "Invocations"), h("dd", {}, `${s?.invocations || 0} (p50 ${ms(s?.p50Ms)}, p99 ${ms(s?.p99Ms)})`)));
    clear(lastError, s?.lastError
      ? [h("h3", {}, "Last error"), h("p", { class: "error" }, `${time(s.lastError.atUnix)} · ${s.lastError.code}: ${s.lastError.message}`)]
      : h("p", { class: "muted" }, "No errors recorded since the server started."));
    const rows = [...f.versions].reverse().map((v) => {
      const current = v.version === f.version;
      return h("tr", { dataset: { version: v.version } },
        h("th", { scope: "row" }, `v${v.version}`, current ? [" ", h("span", { class: "badge good" }, "current")] : null),
        cell(v.language), cell(time(v.createdUnix)), cell(v.size, true), cell(v.sha256.slice(0, 12)),
        h("td", {}, current ? null : h("button", {
          type: "button", class: "small", onclick: () => act(`Roll back to v${v.version}`, "POST", `${path}/rollback?version=${v.version}`),
        }, `Make v${v.version} current`)));
    });
    clear(versions, table(["Version", "Language", "Created", "Bytes", "sha256", ""], rows, { numeric: [3] }),
      h("button", {
        type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Delete ${name} and all its versions?`)) return;
          try { await api("DELETE", path, { signal }); location.hash = "#/functions"; } catch (e) { report(e); }
        },
      }, `Delete ${name}`));
  }

  // From a cluster, each entry also names the node that ran it.
  function entry(e, cluster) {
    const ok = e.outcome === "ok";
    return h("article", { class: "log", dataset: { requestId: e.requestId, seq: e.seq } },
      h("div", { class: "meta" },
        h("span", {}, time(e.atUnix)), h("code", {}, e.requestId), h("span", {}, `v${e.version}`),
        h("span", { class: `badge ${ok ? "good" : "bad"}` }, `${e.status} ${e.outcome}`), h("span", {}, ms(e.durationMs)),
        cluster ? h("span", { class: "muted node" }, `on ${e.node}`) : null,
        e.truncated ? h("span", { class: "muted" }, "(cut)") : null),
      e.text ? h("pre", {}, e.text) : h("p", { class: "muted" }, "(no output)"));
  }

  // Live tail: `after` the newest cursor, waiting up to 25 s for the next entry.
  async function tail() {
    let cursor = "";
    let first = true;
    while (!signal.aborted) {
      const q = cursor ? `?after=${encodeURIComponent(cursor)}&wait=25000` : "";
      let got;
      try {
        got = await api("GET", `${path}/logs${q}`, { signal });
      } catch (e) {
        if (e.name === "AbortError" || onAuthError(e)) return;
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      if (got.logs.length) {
        if (first || !logs.querySelector("article")) clear(logs);
        for (const e of got.logs) logs.prepend(entry(e, got.cluster));
        while (logs.children.length > MAX_SHOWN) logs.lastElementChild.remove();
      }
      first = false;
      cursor = got.cursor || cursor;
    }
  }

  await load();
  tail();
  seriesCharts(charts, { function: name, signal, onAuthError });
}
