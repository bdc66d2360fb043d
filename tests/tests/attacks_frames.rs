//! The supervisor is the trust boundary: everything a worker sends it is hostile,
//! because user code runs in the worker. This file attacks the frames a worker
//! sends on its socket, against the real binaries; the other `attacks_*.rs` files
//! take the other threats. Rows of the security issue covered here:
//!
//! - row11: a Python handler writes a forged frame header to fd 3 (its worker's
//!   socket to the supervisor) announcing 128 MiB or 4 GiB, then streams bytes; one
//!   announces a length within the bound and sends junk; a bundle does it from its
//!   top level at upload. Proves: the invocation is `502 worker_crashed`, the upload
//!   `400`, the worker is replaced, the supervisor's peak RSS (`VmHWM`) grows by less
//!   than 64 MiB, and another function keeps answering.

mod common;

use common::Server;
use common::attack::{assert_bystander_answers, bystander_bundle, code, script_bundle};

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
