//! Registry authentication: the `WWW-Authenticate` challenge, Basic for plain registries, the
//! distribution token flow, and ACR's Azure AD flow (AAD token → `/oauth2/exchange` → ACR
//! refresh token → `/oauth2/token` with scopes). Tokens are cached under a key that includes
//! a fingerprint of the credential, so a token is never reused for another credential, and are
//! refreshed `margin` before they expire — checked before every request, so a long chunked
//! upload picks up a fresh token between chunks.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use azure_core::credentials::TokenCredential;
use base64::Engine;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::{Error, Result, error::Target};

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to prove who we are to a registry.
#[derive(Clone)]
pub enum Credential {
    Anonymous,
    /// A `username`/`password` Secret (plain registries, ACR admin user or repository tokens).
    Basic {
        username: String,
        password: Secret,
    },
    /// ACR with an Azure AD identity.
    AzureAd {
        credential: Arc<dyn TokenCredential>,
        /// AAD scope of the token to exchange, e.g. `https://management.azure.com/.default`.
        aad_scope: String,
        /// Tenant sent to `/oauth2/exchange` (optional for ACR).
        tenant: Option<String>,
        /// Stable name of the identity (tenant/client id): part of the cache key.
        identity: String,
        /// A digest of the secret behind `credential` (empty where there is none): part of the
        /// cache key, so a cached token never serves another secret of the same identity.
        /// Never shown.
        secret_fingerprint: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Basic { username, .. } => write!(f, "Basic({username})"),
            Credential::AzureAd { identity, .. } => write!(f, "AzureAd({identity})"),
        }
    }
}

impl Credential {
    /// A fingerprint of the credential for cache keys (a hash, never the secret itself).
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Credential::Anonymous => h.update(b"anonymous"),
            Credential::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.expose().as_bytes());
            }
            Credential::AzureAd {
                identity,
                aad_scope,
                tenant,
                secret_fingerprint,
                ..
            } => {
                h.update(b"aad\0");
                h.update(identity.as_bytes());
                h.update(b"\0");
                h.update(secret_fingerprint.as_bytes());
                h.update(b"\0");
                h.update(aad_scope.as_bytes());
                h.update(b"\0");
                h.update(tenant.as_deref().unwrap_or("").as_bytes());
            }
        }
        format!("{:x}", h.finalize())
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        error: Option<String>,
    },
}

/// Parse `Bearer realm="…",service="…",scope="…"` (quoted values may hold commas).
pub fn parse_challenge(header: &str) -> Challenge {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Challenge::Basic;
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    match params.remove("realm") {
        Some(realm) => Challenge::Bearer {
            realm,
            service: params.remove("service"),
            error: params.remove("error"),
        },
        None => Challenge::None,
    }
}

/// `repository:<name>:<actions>`.
pub fn repository_scope(repository: &str, actions: &[&str]) -> String {
    format!("repository:{repository}:{}", actions.join(","))
}

/// Refresh when less than `margin` is left (pure; unit-tested).
pub fn needs_refresh(expires_at: i64, now: i64, margin: Duration) -> bool {
    expires_at - now <= margin.as_secs() as i64
}

/// `exp` of a JWT, read without verifying (the issuer verifies; we only schedule refreshes).
pub fn jwt_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_i64()
}

/// Secrets go only to https, or to plain http on loopback (the sandbox).
pub fn check_secure(url: &Url) -> Result<()> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "refusing to send credentials to {}://{}: https required",
            url.scheme(),
            url.host_str().unwrap_or("")
        )))
    }
}

#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    credential: String,
    registry: String,
    /// Sorted scopes, or `refresh` for ACR's refresh token.
    scopes: Vec<String>,
}

/// Tokens by (credential fingerprint, registry, scopes). Shareable between clients.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<CacheKey, Cached>>,
}

impl TokenCache {
    fn get(&self, key: &CacheKey, now: i64, margin: Duration) -> Option<Secret> {
        let map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|c| !needs_refresh(c.expires_at, now, margin))
            .map(|c| c.token.clone())
    }

    fn put(&self, key: CacheKey, token: Secret, expires_at: i64) {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key, Cached { token, expires_at });
    }

    fn remove(&self, key: &CacheKey) {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The token endpoint's answer (distribution's `token`/`access_token`, ACR's `refresh_token`).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
}

