//! `host-shim`: the native companion of the wasm filter. Each job it does for a local or test
//! setup is one subcommand, so a newcomer finds the code for a job by its name: `issuer` runs a
//! local Okta-compatible authorization server (the one the end-to-end tests and `make run` use
//! instead of a real Okta org); `serve` runs the config's MCP stdio targets behind HTTP for Envoy;
//! `envoy` renders the Envoy bootstrap; `up` starts the whole stack; `oci` packages the module
//! as an OCI image for Istio's `WasmPlugin`. This file only parses the command line and calls
//! into the library (`lib.rs`), where each job lives.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use host_shim::{config, envoy_config, envoy_start, issuer, oci, preflight, serve, up};

#[derive(Debug, Parser)]
#[command(name = "host-shim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local OAuth 2.0 / OIDC issuer shaped like Okta's custom authorization server
    /// (client credentials; people's logins with authorization code + PKCE, refresh tokens,
    /// registration; RS256 access tokens, JWKS). For development and tests only.
    Issuer(issuer::IssuerArgs),
    /// Render the Envoy bootstrap for an Agent Gateway config file: listeners, routes, the
    /// wasm filter with each route's policy, the shim and JWKS clusters.
    Envoy(envoy_config::EnvoyArgs),
    /// Start the whole gateway from a config file: (the local issuer,) `serve` and Envoy with
    /// the filter. Ctrl-C or SIGTERM stops every process it started.
    Up(up::UpArgs),
    /// Serve every route's MCP `stdio` targets over Streamable HTTP and legacy SSE, one child
    /// per session per target, for Envoy to route to.
    Serve(serve::ServeArgs),
    /// Package the filter module as an OCI image layout on disk (Istio's wasm "compat"
    /// variant: one tar+gzip layer holding plugin.wasm), reproducibly, ready to push.
    Oci(oci::OciArgs),
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

/// What the user can fix (a configuration error, a port in use, a command not found) and a
/// child that failed to start are shown as a plain message, never with a backtrace, since they
/// are no bug of the shim's: a usage error exits 2, a child's failure 1. Anything else is
/// anyhow's report, with a backtrace when `RUST_BACKTRACE` asks for one.
fn report(error: &anyhow::Error) -> ExitCode {
    let usage = error.downcast_ref::<config::FileError>().is_some()
        || error.downcast_ref::<preflight::PreflightError>().is_some();
    if usage {
        eprintln!("error: {error:#}");
        ExitCode::from(2)
    } else if error.downcast_ref::<envoy_start::StartError>().is_some() {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    } else {
        eprintln!("Error: {error:?}");
        ExitCode::FAILURE
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Envoy(args) => return envoy_config::run(args),
        Command::Oci(args) => return oci::run(args),
        command => Cli { command },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Issuer(args) => runtime.block_on(issuer::run(args)),
        Command::Envoy(_) | Command::Oci(_) => Ok(()),
        Command::Up(args) => runtime.block_on(up::run(args)),
        Command::Serve(args) => runtime.block_on(serve::run(args)),
    }
}
