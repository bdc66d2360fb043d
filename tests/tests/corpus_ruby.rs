//! The Ruby corpus: real libraries as handler bundles, deployed through the real
//! server and answered as Debian's CRuby answers the same handler.
//!
//! Each case is a folder of `tests/corpus/ruby/` plus, for the gems, Debian's
//! pure-Ruby gem packages vendored into `vendor/<gem>/` (fetched at pinned
//! versions by `scripts/fetch-corpus` into `<target>/corpus/ruby`). The expected
//! answer comes from `tests/corpus/ruby/reference.rb` run on CRuby (`ruby`, 3.1 on
//! bookworm) over the same bundle directory and request; the two are compared as
//! status, content type, and body (parsed when it is JSON: versions differ, 3.1
//! against polyfaas's 3.4). The test owns no expected output of its own.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Reply, Server, repo_root, target_dir, zip};
use serde_json::{Value, json};

/// One corpus case: its folder, the gems vendored into it, and the request.
struct Case {
    name: &'static str,
    gems: &'static [&'static str],
    method: &'static str,
    query: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
}

fn gems_dir() -> PathBuf {
    target_dir().join("corpus").join("ruby")
}

/// The case's bundle as a directory: the fixture, and its gems under vendor/.
fn materialize(case: &Case, into: &Path) {
    copy_tree(&repo_root().join("tests").join("corpus").join("ruby").join(case.name), into);
    for gem in case.gems {
        let from = gems_dir().join(gem);
        assert!(
            from.join("lib").is_dir(),
            "{}: missing; run scripts/fetch-corpus (scripts/test does) with this CARGO_TARGET_DIR",
            from.display()
        );
        copy_tree(&from, &into.join("vendor").join(gem));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        }
    }
}

fn zip_dir(root: &Path) -> Vec<u8> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    zip(&refs)
}

