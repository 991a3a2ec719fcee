//! Authorities: Azure AD (`{login}{tenant}`) or AD FS (`{login}` ending in `/adfs`).

use url::Url;

use super::trust::require_secure;
use crate::{Error, Result, transport::join_url};

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
    /// `adfs` (AD FS is single-tenant), whatever was configured. The client secret goes here, so
    /// the endpoint must be https (plain http only on loopback).
    pub fn new(login_endpoint: Url, tenant: &str) -> Result<Self> {
        require_secure("login endpoint", &login_endpoint)?;
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

    pub fn login_endpoint(&self) -> &Url {
        &self.login_endpoint
    }

    /// v1 token endpoint: `{login}{tenant}/oauth2/token`, or `{login}/oauth2/token` for AD FS
    /// (whose login endpoint already ends in the `adfs` tenant segment).
    pub fn token_url(&self) -> Result<Url> {
        match self.provider() {
            IdentityProvider::Adfs => join_url(&self.login_endpoint, "oauth2/token"),
            IdentityProvider::AzureAd => join_url(
                &self.login_endpoint,
                &format!("{}/oauth2/token", self.tenant),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn plain_http_authorities_are_refused_off_loopback() {
        let err =
            Authority::new(Url::parse("http://adfs.example/adfs/").unwrap(), "t").unwrap_err();
        assert!(matches!(err, Error::UntrustedEndpoint { .. }), "{err:?}");
    }
}
