//! The people who can log in at the local issuer's login page, standing in for an Okta org's
//! directory: each has a login, a password and the groups Okta's `groups` claim would list.
//! They come from `--user` flags or the `users:` list of the clients file; with neither, two
//! defaults exist so that the Okta guide's group rule has one person who passes it (`alice`, in
//! AI-Users) and one who does not (`bob`).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::config_list::{self, Entry};
use super::okta_id::okta_id;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The login: what the person types and what becomes the token's `sub`.
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Okta's user id (`uid`); derived from the login when not given, so it is stable across
    /// runs and a policy written against it keeps working after a restart.
    pub uid: Option<String>,
}

impl User {
    /// The Okta user id: the one configured, or one derived from the login.
    pub fn uid(&self) -> String {
        self.uid
            .clone()
            .unwrap_or_else(|| okta_id("00u", &Sha256::digest(self.name.as_bytes())))
    }
}

/// The people used when none are configured. Documented in docs/login.md; tests rely on them.
pub fn defaults() -> Vec<User> {
    vec![
        User {
            name: "alice".to_owned(),
            password: "alice-password".to_owned(),
            groups: vec!["AI-Users".to_owned(), "Everyone".to_owned()],
            uid: None,
        },
        User {
            name: "bob".to_owned(),
            password: "bob-password".to_owned(),
            groups: vec!["Everyone".to_owned()],
            uid: None,
        },
    ]
}

/// Parses `name:password[:group,group…]`, the `--user` flag's format. Passwords cannot contain
/// `:` in this form; use the clients file for those.
pub fn parse_spec(spec: &str) -> Result<User, String> {
    let (name, password, mut rest) =
        config_list::split_spec::<User>(spec, 3, "name:password[:group,group…]")?;
    Ok(User {
        name: name.to_owned(),
        password: password.to_owned(),
        groups: config_list::list(rest.next()),
        uid: None,
    })
}

impl Entry for User {
    const KIND: &'static str = "user";

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_the_groups() {
        let user = parse_spec("carol:pw:AI-Users, Ops").unwrap();
        assert_eq!(user.name, "carol");
        assert_eq!(user.password, "pw");
        assert_eq!(user.groups, ["AI-Users", "Ops"]);
        assert!(parse_spec("carol:pw").unwrap().groups.is_empty());
        assert!(parse_spec("carol").is_err());
        assert!(parse_spec(":pw").is_err());
    }

    #[test]
    fn uids_are_stable_okta_shaped_and_distinct() {
        let alice = &defaults()[0];
        assert_eq!(alice.uid(), alice.uid());
        assert_eq!(alice.uid().len(), 20);
        assert!(alice.uid().starts_with("00u"));
        assert_ne!(alice.uid(), defaults()[1].uid());
        let pinned = User {
            uid: Some("00uPINNED".to_owned()),
            ..alice.clone()
        };
        assert_eq!(pinned.uid(), "00uPINNED");
    }

    #[test]
    fn configured_users_replace_the_defaults_and_must_be_unique() {
        let users =
            config_list::resolve(vec![parse_spec("carol:pw").unwrap()], Vec::new(), defaults)
                .unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(
            config_list::resolve(Vec::new(), Vec::new(), defaults).unwrap(),
            defaults()
        );
        let twice = vec![parse_spec("a:b").unwrap(), parse_spec("a:c").unwrap()];
        assert!(config_list::resolve(twice, Vec::new(), defaults).is_err());
    }
}
