//! The client commands of the `polyfaas` binary, for people who would otherwise
//! write curl lines: `deploy`, `invoke`, `list`, `logs [-f]`, `rollback`,
//! `delete`, `status`, `export`, `import`. They talk to a running server over its HTTP API
//! (`--server` or `POLYFAAS_URL`, `--token` or `POLYFAAS_TOKEN`) and print what a
//! person reads; `--json` (`-o json`) prints the server's JSON for scripts.
//!
//! Owns: which routes each command calls and how it reports failure (a non-2xx
//! answer is printed and exits 1). It never runs server code.

mod bundle;
mod http;
mod render;
mod vendor;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use self::http::{Agent, Answer};

#[derive(clap::Args)]
pub struct Client {
    /// The server's base URL
    #[arg(long, global = true, env = "POLYFAAS_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The server's admin token, sent as `Authorization: Bearer` (needed to manage functions when the server has one)
    #[arg(long, global = true, env = "POLYFAAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's JSON instead of text (same as `-o json`)
    #[arg(long, global = true)]
    json: bool,
    /// Output format
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Upload a bundle: a .zip, or a folder (zipped here, minus what .polyfaasignore lists,
    /// with the dependencies its requirements.txt or package.json declares)
    Deploy {
        path: PathBuf,
        #[arg(long, required_unless_present = "zip_to")]
        name: Option<String>,
        /// Keep only the newest N versions afterwards
        #[arg(long)]
        keep: Option<usize>,
        /// Zip the folder as it is: no pip install for requirements.txt, no npm install for package.json
        #[arg(long)]
        no_vendor: bool,
        /// Write the bundle to this file instead of uploading it (to look at what would go)
        #[arg(long, value_name = "FILE")]
        zip_to: Option<PathBuf>,
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
    /// Show a function's recent invocations and what they logged
    Logs {
        name: String,
        /// Keep printing invocations as they happen (Ctrl-C ends)
        #[arg(short, long)]
        follow: bool,
        /// How many recent invocations to show first (at most 50)
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Make the previous version (or --version N) current again
    Rollback {
        name: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Delete a function and all its versions
    Delete { name: String },
    /// The server's health, readiness, workers (with --token) and functions
    Status,
    /// Write every function with all its versions to one archive (a backup, or
    /// what `import` reads into another server's store, local or PostgreSQL)
    Export {
        /// The archive to write
        file: PathBuf,
    },
    /// Read an archive `export` wrote into the server's store (functions it
    /// already has are skipped)
    Import {
        /// The archive to read
        file: PathBuf,
    },
}

pub fn run(client: &Client, command: Command) -> Result<()> {
    let agent = Agent::new(&client.server, client.token.clone());
    let json = client.json || client.output == Output::Json;
    match command {
        Command::Deploy { path, name, keep, no_vendor, zip_to } => {
            let zip = bundle::bundle_bytes(&path, !no_vendor)?;
            if let Some(file) = zip_to {
                std::fs::write(&file, &zip).with_context(|| format!("writing {}", file.display()))?;
                println!("wrote {} ({} bytes)", file.display(), zip.len());
                return Ok(());
            }
            let Some(name) = name else { bail!("--name is needed to deploy") };
            let query = keep.map(|k| format!("?keep={k}")).unwrap_or_default();
            let started = Instant::now();
            let request = agent.request("PUT", &format!("/api/v1/functions/{name}{query}"));
            let answer = http::read(request.set("content-type", "application/zip").send(bundle::upload_body(zip)))?;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            print_answer(&answer, json, |v| render::deployed(v, elapsed_ms))
        }
        Command::Invoke { name, data } => {
            let request = agent.request("POST", &format!("/fn/{name}")).set("content-type", "application/json");
            let answer = http::read(request.send_string(&data))?;
            // The response body is the function's own: printed as it came.
            print_raw(&answer)?;
            fail_unless_ok(&answer)
        }
        Command::List => {
            let answer = agent.get("/api/v1/functions")?;
            print_answer(&answer, json, |v| {
                render::function_table(v["functions"].as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        Command::Logs { name, follow, limit } => logs(&agent, &name, follow, limit, json),
        Command::Rollback { name, version } => {
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let answer =
                http::read(agent.request("POST", &format!("/api/v1/functions/{name}/rollback{query}")).call())?;
            print_answer(&answer, json, render::rolled_back)
        }
        Command::Delete { name } => {
            let answer = http::read(agent.request("DELETE", &format!("/api/v1/functions/{name}")).call())?;
            print_answer(&answer, json, |v| format!("deleted {}\n", v["name"].as_str().unwrap_or(&name)))
        }
        Command::Status => status(&agent, json),
        Command::Export { file } => export(&agent, &file, json),
        Command::Import { file } => {
            let archive = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let request = agent.request("POST", "/api/v1/import").set("content-type", "application/zip");
            let answer = http::read(request.send(bundle::upload_body(archive)))?;
            if !json && answer.status == 422 {
                // Some went in: say which, as well as what failed.
                std::io::stdout().lock().write_all(render::imported(&answer.json()?).as_bytes())?;
            }
            print_answer(&answer, json, render::imported)
        }
    }
}

/// `export FILE`: the archive streamed to a file next to FILE, renamed into
/// place once whole (an interrupted export leaves no half archive under FILE).
fn export(agent: &Agent, file: &std::path::Path, json: bool) -> Result<()> {
    let response = match agent.request("GET", "/api/v1/export").call() {
        Ok(response) => response,
        Err(e @ ureq::Error::Status(..)) => return print_answer(&http::read(Err(e))?, json, |_| String::new()),
        Err(e) => bail!("cannot reach the server: {e}"),
    };
    let partial = file.with_extension("partial");
    let mut out = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let bytes = std::io::copy(&mut response.into_reader(), &mut out).context("receiving the archive")?;
    out.sync_all()?;
    std::fs::rename(&partial, file).with_context(|| format!("writing {}", file.display()))?;
    let text = format!("exported to {} ({})\n", file.display(), render::size(bytes));
    if json {
        println!("{}", serde_json::json!({ "file": file, "bytes": bytes }));
    } else {
        print!("{text}");
    }
    Ok(())
}

/// Prints an answer: `text` of its JSON for a person, or the JSON itself; a
/// non-2xx answer is the server's error on stderr (or its JSON), and exit 1.
fn print_answer(answer: &Answer, json: bool, text: impl FnOnce(&Value) -> String) -> Result<()> {
    if json {
        print_raw(answer)?;
    } else if answer.ok() {
        std::io::stdout().lock().write_all(text(&answer.json()?).as_bytes())?;
    } else {
        eprintln!("error: {}", answer.error_line());
    }
    fail_unless_ok(answer)
}

fn print_raw(answer: &Answer) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(&answer.body)?;
    if !answer.body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A non-2xx answer has been printed already: exit 1 without saying it twice.
fn fail_unless_ok(answer: &Answer) -> Result<()> {
    if !answer.ok() {
        std::io::stdout().lock().flush()?;
        std::process::exit(1);
    }
    Ok(())
}

/// `logs [-f]`: the newest entries, then (following) every new one as it lands,
/// through the logs cursor and a long poll. With `--json`, one entry per line.
/// In a cluster, each header names the node that ran the invocation.
fn logs(agent: &Agent, name: &str, follow: bool, limit: usize, json: bool) -> Result<()> {
    let first = agent.get(&format!("/api/v1/functions/{name}/logs?limit={limit}"))?;
    if !follow {
        return print_answer(&first, json, |v| {
            let entries = v["logs"].as_array().map(Vec::as_slice).unwrap_or_default();
            if entries.is_empty() {
                return format!("no invocations of {name} logged yet\n");
            }
            let cluster = v["cluster"] == true;
            entries.iter().map(|e| render::log_block(e, cluster)).collect::<Vec<_>>().join("\n")
        });
    }
    let mut page = first;
    loop {
        if !page.ok() {
            if json {
                print_raw(&page)?;
            } else {
                eprintln!("error: {}", page.error_line());
            }
            return fail_unless_ok(&page);
        }
        let value = page.json()?;
        let mut out = std::io::stdout().lock();
        let cluster = value["cluster"] == true;
        for entry in value["logs"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let line = if json { format!("{entry}\n") } else { render::log_block(entry, cluster) + "\n" };
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
        drop(out);
        let Some(cursor) = value["cursor"].as_str() else { bail!("the server's logs answer has no cursor") };
        page = agent.get(&format!("/api/v1/functions/{name}/logs?after={cursor}&wait=25000"))?;
    }
}

/// `status`: health, readiness, workers (needs the token) and functions.
fn status(agent: &Agent, json: bool) -> Result<()> {
    let health = agent.get("/healthz")?;
    let ready = agent.get("/readyz")?;
    let workers = if agent.has_token() { Some(agent.get("/admin/workers")?) } else { None };
    let functions = agent.get("/api/v1/functions")?;
    let field = |a: &Answer, key: &str| a.json().ok().map(|v| v[key].clone()).unwrap_or(Value::Null);
    if json {
        let report = serde_json::json!({
            "server": agent.base(),
            "health": health.json().unwrap_or(Value::Null),
            "ready": ready.json().unwrap_or(Value::Null),
            "workers": workers.as_ref().filter(|w| w.ok()).map_or(Value::Null, |w| field(w, "workers")),
            "functions": if functions.ok() { field(&functions, "functions") } else { Value::Null },
        });
        println!("{report}");
    } else {
        let state = |a: &Answer, key: &str| match a.json() {
            Ok(v) if a.ok() => Ok(v[key].as_str().unwrap_or("?").to_string()),
            _ => Err(a.error_line()),
        };
        let list = |a: &Answer, key: &str| -> Result<Vec<Value>, String> {
            match a.json() {
                Ok(v) if a.ok() => Ok(v[key].as_array().cloned().unwrap_or_default()),
                _ => Err(format!("unavailable: {}", a.error_line())),
            }
        };
        let report = render::Status {
            server: agent.base(),
            health: state(&health, "status"),
            ready: state(&ready, "status"),
            workers: match &workers {
                Some(w) => list(w, "workers"),
                None => Err("(pass --token to see them)".to_string()),
            },
            functions: list(&functions, "functions"),
        };
        std::io::stdout().lock().write_all(render::status(&report).as_bytes())?;
    }
    if !health.ok() {
        bail!("the server is not healthy");
    }
    Ok(())
}
