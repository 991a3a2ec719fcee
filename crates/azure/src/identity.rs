//! Service-principal tokens from Azure AD or AD FS, discovered from an ARM endpoint's metadata.
//!
//! azure_identity's `ClientSecretCredential` speaks only the v2 (`scope=`) endpoint of Entra ID,
//! while AD FS (disconnected Stack Hub) needs the v1 endpoint with `resource=`; so this module
//! implements azure_core's [`TokenCredential`] itself, for both, with a shared cache.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use azure_core::{
    credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions},
    time::OffsetDateTime,
};
use serde::Deserialize;
use url::Url;

use crate::{Error, Result, error::parse_url};

/// api-version of the metadata endpoint (Stack Hub and public Azure both answer it).
pub const METADATA_API_VERSION: &str = "2015-01-01";

/// What `{arm}/metadata/endpoints` says about authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudMetadata {
    /// Authority base, e.g. `https://login.microsoftonline.com/` or `https://adfs.local/adfs/`.
    pub login_endpoint: Url,
    /// Token audiences for this ARM; the first one is ARM's.
    pub audiences: Vec<String>,
}

impl CloudMetadata {
    /// ARM's own audience (`audiences[0]`).
    pub fn arm_audience(&self) -> &str {
        &self.audiences[0]
    }
}

/// URL of the metadata document for an ARM base URL.
pub fn metadata_url(arm: &Url) -> Result<Url> {
    let mut u = join(arm, "metadata/endpoints")?;
    u.query_pairs_mut()
        .append_pair("api-version", METADATA_API_VERSION);
    Ok(u)
}

/// Parse the metadata document; unknown fields are ignored.
pub fn parse_metadata(body: &[u8]) -> Result<CloudMetadata> {
    #[derive(Deserialize)]
    struct Doc {
        authentication: Auth,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Auth {
        login_endpoint: String,
        audiences: Vec<String>,
    }
    let doc: Doc =
        serde_json::from_slice(body).map_err(|e| Error::decode("metadata/endpoints", e))?;
    let audiences: Vec<String> = doc
        .authentication
        .audiences
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    if audiences.is_empty() {
        return Err(Error::decode(
            "metadata/endpoints",
            "authentication.audiences is empty",
        ));
    }
    Ok(CloudMetadata {
        login_endpoint: parse_url(&doc.authentication.login_endpoint)?,
        audiences,
    })
}

/// Fetch and parse `{arm}/metadata/endpoints` (no authentication needed).
pub async fn discover(http: &reqwest::Client, arm: &Url) -> Result<CloudMetadata> {
    let url = metadata_url(arm)?;
    let resp = http
        .get(url.clone())
        .send()
        .await
        .map_err(|source| Error::Transport {
            method: "GET".into(),
            url: url.to_string(),
            source,
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|source| Error::Transport {
        method: "GET".into(),
        url: url.to_string(),
        source,
    })?;
    if !status.is_success() {
        return Err(Error::decode(
            url.to_string(),
            format!("HTTP {status} from metadata endpoint"),
        ));
    }
    parse_metadata(&body)
}

/// Which identity system a login endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityProvider {
    AzureAd,
    Adfs,
}

/// AD FS login endpoints end in `/adfs` (with or without a trailing slash).
pub fn identity_provider(login_endpoint: &Url) -> IdentityProvider {
    if login_endpoint
        .path()
        .trim_end_matches('/')
        .ends_with("/adfs")
    {
        IdentityProvider::Adfs
    } else {
        IdentityProvider::AzureAd
    }
}

/// Where tokens are requested: login endpoint plus tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    login_endpoint: Url,
    tenant: String,
}

impl Authority {
    /// Authority for `tenant` at `login_endpoint`. For AD FS the tenant is always the literal
    /// `adfs` (AD FS is single-tenant), whatever was configured.
    pub fn new(login_endpoint: Url, tenant: &str) -> Result<Self> {
        let tenant = match identity_provider(&login_endpoint) {
            IdentityProvider::Adfs => "adfs".to_string(),
            IdentityProvider::AzureAd => {
                let t = tenant.trim();
                if t.is_empty() || t.contains('/') {
                    return Err(Error::InvalidInput(format!(
                        "tenant {tenant:?} must be a tenant id or domain"
                    )));
                }
                t.to_string()
            }
        };
        Ok(Self {
            login_endpoint,
            tenant,
        })
    }

