//! Service-principal tokens from Azure AD or AD FS, discovered from an ARM endpoint's metadata.
//!
//! azure_identity's `ClientSecretCredential` speaks only the v2 (`scope=`) endpoint of Entra ID,
//! while AD FS (disconnected Stack Hub) needs the v1 endpoint with `resource=`; so this module
//! implements azure_core's [`TokenCredential`] itself, for both, with a shared cache.

mod authority;
mod cache;
mod metadata;
mod token;
mod trust;
mod workload;

pub use authority::{Authority, IdentityProvider, identity_provider};
pub use cache::{TokenCache, TokenKey};
pub use metadata::{CloudMetadata, METADATA_API_VERSION, discover, metadata_url, parse_metadata};
pub use token::{
    SecretDigest, ServicePrincipal, is_fresh, parse_token_response, request_token,
    resource_for_scope, scope_for_resource,
};
pub use trust::{EndpointPolicy, is_loopback, require_secure};
pub use workload::WorkloadIdentityCredential;

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use url::Url;

use crate::Result;

/// Client-credentials credential for one authority, usable wherever azure_core wants a
/// [`TokenCredential`].
#[derive(Debug, Clone)]
pub struct ClientSecretCredential {
    http: reqwest::Client,
    authority: Authority,
    principal: ServicePrincipal,
    known_resources: Vec<String>,
    cache: Arc<TokenCache>,
}

impl ClientSecretCredential {
    /// `known_resources`: audiences from metadata, kept verbatim when mapped from scopes.
    pub fn new(
        http: reqwest::Client,
        authority: Authority,
        principal: ServicePrincipal,
        known_resources: Vec<String>,
        cache: Arc<TokenCache>,
    ) -> Self {
        Self {
            http,
            authority,
            principal,
            known_resources,
            cache,
        }
    }

    /// Discover the authority from `{arm}/metadata/endpoints` and build a credential for it,
    /// with the default [`EndpointPolicy`] (any https endpoint, http on loopback).
    /// Returns the credential and ARM's audience.
    pub async fn discover(
        http: reqwest::Client,
        arm: &Url,
        principal: ServicePrincipal,
        cache: Arc<TokenCache>,
    ) -> Result<(Self, String)> {
        Self::discover_within(http, arm, principal, cache, &EndpointPolicy::default()).await
    }

    /// [`Self::discover`], refusing an ARM endpoint or a discovered login endpoint that `policy`
    /// does not allow, before anything secret is sent.
    pub async fn discover_within(
        http: reqwest::Client,
        arm: &Url,
        principal: ServicePrincipal,
        cache: Arc<TokenCache>,
        policy: &EndpointPolicy,
    ) -> Result<(Self, String)> {
        policy.check_arm_endpoint(arm)?;
        let md = discover(&http, arm).await?;
        // The metadata is the ARM endpoint's word; the secret goes where it points only when
        // the operator trusts that place too.
        policy.check_authority(&md.login_endpoint)?;
        let authority = Authority::new(md.login_endpoint.clone(), &principal.tenant)?;
        let audience = md.arm_audience().to_string();
        Ok((
            Self::new(http, authority, principal, md.audiences, cache),
            audience,
        ))
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// A token for a v1 `resource`, from the cache when fresh.
    pub async fn token_for_resource(&self, resource: &str) -> Result<AccessToken> {
        let key = TokenKey {
            authority: self.authority.login_endpoint().to_string(),
            tenant: self.authority.tenant().to_string(),
            client_id: self.principal.client_id.clone(),
            secret: self.principal.secret_digest(),
            audience: resource.to_string(),
        };
        self.cache
            .get_or_fetch(&key, || self.request_token(resource))
            .await
    }

    async fn request_token(&self, resource: &str) -> Result<AccessToken> {
        let url = self.authority.token_url()?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.principal.client_id.as_str()),
            ("client_secret", self.principal.client_secret.secret()),
            ("resource", resource),
        ];
        tracing::debug!(token_url = %url, client_id = %self.principal.client_id, resource, "requesting token");
        request_token(&self.http, &url, &form).await
    }
}

/// The one scope a token request names (both credentials ask for one resource at a time).
pub(crate) fn single_scope<'a>(scopes: &[&'a str]) -> azure_core::Result<&'a str> {
    match scopes {
        [scope] => Ok(scope),
        _ => Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!("expected exactly one scope, got {}", scopes.len()),
        )),
    }
}

#[async_trait::async_trait]
impl TokenCredential for ClientSecretCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // v1 endpoints take exactly one resource.
        let scope = single_scope(scopes)?;
        let resource = resource_for_scope(scope, &self.known_resources);
        self.token_for_resource(&resource).await.map_err(|e| {
            azure_core::Error::with_error(
                azure_core::error::ErrorKind::Credential,
                e,
                "service principal token request failed",
            )
        })
    }
}
