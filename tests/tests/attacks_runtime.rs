//! The supervisor is the trust boundary: everything a worker sends it is hostile,
//! because user code runs in the worker. This file attacks the runtimes from inside
//! the sandbox, against the real binaries; the other `attacks_*.rs` files take the
//! other threats. Rows of the security issue covered here:
//!
//! - row13: `mmap.mmap(-1, 4096)`, `resource.getpagesize()` and `mmap.PAGESIZE` in
//!   a Python handler (each used to panic the worker: rustix could not read the aux
//!   vector inside the sandbox). Proves: each gets its answer and the same worker
//!   pid answers every call; a panic that still happens inside a runtime is caught
//!   by the worker (unit-tested in worker/src/serve.rs).
//! - A Python handler that rewrites the answer its prelude hands the host
//!   (`ctx._res` is reachable from Python): a status that is not an int or not
//!   a status, headers that are not pairs of str, flags that are not bools, a
//!   body that is bytes. Proves: each is a 502 `handler_error` that says what
//!   was wrong (the host reads the answer field by field and checks every type),
//!   and the same worker serves the next call. A lone surrogate in a body
//!   becomes U+FFFD.
//! - A JavaScript handler's answer cannot be reached (the prelude keeps it in
//!   closures); what a handler can set through `ctx` is checked as it is read
//!   off the prelude's object: a status past 65535 or not whole is a 502, `NaN`
//!   the default 200.
//! - A Ruby handler that writes into the packed answer its prelude hands the host
//!   (the response's buffer is reachable with `instance_variable_get`): an
//!   unknown record, a length past the end, two endings, a status out of range
//!   (or too large for a machine integer); and one that reads the VM's stdin (where the
//!   host writes the request) or keeps its `ctx` for a later call. Proves: each
//!   malformed answer is a 502 `handler_error` that says what was wrong, and the
//!   same worker serves on; stdin holds nothing once the prelude has read it;
//!   a kept `ctx` reads its own request, never a later caller's; a body that is
//!   not UTF-8 reaches `bodyBytes` exactly and `body` with U+FFFD.

mod common;

use common::Server;
use common::attack::script_bundle;
use serde_json::json;

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

#[test]
fn a_python_handler_that_rewrites_its_answer_gets_a_clear_502() {
    let server = Server::start(&[]);
    let python = r#"def handler(ctx):
    field = ctx.request().getParam("field")
    res = ctx._res
    if field == "status":
        res["status"] = "201"
    elif field == "bigstatus":
        res["status"] = 10 ** 30
    elif field == "negstatus":
        res["status"] = -1
    elif field == "pair":
        res["headers"] = [["only-a-name"]]
    elif field == "name":
        res["headers"] = [[1, "x"]]
    elif field == "headers":
        res["headers"] = {"a": "b"}
    elif field == "ended":
        res["ended"] = 1
    elif field == "body":
        res["body"], res["ended"] = b"bytes", True
    elif field == "gone":
        res.clear()
    elif field == "surrogate":
        ctx.response().end("a\ud800b")
    return "ok"
"#;
    let r = server.deploy("rewrites", &script_bundle("python", "handler.py", python));
    assert_eq!(r.status, 201, "{}", r.text());
    let first = server.get("/fn/rewrites");
    assert_eq!((first.status, first.text().as_str()), (200, "ok"));
    each_is_a_clear_502(
        &server,
        first.worker_pid(),
        &[
            ("status", "status is not an int"),
            ("bigstatus", "is not from 0 to 65535"),
            ("negstatus", "is not from 0 to 65535"),
            ("pair", "not a [name, value] pair"),
            ("name", "a header's name is not a str"),
            ("headers", "headers is not a list"),
            ("ended", "ended is not a bool"),
            ("body", "body is not a str"),
            ("gone", "KeyError"),
        ],
    );
    let r = server.get("/fn/rewrites?field=surrogate");
    assert_eq!((r.status, r.text().as_str()), (200, "a\u{fffd}b"));
}

