//! `polyfaas`: the supervisor. Serves the HTTP API, keeps the bundle store and the
//! worker pool. It runs no user code: handlers run in `polyfaas-worker` processes.
//!
//! Layout:
//! - [`config`]: flags, env vars and the config file;
//! - [`cli`]: the client commands (`deploy`, `invoke`, `list`, `logs`, `rollback`, `delete`, `status`);
//! - [`server`]: wires store, pool and HTTP together and runs until a signal;
//!   [`conn_watch`]: deadlines for client connections between requests;
//! - [`api`]: the public routes and the one place errors become JSON;
//! - [`admin`]: operator routes, health, readiness and metrics;
//! - [`auth`]: who may manage functions and use `/admin`;
//! - [`store`]: bundles and versions on disk;
//! - [`pool`]: worker processes and dispatch;
//! - [`telemetry`]: metrics and per-function figures; [`logs`]: invocations' kept logs;
//!   [`systemd`]: sd_notify, the start verdict, watchdog and status line;
//! - [`logging`]: the server's log, one line per event whatever user code says;
//! - [`sandbox`]: what workers are told about their sandbox;
//! - [`secrets`]: taking the admin token out of the environment.
//!
//! Free `async fn`s in this crate are `pub(crate)`, never `pub`: rustc treats the body
//! of a public non-generic `async fn` as a codegen root even where nothing calls it, so
//! one `pub async fn run` made the unit-test harness compile the whole server again
//! (27k monomorphised items instead of 12k). `scripts/test` refuses a new one.

mod admin;
mod api;
mod auth;
mod cgroup;
mod cli;
mod cluster;
mod config;
mod conn_watch;
mod console;
mod deploy;
mod deploy_locks;
mod listeners;
mod logging;
mod logs;
mod pool;
mod sandbox;
mod secrets;
mod series;
mod server;
mod store;
mod systemd;
mod telemetry;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "polyfaas", version, about = "A self-hosted, polyglot function server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: cli::Client,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Precedence: flags, then POLYFAAS_* env vars, then --config, then defaults.
    Serve(Box<config::Settings>),
    #[command(flatten)]
    Client(cli::Command),
    /// Print a shell completion script: `polyfaas completions bash > /etc/bash_completion.d/polyfaas`
    Completions { shell: clap_complete::Shell },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => {
            // clap has copied it into `settings`; no thread exists yet.
            secrets::scrub_env("POLYFAAS_ADMIN_TOKEN");
            // A database URL may carry its password.
            secrets::scrub_env("POLYFAAS_STORE");
            let config = (*settings).load()?;
            logging::init(config.log_format);
            match actix_web::rt::System::new().block_on(server::run(config)) {
                // Logged already; systemd must not restart into the same wall.
                Err(e) if e.is::<systemd::CannotServe>() => std::process::exit(systemd::EXIT_CANNOT_SERVE),
                other => other,
            }
        }
        Command::Client(command) => cli::run(&cli.client, command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "polyfaas", &mut std::io::stdout());
            Ok(())
        }
    }
}
