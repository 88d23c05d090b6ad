//! `host-shim up`: the whole local gateway from one config file — the local issuer (when asked),
//! `host-shim serve` for the MCP targets, and Envoy with the filter, each a supervised child.
//! Any of them exiting, or SIGINT/SIGTERM, stops all of them: every child runs in its own
//! process group and the whole group is ended, so nothing (not even `npx`'s grandchildren) is
//! left behind.
//!
//! The shims listen on owner-only Unix sockets in a private directory of `up`'s own, so Envoy
//! is the only way to them; the directory (sockets, bootstrap) is removed on every way out.
//!
//! It fails fast, and says why: ports in use, `stdio` commands that cannot be run and an issuer
//! the local issuer would not match are refused before anything starts (see `preflight`), and
//! an Envoy that exits before it listens ends `up` at once with Envoy's reason (`envoy_start`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::address::Address;
use crate::config::Config;
use crate::envoy_config::{self, GatewayFlags, RenderOptions};
use crate::envoy_start::{EnvoyLog, StartError};
use crate::preflight::{self, Port, PreflightError};
use crate::session::{DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_IDENTITY};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The Agent Gateway configuration file.
    pub config: PathBuf,
    /// Also start the local Okta-compatible issuer at the address the config's issuer names
    /// (it must be an http://127.0.0.1:PORT/... URL).
    #[arg(long)]
    pub local_issuer: bool,
    #[command(flatten)]
    pub gateway: GatewayFlags,
    /// The Envoy binary (`make envoy` installs it at .tools/bin/envoy).
    #[arg(long, env = "ENVOY_BIN", default_value = ".tools/bin/envoy")]
    pub envoy: PathBuf,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2)]
    pub concurrency: u16,
    /// `host-shim serve` replicas behind Envoy; each MCP session sticks to the one that
    /// created it. With several, one exiting is survivable: its sessions end, others go on.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub shims: u16,
    /// Sessions each shim holds at once (`host-shim serve --max-sessions`).
    #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS, value_parser = crate::serve::at_least_one)]
    pub max_sessions: usize,
    /// Sessions one identity holds at once on each shim
    /// (`host-shim serve --max-sessions-per-identity`).
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_SESSIONS_PER_IDENTITY,
        value_parser = crate::serve::at_least_one
    )]
    pub max_sessions_per_identity: usize,
    /// An extra argument for the local issuer (`--issuer-arg=--token-ttl=60`). Repeatable.
    #[arg(long = "issuer-arg", allow_hyphen_values = true)]
    pub issuer_args: Vec<String>,
}

/// A child in its own process group, ended with its group.
struct Supervised {
    name: &'static str,
    child: Child,
}

impl Supervised {
    fn spawn(name: &'static str, command: &mut Command) -> anyhow::Result<Supervised> {
        let child = command
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Supervised { name, child })
    }

    fn group(&self) -> Option<Pid> {
        self.child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
    }

    /// SIGTERM to the group, then SIGKILL after `grace`; always reaped.
    async fn stop(mut self, grace: Duration) {
        if let Some(group) = self.group() {
            let _ = killpg(group, Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                crate::say!("up: {} did not stop in {grace:?}; killing it", self.name);
            }
            // The leader may be gone while its group lives on (npx's node, say).
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Reached only on an early return or a panic: never leave the group running.
        if let Some(group) = self.group() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// Reads the first stdout line of a child (its "listening on" line), then keeps forwarding
/// the rest so the child never blocks on a full pipe.
async fn first_line(child: &mut Supervised, prefix: &str) -> anyhow::Result<String> {
    let stdout = child
        .child
        .stdout
        .take()
        .context("the child's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let not_ready = |reason: String| StartError::NotReady {
        name: child.name,
        reason,
    };
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .map_err(|_| not_ready("did not start within 60 s".into()))??
        .ok_or_else(|| not_ready("exited before it was ready".into()))?;
    let rest = line
        .split_once(prefix)
        .map(|(_, rest)| rest.trim().to_string())
        .ok_or_else(|| not_ready(format!("printed {line:?}, expected {prefix:?}")))?;
    let name = child.name;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[{name}] {line}");
        }
    });
    Ok(rest)
}

