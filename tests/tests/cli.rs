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
        assert!(out.contains(&format!("deployed {name} v1 (")), "deploy {name}: {out}");
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
    assert!(ok && deployed.iter().all(|n| out.lines().any(|l| l.starts_with(&format!("{n} ")))), "{out}");
    let (ok, out) = polyfaas(&server, &["logs", "hello-python"]);
    assert!(ok && out.contains("hello-python: greeting"), "{out}");

    let (ok, _) =
        polyfaas(&server, &["deploy", bundles.join("hello-js").to_str().expect("utf-8"), "--name", "hello-js"]);
    assert!(ok);
    let (ok, out) = polyfaas(&server, &["rollback", "hello-js"]);
    assert!(ok && out.starts_with("rolled back to hello-js v1 (js, "), "{out}");
    let (ok, out) = polyfaas(&server, &["invoke", "nope"]);
    assert!(!ok && out.contains("not_found"), "{out}");
}

/// Runs the CLI with `env`; returns (success, stdout, stderr).
fn run_cli(server: &Server, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(common::bin_dir().join("polyfaas"))
        .args(args)
        .env("POLYFAAS_URL", format!("http://{}", server.addr))
        .env_remove("POLYFAAS_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("running polyfaas");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Makes output comparable: the server's address, dates, times, durations,
/// sizes and sha256 prefixes become placeholders, runs of spaces one space
/// (table column widths follow the values), indentation stays.
fn normalise(text: &str, server: &Server) -> String {
    let text = text.replace(&server.addr, "<addr>");
    let is = |w: &str, len: usize, sep: u8, at: &[usize]| {
        w.len() == len
            && w.bytes().enumerate().all(|(i, b)| if at.contains(&i) { b == sep } else { b.is_ascii_digit() })
    };
    let mut out = String::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut mapped: Vec<String> = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let (w, next) = (words[i], words.get(i + 1).copied().unwrap_or(""));
            i += 1;
            let unit = next.trim_end_matches(',');
            mapped.push(if is(w, 10, b'-', &[4, 7]) {
                "<date>".into()
            } else if is(w, 8, b':', &[2, 5]) {
                "<time>".into()
            } else if w.parse::<f64>().is_ok() && ["B", "kB", "MB"].contains(&unit) {
                i += 1;
                format!("<size>{}", &next[unit.len()..])
            } else if w.parse::<f64>().is_ok() && next == "ms" {
                "<n>".into()
            } else if let Some(hex) = w.strip_suffix("…)").filter(|h| h.len() == 8) {
                assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{w}");
                "<sha>…)".into()
            } else {
                w.to_string()
            });
        }
        out.push_str(&" ".repeat(indent));
        out.push_str(&mapped.join(" "));
        out.push('\n');
    }
    out
}