#[test]
fn a_javascript_status_is_checked_as_the_answer_is_read() {
    let server = Server::start(&[]);
    let js = r#"function handler(ctx) {
  const s = ctx.request().getParam("s");
  ctx.response().setStatusCode(s === "nan" ? "not a number" : Number(s)).end("set");
}
handler
"#;
    let r = server.deploy("statuses", &script_bundle("js", "handler.js", js));
    assert_eq!(r.status, 201, "{}", r.text());
    let created = server.get("/fn/statuses?s=201");
    assert_eq!((created.status, created.text().as_str()), (201, "set"));
    let pid = created.worker_pid();
    for (s, says) in [("70000", "status 70000 is not"), ("201.5", "status 201.5 is not"), ("-1", "status -1 is not")] {
        let r = server.get(&format!("/fn/statuses?s={s}"));
        assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{s}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap_or("").contains(says), "{s}: {}", r.text());
    }
    let r = server.get("/fn/statuses?s=nan");
    assert_eq!((r.status, r.text().as_str()), (200, "set"), "NaN is the default status");
    let r = server.get("/fn/statuses?s=202");
    assert_eq!((r.status, r.worker_pid()), (202, pid), "the same worker serves on");
}

#[test]
fn a_ruby_handler_that_rewrites_its_answer_gets_a_clear_502() {
    let server = Server::start(&[]);
    let ruby = r##"$kept = nil
def handler(ctx)
  field = ctx.request.getParam("field")
  out = ctx.response.instance_variable_get(:@out)
  case field
  when "unknown" then out << "Z"
  when "short" then out << ["B", 100, "abc"].pack("aL<a*")
  when "twice" then out << ["T", 1, "x"].pack("aL<a*")
  when "range" then ctx.response.setStatusCode(70000)
  when "huge" then ctx.response.setStatusCode(2**70)
  when "stdin" then return "stdin:#{STDIN.read.inspect}"
  when "keep" then $kept = ctx; return "kept"
  when "kept" then return "#{$kept.request.getParam("who")} #{$kept.body}"
  when "bytes" then return "#{ctx.bodyBytes.bytes} #{ctx.body == "a\uFFFD\n\u0000"} #{ctx.body.encoding} #{ctx.bodyBytes.encoding}"
  end
  "ok"
end
method(:handler)
"##;
    let r = server.deploy("rewrites", &script_bundle("ruby", "handler.rb", ruby));
    assert_eq!(r.status, 201, "{}", r.text());
    let first = server.get("/fn/rewrites");
    assert_eq!((first.status, first.text().as_str()), (200, "ok"));
    each_is_a_clear_502(
        &server,
        first.worker_pid(),
        &[
            ("unknown", "unknown record 0x5a"),
            ("short", "a record of 100 bytes is cut short"),
            ("twice", "more than one ending"),
            ("range", "status 70000 is not from 0 to 65535"),
            ("huge", "status 1180591620717411303424 is not from 0 to 65535"),
        ],
    );
    let r = server.call("POST", "/fn/rewrites?field=stdin", &[], b"secret body");
    assert_eq!((r.status, r.text().as_str()), (200, "stdin:\"\""), "the prelude has read it all");
    assert_eq!(server.call("POST", "/fn/rewrites?field=keep&who=first", &[], b"first body").text(), "kept");
    let r = server.call("POST", "/fn/rewrites?field=kept&who=second", &[], b"second body");
    assert_eq!((r.status, r.text().as_str()), (200, "first first body"), "a kept ctx reads its own request");
    let r = server.call("POST", "/fn/rewrites?field=bytes", &[], &[b'a', 0xff, b'\n', 0]);
    assert_eq!((r.status, r.text().as_str()), (200, "[97, 255, 10, 0] true UTF-8 ASCII-8BIT"));
}

/// Calls the function `rewrites` with each `?field=`: a 502 `handler_error`
/// whose message says what was wrong, and after each a plain call that worker
/// `pid` still answers with `ok`.
fn each_is_a_clear_502(server: &Server, pid: u32, cases: &[(&str, &str)]) {
    for (field, says) in cases {
        let r = server.get(&format!("/fn/rewrites?field={field}"));
        assert_eq!((r.status, r.json()["code"].as_str()), (502, Some("handler_error")), "{field}: {}", r.text());
        let message = r.json()["error"].as_str().unwrap_or("").to_string();
        assert!(message.contains(says), "{field}: {message}");
        let next = server.get("/fn/rewrites");
        assert_eq!((next.status, next.text().as_str()), (200, "ok"), "after {field}");
        assert_eq!(next.worker_pid(), pid, "after {field}: the same worker serves on");
    }
}
