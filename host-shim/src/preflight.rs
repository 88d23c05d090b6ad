//! What `host-shim up` checks before it starts anything, so that what would fail later — far
//! from its cause, or only after a timeout — fails at once with its reason: every port the
//! gateway needs is free, every `stdio` command can be run, and the local issuer names itself
//! exactly as the configuration does.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::config::{Config, ConfigError, FileError, Stdio};

/// A port the gateway cannot have, or an argument `up` cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{0}")]
    Argument(String),
    #[error(
        "port {port} on {address} is already in use ({what}): another gateway or program \
         holds it; stop it or choose another port"
    )]
    PortInUse {
        port: u16,
        address: String,
        what: String,
    },
    #[error("port {port} on {address} cannot be bound ({what}): {reason}")]
    CannotBind {
        port: u16,
        address: String,
        what: String,
        reason: String,
    },
    #[error("port {port} is both {first} and {second}")]
    PortTwice {
        port: u16,
        first: String,
        second: String,
    },
}

/// A port to check: where it is bound, and what it is for (said in the error).
pub struct Port {
    pub port: u16,
    pub address: String,
    pub what: String,
}

/// The ports of `config`'s binds on `address`, by the field that names each.
pub fn bind_ports(config: &Config, address: &str) -> Vec<Port> {
    config
        .binds
        .iter()
        .enumerate()
        .map(|(b, bind)| Port {
            port: bind.port,
            address: address.to_string(),
            what: format!("binds[{b}].port of {}", config.source.file),
        })
        .collect()
}

