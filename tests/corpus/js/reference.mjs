// The reference run of a corpus case: the same handler under Node, with a ctx
// shaped like polyfaas's (the subset the corpus handlers use). Prints the
// answer's JSON on stdout, as polyfaas answers it (ctx.json's value, or the
// returned value).
//   node reference.mjs <bundle dir> <entry file> <request body>
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [dir, entry, body] = process.argv.slice(2);
const file = path.resolve(dir, entry);
let handler;
if (entry.endsWith(".mjs")) {
  const ns = await import(pathToFileURL(file).href);
  handler = typeof ns.default === "function" ? ns.default : ns.handler;
} else {
  const exported = createRequire(file)(file);
  handler = typeof exported === "function" ? exported : exported.handler || exported.default;
}

let sent;
const request = {
  getParam: () => null,
  getHeader: () => null,
  method: () => "POST",
  path: () => "/",
  query: () => "",
  headers: () => [["content-type", "application/json"]],
};
const ctx = {
  request: () => request,
  body: () => body,
  bodyAsJson: () => JSON.parse(body),
  bodyBytes: () => new TextEncoder().encode(body),
  json: (value) => { sent = { value }; },
};
const value = await handler(ctx);
process.stdout.write(JSON.stringify(sent ? sent.value : value ?? null));
