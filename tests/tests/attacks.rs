//! The supervisor is the trust boundary: attacks on it, one test per row of the
//! security issue, each against the real binaries. The threat model, as a list:
//!
//! - row01: a handler answers 204, 304, 1xx or 600+ (or a `HEAD`) with a body that
//!   is a whole HTTP response, or sets framing headers (`Content-Length`,
//!   `Transfer-Encoding`, `Connection`) or CR/LF in a header, while a request to
//!   another function is pipelined on the same keep-alive connection. Proves: the
//!   second client gets its own function's answer; no body goes out with
//!   204/304/HEAD; 1xx and statuses outside 200–599 are `502 handler_error` with the
//!   reason in the server log; for JavaScript (`ctx.response()`) and WASM (CGI
//!   `Status:`).
//! - row03: a handler writes lines forged to look like the server's own, ANSI
//!   escapes, a 10 MB line without a newline and 45 MiB to its worker's real
//!   stderr (Python `os.write(2, …)`), and forged lines into its logs and its
//!   error message. Proves: no server line begins with the forged text (it shows
//!   up escaped, labelled with the worker's pid), the server's log stays a few
//!   hundred KiB, the flood is counted, and another function keeps answering.
//! - row07: 600 connections dribbling their headers one byte at a time, a few
//!   dribbling a body, and 50 that send one quick request and then dribble the
//!   next one's headers, at a server started with `RLIMIT_NOFILE` 256:4096; then a
//!   server with a hard limit it cannot raise and `--max-connections 40`. Proves:
//!   the soft limit is raised to the hard one, slow connections are closed by the
//!   server (`--header-timeout-ms`, `--body-timeout-ms` → 408), legitimate
//!   invocations keep succeeding meanwhile, and past the cap connections wait
//!   unaccepted instead of taking descriptors.
//! - row11: a Python handler writes a forged frame header to fd 3 (its worker's
//!   socket to the supervisor) announcing 128 MiB or 4 GiB, then streams bytes; one
//!   announces a length within the bound and sends junk; a bundle does it from its
//!   top level at upload. Proves: the invocation is `502 worker_crashed`, the upload
//!   `400`, the worker is replaced, the supervisor's peak RSS (`VmHWM`) grows by less
//!   than 64 MiB, and another function keeps answering.
//! - row13: `mmap.mmap(-1, 4096)`, `resource.getpagesize()` and `mmap.PAGESIZE` in
//!   a Python handler (each used to panic the worker: rustix could not read the aux
//!   vector inside the sandbox). Proves: each gets its answer and the same worker
//!   pid answers every call; a panic that still happens inside a runtime is caught
//!   by the worker (unit-tested in worker/src/serve.rs).

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::wire::read_response;
use common::{Reply, Server, wait_until, wasm_bundle, zip};
use serde_json::{Value, json};

/// A function that answers `{"bystander":true}`: the one whose answers an attack
/// must not change.
fn bystander_bundle() -> Vec<u8> {
    let handler = "function handler(ctx) { return { bystander: true, n: ctx.request().getParam(\"n\") }; }\nhandler\n";
    script_bundle("js", "handler.js", handler)
}

fn script_bundle(language: &str, entry: &str, source: &str) -> Vec<u8> {
    let metadata = format!(r#"{{"language":"{language}","entrypointFile":"{entry}","timeoutMs":5000}}"#);
    zip(&[("metadata.json", metadata.as_bytes()), (entry, source.as_bytes())])
}

fn code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_string))
}

fn assert_bystander_answers(server: &Server, n: u32) {
    let r = server.get(&format!("/fn/bystander?n={n}"));
    assert_eq!(r.status, 200, "bystander: {}", r.text());
    assert_eq!(r.json(), json!({"bystander": true, "n": n.to_string()}));
}

// ---------------------------------------------------------------------------

