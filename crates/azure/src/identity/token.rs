//! Client-credentials inputs, the token request, and token responses (parsed purely).

use std::time::Duration;

use azure_core::{
    credentials::{AccessToken, Secret},
    time::OffsetDateTime,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A service principal's client-credentials secret.
#[derive(Debug, Clone)]
pub struct ServicePrincipal {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl ServicePrincipal {
    /// SHA-256 of the client secret: identifies the credential in cache keys without holding
    /// the secret itself.
    pub fn secret_digest(&self) -> SecretDigest {
        SecretDigest(Sha256::digest(self.client_secret.secret().as_bytes()).into())
    }
}

/// Digest of a client secret. `Debug` shows no bytes: even a digest of a weak secret is a
/// guessing oracle, so it stays out of logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretDigest([u8; 32]);

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

impl SecretDigest {
    /// Lower-case hex, for keys that are strings (e.g. the controller's client cache).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
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

/// POSTs a client-credentials form to a token endpoint and reads the answer.
pub async fn request_token(
    http: &reqwest::Client,
    url: &url::Url,
    form: &[(&str, &str)],
) -> Result<AccessToken> {
    let transport = |source| Error::Transport {
        method: "POST".into(),
        url: url.to_string(),
        source,
    };
    let resp = http
        .post(url.clone())
        .form(form)
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(transport)?;
    parse_token_response(url.as_str(), status, &body, OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let digest = sp.secret_digest();
        assert!(!format!("{digest:?}").contains(&digest.to_hex()[..8]));
    }

    #[test]
    fn secret_digest_tells_secrets_apart() {
        let sp = |secret: &str| ServicePrincipal {
            tenant: "t".into(),
            client_id: "c".into(),
            client_secret: Secret::new(secret.to_owned()),
        };
        assert_eq!(sp("a").secret_digest(), sp("a").secret_digest());
        assert_ne!(sp("a").secret_digest(), sp("b").secret_digest());
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            sp("abc").secret_digest().to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
