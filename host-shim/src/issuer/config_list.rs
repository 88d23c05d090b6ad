//! What the issuer's two configured lists, its clients and the people who log in, have in
//! common: each comes from a repeated flag (`--client`, `--user`) and from the clients file,
//! a flag's value is colon-separated fields of which some are comma-separated lists, and each
//! entry is known by a name that must be unique.

use std::collections::HashSet;
use std::str::SplitN;

/// An entry of a configured list.
pub trait Entry {
    /// What the entry is called in errors: `client` or `user`.
    const KIND: &'static str;

    /// The name the entry is known by, unique in its list.
    fn name(&self) -> &str;

    /// What else the entry needs to be usable.
    fn check(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Flags and file together; `defaults` only when both are empty, so that configuring one
/// entry never leaves the well-known default secrets or passwords usable.
pub fn resolve<T: Entry>(
    flags: Vec<T>,
    file: Vec<T>,
    defaults: fn() -> Vec<T>,
) -> anyhow::Result<Vec<T>> {
    let mut entries = flags;
    entries.extend(file);
    if entries.is_empty() {
        entries = defaults();
    }
    let mut seen = HashSet::new();
    for entry in &entries {
        anyhow::ensure!(
            seen.insert(entry.name()),
            "{} `{}` is configured twice",
            T::KIND,
            entry.name()
        );
        entry.check()?;
    }
    Ok(entries)
}

/// A flag's value split at its first `fields - 1` colons: the entry's name and secret (the
/// first two fields, neither of which may be empty) and the fields that follow. The error shows
/// the flag's `form`.
pub fn split_spec<'s, T: Entry>(
    spec: &'s str,
    fields: usize,
    form: &str,
) -> Result<(&'s str, &'s str, SplitN<'s, char>), String> {
    let mut parts = spec.splitn(fields, ':');
    let name = parts.next().unwrap_or_default();
    let secret = parts.next().unwrap_or_default();
    if name.is_empty() || secret.is_empty() {
        return Err(format!("{} `{spec}`: expected {form}", T::KIND));
    }
    Ok((name, secret, parts))
}

/// A field holding a comma-separated list: its items, trimmed, without empty ones (none when
/// the field is absent).
pub fn list(field: Option<&str>) -> Vec<String> {
    field
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}
