//! Operating polyfaas: admin routes, restarts under load, metrics, systemd
//! notifications, graceful shutdown and orphan-free crashes.

mod common;

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, process_exists, wait_until, wasm_bundle};
use serde_json::json;

const TOKEN: &str = "test-admin-token";

fn admin_server(args: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), args, &[("POLYFAAS_ADMIN_TOKEN", TOKEN)]);
    (server, dir)
}

fn admin(server: &Server, method: &str, path: &str) -> common::Reply {
    server.call(method, path, &[("authorization", &format!("Bearer {TOKEN}"))], b"")
}

fn worker_pids(server: &Server) -> Vec<u64> {
    let r = admin(server, "GET", "/admin/workers");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["workers"].as_array().expect("workers").iter().filter_map(|w| w["pid"].as_u64()).collect()
}

#[test]
fn admin_routes_need_the_token() {
    let (server, _dir) = admin_server(&[]);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.invoke("hello-wasm", &json!({})).status, 200);

    let r = server.get("/admin/workers");
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("unauthorized")));
    let r = server.call("GET", "/admin/workers", &[("authorization", "Bearer wrong")], b"");
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(server.call("POST", "/admin/workers/restart", &[("authorization", "Bearer wrong")], b"").status, 403);

    let r = admin(&server, "GET", "/admin/workers");
    assert_eq!(r.status, 200);
    let workers = r.json()["workers"].as_array().expect("workers").clone();
    assert!(!workers.is_empty());
    for w in &workers {
        let pid = w["pid"].as_u64().expect("pid") as u32;
        assert!(process_exists(pid), "worker {pid} exists");
        assert!(
            ["blank", "initializing", "idle", "busy", "draining"].contains(&w["state"].as_str().unwrap_or("")),
            "{w}"
        );
        assert!(w["rssBytes"].as_u64().unwrap_or(0) > 0, "{w}");
        assert!(["wasm", "js", "python", "ruby"].contains(&w["language"].as_str().unwrap_or("")), "{w}");
    }
    assert!(workers.iter().any(|w| w["function"] == "hello-wasm" && w["version"] == 1 && w["invocations"] == 1));

    let f = admin(&server, "GET", "/admin/functions").json();
    assert_eq!(f["functions"][0]["name"], "hello-wasm");
    assert_eq!(f["functions"][0]["invocations"], 1);
    assert!(f["functions"][0]["p99Ms"].as_f64().is_some());

    // Without a configured token the admin routes are off.
    let plain = Server::start(&[]);
    let r = plain.call("GET", "/admin/workers", &[("authorization", "Bearer anything")], b"");
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("admin_disabled")));
    assert!(plain.logs().contains("no admin token configured"));
}