/// Sends `first` and a request to the bystander in one write on one connection,
/// and reads both answers. Also checks that nothing else follows them.
fn pipelined(server: &Server, first: &str, head_first: bool) -> (Reply, Reply) {
    let stream = TcpStream::connect(&server.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let second = "GET /fn/bystander?n=2 HTTP/1.1\r\nHost: t\r\n\r\n";
    (&stream).write_all(format!("{first}{second}").as_bytes()).expect("write");
    let mut r = BufReader::new(stream);
    let one = read_response(&mut r, head_first);
    let two = read_response(&mut r, false);
    // The connection is now idle: no stray bytes may follow (a body the first
    // answer should not have had would be read as a third response).
    r.get_ref().set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let mut extra = [0u8; 64];
    match r.read(&mut extra) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("bytes after both answers: {:?}", String::from_utf8_lossy(&extra[..n])),
    }
    (one, two)
}

fn assert_is_bystander(two: &Reply, what: &str) {
    assert_eq!(two.status, 200, "{what}: the pipelined request's answer: {two:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&two.body).ok(),
        Some(json!({"bystander": true, "n": "2"})),
        "{what}: the pipelined request got someone else's answer: {}",
        two.text()
    );
}

const FORGED_RESPONSE: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"forged\":\"yes\"}";

