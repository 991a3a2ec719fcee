//! Workload identity (federated credentials), for public Azure (Azure ML): the pod's
//! Kubernetes service-account token, projected into a file (Azure Workload Identity's webhook
//! sets `AZURE_FEDERATED_TOKEN_FILE`), is exchanged for an Entra ID token with the
//! client-credentials grant and a JWT client assertion. AD FS (disconnected Stack Hub) has no
//! workload identity, so an AD FS authority is refused.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    time::OffsetDateTime,
};

use super::{Authority, IdentityProvider, is_fresh, request_token};
use crate::{Error, Result, transport::join_url};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Exchanges the projected service-account token for tokens of `client_id`.
#[derive(Debug)]
pub struct WorkloadIdentityCredential {
    http: reqwest::Client,
    authority: Authority,
    client_id: String,
    token_file: PathBuf,
    skew: Duration,
    cached: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

impl WorkloadIdentityCredential {
    pub fn new(
        http: reqwest::Client,
        authority: Authority,
        client_id: &str,
        token_file: PathBuf,
    ) -> Result<Self> {
        if authority.provider() == IdentityProvider::Adfs {
            return Err(Error::InvalidInput(
                "workload identity needs Entra ID; AD FS has none".into(),
            ));
        }
        if client_id.trim().is_empty() {
            return Err(Error::InvalidInput("client id must not be empty".into()));
        }
        Ok(Self {
            http,
            authority,
            client_id: client_id.trim().to_string(),
            token_file,
            skew: Duration::from_secs(300),
            cached: tokio::sync::Mutex::default(),
        })
    }

    /// The v2 endpoint: client assertions are exchanged for `scope`s there.
    fn token_url(&self) -> Result<url::Url> {
        join_url(
            self.authority.login_endpoint(),
            &format!("{}/oauth2/v2.0/token", self.authority.tenant()),
        )
    }

    async fn request(&self, scope: &str) -> Result<AccessToken> {
        // Read every time: the kubelet rotates the projected token.
        let assertion = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|source| Error::Io {
                path: self.token_file.display().to_string(),
                source,
            })?;
        let url = self.token_url()?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.trim()),
            ("scope", scope),
        ];
        request_token(&self.http, &url, &form).await
    }

    /// A token for `scope`, from the cache while fresh.
    pub async fn token(&self, scope: &str) -> Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.get(scope)
            && is_fresh(t, OffsetDateTime::now_utc(), self.skew)
        {
            return Ok(t.clone());
        }
        let t = self.request(scope).await?;
        cached.insert(scope.to_string(), t.clone());
        Ok(t)
    }
}

#[async_trait::async_trait]
impl TokenCredential for WorkloadIdentityCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let scope = super::single_scope(scopes)?;
        self.token(scope).await.map_err(|e| {
            azure_core::Error::with_error(
                azure_core::error::ErrorKind::Credential,
                e,
                "workload identity token request failed",
            )
        })
    }
}
