//! The supervisor is the trust boundary: everything a worker sends it is hostile,
//! because user code runs in the worker. This file attacks the server's own log,
//! against the real binaries; the other `attacks_*.rs` files take the other
//! threats. Rows of the security issue covered here:
//!
//! - row03: a handler writes lines forged to look like the server's own, ANSI
//!   escapes, a 10 MB line without a newline and 45 MiB to its worker's real
//!   stderr (Python `os.write(2, …)`), and forged lines into its logs and its
//!   error message. Proves: no server line begins with the forged text (it shows
//!   up escaped, labelled with the worker's pid), the server's log stays a few
//!   hundred KiB, the flood is counted, and another function keeps answering.

mod common;

use std::time::{Duration, Instant};

use common::attack::{assert_bystander_answers, bystander_bundle, code, script_bundle};
use common::{Server, wait_until};

/// A line as the server's own log writes one, to be forged.
const FORGED_LINE: &str = "2020-01-01T00:00:00.000000Z  INFO invoked function=bystander version=1 worker_pid=1 request_id=forged status=200 elapsed_ms=0.1 handler_us=1 cold=false";

fn assert_no_forged_line(logs: &str) {
    for line in logs.lines() {
        assert!(!line.starts_with(FORGED_LINE) && !line.starts_with("2020-01-01"), "a forged server line: {line}");
        assert!(!line.contains('\u{1b}') && !line.contains('\r'), "a control character reached the log: {line:?}");
    }
}

#[test]
fn row03_a_handler_cannot_forge_or_flood_the_server_log() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("bystander", &bystander_bundle()).status, 201);
    let python = format!(
        r#"import os
FORGED = {FORGED_LINE:?}

def handler(ctx):
    mode = ctx.request().getParam("mode")
    if mode == "forge":
        os.write(2, ("\n" + FORGED + "\n").encode())
        os.write(2, b"\x1b[2J\x1b[1;31mred\r" + FORGED.encode() + b"\n")
        print(FORGED)
        return "forged"
    if mode == "raise":
        raise ValueError("x\n" + FORGED)
    if mode == "longline":
        chunk = b"L" * (1 << 20)
        for _ in range(10):
            os.write(2, chunk)
        return "long"
    if mode == "flood":
        chunk = (b"F" * 65535) + b"\n"
        for _ in range(720):
            os.write(2, chunk)
        return "flooded"
    return "ok"
"#
    );
    let r = server.deploy("forger", &script_bundle("python", "handler.py", &python));
    assert_eq!(r.status, 201, "{}", r.text());
    let js = format!(
        "function handler(ctx) {{ console.log({FORGED_LINE:?}); if (ctx.request().getParam(\"mode\") === \"throw\") throw new Error(\"x\\n\" + {FORGED_LINE:?}); return \"logged\"; }}\nhandler\n"
    );
    assert_eq!(server.deploy("forger-js", &script_bundle("js", "handler.js", &js)).status, 201);
    let before = server.log_bytes();

    let forge = server.get("/fn/forger?mode=forge");
    assert_eq!((forge.status, forge.text().as_str()), (200, "forged"));
    let pid = forge.worker_pid();
    let r = server.get("/fn/forger?mode=raise");
    assert_eq!((r.status, code(&r.body).as_deref()), (502, Some("handler_error")), "{}", r.text());
    assert_eq!(server.get("/fn/forger-js").status, 200);
    let r = server.get("/fn/forger-js?mode=throw");
    assert_eq!((r.status, code(&r.body).as_deref()), (502, Some("handler_error")), "{}", r.text());
    // The forged text reaches the log, but never as a line of its own: escaped,
    // after the server's timestamp and a label naming the worker.
    assert!(
        wait_until(Duration::from_secs(5), || server.logs().matches("request_id=forged").count() >= 4),
        "the forged text reaches the log somehow:\n{}",
        server.logs()
    );
    assert_no_forged_line(&server.logs());
    let label = format!("worker {pid} stderr: ");
    assert!(
        server.logs().lines().any(|l| l.contains(&label) && l.contains("\\u{1b}[2J")),
        "the worker's stderr is logged, escaped and labelled:\n{}",
        server.logs()
    );

    // A 10 MB line without a newline, then 45 MiB of lines.
    let started = Instant::now();
    assert_eq!(server.get("/fn/forger?mode=longline").status, 200);
    let flooding = std::thread::spawn({
        let url = server.url("/fn/forger?mode=flood");
        move || common::call(&url, "GET", &[], b"")
    });
    for n in 0..20 {
        assert_bystander_answers(&server, n);
    }
    let flood = flooding.join().expect("flood thread");
    assert_eq!((flood.status, flood.text().as_str()), (200, "flooded"));
    assert!(
        wait_until(Duration::from_secs(5), || server.logs().contains("output over the log rate cap was dropped")),
        "the dropped output is counted: {}",
        &server.logs()[server.logs().len().saturating_sub(2000)..]
    );
    assert_bystander_answers(&server, 99);

    assert_no_forged_line(&server.logs());
    let written = server.log_bytes() - before;
    let elapsed = started.elapsed().as_secs_f64();
    // 55 MiB written to fd 2; the log gets the burst plus the rate for as long as it took.
    assert!(
        (written as f64) < 512.0 * 1024.0 + elapsed * 64.0 * 1024.0,
        "the server wrote {written} bytes of log in {elapsed:.1} s"
    );
    assert!(written < 4 << 20, "the server wrote {written} bytes of log");
}
