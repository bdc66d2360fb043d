//! Attacks on the bundle store, the supervisor side of the trust boundary: what a
//! worker that ran user code may make the supervisor store, what a stored file may
//! make a worker run, and how much an uploader may make the server keep on disk.
//!
//! - row02: Python top-level code, run by the upload's dry run, writes a forged
//!   `Prepared` frame on its worker's socket (fd 3) listing `metadata.json` and a
//!   precompiled module. The upload is refused (`400 invalid_handler`), nothing of
//!   it is stored, the earlier version stays Python. A stored precompiled module
//!   overwritten on disk is refused after a restart (a 5xx, never its code), and a
//!   bundle may not bring its own `.cwasm`.
//! - row08: quotas. The function past `--max-functions` is refused
//!   (`429 too_many_functions`), `?keep=N` is capped at `--max-versions`, and the
//!   store never grows past `--max-store-bytes` (`413 quota_exceeded`), while the
//!   current version keeps serving.

mod common;

use std::path::{Path, PathBuf};

use common::{Server, wasm_bundle, zip};
use serde_json::{Value, json};

fn script_bundle(language: &str, entry: &str, source: &str) -> Vec<u8> {
    let metadata = format!(r#"{{"language":"{language}","entrypointFile":"{entry}","timeoutMs":5000}}"#);
    zip(&[("metadata.json", metadata.as_bytes()), (entry, source.as_bytes())])
}

fn code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_string))
}

