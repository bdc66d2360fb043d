//! The threat model, row 5: how the pool shares its capacity when one function
//! tries to take all of it.
//!
//! - row05: a function with `concurrency` 16 (more than the pool's 8 workers)
//!   whose handler sleeps holds at most 7 of the 8 invocation slots; a bystander
//!   function is answered while it does, and the hog's excess waits in the queue
//!   and gets `429 overloaded` after the queue timeout.

mod common;

use std::time::Duration;

use common::{Server, wasm_bundle};
use serde_json::json;

/// The value of `polyfaas_workers{state="…"}` in `/metrics`.
fn workers_in(server: &Server, state: &str) -> u64 {
    let text = server.get("/metrics").text();
    let prefix = format!("polyfaas_workers{{state=\"{state}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn row05_a_function_with_long_invocations_cannot_starve_a_bystander() {
    let server = Server::start(&["--workers", "8", "--queue-timeout-ms", "3000"]);
    let hog_meta = r#"{"language":"wasm","entrypointFile":"testkit-wasm.wasm","concurrency":16,"timeoutMs":60000}"#;
    assert_eq!(server.deploy("hog", &wasm_bundle("testkit-wasm", Some(hog_meta))).status, 201);
    assert_eq!(server.deploy("bystander", &wasm_bundle("hello-wasm", None)).status, 201);

    // Sixteen calls that each hold a worker for 8 s.
    let url = server.url("/fn/hog");
    let hogs: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                common::call(&url, "POST", &[], json!({"action": "sleep", "ms": 8000}).to_string().as_bytes())
            })
        })
        .collect();
    assert!(
        common::wait_until(Duration::from_secs(20), || workers_in(&server, "busy") >= 7),
        "the hog never got 7 workers busy"
    );

    // The bystander is answered, repeatedly, while the hog holds what it may.
    for i in 0..5 {
        let r = server.invoke("bystander", &json!({"name": format!("b{i}")}));
        assert_eq!(r.status, 200, "bystander call {i}: {}", r.text());
        assert_eq!(r.json()["hello"], format!("b{i}"));
    }
    assert!(workers_in(&server, "busy") <= 7, "the hog took the reserved slot");

    // The hog's excess waited for a slot of its own and timed out.
    let statuses: Vec<u16> = hogs.into_iter().map(|t| t.join().expect("client").status).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, refused), (7, 9), "{statuses:?}");
}
