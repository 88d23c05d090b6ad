//! The registration facade as configured: what `mcpAuthentication.registration` holds,
//! checked once when the policy compiles. `discovery` serves it; keeping the configuration here
//! lets the policy compile it without depending on the code that answers requests.

use serde::Deserialize;

use crate::config_error::ConfigError;
use crate::location::Location;

/// `mcpAuthentication.registration` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRegistration {
    client_id: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
}

/// The compiled registration facade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facade {
    /// The public client every registration is answered with.
    pub client_id: String,
    /// The sign-in redirect URIs registered for that client at the issuer.
    pub redirect_uris: Vec<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: Option<String>,
}

impl Facade {
    /// Checks the facade's configuration; endpoints default to Okta's layout when `okta`
    /// (`provider: okta`). `jwks_uri`: where the keys are, when discovery does not say.
    pub fn compile(
        raw: RawRegistration,
        path: &str,
        issuer: &str,
        okta: bool,
        jwks_uri: Option<String>,
    ) -> Result<Facade, ConfigError> {
        let client_id = raw
            .client_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.clientId"),
                    "is required: the id of the public (native) client registered at the issuer",
                )
            })?;
        if raw.redirect_uris.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.redirectUris"),
                "is required: the sign-in redirect URIs registered for the client at the issuer",
            ));
        }
        for (i, uri) in raw.redirect_uris.iter().enumerate() {
            check_redirect(uri)
                .map_err(|reason| ConfigError::new(format!("{path}.redirectUris[{i}]"), reason))?;
        }
        let issuer = issuer.trim_end_matches('/');
        let endpoint = |value: Option<String>, name: &str, okta_path: &str| {
            let url = match value {
                Some(url) => url,
                None if okta => format!("{issuer}{okta_path}"),
                None => {
                    return Err(ConfigError::new(
                        format!("{path}.{name}"),
                        "is required unless `provider: okta` gives Okta's endpoints",
                    ));
                }
            };
            Location::parse(&url, None)
                .map_err(|reason| ConfigError::new(format!("{path}.{name}"), reason.to_string()))?;
            Ok(url)
        };
        let authorization_endpoint = endpoint(
            raw.authorization_endpoint,
            "authorizationEndpoint",
            "/v1/authorize",
        )?;
        let token_endpoint = endpoint(raw.token_endpoint, "tokenEndpoint", "/v1/token")?;
        Ok(Facade {
            client_id,
            redirect_uris: raw.redirect_uris,
            authorization_endpoint,
            token_endpoint,
            jwks_uri,
        })
    }
}

/// A redirect URI a native client can use: absolute, no fragment, `http` only on loopback
/// (RFC 8252), and no scheme a browser would run or read locally.
pub(crate) fn check_redirect(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!("{uri:?} is not an absolute URI"));
    };
    let valid_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_scheme || rest.is_empty() {
        return Err(format!("{uri:?} is not an absolute URI"));
    }
    if uri.contains('#') {
        return Err(format!("{uri:?} has a fragment"));
    }
    let scheme = scheme.to_ascii_lowercase();
    if ["javascript", "data", "vbscript", "file", "blob", "about"].contains(&scheme.as_str()) {
        return Err(format!("{uri:?} uses a scheme no application can receive"));
    }
    if scheme == "http" {
        let authority = rest
            .trim_start_matches("//")
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        let loopback =
            host.eq_ignore_ascii_case("localhost") || host == "::1" || host.starts_with("127.");
        if !loopback {
            return Err(format!(
                "{uri:?} is plain http on a host that is not loopback"
            ));
        }
    }
    Ok(())
}
