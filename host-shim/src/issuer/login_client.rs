//! The clients that may send a person through the login page, wherever they come from: the
//! clients file (entries with `redirect_uris`), dynamic registration, or a Client ID Metadata
//! Document fetched on the spot. The authorization endpoint needs all of what a client is; the
//! token endpoint only needs to know which secret, if any, the client must present, and never
//! fetches anything: a document client is public, and its codes and refresh tokens are bound to
//! its client id.

use super::Issuer;
use super::metadata_document::{self, DocumentError};
use super::redirect;

/// What the authorization endpoint knows about a client.
#[derive(Debug, Clone)]
pub struct LoginClient {
    pub id: String,
    /// What the login page calls it.
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub refresh_allowed: bool,
    /// The only scopes it may ask for, when it registered some.
    pub scopes: Option<Vec<String>>,
}

impl LoginClient {
    /// The registered redirect URI `presented` matches, if any.
    pub fn allows_redirect(&self, presented: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| redirect::matches(registered, presented))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("No client is registered with client_id `{0}`.")]
    Unknown(String),
    #[error("Client `{0}` has no redirect_uris: it can only use the client_credentials grant.")]
    NotForLogin(String),
    #[error("Client `{id}` could not be identified by its metadata document: {source}")]
    Document {
        id: String,
        #[source]
        source: DocumentError,
    },
}

fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

/// Finds (or, for a document URL, fetches) the client named `client_id`.
pub async fn resolve(issuer: &Issuer, client_id: &str) -> Result<LoginClient, ClientError> {
    if let Some(client) = issuer.clients.iter().find(|c| c.id == client_id) {
        if client.redirect_uris.is_empty() {
            return Err(ClientError::NotForLogin(client_id.to_owned()));
        }
        return Ok(LoginClient {
            id: client.id.clone(),
            name: client.id.clone(),
            redirect_uris: client.redirect_uris.clone(),
            refresh_allowed: true,
            scopes: None,
        });
    }
    if let Some(client) = issuer.registered(client_id) {
        return Ok(LoginClient {
            name: client
                .client_name
                .clone()
                .unwrap_or_else(|| client_id.to_owned()),
            id: client.client_id,
            redirect_uris: client.redirect_uris,
            refresh_allowed: client.grant_types.iter().any(|g| g == "refresh_token"),
            scopes: client.scopes,
        });
    }
    if metadata_document::is_document_id(client_id) {
        let document = metadata_document::fetch(client_id)
            .await
            .map_err(|source| ClientError::Document {
                id: client_id.to_owned(),
                source,
            })?;
        return Ok(LoginClient {
            id: client_id.to_owned(),
            name: document
                .client_name
                .clone()
                .unwrap_or_else(|| client_id.to_owned()),
            refresh_allowed: document.refresh_allowed(),
            scopes: document.scope.as_deref().map(split_scopes),
            redirect_uris: document.redirect_uris,
        });
    }
    Err(ClientError::Unknown(client_id.to_owned()))
}

/// At the token endpoint: `Ok(Some(secret))` for a confidential client, `Ok(None)` for a public
/// one, `Err` for a client id that names nothing that can hold a login.
pub fn expected_secret(issuer: &Issuer, client_id: &str) -> Result<Option<String>, ClientError> {
    if let Some(client) = issuer.clients.iter().find(|c| c.id == client_id) {
        if client.redirect_uris.is_empty() {
            return Err(ClientError::NotForLogin(client_id.to_owned()));
        }
        return Ok(client.secret.clone());
    }
    if let Some(client) = issuer.registered(client_id) {
        return Ok(client.client_secret);
    }
    if metadata_document::is_document_id(client_id) {
        metadata_document::check_url(client_id).map_err(|source| ClientError::Document {
            id: client_id.to_owned(),
            source,
        })?;
        return Ok(None);
    }
    Err(ClientError::Unknown(client_id.to_owned()))
}
