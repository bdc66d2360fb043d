//! `polyfaas`: the supervisor. Serves the HTTP API, keeps the bundle store and the
//! worker pool. It runs no user code: handlers run in `polyfaas-worker` processes.
//!
//! Layout:
//! - [`config`]: flags, env vars and the config file;
//! - [`cli`]: the client commands (`deploy`, `invoke`, `list`, `logs`, `rollback`);
//! - [`server`]: wires store, pool and HTTP together and runs until a signal;
//!   [`conn_watch`]: deadlines for client connections between requests;
//! - [`api`]: the public routes and the one place errors become JSON;
//! - [`admin`]: operator routes, health, readiness and metrics;
//! - [`store`]: bundles and versions on disk;
//! - [`pool`]: worker processes and dispatch;
//! - [`telemetry`]: metrics and per-function figures; [`systemd`]: sd_notify;
//! - [`logging`]: the server's log, one line per event whatever user code says;
//! - [`sandbox`]: what workers are told about their sandbox.

mod admin;
mod api;
mod cli;
mod config;
mod conn_watch;
mod deploy;
mod logging;
mod pool;
mod sandbox;
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => {
            let config = (*settings).load()?;
            logging::init(config.log_format);
            actix_web::rt::System::new().block_on(server::run(config))
        }
        Command::Client(command) => cli::run(&cli.client, command),
    }
}
