//! Deploys under attack (security issue row 4): a bundle whose top level sleeps,
//! uploaded while others deploy; many slow uploads at once; large uploads held
//! in the server's memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, wait_until, wasm_bundle, zip};

fn python_bundle(timeout_ms: u64, source: &str) -> Vec<u8> {
    let metadata = format!(r#"{{"language":"python","entrypointFile":"main.py","timeoutMs":{timeout_ms}}}"#);
    zip(&[("metadata.json", metadata.as_bytes()), ("main.py", source.as_bytes())])
}

const SLEEPS_AT_TOP_LEVEL: &str = "import time\ntime.sleep(600)\n\ndef handler(ctx):\n    return 'never'\n\nhandler\n";

#[test]
fn row04_a_sleeping_top_level_does_not_block_other_deploys_and_is_refused_at_its_deadline() {
    let server = std::sync::Arc::new(Server::start(&[]));
    // timeoutMs 15 s: the dry-run may take 20 s, far longer than a normal deploy.
    let slow = {
        let server = server.clone();
        std::thread::spawn(move || server.deploy("sleeper", &python_bundle(15_000, SLEEPS_AT_TOP_LEVEL)))
    };
    // Let the sleeping upload reach its dry-run: its worker is the one child
    // beyond the warm pool that stays.
    std::thread::sleep(Duration::from_millis(500));

    // Another function deploys while the sleeper is still in its dry-run (under
    // the old global lock it waited for the sleeper's whole deadline).
    let ok = server.deploy("quick", &python_bundle(1000, "def handler(ctx):\n    return 'quick'\n\nhandler\n"));
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert!(!slow.is_finished(), "the sleeper must still be in its dry-run when the other deploy completes");
    assert_eq!(server.get("/fn/quick").text(), "quick");
    // So do rollbacks and deletes of other functions.
    assert_eq!(server.deploy("quick", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.manage("POST", "/api/v1/functions/quick/rollback", &[], b"").status, 200);
    assert_eq!(server.manage("DELETE", "/api/v1/functions/quick", &[], b"").status, 200);
    assert!(!slow.is_finished(), "the sleeper is still in its dry-run");

    let refused = slow.join().unwrap();
    assert_eq!((refused.status, refused.json()["code"].as_str()), (400, Some("invalid_handler")), "{}", refused.text());
    assert!(refused.json()["error"].as_str().unwrap().contains("did not finish within 20000 ms"), "{}", refused.text());
    assert_eq!(server.get("/fn/sleeper").status, 404, "nothing was deployed");
}

/// A PUT upload whose body is promised at `len` bytes, of which only `sent` are sent.
fn partial_upload(server: &Server, name: &str, len: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "PUT /api/v1/functions/{name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/zip\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'z'; 1 << 20];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    s
}

/// Whether the server has answered (or closed) `upload`, without waiting.
fn answered(upload: &TcpStream) -> bool {
    upload.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let answered = !matches!((&*upload).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    upload.set_nonblocking(false).unwrap();
    answered
}

#[test]
fn row04_uploads_past_the_concurrency_cap_are_refused_with_429() {
    let server = Server::start(&["--max-concurrent-uploads", "2"]);
    // Two slow uploads that never finish hold both slots. One that raced a probe
    // for the last slot was refused (answered at once): it is started again, so
    // both slots end up held by uploads that never finish.
    let mut held: Vec<TcpStream> = (0..2).map(|i| partial_upload(&server, &format!("slow{i}"), 1 << 20, 10)).collect();
    let probe = || server.deploy("probe", b"not a zip");
    let refused = wait_until(Duration::from_secs(30), || {
        for (i, upload) in held.iter_mut().enumerate() {
            if answered(upload) {
                *upload = partial_upload(&server, &format!("slow{i}"), 1 << 20, 10);
            }
        }
        probe().status == 429
    });
    assert!(refused, "the third upload was not refused");
    let r = probe();
    assert_eq!((r.status, r.json()["code"].as_str()), (429, Some("overloaded")), "{}", r.text());
    assert!(r.header("retry-after").is_some(), "429 without Retry-After");
    // Invocations and other management are not uploads.
    assert_eq!(server.manage("GET", "/api/v1/functions", &[], b"").status, 200);

    // Once the slow ones go away their slots are free again.
    drop(held);
    assert!(wait_until(Duration::from_secs(30), || probe().status == 400), "the slots were not released");
    assert_eq!(probe().json()["code"], "not_a_zip");
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn row04_large_uploads_in_flight_are_not_held_in_memory() {
    let server = Server::start(&["--max-concurrent-uploads", "6"]);
    let before = peak_rss_kib(server.pid());
    // Six uploads of 60 MiB, 48 MiB of each sent (and read by the server: the
    // socket buffers hold a few MiB at most), none finished: 288 MiB in flight.
    let sent = 48usize << 20;
    let held: Vec<TcpStream> = (0..6).map(|i| partial_upload(&server, &format!("big{i}"), 60 << 20, sent)).collect();
    let in_flight_mib = (6 * sent) >> 20;
    let peak_mib = peak_rss_kib(server.pid()) / 1024;
    assert!(
        peak_mib < 100,
        "peak RSS {peak_mib} MiB (from {} MiB) with {in_flight_mib} MiB of uploads in flight",
        before / 1024
    );
    // They are spooled to disk, in the data dir, and go when the upload does.
    let spool = server.data_dir.join("uploads");
    let spooled: u64 = std::fs::read_dir(&spool).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    assert!(spooled >= (5 * sent) as u64, "only {spooled} bytes spooled");
    drop(held);
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_dir(&spool).unwrap().count() == 0),
        "spool files left"
    );
}
