//! The working core, end to end: upload and invoke WebAssembly through the
//! original project's routes and the native ones, against the real binaries.

mod common;

use std::time::Duration;

use common::{Server, multipart, seed_bundle, wait_until, wasm_bundle};
use serde_json::json;

/// The original project's own test, against its own bundle, unchanged.
#[test]
fn original_rust_wasm_bundle_runs_through_the_compat_routes() {
    let server = Server::start(&[]);
    let (content_type, body) = multipart("rust-wasm.zip", &seed_bundle("rust-wasm.zip"));
    let up = server.call("POST", "/api/v1/handler/rust-wasm", &[("content-type", &content_type)], &body);
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(up.text(), r#"{"status":"ok","message":"Handler rust-wasm uploaded"}"#);
    assert_eq!(up.json(), json!({"status": "ok", "message": "Handler rust-wasm uploaded"}));

    let got =
        server.call("GET", "/api/v1/handler/rust-wasm", &[("content-type", "application/json")], br#"{"name":"John"}"#);
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["name_twice"], "John John");
    assert_eq!(got.header("content-type"), Some("application/json"));

    // "also POST"
    let posted =
        server.call("POST", "/api/v1/handler/rust-wasm", &[("content-type", "application/json")], br#"{"name":"Ann"}"#);
    assert_eq!(posted.json()["name_twice"], "Ann Ann");
}

/// Both module shapes, with method, path, query and a header reaching the module.
#[test]
fn example_bundles_see_the_whole_request() {
    let server = Server::start(&[]);
    for (name, key, expected) in [("hello-wasm", "hello", "Ada"), ("name-twice-wasm", "name_twice", "Ada Ada")] {
        let up = server.deploy(name, &wasm_bundle(name, None));
        assert_eq!(up.status, 201, "{}", up.text());
        assert_eq!(up.json()["version"], 1);
        assert_eq!(up.json()["language"], "wasm");

        let r = server.call(
            "PATCH",
            &format!("/fn/{name}/some/path?x=1&y=two"),
            &[("x-greeting", "hi there"), ("content-type", "application/json")],
            br#"{"name":"Ada"}"#,
        );
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let out = r.json();
        assert_eq!(out[key], expected, "{name}");
        assert_eq!(out["method"], "PATCH", "{name}");
        assert_eq!(out["path"], "/some/path", "{name}");
        assert_eq!(out["query"], "x=1&y=two", "{name}");
        assert_eq!(out["greeting"], "hi there", "{name}");
    }
    let listed = server.get("/api/v1/functions").json();
    let names: Vec<&str> =
        listed["functions"].as_array().expect("list").iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, vec!["hello-wasm", "name-twice-wasm"]);

    let described = server.get("/api/v1/functions/hello-wasm").json();
    assert_eq!(described["versions"].as_array().expect("versions").len(), 1);
    assert_eq!(described["versions"][0]["sha256"].as_str().map(str::len), Some(64));

    assert_eq!(server.call("DELETE", "/api/v1/functions/hello-wasm", &[], b"").status, 200);
    assert_eq!(server.invoke("hello-wasm", &json!({})).status, 404);
    assert_eq!(server.call("DELETE", "/api/v1/functions/hello-wasm", &[], b"").status, 404);
    assert_eq!(server.invoke("name-twice-wasm", &json!({"name": "B"})).json()["name_twice"], "B B");
}

#[test]
fn functions_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[]);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    let before = server.invoke("hello-wasm", &json!({"name": "Kim"})).json();
    assert_eq!(server.stop(), Some(0));

    let server = Server::start_in(dir.path(), &[], &[]);
    let listed = server.get("/api/v1/functions").json();
    assert_eq!(listed["functions"][0]["name"], "hello-wasm");
    assert_eq!(server.invoke("hello-wasm", &json!({"name": "Kim"})).json(), before);
}

