//! The harness every black-box test uses: start the real `polyfaas` binary on an
//! ephemeral port with a temp data dir, talk HTTP to it, build bundle zips.
//!
//! Binaries and the wasm bundles are found in the cargo target dir this test
//! binary was built into (`scripts/test` builds them all there first).

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod attack;
pub mod corpus;
pub mod nginx;
pub mod postgres;
pub mod wire;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where `polyfaas` and `polyfaas-worker` are: `POLYFAAS_BIN_DIR` if set (a copy
/// of one build, when several checkouts share a target dir), else `<target>/release`.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("POLYFAAS_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => release_dir(),
    }
}

/// `<target>/release`: this test binary is `<target>/release/deps/<test binary>`.
fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

pub fn target_dir() -> PathBuf {
    release_dir().parent().expect("target root").to_path_buf()
}

/// The checkout the tests run from. `cargo test` sets `CARGO_MANIFEST_DIR` when it
/// runs a test too; that value wins over the one compiled in, so a test binary
/// reused from a cache built in another checkout still reads this one.
pub fn repo_root() -> PathBuf {
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().expect("repo root").to_path_buf()
}

/// A seed bundle of the original project. They are not part of this repository:
/// they are read from `fixtures/seed-bundles` under `POLYFAAS_SHARED_DIR` (by
/// default a `shared` directory beside the checkout), unchanged.
pub fn seed_bundle(file: &str) -> Vec<u8> {
    let shared = std::env::var_os("POLYFAAS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("..").join("shared"));
    let path = shared.join("fixtures").join("seed-bundles").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The zip of `bundles/<name>`: its metadata.json (or `metadata` instead) and its
/// built module, both at the zip root.
pub fn wasm_bundle(name: &str, metadata: Option<&str>) -> Vec<u8> {
    let dir = repo_root().join("bundles").join(name);
    let own = std::fs::read_to_string(dir.join("metadata.json")).expect("bundle metadata.json");
    let parsed: serde_json::Value = serde_json::from_str(&own).expect("metadata is JSON");
    let module = parsed["entrypointFile"].as_str().expect("entrypointFile").to_string();
    let wasm_path = target_dir().join("wasm32-wasip1").join("release").join(&module);
    let wasm = std::fs::read(&wasm_path)
        .unwrap_or_else(|e| panic!("{}: {e} (build bundles/ for wasm32-wasip1 first)", wasm_path.display()));
    zip(&[("metadata.json", metadata.unwrap_or(&own).as_bytes()), (&module, &wasm)])
}

/// The zip of a script bundle: every file under `bundles/<name>`, paths relative
/// to that folder.
pub fn dir_bundle(name: &str) -> Vec<u8> {
    dir_bundle_with(name, None)
}

/// The same, with `metadata` instead of the folder's own metadata.json.
pub fn dir_bundle_with(name: &str, metadata: Option<&str>) -> Vec<u8> {
    let root = repo_root().join("bundles").join(name);
    let mut files = Vec::new();
    collect_files(&root, &root, &mut files);
    files.sort();
    let entries: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(rel, path)| match (rel.as_str(), metadata) {
            ("metadata.json", Some(m)) => (rel.clone(), m.as_bytes().to_vec()),
            _ => (rel.clone(), std::fs::read(path).expect("bundle file")),
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    zip(&refs)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            out.push((rel, path));
        }
    }
}

pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default()).expect("zip entry");
        w.write_all(bytes).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// A `multipart/form-data` body with one file part, as the original's clients sent.