/// What CRuby answers, through the reference shim.
fn reference(case: &Case, dir: &Path, function: &str) -> Value {
    let header_list: Vec<Value> = case.headers.iter().map(|(k, v)| json!([k.to_ascii_lowercase(), v])).collect();
    let request = json!({
        "function": function, "method": case.method, "rawQuery": case.query,
        "headerList": header_list, "body": case.body,
    });
    let shim = repo_root().join("tests").join("corpus").join("ruby").join("reference.rb");
    let mut child = Command::new("ruby")
        .arg(&shim)
        .arg(dir)
        .arg("handler.rb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running `ruby` (Debian's ruby, installed by scripts/test)");
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write request");
    let out = child.wait_with_output().expect("ruby");
    assert!(out.status.success(), "{}: CRuby failed: {}", case.name, String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("the shim prints JSON");
    normalise(
        answer["status"].as_u64().expect("status") as u16,
        answer["contentType"].as_str().expect("contentType"),
        answer["body"].as_str().expect("body"),
    )
}

/// Status, content type and body, the body parsed if it is JSON.
fn normalise(status: u16, content_type: &str, body: &str) -> Value {
    let body = if content_type.starts_with("application/json") {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    } else {
        Value::String(body.to_string())
    };
    json!({"status": status, "contentType": content_type, "body": body})
}

fn polyfaas(reply: &Reply) -> Value {
    normalise(reply.status, reply.header("content-type").unwrap_or(""), &reply.text())
}

fn run(case: &Case) {
    let dir = tempfile::tempdir().expect("tempdir");
    materialize(case, dir.path());
    let function = format!("corpus-{}", case.name);
    let expected = reference(case, dir.path(), &function);
    let server = Server::start(&[]);
    let up = server.deploy(&function, &zip_dir(dir.path()));
    assert_eq!(up.status, 201, "{}: {}", case.name, up.text());
    let path = if case.query.is_empty() { format!("/fn/{function}") } else { format!("/fn/{function}?{}", case.query) };
    let reply = server.call(case.method, &path, case.headers, case.body.as_bytes());
    assert_eq!(
        polyfaas(&reply),
        expected,
        "{}: polyfaas (left) against CRuby (right); logs: {}",
        case.name,
        server.logs()
    );
}

#[test]
fn uri_from_the_standard_library() {
    run(&Case {
        name: "uri",
        gems: &[],
        method: "POST",
        query: "",
        headers: &[],
        body: "https://example.com:8443/a/b/c?x=1&y=%C3%A9+z#frag\n",
    });
}

#[test]
fn cgi_with_the_raw_query_headers_and_body_bytes() {
    run(&Case {
        name: "cgi",
        gems: &[],
        method: "POST",
        query: "q=%3Cb%3E&q=2&z=1&empty=",
        headers: &[("X-Corpus-A", "1"), ("X-Corpus-B", "two")],
        body: "caf\u{e9} \u{2603}",
    });
}

#[test]
fn logger_from_the_standard_library() {
    run(&Case { name: "logger", gems: &[], method: "GET", query: "who=ruby%20corpus", headers: &[], body: "" });
}

#[test]
fn csv_the_bundled_gem() {
    run(&Case {
        name: "csv",
        gems: &[],
        method: "POST",
        query: "",
        headers: &[("content-type", "text/csv")],
        body: "name,amount\nada,1.5\n\"lovelace, a\",40\nbob,-3\n",
    });
}

#[test]
fn kramdown_vendored_with_autoload_and_its_own_templates() {
    run(&Case {
        name: "kramdown",
        gems: &["kramdown"],
        method: "POST",
        query: "",
        headers: &[],
        body: "# Title\n\nSome *emphasis*, a [link](https://example.com) and `code`.\n\n## Part two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n> quoted\n",
    });
}

#[test]
fn mustache_vendored_with_a_template_file() {
    run(&Case {
        name: "mustache",
        gems: &["mustache"],
        method: "POST",
        query: "",
        headers: &[("content-type", "application/json")],
        body: r#"{"customer": "Ada & <Co>", "items": [{"name": "tea", "price": 2.5}, {"name": "cake", "price": 4}]}"#,
    });
}

#[test]
fn more_stdlib_and_a_module_from_the_bundles_lib() {
    run(&Case { name: "stdlib", gems: &[], method: "POST", query: "", headers: &[], body: "to be or not to be, that" });
}

#[test]
fn yaml_psych_from_the_standard_library() {
    run(&Case {
        name: "yaml",
        gems: &[],
        method: "POST",
        query: "",
        headers: &[],
        body: "name: corpus\nlist:\n  - 1\n  - two\n  - {three: 3}\nnested:\n  ok: true\n",
    });
}

/// /app is the bundle, read-only, and nothing beyond it is reachable.
#[test]
fn the_bundle_is_all_a_ruby_handler_sees_and_it_is_read_only() {
    let code = r#"
def handler(ctx)
  tries = {
    "up" => -> { File.read("../metadata.json") },
    "dotdot" => -> { File.read("/app/../etc/passwd") },
    "host" => -> { File.read("/etc/passwd") },
    "list_up" => -> { Dir.children("/app/..").size },
    "write" => -> { File.write("/app/x.txt", "x") },
    "own" => -> { File.read("metadata.json").size > 0 },
  }
  tries.to_h { |k, f| [k, (f.call == true rescue $!.class.name)] }
end
"#;
    let metadata = r#"{"language":"ruby","entrypointFile":"handler.rb"}"#;
    let server = Server::start(&[]);
    let up =
        server.deploy("confined", &zip(&[("metadata.json", metadata.as_bytes()), ("handler.rb", code.as_bytes())]));
    assert_eq!(up.status, 201, "{}", up.text());
    let r = server.call("GET", "/fn/confined", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json();
    assert_eq!(out["own"], true, "{out}");
    for k in ["up", "dotdot", "host", "list_up", "write"] {
        assert!(out[k].as_str().is_some_and(|e| e.starts_with("Errno::")), "{k} was not refused: {out}");
    }
}