#[test]
fn unknown_functions_and_routes_are_json_404s() {
    let server = Server::start(&[]);
    // The original route takes exactly one segment, as its `{name}` pattern did.
    let paths = [
        "/fn/nope",
        "/api/v1/handler/nope",
        "/api/v1/handler",
        "/api/v1/handler/",
        "/api/v1/handler/a/b",
        "/api/v1/handlers/a",
        "/api/v1/functions/nope",
        "/no/such/route",
    ];
    for path in paths {
        let r = server.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["code"], "not_found", "{path}");
    }
    let r = server.get("/fn/Bad..Name");
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_name")));
    let r = server.get("/api/v1/handler/Bad..Name");
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("invalid_name")));
    for method in ["PUT", "DELETE", "PATCH"] {
        let r = server.call(method, "/api/v1/handler/nope", &[], b"");
        assert_eq!((r.status, r.json()["code"].as_str()), (405, Some("method_not_allowed")), "{method}");
    }
}

#[test]
fn traps_and_nonzero_exits_are_502_and_the_server_carries_on() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", None)).status, 201);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);

    let r = server.invoke("testkit", &json!({"action": "panic"}));
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap_or("").contains("trapped"), "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(5), || server.logs().contains("testkit was asked to panic")),
        "{}",
        server.logs()
    );
    assert!(server.logs().contains("unreachable"), "the trap is in the logs:\n{}", server.logs());

    let r = server.invoke("testkit", &json!({"action": "exit", "code": 3}));
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap_or("").contains("code 3"), "{}", r.text());

    // exit(0) is a normal end.
    assert_eq!(server.invoke("testkit", &json!({"action": "exit", "code": 0})).status, 200);
    assert_eq!(server.invoke("hello-wasm", &json!({"name": "ok"})).json()["hello"], "ok");
    assert_eq!(server.invoke("testkit", &json!({"x": 1})).json(), json!({"x": 1}));
}

#[test]
fn deadline_interrupts_the_handler_and_the_worker_survives() {
    let server = Server::start(&[]);
    let meta = r#"{"language":"wasm","entrypointFile":"testkit-wasm.wasm","timeoutMs":300}"#;
    assert_eq!(server.deploy("spinner", &wasm_bundle("testkit-wasm", Some(meta))).status, 201);
    let warm = server.invoke("spinner", &json!({"action": "echo"}));
    let started = std::time::Instant::now();
    let r = server.invoke("spinner", &json!({"action": "spin"}));
    assert_eq!((r.status, r.json()["code"].as_str()), (504, Some("timeout")), "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(1300), "took {:?}", started.elapsed());
    let after = server.invoke("spinner", &json!({"action": "echo"}));
    assert_eq!(after.status, 200);
    assert_eq!(after.worker_pid(), warm.worker_pid(), "epoch interruption keeps the worker");
}

#[test]
fn a_killed_worker_fails_its_request_and_is_replaced() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", None)).status, 201);
    let pid = server.invoke("testkit", &json!({})).worker_pid();

    let url = server.url("/fn/testkit");
    let slow = std::thread::spawn(move || {
        common::call(&url, "POST", &[], json!({"action": "sleep", "ms": 5000}).to_string().as_bytes())
    });
    std::thread::sleep(Duration::from_millis(500));
    common::signal(pid, libc::SIGKILL);
    let r = slow.join().expect("request thread");
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("worker_crashed")), "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap_or("").contains("signal 9"), "{}", r.text());

    let next = server.invoke("testkit", &json!({"n": 2}));
    assert_eq!(next.status, 200, "{}", next.text());
    assert_ne!(next.worker_pid(), pid);
    assert!(common::process_exists(next.worker_pid()));
}

