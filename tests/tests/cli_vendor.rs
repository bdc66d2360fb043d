//! `polyfaas deploy DIR` vendors what the folder declares: `requirements.txt`
//! with pip (pure-Python wheels only), `package.json` with npm; `--no-vendor`
//! zips the folder as it is. Against a real server, with the real pip and npm
//! (PyPI and the npm registry at pinned versions, checked by hash: pip's
//! `--hash`, the lockfile's `integrity`; their caches under
//! `$CARGO_TARGET_DIR/corpus`, so a second run does not download again).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::Server;

/// The pure-Python package the handler imports, pinned by its wheel's sha256.
const SIX: &str = "six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n";

/// A package that ships only platform wheels (C extensions) for CPython 3.
const MARKUPSAFE: &str = "markupsafe==3.0.2\n";

/// The CLI with the package managers' caches under the target dir; returns
/// (success, stdout + stderr).
fn polyfaas(server: Option<&Server>, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let corpus = common::target_dir().join("corpus");
    let mut command = Command::new(common::bin_dir().join("polyfaas"));
    command
        .args(args)
        .env("PIP_CACHE_DIR", corpus.join("pip"))
        .env("npm_config_cache", corpus.join("npm"))
        .env_remove("POLYFAAS_TOKEN")
        .envs(env.iter().copied());
    if let Some(server) = server {
        command.env("POLYFAAS_URL", format!("http://{}", server.addr));
    }
    let out = command.output().expect("running polyfaas");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

/// Every file under `dir` with its contents: the user's folder must not change.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("prefix").to_string_lossy().into_owned();
                files.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

/// The entry names of the zip `polyfaas deploy --zip-to` writes for `dir`.
fn zip_entries(dir: &Path, extra: &[&str]) -> Vec<String> {
    let out = tempfile::tempdir().expect("temp dir");
    let file = out.path().join("bundle.zip");
    let mut args = vec!["deploy", dir.to_str().expect("utf-8"), "--zip-to", file.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let (ok, text) = polyfaas(None, &args, &[]);
    assert!(ok, "{text}");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&file).expect("zip")).expect("a zip");
    (0..archive.len()).map(|i| archive.by_index(i).expect("entry").name().to_string()).collect()
}

const PY_METADATA: &str = r#"{"language":"python","entrypointFile":"handler.py"}"#;
const PY_HANDLER: &str =
    "import six\n\ndef handler(ctx):\n    return {\"six\": six.__version__, \"py3\": six.PY3}\n\nhandler\n";

#[test]
fn requirements_are_vendored_and_the_handler_imports_them() {
    let server = Server::start(&[]);
    let dir = folder(&[("metadata.json", PY_METADATA), ("handler.py", PY_HANDLER), ("requirements.txt", SIX)]);
    let before = snapshot(dir.path());
    let (ok, out) =
        polyfaas(Some(&server), &["deploy", dir.path().to_str().expect("utf-8"), "--name", "uses-six"], &[]);
    assert!(ok && out.contains("deployed uses-six v1 ("), "{out}");
    assert_eq!(snapshot(dir.path()), before, "the user's folder is never modified");
    let r = server.invoke("uses-six", &serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"six": "1.16.0", "py3": true}));
    let entries = zip_entries(dir.path(), &[]);
    assert!(entries.iter().any(|e| e == "six.py"), "{entries:?}");
    assert!(!entries.iter().any(|e| e.starts_with("bin/") || e.ends_with(".pyc")), "{entries:?}");
}

#[test]
fn a_c_extension_in_requirements_is_refused_by_name() {
    let server = Server::start(&[]);
    let dir = folder(&[
        ("metadata.json", PY_METADATA),
        ("handler.py", "def handler(ctx):\n    return 1\n"),
        ("requirements.txt", MARKUPSAFE),
    ]);
    let before = snapshot(dir.path());
    let (ok, out) = polyfaas(Some(&server), &["deploy", dir.path().to_str().expect("utf-8"), "--name", "native"], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("not pure Python") && out.to_lowercase().contains("markupsafe 3.0.2"), "{out}");
    assert!(out.contains("--no-vendor"), "{out}");
    assert_eq!(snapshot(dir.path()), before, "the user's folder is never modified");
    assert_eq!(server.get("/api/v1/functions/native").status, 404, "nothing was uploaded");
}

#[test]
fn package_json_dependencies_land_in_node_modules() {
    let package = r#"{"name":"vendor-js","version":"1.0.0","dependencies":{"is-number":"7.0.0"}}"#;
    let lock = r#"{"name":"vendor-js","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{
        "":{"name":"vendor-js","version":"1.0.0","dependencies":{"is-number":"7.0.0"}},
        "node_modules/is-number":{"version":"7.0.0",
          "resolved":"https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
          "integrity":"sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
          "license":"MIT","engines":{"node":">=0.12.0"}}}}"#;
    let dir = folder(&[
        ("metadata.json", r#"{"language":"js","entrypointFile":"handler.js"}"#),
        ("handler.js", "function handler(ctx) { return { ok: true }; }\nhandler\n"),
        ("package.json", package),
        ("package-lock.json", lock),
        // A stale local install: npm installs afresh in the staging copy.
        ("node_modules/stale/index.js", "module.exports = 1;\n"),
    ]);
    let before = snapshot(dir.path());
    let entries = zip_entries(dir.path(), &[]);
    for expected in
        ["handler.js", "package.json", "node_modules/is-number/index.js", "node_modules/is-number/package.json"]
    {
        assert!(entries.iter().any(|e| e == expected), "{expected} not in {entries:?}");
    }
    assert!(!entries.iter().any(|e| e.starts_with("node_modules/stale/") || e.contains(".bin/")), "{entries:?}");
    assert_eq!(snapshot(dir.path()), before, "the user's folder is never modified");

    let server = Server::start(&[]);
    let (ok, out) =
        polyfaas(Some(&server), &["deploy", dir.path().to_str().expect("utf-8"), "--name", "uses-npm"], &[]);
    assert!(ok && out.contains("deployed uses-npm v1 ("), "{out}");
    let stored = common::wait_until(std::time::Duration::from_secs(1), || {
        snapshot(&server.data_dir).keys().any(|k| k.ends_with("node_modules/is-number/index.js"))
    });
    assert!(stored, "the stored bundle has node_modules");
}

#[test]
fn no_vendor_zips_the_folder_as_it_is() {
    let dir = folder(&[("metadata.json", PY_METADATA), ("handler.py", PY_HANDLER), ("requirements.txt", SIX)]);
    let entries = zip_entries(dir.path(), &["--no-vendor"]);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.iter().any(|e| e == "requirements.txt") && !entries.iter().any(|e| e == "six.py"), "{entries:?}");
}

#[test]
fn a_missing_package_manager_is_a_clear_error() {
    let empty = tempfile::tempdir().expect("temp dir");
    let path = empty.path().to_str().expect("utf-8");
    let py = folder(&[("metadata.json", PY_METADATA), ("handler.py", PY_HANDLER), ("requirements.txt", SIX)]);
    let js = folder(&[("metadata.json", r#"{"language":"js","entrypointFile":"h.js"}"#), ("package.json", "{}")]);
    for (dir, tool) in [(&py, "pip"), (&js, "npm")] {
        let args = ["deploy", dir.path().to_str().expect("utf-8"), "--zip-to", "/dev/null"];
        let (ok, out) = polyfaas(None, &args, &[("PATH", path)]);
        assert!(!ok, "{out}");
        assert!(
            out.contains(&format!("{tool} ")) && out.contains("not installed") && out.contains("--no-vendor"),
            "{out}"
        );
    }
}
