//! Who may manage functions (security issue rows 9 and 10), as an attacker would
//! try: read another function's logs, overwrite it, delete it, listen wide open,
//! and guess the admin token as fast as the server answers.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, multipart, seed_bundle, wasm_bundle};
use serde_json::json;

const TOKEN: &str = "row09-admin-token";

fn with_token() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[("POLYFAAS_ADMIN_TOKEN", TOKEN)]);
    (server, dir)
}

/// Method, path, headers, body, and the status with the right token.
type Route<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8], u16);

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn row09_without_a_token_the_original_routes_and_seed_bundles_work_as_before() {
    let server = Server::start(&[]);
    let (content_type, body) = multipart("rust-wasm.zip", &seed_bundle("rust-wasm.zip"));
    let up = server.call("POST", "/api/v1/handler/rust-wasm", &[("content-type", &content_type)], &body);
    assert_eq!(up.text(), r#"{"status":"ok","message":"Handler rust-wasm uploaded"}"#);
    let r = server.call("GET", "/api/v1/handler/rust-wasm", &[], br#"{"name":"John"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"name_twice": "John John"})));

    let (content_type, body) = multipart("javascript-handler.zip", &seed_bundle("javascript-handler.zip"));
    let up = server.call("POST", "/api/v1/handler/javascript-example", &[("content-type", &content_type)], &body);
    assert_eq!(up.text(), r#"{"status":"ok","message":"Handler javascript-example uploaded"}"#);
    let r = server.get("/api/v1/handler/javascript-example");
    assert_eq!(r.json(), json!({"msg": "Hello from javascript-example"}));

    // Management stays open, as before, when no token is configured.
    assert_eq!(server.get("/api/v1/functions").status, 200);
    assert_eq!(server.get("/api/v1/functions/rust-wasm").status, 200);
    assert_eq!(server.get("/api/v1/functions/rust-wasm/logs").status, 200);
    assert_eq!(server.call("DELETE", "/api/v1/functions/rust-wasm", &[], b"").status, 200);
}

#[test]
fn row09_with_a_token_every_management_route_is_401_without_it_403_with_a_wrong_one_2xx_with_it() {
    let (server, _dir) = with_token();
    let zip = wasm_bundle("hello-wasm", None);
    let (multipart_type, multipart_body) = multipart("hello.zip", &zip);
    let routes: Vec<Route<'_>> = vec![
        ("PUT", "/api/v1/functions/victim", vec![("content-type", "application/zip")], &zip, 201),
        ("POST", "/api/v1/handler/victim", vec![("content-type", &multipart_type)], &multipart_body, 200),
        ("GET", "/api/v1/functions", vec![], b"", 200),
        ("GET", "/api/v1/functions/victim", vec![], b"", 200),
        ("GET", "/api/v1/functions/victim/logs", vec![], b"", 200),
        ("POST", "/api/v1/functions/victim/rollback", vec![], b"", 200),
        ("DELETE", "/api/v1/functions/victim", vec![], b"", 200),
    ];
    for (method, path, headers, body, ok) in routes {
        let r = server.call(method, path, &headers, body);
        assert_eq!(r.status, 401, "{method} {path} without a token: {}", r.text());
        assert_eq!(r.json()["code"], "unauthorized", "{method} {path}");

        let wrong = bearer("not-the-token");
        let mut h = headers.clone();
        h.push(("authorization", &wrong));
        let r = server.call(method, path, &h, body);
        assert_eq!(r.status, 403, "{method} {path} with a wrong token: {}", r.text());
        assert_eq!(r.json()["code"], "forbidden", "{method} {path}");
        assert!(r.json()["error"].is_string());

        let right = bearer(TOKEN);
        let mut h = headers.clone();
        h.push(("authorization", &right));
        let r = server.call(method, path, &h, body);
        assert_eq!(r.status, ok, "{method} {path} with the token: {}", r.text());
        if method == "PUT" {
            // Only the authorized upload stored anything: it is version 1.
            assert_eq!(r.json()["version"], 1);
            let r = server.invoke("victim", &json!({"name": "x"}));
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    assert_eq!(server.manage("GET", "/api/v1/functions/victim", &[], b"").status, 404, "deleted");
}

#[test]
fn row09_with_a_token_invocation_routes_need_none() {
    let (server, _dir) = with_token();
    assert_eq!(server.deploy("hello", &wasm_bundle("hello-wasm", None)).status, 201);
    let r = server.invoke("hello", &json!({"name": "anon"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.call("POST", "/fn/hello/deep/path?x=1", &[], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let (content_type, body) = multipart("rust-wasm.zip", &seed_bundle("rust-wasm.zip"));
    let up = server.manage("POST", "/api/v1/handler/rust-wasm", &[("content-type", &content_type)], &body);
    assert_eq!(up.status, 200, "{}", up.text());
    let r = server.call("GET", "/api/v1/handler/rust-wasm", &[], br#"{"name":"John"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"name_twice": "John John"})));
    let r =
        server.call("POST", "/api/v1/handler/rust-wasm", &[("content-type", "application/json")], br#"{"name":"A"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"name_twice": "A A"})));
}

/// Runs `polyfaas serve` expecting it to exit by itself; returns (exit code, stderr).
fn serve_expecting_exit(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(common::bin_dir().join("polyfaas"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .env_remove("POLYFAAS_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting polyfaas");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            return (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("polyfaas serve {args:?} kept running; it should have refused to start");
}

#[test]
fn row09_a_non_loopback_listen_with_open_management_is_refused_at_startup() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (code, stderr) = serve_expecting_exit(&["--listen", listen]);
        assert!(code.is_some_and(|c| c != 0), "{listen}: exit {code:?}");
        assert!(stderr.contains("refusing to listen on"), "{listen}: {stderr}");
        assert!(stderr.contains("--insecure-open-management"), "the message says how to proceed: {stderr}");
    }
}

#[test]
fn row09_a_non_loopback_listen_is_accepted_with_the_flag_or_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = Server::start_listening(dir.path(), "0.0.0.0:0", &["--insecure-open-management"], &[]);
    assert_eq!(open.get("/healthz").status, 200);
    assert_eq!(open.get("/api/v1/functions").status, 200, "management open, as asked");
    drop(open);

    let dir = tempfile::tempdir().expect("temp dir");
    let guarded = Server::start_listening(dir.path(), "0.0.0.0:0", &[], &[("POLYFAAS_ADMIN_TOKEN", TOKEN)]);
    assert_eq!(guarded.get("/healthz").status, 200);
    assert_eq!(guarded.get("/api/v1/functions").status, 401);
    assert_eq!(guarded.manage("GET", "/api/v1/functions", &[], b"").status, 200);
}

#[test]
fn row10_a_burst_of_wrong_tokens_is_slowed_down_and_logged_in_bounded_lines() {
    let (server, _dir) = with_token();
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let url = server.url("/api/v1/functions");
    let (mut forbidden, mut throttled, mut retry_after) = (0, 0, None);
    for i in 0..3000 {
        let response = match agent.get(&url).set("authorization", &bearer(&format!("guess-{i}"))).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport: {e}"),
        };
        match response.status() {
            403 => forbidden += 1,
            429 => {
                throttled += 1;
                retry_after = response.header("retry-after").map(str::to_string);
                let body: serde_json::Value = serde_json::from_reader(response.into_reader()).expect("JSON");
                assert_eq!(body["code"], "auth_throttled");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(throttled > 2900, "most guesses are refused unchecked: {forbidden} checked, {throttled} throttled");
    assert!(forbidden < 20, "only a handful of guesses were checked: {forbidden}");
    let seconds: u64 = retry_after.expect("429 carries Retry-After").parse().expect("seconds");
    assert!(seconds >= 1);

    // While the address backs off, even the right token waits.
    let r = server.manage("GET", "/api/v1/functions", &[], b"");
    if r.status == 429 {
        assert!(r.header("retry-after").is_some());
    }
    // Once the backoff ends, the right token works (and clears the record).
    let ok = common::wait_until(Duration::from_secs(seconds + 70), || {
        server.manage("GET", "/api/v1/functions", &[], b"").status == 200
    });
    assert!(ok, "the right token is accepted after the backoff");
    // Invocation is never throttled by failed authentication.
    assert_eq!(server.get("/healthz").status, 200);

    let logs = server.logs();
    let lines = logs.lines().filter(|l| l.contains("authentication failed")).count();
    assert!(lines >= 1, "failed authentication is logged:\n{logs}");
    assert!(lines <= 10, "{lines} auth-failure lines for 3000 failures:\n{logs}");
    assert!(!logs.contains("guess-"), "presented tokens never reach the log");
}
