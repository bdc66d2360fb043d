//! `polyfaas export` and `polyfaas import`: a single node's functions, with all
//! their versions, moved into a cluster's PostgreSQL store and back, through the
//! CLI against real servers; and archives an attacker wrote.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::attack::script_bundle;
use common::postgres::Postgres;
use common::{Server, wait_until, wasm_bundle, zip};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn polyfaas(server: &Server, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(common::bin_dir().join("polyfaas"));
    command.args(args).env("POLYFAAS_URL", format!("http://{}", server.addr));
    if let Some(token) = &server.token {
        command.env("POLYFAAS_TOKEN", token);
    }
    let out = command.output().expect("running polyfaas");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A JS function answering `{"v": <tag>}`.
fn tagged(tag: u32) -> Vec<u8> {
    script_bundle("js", "handler.js", &format!("function handler(ctx) {{ return {{ v: {tag} }}; }}\nhandler\n"))
}

fn python() -> Vec<u8> {
    script_bundle("python", "handler.py", "def handler(ctx):\n    ctx.json({'lang': 'python'})\n")
}

fn tag_of(server: &Server, name: &str) -> Option<u64> {
    let r = server.invoke(name, &json!({}));
    (r.status == 200).then(|| r.json()["v"].as_u64()).flatten()
}

fn described(server: &Server, name: &str) -> (u64, Vec<(u64, u64)>) {
    let d = server.manage("GET", &format!("/api/v1/functions/{name}"), &[], b"").json();
    let versions = d["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("{d}"))
        .iter()
        .map(|v| (v["version"].as_u64().unwrap_or(0), v["createdUnix"].as_u64().unwrap_or(0)))
        .collect();
    (d["version"].as_u64().unwrap_or(0), versions)
}

fn manifest(archive: &Path) -> Value {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(archive).expect("archive")).expect("a zip");
    let mut text = String::new();
    zip.by_name("polyfaas-export.json").expect("manifest").read_to_string(&mut text).expect("read");
    serde_json::from_str(&text).expect("JSON")
}

fn function<'a>(manifest: &'a Value, name: &str) -> &'a Value {
    manifest["functions"].as_array().and_then(|f| f.iter().find(|f| f["name"] == name)).expect("listed")
}

