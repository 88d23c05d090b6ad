//! Redirect URIs: which ones a client may register and when a presented one matches.
//!
//! A presented `redirect_uri` must equal a registered one character for character (OAuth 2.1,
//! RFC 9700 §4.1.3), with one exception from RFC 8252 §7.3: for `http` on a loopback host
//! (`127.0.0.1`, `[::1]`, `localhost`) the port is not compared, because native apps such as
//! MCP clients listen on whatever port the OS gives them at login time. A client registers
//! `http://127.0.0.1/callback` (or any port) and may come back on `http://127.0.0.1:53712/callback`.
//! Host, path and query still match exactly: `localhost` and `127.0.0.1` are different hosts.
//!
//! Registration accepts `https` anywhere, `http` only on loopback hosts, and private-use
//! schemes (`com.example.app:/cb`, `cursor://…`, RFC 8252 §7.1) except the ones a browser would
//! run or read locally.

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("redirect URI `{0}` is not an absolute URI")]
    NotAbsolute(String),
    #[error("redirect URI `{0}` has a fragment")]
    Fragment(String),
    #[error("redirect URI `{0}` uses plain http on a host that is not loopback")]
    InsecureHttp(String),
    #[error("redirect URI `{0}` uses a scheme a browser would not hand to an application")]
    ForbiddenScheme(String),
}

/// Schemes that would run script or read local content instead of reaching an application.
const FORBIDDEN_SCHEMES: [&str; 6] = ["javascript", "data", "file", "blob", "about", "vbscript"];

pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks a redirect URI a client asks to register.
pub fn validate(uri: &str) -> Result<Url, RedirectError> {
    let url = Url::parse(uri).map_err(|_| RedirectError::NotAbsolute(uri.to_owned()))?;
    if url.fragment().is_some() {
        return Err(RedirectError::Fragment(uri.to_owned()));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => return Err(RedirectError::InsecureHttp(uri.to_owned())),
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => {
            return Err(RedirectError::ForbiddenScheme(uri.to_owned()));
        }
        _ => {}
    }
    Ok(url)
}

/// Whether `presented` may be used for a client that registered `registered`.
pub fn matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(mut registered), Ok(mut presented)) = (Url::parse(registered), Url::parse(presented))
    else {
        return false;
    };
    let loopback = |url: &Url| url.scheme() == "http" && is_loopback_host(url);
    if !loopback(&registered) || !loopback(&presented) {
        return false;
    }
    // Only the port may differ; set_port cannot fail on an http URL with a host.
    if registered.set_port(None).is_err() || presented.set_port(None).is_err() {
        return false;
    }
    registered.as_str() == presented.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_takes_https_loopback_http_and_app_schemes() {
        for uri in [
            "https://app.example/cb",
            "http://127.0.0.1/callback",
            "http://[::1]:8080/callback",
            "http://localhost:3334/oauth/callback",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(validate(uri).is_ok(), "{uri}");
        }
        // Each error carries the refused URI.
        type Refusal = fn(String) -> RedirectError;
        let refused: [(&str, Refusal); 4] = [
            ("http://app.example/cb", RedirectError::InsecureHttp),
            ("https://app.example/cb#x", RedirectError::Fragment),
            ("javascript:alert(1)", RedirectError::ForbiddenScheme),
            ("/relative", RedirectError::NotAbsolute),
        ];
        for (uri, error) in refused {
            assert_eq!(validate(uri), Err(error(uri.to_owned())));
        }
    }

    #[test]
    fn loopback_ports_float_and_nothing_else_does() {
        assert!(matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53712/callback"
        ));
        assert!(matches(
            "http://localhost:1/callback",
            "http://localhost:2/callback"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53712/other"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://localhost:53712/callback"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:1/callback?extra=1"
        ));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example/cb/"
        ));
        assert!(matches("https://app.example/cb", "https://app.example/cb"));
    }
}
