//! The README is run, not only read: its walkthrough (the ```` ```sh walkthrough ````
//! block) is executed as written against a server this test starts, and every
//! `# → …` line under a command is checked against what the command printed.
//! Only two things are substituted: the server's address for
//! `http://127.0.0.1:8080`, and a temp folder for `/tmp/`. And every repository
//! path the README names in backticks must exist (or be one that `.gitignore`
//! lists, which a script makes).

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;
use serde_json::Value;

fn readme() -> String {
    std::fs::read_to_string(common::repo_root().join("README.md")).expect("README.md")
}

/// The lines of the fenced block whose info string is `info`.
fn block(text: &str, info: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("```{info}")).skip(1);
    let block: Vec<String> = lines.by_ref().take_while(|l| l.trim() != "```").map(str::to_string).collect();
    assert!(!block.is_empty(), "README.md has no ```{info} block");
    block
}

/// A placeholder of the README's expected outputs: `…` stands for any value,
/// `{…}` for any object, a trailing `,…` for more keys.
const ANY: &str = "\u{0}any";
const MORE: &str = "\u{0}more";

fn expected_json(text: &str) -> Value {
    let text = text.trim();
    // `201 {…}`: the status is for the reader; curl prints only the body.
    let text = match text.split_once(' ') {
        Some((status, rest)) if status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => text,
    };
    let text = text
        .replace("{…}", &format!("\"{ANY}\""))
        .replace("\"…\"", &format!("\"{ANY}\""))
        .replace(",…}", &format!(",\"{MORE}\":true}}"))
        .replace(":…", &format!(":\"{ANY}\""));
    let text = text.replace('\u{0}', "\\u0000");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("README expectation is not JSON ({e}): {text}"))
}

fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(s), _) if s == ANY => true,
        (Value::Object(e), Value::Object(a)) => {
            let more = e.contains_key(MORE);
            e.iter().filter(|(k, _)| *k != MORE).all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av)))
                && (more || a.keys().all(|k| e.contains_key(k)))
        }
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a)),
        _ => expected == actual,
    }
}

#[test]
fn the_walkthrough_runs_as_written() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().expect("temp dir");
    let outputs = tmp.path().join("outputs");
    std::fs::create_dir(&outputs).expect("mkdir");
    let tmp_prefix = format!("{}/", tmp.path().display());
    let url = format!("http://{}", server.addr);

    // The block as commands (a line and its `\` continuations) and the `# → `
    // line under some of them; comments and blank lines drop out.
    let mut commands: Vec<(String, Option<Value>)> = Vec::new();
    let mut continued = false;
    for line in block(&readme(), "sh walkthrough") {
        let line = line.replace("http://127.0.0.1:8080", &url).replace("/tmp/", &tmp_prefix);
        let trimmed = line.trim_start();
        if continued {
            let last = commands.last_mut().expect("a continued command");
            last.0.push('\n');
            last.0.push_str(&line);
        } else if let Some(expected) = trimmed.strip_prefix("# → ") {
            let last = commands.last_mut().expect("a `# → ` line follows a command");
            last.1 = Some(expected_json(expected));
        } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
            commands.push((line.clone(), None));
        }
        continued = line.ends_with('\\');
    }
    // One script: a command with an expectation writes its output to a file of
    // its own, compared afterwards.
    let mut script = String::from("set -euo pipefail\n");
    let mut expectations = Vec::new();
    for (command, expected) in commands {
        match expected {
            Some(expected) => {
                let file = outputs.join(expectations.len().to_string());
                script.push_str(&format!("{command} > '{}'\n", file.display()));
                expectations.push((command, expected, file));
            }
            None => {
                script.push_str(&command);
                script.push('\n');
            }
        }
    }

    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(common::repo_root())
        .env("CARGO_TARGET_DIR", common::target_dir())
        // The bundles are built as scripts/test builds them, so nothing is rebuilt.
        .env("RUSTC_WORKSPACE_WRAPPER", "")
        .output()
        .expect("bash");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the walkthrough failed:\n{script}\n---\n{said}");
    assert!(expectations.len() >= 4, "{script}");
    for (command, expected, file) in expectations {
        let text = std::fs::read_to_string(&file).expect("output");
        let actual: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{command}\nprinted no JSON ({e}): {text}"));
        assert!(matches(&expected, &actual), "{command}\nprinted {actual}\nthe README says {expected}");
    }
}

/// Whether `path` is under what `.gitignore` lists (`/runtimes`, `/bench/.venv`):
/// made by a script (`scripts/setup`, `bench/run`), not kept in the repository.
fn generated(path: &str) -> bool {
    let ignore = std::fs::read_to_string(common::repo_root().join(".gitignore")).expect(".gitignore");
    ignore.lines().filter_map(|l| l.trim().strip_prefix('/')).any(|p| path == p || path.starts_with(&format!("{p}/")))
}

#[test]
fn every_path_the_readme_names_exists() {
    let root = common::repo_root();
    let tops =
        ["bench/", "bundles/", "deploy/", "protocol/", "runtimes/", "scripts/", "supervisor/", "tests/", "worker/"];
    let mut checked = 0;
    for (i, span) in readme().split('`').enumerate() {
        // Odd pieces are inside backticks.
        if i % 2 == 0 || !tops.iter().any(|t| span.starts_with(t)) || span.contains(' ') {
            continue;
        }
        // `tests/tests/attacks_*.rs`: a glob names at least one file.
        let path = span.trim_end_matches('/');
        let exists = match path.split_once('*') {
            Some((before, after)) => {
                let (dir, prefix) = before.rsplit_once('/').expect("a folder");
                std::fs::read_dir(root.join(dir)).expect("folder").flatten().any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(prefix) && n.ends_with(after)
                })
            }
            None => Path::new(&root.join(path)).exists(),
        };
        assert!(exists || generated(path), "README.md names {span}, which the repository does not contain");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} paths found");
}
