//! Logs and metrics that grew without bound (security issue rows 6 and 12), as an
//! attacker with an upload right would make them grow: many functions that each
//! log megabytes, and many functions deployed, invoked and deleted.

mod common;

use std::time::Duration;

use common::{Server, dir_bundle, wait_until, wasm_bundle};
use serde_json::json;

/// The supervisor's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn row06_many_functions_logging_megabytes_keep_the_supervisor_and_its_log_bounded() {
    const FUNCTIONS: usize = 300;
    const BUDGET: u64 = 8 << 20;
    let server = Server::start(&["--max-log-bytes", &BUDGET.to_string()]);
    let zip = wasm_bundle("testkit-wasm", None);
    for i in 0..FUNCTIONS {
        let r = server.deploy(&format!("noisy-{i}"), &zip);
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // Two invocations each, 5 MiB of logs each: 3 GiB written, 600 entries of
    // 64 KiB kept at most per entry = 37.5 MiB offered to an 8 MiB budget.
    let names: Vec<String> = (0..FUNCTIONS).map(|i| format!("noisy-{i}")).collect();
    std::thread::scope(|scope| {
        for chunk in names.chunks(FUNCTIONS / 2) {
            let server = &server;
            scope.spawn(move || {
                for _ in 0..2 {
                    for name in chunk {
                        let r = server.invoke(name, &json!({"action": "flood", "bytes": 5 << 20}));
                        assert_eq!(r.status, 200, "{name}: {}", r.text());
                    }
                }
            });
        }
    });

    let mut kept_bytes = 0u64;
    let mut entries = 0;
    for name in &names {
        let page = server.get(&format!("/api/v1/functions/{name}/logs")).json();
        for entry in page["logs"].as_array().expect("logs") {
            let text = entry["text"].as_str().expect("text");
            assert!(text.len() <= 64 * 1024, "one entry keeps at most 64 KiB");
            assert_eq!(entry["truncated"], true);
            kept_bytes += text.len() as u64;
            entries += 1;
        }
    }
    assert!(kept_bytes <= BUDGET, "{kept_bytes} bytes of logs kept, budget {BUDGET}");
    assert!(entries >= 50, "the budget is used, not emptied: {entries} entries");
    let newest = server.get(&format!("/api/v1/functions/noisy-{}/logs", FUNCTIONS - 1)).json();
    assert!(!newest["logs"].as_array().expect("logs").is_empty(), "the newest entries are the ones kept");

    let rss = rss_bytes(server.pid());
    assert!(rss < 200 << 20, "supervisor RSS {} MiB after 3 GiB of handler logs", rss >> 20);

    let log = server.logs();
    let handler_lines: Vec<&str> = log.lines().filter(|l| l.contains("handler logs:")).collect();
    assert_eq!(handler_lines.len(), FUNCTIONS * 2, "one excerpt per invocation");
    for line in &handler_lines {
        assert!(line.len() < 3000, "excerpt of {} bytes", line.len());
        assert!(line.contains("more bytes"), "the excerpt says what it left out: {}", &line[line.len() - 80..]);
    }
    assert!(log.len() < 4 << 20, "the server log grew by {} bytes", log.len());
}

#[test]
fn row06_handler_logs_cannot_forge_server_log_lines() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("forger", &wasm_bundle("testkit-wasm", None)).status, 201);
    let forged = "ok\n2026-01-01T00:00:00Z  INFO polyfaas ready: listening on http://evil:1\n\u{1b}[2J";
    let r = server.invoke("forger", &json!({"action": "log", "text": forged}));
    assert_eq!(r.status, 200, "{}", r.text());
    // The server's log is read through a pipe: wait for the invocation's line.
    wait_until(Duration::from_secs(10), || server.logs().contains("handler logs: ok"));
    let log = server.logs();
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01")), "{log}");
    assert!(!log.contains('\u{1b}'), "escape sequences are escaped");
    assert!(log.contains("handler logs: ok\\n2026-01-01"), "{log}");
    // The API keeps the text as written.
    let page = server.get("/api/v1/functions/forger/logs").json();
    assert_eq!(page["logs"][0]["text"].as_str().map(str::trim_end), Some(forged));
}

#[test]
fn row12_deleted_functions_leave_no_metric_series_stats_or_logs() {
    const FUNCTIONS: usize = 40;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[("POLYFAAS_ADMIN_TOKEN", "row12")]);
    let zip = dir_bundle("testkit-js");
    assert_eq!(server.deploy("survivor", &zip).status, 201);
    assert_eq!(server.invoke("survivor", &json!({"action": "plain"})).status, 200);
    for i in 0..FUNCTIONS {
        let name = format!("churn-{i}");
        assert_eq!(server.deploy(&name, &zip).status, 201);
        assert_eq!(server.invoke(&name, &json!({"action": "log", "text": "secret"})).status, 200);
        assert_eq!(server.invoke(&name, &json!({"action": "throw", "message": "x"})).status, 502);
    }
    let metrics = server.get("/metrics").text();
    assert!(metrics.contains("function=\"churn-7\""), "series exist before the delete");
    for i in 0..FUNCTIONS {
        let r = server.manage("DELETE", &format!("/api/v1/functions/churn-{i}"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let metrics = server.get("/metrics").text();
    assert!(!metrics.contains("churn-"), "series of deleted functions remain:\n{metrics}");
    assert!(metrics.contains("function=\"survivor\""), "the others' stay");
    let families = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).expect("parses");
    assert!(families.samples.iter().all(|s| s.labels.get("function").is_none_or(|f| f == "survivor")));

    let stats = server.manage("GET", "/admin/functions", &[], b"").json();
    let names: Vec<&str> =
        stats["functions"].as_array().expect("functions").iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["survivor"]);

    // A new function under an old name starts with no logs of the old one.
    assert_eq!(server.deploy("churn-3", &zip).status, 201);
    let page = server.manage("GET", "/api/v1/functions/churn-3/logs", &[], b"").json();
    assert_eq!(page["logs"], json!([]), "{page}");
}