/// Default lifetime when the token service says nothing (the distribution spec's 60 s).
const DEFAULT_TOKEN_SECS: i64 = 60;

/// Authenticates requests to one registry.
#[derive(Debug)]
pub struct Authenticator {
    http: reqwest::Client,
    registry: Url,
    credential: Credential,
    fingerprint: String,
    cache: Arc<TokenCache>,
    margin: Duration,
    challenge: Mutex<Option<Challenge>>,
    fetching: tokio::sync::Mutex<()>,
    /// Token-endpoint calls made (for tests and metrics).
    pub(crate) token_requests: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    pub fn new(
        http: reqwest::Client,
        registry: Url,
        credential: Credential,
        cache: Arc<TokenCache>,
        margin: Duration,
    ) -> Self {
        Self {
            http,
            fingerprint: credential.fingerprint(),
            registry,
            credential,
            cache,
            margin,
            challenge: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            token_requests: Default::default(),
        }
    }

    fn key(&self, scopes: &[String]) -> CacheKey {
        let mut scopes = scopes.to_vec();
        scopes.sort();
        CacheKey {
            credential: self.fingerprint.clone(),
            registry: self.registry.as_str().to_owned(),
            scopes,
        }
    }

    /// Forget the token for these scopes (after a 401).
    pub fn invalidate(&self, scopes: &[String]) {
        self.cache.remove(&self.key(scopes));
    }

    async fn challenge(&self, target: &Target) -> Result<Challenge> {
        if let Some(c) = self
            .challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let url = self
            .registry
            .join("/v2/")
            .map_err(|e| Error::Invalid(format!("registry URL: {e}")))?;
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|source| Error::Transport {
                target: target.clone(),
                method: "GET",
                url: url.to_string(),
                source: source.without_url(),
            })?;
        let c = match resp.status().as_u16() {
            200 => Challenge::None,
            401 => parse_challenge(
                resp.headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            ),
            s => {
                return Err(Error::Status {
                    target: target.clone(),
                    operation: "GET /v2/".into(),
                    status: s,
                    detail: "expected 200 or 401".into(),
                });
            }
        };
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// The `Authorization` value for a request needing `scopes`, or none for open registries.
    pub async fn header(&self, target: &Target, scopes: &[String]) -> Result<Option<String>> {
        match (self.challenge(target).await?, &self.credential) {
            (Challenge::None, _) => Ok(None),
            (Challenge::Basic, Credential::Basic { username, password }) => {
                check_secure(&self.registry)?;
                Ok(Some(basic(username, password)))
            }
            (Challenge::Basic, _) => Err(Error::Unauthorized {
                target: target.clone(),
                detail: "the registry asks for Basic credentials; configure a username/password"
                    .into(),
            }),
            (Challenge::Bearer { realm, service, .. }, _) => {
                let key = self.key(scopes);
                if let Some(t) = self.cache.get(&key, now(), self.margin) {
                    return Ok(Some(format!("Bearer {}", t.expose())));
                }
                // One fetch at a time: concurrent layer uploads wait for the first token
                // instead of each asking the token service.
                let _one = self.fetching.lock().await;
                if let Some(t) = self.cache.get(&key, now(), self.margin) {
                    return Ok(Some(format!("Bearer {}", t.expose())));
                }
                let (token, expires_at) = self
                    .fetch_token(target, &realm, service.as_deref(), scopes)
                    .await?;
                self.cache.put(key, token.clone(), expires_at);
                Ok(Some(format!("Bearer {}", token.expose())))
            }
        }
    }

