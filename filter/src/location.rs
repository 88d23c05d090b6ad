//! Where the filter's own HTTP calls go (the issuer's keys, its OpenID configuration): a URL
//! split into what a proxy-wasm dispatch needs, the cluster, `:authority` and `:path`. Kept
//! apart from the policy so the host seam and the key store can name a call's target without
//! depending on the configuration's compiler.

/// Why a URL cannot be called.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error,
)]
pub enum LocationError {
    #[error("must start with https:// or http://")]
    Scheme,
    #[error("has no host")]
    NoHost,
    #[error("must not carry credentials (user@host)")]
    Credentials,
}

/// Where an HTTP call goes: the URL, and the Envoy cluster that reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub url: String,
    /// The Envoy cluster the call goes through.
    pub cluster: String,
    /// `:authority` of the call: the URL's host and port.
    pub authority: String,
    /// `:path` of the call, query included.
    pub path: String,
}

impl Location {
    /// The location of `url`, through `cluster` or, by default, the cluster named after the
    /// URL's host.
    pub fn parse(url: &str, cluster: Option<String>) -> Result<Location, LocationError> {
        let (authority, host, path) = split_url(url)?;
        Ok(Location {
            url: url.to_string(),
            cluster: cluster.unwrap_or(host),
            authority,
            path,
        })
    }
}

/// Splits `http(s)://authority/path` into (authority, host, path). Userinfo is refused: it
/// would be a credential in a configuration that ends up in logs.
pub fn split_url(url: &str) -> Result<(String, String, String), LocationError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(LocationError::Scheme)?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(LocationError::NoHost);
    }
    if authority.contains('@') {
        return Err(LocationError::Credentials);
    }
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal keeps its brackets; the port, if any, follows them.
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => authority.split(':').next().unwrap_or_default().to_string(),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok((authority.to_string(), host, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("https://h:8443").unwrap(),
            ("h:8443".into(), "h".into(), "/".into())
        );
        assert_eq!(
            split_url("http://[::1]:9000/k").unwrap(),
            ("[::1]:9000".into(), "[::1]".into(), "/k".into())
        );
        assert!(split_url("https://u:p@h/k") == Err(LocationError::Credentials));
        assert!(split_url("https:///k") == Err(LocationError::NoHost));
    }
}
