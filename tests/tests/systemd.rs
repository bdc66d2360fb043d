//! The unit file under a real systemd: `tests/systemd/boot` starts systemd as
//! PID 1 of fresh namespaces (an overlay of `/` with a tmpfs upper layer, its own
//! loopback-only network), with `deploy/polyfaas.service` installed as the
//! README says, the binaries under test in `/usr/local/bin` and the admin token
//! in `/etc/polyfaas/admin-token`. One test walks the whole life of the service.
//!
//! The unit is installed unchanged; a drop-in shortens two timings so the test
//! is quick: `WatchdogSec=3s` (a hung server is caught in seconds) and
//! `TimeoutStartSec=10s`, less than the first start's Ruby compile takes here, so
//! a start that succeeds proves `EXTEND_TIMEOUT_USEC` works (plus
//! `TimeoutAbortSec=2s`, the wait after the watchdog's SIGABRT). A last drop-in
//! narrows `SystemCallFilter=` to `@system-service` alone, on which no worker can
//! sandbox itself, to see the start fail for good.
//!
//! Root only (it mounts and makes namespaces); skipped with a message otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Reply, wait_until, wasm_bundle};

const TOKEN: &str = "systemd-test-token-5c1e";
/// Deploys are management: with a token configured they need it.
const BEARER: &str = "Bearer systemd-test-token-5c1e";
const BASE: &str = "http://127.0.0.1:8080";

/// A booted systemd; killing its PID 1 ends every process of the namespaces.
struct Machine {
    pid1: u32,
    boot: Child,
    _work: tempfile::TempDir,
}

