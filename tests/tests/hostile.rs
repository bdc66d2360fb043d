//! Hostile handlers cannot hurt the server, the machine or each other.
//!
//! One testkit bundle per language tries, through its actions, everything the
//! sandbox must refuse; meanwhile another client invokes a well-behaved function in
//! a loop, and not one of its requests may fail.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, dir_bundle_with, process_exists, wasm_bundle};
use serde_json::{Value, json};

const LANGUAGES: [&str; 4] = ["wasm", "js", "python", "ruby"];

fn hostile_bundle(lang: &str) -> Vec<u8> {
    let entry = match lang {
        "wasm" => "testkit-wasm.wasm",
        "js" => "handler.js",
        "python" => "handler.py",
        _ => "handler.rb",
    };
    let metadata = format!(
        r#"{{"language":"{lang}","entrypointFile":"{entry}","timeoutMs":1000,"memoryMb":128,"env":{{"OWN_SECRET":"mine"}}}}"#
    );
    match lang {
        "wasm" => wasm_bundle("testkit-wasm", Some(&metadata)),
        _ => dir_bundle_with(&format!("testkit-{lang}"), Some(&metadata)),
    }
}

/// CPU time (user + system) a process has used, in ms; None once it is gone.
fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1000 / hz)
}

fn code(r: &common::Reply) -> Option<String> {
    serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v["code"].as_str().map(str::to_string))
}

/// Runs one attack; it must come back as refused (`ok: false`).
fn refused(server: &Server, name: &str, lang: &str, attack: Value) {
    let r = server.invoke(name, &attack);
    assert_eq!(r.status, 200, "{lang} {attack}: {}", r.text());
    let out = r.json();
    assert_eq!(out["ok"], false, "{lang}: {attack} was NOT refused: {out}");
}

