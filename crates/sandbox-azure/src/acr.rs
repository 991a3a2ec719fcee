//! ACR's token service, as ACR documents it (Azure/acr `docs/AAD-OAuth.md`):
//! `POST /oauth2/exchange` turns an Azure AD access token into an ACR refresh token;
//! `POST /oauth2/token` (grant `refresh_token`) and the Docker-style `GET /oauth2/token` with
//! Basic credentials mint registry access tokens. Access tokens are JWTs signed (ES256, `x5c`
//! header) with a key whose certificate the real distribution registry trusts
//! (`auth.token.rootcertbundle`), so the registry checks them itself.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    error::{Error, Result},
    secret::Secret,
    shared::{Shared, lock},
};

/// ACR's placeholder user name for "the password is an ACR refresh token".
pub const NULL_GUID_USER: &str = "00000000-0000-0000-0000-000000000000";

/// A Basic-auth user of the registry (ACR admin user / repository-scoped token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryUser {
    pub username: String,
    pub password: Secret,
    /// Only `pull` is granted (no push), like ACR's AcrPull role.
    #[serde(default)]
    pub pull_only: bool,
    /// `pull` and `push` but no `delete`, like ACR's AcrPush role (deleting needs AcrDelete).
    #[serde(default)]
    pub no_delete: bool,
}

/// What a principal may do in any repository: the actions of ACR's built-in roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// AcrPull.
    Pull,
    /// AcrPush: pull and push, no delete.
    Push,
    /// Owner / Contributor (and AcrPush with AcrDelete).
    Owner,
}

impl Role {
    fn actions(self) -> &'static [&'static str] {
        match self {
            Role::Pull => &["pull"],
            Role::Push => &["pull", "push"],
            Role::Owner => &["pull", "push", "delete"],
        }
    }

    fn of_user(user: &RegistryUser) -> Self {
        if user.pull_only {
            Role::Pull
        } else if user.no_delete {
            Role::Push
        } else {
            Role::Owner
        }
    }
}

/// The key that signs registry tokens and its self-signed certificate.
pub struct SigningKey {
    key: ring::signature::EcdsaKeyPair,
    cert_der_b64: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(Error::Certificate)?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(Error::Certificate)?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "edgetrain sandbox ACR token signer",
        );
        let cert = params.self_signed(&key).map_err(Error::Certificate)?;
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .map_err(|e| Error::InvalidConfig(format!("token signing key: {e}")))?;
        Ok(Self {
            key,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(cert.der()),
            cert_pem: cert.pem(),
        })
    }

    /// A compact JWS over `claims`.
    pub fn sign(&self, claims: &Value) -> Result<Secret> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [self.cert_der_b64]});
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|e| Error::InvalidConfig(format!("signing a registry token: {e}")))?;
        Ok(Secret::new(format!("{input}.{}", b64.encode(sig.as_ref()))))
    }
}

#[derive(Debug, Clone)]
struct Grant {
    subject: String,
    role: Role,
    expires_at: i64,
}

/// Issued refresh tokens and the signing key.
#[derive(Debug)]
pub struct Acr {
    pub service: String,
    pub issuer: String,
    pub signer: SigningKey,
    pub access_lifetime_secs: u64,
    pub refresh_lifetime_secs: u64,
    /// AAD client ids that get `pull` only (like the AcrPull role).
    pub pull_only_clients: Vec<String>,
    pub users: Vec<RegistryUser>,
    refresh: std::sync::Mutex<HashMap<String, Grant>>,
}

impl Acr {
    pub fn new(service: String, signer: SigningKey, cfg: &crate::registry::RegistryConfig) -> Self {
        Self {
            service,
            issuer: ISSUER.into(),
            signer,
            access_lifetime_secs: cfg.access_token_lifetime_secs,
            refresh_lifetime_secs: cfg.refresh_token_lifetime_secs,
            pull_only_clients: cfg.pull_only_clients.clone(),
            users: cfg.users.clone(),
            refresh: Default::default(),
        }
    }
}

/// `iss` of registry tokens; the registry config names the same issuer.
pub const ISSUER: &str = "edgetrain-sandbox-acr";

