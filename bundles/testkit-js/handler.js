// The test suite's JavaScript guest, in the original project's script style (the
// last expression is the handler). The request body picks the behaviour; the
// Python and Ruby testkits answer the same actions the same way.
let counter = 0;

function handler(ctx) {
  const input = ctx.bodyAsJson() || {};
  switch (input.action) {
    case "plain": return { plain: true, n: input.n };
    case "text": return "just text";
    case "status": ctx.response().setStatusCode(201).putHeader("X-Custom", "yes").end("created"); return;
    case "echo": ctx.json(input); return;
    case "throw": throw new Error("testkit threw " + input.message);
    case "log": console.log(input.text); return { logged: true };
    case "setGlobal": globalThis.sharedValue = input.value; return { set: true };
    case "getGlobal": return { value: typeof sharedValue === "undefined" ? null : sharedValue };
    case "count": counter += 1; return { counter };
    case "params": {
      const r = ctx.request();
      return { name: r.getParam("name"), q: r.getParam("q"), header: r.getHeader("X-Test"), method: r.method(), path: r.path() };
    }
    case "bodyLength": return { length: ctx.body().length };
    case "spin": for (;;) {}
    case "recurse": { const f = (n) => f(n + 1) + 1; return f(0); }
    case "alloc": { const keep = []; for (let i = 0; ; i++) keep.push("x".repeat(1 << 24) + i); }
    case "flood": {
      const line = "x".repeat(1 << 16);
      for (let i = 0; i < (input.bytes || 100 * (1 << 20)) / line.length; i++) console.log(line);
      return { flooded: true };
    }
    case "readFile": case "writeFile": case "connect": case "fork": case "spawn": case "killParent": case "env":
      // JavaScript on boa has no file, network, process or environment API at all;
      // look for the usual ones anyway. `require` exists (CommonJS inside the
      // bundle) but must refuse Node's built-ins and anything outside the bundle.
      for (const spec of ["fs", "node:fs", "child_process", "net", "os", "/etc/passwd", "../../../etc/passwd"]) {
        try { require(spec); return { ok: true, result: "require('" + spec + "')" }; } catch (e) { /* refused */ }
      }
      for (const name of ["process", "Deno", "Bun", "fetch", "XMLHttpRequest", "WebSocket"]) {
        if (typeof globalThis[name] !== "undefined") return { ok: true, result: name };
      }
      return input.action === "env" ? { ok: true, result: {} } : { ok: false, error: "no such API in this runtime" };
    default: return { unknown: input.action === undefined ? null : input.action };
  }
}

handler