#[test]
fn hostile_handlers_cannot_hurt_the_server_the_machine_or_each_other() {
    let server = Server::start(&["--max-output-bytes", "1000000"]);
    let server_pid = server.pid();
    let port: u16 = server.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    assert_eq!(server.deploy("bystander", &wasm_bundle("hello-wasm", None)).status, 201);
    assert_eq!(server.deploy("victim", &wasm_bundle("hello-wasm", None)).status, 201);

    // A well-behaved client, throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let bystander = {
        let (stop, served, failed, url) = (stop.clone(), served.clone(), failed.clone(), server.url("/fn/bystander"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = common::call(&url, "POST", &[], br#"{"name":"calm"}"#);
                if r.status == 200 { &served } else { &failed }.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    eprintln!("bystander failed: {} {}", r.status, r.text());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let victim_bundle = server.data_dir.join("functions/victim/1/metadata.json");
    let victim_index = server.data_dir.join("functions/victim/index.json");
    let canary = std::env::temp_dir().join(format!("polyfaas-hostile-{}", std::process::id()));
    for lang in LANGUAGES {
        let name = format!("hostile-{lang}");
        let r = server.deploy(&name, &hostile_bundle(lang));
        assert_eq!(r.status, 201, "{lang}: {}", r.text());

        // The worker is sandboxed: seccomp filter mode, no_new_privs.
        let pid = server.invoke(&name, &json!({"action": "plain"})).worker_pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("worker status");
        assert!(status.lines().any(|l| l.split_whitespace().eq(["Seccomp:", "2"])), "{lang}: {status}");
        assert!(status.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{lang}: {status}");

        // 1. An infinite loop: 504 within timeout + 1 s, and the CPU comes back.
        let started = Instant::now();
        let r = server.invoke(&name, &json!({"action": "spin"}));
        assert_eq!((r.status, code(&r).as_deref()), (504, Some("timeout")), "{lang}: {}", r.text());
        assert!(started.elapsed() < Duration::from_millis(2000), "{lang}: took {:?}", started.elapsed());
        // ...and the looping code stopped: its worker is gone (killed) or idle.
        let busy_ms = cpu_ms(pid).map(|before| {
            std::thread::sleep(Duration::from_millis(300));
            cpu_ms(pid).unwrap_or(before) - before
        });
        assert!(busy_ms.is_none_or(|ms| ms < 100), "{lang}: worker {pid} still burns CPU ({busy_ms:?} ms in 300 ms)");

        // 2. A memory bomb: stopped at the function's limit, the worker replaced if it died.
        let r = server.invoke(&name, &json!({"action": "alloc", "mb": 4096}));
        assert_eq!(r.status, 502, "{lang}: {}", r.text());
        assert!(
            matches!(code(&r).as_deref(), Some("memory_limit" | "worker_crashed" | "handler_error")),
            "{lang}: {}",
            r.text()
        );

        // 3. Deep recursion: a clean error, no hung worker.
        let r = server.invoke(&name, &json!({"action": "recurse"}));
        assert_eq!(r.status, 502, "{lang}: {}", r.text());
        assert_eq!(
            server.invoke(&name, &json!({"action": "plain", "n": 3})).status,
            200,
            "{lang}: serves after recursion"
        );

        // 4. Reading outside its own bundle.
        refused(&server, &name, lang, json!({"action": "readFile", "path": "/etc/passwd"}));
        refused(&server, &name, lang, json!({"action": "readFile", "path": victim_bundle}));
        refused(&server, &name, lang, json!({"action": "readFile", "path": victim_index}));
        // ...also by climbing out of its own bundle: from its working directory
        // (the bundle), and through the descriptor it was handed the bundle as
        // (it reaches its bundle as /proc/self/fd/N/...). Landlock's rule is on
        // that descriptor, and `..` leads out of what it covers.
        refused(&server, &name, lang, json!({"action": "readFile", "path": "../../victim/1/metadata.json"}));
        for fd in 3..12 {
            for rest in ["../../victim/1/metadata.json", "../../victim/index.json", "victim/1/metadata.json"] {
                let through_fd = format!("/proc/self/fd/{fd}/{rest}");
                refused(&server, &name, lang, json!({"action": "readFile", "path": through_fd}));
            }
        }

        // 5. Writing anywhere.
        refused(&server, &name, lang, json!({"action": "writeFile", "path": canary}));
        assert!(!canary.exists(), "{lang}: wrote {}", canary.display());

        // 6. A TCP connection to the server's own port.
        refused(&server, &name, lang, json!({"action": "connect", "port": port}));

        // 7. New processes.
        refused(&server, &name, lang, json!({"action": "fork"}));
        refused(&server, &name, lang, json!({"action": "spawn"}));

        // 8. Signalling the supervisor.
        refused(&server, &name, lang, json!({"action": "killParent"}));
        assert!(process_exists(server_pid), "{lang}: the server survived");

        // 9. 100 MB of output: capped, 502 response_too_large, memory bounded.
        let r = server.invoke(&name, &json!({"action": "flood", "bytes": 100 << 20}));
        assert_eq!(
            (r.status, code(&r).as_deref()),
            (502, Some("response_too_large")),
            "{lang}: {}",
            &r.text()[..r.text().len().min(300)]
        );

        // 10. The environment: the function's own, nothing of the server's.
        let r = server.invoke(&name, &json!({"action": "env"}));
        assert_eq!(r.status, 200, "{lang}: {}", r.text());
        let out = r.json();
        let env = if lang == "wasm" { out.clone() } else { out["result"].clone() };
        let env = env.as_object().cloned().unwrap_or_default();
        for key in env.keys() {
            // Python's HOME is a fixed, documented value (README, Python), not the server's.
            let fixed_home = lang == "python" && key == "HOME" && env[key] == "/nonexistent";
            let allowed = key == "OWN_SECRET"
                || fixed_home
                || (lang == "wasm"
                    && (key.starts_with("HTTP_") || key.chars().all(|c| c.is_ascii_uppercase() || c == '_')));
            assert!(allowed && !key.starts_with("POLYFAAS"), "{lang}: leaked {key}: {out}");
        }
        if lang != "js" {
            assert_eq!(env.get("OWN_SECRET"), Some(&json!("mine")), "{lang}: its own env: {out}");
        }

        assert_eq!(server.invoke(&name, &json!({"action": "plain", "n": 1})).status, 200, "{lang}: still serves");
    }

    stop.store(true, Ordering::Relaxed);
    bystander.join().expect("bystander");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request of the well-behaved function failed");
    assert!(served.load(Ordering::Relaxed) > 20, "the bystander ran throughout");
    assert!(process_exists(server_pid), "the server's pid never changed");
    assert_eq!(server.get("/healthz").status, 200);
}