#[test]
fn row01_a_handler_cannot_answer_for_another_function_on_the_same_connection() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("bystander", &bystander_bundle()).status, 201);
    // The status, one header and its value come from the query; the body is always
    // a whole forged response.
    let injector = format!(
        r#"function handler(ctx) {{
  const q = (n) => ctx.request().getParam(n);
  const r = ctx.response().setStatusCode(Number(q("status") || 200));
  if (q("h")) r.putHeader(q("h"), q("v") || "");
  r.end({FORGED_RESPONSE:?});
}}
handler
"#
    );
    let r = server.deploy("inject-js", &script_bundle("js", "handler.js", &injector));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(server.deploy("inject-wasm", &wasm_bundle("testkit-wasm", None)).status, 201);

    // 204 and 304 go out without the handler's body.
    for status in [204, 304] {
        let (one, two) =
            pipelined(&server, &format!("GET /fn/inject-js?status={status} HTTP/1.1\r\nHost: t\r\n\r\n"), false);
        assert_eq!(one.status, status, "{one:?}");
        assert!(one.header("content-length").is_none_or(|v| v == "0"), "{status}: {one:?}");
        assert_is_bystander(&two, &format!("js {status}"));
    }

    // A HEAD gets the headers and no body.
    let (one, two) = pipelined(&server, "HEAD /fn/inject-js?status=200 HTTP/1.1\r\nHost: t\r\n\r\n", true);
    assert_eq!(one.status, 200, "{one:?}");
    assert!(one.header("x-polyfaas-worker-pid").is_some(), "{one:?}");
    assert_is_bystander(&two, "HEAD");

    // 1xx and statuses outside 200–599 are refused, as clear JSON.
    for status in [100, 101, 103, 199, 600, 999] {
        let (one, two) =
            pipelined(&server, &format!("GET /fn/inject-js?status={status} HTTP/1.1\r\nHost: t\r\n\r\n"), false);
        assert_eq!((one.status, code(&one.body).as_deref()), (502, Some("handler_error")), "{status}: {}", one.text());
        assert!(one.text().contains(&format!("status {status}")), "{status}: {}", one.text());
        assert_is_bystander(&two, &format!("js {status}"));
    }
    assert!(
        wait_until(Duration::from_secs(5), || server.logs().contains("handler answered with status 101")),
        "the server log says why: {}",
        server.logs()
    );

    // Framing and hop-by-hop headers from the handler are ignored; a header with
    // CR/LF in its value is dropped, not split.
    let header_attacks = [
        ("Content-Length", "0"),
        ("Content-Length", "99999"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
        ("Upgrade", "h2c"),
        ("X-Split", "a%0D%0AContent-Length:%200%0D%0A%0D%0A"),
        ("X-Split", "a%0AX-Injected:%201"),
    ];
    for (h, v) in header_attacks {
        for status in [200, 204] {
            let request = format!("GET /fn/inject-js?status={status}&h={h}&v={v} HTTP/1.1\r\nHost: t\r\n\r\n");
            let (one, two) = pipelined(&server, &request, false);
            assert_eq!(one.status, status, "{h}: {v}: {one:?}");
            if status == 200 {
                assert_eq!(
                    one.body,
                    FORGED_RESPONSE.as_bytes(),
                    "{h}: {v}: the body is the handler's, framed by the server"
                );
            }
            assert!(one.header("x-injected").is_none() && one.header("x-split").is_none(), "{h}: {v}: {one:?}");
            assert!(one.header("upgrade").is_none(), "{one:?}");
            assert_is_bystander(&two, &format!("{h}: {v}"));
        }
    }

    // The same through a WASM module's CGI headers.
    let cgi = |text: &str| {
        let body = json!({"action": "raw", "text": text}).to_string();
        format!(
            "POST /fn/inject-wasm HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for status in [204, 304] {
        let (one, two) = pipelined(&server, &cgi(&format!("Status: {status}\n\n{FORGED_RESPONSE}")), false);
        assert_eq!(one.status, status, "{one:?}");
        assert_is_bystander(&two, &format!("wasm {status}"));
    }
    let (one, two) = pipelined(&server, &cgi(&format!("Status: 200\nContent-Length: 0\n\n{FORGED_RESPONSE}")), false);
    assert_eq!((one.status, one.body.as_slice()), (200, FORGED_RESPONSE.as_bytes()), "{one:?}");
    assert_is_bystander(&two, "wasm content-length");
    for status in [101, 600] {
        let (one, two) = pipelined(&server, &cgi(&format!("Status: {status}\n\n{FORGED_RESPONSE}")), false);
        assert_eq!((one.status, code(&one.body).as_deref()), (502, Some("handler_error")), "{}", one.text());
        assert_is_bystander(&two, &format!("wasm {status}"));
    }
}

// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------

/// Soft and hard `RLIMIT_NOFILE` of a process.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("open files line");
    let mut n = line.split_whitespace().skip(3).map(|v| v.parse::<u64>().expect("number"));
    (n.next().expect("soft"), n.next().expect("hard"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Opens `n` connections that have sent `start` and nothing more.
fn slow_connections(server: &Server, n: usize, start: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(&server.addr).expect("connect");
            (&s).write_all(start).expect("first bytes");
            s
        })
        .collect()
}

/// Sends one more byte on each connection that is still open, from one thread,
/// one byte a connection every `every`, until `until`; returns when each was closed.
fn dribble(conns: Vec<TcpStream>, every: Duration, until: Instant) -> Vec<Option<Duration>> {
    let started = Instant::now();
    let mut closed: Vec<Option<Duration>> = vec![None; conns.len()];
    for s in &conns {
        s.set_nonblocking(true).expect("nonblocking");
    }
    while Instant::now() < until && closed.iter().any(Option::is_none) {
        for (i, s) in conns.iter().enumerate() {
            if closed[i].is_some() {
                continue;
            }
            // Closed by the server: EOF (after a 408, if any), or an error on write.
            let mut buf = [0u8; 512];
            let gone = match (&*s).read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            } || (&*s).write_all(b"X").is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock);
            if gone {
                closed[i] = Some(started.elapsed());
            }
        }
        std::thread::sleep(every);
    }
    closed
}