pub fn multipart(file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "polyfaas-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A running `polyfaas serve`.
pub struct Server {
    child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    /// The admin token it was started with (`POLYFAAS_ADMIN_TOKEN` or `--admin-token`),
    /// which [`Server::deploy`] sends.
    pub token: Option<String>,
    logs: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn worker_pid(&self) -> u32 {
        self.header("x-polyfaas-worker-pid").and_then(|p| p.parse().ok()).expect("x-polyfaas-worker-pid header")
    }
}

impl Server {
    /// Starts a server on a fresh temp data dir.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut server = Server::start_in(tmp.path(), args, &[]);
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server on `data_dir` with extra flags and env vars, and waits for
    /// its ready line.
    pub fn start_in(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(data_dir, "127.0.0.1:0", args, env, None, None)
    }

    /// Starts a server as `scripts/serve` does: from the working directory `cwd`,
    /// with a relative data dir (`data`) and the default runtime cache beneath it
    /// (seeded with the Ruby module scripts/test compiled).
    pub fn start_relative(cwd: &Path) -> Server {
        let mut server = Server::launch(Path::new("data"), "127.0.0.1:0", &[], &[], None, Some(cwd));
        server.data_dir = cwd.join("data");
        server
    }

    /// The same, listening on `listen`; requests go to loopback on its port.
    pub fn start_listening(data_dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::launch(data_dir, listen, args, env, None, None)
    }

    /// Starts a server on a fresh temp data dir with `RLIMIT_NOFILE` set to
    /// `(soft, hard)`, as a unit's `LimitNOFILE=soft:hard` would.
    pub fn start_with_open_files(args: &[&str], soft: u64, hard: u64) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut server = Server::launch(tmp.path(), "127.0.0.1:0", args, &[], Some((soft, hard)), None);
        server._tmp = Some(tmp);
        server
    }

    fn launch(
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
        open_files: Option<(u64, u64)>,
        cwd: Option<&Path>,
    ) -> Server {
        let token = env
            .iter()
            .find(|(k, _)| *k == "POLYFAAS_ADMIN_TOKEN")
            .map(|(_, v)| v.to_string())
            .or_else(|| args.windows(2).find(|w| w[0] == "--admin-token").map(|w| w[1].to_string()));
        let mut cmd = Command::new(bin_dir().join("polyfaas"));
        if let Some((soft, hard)) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: runs in the forked child before exec and calls only
            // setrlimit, which is async-signal-safe; it allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("serve").arg("--listen").arg(listen).arg("--data-dir").arg(data_dir);
        // The Ruby runtime scripts/setup installed, compiled once by scripts/test.
        cmd.arg("--ruby-wasm").arg(repo_root().join("runtimes").join("ruby+stdlib.wasm"));
        let cache = target_dir().join("runtime-cache");
        match cwd {
            // The default cache, `data/runtimes`, seeded with the compiled Ruby module.
            Some(cwd) => {
                let seeded = cwd.join(data_dir).join("runtimes");
                std::fs::create_dir_all(&seeded).expect("runtime cache");
                for file in std::fs::read_dir(&cache).expect("the compiled runtime cache").flatten() {
                    std::fs::copy(file.path(), seeded.join(file.file_name())).expect("seeding the runtime cache");
                }
                cmd.current_dir(cwd);
            }
            None => {
                cmd.arg("--runtime-cache").arg(cache);
            }
        }
        cmd.args(args);
        cmd.env_remove("RUST_LOG").envs(env.iter().copied());
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting polyfaas");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            // Bytes, not `lines()`: a line that is not UTF-8 must not end the capture.
            for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = addr_tx.send(addr.replace("0.0.0.0:", "127.0.0.1:"));
                }
                if std::env::var_os("POLYFAAS_TEST_ECHO").is_some() {
                    eprintln!("[server] {line}");
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("polyfaas did not log its address; logs:\n{}", logs.lock().expect("log lock").join("\n"))
        });
        Server { child, addr, data_dir: data_dir.to_path_buf(), token, logs, _tmp: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }

    /// How many bytes the server has written to its stderr so far (lines and their newlines).
    pub fn log_bytes(&self) -> usize {
        self.logs.lock().expect("log lock").iter().map(|l| l.len() + 1).sum()
    }

    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        call(&self.url(path), method, headers, body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], b"")
    }

    /// Deploys `zip` as `name` through the native route (with the server's token, if any).
    pub fn deploy(&self, name: &str, zip: &[u8]) -> Reply {
        self.manage("PUT", &format!("/api/v1/functions/{name}"), &[("content-type", "application/zip")], zip)
    }

    /// A management request: with `Authorization: Bearer <token>` when the server has a token.
    pub fn manage(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("authorization", auth));
        }
        self.call(method, path, &all, body)
    }

    /// Invokes `name` with a JSON body through `/fn/{name}`.
    pub fn invoke(&self, name: &str, body: &serde_json::Value) -> Reply {
        self.call("POST", &format!("/fn/{name}"), &[("content-type", "application/json")], body.to_string().as_bytes())
    }

    /// Child processes of the server (its workers).
    pub fn worker_pids(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// SIGKILL (no drain, no goodbye), then reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for exit. Returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("polyfaas did not exit after SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP request; any status is a `Reply`, only transport failures panic.
pub fn call(url: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let response = match req.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).expect("reading the response");
    Reply { status, headers, body }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started and a valid signal number.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
}

pub fn process_exists(pid: u32) -> bool {
    // A zombie still has a /proc entry; count it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Direct children of `pid`, read from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // Fields after the command name: state, ppid, ...
        let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = fields.next().unwrap_or("");
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) && state != "Z" {
            out.push(child);
        }
    }
    out
}

/// Polls `cond` until it holds or `within` passes.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
