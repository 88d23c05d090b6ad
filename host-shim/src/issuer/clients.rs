//! The OAuth clients the local issuer knows, standing in for Okta "API Services" applications:
//! each has a secret, the scopes it was granted and the groups its tokens carry (what an Okta
//! admin would configure with a `groups` claim). They come from `--client` flags or a YAML file;
//! with neither, two defaults exist so that the Okta guide's group rule has one client that
//! passes it and one that does not. A file entry may also list `redirect_uris`, which lets the
//! client send people through the login page (an Okta "Web" or, without a secret, "Native"
//! application); the same file may list the people who log in (`users`).

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

use super::config_list::{self, Entry};
use super::users::User;

/// The scope the Okta guide tells you to create and grant.
pub const DEFAULT_SCOPE: &str = "agentgateway";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub id: String,
    /// None for a public client (one that logs people in but holds no secret, as an MCP client
    /// on someone's laptop does); such a client cannot use the client-credentials grant.
    pub secret: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Where the login page may send people back to; empty for a machine-only client.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsFile {
    #[serde(default)]
    pub clients: Vec<Client>,
    #[serde(default)]
    pub users: Vec<User>,
}

fn default_scopes() -> Vec<String> {
    vec![DEFAULT_SCOPE.to_owned()]
}

/// The clients used when none are configured. Documented in docs/login.md; tests rely on them.
pub fn defaults() -> Vec<Client> {
    vec![
        Client {
            id: "ai-user".to_owned(),
            secret: Some("ai-user-secret".to_owned()),
            groups: vec!["AI-Users".to_owned(), "Everyone".to_owned()],
            scopes: default_scopes(),
            redirect_uris: Vec::new(),
        },
        Client {
            id: "plain-user".to_owned(),
            secret: Some("plain-user-secret".to_owned()),
            groups: vec!["Everyone".to_owned()],
            scopes: default_scopes(),
            redirect_uris: Vec::new(),
        },
    ]
}

/// Parses `id:secret[:group,group…[:scope,scope…]]`, the `--client` flag's format. Secrets
/// cannot contain `:` in this form; use the YAML file for those.
pub fn parse_spec(spec: &str) -> Result<Client, String> {
    let (id, secret, mut rest) =
        config_list::split_spec::<Client>(spec, 4, "id:secret[:group,group…[:scope,scope…]]")?;
    let groups = config_list::list(rest.next());
    let scopes = match config_list::list(rest.next()) {
        scopes if scopes.is_empty() => default_scopes(),
        scopes => scopes,
    };
    Ok(Client {
        id: id.to_owned(),
        secret: Some(secret.to_owned()),
        groups,
        scopes,
        redirect_uris: Vec::new(),
    })
}

/// Reads a file of the form `clients: [{id, secret, groups, scopes, redirect_uris}]` and
/// `users: [{name, password, groups, uid}]`, both lists optional.
pub fn load_file(path: &Path) -> anyhow::Result<ClientsFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading clients file {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing clients file {}", path.display()))
}

impl Entry for Client {
    const KIND: &'static str = "client";

    fn name(&self) -> &str {
        &self.id
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.secret.is_some() || !self.redirect_uris.is_empty(),
            "client `{}` has neither a secret nor redirect_uris: nothing could use it",
            self.id
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spec_names_groups_and_scopes() {
        let client = parse_spec("bot:s3cret:AI-Users,Everyone:agentgateway,extra").unwrap();
        let expected = Client {
            id: "bot".to_owned(),
            secret: Some("s3cret".to_owned()),
            groups: vec!["AI-Users".to_owned(), "Everyone".to_owned()],
            scopes: vec!["agentgateway".to_owned(), "extra".to_owned()],
            // A flag's client is for machines only: it sends no one back anywhere.
            redirect_uris: Vec::new(),
        };
        assert_eq!(client, expected);
    }

    #[test]
    fn a_short_spec_gets_no_groups_and_the_guide_scope() {
        let client = parse_spec("bot:s3cret").unwrap();
        assert!(client.groups.is_empty());
        assert_eq!(client.scopes, [DEFAULT_SCOPE]);
    }

    #[test]
    fn a_spec_without_secret_is_rejected() {
        for spec in ["bot", ":x"] {
            assert!(parse_spec(spec).is_err(), "{spec}");
        }
    }

    #[test]
    fn defaults_have_one_client_in_ai_users_and_one_not() {
        let clients = config_list::resolve(Vec::new(), Vec::new(), defaults).unwrap();
        assert!(clients[0].groups.iter().any(|g| g == "AI-Users"));
        assert!(!clients[1].groups.iter().any(|g| g == "AI-Users"));
    }

    #[test]
    fn configured_clients_replace_the_defaults() {
        let clients =
            config_list::resolve(vec![parse_spec("a:b").unwrap()], Vec::new(), defaults).unwrap();
        assert_eq!(clients.len(), 1);
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let twice = vec![parse_spec("a:b").unwrap(), parse_spec("a:c").unwrap()];
        assert!(config_list::resolve(twice, Vec::new(), defaults).is_err());
    }

    #[test]
    fn a_file_lists_login_clients_and_people() {
        let file: ClientsFile = serde_yaml::from_str(
            "clients:\n\
             - id: laptop\n  redirect_uris: [\"http://127.0.0.1/callback\"]\n\
             users:\n\
             - name: carol\n  password: pw\n  groups: [Ops]\n",
        )
        .unwrap();
        let clients = config_list::resolve(Vec::new(), file.clients, defaults).unwrap();
        assert_eq!(clients[0].secret, None);
        assert_eq!(clients[0].redirect_uris, ["http://127.0.0.1/callback"]);
        assert_eq!(file.users[0].groups, ["Ops"]);
        let useless: ClientsFile = serde_yaml::from_str("clients: [{id: nothing}]").unwrap();
        assert!(config_list::resolve(Vec::new(), useless.clients, defaults).is_err());
    }
}
