//! What a worker holds and where it stands, read from `/proc` against the real
//! binaries: its own process group in the supervisor's session; of the
//! store, only its own bundle (with the data dir closed to the workers' uid), and
//! of the supervisor's sockets, only its own, on fd 3.

mod common;

use std::path::{Path, PathBuf};

use common::{Server, wasm_bundle};
use serde_json::json;

/// As root, workers run as `nobody`, and the data dir may lie where `nobody`
/// cannot search: here inside a 0700 directory, as a clone in `/root` is, and
/// with the store's own directories closed too (the server makes them 0700). A worker is handed its bundle's
/// directory as a descriptor, so every runtime loads its bundle (and what the
/// bundle imports: a sibling module, a `vendor/` package, a required file), while
/// every directory above stays closed to the worker's uid. No worker holds a
/// path or a descriptor into the store beyond its own bundle.
#[test]
fn a_data_dir_inside_a_0700_directory_serves_every_language_as_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root drops workers to another user");
        return;
    }
    let closed = tempfile::tempdir().expect("temp dir");
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod")
    };
    chmod(closed.path(), 0o700);
    let data = closed.path().join("data");
    let server = Server::start_in(&data, &[], &[]);
    chmod(&data, 0o700);
    for dir in ["functions", "staging"] {
        let mode = std::fs::metadata(data.join(dir)).expect("stat").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o700, "the server closes {dir}/");
    }
    let vendored = common::zip(&[
        ("metadata.json", br#"{"language":"python","entrypointFile":"main.py"}"#),
        (
            "main.py",
            b"import shout\nimport os\n\ndef handler(ctx):\n    ctx.json({'msg': shout.up('hi'), 'uid': os.getuid(), 'here': sorted(os.listdir('.'))})\n",
        ),
        ("vendor/shout/__init__.py", b"def up(s):\n    return s.upper()\n"),
    ]);
    let bundles = [
        ("js", common::dir_bundle("hello-js"), "Hello from"),
        ("py", common::dir_bundle("hello-python"), "Hello from"),
        ("rb", common::dir_bundle("hello-ruby"), "Hello from"),
        ("wasm", wasm_bundle("hello-wasm", None), "\"hello\""),
        ("vendored", vendored, "HI"),
    ];
    for (name, zip, expect) in &bundles {
        let r = server.deploy(name, zip);
        assert!(r.status == 200 || r.status == 201, "deploying {name}: {} {}", r.status, r.text());
        let r = server.call("POST", &format!("/fn/{name}?name=x"), &[("content-type", "application/json")], b"{}");
        assert_eq!(r.status, 200, "invoking {name}: {}", r.text());
        assert!(r.text().contains(expect), "{name}: {}", r.text());
    }
    let r = server.call("GET", "/fn/vendored", &[], b"");
    let answer = r.json();
    assert_ne!(answer["uid"], 0, "the handler runs as root: {answer}");
    assert_eq!(answer["here"], json!(["main.py", "metadata.json", "vendor"]), "{answer}");

    // What each worker holds: of the store, its own bundle (and the precompiled
    // module in it) and the runtime cache's Ruby module, and no path at all.
    let store = data.canonicalize().expect("canonical data dir");
    for (name, _, _) in &bundles {
        let pid =
            server.call("POST", &format!("/fn/{name}"), &[("content-type", "application/json")], b"{}").worker_pid();
        let own = store.join("functions").join(name);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&*store.join("functions").to_string_lossy()),
            "{name}: the worker's command line names the store"
        );
        let mut holds_its_bundle = false;
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("worker fds").flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            holds_its_bundle |= target == own.join("1");
            if target.starts_with(&store) {
                assert!(
                    target.starts_with(&own) || target.starts_with(store.join("runtimes")),
                    "{name}: worker {pid} holds {} ({})",
                    target.display(),
                    fd.path().display()
                );
            }
            assert_ne!(target, PathBuf::from(env!("CARGO_MANIFEST_DIR")), "{name}: the server's working directory");
        }
        assert!(holds_its_bundle, "{name}: worker {pid} holds no descriptor of its bundle {}/1", own.display());
    }
    let closed_mode = std::fs::metadata(closed.path()).expect("stat").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&closed_mode) & 0o777,
        0o700,
        "the directory above was opened up"
    );
}

