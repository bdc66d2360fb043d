//! JavaScript module systems and the ctx additions, through the real server:
//! CommonJS (`require`, `module.exports`, cycles, the cache, JSON, `.cjs`),
//! ES modules (extensionless and directory imports, JSON, CommonJS interop),
//! the entry file's classification, and everything that must stay refused
//! (`..` above the bundle, absolute paths, Node built-ins).

mod common;

use common::Server;
use serde_json::json;

fn bundle(entry: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let metadata = format!(r#"{{"language":"js","entrypointFile":"{entry}"}}"#);
    let mut all: Vec<(&str, &[u8])> = vec![("metadata.json", metadata.as_bytes())];
    all.extend(files.iter().map(|(n, t)| (*n, t.as_bytes())));
    common::zip(&all)
}

fn deploy_ok(server: &Server, name: &str, zip: &[u8]) {
    let r = server.deploy(name, zip);
    assert_eq!(r.status, 201, "{name}: {}", r.text());
}

/// Files of a little package tree both module systems use.
const LIBRARY: &[(&str, &str)] = &[
    ("lib/a.js", "exports.name = 'a'; const b = require('./b'); exports.fromB = b.sawA; exports.done = true;"),
    ("lib/b.js", "const a = require('./a.js'); exports.sawA = { name: a.name, done: a.done === true };"),
    ("lib/counter.cjs", "globalThis.loads = (globalThis.loads || 0) + 1; module.exports = { n: globalThis.loads };"),
    ("lib/data.json", r#"{"answer": 42}"#),
    ("lib/dir/index.js", "module.exports = function dir() { return 'index'; };"),
    ("node_modules/pkg/package.json", r#"{"name": "pkg", "main": "./main.js"}"#),
    ("node_modules/pkg/main.js", "module.exports = { hello: (n) => 'hello ' + n, dep: require('dep').v };"),
    ("node_modules/dep/package.json", r#"{"exports": {".": {"import": "./esm.mjs", "require": "./cjs.cjs"}}}"#),
    ("node_modules/dep/cjs.cjs", "exports.v = 'cjs';"),
    ("node_modules/dep/esm.mjs", "export const v = 'esm';"),
];

#[test]
fn commonjs_entry_requires_with_cycles_cache_json_and_packages() {
    let server = Server::start(&[]);
    let handler = r#"
const a = require('./lib/a');
const again = require('./lib/a.js');
const c1 = require('./lib/counter.cjs'), c2 = require('./lib/counter.cjs');
module.exports = (ctx) => ({
  cycle: a.fromB, same: a === again, runsOnce: c1 === c2 && c1.n === 1,
  json: require('./lib/data.json').answer, dir: require('./lib/dir')(),
  pkg: require('pkg').hello('x'), dep: require('pkg').dep,
  resolved: require.resolve('pkg'), filename: typeof __filename, dirname: __dirname,
});
"#;
    let mut files = vec![("handler.js", handler)];
    files.extend_from_slice(LIBRARY);
    deploy_ok(&server, "cjs", &bundle("handler.js", &files));
    let r = server.invoke("cjs", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"cycle": {"name": "a", "done": false}, "same": true, "runsOnce": true, "json": 42, "dir": "index",
               "pkg": "hello x", "dep": "cjs", "resolved": "node_modules/pkg/main.js", "filename": "string",
               "dirname": "."})
    );
}

#[test]
fn es_module_entry_imports_extensionless_json_and_commonjs() {
    let server = Server::start(&[]);
    let handler = r#"
import a, { name, fromB } from './lib/a';
import dir from './lib/dir';
import data from './lib/data.json' with { type: 'json' };
import { v } from 'dep';
import pkg from 'pkg';
export default async function (ctx) {
  const lazy = await import('./lib/counter.cjs');
  return { name, fromB, whole: a.name, dir: dir(), data, v, pkg: pkg.hello('y'), lazy: lazy.default.n };
}
"#;
    let mut files = vec![("handler.js", handler)];
    files.extend_from_slice(LIBRARY);
    deploy_ok(&server, "esm", &bundle("handler.js", &files));
    let r = server.invoke("esm", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"name": "a", "fromB": {"name": "a", "done": false}, "whole": "a", "dir": "index",
               "data": {"answer": 42}, "v": "esm", "pkg": "hello y", "lazy": 1})
    );
}

#[test]
fn a_script_entry_keeps_its_last_expression_and_may_require() {
    let server = Server::start(&[]);
    let handler =
        "const pkg = require('pkg');\nfunction handler(ctx) { return { hi: pkg.hello('script') }; }\nhandler\n";
    let mut files = vec![("handler.js", handler)];
    files.extend_from_slice(LIBRARY);
    deploy_ok(&server, "script", &bundle("handler.js", &files));
    let r = server.invoke("script", &json!({}));
    assert_eq!((r.status, r.json()), (200, json!({"hi": "hello script"})), "{}", r.text());
}

