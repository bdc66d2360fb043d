//! Real npm packages, unchanged, in JavaScript handlers: each case under
//! `tests/corpus/js/cases/` is a small handler of ours that uses a package; it is
//! deployed with the packages it needs in its `node_modules/`, invoked through the
//! real server, and its answer must equal what the same handler answers under
//! Node (`tests/corpus/js/reference.mjs` gives it a ctx like ours).
//!
//! The packages come from the npm registry at the versions and integrity hashes
//! of `tests/corpus/js/package-lock.json` (`npm ci --omit=dev --ignore-scripts`),
//! cached in `<target>/corpus/js` until the lockfile changes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use serde_json::{Value, json};

/// A case: its directory, its entry file, the packages its bundle carries, and the request.
struct Case {
    name: &'static str,
    entry: &'static str,
    packages: &'static [&'static str],
    body: fn() -> Value,
}

const CASES: &[Case] = &[
    Case {
        name: "semver-cjs",
        entry: "handler.js",
        packages: &["semver", "lru-cache", "yallist"],
        body: || json!({"versions": ["1.2.3", "0.9.0", "1.10.0-beta.1", "2.0.0", "1.4.0"], "range": "^1.0.0"}),
    },
    Case {
        name: "lodash-esm",
        entry: "handler.mjs",
        packages: &["lodash-es"],
        body: || json!({"words": ["hello world", "fooBar", "baz_qux"], "people": [{"name": "ann", "age": 31}, {"name": "bob", "age": 25}]}),
    },
    Case { name: "uuid-random", entry: "handler.mjs", packages: &["uuid"], body: || json!({"name": "polyfaas"}) },
    Case {
        name: "marked-gfm",
        entry: "handler.mjs",
        packages: &["marked"],
        body: || json!({"markdown": "# Links\n\nVisit www.example.com/path/to or https://example.org/a/b?x=1 and mail me@example.com.\n\n| a | b |\n|---|---|\n| 1 | ~~2~~ |\n"}),
    },
    Case {
        name: "yaml-cjs-files",
        entry: "handler.js",
        packages: &["js-yaml", "argparse"],
        body: || json!({"text": "a: 1\nb: [x, y]\nc: {d: true, e: 2024-01-02}\nf: |\n  multi\n  line\n"}),
    },
    Case {
        name: "zod-cjs",
        entry: "handler.js",
        packages: &["zod"],
        body: || json!({"users": [{"name": "al", "age": 3, "tags": ["a"]}, {"name": "b", "age": -1, "email": "no"}, {"name": "cy", "age": 1.5}]}),
    },
    Case {
        name: "esm-imports-cjs",
        entry: "handler.mjs",
        packages: &["semver", "lru-cache", "yallist", "js-yaml", "argparse"],
        body: || json!({"version": "1.2.3-rc.1"}),
    },
    Case {
        name: "web-globals",
        entry: "handler.mjs",
        packages: &[],
        body: || json!({"text": "héllo wörld ✓", "url": "https://user@example.com:8080/p/a%20th?q=1#h"}),
    },
];

fn corpus_dir() -> PathBuf {
    common::repo_root().join("tests").join("corpus").join("js")
}

/// `npm ci` into `<target>/corpus/js`, once per lockfile (the lockfile copy in
/// the cache is the marker). Returns the cache's `node_modules`.
fn fetch_packages() -> PathBuf {
    let cache = common::target_dir().join("corpus").join("js");
    let lock = std::fs::read(corpus_dir().join("package-lock.json")).expect("package-lock.json");
    let modules = cache.join("node_modules");
    if std::fs::read(cache.join("package-lock.json")).ok().as_ref() == Some(&lock) && modules.is_dir() {
        return modules;
    }
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::create_dir_all(&cache).expect("corpus cache dir");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(corpus_dir().join(file), cache.join(file)).expect("copy the npm manifest");
    }
    let status = Command::new("npm")
        .args(["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&cache)
        .status()
        .expect("npm (installed by scripts/setup)");
    assert!(status.success(), "npm ci failed: {status}");
    modules
}

fn collect(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read dir").flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, prefix, out);
        } else {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            out.push((format!("{prefix}{rel}"), std::fs::read(&path).expect("read file")));
        }
    }
}

/// The case's handler, its metadata and `node_modules/<package>` for each package it uses.
fn bundle(case: &Case, modules: &Path) -> Vec<u8> {
    let dir = corpus_dir().join("cases").join(case.name);
    let metadata = format!(r#"{{"language":"js","entrypointFile":"{}"}}"#, case.entry);
    let mut files = vec![("metadata.json".to_string(), metadata.into_bytes())];
    collect(&dir, &dir, "", &mut files);
    for package in case.packages {
        let root = modules.join(package);
        collect(&root, &root, &format!("node_modules/{package}/"), &mut files);
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    common::zip(&refs)
}

/// The same handler under Node, with the packages linked beside it.
fn reference(case: &Case, modules: &Path, body: &str) -> Value {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = corpus_dir().join("cases").join(case.name);
    std::fs::copy(dir.join(case.entry), work.path().join(case.entry)).expect("copy handler");
    std::os::unix::fs::symlink(modules, work.path().join("node_modules")).expect("link node_modules");
    let out = Command::new("node")
        .arg(corpus_dir().join("reference.mjs"))
        .arg(work.path())
        .arg(case.entry)
        .arg(body)
        .output()
        .expect("node (installed with npm by scripts/setup)");
    assert!(out.status.success(), "{}: node failed: {}", case.name, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{}: node answered no JSON ({e}): {}", case.name, String::from_utf8_lossy(&out.stdout))
    })
}

#[test]
fn npm_packages_run_unchanged_and_answer_as_under_node() {
    let modules = fetch_packages();
    let server = Server::start(&[]);
    let mut failures = Vec::new();
    for case in CASES {
        let body = (case.body)();
        let expected = reference(case, &modules, &body.to_string());
        let r = server.deploy(case.name, &bundle(case, &modules));
        if r.status != 201 {
            failures.push(format!("{}: deploy answered {}: {}", case.name, r.status, r.text()));
            continue;
        }
        // Twice: the first call is the cold one; the second must see the same module state.
        for round in ["cold", "warm"] {
            let r = server.invoke(case.name, &body);
            if r.status != 200 {
                failures.push(format!("{} ({round}): {} {}", case.name, r.status, r.text()));
            } else if r.json() != expected {
                failures.push(format!("{} ({round}):\n  polyfaas {}\n  node     {expected}", case.name, r.json()));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