/// A worker's socket is made inheritable for its own start only, and starts run
/// one at a time (and a worker's first sandbox step closes any descriptor it was
/// not meant to have): however many workers start at once (the blank workers of
/// every language at start-up, then six functions' cold starts together), no
/// worker holds another worker's socket, and each has its own on fd 3, where the
/// attack tests' handlers find it.
#[test]
fn no_worker_holds_another_workers_socket() {
    let server = Server::start(&[]);
    let names: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let languages = ["hello-js", "hello-python", "hello-ruby"];
    for (i, name) in names.iter().enumerate() {
        let r = server.deploy(name, &common::dir_bundle(languages[i % languages.len()]));
        assert_eq!(r.status, 201, "deploying {name}: {}", r.text());
    }
    std::thread::scope(|scope| {
        for name in &names {
            let server = &server;
            scope.spawn(move || {
                let r =
                    server.call("POST", &format!("/fn/{name}?name=x"), &[("content-type", "application/json")], b"{}");
                assert_eq!(r.status, 200, "invoking {name}: {}", r.text());
            });
        }
    });
    let socket_of = |path: &Path| {
        let target = std::fs::read_link(path).ok()?;
        let text = target.to_string_lossy();
        text.strip_prefix("socket:[").and_then(|rest| rest.strip_suffix(']')).map(str::to_string)
    };
    let mut holder: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut seen = 0;
    for pid in server.worker_pids() {
        // Workers are not dumpable: only root reads their descriptors.
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        seen += 1;
        assert!(socket_of(Path::new(&format!("/proc/{pid}/fd/3"))).is_some(), "worker {pid} has no socket on fd 3");
        for fd in fds.flatten() {
            let Some(inode) = socket_of(&fd.path()) else { continue };
            if let Some(other) = holder.insert(inode.clone(), pid)
                && other != pid
            {
                panic!("workers {other} and {pid} both hold socket {inode}");
            }
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert!(seen >= names.len(), "only {seen} workers could be looked at");
    }
}

/// Every worker leads a process group of its own, so a signal sent to the
/// supervisor's group (a terminal's Ctrl-C, `kill -- -PGID`) does not reach it,
/// but stays in the supervisor's session: a session of its own would make it a
/// scheduler autogroup of one, which starved workers under load (README,
/// "Isolation"). And it runs `--worker-nice` (default 5) nicer than the
/// supervisor, which a handler cannot undo. Read from `/proc/<pid>/stat`, which
/// any user may read.
#[test]
fn every_worker_leads_its_own_process_group_in_the_supervisors_session_and_is_nicer() {
    for (args, nicer) in [(&[][..], 5), (&["--worker-nice", "0"][..], 0)] {
        let server = Server::start(args);
        let lowers_its_nice = b"import os\n\ndef handler(ctx):\n    tried = []\n    for f in (lambda: os.nice(-5), lambda: os.setpriority(os.PRIO_PROCESS, 0, -20), lambda: os.setsid(), lambda: os.setpgid(0, 1)):\n        try:\n            f()\n            tried.append('done')\n        except OSError as e:\n            tried.append(e.errno)\n    ctx.json({'tried': tried})\n";
        let nice_py = common::zip(&[
            ("metadata.json", br#"{"language":"python","entrypointFile":"main.py"}"#),
            ("main.py", lowers_its_nice),
        ]);
        // The workers that served a call: past their sandbox's first steps (a
        // blank worker being started meanwhile may not be yet).
        let mut workers = Vec::new();
        for (name, zip) in
            [("w", wasm_bundle("hello-wasm", None)), ("r", common::dir_bundle("hello-ruby")), ("p", nice_py)]
        {
            let r = server.deploy(name, &zip);
            assert!(r.status == 200 || r.status == 201, "deploying {name}: {} {}", r.status, r.text());
            let r = server.call("POST", &format!("/fn/{name}"), &[("content-type", "application/json")], b"{}");
            assert_eq!(r.status, 200, "invoking {name}: {}", r.text());
            workers.push(r.worker_pid());
            if name == "p" {
                // Every one refused (EPERM), whatever the worker's uid: no lower nice
                // value, no session or process group of the handler's choosing.
                assert_eq!(r.json()["tried"], json!([1, 1, 1, 1]), "{}", r.text());
            }
        }
        // (process group, session, nice) from /proc/<pid>/stat: the fields after
        // the command, which may itself hold spaces and parentheses, are
        // "state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
        // cmajflt utime stime cutime cstime priority nice …".
        let stat = |pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
            let rest = stat.rsplit_once(')').expect("a command in parentheses").1;
            let fields: Vec<i64> = rest.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
            (fields[1], fields[2], fields[15])
        };
        let (supervisor_group, supervisor_session, supervisor_nice) = stat(server.pid());
        for pid in workers {
            let (group, session, nice) = stat(pid);
            assert_eq!(group, i64::from(pid), "worker {pid} leads its own process group");
            assert_ne!(group, supervisor_group, "worker {pid} is in the supervisor's process group");
            assert_eq!(session, supervisor_session, "worker {pid} left the supervisor's session");
            assert_eq!(nice, (supervisor_nice + nicer).min(19), "worker {pid}'s nice value ({args:?})");
        }
    }
}
