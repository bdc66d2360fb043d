//! WASI programs built from crates we did not write (pinned crates.io versions,
//! built for wasm32-wasip1 by `scripts/fetch-corpus wasm`), deployed with the
//! `metadata.json` of `tests/corpus/wasm/<case>` (their `args`, `contentType`
//! and `cgi`), invoked through the real server with the case's input as the
//! body, and compared byte for byte with what the reference WASI runner (the
//! wasmtime PyPI package, `tests/corpus/wasm/reference.py`) prints for the same
//! module, arguments and input.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;
use common::corpus::{fetched, run_reference, zip_files};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    common::repo_root().join("tests").join("corpus").join("wasm")
}

/// The case's metadata, its program (`<crate>-<version>.wasm` from the cache)
/// zipped under the name its metadata gives, and its input.
fn bundle(case: &str, program: &str, input: &str) -> (Value, Vec<u8>, Vec<u8>, PathBuf) {
    let module = fetched("wasm").join("wasm").join(format!("{program}.wasm"));
    let dir = corpus_dir().join(case);
    let metadata_text = std::fs::read(dir.join("metadata.json")).expect("metadata.json");
    let metadata: Value = serde_json::from_slice(&metadata_text).expect("metadata json");
    let entry = metadata["entrypointFile"].as_str().expect("entrypointFile").to_string();
    let files = vec![
        ("metadata.json".to_string(), metadata_text),
        (entry, std::fs::read(&module).expect("the fetched module")),
    ];
    (metadata, zip_files(&files), std::fs::read(dir.join(input)).expect("input"), module)
}

/// What the reference runner prints for `module` under `metadata`'s args.
fn reference(case: &str, metadata: &Value, module: &PathBuf, input: &[u8]) -> Vec<u8> {
    let runner = fetched("wasm").join("wasm-runner");
    let mut cmd = Command::new(std::env::var("POLYFAAS_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into()));
    cmd.env("PYTHONPATH", runner).arg(corpus_dir().join("reference.py")).arg(module).arg(case);
    for arg in metadata["args"].as_array().into_iter().flatten() {
        cmd.arg(arg.as_str().expect("string args"));
    }
    run_reference(cmd, input)
}

/// Deploys the case as function `case`, invokes it, and compares with the reference.
fn runs_as_on_the_reference(case: &str, program: &str, input: &str) -> Server {
    let (metadata, zip, input, module) = bundle(case, program, input);
    let server = Server::start(&[]);
    let r = server.deploy(case, &zip);
    assert_eq!(r.status, 201, "{case}: upload: {}", r.text());
    let got = server.call("POST", &format!("/fn/{case}"), &[], &input);
    assert_eq!(got.status, 200, "{case}: {}", got.text());
    let content_type = metadata["contentType"].as_str().unwrap_or("application/json");
    assert_eq!(got.header("content-type"), Some(content_type), "{case}");
    let expected = reference(case, &metadata, &module, &input);
    assert_eq!(
        got.text(),
        String::from_utf8_lossy(&expected),
        "{case}: polyfaas (left) and the reference WASI runner (right) differ"
    );
    server
}

#[test]
fn comrak_renders_gfm_with_args_and_content_type() {
    runs_as_on_the_reference("comrak_gfm", "comrak-0.59.0", "input.md");
}

#[test]
fn toml2json_converts_with_args_and_the_default_content_type() {
    runs_as_on_the_reference("toml2json_config", "toml2json-1.3.2", "input.toml");
}

#[test]
fn sd_output_that_looks_like_cgi_headers_stays_in_the_body_without_cgi() {
    let server = runs_as_on_the_reference("sd_replace", "sd-1.0.0", "input.txt");
    // The same program with CGI parsing on (the default): its first line, which
    // looks like a header, is taken for one.
    let (metadata, _, input, module) = bundle("sd_replace", "sd-1.0.0", "input.txt");
    let mut cgi = metadata.clone();
    cgi.as_object_mut().expect("object").remove("cgi");
    let files = vec![
        ("metadata.json".to_string(), cgi.to_string().into_bytes()),
        ("sd.wasm".to_string(), std::fs::read(&module).expect("module")),
    ];
    let r = server.deploy("sd-cgi", &zip_files(&files));
    assert_eq!(r.status, 201, "{}", r.text());
    let got = server.call("POST", "/fn/sd-cgi", &[], &input);
    assert_eq!(got.header("total"), Some("5"));
    assert!(!got.text().contains("Total: 5"), "{}", got.text());
}

#[test]
fn wasm_options_of_the_wrong_type_or_size_are_refused_at_upload() {
    let server = Server::start(&[]);
    let long = "a".repeat(5000);
    let many = vec!["x"; 300];
    for (metadata, says) in [
        (serde_json::json!({"args": "--gfm"}), "invalid type"),
        (serde_json::json!({"args": [1, 2]}), "invalid type"),
        (serde_json::json!({"cgi": "no"}), "invalid type"),
        (serde_json::json!({"contentType": "html"}), "not a media type"),
        (serde_json::json!({"args": [long]}), "bytes long"),
        (serde_json::json!({"args": many}), "entries"),
    ] {
        let mut full = metadata.clone();
        full["language"] = "wasm".into();
        full["entrypointFile"] = "m.wasm".into();
        let zip = common::zip(&[("metadata.json", full.to_string().as_bytes()), ("m.wasm", b"\0asm\x01\0\0\0")]);
        let r = server.deploy("bad", &zip);
        assert_eq!(r.status, 400, "{metadata}: {}", r.text());
        assert_eq!(r.json()["code"], "invalid_bundle", "{metadata}");
        assert!(r.json()["error"].as_str().unwrap_or_default().contains(says), "{metadata}: {}", r.text());
    }
    let python = common::zip(&[
        ("metadata.json", br#"{"language":"python","entrypointFile":"h.py","args":["x"]}"#),
        ("h.py", b"def handler(ctx):\n    return 1\n"),
    ]);
    let r = server.deploy("py", &python);
    assert_eq!((r.status, r.json()["code"].clone()), (400, "invalid_bundle".into()), "{}", r.text());
}