#[test]
fn graceful_restart_under_load_fails_no_request() {
    let (server, _dir) = admin_server(&["--workers", "6"]);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.deploy("name-twice", &wasm_bundle("name-twice-wasm", None)).status, 201);
    assert_eq!(server.invoke("hello-wasm", &json!({})).status, 200);
    assert_eq!(server.invoke("name-twice", &json!({})).status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let url = server.url(if i % 2 == 0 { "/fn/hello-wasm" } else { "/fn/name-twice" });
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = common::call(&url, "POST", &[], br#"{"name":"x"}"#);
                    if r.status == 200 { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 {
                        eprintln!("failed: {} {}", r.status, r.text());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let before: HashSet<u64> = worker_pids(&server).into_iter().collect();
    let r = admin(&server, "POST", "/admin/workers/restart");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.json()["restarted"].as_array().expect("list").is_empty());
    std::thread::sleep(Duration::from_millis(3500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    assert!(ok.load(Ordering::Relaxed) > 100, "load ran: {}", ok.load(Ordering::Relaxed));
    assert!(
        wait_until(Duration::from_secs(5), || worker_pids(&server).iter().all(|p| !before.contains(p))),
        "every worker is new: before {before:?}, now {:?}",
        worker_pids(&server)
    );
}

#[test]
fn forced_restart_of_a_busy_worker_fails_only_its_request() {
    let (server, _dir) = admin_server(&[]);
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", None)).status, 201);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.invoke("hello-wasm", &json!({})).status, 200);
    let url = server.url("/fn/testkit");
    let slow = std::thread::spawn(move || common::call(&url, "POST", &[], br#"{"action":"sleep","ms":4000}"#));

    let busy = || {
        admin(&server, "GET", "/admin/workers").json()["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .find(|w| w["state"] == "busy" && w["function"] == "testkit")
            .cloned()
    };
    assert!(wait_until(Duration::from_secs(5), || busy().is_some()), "a busy testkit worker");
    let size_before = worker_pids(&server).len();
    let worker = busy().expect("busy worker");
    let r = admin(&server, "POST", &format!("/admin/workers/{}/restart?force=true", worker["id"]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["restarted"][0]["action"], "killed");

    let slow = slow.join().expect("slow request");
    assert_eq!((slow.status, slow.json()["code"].as_str()), (502, Some("worker_crashed")), "{}", slow.text());
    assert_eq!(server.invoke("hello-wasm", &json!({"name": "z"})).json()["hello"], "z");
    assert!(!process_exists(worker["pid"].as_u64().expect("pid") as u32));
    assert!(wait_until(Duration::from_secs(5), || worker_pids(&server).len() >= size_before), "pool back to its size");
    assert_eq!(server.invoke("testkit", &json!({"k": 1})).status, 200);
    assert_eq!(admin(&server, "POST", "/admin/workers/99999/restart").status, 404);
}

#[test]
fn metrics_parse_and_count_invocations() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", None)).status, 201);
    for _ in 0..7 {
        assert_eq!(server.invoke("hello-wasm", &json!({})).status, 200);
    }
    assert_eq!(server.invoke("testkit", &json!({"action": "panic"})).status, 502);
    assert_eq!(server.invoke("nope", &json!({})).status, 404); // not an invocation

    let text = server.get("/metrics").text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("prometheus text");
    let invocations: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "polyfaas_invocations_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(invocations, 8.0, "{text}");
    let has = |name: &str| scrape.samples.iter().any(|s| s.metric.starts_with(name));
    for name in [
        "polyfaas_invocation_duration_seconds",
        "polyfaas_queue_depth",
        "polyfaas_workers",
        "polyfaas_cold_starts_total",
        "polyfaas_uploads_total",
        "polyfaas_upload_bytes_total",
    ] {
        assert!(has(name), "{name} missing:\n{text}");
    }
    assert!(text.contains(r#"polyfaas_invocations_total{function="testkit",outcome="handler_error"} 1"#), "{text}");
    assert_eq!(server.get("/healthz").status, 200);
    assert!(wait_until(Duration::from_secs(5), || server.get("/readyz").status == 200));
}

#[test]
fn request_ids_are_echoed_or_generated_and_logged() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    let r = server.call("POST", "/fn/hello-wasm", &[("x-request-id", "my-id-42")], b"{}");
    assert_eq!(r.header("x-request-id"), Some("my-id-42"));
    assert!(wait_until(Duration::from_secs(2), || server.logs().contains("request_id=my-id-42")), "{}", server.logs());
    let generated = server.invoke("hello-wasm", &json!({}));
    assert!(generated.header("x-request-id").is_some_and(|id| id.len() > 8));
    assert!(server.get("/fn/nope").header("x-request-id").is_some(), "errors carry it too");
}

#[test]
fn systemd_hears_ready_then_watchdog_pings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let data = dir.path().join("data");
    let server = Server::start_in(
        &data,
        &[],
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8 path")), ("WATCHDOG_USEC", "200000")],
    );
    let mut buf = [0u8; 4096];
    let mut ready = false;
    let mut watchdogs = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && watchdogs < 3 {
        let n = socket.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.contains("READY=1") {
            assert!(std::net::TcpStream::connect(&server.addr).is_ok(), "the port accepts before READY=1");
            ready = true;
        }
        if msg.contains("WATCHDOG=1") {
            assert!(ready, "WATCHDOG=1 only after READY=1");
            watchdogs += 1;
        }
    }
    assert!(ready && watchdogs >= 3, "ready {ready}, watchdogs {watchdogs}");
    server.stop();
    let mut stopping = false;
    socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    while let Ok(n) = socket.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(stopping, "STOPPING=1 on shutdown");
}

#[test]
fn sigterm_lets_the_running_invocation_finish_then_exits_cleanly() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("testkit", &wasm_bundle("testkit-wasm", None)).status, 201);
    let url = server.url("/fn/testkit");
    let slow = std::thread::spawn(move || common::call(&url, "POST", &[], br#"{"action":"sleep","ms":2000}"#));
    std::thread::sleep(Duration::from_millis(400));
    let workers = server.worker_pids();
    assert!(!workers.is_empty());
    let code = server.stop();
    let r = slow.join().expect("slow request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["slept"], 2000);
    assert_eq!(code, Some(0));
    assert!(wait_until(Duration::from_secs(2), || workers.iter().all(|p| !process_exists(*p))), "no worker remains");
}

#[test]
fn kill_9_of_the_server_takes_its_workers_and_a_restart_serves_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[]);
    assert_eq!(server.deploy("hello-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.deploy("name-twice", &wasm_bundle("name-twice-wasm", None)).status, 201);
    assert_eq!(server.invoke("hello-wasm", &json!({})).status, 200);
    assert_eq!(server.invoke("name-twice", &json!({})).status, 200);
    let workers = server.worker_pids();
    assert!(workers.len() >= 2, "{workers:?}");
    common::signal(server.pid(), libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(1), || workers.iter().all(|p| !process_exists(*p))),
        "workers gone within 1 s"
    );
    drop(server);

    let server = Server::start_in(dir.path(), &[], &[]);
    assert_eq!(server.invoke("hello-wasm", &json!({"name": "again"})).json()["hello"], "again");
    assert_eq!(server.invoke("name-twice", &json!({"name": "b"})).json()["name_twice"], "b b");
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(common::repo_root().join("deploy/polyfaas.service")).expect("unit file");
    for key in [
        "Type=notify",
        "StateDirectory=polyfaas",
        "WatchdogSec=",
        "Restart=on-failure",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.contains(key), "{key}");
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("polyfaas.service");
    let bin = common::bin_dir().join("polyfaas");
    std::fs::write(&path, unit.replace("/usr/local/bin/polyfaas", bin.to_str().expect("utf-8"))).expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (installed by scripts/test)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Started as `scripts/serve` starts it, with relative paths (`./data`, and a
/// runtime cache beneath it by default): every runtime serves, although its
/// workers start in `/`, not in the server's working directory.
#[test]
fn relative_paths_serve_every_language() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let server = Server::start_relative(cwd.path());
    for (name, zip) in [
        ("js", common::dir_bundle("hello-js")),
        ("py", common::dir_bundle("hello-python")),
        ("rb", common::dir_bundle("hello-ruby")),
        ("wasm", wasm_bundle("hello-wasm", None)),
    ] {
        let r = server.deploy(name, &zip);
        assert!(r.status == 200 || r.status == 201, "deploying {name}: {} {}", r.status, r.text());
        let r = server.call("POST", &format!("/fn/{name}?name=x"), &[("content-type", "application/json")], b"{}");
        assert_eq!(r.status, 200, "invoking {name}: {}", r.text());
    }
    assert!(cwd.path().join("data/functions/rb").is_dir(), "the data dir is relative to the working directory");
}

/// Idle workers are kept by memory, not by `--workers`: with room, six functions
/// stay warm on a pool that runs two at once; with a budget for about three,
/// the least recently used go (not the first started), the newest stay, and
/// `/admin/workers` and `/metrics` show what each is charged.
#[test]
fn idle_workers_are_kept_by_memory_and_the_least_recently_used_go_first() {
    let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let idle_of = |server: &Server| -> Vec<serde_json::Value> {
        admin(server, "GET", "/admin/workers").json()["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .filter(|w| w["state"] == "idle")
            .cloned()
            .collect()
    };
    let idle_names = |server: &Server| -> HashSet<String> {
        idle_of(server).iter().filter_map(|w| w["function"].as_str().map(str::to_string)).collect()
    };
    let call_each = |server: &Server| {
        for name in &names {
            assert_eq!(server.deploy(name, &wasm_bundle("hello-wasm", None)).status, 201);
            assert_eq!(server.invoke(name, &json!({})).status, 200);
        }
    };

    let (roomy, _dir) = admin_server(&["--workers", "2"]);
    call_each(&roomy);
    assert_eq!(idle_names(&roomy).len(), 6, "six warm workers on a pool that runs two at once");
    let before: HashSet<u32> = names.iter().map(|n| roomy.invoke(n, &json!({})).worker_pid()).collect();
    assert_eq!(before.len(), 6, "each function answered from its own warm worker");
    // What one such worker is charged, on this machine.
    let largest = idle_of(&roomy).iter().filter_map(|w| w["memoryBytes"].as_u64()).max().expect("memoryBytes");
    assert!(largest > 0);

    let budget_mb = (largest * 7 / 2).div_ceil(1 << 20);
    let (tight, _dir) = admin_server(&["--workers", "2", "--pool-memory-mb", &budget_mb.to_string()]);
    call_each(&tight);
    // f0 is used again: f1 is now the least recently used.
    assert_eq!(tight.invoke("f0", &json!({})).status, 200);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let idle = idle_names(&tight);
            idle.len() < names.len() && idle.contains("f0") && idle.contains("f5")
        }),
        "the newest stay and older ones go: {:?}",
        idle_names(&tight)
    );
    let idle = idle_names(&tight);
    assert!(!idle.contains("f1"), "the least recently used went first: {idle:?}");
    let gauge = || -> u64 {
        let metrics = tight.get("/metrics").text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("polyfaas_idle_worker_memory_bytes "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no idle memory gauge in {metrics}"))
    };
    let kept = gauge();
    assert!(kept > 0 && kept <= budget_mb << 20, "{kept} bytes kept, budget {budget_mb} MiB");
    // The same sum, unless the sampler re-measured a worker between the two reads.
    let charged = || -> u64 { idle_of(&tight).iter().filter_map(|w| w["memoryBytes"].as_u64()).sum() };
    assert!(
        wait_until(Duration::from_secs(5), || gauge() == charged()),
        "the gauge is the sum of what idle workers are charged"
    );
    // A function whose worker went is simply cold again.
    assert_eq!(tight.invoke("f1", &json!({})).status, 200);
}