/// One `access` entry of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// What a principal gets for the requested scopes: repository scopes only, actions
/// intersected with its role. Pure.
pub fn grant(scopes: &[String], role: Role) -> Vec<Access> {
    let allowed = role.actions();
    scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            (kind == "repository" && !name.is_empty()).then(|| Access {
                kind: kind.into(),
                name: name.into(),
                actions: actions
                    .split(',')
                    .filter(|a| allowed.contains(a))
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

fn oauth_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

fn not_enabled() -> Response {
    oauth_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "the sandbox registry is not enabled (registry.enabled)",
    )
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn scopes_of(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect()
}

/// The app id (`appid`) of an AAD token the simulator issued, after the authority's check.
fn aad_principal(sh: &Shared, token: &str) -> Option<String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().ok()?,
    );
    let now = chrono::Utc::now().timestamp();
    lock(&sh.tokens)
        .authenticate(&headers, &sh.config.public_audience, "", now)
        .ok()?;
    let claims = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let claims: Value = serde_json::from_slice(&claims).ok()?;
    claims["appid"].as_str().map(str::to_owned)
}

fn mint_refresh(acr: &Acr, subject: &str, role: Role) -> Result<Secret> {
    let now = chrono::Utc::now().timestamp();
    let exp = now + acr.refresh_lifetime_secs as i64;
    let token = acr.signer.sign(&json!({
        "jti": uuid::Uuid::new_v4().to_string(), "sub": subject, "iss": acr.issuer,
        "aud": acr.service, "iat": now, "nbf": now, "exp": exp, "grant_type": "refresh_token",
    }))?;
    lock(&acr.refresh).insert(
        token.expose().to_owned(),
        Grant {
            subject: subject.to_owned(),
            role,
            expires_at: exp,
        },
    );
    Ok(token)
}

fn mint_access(acr: &Acr, subject: &str, access: Vec<Access>) -> Result<Secret> {
    let now = chrono::Utc::now().timestamp();
    acr.signer.sign(&json!({
        "jti": uuid::Uuid::new_v4().to_string(), "sub": subject, "iss": acr.issuer,
        "aud": acr.service, "iat": now, "nbf": now - 1,
        "exp": now + acr.access_lifetime_secs as i64, "access": access,
    }))
}

fn valid_refresh(acr: &Acr, token: &str) -> Option<Grant> {
    let now = chrono::Utc::now().timestamp();
    lock(&acr.refresh)
        .get(token)
        .filter(|g| g.expires_at > now)
        .cloned()
}

/// `POST /oauth2/exchange`.
pub async fn exchange(State(sh): State<Arc<Shared>>, body: bytes::Bytes) -> Response {
    sh.state().count("POST", "acr-exchange");
    let Some(acr) = sh.acr.as_ref() else {
        return not_enabled();
    };
    let pairs = form_pairs(&body);
    if field(&pairs, "grant_type") != Some("access_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "grant_type must be access_token",
        );
    }
    if field(&pairs, "service") != Some(acr.service.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "service does not name this registry",
        );
    }
    let Some(principal) = field(&pairs, "access_token").and_then(|t| aad_principal(&sh, t)) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the Azure AD access token is invalid, expired or for another audience",
        );
    };
    let role = if acr.pull_only_clients.contains(&principal) {
        Role::Pull
    } else {
        Role::Owner
    };
    match mint_refresh(acr, &principal, role) {
        Ok(t) => axum::Json(json!({"refresh_token": t.expose()})).into_response(),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
    }
}

/// `POST /oauth2/token` with `grant_type=refresh_token`.
pub async fn token_post(State(sh): State<Arc<Shared>>, body: bytes::Bytes) -> Response {
    sh.state().count("POST", "acr-token");
    let Some(acr) = sh.acr.as_ref() else {
        return not_enabled();
    };
    let pairs = form_pairs(&body);
    if field(&pairs, "grant_type") != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "grant_type must be refresh_token",
        );
    }
    if field(&pairs, "service") != Some(acr.service.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "service does not name this registry",
        );
    }
    let Some(g) = field(&pairs, "refresh_token").and_then(|t| valid_refresh(acr, t)) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the refresh token is invalid or expired",
        );
    };
    let access = grant(&scopes_of(&pairs), g.role);
    match mint_access(acr, &g.subject, access) {
        Ok(t) => axum::Json(json!({"access_token": t.expose()})).into_response(),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
    }
}

/// `GET /oauth2/token?service=&scope=` with Basic credentials (what docker/skopeo do).
pub async fn token_get(
    State(sh): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    sh.state().count("GET", "acr-token");
    let Some(acr) = sh.acr.as_ref() else {
        return not_enabled();
    };
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    if field(&pairs, "service") != Some(acr.service.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "service does not name this registry",
        );
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = basic.as_deref().and_then(|b| b.split_once(':')) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Basic credentials required",
        );
    };
    let who = if user == NULL_GUID_USER {
        valid_refresh(acr, password).map(|g| (g.subject, g.role))
    } else {
        acr.users
            .iter()
            .find(|u| u.username == user && u.password.expose() == password)
            .map(|u| (u.username.clone(), Role::of_user(u)))
    };
    let Some((subject, role)) = who else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "wrong user name or password",
        );
    };
    let access = grant(&scopes_of(&pairs), role);
    match mint_access(acr, &subject, access) {
        Ok(t) => axum::Json(json!({
            "token": t.expose(), "access_token": t.expose(),
            "expires_in": acr.access_lifetime_secs,
        }))
        .into_response(),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_intersect_roles_and_ignore_other_scopes() {
        let scopes = vec![
            "repository:models/a:pull,push,delete".to_owned(),
            "repository:base/tiny:pull registry:catalog:*".to_owned(),
        ];
        let full = grant(&scopes, Role::Owner);
        assert_eq!(full.len(), 2);
        assert_eq!(full[0].actions, ["pull", "push", "delete"]);
        assert_eq!(full[1].name, "base/tiny");
        let push = grant(&scopes, Role::Push);
        assert_eq!(push[0].actions, ["pull", "push"]);
        let pull = grant(&scopes, Role::Pull);
        assert_eq!(pull[0].actions, ["pull"]);
    }

    #[test]
    fn signs_verifiable_jwts_with_x5c() {
        let k = SigningKey::generate().unwrap();
        let t = k.sign(&json!({"exp": 1})).unwrap();
        let parts: Vec<&str> = t.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let der = base64::engine::general_purpose::STANDARD
            .decode(header["x5c"][0].as_str().unwrap())
            .unwrap();
        // The certificate's public key verifies the signature (what the registry does).
        // The uncompressed P-256 point follows the SubjectPublicKeyInfo's BIT STRING header.
        let pos = der
            .windows(3)
            .position(|w| w == [0x03, 0x42, 0x00])
            .unwrap()
            + 3;
        let spki_key = der[pos..pos + 65].to_vec();
        let pk = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            spki_key,
        );
        pk.verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64.decode(parts[2]).unwrap(),
        )
        .unwrap();
    }
}
