// Workers: every worker process with its state and figures, refreshed every 2 s,
// and graceful or forced restarts of one worker, a function's, a language's or
// all (a forced restart kills in-flight invocations, so it asks first).
import { api } from "./api.js";
import { bytes, cell, clear, duration, h, table } from "./dom.js";

const LANGUAGES = ["wasm", "js", "python", "ruby"];

export async function workersView(view, { signal, onAuthError }) {
  const status = h("p", { id: "workers-status", role: "status" });
  const list = h("div", { id: "workers" });
  const fnPick = h("select", { id: "restart-function" });
  const langPick = h("select", { id: "restart-language" }, LANGUAGES.map((l) => h("option", { value: l }, l)));

  async function restart(label, query, force) {
    if (force && !confirm(`Force restart ${label}? In-flight invocations on those workers fail.`)) return;
    status.className = "";
    status.textContent = `Restarting ${label}…`;
    try {
      const url = query.startsWith("/") ? `${query}${force ? "?force=true" : ""}`
        : `/admin/workers/restart?${[query, force ? "force=true" : ""].filter(Boolean).join("&")}`;
      const got = await api("POST", url, { signal });
      status.className = "ok";
      status.textContent = `Restarted ${got.restarted.length} worker(s) (${label}${force ? ", forced" : ""}).`;
      await refresh();
    } catch (e) {
      if (e.name === "AbortError" || onAuthError(e)) return;
      status.className = "error";
      status.textContent = `Restart failed: ${e}`;
    }
  }
  const pair = (label, query) => [
    h("button", { type: "button", onclick: () => restart(label(), query(), false) }, "Restart"),
    h("button", { type: "button", class: "danger", onclick: () => restart(label(), query(), true) }, "Force restart"),
  ];

  view.append(h("h1", {}, "Workers"),
    h("section", { class: "card", "aria-labelledby": "bulk-title" },
      h("h2", { id: "bulk-title" }, "Restart several"),
      h("div", { class: "row" },
        h("div", {}, h("label", {}, "All workers"), h("div", {}, pair(() => "all workers", () => ""))),
        h("div", {}, h("label", { for: "restart-function" }, "A function's workers"), fnPick,
          h("div", {}, pair(() => `the workers of ${fnPick.value}`, () => `function=${encodeURIComponent(fnPick.value)}`))),
        h("div", {}, h("label", { for: "restart-language" }, "A language's workers"), langPick,
          h("div", {}, pair(() => `the ${langPick.value} workers`, () => `language=${encodeURIComponent(langPick.value)}`))))),
    status, list);

  async function refresh() {
    const [{ workers }, { functions }] = await Promise.all([api("GET", "/admin/workers", { signal }), api("GET", "/api/v1/functions", { signal })]);
    const chosen = fnPick.value;
    clear(fnPick, functions.map((f) => h("option", { value: f.name, selected: f.name === chosen }, f.name)));
    if (!workers.length) {
      clear(list, h("p", { class: "empty" }, "No workers running. They start with the first invocation (or when warm blank workers are configured)."));
      return;
    }
    const rows = workers.map((w) => h("tr", { dataset: { worker: w.id, pid: w.pid, function: w.function || "" } },
      h("th", { scope: "row" }, `#${w.id}`), cell(w.state), cell(w.language),
      cell(w.function ? `${w.function} v${w.version}` : "–"), cell(w.pid, true), cell(bytes(w.rssBytes), true),
      cell(bytes(w.memoryBytes), true),
      cell(w.invocations, true), cell(duration(w.uptimeMs), true), cell(w.restarts, true),
      h("td", {},
        h("button", { type: "button", class: "small", onclick: () => restart(`worker #${w.id}`, `/admin/workers/${w.id}/restart`, false) }, "Restart"),
        h("button", { type: "button", class: "small danger", onclick: () => restart(`worker #${w.id}`, `/admin/workers/${w.id}/restart`, true) }, "Force"))));
    clear(list, table(["Worker", "State", "Language", "Function", "pid", "RSS", "Private", "Invocations", "Uptime", "Restarts", "Restart"], rows, { numeric: [4, 5, 6, 7, 8, 9] }));
  }

  await refresh();
  while (!signal.aborted) {
    await new Promise((r) => setTimeout(r, 2000));
    if (signal.aborted) break;
    try { await refresh(); } catch (e) { if (e.name === "AbortError" || onAuthError(e)) break; }
  }
}
