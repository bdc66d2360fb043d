// Charts of the last 15 minutes (GET /admin/series, 5-second buckets): for the
// server and per function, invocations/s, errors and p99 latency, redrawn every
// 5 s. uPlot (vendored, a global from its own script) draws them.
import { api } from "./api.js";
import { clear, h } from "./dom.js";

const EVERY_MS = 5000;

// Sparse columns -> one point per bucket over the whole window.
function dense(cols, now, step, window) {
  const end = now - (now % step);
  const start = end - window;
  const at = new Map((cols?.t || []).map((t, i) => [t, i]));
  const x = [], rate = [], errors = [], p99 = [];
  for (let t = start; t <= end; t += step) {
    const i = at.get(t);
    x.push(t);
    rate.push(i === undefined ? 0 : cols.invocations[i] / step);
    errors.push(i === undefined ? 0 : cols.errors[i]);
    p99.push(i === undefined ? null : cols.p99Ms[i]);
  }
  return { x, rate, errors, p99, total: (cols?.invocations || []).reduce((a, b) => a + b, 0) };
}

class Chart {
  constructor(parent, id, title, label, color) {
    this.box = h("div", { class: "chart", id, dataset: { points: "0" } }, h("h3", {}, title));
    parent.append(this.box);
    this.label = label;
    this.color = color;
    this.plot = null;
  }
  width() {
    return Math.max(240, this.box.clientWidth || 300);
  }
  set(x, y, total) {
    this.box.dataset.points = String(total);
    if (typeof uPlot === "undefined") return;
    const data = [x, y];
    if (!this.plot) {
      this.plot = new uPlot({
        width: this.width(), height: 150,
        scales: { x: { time: true } },
        legend: { show: false },
        series: [{}, { label: this.label, stroke: this.color, width: 2, fill: `${this.color}22`, spanGaps: false }],
        axes: [{}, { size: 50 }],
      }, data, this.box);
    } else {
      this.plot.setData(data);
    }
  }
  resize() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: 150 });
  }
}

// Three charts for one scope (the server when `fn` is absent), kept live until `signal`.
export function seriesCharts(parent, { function: fn, signal, onAuthError }) {
  const key = fn ? `fn-${fn}` : "server";
  const charts = [
    new Chart(parent, `${key}-rate`, "Invocations/s", "invocations/s", "#1f5fbf"),
    new Chart(parent, `${key}-errors`, "Errors (per 5 s)", "errors", "#b3261e"),
    new Chart(parent, `${key}-p99`, "p99 latency (ms)", "p99 ms", "#9a6700"),
  ];
  const onResize = () => charts.forEach((c) => c.resize());
  window.addEventListener("resize", onResize);
  signal.addEventListener("abort", () => window.removeEventListener("resize", onResize));
  const draw = async () => {
    const s = await api("GET", `/admin/series${fn ? `?function=${encodeURIComponent(fn)}` : ""}`, { signal });
    const cols = fn ? s.functions[fn] : s.total;
    const d = dense(cols, s.nowUnix, s.bucketSeconds, s.windowSeconds);
    charts[0].set(d.x, d.rate, d.total);
    charts[1].set(d.x, d.errors, d.total);
    charts[2].set(d.x, d.p99, d.total);
  };
  (async () => {
    while (!signal.aborted) {
      try { await draw(); } catch (e) { if (e.name === "AbortError" || onAuthError(e)) return; }
      await new Promise((r) => setTimeout(r, EVERY_MS));
    }
  })();
}

export async function chartsView(view, { signal, onAuthError }) {
  const server = h("div", { class: "grid", id: "server-charts" });
  const perFunction = h("div", { id: "function-charts" });
  view.append(h("h1", {}, "Charts"), h("p", { class: "muted" }, "The last 15 minutes in 5-second buckets; live."),
    h("section", { class: "card" }, h("h2", {}, "Server"), server),
    h("section", { class: "card" }, h("h2", {}, "Per function"), perFunction));
  seriesCharts(server, { signal, onAuthError });
  const { functions } = await api("GET", "/api/v1/functions", { signal });
  if (!functions.length) {
    clear(perFunction, h("p", { class: "empty" }, "No functions yet — deploy one on the Functions page or run `polyfaas deploy`."));
    return;
  }
  for (const f of functions) {
    const grid = h("div", { class: "grid" });
    perFunction.append(h("h3", {}, h("a", { href: `#/function/${encodeURIComponent(f.name)}` }, f.name)), grid);
    seriesCharts(grid, { function: f.name, signal, onAuthError });
  }
}