impl Machine {
    fn boot(tree: impl FnOnce(&Path)) -> Machine {
        let work = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(work.path().join("mnt")).expect("mnt");
        tree(&work.path().join("tree"));
        let script = common::repo_root().join("tests/systemd/boot");
        let mut command = Command::new(&script);
        command.arg(work.path()).arg("polyfaas-test.target").stdin(Stdio::null()).stdout(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl, which is async-signal-safe and allocates nothing. It makes the
        // boot script (and through it the machine) die if this test is killed
        // before its guard could run.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut boot = command.spawn().expect("tests/systemd/boot");
        let mut line = String::new();
        BufReader::new(boot.stdout.take().expect("stdout")).read_line(&mut line).expect("boot output");
        let Some(pid1) = line.strip_prefix("pid1 ").and_then(|p| p.trim().parse().ok()) else {
            let _ = boot.kill();
            panic!("boot said {line:?}");
        };
        let machine = Machine { pid1, boot, _work: work };
        let up = wait_until(Duration::from_secs(60), || {
            let state = machine.sh("systemctl is-system-running 2>/dev/null || true");
            state.contains("running") || state.contains("degraded")
        });
        assert!(up, "systemd did not come up: {}", machine.console());
        machine
    }

    /// Runs `script` with `sh -c` inside the machine (all its namespaces), at most
    /// two minutes; returns stdout, panics on failure.
    fn sh(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(out.status.success(), "`{script}` failed: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    fn run(&self, script: &str) -> std::process::Output {
        Command::new("timeout")
            .args(["120", "nsenter", "-t", &self.pid1.to_string(), "-m", "-u", "-i", "-n", "-p", "-C", "--"])
            .args(["sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// What systemd wrote to its console (the boot's log), for failure messages.
    fn console(&self) -> String {
        std::fs::read_to_string(self._work.path().join("console.log")).unwrap_or_default()
    }

    /// The service's main pid, as the machine sees it (0: none).
    fn main_pid(&self) -> u32 {
        self.sh("systemctl show -p MainPID --value polyfaas").trim().parse().expect("MainPID")
    }

    fn active(&self) -> String {
        self.run("systemctl is-active polyfaas").stdout.iter().map(|b| *b as char).collect::<String>().trim().into()
    }

    fn journal(&self) -> String {
        self.sh("journalctl -u polyfaas --no-pager -o cat")
    }

    /// Moves the calling thread (and threads it starts) into the machine's
    /// network namespace, so HTTP reaches the service on its loopback.
    fn enter_network(&self) {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.pid1)).expect("netns");
        // SAFETY: setns with a namespace fd we hold open; it only changes this
        // thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Our boot script's child is PID 1 of the namespace: SIGKILL takes every
        // process in it; the script then removes its cgroup and exits.
        // SAFETY: kill(2) of the pid the boot script reported, which is its child.
        unsafe { libc::kill(self.pid1 as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.boot.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.boot.kill();
        let _ = self.boot.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn call(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    common::call(&format!("{BASE}{path}"), method, headers, body)
}

fn admin(path: &str, token: &str) -> Reply {
    call("GET", path, &[("authorization", &format!("Bearer {token}"))], b"")
}

fn symlink(target: &Path, link: PathBuf) {
    std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// The machine's files, as the README's install steps leave them. Symlinks are
/// copied as files into the machine (`cp -L`).
fn install(tree: &Path) {
    let bin = common::bin_dir();
    let root = common::repo_root();
    symlink(&bin.join("polyfaas"), tree.join("usr/local/bin/polyfaas"));
    symlink(&bin.join("polyfaas-worker"), tree.join("usr/local/bin/polyfaas-worker"));
    symlink(&root.join("runtimes/ruby+stdlib.wasm"), tree.join("usr/local/lib/polyfaas/ruby+stdlib.wasm"));
    let units = tree.join("etc/systemd/system");
    symlink(&root.join("deploy/polyfaas.service"), units.join("polyfaas.service"));
    std::fs::create_dir_all(units.join("polyfaas.service.d")).expect("drop-in dir");
    std::fs::write(
        units.join("polyfaas.service.d/test.conf"),
        "[Service]\nWatchdogSec=3s\nTimeoutStartSec=10s\nTimeoutAbortSec=2s\n",
    )
    .expect("drop-in");
    std::fs::write(
        units.join("polyfaas-test.target"),
        "[Unit]\nDescription=polyfaas test boot\nRequires=systemd-journald.socket\n\
         Wants=systemd-journald.service\nAfter=systemd-journald.socket systemd-journald.service\n",
    )
    .expect("target");
    std::fs::create_dir_all(tree.join("etc/polyfaas")).expect("etc/polyfaas");
    let token = tree.join("etc/polyfaas/admin-token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
}

/// systemd and util-linux's unshare/nsenter, from Debian when missing.
fn ensure_systemd() {
    if Path::new("/lib/systemd/systemd").exists() && Path::new("/usr/bin/nsenter").exists() {
        return;
    }
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
             systemd util-linux >/dev/null",
        ])
        .status()
        .expect("apt-get");
    assert!(ok.success(), "installing systemd failed");
}

/// `Uid:` (real) of a process inside the machine.
fn uid_of(m: &Machine, pid: u32) -> u32 {
    m.sh(&format!("awk '/^Uid:/ {{print $2}}' /proc/{pid}/status")).trim().parse().expect("uid")
}

#[test]
fn the_unit_runs_under_a_real_systemd() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: booting systemd in namespaces needs root (CI runs as root)");
        return;
    }
    ensure_systemd();
    let m = Machine::boot(install);
    m.enter_network();

    // The hardening score, as systemd computes it for the installed unit.
    let security = m.sh("systemd-analyze security --no-pager polyfaas.service 2>&1");
    let overall = security.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default();
    eprintln!("{overall}");
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{security}"));
    assert!(score <= 2.7, "exposure {score} > 2.7:\n{security}");

    // `start` returns once READY=1 came: the port answers at once. The first
    // start compiles Ruby, longer than the drop-in's 10 s start timeout.
    let out = m.run("systemctl start polyfaas");
    assert!(out.status.success(), "start failed: {}\n{}", text(&out.stderr), m.journal());
    assert_eq!(m.active(), "active");
    assert_eq!(call("GET", "/healthz", &[], b"").status, 200);
    let journal = m.journal();
    assert!(journal.contains("polyfaas ready: listening on http://127.0.0.1:8080"), "{journal}");
    assert!(journal.contains("Ruby runtime ready"), "{journal}");

    // Watchdog pings arrive.
    let pinged = || m.sh("systemctl show -p WatchdogTimestampMonotonic --value polyfaas").trim().to_string();
    let first = pinged();
    assert!(wait_until(Duration::from_secs(10), || pinged() != first), "no watchdog ping after {first}");

    // The dynamic user owns the state directory and runs the server.
    let main = m.main_pid();
    let uid = uid_of(&m, main);
    assert!((61184..=65519).contains(&uid), "a dynamic uid: {uid}");
    let owner: u32 = m.sh("stat -L -c %u /var/lib/polyfaas").trim().parse().expect("owner");
    assert_eq!(owner, uid, "the service's user owns /var/lib/polyfaas");

    // The admin token comes from the credential, and from nowhere in the environment.
    assert_eq!(admin("/admin/workers", TOKEN).status, 200);
    assert_eq!(admin("/admin/workers", "wrong").status, 403);
    let environ = m.sh(&format!("tr '\\0' '\\n' < /proc/{main}/environ"));
    assert!(environ.contains("CREDENTIALS_DIRECTORY=") && !environ.contains(TOKEN), "{environ}");

    // A bundle deploys and answers; its worker is inside the unit's cgroup,
    // as the same dynamic user, under seccomp and no_new_privs.
    let deployed =
        call("PUT", "/api/v1/functions/hello", &[("authorization", BEARER)], &wasm_bundle("hello-wasm", None));
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    for _ in 0..3 {
        let r = call("POST", "/fn/hello", &[], br#"{"name":"unit"}"#);
        assert_eq!(r.json()["hello"], "unit", "{}", r.text());
    }
    // Every runtime starts and answers under the unit's system call filter.
    for lang in ["js", "python", "ruby"] {
        let name = format!("hello-{lang}");
        let r =
            call("PUT", &format!("/api/v1/functions/{name}"), &[("authorization", BEARER)], &common::dir_bundle(&name));
        assert_eq!(r.status, 201, "{name}: {}", r.text());
        let r = call("POST", &format!("/fn/{name}"), &[], br#"{"x":1}"#);
        assert!(r.status == 200 && r.text().contains("Hello from"), "{name}: {} {}", r.status, r.text());
    }
    let worker = call("POST", "/fn/hello", &[], b"{}").worker_pid();
    let cgroup = m.sh("systemctl show -p ControlGroup --value polyfaas").trim().to_string();
    let procs = m.sh(&format!("cat /sys/fs/cgroup{cgroup}/cgroup.procs"));
    let procs: Vec<u32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(procs.contains(&worker) && procs.contains(&main), "worker {worker} in {cgroup}: {procs:?}");
    let status = m.sh(&format!("cat /proc/{worker}/status"));
    assert!(status.contains("NoNewPrivs:\t1") && status.contains("Seccomp:\t2"), "{status}");
    assert_eq!(uid_of(&m, worker), uid);

    // `systemctl status` shows the current state, not the one at start.
    let current = || m.sh("systemctl status --no-pager polyfaas || true");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let s = current();
            s.contains("Status: \"serving 4 functions on 127.0.0.1:8080;") && s.contains("invocations/s")
        }),
        "{}",
        current()
    );
    eprintln!("{}", current().lines().find(|l| l.contains("Status:")).unwrap_or_default());

    // reload-or-restart drains: an invocation in flight finishes.
    let slow_fn =
        call("PUT", "/api/v1/functions/slow", &[("authorization", BEARER)], &wasm_bundle("testkit-wasm", None));
    assert_eq!(slow_fn.status, 201, "{}", slow_fn.text());
    let slow = std::thread::spawn(|| call("POST", "/fn/slow", &[], br#"{"action":"sleep","ms":3000}"#));
    let busy = || admin("/admin/workers", TOKEN).json()["workers"].to_string().contains(r#""state":"busy""#);
    assert!(wait_until(Duration::from_secs(10), busy), "the slow call is running");
    m.sh("systemctl reload-or-restart polyfaas");
    let slow = slow.join().expect("slow call");
    assert_eq!((slow.status, slow.json()["slept"].as_u64()), (200, Some(3000)), "{}", slow.text());
    let after_reload = m.main_pid();
    assert!(after_reload != main && after_reload != 0);
    assert_eq!(call("POST", "/fn/hello", &[], b"{}").status, 200);
    let journal = m.journal();
    assert!(journal.contains("stop signal received: draining"), "{journal}");
    assert!(!journal.contains("worker died: exited with code 0"), "a clean exit is no death:\n{journal}");

    // A hung server (SIGSTOP) misses its watchdog pings and is restarted.
    m.sh(&format!("kill -STOP {after_reload}"));
    let restarted = |old: u32| {
        wait_until(Duration::from_secs(40), || {
            let pid = m.main_pid();
            pid != old && pid != 0 && m.active() == "active"
        })
    };
    assert!(restarted(after_reload), "not restarted after SIGSTOP:\n{}", m.journal());
    let journal = m.sh("journalctl -u polyfaas --no-pager");
    assert!(journal.contains("Watchdog timeout"), "{journal}");

    // kill -9 of the main process: no worker survives it, and the unit restarts.
    let main = m.main_pid();
    let cgroup_procs = || -> Vec<u32> {
        m.sh(&format!("cat /sys/fs/cgroup{cgroup}/cgroup.procs 2>/dev/null || true"))
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    assert!(wait_until(Duration::from_secs(10), || cgroup_procs().len() >= 2), "workers: {:?}", cgroup_procs());
    let workers: Vec<u32> = cgroup_procs().into_iter().filter(|p| *p != main).collect();
    m.sh(&format!("kill -9 {main}"));
    let gone = |pids: &[u32]| pids.iter().all(|p| m.run(&format!("test -e /proc/{p}/status")).status.code() == Some(1));
    assert!(wait_until(Duration::from_secs(10), || gone(&workers)), "workers {workers:?} outlived kill -9");
    assert!(restarted(main), "not restarted after kill -9:\n{}", m.journal());
    assert_eq!(call("POST", "/fn/hello", &[], br#"{"name":"again"}"#).json()["hello"], "again");

    // stop leaves nothing running.
    let last: Vec<u32> = cgroup_procs();
    m.sh("systemctl stop polyfaas");
    assert_eq!(m.active(), "inactive");
    assert!(gone(&last), "{last:?} outlived stop");
    let left = m.sh("for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null | grep polyfaas || true");
    assert!(left.trim().is_empty(), "still running: {left}");

    // The journal has the ready line of every start.
    let journal = m.journal();
    assert!(journal.matches("polyfaas ready: listening on").count() >= 4, "{journal}");

    // A server that cannot start a single worker fails its start for good (exit
    // 78, not restarted) instead of restarting forever. Here: the system call
    // filter without the calls the workers' sandbox needs.
    m.sh("printf '[Service]\\nSystemCallFilter=\\nSystemCallFilter=@system-service\\nTimeoutStartSec=60s\\n' \
         > /etc/systemd/system/polyfaas.service.d/zz-narrow.conf && systemctl daemon-reload");
    assert!(!m.run("systemctl start polyfaas").status.success(), "started without workers");
    assert_eq!(m.active(), "failed", "not restarted");
    let show = m.sh("systemctl show -p ExecMainStatus -p StatusText polyfaas");
    assert!(show.contains("ExecMainStatus=78") && show.contains("failed: no worker could be started"), "{show}");
    let journal = m.journal();
    assert!(journal.contains("no worker of any runtime (wasm, js, python") && journal.contains("could be started"));
}