#[test]
fn a_single_nodes_functions_move_into_a_cluster_and_back_with_their_versions() {
    let single = Server::start(&[]);
    for tag in 1..=3 {
        assert_eq!(single.deploy("greet", &tagged(tag)).status, 201);
    }
    assert_eq!(single.manage("POST", "/api/v1/functions/greet/rollback?version=2", &[], b"").status, 200);
    assert_eq!(single.deploy("hw", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(single.deploy("py", &python()).status, 201);
    let hw_answer = single.call("POST", "/fn/hw", &[], b"").text();

    let work = tempfile::tempdir().expect("tmp");
    let archive = work.path().join("single.zip");
    let (ok, out) = polyfaas(&single, &["export", archive.to_str().expect("utf-8")]);
    assert!(ok && out.starts_with("exported to "), "{out}");
    let first = manifest(&archive);
    assert_eq!(first["format"], 1);
    let greet = function(&first, "greet");
    assert_eq!(greet["current"], 2, "{first}");
    assert_eq!(greet["versions"].as_array().map(Vec::len), Some(3));
    // A local store keeps no upload: its versions are packed again, the same way every time.
    let again = work.path().join("again.zip");
    assert!(polyfaas(&single, &["export", again.to_str().expect("utf-8")]).0);
    assert_eq!(function(&manifest(&again), "greet")["versions"], greet["versions"]);
    assert!(!work.path().join("single.partial").exists());

    // Into a cluster: one node imports, every node serves.
    let pg = Postgres::start();
    let a = Server::start(&["--store", &pg.url()]);
    let b = Server::start(&["--store", &pg.url()]);
    let (ok, out) = polyfaas(&a, &["import", archive.to_str().expect("utf-8")]);
    assert!(ok, "{out}");
    assert!(out.contains("imported greet (v1, v2, v3; current v2)"), "{out}");
    assert_eq!(tag_of(&a, "greet"), Some(2), "the version current before is current after");
    assert_eq!(described(&a, "greet"), described(&single, "greet"), "numbers and creation times kept");
    assert_eq!(a.call("POST", "/fn/hw", &[], b"").text(), hw_answer);
    assert_eq!(a.invoke("py", &json!({})).json()["lang"], "python");
    assert!(wait_until(Duration::from_secs(20), || tag_of(&b, "greet") == Some(2)), "B never served the import");
    assert!(wait_until(Duration::from_secs(20), || b.call("POST", "/fn/hw", &[], b"").text() == hw_answer));
    assert_eq!(
        pg.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM versions WHERE name = 'greet'"),
        "1,2,3"
    );

    // Numbering goes on after the imported versions.
    let v4 = tagged(4);
    let r = a.deploy("greet", &v4);
    assert_eq!((r.status, r.json()["version"].as_u64()), (201, Some(4)), "{}", r.text());
    // Importing again changes nothing: what the store has is never overwritten.
    let (ok, out) = polyfaas(&a, &["import", archive.to_str().expect("utf-8")]);
    assert!(ok && out.contains("skipped greet: exists"), "{out}");
    assert_eq!(tag_of(&a, "greet"), Some(4));

    // And out of the cluster: the shared store exports each upload byte for byte.
    // A node exports what it has followed, so B first serves the deploy made on A.
    assert!(wait_until(Duration::from_secs(20), || tag_of(&b, "greet") == Some(4)), "B never served v4");
    let from_cluster = work.path().join("cluster.zip");
    assert!(polyfaas(&b, &["export", from_cluster.to_str().expect("utf-8")]).0);
    let exported = manifest(&from_cluster);
    let v4_entry = function(&exported, "greet")["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["version"] == 4).cloned())
        .expect("v4 exported");
    assert_eq!(v4_entry["sha256"], hex::encode(Sha256::digest(&v4)));
    let fresh = Server::start(&[]);
    let (ok, out) = polyfaas(&fresh, &["import", from_cluster.to_str().expect("utf-8")]);
    assert!(ok, "{out}");
    assert_eq!(tag_of(&fresh, "greet"), Some(4));
    assert_eq!(described(&fresh, "greet").1.iter().map(|v| v.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(fresh.call("POST", "/fn/hw", &[], b"").text(), hw_answer);
}

/// An archive with `manifest` and the given entries, as an attacker would write it.
fn archive(manifest: &Value, entries: &[(&str, &[u8])]) -> Vec<u8> {
    let text = manifest.to_string();
    let mut all: Vec<(&str, &[u8])> = vec![("polyfaas-export.json", text.as_bytes())];
    all.extend_from_slice(entries);
    zip(&all)
}

fn version(n: u64, bytes: &[u8]) -> Value {
    json!({"version": n, "sha256": hex::encode(Sha256::digest(bytes)), "size": bytes.len(), "language": "js", "createdUnix": 1})
}

fn import(server: &Server, body: &[u8]) -> (u16, Value) {
    let r = server.manage("POST", "/api/v1/import", &[("content-type", "application/zip")], body);
    let value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{} not JSON: {}", r.status, r.text()));
    (r.status, value)
}

#[test]
fn hostile_archives_are_refused_and_import_nothing_they_should_not() {
    let server = Server::start(&["--admin-token", "s3cret-token"]);
    let good = tagged(1);
    let names = || -> Vec<String> {
        let list = server.manage("GET", "/api/v1/functions", &[], b"").json();
        list["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str().map(String::from))
            .collect()
    };

    let r = server.call("POST", "/api/v1/import", &[("content-type", "application/zip")], b"PK");
    assert_eq!(r.status, 401, "importing is management: {}", r.text());

    let refused_whole = [
        ("not a zip", b"not a zip at all".to_vec(), "invalid_archive"),
        ("no manifest", zip(&[("x.txt", b"x")]), "invalid_archive"),
        ("another format", archive(&json!({"format": 99, "whatever": true}), &[]), "unsupported_format"),
        (
            "a path for a name",
            archive(
                &json!({"format": 1, "exportedUnix": 0, "functions": [{"name": "../escape", "current": 1, "versions": [version(1, &good)]}]}),
                &[("functions/../escape/1.zip", &good)],
            ),
            "invalid_archive",
        ),
        (
            "a current version it does not hold",
            archive(
                &json!({"format": 1, "exportedUnix": 0, "functions": [{"name": "f", "current": 7, "versions": [version(1, &good)]}]}),
                &[("functions/f/1.zip", &good)],
            ),
            "invalid_archive",
        ),
        (
            "one function twice",
            archive(
                &json!({"format": 1, "exportedUnix": 0, "functions": [
                    {"name": "f", "current": 1, "versions": [version(1, &good)]},
                    {"name": "f", "current": 1, "versions": [version(1, &good)]}]}),
                &[("functions/f/1.zip", &good)],
            ),
            "invalid_archive",
        ),
    ];
    for (what, body, code) in refused_whole {
        let (status, answer) = import(&server, &body);
        assert_eq!((status, answer["code"].as_str()), (400, Some(code)), "{what}: {answer}");
    }
    assert!(names().is_empty(), "nothing was imported: {:?}", names());

    // Per function: a bundle that is not what the manifest says, a bundle that
    // does not load, and a good function beside them.
    let broken = script_bundle("js", "handler.js", "function handler( {\n");
    let swapped = tagged(666);
    let manifest = json!({"format": 1, "exportedUnix": 0, "functions": [
        {"name": "tampered", "current": 1, "versions": [version(1, &good)]},
        {"name": "half", "current": 2, "versions": [version(1, &good), version(2, &broken)]},
        {"name": "fine", "current": 1, "versions": [version(1, &good)]},
    ]});
    let body = archive(
        &manifest,
        &[
            ("functions/tampered/1.zip", &swapped),
            ("functions/half/1.zip", &good),
            ("functions/half/2.zip", &broken),
            ("functions/fine/1.zip", &good),
        ],
    );
    let (status, answer) = import(&server, &body);
    assert_eq!((status, answer["code"].as_str()), (422, Some("import_incomplete")), "{answer}");
    let failed = answer["failed"].as_array().expect("failed");
    let failure = |name: &str| failed.iter().find(|f| f["name"] == name).cloned().unwrap_or(Value::Null);
    assert_eq!(failure("tampered")["code"], "invalid_archive", "{answer}");
    assert_eq!(failure("half")["code"], "invalid_handler", "{answer}");
    assert_eq!(failure("half")["importedVersions"], json!([1]), "{answer}");
    assert_eq!(answer["imported"].as_array().map(|i| i.len()), Some(1), "{answer}");
    let mut got = names();
    got.sort();
    assert_eq!(got, ["fine", "half"], "a tampered bundle is never stored");
    let r = server.invoke("tampered", &json!({}));
    assert_eq!(r.status, 404);
    assert_eq!(server.invoke("fine", &json!({})).json()["v"], 1);

    // A bundle entry far larger than the manifest says is read no further than that.
    let bomb = vec![0u8; 50 << 20];
    let manifest = json!({"format": 1, "exportedUnix": 0, "functions": [
        {"name": "bomb", "current": 1, "versions": [version(1, &good)]}]});
    let (status, answer) = import(&server, &archive(&manifest, &[("functions/bomb/1.zip", &bomb)]));
    assert_eq!(status, 422, "{answer}");
    assert!(!names().contains(&"bomb".to_string()));
    assert_eq!(server.get("/healthz").status, 200);
}
