//! The client commands of the `polyfaas` binary, for people who would otherwise
//! write curl lines: `deploy`, `invoke`, `list`, `logs`, `rollback`. They talk to
//! a running server over its HTTP API (`--server`, or `POLYFAAS_URL`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct Client {
    /// The server's base URL
    #[arg(long, global = true, env = "POLYFAAS_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The server's admin token, sent as `Authorization: Bearer` (needed to manage functions when the server has one)
    #[arg(long, global = true, env = "POLYFAAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Upload a bundle: a .zip, or a folder (zipped here, minus what .polyfaasignore lists)
    Deploy {
        path: PathBuf,
        #[arg(long)]
        name: String,
        /// Keep only the newest N versions afterwards
        #[arg(long)]
        keep: Option<usize>,
    },
    /// Invoke a function and print its response body
    Invoke {
        name: String,
        /// The request body (JSON)
        #[arg(long, default_value = "{}")]
        data: String,
    },
    /// List the deployed functions
    List,
    /// Show a function's recent invocation logs
    Logs { name: String },
    /// Make the previous version (or --version N) current again
    Rollback {
        name: String,
        #[arg(long)]
        version: Option<u64>,
    },
}

pub fn run(client: &Client, command: Command) -> Result<()> {
    let base = client.server.trim_end_matches('/');
    let agent = Agent { inner: ureq::AgentBuilder::new().build(), token: client.token.clone() };
    let (status, body) = match command {
        Command::Deploy { path, name, keep } => {
            let zip = if path.is_dir() {
                zip_folder(&path)?
            } else {
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
            };
            let query = keep.map(|k| format!("?keep={k}")).unwrap_or_default();
            let request =
                agent.put(&format!("{base}/api/v1/functions/{name}{query}")).set("content-type", "application/zip");
            send(request.send(Progress::new(zip)))?
        }
        Command::Invoke { name, data } => {
            send(agent.post(&format!("{base}/fn/{name}")).set("content-type", "application/json").send_string(&data))?
        }
        Command::List => send(agent.get(&format!("{base}/api/v1/functions")).call())?,
        Command::Logs { name } => send(agent.get(&format!("{base}/api/v1/functions/{name}/logs")).call())?,
        Command::Rollback { name, version } => {
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            send(agent.post(&format!("{base}/api/v1/functions/{name}/rollback{query}")).call())?
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&body)?;
    if !body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    if !(200..300).contains(&status) {
        bail!("the server answered {status}");
    }
    Ok(())
}

/// Builds requests that carry the token, when there is one.
struct Agent {
    inner: ureq::Agent,
    token: Option<String>,
}

impl Agent {
    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let request = self.inner.request(method, url);
        match &self.token {
            Some(token) => request.set("authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn get(&self, url: &str) -> ureq::Request {
        self.request("GET", url)
    }

    fn put(&self, url: &str) -> ureq::Request {
        self.request("PUT", url)
    }

    fn post(&self, url: &str) -> ureq::Request {
        self.request("POST", url)
    }
}

/// Any HTTP status is an answer to print; only a transport failure is an error.
fn send(result: Result<ureq::Response, ureq::Error>) -> Result<(u16, Vec<u8>)> {
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => bail!("cannot reach the server: {e}"),
    };
    let status = response.status();
    let mut body = Vec::new();
    response.into_reader().take(64 << 20).read_to_end(&mut body)?;
    Ok((status, body))
}

/// The upload body, printing progress on a terminal for bundles over 1 MiB.
struct Progress {
    bytes: Vec<u8>,
    sent: usize,
    shown: usize,
    show: bool,
}

impl Progress {
    fn new(bytes: Vec<u8>) -> Self {
        let show = bytes.len() > (1 << 20) && std::io::stderr().is_terminal();
        Self { bytes, sent: 0, shown: 0, show }
    }
}

impl Read for Progress {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.bytes.len() - self.sent).min(256 * 1024);
        buf[..n].copy_from_slice(&self.bytes[self.sent..self.sent + n]);
        self.sent += n;
        let percent = self.sent * 100 / self.bytes.len().max(1);
        if self.show && (percent != self.shown || self.sent == self.bytes.len()) {
            self.shown = percent;
            let mb = |b: usize| b as f64 / f64::from(1 << 20);
            eprint!("\ruploading {percent:3}% ({:.1} of {:.1} MiB)", mb(self.sent), mb(self.bytes.len()));
            if self.sent == self.bytes.len() {
                eprintln!();
            }
        }
        Ok(n)
    }
}

/// Zips a folder, leaving out `.polyfaasignore`'s patterns (one per line: a name,
/// a relative path, or a `*`/`?` glob; `#` comments; a trailing `/` for folders),
/// the ignore file itself and `.git`.
fn zip_folder(root: &Path) -> Result<Vec<u8>> {
    let ignore: Vec<String> = std::fs::read_to_string(root.join(".polyfaasignore"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let ignored = file_name == ".polyfaasignore"
                || file_name == ".git"
                || ignore.iter().any(|p| glob(p, &relative) || glob(p, &file_name));
            if ignored {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                writer.start_file(relative, options)?;
                writer.write_all(&std::fs::read(&path)?)?;
            }
        }
    }
    Ok(writer.finish()?.into_inner())
}

/// `*` matches any run of characters but `/`, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (t.first().is_some_and(|c| *c != b'/') && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*.log", "a.log"));
        assert!(!glob("*.log", "dir/a.log"));
        assert!(glob("dir/*.log", "dir/a.log"));
        assert!(glob("node_modules", "node_modules"));
        assert!(glob("?.txt", "a.txt"));
        assert!(!glob("?.txt", "ab.txt"));
    }
}
