// Invoking a function from the console: the request as the operator writes it
// goes to /admin/invoke/{name}{tail} on this origin with the admin token, which
// the server drops before the function sees the request (so does any
// Authorization the operator writes). That route is on the admin listener too,
// which serves no /fn. Shows the answer, its duration and the worker's pid, and
// the same request as a curl line against the main listener's /fn.
import { api, token } from "./api.js";
import { clear, h, ms } from "./dom.js";

const METHODS = ["POST", "GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

// "Name: value" lines -> [[name, value]]; blank lines ignored.
function parseHeaders(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(`header line without "name: value": ${line}`);
    out.push([line.slice(0, at).trim(), line.slice(at + 1).trim()]);
  }
  return out;
}

const quote = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

export function curlLine(url, method, headers, body) {
  const parts = ["curl", "-i", "-X", method];
  for (const [k, v] of headers) parts.push("-H", quote(`${k}: ${v}`));
  if (body) parts.push("--data-binary", quote(body));
  parts.push(quote(url));
  return parts.join(" ");
}

export async function invokeView(view, { arg, signal }) {
  const { functions } = await api("GET", "/api/v1/functions", { signal });
  if (!functions.length) {
    view.append(h("h1", {}, "Invoke"), h("p", { class: "empty" }, "No functions yet — deploy one on the Functions page or run `polyfaas deploy`."));
    return;
  }
  const pick = h("select", { id: "inv-function" }, functions.map((f) => h("option", { value: f.name, selected: f.name === arg }, f.name)));
  const method = h("select", { id: "inv-method" }, METHODS.map((m) => h("option", { value: m }, m)));
  const tail = h("input", { id: "inv-path", placeholder: "/", value: "/" });
  const query = h("input", { id: "inv-query", placeholder: "a=1&b=2" });
  const headers = h("textarea", { id: "inv-headers", placeholder: "content-type: application/json" }, "content-type: application/json");
  const body = h("textarea", { id: "inv-body", placeholder: "{\"name\": \"Ada\"}" }, "{}");
  const result = h("div", { id: "inv-result", "aria-live": "polite" });
  const send = h("button", { type: "submit", id: "inv-send" }, "Send");
  const form = h("form", { class: "card", id: "invoke-form" },
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "inv-function" }, "Function"), pick),
      h("div", {}, h("label", { for: "inv-method" }, "Method"), method),
      h("div", {}, h("label", { for: "inv-path" }, "Path after /fn/{name}"), tail),
      h("div", {}, h("label", { for: "inv-query" }, "Query"), query)),
    h("label", { for: "inv-headers" }, "Headers (one \"name: value\" a line)"), headers,
    h("label", { for: "inv-body" }, "Body"), body,
    send);
  view.append(h("h1", {}, "Invoke"), form, result);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let list;
    try {
      list = parseHeaders(headers.value);
    } catch (e) {
      clear(result, h("p", { class: "error", role: "alert" }, e.message));
      return;
    }
    let path = tail.value.trim() || "/";
    if (!path.startsWith("/")) path = `/${path}`;
    const q = query.value.trim().replace(/^\?/, "");
    const rest = `${encodeURIComponent(pick.value)}${path === "/" ? "" : path}${q ? `?${q}` : ""}`;
    const rel = `/fn/${rest}`;
    let url = new URL(rel, location.origin).href;
    const m = method.value;
    const withBody = !["GET", "HEAD"].includes(m) && body.value !== "";
    send.disabled = true;
    clear(result, h("p", { class: "muted" }, "Waiting for the answer…"));
    const started = performance.now();
    try {
      // The token goes as the bearer header only (no cookies): the server drops
      // it, and the function gets what the operator wrote.
      const sent = new Headers(list);
      const t = token();
      if (t) sent.set("authorization", `Bearer ${t}`);
      const r = await fetch(`/admin/invoke/${rest}`, { method: m, headers: sent, body: withBody ? body.value : undefined, credentials: "omit", cache: "no-store", signal });
      const text = await r.text();
      const took = performance.now() - started;
      const pid = r.headers.get("x-polyfaas-worker-pid");
      const main = r.headers.get("x-polyfaas-main-listener");
      if (main) url = new URL(rel, mainOrigin(main)).href;
      clear(result, h("section", { class: "card" },
        h("h2", {}, "Answer"),
        h("p", {},
          h("span", { id: "inv-status", class: `badge ${r.ok ? "good" : "bad"}` }, `${r.status} ${r.statusText}`),
          ` in ${ms(took)}`, pid ? [" · worker pid ", h("code", { id: "inv-pid" }, pid)] : null),
        h("h3", {}, "Headers"),
        h("pre", { id: "inv-resp-headers" }, [...r.headers].map(([k, v]) => `${k}: ${v}`).join("\n")),
        h("h3", {}, "Body"),
        h("pre", { id: "inv-resp-body" }, text || "(empty)"),
        h("h3", {}, "As curl"),
        h("pre", { id: "inv-curl" }, curlLine(url, m, list, withBody ? body.value : "")),
        h("button", { type: "button", class: "small", onclick: (e) => copy(e.target, curlLine(url, m, list, withBody ? body.value : "")) }, "Copy as curl")));
    } catch (e) {
      if (e.name !== "AbortError") {
        clear(result, h("p", { class: "error", role: "alert" },
          `The request did not complete: ${e.message}.`),
        h("pre", { id: "inv-curl" }, curlLine(url, m, list, withBody ? body.value : "")));
      }
    } finally {
      send.disabled = false;
    }
  });
}

// "0.0.0.0:8080" or "[::]:8080" (bound to every address) -> this page's host on
// that port; a specific address as it is.
function mainOrigin(addr) {
  const m = /^(.*):(\d+)$/.exec(addr);
  if (!m) return location.origin;
  const host = ["0.0.0.0", "[::]"].includes(m[1]) ? location.hostname : m[1];
  const shown = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `http://${shown}:${m[2]}`;
}

async function copy(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select the line above to copy it";
  }
}
