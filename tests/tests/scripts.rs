//! Script handlers (JavaScript, Python, Ruby) behind one ctx API, driven by the
//! same tests for every language.

mod common;

use common::{Server, dir_bundle, multipart, seed_bundle, wait_until};
use serde_json::json;

/// Languages whose runtime has landed.
const LANGUAGES: &[&str] = &["js", "python", "ruby"];

fn entry_file(lang: &str) -> &'static str {
    match lang {
        "js" => "handler.js",
        "python" => "handler.py",
        "ruby" => "handler.rb",
        other => panic!("unknown language {other}"),
    }
}

/// A one-file bundle with `code` as the entrypoint.
fn inline_bundle(lang: &str, code: &str) -> Vec<u8> {
    let file = entry_file(lang);
    let metadata = format!(r#"{{"language":"{lang}","entrypointFile":"{file}"}}"#);
    common::zip(&[("metadata.json", metadata.as_bytes()), (file, code.as_bytes())])
}

/// The original project's JavaScript example, written in each language.
fn original_handler(lang: &str) -> &'static str {
    match lang {
        "js" => {
            "function handler(ctx) {\n    const response = `Hello from ${ctx.request().getParam(\"name\")}`;\n    ctx.json({ msg: response });\n}\n\nhandler\n"
        }
        "python" => {
            "def handler(ctx):\n    ctx.json({\"msg\": \"Hello from \" + ctx.request().getParam(\"name\")})\n\nhandler\n"
        }
        "ruby" => {
            "def handler(ctx)\n  ctx.json({\"msg\" => \"Hello from \" + ctx.request().getParam(\"name\")})\nend\n\nmethod(:handler)\n"
        }
        other => panic!("unknown language {other}"),
    }
}

/// Code whose second line is a syntax error.
fn broken_handler(lang: &str) -> &'static str {
    match lang {
        "js" => "function handler(ctx) {\n  return 1 +* 2\n}\nhandler\n",
        "python" => "x = 1\ndef handler(ctx)\n    return 1\n",
        "ruby" => "x = 1\ndef handler(ctx) = 1 +* ]\n",
        other => panic!("unknown language {other}"),
    }
}

fn deploy_ok(server: &Server, name: &str, zip: &[u8]) {
    let r = server.deploy(name, zip);
    assert_eq!(r.status, 201, "{name}: {}", r.text());
}

#[test]
fn original_javascript_bundle_runs_unchanged() {
    let server = Server::start(&[]);
    let (content_type, body) = multipart("javascript-handler.zip", &seed_bundle("javascript-handler.zip"));
    let up = server.call("POST", "/api/v1/handler/javascript-example", &[("content-type", &content_type)], &body);
    assert_eq!(up.text(), r#"{"status":"ok","message":"Handler javascript-example uploaded"}"#);
    let r = server.get("/api/v1/handler/javascript-example");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"msg": "Hello from javascript-example"}));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn the_original_handler_gives_the_same_answer_in_every_language() {
    let server = Server::start(&[]);
    for lang in LANGUAGES {
        let name = format!("original-{lang}");
        deploy_ok(&server, &name, &inline_bundle(lang, original_handler(lang)));
        let r = server.get(&format!("/api/v1/handler/{name}"));
        assert_eq!(r.status, 200, "{lang}: {}", r.text());
        assert_eq!(r.json(), json!({"msg": format!("Hello from {name}")}), "{lang}");
    }
}

