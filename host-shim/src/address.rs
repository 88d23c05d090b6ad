//! Where `host-shim serve` listens and where Envoy finds it: a loopback TCP address, or a Unix
//! socket (`unix:/path`). The socket is the default of `host-shim up` because only Envoy should
//! reach the shim: the shim trusts the identity header Envoy's filter sets, and on a TCP port
//! any local process could set it too, while a socket made owner-only admits only the user
//! running the gateway.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context as _, bail};

const UNIX_PREFIX: &str = "unix:";

/// A shim address as flags write it: `127.0.0.1:3100` or `unix:/run/shim.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for Address {
    type Err = String;

    fn from_str(text: &str) -> Result<Address, String> {
        if let Some(path) = text.strip_prefix(UNIX_PREFIX) {
            if !path.starts_with('/') {
                return Err(format!(
                    "{text:?}: a socket path must be absolute (Envoy resolves it from its own cwd)"
                ));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let tcp = text.strip_prefix("http://").unwrap_or(text);
        tcp.trim_end_matches('/')
            .parse()
            .map(Address::Tcp)
            .map_err(|e| format!("{text:?} is neither HOST:PORT nor unix:/absolute/path ({e})"))
    }
}

/// As `serve` announces it on its first stdout line (the form `up` reads back).
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "http://{addr}"),
            Address::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

/// A bound listener of either kind.
pub enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, SocketFile),
}

impl Bound {
    /// Binds `address`. A socket is created owner-only (0600) before anything can connect, and
    /// a stale socket file left by a killed shim is replaced; any other file at the path is an
    /// error rather than something to delete.
    pub async fn bind(address: &Address) -> anyhow::Result<Bound> {
        match address {
            Address::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                Ok(Bound::Tcp(listener))
            }
            Address::Unix(path) => {
                remove_stale_socket(path)?;
                // The mode a socket gets at bind comes from the umask: with a chmod alone, a
                // peer could connect (and wait in the backlog) before the chmod.
                let previous =
                    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
                let listener = tokio::net::UnixListener::bind(path);
                nix::sys::stat::umask(previous);
                let listener = listener
                    .with_context(|| format!("cannot listen on {UNIX_PREFIX}{}", path.display()))?;
                let file = SocketFile(path.clone());
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("chmod 0600 {}", path.display()))?;
                Ok(Bound::Unix(listener, file))
            }
        }
    }

    /// The address actually bound (the port a `:0` picked).
    pub fn local_address(&self) -> anyhow::Result<Address> {
        match self {
            Bound::Tcp(listener) => Ok(Address::Tcp(listener.local_addr()?)),
            Bound::Unix(_, file) => Ok(Address::Unix(file.0.clone())),
        }
    }
}

fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display())),
        Ok(_) => bail!(
            "{} exists and is not a socket: not replacing it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// The socket file of a listener: removed when the listener is done with, so a stopped shim
/// leaves no socket behind for a client to find.
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_print_as_serve_announces_them() {
        let tcp: Address = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(tcp, Address::Tcp("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(tcp.to_string(), "http://127.0.0.1:4000");
        assert_eq!("http://127.0.0.1:4000".parse::<Address>().unwrap(), tcp);
        let unix: Address = "unix:/run/shim.sock".parse().unwrap();
        assert_eq!(unix, Address::Unix("/run/shim.sock".into()));
        assert_eq!(unix.to_string(), "unix:/run/shim.sock");
        assert!("unix:shim.sock".parse::<Address>().is_err());
        assert!("localhost".parse::<Address>().is_err());
    }
}
