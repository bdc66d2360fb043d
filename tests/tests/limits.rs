//! Per-function limits enforced by the pool: concurrency, and functions whose
//! start keeps failing.

mod common;

use std::time::{Duration, Instant};

use common::{Server, wasm_bundle};
use serde_json::json;

fn sleeper(concurrency: u32) -> Vec<u8> {
    let meta = format!(r#"{{"language":"wasm","entrypointFile":"testkit-wasm.wasm","concurrency":{concurrency}}}"#);
    wasm_bundle("testkit-wasm", Some(&meta))
}

fn fire(server: &Server, name: &str, n: usize, ms: u64) -> Vec<common::Reply> {
    let url = server.url(&format!("/fn/{name}"));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                common::call(&url, "POST", &[], json!({"action": "sleep", "ms": ms}).to_string().as_bytes())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("client")).collect()
}

#[test]
fn concurrency_is_obeyed_and_excess_waits_in_the_queue() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("one-at-a-time", &sleeper(1)).status, 201);
    assert_eq!(server.invoke("one-at-a-time", &json!({})).status, 200);
    let started = Instant::now();
    let replies = fire(&server, "one-at-a-time", 4, 300);
    assert!(replies.iter().all(|r| r.status == 200), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    // Four 300 ms invocations, one at a time (8 workers would allow all at once).
    assert!(started.elapsed() >= Duration::from_millis(1150), "ran concurrently: {:?}", started.elapsed());
}

#[test]
fn concurrency_past_the_queue_is_429_with_retry_after() {
    let server = Server::start(&["--max-queue", "1"]);
    assert_eq!(server.deploy("one-at-a-time", &sleeper(1)).status, 201);
    assert_eq!(server.invoke("one-at-a-time", &json!({})).status, 200);
    let replies = fire(&server, "one-at-a-time", 5, 500);
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert!(refused.len() >= 2, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in refused {
        assert_eq!(r.json()["code"], "overloaded");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert!(replies.iter().filter(|r| r.status == 200).count() >= 2);
}

#[test]
fn a_function_that_keeps_failing_to_start_is_unhealthy_and_others_carry_on() {
    let server = Server::start(&[]);
    // Passes the upload's dry run (in staging/), fails every real Init (in functions/).
    // (`__file__` is relative to the bundle; the working directory is the bundle.)
    let code = "import os\nif '/functions/' in os.getcwd():\n    raise RuntimeError('broken at init')\n\ndef handler(ctx):\n    return 'never'\n";
    let zip = common::zip(&[
        ("metadata.json", br#"{"language":"python","entrypointFile":"handler.py"}"#),
        ("handler.py", code.as_bytes()),
    ]);
    assert_eq!(server.deploy("flaky", &zip).status, 201);
    assert_eq!(server.deploy("healthy", &wasm_bundle("hello-wasm", None)).status, 201);
    for _ in 0..3 {
        let r = server.invoke("flaky", &json!({}));
        assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{}", r.text());
        assert!(r.json()["error"].as_str().unwrap_or("").contains("broken at init"), "{}", r.text());
    }
    let started = Instant::now();
    let r = server.invoke("flaky", &json!({}));
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("unhealthy")), "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_millis(500), "answered at once: {:?}", started.elapsed());
    for _ in 0..5 {
        assert_eq!(server.invoke("healthy", &json!({"name": "ok"})).status, 200);
    }
    // A new version starts healthy.
    let fixed = common::zip(&[
        ("metadata.json", br#"{"language":"python","entrypointFile":"handler.py"}"#),
        ("handler.py", b"def handler(ctx):\n    return 'fixed'\n"),
    ]);
    assert_eq!(server.deploy("flaky", &fixed).status, 201);
    assert_eq!(server.invoke("flaky", &json!({})).text(), "fixed");
}
