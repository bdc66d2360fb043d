//! Raw HTTP/1.1 off a TCP stream, for tests that pipeline requests or look at
//! exactly what the server framed.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

use super::Reply;

/// Reads one response the way a client must (RFC 9112 §6.3): no body after a
/// `HEAD`, a 1xx, 204 or 304; else chunked, or `Content-Length`, or to the end.
pub fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        panic!("not a status line: {line:?}");
    });
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').expect("header has a colon");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut wire = Reply { status, headers, body: Vec::new() };
    if head_request || status < 200 || status == 204 || status == 304 {
        return wire;
    }
    if wire.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            if n == 0 {
                break;
            }
            wire.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = wire.header("content-length").map(|v| v.parse::<usize>().expect("length")) {
        wire.body = vec![0; n];
        r.read_exact(&mut wire.body).expect("body");
    } else {
        r.read_to_end(&mut wire.body).expect("body to the end");
    }
    wire
}
