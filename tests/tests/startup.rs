//! Starting the server as a service manager sees it, without one: the admin
//! token leaves no trace in `/proc/<pid>/environ` and is found as a systemd
//! credential, the notify socket hears a status line that stays current and
//! `EXTEND_TIMEOUT_USEC` while the Ruby runtime loads, and a pool that cannot
//! warm either reports `degraded` (some runtimes) or ends the process with exit
//! code 78 (none). A fake notify socket stands in for systemd; `worker-bin`
//! wrappers stand in for a slow compile and for runtimes that cannot start.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, wait_until, wasm_bundle};
use serde_json::json;

/// A `worker-bin` that runs `before` (shell) and then the real worker.
fn wrapper(dir: &Path, before: &str) -> PathBuf {
    let path = dir.join("worker-wrapper");
    let real = common::bin_dir().join("polyfaas-worker");
    std::fs::write(&path, format!("#!/bin/sh\n{before}\nexec '{}' \"$@\"\n", real.display())).expect("wrapper");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    path
}

/// A bound notify socket in `dir`, as systemd would pass it.
fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    (socket, path.to_str().expect("utf-8").to_string())
}

/// Every message that arrives within `within`, until `stop` says enough.
fn messages_until(socket: &UnixDatagram, within: Duration, mut stop: impl FnMut(&[String]) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !stop(&seen) {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    seen
}

#[test]
fn an_admin_token_from_the_environment_is_gone_from_proc_environ() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "env-token-9f27c1e4";
    let server =
        Server::start_in(dir.path(), &[], &[("POLYFAAS_ADMIN_TOKEN", token), ("POLYFAAS_TEST_MARKER", "still-here")]);
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid())).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("POLYFAAS_TEST_MARKER=still-here"), "the server's environ: {environ}");
    assert!(!environ.contains(token), "the token is readable in /proc/<pid>/environ: {environ}");
    let r = server.call("GET", "/admin/workers", &[("authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(r.status, 200, "the server still knows the token: {}", r.text());
}

#[test]
fn the_admin_token_is_read_from_the_systemd_credential() {
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("credentials dir");
    std::fs::write(creds.join("admin-token"), "credential-token-31\n").expect("credential");
    let server =
        Server::start_in(&dir.path().join("data"), &[], &[("CREDENTIALS_DIRECTORY", creds.to_str().expect("utf-8"))]);
    let with = |t: &str| server.call("GET", "/admin/workers", &[("authorization", &format!("Bearer {t}"))], b"").status;
    assert_eq!(with("credential-token-31"), 200);
    assert_eq!(with("credential-token-3"), 403);
    assert!(!server.logs().contains("no admin token configured"), "{}", server.logs());
}

#[test]
fn the_status_line_follows_deploys_and_invocations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (socket, path) = notify_socket(dir.path());
    let server =
        Server::start_in(&dir.path().join("data"), &[], &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")]);
    let seen = messages_until(&socket, Duration::from_secs(30), |m| m.iter().any(|m| m.contains("READY=1")));
    let ready = seen.iter().find(|m| m.contains("READY=1")).expect("READY=1");
    assert!(ready.contains("STATUS=serving 0 functions on "), "{ready}");

    assert_eq!(server.deploy("hello", &wasm_bundle("hello-wasm", None)).status, 201);
    for _ in 0..5 {
        assert_eq!(server.invoke("hello", &json!({})).status, 200);
    }
    let seen = messages_until(&socket, Duration::from_secs(20), |m| {
        m.iter().any(|m| m.contains("STATUS=serving 1 function on ") && !m.contains(" 0.0 invocations/s"))
    });
    let status = seen.iter().rev().find(|m| m.contains("STATUS=serving 1 function on ")).expect("a fresh status");
    assert!(status.contains("invocations/s") && status.contains("workers ("), "{status}");
    assert!(!status.contains(" 0.0 invocations/s"), "{seen:?}");
    // Pings go on alongside.
    let seen = messages_until(&socket, Duration::from_secs(10), |m| {
        m.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2
    });
    assert!(seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2, "{seen:?}");
}

#[test]
fn with_no_warm_workers_the_server_is_ready_and_not_degraded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (socket, path) = notify_socket(dir.path());
    let server = Server::start_in(&dir.path().join("data"), &["--warm-workers", "0"], &[("NOTIFY_SOCKET", &path)]);
    let seen = messages_until(&socket, Duration::from_secs(30), |m| m.iter().any(|m| m.contains("READY=1")));
    let ready = seen.iter().find(|m| m.contains("READY=1")).expect("READY=1");
    assert!(ready.contains("STATUS=serving 0 functions") && !ready.contains("degraded"), "{ready}");
    assert!(!server.logs().contains("degraded"), "{}", server.logs());
}

#[test]
fn loading_the_ruby_runtime_extends_the_start_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (socket, path) = notify_socket(dir.path());
    // A slow compile: the wrapper waits before the real `--precompile`.
    let slow = wrapper(dir.path(), r#"case "$*" in *--precompile*) sleep 2 ;; esac"#);
    let _server = Server::start_in(
        &dir.path().join("data"),
        &["--worker-bin", slow.to_str().expect("utf-8")],
        &[("NOTIFY_SOCKET", &path)],
    );
    let seen = messages_until(&socket, Duration::from_secs(30), |m| m.iter().any(|m| m.contains("READY=1")));
    let extend = seen.iter().position(|m| m.starts_with("EXTEND_TIMEOUT_USEC=")).expect("EXTEND_TIMEOUT_USEC");
    let ready = seen.iter().position(|m| m.contains("READY=1")).expect("READY=1");
    assert!(extend < ready, "{seen:?}");
    assert!(seen.iter().any(|m| m.contains("STATUS=loading the Ruby runtime")), "{seen:?}");
}

#[test]
fn a_runtime_whose_workers_cannot_start_leaves_the_server_degraded_but_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (socket, path) = notify_socket(dir.path());
    let no_ruby = wrapper(dir.path(), r#"case "$*" in *"--language ruby"*) exit 1 ;; esac"#);
    let server = Server::start_in(
        &dir.path().join("data"),
        &["--worker-bin", no_ruby.to_str().expect("utf-8")],
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "1000000")],
    );
    let seen = messages_until(&socket, Duration::from_secs(40), |m| m.iter().any(|m| m.contains("READY=1")));
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap_or_else(|| panic!("no READY=1: {seen:?}"));
    assert!(ready.contains("; degraded: no ruby worker"), "{ready}");
    // Logged before READY=1 is sent, but read from the server's stderr by another
    // thread than the datagram: it may arrive a moment later.
    assert!(
        wait_until(Duration::from_secs(5), || server.logs().contains("degraded: no ruby worker could be started")),
        "{}",
        server.logs()
    );
    // The other runtimes serve, and the watchdog keeps being fed.
    assert_eq!(server.deploy("hello", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.invoke("hello", &json!({"name": "d"})).json()["hello"], "d");
    let seen = messages_until(&socket, Duration::from_secs(10), |m| {
        m.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2
    });
    assert!(seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2, "{seen:?}");
}

#[test]
fn a_server_that_cannot_start_any_worker_exits_with_78() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (socket, path) = notify_socket(dir.path());
    // Every worker fails at once (and so does the Ruby compile: Ruby is off).
    let broken = wrapper(dir.path(), "exit 1");
    let mut child = std::process::Command::new(common::bin_dir().join("polyfaas"))
        .args(["serve", "--listen", "127.0.0.1:0", "--worker-bin", broken.to_str().expect("utf-8"), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--ruby-wasm")
        .arg(common::repo_root().join("runtimes/ruby+stdlib.wasm"))
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting polyfaas");
    let mut status = None;
    let exited = wait_until(Duration::from_secs(60), || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("polyfaas kept running without workers");
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{stderr}");
    assert!(stderr.contains("no worker of any runtime (wasm, js, python) could be started"), "{stderr}");
    let seen = messages_until(&socket, Duration::from_secs(1), |_| false);
    assert!(!seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    assert!(seen.iter().any(|m| m.contains("STATUS=failed: no worker could be started")), "{seen:?}");
}
