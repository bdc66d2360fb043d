//! The supervisor is the trust boundary: everything a worker sends it is hostile,
//! because user code runs in the worker. This file attacks the HTTP responses a
//! handler makes, against the real binaries; the other `attacks_*.rs` files take
//! the other threats. Rows of the security issue covered here:
//!
//! - row01: a handler answers 204, 304, 1xx or 600+ (or a `HEAD`) with a body that
//!   is a whole HTTP response, or sets framing headers (`Content-Length`,
//!   `Transfer-Encoding`, `Connection`) or CR/LF in a header, while a request to
//!   another function is pipelined on the same keep-alive connection. Proves: the
//!   second client gets its own function's answer; no body goes out with
//!   204/304/HEAD; 1xx and statuses outside 200–599 are `502 handler_error` with the
//!   reason in the server log; for JavaScript (`ctx.response()`) and WASM (CGI
//!   `Status:`).

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::attack::{bystander_bundle, code, script_bundle};
use common::wire::read_response;
use common::{Reply, Server, wait_until, wasm_bundle};
use serde_json::{Value, json};

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
