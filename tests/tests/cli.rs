//! The client commands of the `polyfaas` binary, against a real server.

mod common;

use std::process::Command;

use common::Server;

fn polyfaas(server: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::bin_dir().join("polyfaas"))
        .args(args)
        .env("POLYFAAS_URL", format!("http://{}", server.addr))
        .output()
        .expect("running polyfaas");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_cli_deploys_every_bundle_folder_and_invokes_it() {
    let server = Server::start(&[]);
    let bundles = common::repo_root().join("bundles");
    let wasm_dir = common::target_dir().join("wasm32-wasip1/release");
    let staging = tempfile::tempdir().expect("temp dir");
    let mut deployed = Vec::new();
    for entry in std::fs::read_dir(&bundles).expect("bundles/").flatten() {
        let folder = entry.path();
        let Ok(metadata) = std::fs::read_to_string(folder.join("metadata.json")) else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta: serde_json::Value = serde_json::from_str(&metadata).expect("metadata");
        // A wasm folder holds sources; stage its metadata, its built module, and
        // something .polyfaasignore must keep out.
        let path = if meta["language"] == "wasm" {
            let dir = staging.path().join(&name);
            std::fs::create_dir_all(dir.join("target")).expect("mkdir");
            let module = meta["entrypointFile"].as_str().expect("entrypoint");
            std::fs::copy(folder.join("metadata.json"), dir.join("metadata.json")).expect("copy");
            std::fs::copy(wasm_dir.join(module), dir.join(module)).expect("copy module");
            std::fs::write(dir.join("target/huge.bin"), vec![7u8; 100_000_000 / 100]).expect("junk");
            std::fs::write(dir.join("notes.log"), "junk").expect("junk");
            std::fs::write(dir.join(".polyfaasignore"), "# build output\ntarget/\n*.log\n").expect("ignore");
            dir
        } else {
            folder
        };
        let (ok, out) = polyfaas(&server, &["deploy", path.to_str().expect("utf-8"), "--name", &name]);
        assert!(ok, "deploy {name}: {out}");
        assert!(out.contains("\"version\":1"), "deploy {name}: {out}");
        let (ok, out) = polyfaas(&server, &["invoke", &name, "--data", r#"{"name":"Cli","action":"plain","n":1}"#]);
        assert!(ok, "invoke {name}: {out}");
        deployed.push(name);
    }
    assert!(deployed.len() >= 9, "{deployed:?}");
    let described = server.get("/api/v1/functions/hello-wasm").json();
    assert!(described["size"].as_u64().unwrap_or(u64::MAX) < 1_000_000, "ignored files left out: {described}");

    let (ok, out) = polyfaas(&server, &["invoke", "hello-js", "--data", r#"{"x":1}"#]);
    assert!(ok && out.contains("Hello from hello-js"), "{out}");
    let (ok, out) = polyfaas(&server, &["list"]);
    assert!(ok && deployed.iter().all(|n| out.contains(&format!("\"name\":\"{n}\""))), "{out}");
    let (ok, out) = polyfaas(&server, &["logs", "hello-python"]);
    assert!(ok && out.contains("hello-python: greeting"), "{out}");

    let (ok, _) =
        polyfaas(&server, &["deploy", bundles.join("hello-js").to_str().expect("utf-8"), "--name", "hello-js"]);
    assert!(ok);
    let (ok, out) = polyfaas(&server, &["rollback", "hello-js"]);
    assert!(ok && out.contains("\"version\":1"), "{out}");
    let (ok, out) = polyfaas(&server, &["invoke", "nope"]);
    assert!(!ok && out.contains("not_found"), "{out}");
}