#[test]
fn the_bundle_is_the_whole_world_for_resolution() {
    let server = Server::start(&[]);
    let handler = r#"
const attempt = (spec) => { try { require(spec); return 'loaded'; } catch (e) { return String(e.message); } };
module.exports = (ctx) => ({
  up: attempt('../outside.js'), abs: attempt('/etc/passwd'), fs: attempt('fs'), crypto: attempt('node:crypto'),
  missing: attempt('left-pad'), deepUp: attempt('./lib/../../x'),
});
"#;
    deploy_ok(&server, "refused", &bundle("handler.js", &[("handler.js", handler), ("lib/x.js", "")]));
    let out = server.invoke("refused", &json!({})).json();
    assert!(out["up"].as_str().unwrap_or("").contains("outside the bundle"), "{out}");
    assert!(out["abs"].as_str().unwrap_or("").contains("outside the bundle"), "{out}");
    assert!(out["deepUp"].as_str().unwrap_or("").contains("outside the bundle"), "{out}");
    assert!(out["fs"].as_str().unwrap_or("").contains("`fs` is a Node built-in module"), "{out}");
    assert!(out["crypto"].as_str().unwrap_or("").contains("`crypto` is a Node built-in module"), "{out}");
    assert!(out["missing"].as_str().unwrap_or("").contains("cannot find module `left-pad`"), "{out}");

    // An ES module importing out of the bundle is refused at upload.
    let r = server
        .deploy("esc", &bundle("h.mjs", &[("h.mjs", "import x from '../../etc/passwd';\nexport default () => x;")]));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("outside the bundle"), "{}", r.text());
}

#[test]
fn ctx_gives_the_raw_query_all_headers_and_the_body_bytes() {
    let server = Server::start(&[]);
    let handler = "module.exports = (ctx) => ({ q: ctx.request().query(), h: ctx.request().headers().filter(([k]) => k.startsWith('x-')), b: Array.from(ctx.bodyBytes()), t: ctx.bodyBytes() instanceof Uint8Array });";
    deploy_ok(&server, "ctx", &bundle("handler.js", &[("handler.js", handler)]));
    let r = server.call(
        "POST",
        "/fn/ctx?a=1&a=2&b=x%20y",
        &[("x-one", "1"), ("x-two", "2"), ("X-One", "3")],
        &[0xff, 0, b'a'],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut out = r.json();
    // Repeats are kept; the server's header map groups a repeated name together.
    let mut headers: Vec<String> =
        out["h"].as_array().map(|a| a.iter().map(|p| p.to_string()).collect()).unwrap_or_default();
    headers.sort();
    assert_eq!(headers, [r#"["x-one","1"]"#, r#"["x-one","3"]"#, r#"["x-two","2"]"#], "{out}");
    out["h"] = json!(null);
    assert_eq!(out, json!({"q": "a=1&a=2&b=x%20y", "h": null, "b": [255, 0, 97], "t": true}));
}

#[test]
fn timers_run_before_the_answer_and_stop_at_the_deadline() {
    let server = Server::start(&[]);
    let handler = r#"
module.exports = async (ctx) => {
  const { wait } = ctx.bodyAsJson();
  const seen = [];
  setTimeout(() => seen.push('late'), 30);
  await new Promise((r) => setTimeout(r, wait));
  return seen;
};
"#;
    let metadata = r#"{"language":"js","entrypointFile":"handler.js","timeoutMs":2000}"#;
    let zip = common::zip(&[("metadata.json", metadata.as_bytes()), ("handler.js", handler.as_bytes())]);
    deploy_ok(&server, "timers", &zip);
    let r = server.invoke("timers", &json!({"wait": 60}));
    assert_eq!((r.status, r.json()), (200, json!(["late"])), "{}", r.text());
    // A timer due after the deadline never fires: the invocation times out, the worker serves on.
    let r = server.invoke("timers", &json!({"wait": 600000}));
    assert_eq!((r.status, r.json()["code"].as_str()), (504, Some("timeout")), "{}", r.text());
    let r = server.invoke("timers", &json!({"wait": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn regexp_source_escapes_a_slash_once() {
    // boa 0.22 alone gives `a\\/b` for /a\/b/.source (boa-dev/boa#5535); a pattern
    // rebuilt from it then matches a backslash instead of a slash.
    let server = Server::start(&[]);
    let handler = r#"
module.exports = () => {
  const slash = /a\/b/, inClass = /[/]x/, plain = /ab/;
  const rebuilt = new RegExp(slash.source + "|" + /c\/d/.source);
  return {
    sources: [slash.source, inClass.source, plain.source, new RegExp("a/b").source, String(slash)],
    rebuilt: [rebuilt.test("a/b"), rebuilt.test("c/d"), rebuilt.test("a\\/b")],
  };
};
"#;
    deploy_ok(&server, "re", &bundle("handler.js", &[("handler.js", handler)]));
    let r = server.invoke("re", &json!({}));
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"sources": ["a\\/b", "[/]x", "ab", "a\\/b", "/a\\/b/"], "rebuilt": [true, true, false]})),
        "{}",
        r.text()
    );
}