/// User code runs in a worker process: not the server's pid, the worker binary,
/// and none of the server's environment.
#[test]
fn user_code_runs_in_a_worker_not_in_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[("POLYFAAS_ADMIN_TOKEN", "s3cret"), ("SECRET_OF_SERVER", "x")]);
    let meta = r#"{"language":"wasm","entrypointFile":"testkit-wasm.wasm","env":{"GREETING":"hej"}}"#;
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", Some(meta))).status, 201);
    let r = server.invoke("testkit", &json!({"action": "env"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let pid = r.worker_pid();
    assert_ne!(pid, server.pid());
    assert!(server.worker_pids().contains(&pid), "the worker is a child of the server");
    // The command line, not /proc/<pid>/exe: a worker is not dumpable, so when the
    // tests do not run as root (the server's uid is theirs) its exe link is closed.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("worker cmdline");
    let argv0 = cmdline.split(|b| *b == 0).next().map(String::from_utf8_lossy).unwrap_or_default();
    assert!(argv0.ends_with("polyfaas-worker"), "{argv0:?}");

    let env = r.json();
    assert_eq!(env["GREETING"], "hej");
    assert_eq!(env["REQUEST_METHOD"], "POST");
    for (k, _) in env.as_object().expect("env object") {
        assert!(!k.starts_with("POLYFAAS") && k != "SECRET_OF_SERVER" && k != "PATH" && k != "HOME", "leaked {k}");
    }
}

/// The environment reaches a module through polyfaas's own `environ_get` and
/// `environ_sizes_get`: the same variables as the standard library sees, at the
/// pointers the module gave; a pointer past its memory or misaligned is a trap
/// (a 502 for that call alone), never a write elsewhere.
#[test]
fn the_raw_environment_calls_check_every_pointer() {
    let server = Server::start(&[]);
    let meta = r#"{"language":"wasm","entrypointFile":"testkit-wasm.wasm","env":{"GREETING":"hej"}}"#;
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", Some(meta))).status, 201);
    let headers = [("content-type", "application/json"), ("x-my-header", "a=b")];
    let seen = server.call("POST", "/fn/testkit?x=1", &headers, br#"{"action":"env"       }"#).json(); // as long as the next body
    let raw = server.call("POST", "/fn/testkit?x=1", &headers, br#"{"action":"environRaw"}"#).json();
    let raw: Vec<&str> = raw.as_array().expect("a list").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(raw.first(), Some(&"GREETING=hej"), "the function's own env first: {raw:?}");
    assert!(raw.contains(&"HTTP_X_MY_HEADER=a=b") && raw.contains(&"QUERY_STRING=x=1"), "{raw:?}");
    let listed: std::collections::BTreeMap<&str, &str> = raw.iter().filter_map(|v| v.split_once('=')).collect();
    for (name, value) in seen.as_object().expect("env object") {
        assert_eq!(Some(value.as_str().unwrap_or_default()), listed.get(name.as_str()).copied(), "{name}");
    }

    for bad in [
        json!({"action": "environAt", "count": 0xffff_fff0u32, "size": 16}),
        json!({"action": "environAt", "count": 16, "size": 18}),
        json!({"action": "environAt", "pointers": 16, "buf": 0xffff_ff00u32}),
        json!({"action": "environAt", "pointers": 0xffff_fffcu32, "buf": 16}),
        json!({"action": "environAt", "pointers": 17, "buf": 64}),
    ] {
        let r = server.invoke("testkit", &bad);
        assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{bad}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap_or("").contains("pointer"), "{bad}: {}", r.text());
    }
    // In bounds and aligned (low memory is the module's own to scribble on): fine.
    let r = server.invoke("testkit", &json!({"action": "environAt", "count": 16, "size": 20}));
    assert_eq!(r.json(), json!({"errno": 0}), "{}", r.text());
    assert_eq!(server.invoke("testkit", &json!({"x": 1})).json(), json!({"x": 1}), "still serving");
}

/// 200 concurrent invocations, 4 running at once: every one answered, with its own input.
#[test]
fn many_concurrent_invocations_queue_and_none_get_mixed_up() {
    let server = Server::start(&["--workers", "4"]);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    let url = server.url("/fn/hello-wasm");
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"name": format!("caller-{i}"), "n": i}).to_string();
                (i, common::call(&url, "POST", &[("content-type", "application/json")], body.as_bytes()))
            })
        })
        .collect();
    let mut pids = std::collections::HashSet::new();
    for t in threads {
        let (i, r) = t.join().expect("thread");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        let out = r.json();
        assert_eq!(out["hello"], format!("caller-{i}"));
        assert_eq!(out["input"]["n"], i);
        pids.insert(r.worker_pid());
    }
    // Four run at once, and a free slot always finds the idle worker its
    // predecessor left: no fifth process ever serves the function.
    assert!(pids.len() <= 4, "at most 4 workers: {pids:?}");
}

#[test]
fn cgi_headers_and_output_caps() {
    let server = Server::start(&["--max-output-bytes", "100000"]);
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", None)).status, 201);
    let r = server.invoke("testkit", &json!({"action": "headers"}));
    assert_eq!((r.status, r.text().as_str()), (201, "created"));
    assert_eq!(r.header("x-testkit"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("text/plain"));

    assert_eq!(server.invoke("testkit", &json!({"action": "print", "bytes": 50_000})).body.len(), 50_000);
    let r = server.invoke("testkit", &json!({"action": "print", "bytes": 5_000_000}));
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("response_too_large")), "{}", r.text());
    assert_eq!(server.invoke("testkit", &json!({"ok": true})).status, 200);
}