/// postcard's unsigned varint.
fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One frame of `FromWorker::Prepared { artifacts }` (variant 1), as a worker
/// sends it: a big-endian u32 length, then postcard.
fn forged_prepared(artifacts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = vec![1u8];
    varint(artifacts.len(), &mut body);
    for (name, bytes) in artifacts {
        varint(name.len(), &mut body);
        body.extend_from_slice(name.as_bytes());
        varint(bytes.len(), &mut body);
        body.extend_from_slice(bytes);
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect()
}

/// The precompiled module the server stored for `function`'s current version.
fn stored_module(data: &Path, function: &str) -> PathBuf {
    let found = cwasm_files(&data.join("functions").join(function));
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn row02_a_forged_prepared_frame_from_python_stores_nothing() {
    let server = Server::start(&[]);
    let v1 = "def handler(ctx):\n    return 'still python'\n\nhandler\n";
    assert_eq!(server.deploy("victim", &script_bundle("python", "handler.py", v1)).status, 201);
    // The name a real precompiled module has on this server, learnt from a wasm upload.
    assert_eq!(server.deploy("real-wasm", &wasm_bundle("hello-wasm", None)).status, 201);
    let module_name = stored_module(&server.data_dir, "real-wasm").file_name().unwrap().to_string_lossy().to_string();

    let metadata = br#"{"language":"wasm","entrypointFile":"handler.py"}"#;
    let frame = forged_prepared(&[("metadata.json", metadata), (&module_name, b"\x7fELF planted native code")]);
    let attack = format!(
        "import os\nos.write(3, bytes.fromhex('{}'))\n\ndef handler(ctx):\n    return 'forged'\n\nhandler\n",
        hex(&frame)
    );
    for name in ["victim", "fresh"] {
        let r = server.deploy(name, &script_bundle("python", "handler.py", &attack));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert_eq!(code(&r.body).as_deref(), Some("invalid_handler"), "{}", r.text());
    }
    // The refusal is logged ("forged Prepared frame"), but the harness's capture of
    // the server's stderr lags at times, so the answer above is what is asserted.

    // Nothing of either upload is stored: no module anywhere but the wasm function's,
    // the victim still on its Python version 1, the fresh name unknown.
    let modules = cwasm_files(&server.data_dir.join("functions"));
    assert_eq!(modules.len(), 1, "{modules:?}");
    assert!(modules[0].starts_with(server.data_dir.join("functions").join("real-wasm")), "{modules:?}");
    let victim = server.manage("GET", "/api/v1/functions/victim", &[], b"").json();
    assert_eq!(victim["language"], "python", "{victim}");
    assert_eq!(victim["version"], 1, "{victim}");
    let metadata_now = std::fs::read_to_string(server.data_dir.join("functions/victim/1/metadata.json")).unwrap();
    assert!(metadata_now.contains("python"), "{metadata_now}");
    assert_eq!(server.manage("GET", "/api/v1/functions/fresh", &[], b"").status, 404);
    let r = server.invoke("victim", &json!({}));
    assert_eq!((r.status, r.text()), (200, "still python".to_string()));
}

#[test]
fn row02_a_bundle_may_not_bring_its_own_precompiled_module() {
    let server = Server::start(&[]);
    let mut entries = vec![];
    let planted = b"\x7fELF planted".to_vec();
    let own = wasm_bundle("hello-wasm", None);
    assert_eq!(server.deploy("real-wasm", &own).status, 201);
    let module_name = stored_module(&server.data_dir, "real-wasm").file_name().unwrap().to_string_lossy().to_string();
    let wasm = std::fs::read(server.data_dir.join("functions/real-wasm/1/hello-wasm.wasm")).unwrap();
    entries.push(("metadata.json", br#"{"language":"wasm","entrypointFile":"hello-wasm.wasm"}"#.as_slice()));
    entries.push(("hello-wasm.wasm", wasm.as_slice()));
    entries.push((module_name.as_str(), planted.as_slice()));
    let r = server.deploy("planted", &zip(&entries));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(code(&r.body).as_deref(), Some("invalid_bundle"), "{}", r.text());
    assert_eq!(server.manage("GET", "/api/v1/functions/planted", &[], b"").status, 404);
}

#[test]
fn row02_a_tampered_precompiled_module_is_refused_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data.path(), &[], &[]);
    assert_eq!(server.deploy("hello", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.deploy("twice", &wasm_bundle("name-twice-wasm", None)).status, 201);
    assert_eq!(server.invoke("hello", &json!({"name": "Ada"})).status, 200);
    assert_eq!(server.stop(), Some(0));

    // Another valid module, made by this very engine, put in hello's place: if the
    // server mapped it in, hello would answer with name-twice's output.
    let target = stored_module(data.path(), "hello");
    std::fs::copy(stored_module(data.path(), "twice"), &target).unwrap();

    let server = Server::start_in(data.path(), &[], &[]);
    for _ in 0..4 {
        let r = server.invoke("hello", &json!({"name": "Ada"}));
        assert!(r.status >= 500, "{} {}", r.status, r.text());
        assert!(matches!(code(&r.body).as_deref(), Some("handler_error" | "unhealthy")), "{}", r.text());
        assert!(!r.text().contains("Ada Ada"), "{}", r.text());
    }
    let r = server.invoke("hello", &json!({"name": "Ada"}));
    assert!(r.text().contains("sha256") || code(&r.body).as_deref() == Some("unhealthy"), "{}", r.text());
    // The untouched function still runs.
    let r = server.invoke("twice", &json!({"name": "John"}));
    assert_eq!(r.status, 200, "{}", r.text());
    // A new upload replaces the refused version and serves again.
    assert_eq!(server.deploy("hello", &wasm_bundle("hello-wasm", None)).status, 201);
    let r = server.invoke("hello", &json!({"name": "Ada"}));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `len` bytes that deflate cannot shrink (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn row08_quotas_bound_functions_versions_and_bytes() {
    const QUOTA: u64 = 1 << 20;
    let quota = QUOTA.to_string();
    let server = Server::start(&["--max-functions", "2", "--max-versions", "3", "--max-store-bytes", &quota]);
    let small = |text: &str| {
        script_bundle("js", "handler.js", &format!("function handler(ctx) {{ return {text:?}; }}\nhandler\n"))
    };

    // Functions: the third is refused, stores nothing, the others keep serving.
    assert_eq!(server.deploy("one", &small("one")).status, 201);
    assert_eq!(server.deploy("two", &small("two")).status, 201);
    let r = server.deploy("three", &small("three"));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(code(&r.body).as_deref(), Some("too_many_functions"), "{}", r.text());
    assert!(!server.data_dir.join("functions/three").exists());
    assert_eq!(server.manage("GET", "/api/v1/functions", &[], b"").json()["functions"].as_array().unwrap().len(), 2);
    // A new version of an existing function is not a new function.
    assert_eq!(server.deploy("two", &small("two v2")).status, 201);

    // Versions: ?keep=1000 keeps at most --max-versions.
    for i in 0..6 {
        let path = "/api/v1/functions/one?keep=1000";
        let r = server.manage("PUT", path, &[("content-type", "application/zip")], &small(&format!("one v{i}")));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let described = server.manage("GET", "/api/v1/functions/one", &[], b"").json();
    assert_eq!(described["versions"].as_array().unwrap().len(), 3, "{described}");
    let dirs =
        std::fs::read_dir(server.data_dir.join("functions/one")).unwrap().flatten().filter(|e| e.path().is_dir());
    assert_eq!(dirs.count(), 3);

    // Bytes: 300 KB bundles that do not compress, with keep=1000; the store stays
    // under its quota, refusals are 413 quota_exceeded, the current version serves.
    let mut refused = 0;
    let mut last_ok = None;
    for i in 0..8u64 {
        let data = noise(300_000, i + 1);
        let source = format!("function handler(ctx) {{ return \"big v{i}\"; }}\nhandler\n");
        let metadata = br#"{"language":"js","entrypointFile":"handler.js"}"#;
        let bundle = zip(&[("metadata.json", metadata), ("handler.js", source.as_bytes()), ("data.bin", &data)]);
        let path = "/api/v1/functions/one?keep=1000";
        let r = server.manage("PUT", path, &[("content-type", "application/zip")], &bundle);
        match r.status {
            201 => last_ok = Some(format!("big v{i}")),
            413 => {
                assert_eq!(code(&r.body).as_deref(), Some("quota_exceeded"), "{}", r.text());
                refused += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
        let used: u64 =
            files_under(&server.data_dir.join("functions")).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
        assert!(used <= QUOTA, "the store holds {used} bytes, over its {QUOTA}");
        assert!(files_under(&server.data_dir.join("staging")).is_empty(), "a refused upload left files");
        let r = server.invoke("one", &json!({}));
        assert_eq!(r.status, 200, "{}", r.text());
        let expected = last_ok.clone().unwrap_or_else(|| "one v5".into());
        assert_eq!(r.text(), expected);
    }
    assert!(refused > 0, "no upload was refused: the quota was never reached");
    assert!(last_ok.is_some(), "no big upload fit at all");
    // Deleting frees room: the quota counts what is stored, not what was uploaded.
    assert_eq!(server.manage("DELETE", "/api/v1/functions/one", &[], b"").status, 200);
    let data = noise(300_000, 99);
    let bundle = zip(&[
        ("metadata.json", br#"{"language":"js","entrypointFile":"handler.js"}"#.as_slice()),
        ("handler.js", b"function handler(ctx) { return 'again'; }\nhandler\n".as_slice()),
        ("data.bin", data.as_slice()),
    ]);
    assert_eq!(server.deploy("one", &bundle).status, 201);
}

/// A stored bundle that vanished under the server (removed by hand) fails the
/// next cold start with an error that names no path on the server's disk: the
/// answer goes to whoever invoked the function. It is the server's fault, not the
/// handler's: 503 `not_ready`, not 502 `handler_error`.
#[test]
fn a_vanished_bundle_fails_without_naming_the_store() {
    let server = Server::start(&[]);
    // JavaScript: its deploy starts no warm worker, so the invocation cold-starts.
    let r = server.deploy("gone", &script_bundle("js", "handler.js", "module.exports = () => 'hi';"));
    assert_eq!(r.status, 201, "{}", r.text());
    std::fs::remove_dir_all(server.data_dir.join("functions/gone/1")).expect("remove the version");
    let r = server.invoke("gone", &json!({}));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(code(&r.body).as_deref(), Some("not_ready"), "{}", r.text());
    let data_dir = server.data_dir.canonicalize().unwrap_or_else(|_| server.data_dir.clone());
    for dir in [&server.data_dir, &data_dir] {
        assert!(!r.text().contains(&*dir.to_string_lossy()), "the answer names the store: {}", r.text());
    }
    assert!(!r.text().contains("functions/gone"), "{}", r.text());
}