/// The string at `pointer` in the first route policy that has one.
fn first_policy_string(config: &Config, pointer: &str) -> Option<String> {
    config.routes().iter().find_map(|r| {
        r.route
            .policies
            .as_ref()?
            .pointer(pointer)?
            .as_str()
            .map(str::to_string)
    })
}

/// The local issuer's listen port and path, from the config's issuer URL.
fn local_issuer(config: &Config) -> anyhow::Result<(u16, String, String)> {
    let issuer = first_policy_string(config, "/mcpAuthentication/issuer")
        .context("--local-issuer: no route has an mcpAuthentication issuer")?;
    let rest = issuer.strip_prefix("http://127.0.0.1:").with_context(|| {
        format!("--local-issuer needs an http://127.0.0.1:PORT/... issuer, not {issuer:?}")
    })?;
    let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let port = port
        .parse()
        .with_context(|| format!("the port of {issuer:?}"))?;
    Ok((port, format!("/{path}"), issuer))
}

/// `--audience` flags for the local issuer: the policy's first audience (what tokens carry by
/// default, as an Okta authorization server's configured audience), then each route's MCP URL,
/// the RFC 8707 `resource` an MCP client names when it signs in; the issuer refuses a resource
/// that is none of its audiences.
fn issuer_audiences(config: &Config, address: &str) -> Vec<String> {
    let first = first_policy_string(config, "/mcpAuthentication/audiences/0")
        .unwrap_or_else(|| "api://agentgateway".into());
    let mut audiences = vec![first];
    for url in mcp_urls(config, address) {
        if !audiences.contains(&url) {
            audiences.push(url);
        }
    }
    audiences
        .into_iter()
        .flat_map(|a| ["--audience".to_string(), a])
        .collect()
}

/// The MCP URL of each route as clients reach it here: its first exact or prefix match, else
/// `/mcp` (a route matching every path serves MCP there too).
fn mcp_urls(config: &Config, address: &str) -> Vec<String> {
    let host = loopback_host(address);
    config
        .routes()
        .iter()
        .map(|route| {
            let path = route
                .route
                .matches
                .iter()
                .find_map(|m| Some(m.path.as_ref()?.literal()?.to_owned()))
                .unwrap_or_else(|| "/mcp".into());
            format!("http://{host}:{}{path}", route.port)
        })
        .collect()
}

