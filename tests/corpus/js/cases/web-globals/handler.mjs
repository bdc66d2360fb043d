// The web-platform globals, answered by Node's own implementations in the reference run.
export default async function handler(ctx) {
  const { text, url } = ctx.bodyAsJson();
  const bytes = new TextEncoder().encode(text);
  const u = new URL(url);
  u.searchParams.append("added", "x y");
  const params = new URLSearchParams("a=1&b=two+words&a=3");
  const order = [];
  queueMicrotask(() => order.push("microtask"));
  const timer = new Promise((resolve) => setTimeout(() => { order.push("timeout"); resolve(); }, 20));
  const cancelled = setTimeout(() => order.push("cancelled"), 5);
  clearTimeout(cancelled);
  order.push("sync");
  await timer;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const random = crypto.getRandomValues(new Uint32Array(4));
  return {
    bytes: Array.from(bytes),
    decoded: new TextDecoder().decode(bytes),
    url: { host: u.host, pathname: u.pathname, search: u.search, href: u.href },
    params: { all: params.getAll("a"), b: params.get("b"), str: params.toString() },
    base64: btoa("polyfaas"),
    unbase64: atob("cG9seWZhYXM="),
    clone: structuredClone({ d: [1, { e: "f" }], m: new Map([["k", 1]]).size }),
    order,
    sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    random: random.length,
    regexSource: new RegExp("a/b").source + " " + /[/]\//.source,
  };
}
