//! A real PostgreSQL for the shared-store tests: Debian's server (`postgresql`,
//! installed by `scripts/test`), a fresh cluster in a temp dir on a free
//! loopback port, no Unix socket, trust authentication. Run as the `postgres`
//! user when the tests run as root (the server refuses root); stopped on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_root: bool,
    child: Option<Child>,
}

impl Postgres {
    /// A new cluster, started.
    pub fn start() -> Postgres {
        let bin = server_bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            let status = Command::new("chown").arg("postgres:").arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown of the PostgreSQL dir to the postgres user failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let mut pg = Postgres { bin, dir, port, as_root, child: None };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .args(["-U", "polyfaas", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("running initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.restart();
        pg
    }

    /// `postgres://…` for the nodes.
    pub fn url(&self) -> String {
        format!("postgres://polyfaas@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again, on the same port and data) and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = File::create(self.dir.path().join("server.log")).expect("log file");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fast shutdown (SIGINT), waiting for the server to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::signal(child.id(), libc::SIGINT);
            let _ = child.wait();
        }
    }

    /// A SQL statement through psql; its output, unaligned.
    pub fn sql(&self, statement: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "polyfaas", "-d", "postgres"])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement])
            .output()
            .expect("running psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` from the server's bin dir, as the postgres user when root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_root {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian puts the server beside its version: the newest `/usr/lib/postgresql/*/bin`.
fn server_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("no PostgreSQL server in {} ({e}): scripts/test installs it", root.display()))
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect("a PostgreSQL server with initdb")
}