    async fn fetch_token(
        &self,
        target: &Target,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(Secret, i64)> {
        let realm_url = Url::parse(realm).map_err(|e| Error::TokenService {
            target: target.clone(),
            realm: realm.to_owned(),
            detail: format!("realm is not a URL: {e}"),
        })?;
        let token_err = |detail: String| Error::TokenService {
            target: target.clone(),
            realm: realm.to_owned(),
            detail,
        };
        match &self.credential {
            Credential::AzureAd { .. } => {
                // The AAD token is an ARM token: only to the registry's own host.
                if realm_url.host_str() != self.registry.host_str() {
                    return Err(token_err(format!(
                        "token realm host {:?} is not the registry's host; refusing to send an Azure AD token there",
                        realm_url.host_str().unwrap_or("")
                    )));
                }
                check_secure(&realm_url)?;
                let service =
                    service.ok_or_else(|| token_err("challenge has no service".into()))?;
                let refresh = self
                    .acr_refresh_token(target, &realm_url, service, false)
                    .await?;
                match self
                    .acr_access_token(target, &realm_url, service, scopes, &refresh)
                    .await
                {
                    // An expired or revoked refresh token: exchange once more, no loop.
                    Err(Error::Unauthorized { .. }) => {
                        let refresh = self
                            .acr_refresh_token(target, &realm_url, service, true)
                            .await?;
                        self.acr_access_token(target, &realm_url, service, scopes, &refresh)
                            .await
                    }
                    other => other,
                }
            }
            cred => {
                let mut url = realm_url.clone();
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut req = self.http.get(url);
                if let Credential::Basic { username, password } = cred {
                    check_secure(&realm_url)?;
                    req = req.header(reqwest::header::AUTHORIZATION, basic(username, password));
                }
                let answer = self.call_token_service(target, realm, req).await?;
                let token = answer
                    .token
                    .or(answer.access_token)
                    .ok_or_else(|| token_err("answer has no token".into()))?;
                let exp = expiry(&token, answer.expires_in);
                Ok((Secret::new(token), exp))
            }
        }
    }

    async fn acr_refresh_token(
        &self,
        target: &Target,
        realm: &Url,
        service: &str,
        force: bool,
    ) -> Result<Secret> {
        let key = CacheKey {
            credential: self.fingerprint.clone(),
            registry: service.to_owned(),
            scopes: vec!["refresh".into()],
        };
        if !force && let Some(t) = self.cache.get(&key, now(), self.margin) {
            return Ok(t);
        }
        let Credential::AzureAd {
            credential,
            aad_scope,
            tenant,
            ..
        } = &self.credential
        else {
            unreachable!("only called for AzureAd credentials")
        };
        let aad = credential
            .get_token(&[aad_scope.as_str()], None)
            .await
            .map_err(|e| {
                // The credential's message plus its causes (AAD's error text; never the secret).
                let mut detail = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    detail = format!("{detail}: {c}");
                    cause = c.source();
                }
                Error::AzureAd {
                    target: target.clone(),
                    detail,
                }
            })?;
        let mut exchange = realm.clone();
        let path = realm.path();
        let base = path
            .strip_suffix("/token")
            .ok_or_else(|| Error::TokenService {
                target: target.clone(),
                realm: realm.to_string(),
                detail: "realm does not end in /token; not an ACR token service".into(),
            })?;
        exchange.set_path(&format!("{base}/exchange"));
        exchange.set_query(None);
        let mut form = vec![
            ("grant_type", "access_token"),
            ("service", service),
            ("access_token", aad.token.secret()),
        ];
        if let Some(t) = tenant {
            form.push(("tenant", t.as_str()));
        }
        let req = self.http.post(exchange.clone()).form(&form);
        let answer = self
            .call_token_service(target, exchange.as_str(), req)
            .await?;
        let refresh = answer.refresh_token.ok_or_else(|| Error::TokenService {
            target: target.clone(),
            realm: exchange.to_string(),
            detail: "exchange answer has no refresh_token".into(),
        })?;
        // ACR refresh tokens live about three hours; trust `exp` when it is a JWT.
        let exp = jwt_expiry(&refresh).unwrap_or(now() + 3 * 3600);
        let refresh = Secret::new(refresh);
        self.cache.put(key, refresh.clone(), exp);
        Ok(refresh)
    }

