//! The supervisor is the trust boundary: everything a worker sends it is hostile,
//! because user code runs in the worker. This file attacks its client connections
//! and descriptors, against the real binaries; the other `attacks_*.rs` files take
//! the other threats. Rows of the security issue covered here:
//!
//! - row07: 600 connections dribbling their headers one byte at a time, a few
//!   dribbling a body, and 50 that send one quick request and then dribble the
//!   next one's headers, at a server started with `RLIMIT_NOFILE` 256:4096; then a
//!   server with a hard limit it cannot raise and `--max-connections 40`. Proves:
//!   the soft limit is raised to the hard one, slow connections are closed by the
//!   server (`--header-timeout-ms`, `--body-timeout-ms` → 408), legitimate
//!   invocations keep succeeding meanwhile, and past the cap connections wait
//!   unaccepted instead of taking descriptors.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use common::attack::{assert_bystander_answers, bystander_bundle};
use common::wire::read_response;

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
