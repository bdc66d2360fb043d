// Baseline: a plain Node.js http server that loads the same handler file once
// and calls it with a small ctx shim, reading every request body.
// Usage: node node_server.js <handler.js> <port> <function-name>
const http = require("http");
const fs = require("fs");
const vm = require("vm");
const [file, port, name] = process.argv.slice(2);
const handler = vm.runInThisContext(fs.readFileSync(file, "utf8"), { filename: file });

http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    const url = new URL(req.url, "http://x");
    let status = 200, headers = {}, out = null;
    const response = {
      setStatusCode(n) { status = n; return response; },
      putHeader(k, v) { headers[k] = v; return response; },
      end(t) { out = t === undefined ? "" : String(t); return response; },
    };
    const ctx = {
      request: () => ({
        getParam: (n) => (n === "name" ? name : url.searchParams.get(n)),
        getHeader: (n) => req.headers[String(n).toLowerCase()] ?? null,
        method: () => req.method,
        path: () => url.pathname,
      }),
      response: () => response,
      body: () => body,
      bodyAsJson: () => { try { return JSON.parse(body); } catch { return null; } },
      json: (v) => { headers["content-type"] = "application/json"; out = JSON.stringify(v); },
    };
    const value = handler(ctx);
    if (out === null) {
      out = typeof value === "string" ? value : JSON.stringify(value ?? null);
      headers["content-type"] = headers["content-type"] || "application/json";
    }
    res.writeHead(status, headers);
    res.end(out);
  });
}).listen(Number(port), "127.0.0.1");