#[test]
fn hello_bundles_use_params_headers_the_body_and_a_helper_file() {
    let server = Server::start(&[]);
    for lang in LANGUAGES {
        let name = format!("hello-{lang}");
        deploy_ok(&server, &name, &dir_bundle(&name));
        let r = server.call(
            "POST",
            &format!("/fn/{name}/a/b"),
            &[("x-greeting", "hej"), ("x-request-id", &format!("hello-{lang}-1"))],
            json!({"who": "tests", "n": [1, 2]}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{lang}: {}", r.text());
        let out = r.json();
        assert_eq!(out["msg"], format!("Hello from {name}"), "{lang}: the helper made it");
        assert_eq!(out["greeting"], "hej", "{lang}");
        assert_eq!(out["input"], json!({"who": "tests", "n": [1, 2]}), "{lang}");
        assert_eq!((out["method"].as_str(), out["path"].as_str()), (Some("POST"), Some("/a/b")), "{lang}");
        let logs = server.get(&format!("/api/v1/functions/{name}/logs")).json();
        assert!(logs["logs"][0]["text"].as_str().unwrap_or("").contains("greeting hej"), "{lang}: {logs}");
    }
}

#[test]
fn plain_returns_responders_and_json_round_trips() {
    let server = Server::start(&[]);
    let big: String = "ü€𝄞x".repeat(1 << 18); // about 1 MB of multi-byte text
    for lang in LANGUAGES {
        let name = format!("testkit-{lang}");
        deploy_ok(&server, &name, &dir_bundle(&name));

        let r = server.invoke(&name, &json!({"action": "plain", "n": 3}));
        assert_eq!((r.status, r.json()), (200, json!({"plain": true, "n": 3})), "{lang}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{lang}");

        let r = server.invoke(&name, &json!({"action": "text"}));
        assert_eq!((r.status, r.text().as_str()), (200, "just text"), "{lang}");
        assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"), "{lang}");

        let r = server.invoke(&name, &json!({"action": "status"}));
        assert_eq!((r.status, r.text().as_str()), (201, "created"), "{lang}");
        assert_eq!(r.header("x-custom"), Some("yes"), "{lang}");

        let payload = json!({"action": "echo", "unicode": "héllo wörld ✓ 🎉", "nested": {"a": [1, {"b": null, "c": 2.5}], "t": true}});
        assert_eq!(server.invoke(&name, &payload).json(), payload, "{lang}");

        let payload = json!({"action": "echo", "big": big});
        let r = server.invoke(&name, &payload);
        assert_eq!(r.status, 200, "{lang}: {}", &r.text()[..r.text().len().min(300)]);
        assert_eq!(r.json(), payload, "{lang}: 1 MB round trip");

        let r = server.call(
            "GET",
            &format!("/fn/{name}/p/q?q=search%20me&name=ignored"),
            &[("x-test", "T")],
            br#"{"action":"params"}"#,
        );
        assert_eq!(
            r.json(),
            json!({"name": name, "q": "search me", "header": "T", "method": "GET", "path": "/p/q"}),
            "{lang}"
        );
    }
}

#[test]
fn logs_are_captured_per_invocation() {
    let server = Server::start(&[]);
    for lang in LANGUAGES {
        let name = format!("testkit-{lang}");
        deploy_ok(&server, &name, &dir_bundle(&name));
        for (id, text) in [("first", "line one"), ("second", "line two")] {
            let id = format!("{lang}-{id}");
            let r = server.call(
                "POST",
                &format!("/fn/{name}"),
                &[("x-request-id", &id)],
                json!({"action": "log", "text": text}).to_string().as_bytes(),
            );
            assert_eq!(r.status, 200, "{lang}: {}", r.text());
        }
        let logs = server.get(&format!("/api/v1/functions/{name}/logs")).json();
        let entries = logs["logs"].as_array().expect("entries");
        let text_of = |id: String| {
            entries.iter().find(|e| e["requestId"] == id).map(|e| e["text"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(text_of(format!("{lang}-first")).as_deref(), Some("line one\n"), "{lang}: {logs}");
        assert_eq!(text_of(format!("{lang}-second")).as_deref(), Some("line two\n"), "{lang}: {logs}");
    }
}

#[test]
fn syntax_errors_are_refused_at_upload_and_exceptions_are_502s() {
    let server = Server::start(&[]);
    for lang in LANGUAGES {
        let name = format!("kit-{lang}");
        deploy_ok(&server, &name, &dir_bundle(&format!("testkit-{lang}")));

        let r = server.deploy(&name, &inline_bundle(lang, broken_handler(lang)));
        assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_handler")), "{lang}: {}", r.text());
        let message = r.json()["error"].as_str().unwrap_or("").to_string();
        assert!(message.contains(entry_file(lang)) && message.contains('2'), "{lang}: names file and line: {message}");
        assert_eq!(server.get(&format!("/api/v1/functions/{name}")).json()["version"], 1, "{lang}: nothing stored");

        let no_handler = inline_bundle(
            lang,
            if *lang == "ruby" { "x = 1\n" } else { "var x = 1;\n" }
                .replace("var ", if *lang == "python" { "" } else { "var " })
                .as_str(),
        );
        let r = server.deploy(&name, &no_handler);
        assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_handler")), "{lang}: {}", r.text());

        let before = server.invoke(&name, &json!({"action": "plain"})).worker_pid();
        let r = server.invoke(&name, &json!({"action": "throw", "message": "boom"}));
        assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{lang}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap_or("").contains("testkit threw boom"), "{lang}: {}", r.text());
        let after = server.invoke(&name, &json!({"action": "plain", "n": 1}));
        assert_eq!(after.status, 200, "{lang}");
        assert_eq!(after.worker_pid(), before, "{lang}: the same worker serves on");
        let logs = server.get(&format!("/api/v1/functions/{name}/logs")).json();
        assert!(
            logs["logs"]
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["outcome"] == "handler_error" && e["text"].as_str().unwrap_or("").contains("boom")),
            "{lang}: the stack trace is in the logs: {logs}"
        );
    }
}

#[test]
fn two_functions_in_one_language_do_not_share_globals() {
    let server = Server::start(&[]);
    for lang in LANGUAGES {
        let (a, b) = (format!("{lang}-a"), format!("{lang}-b"));
        deploy_ok(&server, &a, &dir_bundle(&format!("testkit-{lang}")));
        deploy_ok(&server, &b, &dir_bundle(&format!("testkit-{lang}")));
        assert_eq!(server.invoke(&a, &json!({"action": "setGlobal", "value": "secret"})).status, 200);
        assert_eq!(server.invoke(&b, &json!({"action": "getGlobal"})).json(), json!({"value": null}), "{lang}");
        assert_eq!(
            server.invoke(&a, &json!({"action": "getGlobal"})).json(),
            json!({"value": "secret"}),
            "{lang}: warm state persists"
        );
        // State persists within one function's worker, like a warm Lambda.
        let first = server.invoke(&a, &json!({"action": "count"})).json()["counter"].as_u64().expect("counter");
        assert_eq!(
            server.invoke(&a, &json!({"action": "count"})).json()["counter"].as_u64(),
            Some(first + 1),
            "{lang}"
        );
    }
}

#[test]
fn python_has_its_common_stdlib_without_a_python_install() {
    let server = Server::start(&[]);
    deploy_ok(&server, "py", &dir_bundle("testkit-python"));
    let r = server.invoke("py", &json!({"action": "stdlib"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "json": "{\"a\": [1, 2]}", "re": "a#b#", "math": 4.0, "datetime": "2024-02-29", "base64": "aGk=",
            "hashlib": "ba7816bf", "random": true, "collections": 2, "itertools": [0, 1, 2], "functools": 6,
            "string": "abc", "time": true
        })
    );
}

#[test]
fn script_deadlines_are_504s_and_the_server_carries_on() {
    let server = Server::start(&[]);
    for lang in LANGUAGES {
        let name = format!("slow-{lang}");
        let file = entry_file(lang);
        let code = std::fs::read_to_string(common::repo_root().join(format!("bundles/testkit-{lang}/{file}")))
            .expect("testkit source");
        let metadata = format!(r#"{{"language":"{lang}","entrypointFile":"{file}","timeoutMs":500}}"#);
        deploy_ok(&server, &name, &common::zip(&[("metadata.json", metadata.as_bytes()), (file, code.as_bytes())]));
        let started = std::time::Instant::now();
        let r = server.invoke(&name, &json!({"action": "spin"}));
        assert_eq!((r.status, r.json()["code"].as_str()), (504, Some("timeout")), "{lang}: {}", r.text());
        assert!(started.elapsed() < std::time::Duration::from_millis(1500), "{lang}: took {:?}", started.elapsed());
        assert!(
            wait_until(std::time::Duration::from_secs(10), || server
                .invoke(&name, &json!({"action": "plain", "n": 2}))
                .status
                == 200),
            "{lang}: serves again after a timeout"
        );
    }
}

/// JavaScript's request maps (query, headers) come from the host on first use,
/// and only while their own invocation runs: a `ctx` a handler keeps never reads
/// a later caller's headers, while an async handler reads its own after `await`.
#[test]
fn a_kept_javascript_ctx_never_reads_a_later_request() {
    let server = Server::start(&[]);
    let code = r#"
let kept = null;
async function handler(ctx) {
  if (kept === null) { kept = ctx; return { kept: true }; }
  await null;
  const mine = ctx.request().getHeader("x-secret");
  let stale;
  try { stale = kept.request().getHeader("x-secret"); } catch (e) { stale = "refused: " + e.message; }
  return { mine, stale, q: ctx.request().getParam("q"), list: ctx.request().headers().length > 0 };
}
handler
"#;
    deploy_ok(&server, "keeper", &inline_bundle("js", code));
    assert_eq!(server.invoke("keeper", &json!({})).json(), json!({"kept": true}));
    let r = server.call("POST", "/fn/keeper?q=1", &[("x-secret", "second caller's")], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_eq!(
        (out["mine"].as_str(), out["q"].as_str(), out["list"].as_bool()),
        (Some("second caller's"), Some("1"), Some(true))
    );
    let stale = out["stale"].as_str().unwrap_or_default();
    assert!(stale.starts_with("refused: ") && stale.contains("ended"), "{out}");
}
