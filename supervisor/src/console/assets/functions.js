// The functions list: each function's current version and limits (management
// API) with its invocation figures (/admin/functions), refreshed every 3 s.
import { api } from "./api.js";
import { cell, clear, h, ms, table } from "./dom.js";
import { deployPanel } from "./deploy.js";

const errorCount = (f) => Object.values(f?.errors || {}).reduce((a, b) => a + b, 0);

export async function functionsView(view, { signal, onAuthError }) {
  const list = h("div", { id: "functions" });
  view.append(h("h1", {}, "Functions"), deployPanel({ onDeployed: () => refresh().catch(() => {}) }), list);
  const refresh = async () => {
    const [{ functions }, figures] = await Promise.all([
      api("GET", "/api/v1/functions", { signal }),
      api("GET", "/admin/functions", { signal }),
    ]);
    const byName = new Map(figures.functions.map((f) => [f.name, f]));
    if (!functions.length) {
      clear(list, h("p", { class: "empty" }, "No functions yet — drag a zip here or run `polyfaas deploy`."));
      return;
    }
    const rows = functions.map((f) => {
      const s = byName.get(f.name);
      const n = s?.invocations || 0;
      const errors = errorCount(s);
      return h("tr", { dataset: { function: f.name } },
        h("th", { scope: "row" }, h("a", { href: `#/function/${encodeURIComponent(f.name)}` }, f.name)),
        cell(f.language), cell(`v${f.version}`),
        cell(`${f.limits.timeoutMs} ms · ${f.limits.memoryMb} MiB · ×${f.limits.concurrency}`),
        cell(n, true), cell(n ? `${((errors / n) * 100).toFixed(1)}%` : "–", true),
        cell(ms(s?.p50Ms), true), cell(ms(s?.p99Ms), true));
    });
    clear(list, table(["Name", "Language", "Version", "Limits (timeout · memory · concurrency)", "Invocations", "Errors", "p50", "p99"], rows, { numeric: [4, 5, 6, 7] }));
  };
  await refresh();
  while (!signal.aborted) {
    await new Promise((r) => setTimeout(r, 3000));
    if (signal.aborted) break;
    try { await refresh(); } catch (e) { if (e.name === "AbortError" || onAuthError(e)) break; }
  }
}