fn loopback_host(address: &str) -> &str {
    if address == "0.0.0.0" {
        "127.0.0.1"
    } else {
        address
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let me = std::env::current_exe().context("locating host-shim")?;
    if !args.envoy.exists() && args.envoy.components().count() > 1 {
        let missing = format!("no Envoy at {} (run `make envoy`)", args.envoy.display());
        return Err(PreflightError::Argument(missing).into());
    }
    let mut ports = preflight::bind_ports(&config, &args.gateway.listen_address);
    ports.push(Port {
        port: args.gateway.admin_port,
        address: "127.0.0.1".into(),
        what: "Envoy's admin port, --admin-port".into(),
    });
    if args.local_issuer {
        let (port, _, url) =
            local_issuer(&config).map_err(|e| PreflightError::Argument(format!("{e:#}")))?;
        ports.push(Port {
            port,
            address: "127.0.0.1".into(),
            what: format!("the local issuer's port, from the issuer {url}"),
        });
    }
    preflight::check_ports(&ports)?;
    preflight::check_commands(&config)?;
    let shutdown = crate::shutdown::on_signal()?;

    // Private to this user (0700): the shims' sockets and the bootstrap. Removed when `dir`
    // is dropped, which every way out of here passes through (an error, a signal, a child
    // gone, a panic unwinding).
    let dir = tempfile::Builder::new()
        .prefix(&format!("host-shim-up-{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("creating up's temporary directory")?;
    let mut children: Vec<Supervised> = Vec::new();
    // A signal during the start ends it as well as a signal later: the children started so
    // far are stopped like all of them are.
    let result = tokio::select! {
        result = run_in(&args, &config, &me, dir.path(), &mut children) => result,
        () = shutdown.cancelled() => Ok(()),
    };
    // Envoy first (no new requests), then the shim (ends the MCP servers), then the issuer.
    for child in children.into_iter().rev() {
        child.stop(Duration::from_secs(10)).await;
    }
    drop(dir);
    result
}

/// Starts the stack into `children`, then returns when a child whose loss breaks the stack
/// exits (an error) — or never, until the caller stops waiting on a signal.
async fn run_in(
    args: &UpArgs,
    config: &Config,
    me: &std::path::Path,
    dir: &std::path::Path,
    children: &mut Vec<Supervised>,
) -> anyhow::Result<()> {
    let mut issuer_url = None;
    if args.local_issuer {
        let (port, path, url) = local_issuer(config)?;
        children.push(Supervised::spawn(
            "issuer",
            Command::new(me)
                .args([
                    "issuer",
                    "--port",
                    &port.to_string(),
                    "--path-prefix",
                    &path,
                ])
                .args(issuer_audiences(config, &args.gateway.listen_address))
                .args(&args.issuer_args)
                .stdout(Stdio::piped()),
        )?);
        if let Some(issuer) = children.last_mut() {
            let announced = first_line(issuer, "issuer listening on").await?;
            preflight::check_issuer(config, &announced)?;
        }
        issuer_url = Some(url);
    }

    let mut shims = Vec::new();
    for i in 0..args.shims {
        let socket = Address::Unix(dir.join(format!("shim-{i}.sock")));
        children.push(Supervised::spawn(
            "serve",
            Command::new(me)
                .arg("serve")
                .arg(&args.config)
                .arg("--listen")
                .arg(socket.to_string())
                .arg("--max-sessions")
                .arg(args.max_sessions.to_string())
                .arg("--max-sessions-per-identity")
                .arg(args.max_sessions_per_identity.to_string())
                .stdout(Stdio::piped()),
        )?);
        let Some(serve) = children.last_mut() else {
            continue;
        };
        let announced = first_line(serve, "host-shim serving on").await?;
        let shim: Address = announced
            .parse()
            .map_err(|e| anyhow::anyhow!("the shim's address: {e}"))?;
        shims.push(shim);
    }

    let options = RenderOptions::new(&args.gateway, shims)?;
    let bootstrap = envoy_config::render(config, &options)?;
    let bootstrap_path = dir.join("envoy.yaml");
    std::fs::write(&bootstrap_path, bootstrap)?;
    children.push(Supervised::spawn(
        "envoy",
        Command::new(&args.envoy)
            .arg("-c")
            .arg(&bootstrap_path)
            .args(["--concurrency", &args.concurrency.to_string()])
            // `up` never hot-restarts Envoy, and with hot restart on every Envoy of the machine
            // shares one base id (its shared memory and domain sockets): a second gateway
            // would fail to start even on other ports.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            .stderr(Stdio::piped()),
    )?);
    if let Some(envoy) = children.last_mut() {
        let stderr = envoy
            .child
            .stderr
            .take()
            .context("Envoy's stderr is not piped")?;
        let mut log = EnvoyLog::capture(stderr);
        let ports: Vec<u16> = config.binds.iter().map(|b| b.port).collect();
        let host = if args.gateway.listen_address == "0.0.0.0" {
            "127.0.0.1"
        } else {
            args.gateway.listen_address.as_str()
        };
        crate::envoy_start::wait_listening(&mut envoy.child, &mut log, host, &ports).await?;
    }
    print_instructions(config, issuer_url.as_deref(), &args.gateway.listen_address);

    // Until a child exits whose loss breaks the stack: Envoy, the issuer, or the last shim. A
    // shim among several may go: Envoy sends its sessions a 503 and new ones to the others.
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let gone = children
            .iter_mut()
            .enumerate()
            .find_map(|(i, c)| match c.child.try_wait() {
                Ok(Some(status)) => Some((i, c.name, status)),
                _ => None,
            });
        let Some((i, name, status)) = gone else {
            continue;
        };
        let shims_left = children.iter().filter(|c| c.name == "serve").count();
        if name == "serve" && shims_left > 1 {
            crate::say!("up: a shim exited ({status}); {} left", shims_left - 1);
            children.remove(i);
            continue;
        }
        return Err(StartError::Exited { name, status }.into());
    }
}

fn print_instructions(config: &Config, issuer: Option<&str>, address: &str) {
    let host = loopback_host(address);
    println!();
    let urls = mcp_urls(config, address);
    for (route, url) in config.routes().iter().zip(&urls) {
        println!("MCP gateway up: {url}  (route {})", route.name);
    }
    if let (Some(issuer), Some(url)) = (issuer, urls.first()) {
        println!();
        println!(
            "Log in from your own MCP client (authorization code + PKCE at {issuer}/v1/authorize):"
        );
        println!(
            "  as alice / alice-password (in AI-Users: allowed) or bob / bob-password (not: refused)"
        );
        println!(
            "  Claude Code: claude mcp add --transport http mcp-gateway {url}   then /mcp to log in"
        );
        println!(
            "  VS Code:     .vscode/mcp.json {{\"servers\": {{\"mcp-gateway\": {{\"type\": \"http\", \"url\": \"{url}\"}}}}}}"
        );
        println!(
            "  Inspector:   npx @modelcontextprotocol/inspector   then Streamable HTTP, URL {url}, Connect"
        );
        println!();
        println!(
            "Or get a token as the Okta guide does (client in AI-Users: ai-user / ai-user-secret):"
        );
        println!(
            "  TOKEN=$(curl -s -X POST \"{issuer}/v1/token\" -H \"Content-Type: application/x-www-form-urlencoded\" \\\n    -d grant_type=client_credentials -d client_id=ai-user -d client_secret=ai-user-secret -d scope=agentgateway \\\n    | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')"
        );
    }
    if let Some(route) = config.routes().first() {
        println!();
        println!("Call the gateway (MCP initialize over Streamable HTTP):");
        println!(
            "  curl -i http://{host}:{}/mcp -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n    -H 'Accept: application/json, text/event-stream' \\\n    -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"curl\",\"version\":\"1\"}}}}}}'",
            route.port
        );
    }
    println!();
    println!("Ctrl-C stops everything.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_issuer_accepts_the_gateways_mcp_urls_as_resources() {
        let config = Config::parse(
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - mcp:\n          \
             targets: [{name: s, stdio: {cmd: npx}}]\n      policies:\n        mcpAuthentication:\n          \
             issuer: http://127.0.0.1:9000/oauth2/default\n          audiences: [api://guide, other]\n    \
             - matches: [{path: {pathPrefix: /team}}]\n      backends:\n      - mcp:\n          \
             targets: [{name: t, stdio: {cmd: npx}}]\n",
        )
        .unwrap();
        assert_eq!(
            mcp_urls(&config, "0.0.0.0"),
            ["http://127.0.0.1:3000/mcp", "http://127.0.0.1:3000/team"]
        );
        assert_eq!(
            issuer_audiences(&config, "127.0.0.1"),
            [
                "--audience",
                "api://guide",
                "--audience",
                "http://127.0.0.1:3000/mcp",
                "--audience",
                "http://127.0.0.1:3000/team"
            ]
        );
    }
}
