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
