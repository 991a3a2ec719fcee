//! Token endpoints (Azure AD v1/v2, AD FS) and bearer-token checks for ARM calls.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde_json::{Value, json};

use crate::{arm_error::ArmError, config::ServicePrincipal, secret::Secret};

/// Which token endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `/{tenant}/oauth2/token` with `resource=`.
    AadV1,
    /// `/{tenant}/oauth2/v2.0/token` with `scope={audience}/.default`.
    AadV2,
    /// `/adfs/oauth2/token` with `resource=`.
    Adfs,
}

/// An error of the token endpoint, in Azure AD's OAuth error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn body(&self) -> Value {
        json!({
            "error": self.error,
            "error_description": self.description,
            "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": uuid::Uuid::new_v4().to_string(),
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        })
    }
}

#[derive(Debug, Clone)]
struct Issued {
    audience: String,
    /// Directory that issued the token (its `tid`).
    tenant: String,
    expires_at: i64,
}

/// The directory: registered principals, the subscriptions and the tenant each trusts, and
/// issued tokens (Debug shows counts only: tokens are secrets).
#[derive(Default)]
pub struct TokenAuthority {
    principals: Vec<ServicePrincipal>,
    /// (subscription id, tenant).
    subscriptions: Vec<(String, String)>,
    /// The stamp's own tenant: AD FS tokens are issued in it.
    home_tenant: String,
    tokens: HashMap<String, Issued>,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("principals", &self.principals)
            .field("subscriptions", &self.subscriptions)
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Audiences compare without a trailing slash (`https://management.azure.com/` == `.../com`).
pub fn same_audience(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

impl TokenAuthority {
    /// `subscriptions`: (id, tenant) pairs; `home_tenant`: the tenant of AD FS tokens.
    pub fn new(
        principals: Vec<ServicePrincipal>,
        subscriptions: Vec<(String, String)>,
        home_tenant: &str,
    ) -> Self {
        Self {
            principals,
            subscriptions,
            home_tenant: home_tenant.to_owned(),
            tokens: HashMap::new(),
        }
    }

    /// Make a subscription known (or move it to `tenant`).
    pub fn register_subscription(&mut self, id: &str, tenant: &str) {
        self.subscriptions
            .retain(|(known, _)| !known.eq_ignore_ascii_case(id));
        self.subscriptions.push((id.to_owned(), tenant.to_owned()));
    }

    fn subscription_tenant(&self, id: &str) -> Option<&str> {
        self.subscriptions
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(id))
            .map(|(_, tenant)| tenant.as_str())
    }

    pub fn register(&mut self, principal: ServicePrincipal) {
        self.principals.retain(|p| {
            !(p.tenant.eq_ignore_ascii_case(&principal.tenant)
                && p.client_id == principal.client_id)
        });
        self.principals.push(principal);
    }

    /// Handle a client-credentials token request; returns the JSON body of the answer.
    pub fn issue(
        &mut self,
        flavor: Flavor,
        tenant: &str,
        form: &HashMap<String, String>,
        audiences: &[&str],
        lifetime_secs: u64,
        now: i64,
    ) -> Result<Value, OAuthError> {
        let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
        if field("grant_type") != Some("client_credentials") {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type; only client_credentials is supported.",
            ));
        }
        let Some(client_id) = field("client_id") else {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            ));
        };
        let audience = match flavor {
            Flavor::AadV1 | Flavor::Adfs => field("resource").map(str::to_owned),
            Flavor::AadV2 => {
                field("scope").map(|s| s.strip_suffix("/.default").unwrap_or(s).to_owned())
            }
        };
        let Some(audience) = audience else {
            let name = if flavor == Flavor::AadV2 {
                "scope"
            } else {
                "resource"
            };
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "AADSTS900144: The request body must contain the following parameter: '{name}'."
                ),
            ));
        };
        let principal = self
            .principals
            .iter()
            .find(|p| p.client_id == client_id && p.tenant.eq_ignore_ascii_case(tenant));
        let Some(principal) = principal else {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                format!(
                    "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'."
                ),
            ));
        };
        if field("client_secret") != Some(principal.client_secret.expose()) {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                format!(
                    "AADSTS7000215: Invalid client secret provided for application '{client_id}'."
                ),
            ));
        }
        let Some(known) = audiences.iter().find(|a| same_audience(a, &audience)) else {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                format!(
                    "AADSTS500011: The resource principal named {audience} was not found in the tenant named {tenant}."
                ),
            ));
        };
        let expires_at = now + lifetime_secs as i64;
        // AD FS is the stamp's one directory.
        let issuer = match flavor {
            Flavor::Adfs => self.home_tenant.clone(),
            Flavor::AadV1 | Flavor::AadV2 => tenant.to_owned(),
        };
        let token = mint(known, &issuer, client_id, now, expires_at);
        self.tokens.insert(
            token.expose().to_owned(),
            Issued {
                audience: (*known).to_owned(),
                tenant: issuer,
                expires_at,
            },
        );
        // v1 answers carry numbers as strings (as Azure AD does); v2 and AD FS use numbers.
        Ok(match flavor {
            Flavor::AadV1 => json!({
                "token_type": "Bearer",
                "expires_in": lifetime_secs.to_string(),
                "ext_expires_in": lifetime_secs.to_string(),
                "expires_on": expires_at.to_string(),
                "not_before": now.to_string(),
                "resource": audience,
                "access_token": token.expose(),
            }),
            Flavor::AadV2 => json!({
                "token_type": "Bearer",
                "expires_in": lifetime_secs,
                "ext_expires_in": lifetime_secs,
                "access_token": token.expose(),
            }),
            Flavor::Adfs => json!({
                "token_type": "bearer",
                "expires_in": lifetime_secs,
                "expires_on": expires_at,
                "resource": audience,
                "access_token": token.expose(),
            }),
        })
    }

    /// A token for a running job (Azure ML hands its jobs one for the workspace's services,
    /// e.g. MLflow tracking): from the tenant of the workspace's `subscription`, valid for
    /// `audience` until `expires_at`.
    pub fn issue_job_token(
        &mut self,
        audience: &str,
        subscription: &str,
        job_name: &str,
        now: i64,
        expires_at: i64,
    ) -> Secret {
        let tenant = self
            .subscription_tenant(subscription)
            .unwrap_or(&self.home_tenant)
            .to_owned();
        let token = mint(audience, &tenant, job_name, now, expires_at);
        self.tokens.insert(
            token.expose().to_owned(),
            Issued {
                audience: audience.to_owned(),
                tenant,
                expires_at,
            },
        );
        token
    }

    /// Check `Authorization: Bearer` as every Azure service does before anything else: a token
    /// this directory issued, unexpired, for `audience`. Failures carry the challenge naming
    /// `login_endpoint` + `challenge_tenant`.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        audience: &str,
        login_endpoint: &str,
        now: i64,
    ) -> Result<(), ArmError> {
        self.check_token(headers, audience, login_endpoint, &self.home_tenant, now)
            .map(|_| ())
    }

    fn check_token(
        &self,
        headers: &HeaderMap,
        audience: &str,
        login_endpoint: &str,
        challenge_tenant: &str,
        now: i64,
    ) -> Result<&Issued, ArmError> {
        let fail = |code: &str, message: &str| {
            unauthorized(login_endpoint, challenge_tenant, code, message)
        };
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(fail(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(fail(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            ));
        };
        let Some(issued) = self.tokens.get(token.trim()) else {
            return Err(fail(
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ));
        };
        if issued.expires_at <= now {
            return Err(fail(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            ));
        }
        if !same_audience(&issued.audience, audience) {
            return Err(fail(
                "InvalidAuthenticationTokenAudience",
                &format!(
                    "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences '{audience}'.",
                    issued.audience
                ),
            ));
        }
        Ok(issued)
    }

    /// Check `Authorization: Bearer` for an ARM call in `subscription` that needs `audience`,
    /// as ARM does: a valid, unexpired token for the audience, a subscription that exists
    /// (`404 SubscriptionNotFound`), issued by the tenant the subscription trusts
    /// (`401 InvalidAuthenticationTokenTenant`). `login_endpoint` + tenant is the
    /// `authorization_uri` of the challenge.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        audience: &str,
        subscription: &str,
        login_endpoint: &str,
        now: i64,
    ) -> Result<(), ArmError> {
        let sub_tenant = self.subscription_tenant(subscription);
        let challenge_tenant = sub_tenant.unwrap_or(&self.home_tenant);
        let issued = self.check_token(headers, audience, login_endpoint, challenge_tenant, now)?;
        let fail = |code: &str, message: &str| {
            unauthorized(login_endpoint, challenge_tenant, code, message)
        };
        let Some(sub_tenant) = sub_tenant else {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "SubscriptionNotFound",
                format!("The subscription '{subscription}' could not be found."),
            ));
        };
        if !issued.tenant.eq_ignore_ascii_case(sub_tenant) {
            return Err(fail(
                "InvalidAuthenticationTokenTenant",
                &format!(
                    "The access token is from the wrong issuer 'https://sts.windows.net/{}/'. It must match the tenant 'https://sts.windows.net/{sub_tenant}/' associated with this subscription. Please use the authority (URL) '{login_endpoint}{sub_tenant}' to get the token.",
                    issued.tenant
                ),
            ));
        }
        Ok(())
    }
}