    pub fn provider(&self) -> IdentityProvider {
        identity_provider(&self.login_endpoint)
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// v1 token endpoint: `{login}{tenant}/oauth2/token`, or `{login}/oauth2/token` for AD FS
    /// (whose login endpoint already ends in the `adfs` tenant segment).
    pub fn token_url(&self) -> Result<Url> {
        match self.provider() {
            IdentityProvider::Adfs => join(&self.login_endpoint, "oauth2/token"),
            IdentityProvider::AzureAd => join(
                &self.login_endpoint,
                &format!("{}/oauth2/token", self.tenant),
            ),
        }
    }
}

/// Join a relative path onto a base URL treating the base as a directory.
pub(crate) fn join(base: &Url, rel: &str) -> Result<Url> {
    let mut b = base.clone();
    if !b.path().ends_with('/') {
        let p = format!("{}/", b.path());
        b.set_path(&p);
    }
    b.join(rel.trim_start_matches('/'))
        .map_err(|source| Error::Url {
            url: format!("{base} + {rel}"),
            source,
        })
}

/// A service principal's client-credentials secret.
#[derive(Debug, Clone)]
pub struct ServicePrincipal {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// The scope azure_core callers pass for a v1 resource.
pub fn scope_for_resource(resource: &str) -> String {
    format!("{}/.default", resource.trim_end_matches('/'))
}

/// Inverse of [`scope_for_resource`]; `known` resources keep their exact spelling (AD FS relying
/// party identifiers must match byte for byte, including a trailing slash).
pub fn resource_for_scope(scope: &str, known: &[String]) -> String {
    if let Some(r) = known.iter().find(|r| scope_for_resource(r) == scope) {
        return r.clone();
    }
    scope.strip_suffix("/.default").unwrap_or(scope).to_string()
}

/// A cached token is used while it is valid for at least `skew` more.
pub fn is_fresh(token: &AccessToken, now: OffsetDateTime, skew: Duration) -> bool {
    token.expires_on - now > skew
}

/// v1 token response. AAD sends `expires_in` as a string, AD FS as a number.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(deserialize_with = "num_or_string")]
    expires_in: i64,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    #[serde(default)]
    error_description: String,
}

fn num_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        S(String),
    }
    match N::deserialize(d)? {
        N::I(i) => Ok(i),
        N::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Turn a token endpoint answer into an [`AccessToken`] (pure).
pub fn parse_token_response(
    token_url: &str,
    status: u16,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<AccessToken> {
    if !(200..300).contains(&status) {
        let (code, description) = match serde_json::from_slice::<TokenErrorResponse>(body) {
            Ok(e) => (e.error, e.error_description),
            Err(_) => ("unknown".into(), String::from_utf8_lossy(body).into_owned()),
        };
        return Err(Error::Token {
            token_url: token_url.to_string(),
            status,
            code,
            description,
        });
    }
    let t: TokenResponse = serde_json::from_slice(body).map_err(|e| Error::decode(token_url, e))?;
    if t.expires_in <= 0 {
        return Err(Error::decode(token_url, "expires_in must be positive"));
    }
    Ok(AccessToken::new(
        t.access_token,
        now + azure_core::time::Duration::seconds(t.expires_in),
    ))
}

/// Cache key: one token per (authority, tenant, client, audience).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub audience: String,
}

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

/// Token cache shared by credentials. Each key has its own async lock, so concurrent callers
/// for one key wait for a single refresh instead of each asking the token endpoint.
#[derive(Debug)]
pub struct TokenCache {
    skew: Duration,
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

impl TokenCache {
    /// `skew`: refresh this long before expiry.
    pub fn new(skew: Duration) -> Self {
        Self {
            skew,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &TokenKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    /// Cached token for `key`, or the result of `fetch` (stored when it succeeds).
    pub async fn get_or_fetch<F, Fut>(&self, key: &TokenKey, fetch: F) -> Result<AccessToken>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AccessToken>>,
    {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if let Some(t) = guard.as_ref()
            && is_fresh(t, OffsetDateTime::now_utc(), self.skew)
        {
            return Ok(t.clone());
        }
        let t = fetch().await?;
        *guard = Some(t.clone());
        Ok(t)
    }
}

impl Default for TokenCache {
    /// Five minutes of skew, as the Azure SDKs use.
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

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

    /// Discover the authority from `{arm}/metadata/endpoints` and build a credential for it.
    /// Returns the credential and ARM's audience.
    pub async fn discover(
        http: reqwest::Client,
        arm: &Url,
        principal: ServicePrincipal,
        cache: Arc<TokenCache>,
    ) -> Result<(Self, String)> {
        let md = discover(&http, arm).await?;
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
            authority: self.authority.login_endpoint.to_string(),
            tenant: self.authority.tenant.clone(),
            client_id: self.principal.client_id.clone(),
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
        let transport = |source| Error::Transport {
            method: "POST".into(),
            url: url.to_string(),
            source,
        };
        let resp = self
            .http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?;
        parse_token_response(url.as_str(), status, &body, OffsetDateTime::now_utc())
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
        let [scope] = scopes else {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("expected exactly one scope, got {}", scopes.len()),
            ));
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parses_and_ignores_unknown_fields() {
        let body = br#"{"galleryEndpoint":"https://g/","graphEndpoint":"https://graph/",
            "portalEndpoint":"https://p/","identityProvider":"ADFS",
            "authentication":{"loginEndpoint":"https://adfs.local.azurestack.external/adfs/",
            "audiences":["https://management.adfs.azurestack.local/4de1"],"tenant":"adfs"}}"#;
        let md = parse_metadata(body).unwrap();
        assert_eq!(
            md.login_endpoint.as_str(),
            "https://adfs.local.azurestack.external/adfs/"
        );
        assert_eq!(
            md.arm_audience(),
            "https://management.adfs.azurestack.local/4de1"
        );
    }

    #[test]
    fn metadata_without_audiences_is_an_error() {
        let body = br#"{"authentication":{"loginEndpoint":"https://login/","audiences":[]}}"#;
        assert!(parse_metadata(body).is_err());
    }

    #[test]
    fn metadata_url_keeps_base_path_and_api_version() {
        let u = metadata_url(&Url::parse("http://127.0.0.1:4000/arm").unwrap()).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:4000/arm/metadata/endpoints?api-version=2015-01-01"
        );
    }

    #[test]
    fn adfs_is_detected_by_path_and_forces_tenant() {
        let login = Url::parse("https://adfs.local.azurestack.external/adfs/").unwrap();
        let a = Authority::new(login, "ignored-guid").unwrap();
        assert_eq!(a.provider(), IdentityProvider::Adfs);
        assert_eq!(a.tenant(), "adfs");
        assert_eq!(
            a.token_url().unwrap().as_str(),
            "https://adfs.local.azurestack.external/adfs/oauth2/token"
        );
        let no_slash = Url::parse("http://127.0.0.1:9/adfs").unwrap();
        assert_eq!(identity_provider(&no_slash), IdentityProvider::Adfs);
    }

    #[test]
    fn azure_ad_token_url_includes_tenant() {
        let login = Url::parse("https://login.microsoftonline.com/").unwrap();
        let a = Authority::new(login, "contoso.onmicrosoft.com").unwrap();
        assert_eq!(a.provider(), IdentityProvider::AzureAd);
        assert_eq!(
            a.token_url().unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/token"
        );
        let sandbox = Url::parse("http://127.0.0.1:7000/aad").unwrap();
        let a = Authority::new(sandbox, "t1").unwrap();
        assert_eq!(
            a.token_url().unwrap().as_str(),
            "http://127.0.0.1:7000/aad/t1/oauth2/token"
        );
        assert!(Authority::new(Url::parse("https://login/").unwrap(), " ").is_err());
    }

    #[test]
    fn scopes_round_trip_to_resources() {
        let known = vec!["https://management.azure.com/".to_string()];
        assert_eq!(
            scope_for_resource("https://management.azure.com/"),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            resource_for_scope("https://management.azure.com/.default", &known),
            "https://management.azure.com/"
        );
        assert_eq!(
            resource_for_scope("https://management.adfs.local/guid/.default", &[]),
            "https://management.adfs.local/guid"
        );
    }

    #[test]
    fn token_response_accepts_string_and_number_expiry() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let aad =
            br#"{"token_type":"Bearer","expires_in":"3599","expires_on":"1","access_token":"abc"}"#;
        let t = parse_token_response("u", 200, aad, now).unwrap();
        assert_eq!(t.token.secret(), "abc");
        assert_eq!(t.expires_on.unix_timestamp(), 1_003_599);
        let adfs = br#"{"access_token":"x","token_type":"bearer","expires_in":3600}"#;
        assert_eq!(
            parse_token_response("u", 200, adfs, now)
                .unwrap()
                .expires_on
                .unix_timestamp(),
            1_003_600
        );
    }

    #[test]
    fn token_error_keeps_code_and_description() {
        let now = OffsetDateTime::now_utc();
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret"}"#;
        match parse_token_response("u", 401, body, now).unwrap_err() {
            Error::Token { status, code, .. } => {
                assert_eq!(status, 401);
                assert_eq!(code, "invalid_client");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn freshness_respects_skew() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let t = AccessToken::new("x", now + azure_core::time::Duration::seconds(200));
        assert!(is_fresh(&t, now, Duration::from_secs(100)));
        assert!(!is_fresh(&t, now, Duration::from_secs(300)));
        let expired = AccessToken::new("x", now - azure_core::time::Duration::seconds(1));
        assert!(!is_fresh(&expired, now, Duration::ZERO));
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let sp = ServicePrincipal {
            tenant: "t".into(),
            client_id: "c".into(),
            client_secret: Secret::new("hunter2"),
        };
        assert!(!format!("{sp:?}").contains("hunter2"));
    }
}
