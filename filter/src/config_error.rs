//! A configuration that cannot be used: the field it is about and why. One type for every
//! part of the configuration, so the shim can point at the user's line whichever part failed.

/// A configuration that cannot be used, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `policies.mcpAuthentication.issuer`.
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// From a `serde_path_to_error` failure: the field's path, and serde's reason without the
    /// location serde_yaml repeats at its start. `root` names the document when the path is
    /// empty.
    pub fn from_serde(path: String, reason: String, root: &str) -> ConfigError {
        let path = if path == "." || path.is_empty() {
            root.to_string()
        } else {
            path
        };
        let reason = match reason.split_once(": ") {
            Some((at, rest)) if !at.contains(' ') && path.starts_with(at) => rest.to_string(),
            _ => reason,
        };
        ConfigError::new(path, reason)
    }
}