/// Each port is free: bound for a moment the way Envoy and the issuer will bind it (both set
/// `SO_REUSEADDR`, as std does, so a port that only has connections in `TIME_WAIT` passes and
/// one something listens on does not). Port 0 asks for any free port and is not checked.
pub fn check_ports(ports: &[Port]) -> Result<(), PreflightError> {
    for (i, port) in ports.iter().enumerate() {
        if port.port == 0 {
            continue;
        }
        if let Some(first) = ports
            .get(..i)
            .into_iter()
            .flatten()
            .find(|p| p.port == port.port)
        {
            return Err(PreflightError::PortTwice {
                port: port.port,
                first: first.what.clone(),
                second: port.what.clone(),
            });
        }
        match std::net::TcpListener::bind((port.address.as_str(), port.port)) {
            Ok(listener) => drop(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(PreflightError::PortInUse {
                    port: port.port,
                    address: port.address.clone(),
                    what: port.what.clone(),
                });
            }
            Err(e) => {
                return Err(PreflightError::CannotBind {
                    port: port.port,
                    address: port.address.clone(),
                    what: port.what.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Every `stdio` command is an executable file, found as the shim will run it: on `PATH` (the
/// target's own `env.PATH` if it sets one), or, with a `/`, relative to the target's `cwd`.
/// Otherwise the first session would fail, long after `up` said the gateway was up.
pub fn check_commands(config: &Config) -> Result<(), FileError> {
    for route in config.routes() {
        for (i, backend) in route.route.backends.iter().enumerate() {
            let crate::config::Backend::Mcp(mcp) = backend;
            for (t, target) in mcp.targets.iter().enumerate() {
                let Some(stdio) = &target.stdio else { continue };
                if let Err(reason) = resolve(stdio) {
                    return Err(config.source.error(ConfigError::new(
                        format!("{}.backends[{i}].mcp.targets[{t}].stdio.cmd", route.at),
                        format!("target {:?}: {reason}", target.name),
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Where `stdio.cmd` is, or why it cannot be run.
fn resolve(stdio: &Stdio) -> Result<PathBuf, String> {
    let cmd = stdio.cmd.as_str();
    if cmd.contains('/') {
        let path = match &stdio.cwd {
            Some(cwd) if Path::new(cmd).is_relative() => cwd.join(cmd),
            _ => PathBuf::from(cmd),
        };
        return match runnable(&path) {
            Ok(()) => Ok(path),
            Err(why) => Err(format!("command {cmd:?} ({}) {why}", path.display())),
        };
    }
    let search: OsString = stdio
        .env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let mut found_unrunnable = None;
    for dir in std::env::split_paths(&search) {
        let path = dir.join(cmd);
        match runnable(&path) {
            Ok(()) => return Ok(path),
            Err(why) if path.exists() && found_unrunnable.is_none() => {
                found_unrunnable = Some(format!("{} {why}", path.display()));
            }
            Err(_) => {}
        }
    }
    Err(match found_unrunnable {
        Some(what) => format!("command {cmd:?} is not runnable: {what}"),
        None => format!("command {cmd:?} is not found on PATH"),
    })
}

fn runnable(path: &Path) -> Result<(), &'static str> {
    let meta = std::fs::metadata(path).map_err(|_| "does not exist")?;
    if !meta.is_file() {
        return Err("is not a file");
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("is not executable");
    }
    Ok(())
}

/// Every issuer of the config on the local issuer's origin is the one the local issuer
/// announced, byte for byte: the filter compares `iss` exactly, so one that differs even by a
/// trailing slash would refuse every token the issuer signs.
pub fn check_issuer(config: &Config, local: &str) -> Result<(), FileError> {
    let local_origin = origin(local);
    for route in config.routes() {
        let issuer = route
            .route
            .policies
            .as_ref()
            .and_then(|p| p.pointer("/mcpAuthentication/issuer"))
            .and_then(Json::as_str);
        let Some(issuer) = issuer else { continue };
        if issuer == local || origin(issuer) != local_origin {
            continue;
        }
        return Err(config.source.error(ConfigError::new(
            format!("{}.policies.mcpAuthentication.issuer", route.at),
            format!(
                "{issuer:?} is not the local issuer's {local:?}: tokens carry the local \
                 issuer's, and the issuer is compared exactly, so every token would be \
                 refused; write issuer: {local}"
            ),
        )));
    }
    Ok(())
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url
        .get(start..)
        .and_then(|rest| rest.find('/'))
        .map_or(url.len(), |i| start + i);
    url.get(..end).unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cmd: &str, issuer: &str) -> Config {
        with_stdio(&format!("cmd: {cmd}"), issuer)
    }

    fn with_stdio(stdio: &str, issuer: &str) -> Config {
        let stdio = stdio.replace('\n', "\n              ");
        Config::parse(&format!(
            "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - mcp:\n          targets:\n          - name: srv\n            stdio:\n              {stdio}\n      policies:\n        mcpAuthentication:\n          issuer: {issuer}\n          audiences: []\n          jwks: {{url: http://127.0.0.1:9000/k}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn commands_are_found_as_the_shim_runs_them() {
        let issuer = "http://127.0.0.1:9000/oauth2/default";
        check_commands(&config("sh", issuer)).unwrap();
        check_commands(&config("/bin/sh", issuer)).unwrap();
        let e = check_commands(&config("no-such-command-anywhere", issuer)).unwrap_err();
        assert_eq!(
            e.path,
            "binds[0].listeners[0].routes[0].backends[0].mcp.targets[0].stdio.cmd"
        );
        assert_eq!(
            e.reason,
            "target \"srv\": command \"no-such-command-anywhere\" is not found on PATH"
        );
        assert_eq!(e.at.map(|a| (a.line, a.column)), Some((10, 20)));

        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        file("server", 0o755);
        file("notes", 0o644);
        let d = dir.path().display();
        let e = check_commands(&config(&format!("{d}/notes"), issuer)).unwrap_err();
        assert!(e.reason.ends_with("notes) is not executable"), "{e}");
        let e = check_commands(&config(&d.to_string(), issuer)).unwrap_err();
        assert!(e.reason.ends_with("is not a file"), "{e}");
        // A relative path is the target's `cwd`'s; a bare name is looked up on its own PATH.
        check_commands(&with_stdio(&format!("cmd: ./server\ncwd: {d}"), issuer)).unwrap();
        let e = check_commands(&config("./server", issuer)).unwrap_err();
        assert!(e.reason.contains("does not exist"), "{e}");
        check_commands(&with_stdio(
            &format!("cmd: server\nenv: {{PATH: {d}}}"),
            issuer,
        ))
        .unwrap();
        let e = check_commands(&with_stdio(
            &format!("cmd: notes\nenv: {{PATH: {d}}}"),
            issuer,
        ))
        .unwrap_err();
        assert!(e.reason.contains("is not runnable"), "{e}");
    }

    #[test]
    fn the_local_issuer_must_be_named_exactly() {
        let local = "http://127.0.0.1:9000/oauth2/default";
        check_issuer(&config("sh", local), local).unwrap();
        // Another origin is another issuer, not the local one.
        check_issuer(&config("sh", "https://o.okta.com/oauth2/default"), local).unwrap();
        let e = check_issuer(&config("sh", &format!("{local}/")), local).unwrap_err();
        assert!(
            e.reason.starts_with(
                "\"http://127.0.0.1:9000/oauth2/default/\" is not the local issuer's \
                 \"http://127.0.0.1:9000/oauth2/default\""
            ),
            "{e}"
        );
        assert_eq!(e.at.map(|a| (a.line, a.column)), Some((13, 19)));
    }

    #[test]
    fn ports_in_use_are_named() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let e = check_ports(&[Port {
            port,
            address: "127.0.0.1".into(),
            what: "Envoy's admin port".into(),
        }])
        .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "port {port} on 127.0.0.1 is already in use (Envoy's admin port)"
            )),
            "{e}"
        );
        drop(held);
        let twice = |what: &str| Port {
            port,
            address: "127.0.0.1".into(),
            what: what.into(),
        };
        let e = check_ports(&[twice("a"), twice("b")]).unwrap_err();
        assert_eq!(e.to_string(), format!("port {port} is both a and b"));
        check_ports(&[twice("a")]).unwrap();
    }
}
