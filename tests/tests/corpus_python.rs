//! Real PyPI libraries, unchanged, in handler bundles: each case under
//! `tests/corpus/python/<case>` is deployed with the pinned libraries of
//! `tests/corpus/python/requirements.txt` vendored as `pip install --target vendor`
//! would, invoked through the real server, and its answer compared with what
//! CPython 3.11 answers for the same handler and request
//! (`tests/corpus/python/reference.py`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;
use common::corpus::{fetched, files_under, run_reference, zip_files};
use serde_json::{Value, json};

fn case_dir(case: &str) -> PathBuf {
    common::repo_root().join("tests").join("corpus").join("python").join(case)
}

/// Deploys `case` with the vendored libraries, sends `body` (with `query`), and
/// checks the answer against CPython's.
fn runs_as_on_cpython(case: &str, query: &str, body: &Value) {
    let vendor = fetched("python").join("python-vendor");
    let mut files = files_under(&case_dir(case), "", &[]);
    files.extend(files_under(&vendor, "vendor/", &["bin", ".stamp"]));
    let server = Server::start(&[]);
    let r = server.deploy(case, &zip_files(&files));
    assert_eq!(r.status, 201, "{case}: upload: {}", r.text());

    let body_text = body.to_string();
    let path = if query.is_empty() { format!("/fn/{case}") } else { format!("/fn/{case}?{query}") };
    let got = server.call("POST", &path, &[("content-type", "application/json")], body_text.as_bytes());
    assert_eq!(got.status, 200, "{case}: {}", got.text());
    assert_eq!(got.header("content-type"), Some("application/json"), "{case}");

    let request = json!({
        "method": "POST", "path": "/", "query": query,
        "headers": [["content-type", "application/json"]], "body": body_text,
    });
    let mut cmd = Command::new(std::env::var("POLYFAAS_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into()));
    cmd.arg(case_dir(case).parent().expect("corpus dir").join("reference.py")).arg(case_dir(case)).arg(&vendor);
    let reference: Value = serde_json::from_slice(&run_reference(cmd, request.to_string().as_bytes())).expect("json");
    let expected: Value = serde_json::from_str(reference["body"].as_str().expect("a body")).expect("reference body");
    assert_eq!(got.json(), expected, "{case}: polyfaas (left) and CPython 3.11 (right) differ");
}

#[test]
fn python_dateutil_parses_and_converts_time_zones() {
    runs_as_on_cpython(
        "dateutil_dates",
        "",
        &json!({"dates": ["2024-02-29T13:45:00", "March 3 2023 5pm", "Sat, 01 Jun 2024 08:00:00 +0200", "12/11/10"]}),
    );
}

#[test]
fn jinja2_renders_a_template_file_of_the_bundle() {
    let order = json!({
        "id": "A-17", "customer": "Zoë <script>alert(1)</script>",
        "items": [{"name": "widget", "qty": 3, "cents": 250}, {"name": "bolt & nut", "qty": 10, "cents": 15}],
        "note": "Leave it at the door, please, next to the red bicycle",
    });
    runs_as_on_cpython("jinja2_template", "", &order);
}

#[test]
fn tabulate_formats_tables() {
    let rows = json!({"rows": [["polyfaas", "rust", 12, 0.5], ["boa", "rust", 5000, 1.25], ["ruby.wasm", "ruby", 800, 2.0 / 3.0]]});
    runs_as_on_cpython("tabulate_table", "", &rows);
}

#[test]
fn attrs_builds_validated_records() {
    let data = json!({
        "id": "o-1",
        "items": [{"name": "  pear ", "qty": "2", "tags": ["fruit"]}, {"name": "apple", "qty": 5}],
        "invalid": [{"name": "x", "qty": 0}, {"name": "y"}, {"name": "z", "qty": "many"}],
    });
    runs_as_on_cpython("attrs_records", "", &data);
}

#[test]
fn packaging_compares_versions_and_requirements() {
    let data = json!({
        "versions": ["1.10.0", "1.2.0", "2.0.0rc1", "1.2.0.post1", "1.9", "0.9.9", "2.0.0"],
        "specifier": ">=1.2,<2.1,!=1.9",
        "requirement": "requests[socks,security]>=2.8.1,==2.* ; python_version >= \"3.8\"",
    });
    runs_as_on_cpython("packaging_versions", "", &data);
}

#[test]
fn idna_encodes_international_domain_names() {
    let data = json!({"domains": ["bücher.example", "ドメイン.テスト", "xn--bcher-kva.example", "a..b", "straße.de"]});
    runs_as_on_cpython("idna_domains", "", &data);
}

#[test]
fn env_files_home_zoneinfo_and_pwd_behave_as_on_cpython() {
    runs_as_on_cpython("env_files_zoneinfo", "a=1&a=2&b=x%20y", &json!({"k": "v"}));
}