    async fn acr_access_token(
        &self,
        target: &Target,
        realm: &Url,
        service: &str,
        scopes: &[String],
        refresh: &Secret,
    ) -> Result<(Secret, i64)> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("service", service),
            ("refresh_token", refresh.expose()),
        ];
        for s in scopes {
            form.push(("scope", s.as_str()));
        }
        let req = self.http.post(realm.clone()).form(&form);
        let answer = self.call_token_service(target, realm.as_str(), req).await?;
        let token = answer
            .access_token
            .or(answer.token)
            .ok_or_else(|| Error::TokenService {
                target: target.clone(),
                realm: realm.to_string(),
                detail: "answer has no access_token".into(),
            })?;
        let exp = expiry(&token, answer.expires_in);
        Ok((Secret::new(token), exp))
    }

    async fn call_token_service(
        &self,
        target: &Target,
        realm: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<TokenAnswer> {
        self.token_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = req.send().await.map_err(|source| Error::Transport {
            target: target.clone(),
            method: "POST",
            url: realm.to_owned(),
            source: source.without_url(),
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(Error::Unauthorized {
                target: target.clone(),
                detail: format!(
                    "token service {realm} refused the credential (HTTP {status}): {}",
                    crate::client::error_detail(&body)
                ),
            });
        }
        if !(200..300).contains(&status) {
            return Err(Error::TokenService {
                target: target.clone(),
                realm: realm.to_owned(),
                detail: format!("HTTP {status}: {}", crate::client::error_detail(&body)),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::TokenService {
            target: target.clone(),
            realm: realm.to_owned(),
            detail: format!("answer is not token JSON: {e}"),
        })
    }
}

fn basic(username: &str, password: &Secret) -> String {
    let raw = format!("{username}:{}", password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn expiry(token: &str, expires_in: Option<i64>) -> i64 {
    match (expires_in, jwt_expiry(token)) {
        (Some(secs), _) => now() + secs,
        (None, Some(exp)) => exp,
        (None, None) => now() + DEFAULT_TOKEN_SECS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io",scope="repository:a/b:pull,push",error="insufficient_scope""#
            ),
            Challenge::Bearer {
                realm: "https://r.azurecr.io/oauth2/token".into(),
                service: Some("r.azurecr.io".into()),
                error: Some("insufficient_scope".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Challenge::Basic
        );
        assert_eq!(parse_challenge("Negotiate"), Challenge::None);
        assert_eq!(parse_challenge("Bearer service=x"), Challenge::None);
    }

    #[test]
    fn refresh_decision() {
        let m = Duration::from_secs(60);
        assert!(!needs_refresh(1000, 900, m));
        assert!(needs_refresh(1000, 940, m));
        assert!(needs_refresh(1000, 2000, m));
    }

    #[test]
    fn reads_jwt_expiry() {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let t = format!("{}.{}.sig", b(r#"{"alg":"ES256"}"#), b(r#"{"exp":1234}"#));
        assert_eq!(jwt_expiry(&t), Some(1234));
        assert_eq!(jwt_expiry("opaque"), None);
    }

    #[test]
    fn credentials_only_to_https_or_loopback() {
        assert!(check_secure(&Url::parse("https://r.azurecr.io/x").unwrap()).is_ok());
        assert!(check_secure(&Url::parse("http://127.0.0.1:5000/x").unwrap()).is_ok());
        assert!(check_secure(&Url::parse("http://localhost/x").unwrap()).is_ok());
        assert!(check_secure(&Url::parse("http://r.example.com/x").unwrap()).is_err());
    }

    #[test]
    fn cache_keys_separate_credentials_and_debug_hides_secrets() {
        let a = Credential::Basic {
            username: "u".into(),
            password: Secret::new("p1"),
        };
        let b = Credential::Basic {
            username: "u".into(),
            password: Secret::new("p2"),
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(!a.fingerprint().contains("p1"));
        assert!(!format!("{a:?}").contains("p1"));
        let cache = TokenCache::default();
        let key = |c: &Credential| CacheKey {
            credential: c.fingerprint(),
            registry: "r".into(),
            scopes: vec!["s".into()],
        };
        cache.put(key(&a), Secret::new("tok"), now() + 3600);
        let m = Duration::from_secs(60);
        assert!(cache.get(&key(&a), now(), m).is_some());
        assert!(cache.get(&key(&b), now(), m).is_none());
    }
}