#[test]
fn row07_slow_clients_cannot_exhaust_connections_or_descriptors() {
    // A unit's LimitNOFILE=256:4096: the server raises its soft limit to 4096.
    let server =
        Server::start_with_open_files(&["--header-timeout-ms", "2000", "--body-timeout-ms", "2000"], 256, 4096);
    assert_eq!(open_file_limits(server.pid()), (4096, 4096), "the soft limit is raised to the hard one");
    assert_eq!(server.deploy("bystander", &bystander_bundle()).status, 201);
    assert_bystander_answers(&server, 0);

    let started = Instant::now();
    // 600 connections sending their headers one byte at a time (2.4 bytes/s each)...
    let heads = slow_connections(&server, 600, b"GET /fn/bystander HTTP/1.1\r\n");
    // ...and a few whose body never finishes.
    let bodies = slow_connections(
        &server,
        5,
        b"POST /fn/bystander HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{",
    );
    // ...and some that send one quick request, then dribble the next one's headers
    // (actix's own header timeout covers only a connection's first request).
    let seconds: Vec<TcpStream> = (0..50)
        .map(|_| {
            let s = TcpStream::connect(&server.addr).expect("connect");
            (&s).write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").expect("request");
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            assert_eq!(read_response(&mut r, false).status, 200);
            (&s).write_all(b"GET /fn/bystander HTTP/1.1\r\n").expect("next request");
            s
        })
        .collect();
    let until = started + Duration::from_secs(11);
    let dribbler = std::thread::spawn(move || dribble(heads, Duration::from_millis(400), until));
    let body_dribbler = std::thread::spawn(move || dribble(bodies, Duration::from_millis(400), until));
    let second_dribbler = std::thread::spawn(move || dribble(seconds, Duration::from_millis(400), until));
    // Meanwhile, legitimate calls keep succeeding, quickly.
    for n in 1..=20 {
        let t = Instant::now();
        assert_bystander_answers(&server, n);
        assert!(t.elapsed() < Duration::from_secs(2), "call {n} took {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Header and body timeouts are 2 s; between requests a connection gets the
    // 5 s keep-alive plus the 2 s header timeout.
    for (what, closed, within) in [
        ("slow headers", dribbler.join().expect("dribbler"), 6),
        ("slow body", body_dribbler.join().expect("dribbler"), 6),
        ("slow second request", second_dribbler.join().expect("dribbler"), 10),
    ] {
        let open = closed.iter().filter(|c| c.is_none()).count();
        assert_eq!(open, 0, "{what}: {open} of {} connections still open after 11 s", closed.len());
        let latest = closed.iter().flatten().max().copied().unwrap_or_default();
        assert!(latest < Duration::from_secs(within), "{what}: the last was closed after {latest:?}");
    }
    assert_bystander_answers(&server, 21);
    drop(server);

    // A hard limit of 256 that cannot be raised, and a cap of 40 connections:
    // past the cap, connections wait in the backlog and take no descriptor.
    let server = Server::start_with_open_files(&["--max-connections", "40", "--header-timeout-ms", "1500"], 512, 512);
    assert_eq!(open_file_limits(server.pid()), (512, 512));
    assert_eq!(server.deploy("bystander", &bystander_bundle()).status, 201);
    assert_bystander_answers(&server, 0);
    let baseline = open_fds(server.pid());
    let held = slow_connections(&server, 100, b"G");
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(server.pid());
    // Two descriptors per connection: its socket and the watch's duplicate.
    assert!(
        during <= baseline + 2 * 40 + 4,
        "{during} descriptors open with 100 slow clients (baseline {baseline}, cap 40)"
    );
    // A legitimate call waits for a slot (the slow ones are closed 1.5 s after
    // they are accepted) and then succeeds.
    let t = Instant::now();
    assert_bystander_answers(&server, 1);
    assert!(t.elapsed() < Duration::from_secs(15), "waited {:?}", t.elapsed());
    drop(held);
    assert!(!server.logs().contains("Too many open files"), "{}", server.logs());
}

// ---------------------------------------------------------------------------

/// The most memory the process has had resident (`VmHWM`), in KiB: a buffer
/// filled and freed between two looks still counts.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

/// Writes a frame header announcing `announce` bytes on fd 3, then `send` bytes.
const FRAME_FORGER: &str = r#"import os, struct

def forge(announce, send, fill=b"\0"):
    os.write(3, struct.pack(">I", announce))
    chunk = fill * (1 << 20)
    for _ in range(send >> 20):
        os.write(3, chunk)

def handler(ctx):
    q = ctx.request().getParam
    if q("announce"):
        forge(int(q("announce")), int(q("send") or 0), b"\xff")
    return "ok"
"#;

#[test]
fn row11_forged_frames_cannot_grow_the_supervisor() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("bystander", &bystander_bundle()).status, 201);
    let r = server.deploy("framer", &script_bundle("python", "handler.py", FRAME_FORGER));
    assert_eq!(r.status, 201, "{}", r.text());
    let ok = server.get("/fn/framer");
    assert_eq!((ok.status, ok.text().as_str()), (200, "ok"));
    assert_bystander_answers(&server, 0);
    let rss_before = peak_rss_kib(server.pid());

    let attacks = [
        (128u64 << 20, 128u64 << 20), // the old cap, filled
        (u32::MAX as u64, 64 << 20),  // 4 GiB announced
        (10 << 20, 10 << 20),         // within the bound, junk inside
    ];
    let mut pids = vec![ok.worker_pid()];
    for (i, (announce, send)) in attacks.into_iter().enumerate() {
        let r = server.get(&format!("/fn/framer?announce={announce}&send={send}"));
        assert_eq!(r.status, 502, "{announce}: {}", r.text());
        assert_eq!(code(&r.body).as_deref(), Some("worker_crashed"), "{announce}: {}", r.text());
        // The worker is replaced: the next call runs on another, healthy one.
        let next = server.get("/fn/framer");
        assert_eq!((next.status, next.text().as_str()), (200, "ok"), "after {announce}");
        assert!(!pids.contains(&next.worker_pid()), "{announce}: the forging worker was kept");
        pids.push(next.worker_pid());
        assert_bystander_answers(&server, i as u32 + 1);
    }
    // Three at once.
    let parallel: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url("/fn/framer?announce=134217728&send=134217728");
            std::thread::spawn(move || common::call(&url, "GET", &[], b"").status)
        })
        .collect();
    for t in parallel {
        assert_eq!(t.join().expect("attack thread"), 502);
    }

    // From the top level, at upload: the bundle is refused.
    let top_level = format!("{FRAME_FORGER}\nforge(1 << 30, 64 << 20)\nhandler\n");
    let r = server.deploy("framer-init", &script_bundle("python", "handler.py", &top_level));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(server.get("/fn/framer-init").status == 404);

    let rss_after = peak_rss_kib(server.pid());
    assert!(rss_after < rss_before + 64 * 1024, "supervisor peak RSS went from {rss_before} KiB to {rss_after} KiB");
    assert!(server.logs().contains("broke the protocol"), "the server log says what happened");
    assert_bystander_answers(&server, 100);
}