fn deploy_known(server: &Server) {
    let bundles = common::repo_root().join("bundles");
    for (folder, name) in [("hello-python", "greeter"), ("testkit-js", "kit")] {
        let path = bundles.join(folder);
        let (ok, out, err) = run_cli(server, &["deploy", path.to_str().expect("utf-8"), "--name", name], &[]);
        assert!(ok, "{out}{err}");
    }
    let r = server.call("POST", "/fn/greeter", &[("x-request-id", "golden-1"), ("x-greeting", "hi")], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = br#"{"action":"log","text":"line one\nline two"}"#;
    assert_eq!(server.call("POST", "/fn/kit", &[("x-request-id", "golden-2")], body).status, 200);
    assert_eq!(server.call("POST", "/fn/kit", &[("x-request-id", "golden-3")], br#"{"action":"plain"}"#).status, 200);
}

#[test]
fn golden_output_of_deploy_list_logs_and_status() {
    let server = Server::start(&[]);
    let path = common::repo_root().join("bundles/hello-js");
    let (ok, out, _) = run_cli(&server, &["deploy", path.to_str().expect("utf-8"), "--name", "hello"], &[]);
    assert!(ok);
    assert_eq!(normalise(&out, &server), "deployed hello v1 (js, <size>, sha256 <sha>…) in <n> ms\n");
    let (ok, _, _) = run_cli(&server, &["delete", "hello"], &[]);
    assert!(ok);
    deploy_known(&server);

    let (ok, out, _) = run_cli(&server, &["list"], &[]);
    assert!(ok);
    let expected = "\
NAME LANGUAGE VERSION SIZE CREATED (UTC)
greeter python v1 <size> <date> <time>
kit js v1 <size> <date> <time>
";
    assert_eq!(normalise(&out, &server), expected, "raw:\n{out}");

    let (ok, out, _) = run_cli(&server, &["logs", "kit"], &[]);
    assert!(ok);
    let expected = "\
<date> <time> golden-2 v1 200 ok <n> ms
    line one
    line two

<date> <time> golden-3 v1 200 ok <n> ms
    (no output)
";
    assert_eq!(normalise(&out, &server), expected, "raw:\n{out}");

    let (ok, out, _) = run_cli(&server, &["logs", "greeter"], &[]);
    assert!(ok);
    assert_eq!(normalise(&out, &server), "<date> <time> golden-1 v1 200 ok <n> ms\n    hello-python: greeting hi\n");

    let (ok, out, _) = run_cli(&server, &["status"], &[]);
    assert!(ok);
    let expected = "\
server http://<addr>
health ok
readiness ready
workers (pass --token to see them)
functions 2
  NAME LANGUAGE VERSION
  greeter python v1
  kit js v1
";
    assert_eq!(normalise(&out, &server), expected, "raw:\n{out}");

    let (ok, out, err) = run_cli(&server, &["logs", "nope"], &[]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("error: function nope not found (not_found, HTTP 404)"), "{err}");
}

#[test]
fn json_output_is_the_servers_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[("POLYFAAS_ADMIN_TOKEN", "cli-token")]);
    let token = [("POLYFAAS_TOKEN", "cli-token")];
    let path = common::repo_root().join("bundles/testkit-js");
    let (ok, out, _) = run_cli(&server, &["--json", "deploy", path.to_str().expect("utf-8"), "--name", "kit"], &token);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!((v["name"].as_str(), v["version"].as_u64(), v["language"].as_str()), (Some("kit"), Some(1), Some("js")));
    assert!(v["sha256"].as_str().is_some_and(|s| s.len() == 64));
    assert_eq!(server.call("POST", "/fn/kit", &[], br#"{"action":"log","text":"hi"}"#).status, 200);

    let (ok, out, _) = run_cli(&server, &["list", "-o", "json"], &token);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["functions"][0]["name"], "kit");
    assert!(v["functions"][0]["createdUnix"].is_u64() && v["functions"][0]["size"].is_u64());

    let (ok, out, _) = run_cli(&server, &["logs", "kit", "--json"], &token);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let e = &v["logs"][0];
    assert!(v["cursor"].is_string(), "{v}");
    assert!(e["seq"].is_u64() && e["requestId"].is_string() && e["durationMs"].is_f64(), "{e}");
    assert_eq!((e["status"].as_u64(), e["version"].as_u64(), e["text"].as_str()), (Some(200), Some(1), Some("hi\n")));

    let (ok, out, _) = run_cli(&server, &["status", "--json"], &token);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["health"]["status"], "ok");
    assert!(v["workers"].as_array().is_some_and(|w| !w.is_empty()), "with the token, workers are listed: {v}");
    assert_eq!(v["functions"][0]["name"], "kit");

    let (ok, out, _) = run_cli(&server, &["status"], &[("POLYFAAS_TOKEN", "cli-token")]);
    assert!(ok && out.contains("STATE") && out.contains("LANGUAGE") && out.contains("WORKERS"), "{out}");

    // Errors stay JSON for scripts too, and exit 1.
    let (ok, out, _) = run_cli(&server, &["--json", "rollback", "kit"], &token);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["code"], "not_found");
}

#[test]
fn the_cli_sends_the_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[("POLYFAAS_ADMIN_TOKEN", "cli-token")]);
    let (ok, _, err) = run_cli(&server, &["list"], &[]);
    assert!(!ok && err.contains("unauthorized"), "{err}");
    let (ok, _, err) = run_cli(&server, &["list", "--token", "wrong"], &[]);
    assert!(!ok && err.contains("forbidden"), "{err}");
    let (ok, out, _) = run_cli(&server, &["list", "--token", "cli-token"], &[]);
    assert!(ok && out.contains("no functions deployed"), "{out}");
    let (ok, _, _) = run_cli(&server, &["list"], &[("POLYFAAS_TOKEN", "cli-token")]);
    assert!(ok);
}

#[test]
fn logs_follow_prints_an_invocation_that_happens_after_it_started() {
    use std::io::BufRead;
    let server = Server::start(&[]);
    let path = common::repo_root().join("bundles/testkit-js");
    assert!(run_cli(&server, &["deploy", path.to_str().expect("utf-8"), "--name", "kit"], &[]).0);
    assert_eq!(server.call("POST", "/fn/kit", &[], br#"{"action":"log","text":"before-follow"}"#).status, 200);

    let mut child = Command::new(common::bin_dir().join("polyfaas"))
        .args(["logs", "kit", "-f"])
        .env("POLYFAAS_URL", format!("http://{}", server.addr))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("polyfaas logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    assert!(wait_for("before-follow"), "the recent entries come first");
    let r =
        server.call("POST", "/fn/kit", &[("x-request-id", "after-start")], br#"{"action":"log","text":"followed"}"#);
    assert_eq!(r.status, 200);
    assert!(wait_for("after-start"), "the new invocation's header is printed");
    assert!(wait_for("followed"), "and its text");
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn shell_completions_are_generated() {
    let server = Server::start(&[]);
    for (shell, marker) in [("bash", "_polyfaas()"), ("zsh", "#compdef polyfaas"), ("fish", "complete -c polyfaas")] {
        let (ok, out, err) = run_cli(&server, &["completions", shell], &[]);
        assert!(ok, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: {}", &out[..out.len().min(300)]);
        assert!(out.contains("deploy") && out.contains("logs"), "{shell} completes the subcommands");
    }
}