/// A 401 with ARM's `WWW-Authenticate` challenge naming where to get a token.
fn unauthorized(login_endpoint: &str, tenant: &str, code: &str, message: &str) -> ArmError {
    ArmError::new(StatusCode::UNAUTHORIZED, code, message).with_challenge(format!(
        "Bearer authorization_uri=\"{login_endpoint}{tenant}\", error=\"invalid_token\", error_description=\"{message}\""
    ))
}

/// A JWT-shaped opaque token (unsigned: the simulator looks tokens up, it does not verify them).
fn mint(audience: &str, tenant: &str, client_id: &str, now: i64, exp: i64) -> Secret {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"none"}"#);
    let claims = json!({
        "aud": audience, "tid": tenant, "appid": client_id, "iat": now, "nbf": now, "exp": exp,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let claims = b64.encode(claims.to_string());
    let nonce = b64.encode(uuid::Uuid::new_v4().as_bytes());
    Secret::new(format!("{header}.{claims}.{nonce}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> TokenAuthority {
        TokenAuthority::new(
            vec![
                ServicePrincipal {
                    tenant: "t1".into(),
                    client_id: "app".into(),
                    client_secret: Secret::new("pw"),
                },
                ServicePrincipal {
                    tenant: "t2".into(),
                    client_id: "app".into(),
                    client_secret: Secret::new("pw2"),
                },
                ServicePrincipal {
                    tenant: "adfs".into(),
                    client_id: "app".into(),
                    client_secret: Secret::new("pw"),
                },
            ],
            vec![("sub1".into(), "t1".into())],
            "t1",
        )
    }

    fn bearer(body: &Value) -> HeaderMap {
        let token = body["access_token"].as_str().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const AUD: &[&str] = &["https://management.azure.com/"];

    #[test]
    fn issues_and_authorizes() {
        let mut a = authority();
        let body = a
            .issue(
                Flavor::AadV2,
                "t1",
                &form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "app"),
                    ("client_secret", "pw"),
                    ("scope", "https://management.azure.com/.default"),
                ]),
                AUD,
                60,
                1000,
            )
            .unwrap();
        let headers = bearer(&body);
        let arm = "https://management.azure.com";
        assert!(a.authorize(&headers, arm, "sub1", "x/", 1001).is_ok());
        let expired = a.authorize(&headers, arm, "sub1", "x/", 2000).unwrap_err();
        assert_eq!(expired.code(), "ExpiredAuthenticationToken");
        let wrong = a
            .authorize(&headers, "https://other/", "sub1", "x/", 1001)
            .unwrap_err();
        assert_eq!(wrong.code(), "InvalidAuthenticationTokenAudience");
        assert!(
            wrong
                .challenge()
                .unwrap()
                .starts_with("Bearer authorization_uri=\"x/t1\"")
        );
    }

    fn v1_form(secret: &str) -> HashMap<String, String> {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", secret),
            ("resource", AUD[0]),
        ])
    }

    #[test]
    fn unknown_subscriptions_and_foreign_tenants_are_refused() {
        let mut a = authority();
        let arm = AUD[0];
        let t1 = bearer(
            &a.issue(Flavor::AadV1, "t1", &v1_form("pw"), AUD, 60, 0)
                .unwrap(),
        );
        let missing = a.authorize(&t1, arm, "sub-x", "x/", 1).unwrap_err();
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.code(), "SubscriptionNotFound");
        // Subscription ids compare case-insensitively, as GUIDs do.
        assert!(a.authorize(&t1, arm, "SUB1", "x/", 1).is_ok());

        let t2 = bearer(
            &a.issue(Flavor::AadV1, "t2", &v1_form("pw2"), AUD, 60, 0)
                .unwrap(),
        );
        let foreign = a.authorize(&t2, arm, "sub1", "x/", 1).unwrap_err();
        assert_eq!(foreign.status, StatusCode::UNAUTHORIZED);
        assert_eq!(foreign.code(), "InvalidAuthenticationTokenTenant");
        // The challenge names the subscription's tenant, where a right token comes from.
        assert!(
            foreign
                .challenge()
                .unwrap()
                .contains("authorization_uri=\"x/t1\"")
        );
        a.register_subscription("sub2", "t2");
        assert!(a.authorize(&t2, arm, "sub2", "x/", 1).is_ok());
        assert_eq!(
            a.authorize(&t1, arm, "sub2", "x/", 1).unwrap_err().code(),
            "InvalidAuthenticationTokenTenant"
        );

        // AD FS tokens belong to the stamp's home tenant.
        let adfs = bearer(
            &a.issue(Flavor::Adfs, "adfs", &v1_form("pw"), AUD, 60, 0)
                .unwrap(),
        );
        assert!(a.authorize(&adfs, arm, "sub1", "x/", 1).is_ok());
    }

    #[test]
    fn rejects_bad_secret_unknown_client_and_resource() {
        let mut a = authority();
        let base = [("grant_type", "client_credentials"), ("client_id", "app")];
        let mut f = form(&base);
        f.insert("client_secret".into(), "nope".into());
        f.insert("resource".into(), AUD[0].into());
        assert_eq!(
            a.issue(Flavor::AadV1, "t1", &f, AUD, 60, 0)
                .unwrap_err()
                .error,
            "invalid_client"
        );
        assert_eq!(
            a.issue(Flavor::AadV1, "other-tenant", &f, AUD, 60, 0)
                .unwrap_err()
                .error,
            "unauthorized_client"
        );
        f.insert("client_secret".into(), "pw".into());
        f.insert("resource".into(), "https://unknown/".into());
        assert_eq!(
            a.issue(Flavor::AadV1, "t1", &f, AUD, 60, 0)
                .unwrap_err()
                .error,
            "invalid_resource"
        );
        f.insert("resource".into(), AUD[0].into());
        let ok = a.issue(Flavor::AadV1, "t1", &f, AUD, 60, 0).unwrap();
        assert_eq!(ok["expires_in"], "60");
        assert_eq!(ok["token_type"], "Bearer");
    }
}