// ---------------------------------------------------------------------------

#[test]
fn row13_python_mmap_and_page_size_do_not_kill_the_worker() {
    let server = Server::start(&[]);
    let python = r#"def handler(ctx):
    mode = ctx.request().getParam("mode")
    if mode == "mmap":
        import mmap
        m = mmap.mmap(-1, 4096)
        m.write(b"hi")
        return "mapped"
    if mode == "private":
        import mmap
        m = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE)
        m.write(b"hi")
        return "private"
    if mode == "pagesize":
        import resource
        return resource.getpagesize()
    if mode == "mmap_pagesize":
        import mmap
        return [mmap.PAGESIZE, mmap.ALLOCATIONGRANULARITY]
    return "ok"
"#;
    let r = server.deploy("pages", &script_bundle("python", "handler.py", python));
    assert_eq!(r.status, 201, "{}", r.text());
    let first = server.get("/fn/pages");
    assert_eq!(first.status, 200, "{}", first.text());
    let pid = first.worker_pid();

    // `import mmap` asks for the page size, which used to panic the worker.
    let mapped = server.get("/fn/pages?mode=mmap");
    assert_eq!((mapped.status, mapped.text().as_str()), (200, "mapped"), "{}", mapped.text());

    // The page size has an answer.
    let page = server.get("/fn/pages?mode=pagesize");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.json(), json!(4096));
    assert_eq!(server.get("/fn/pages?mode=mmap_pagesize").json(), json!([4096, 4096]));
    let private = server.get("/fn/pages?mode=private");
    assert_eq!((private.status, private.text().as_str()), (200, "private"));

    // Still the same worker throughout.
    for (mode, r) in [("mmap", &mapped), ("pagesize", &page), ("private", &private)] {
        assert_eq!(r.worker_pid(), pid, "{mode}: answered by another worker");
    }
    let last = server.get("/fn/pages");
    assert_eq!((last.status, last.worker_pid()), (200, pid), "the worker survived");
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}
