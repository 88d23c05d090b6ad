//! MCP target names: the stdio servers one route serves. When a route serves more than one,
//! the shim prefixes each tool and prompt name with its target (`<target>_<name>`) and the
//! filter splits the prefix off again to judge `mcp.tool.target`. Both sides use this one type
//! and this one split, so they can never disagree about whose tool a name is.

use std::fmt;

/// A target's name: letters, digits, `-` and `_`, as it prefixes tool names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetName(String);

/// Why a target name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetNameError {
    #[error("is empty")]
    Empty,
    #[error(
        "{0:?} has a character other than letters, digits, '-' and '_' (it prefixes tool names as <target>_<tool>)"
    )]
    Character(String),
}

impl TargetName {
    pub fn new(name: &str) -> Result<TargetName, TargetNameError> {
        if name.is_empty() {
            return Err(TargetNameError::Empty);
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(TargetNameError::Character(name.to_string()));
        }
        Ok(TargetName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `name` as a route serving several targets shows it: `<target>_<name>`.
    pub fn prefix(&self, name: &str) -> String {
        format!("{}_{name}", self.0)
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits `<target>_<name>` when the route serves several targets (the shim prefixes names
/// only then); with one target, the name is as written and the target is that one. With
/// several, a name no target prefixes has no target (`""`).
pub fn split<'a>(name: &'a str, targets: &'a [TargetName]) -> (&'a str, &'a str) {
    match targets {
        [] => ("", name),
        [only] => (only.as_str(), name),
        many => many
            .iter()
            .filter_map(|t| {
                let rest = name.strip_prefix(t.as_str())?.strip_prefix('_')?;
                Some((t.as_str(), rest))
            })
            // The longest target wins when one target's name prefixes another's.
            .max_by_key(|(t, _)| t.len())
            .unwrap_or(("", name)),
    }
}

/// Target names for tests and tools that know theirs are valid.
pub fn names(names: &[&str]) -> Result<Vec<TargetName>, TargetNameError> {
    names.iter().map(|n| TargetName::new(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(TargetName::new(""), Err(TargetNameError::Empty));
        assert!(matches!(
            TargetName::new("a.b"),
            Err(TargetNameError::Character(_))
        ));
        assert!(TargetName::new("git-2_x").is_ok());
    }

    #[test]
    fn the_longest_target_prefix_wins() {
        let many = names(&["a", "a_b"]).unwrap();
        assert_eq!(split("a_b_c", &many), ("a_b", "c"));
        assert_eq!(split("a_x", &many), ("a", "x"));
        assert_eq!(split("zz", &many), ("", "zz"));
        let one = names(&["files"]).unwrap();
        assert_eq!(split("files_read", &one), ("files", "files_read"));
        assert_eq!(split("x", &[]), ("", "x"));
    }

    #[test]
    fn a_prefixed_name_splits_back_to_its_target() {
        let many = names(&["files", "files_x", "git"]).unwrap();
        for t in &many {
            assert_eq!(split(&t.prefix("read"), &many), (t.as_str(), "read"));
        }
    }
}