#[test]
fn memory_limit_and_stack_overflow_are_clean_errors() {
    let server = Server::start(&[]);
    let meta = r#"{"language":"wasm","entrypointFile":"testkit-wasm.wasm","memoryMb":32}"#;
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", Some(meta))).status, 201);
    assert_eq!(server.invoke("testkit", &json!({"action": "alloc", "mb": 8})).status, 200);
    let r = server.invoke("testkit", &json!({"action": "alloc", "mb": 64}));
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("memory_limit")), "{}", r.text());
    let r = server.invoke("testkit", &json!({"action": "recurse"}));
    assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{}", r.text());
    assert_eq!(server.invoke("testkit", &json!({"ok": 1})).status, 200);
}

/// A module's `start` function is its own code, run by instantiating it: it is
/// held to the function's timeout like the handler. Here it never ends: every
/// call is a clean `504 timeout`, no worker hangs, and a bystander function is
/// served meanwhile.
#[test]
fn a_start_function_that_never_ends_is_each_calls_timeout() {
    #[rustfmt::skip]
    let spin_at_start: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // types: () -> ()
        0x03, 0x03, 0x02, 0x00, 0x00, // two functions of that type
        0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x01, // export function 1 as _start
        0x08, 0x01, 0x00, // start: function 0
        0x0a, 0x0c, 0x02, // code, two bodies:
        0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // function 0: loop br 0 end
        0x02, 0x00, 0x0b, // function 1: nothing
    ];
    let server = Server::start(&[]);
    let meta = br#"{"language":"wasm","entrypointFile":"spin.wasm","timeoutMs":300}"#;
    let r = server.deploy("spin-at-start", &common::zip(&[("metadata.json", meta), ("spin.wasm", spin_at_start)]));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let r = server.invoke("spin-at-start", &json!({}));
        assert_eq!((r.status, r.json()["code"].as_str()), (504, Some("timeout")), "{}", r.text());
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert_eq!(server.invoke("hello-wasm", &json!({"name": "ok"})).json()["hello"], "ok");
    }
}

#[test]
fn bad_uploads_are_rejected_and_the_current_version_keeps_serving() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("f", &wasm_bundle("hello-wasm", None)).status, 201);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not a zip", b"hello".to_vec(), 400, "not_a_zip"),
        ("no metadata", common::zip(&[("a.wasm", b"\0asm")]), 400, "invalid_bundle"),
        (
            "unknown field",
            common::zip(&[
                ("metadata.json", br#"{"language":"wasm","entrypointFile":"a.wasm","x":1}"#),
                ("a.wasm", b"\0asm"),
            ]),
            400,
            "invalid_bundle",
        ),
        (
            "missing entrypoint",
            common::zip(&[("metadata.json", br#"{"language":"wasm","entrypointFile":"b.wasm"}"#)]),
            400,
            "invalid_bundle",
        ),
        ("traversal", common::zip(&[("../evil", b"x")]), 400, "unsafe_path"),
        (
            "invalid wasm",
            common::zip(&[
                ("metadata.json", br#"{"language":"wasm","entrypointFile":"a.wasm"}"#),
                ("a.wasm", b"\0asm garbage"),
            ]),
            400,
            "invalid_handler",
        ),
        (
            "timeout out of range",
            common::zip(&[
                ("metadata.json", br#"{"language":"wasm","entrypointFile":"a.wasm","timeoutMs":99999999}"#),
                ("a.wasm", b"\0asm"),
            ]),
            400,
            "invalid_bundle",
        ),
    ];
    for (what, zip, status, code) in cases {
        let r = server.deploy("f", &zip);
        assert_eq!((r.status, r.json()["code"].as_str()), (status, Some(code)), "{what}: {}", r.text());
    }
    let staging: Vec<_> = std::fs::read_dir(server.data_dir.join("staging")).expect("staging").collect();
    assert!(staging.is_empty(), "rejected uploads leave nothing staged");
    assert_eq!(server.get("/api/v1/functions/f").json()["version"], 1);
    assert_eq!(server.invoke("f", &json!({"name": "still"})).json()["hello"], "still");
}
