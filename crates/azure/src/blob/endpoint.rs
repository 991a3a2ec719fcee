//! Blob service endpoints: host-style (`https://{account}.blob.{suffix}`) or path-style
//! (`http://127.0.0.1:10000/{account}`, as emulators and IP-addressed endpoints use).

use url::{Host, Url};

use crate::{Error, Result, error::parse_url, identity::require_secure};

/// A storage account's blob endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEndpoint {
    /// Service root, always ending in `/` (for path-style it includes `/{account}/`).
    root: Url,
    account: String,
}

pub(super) fn is_ip_or_localhost(u: &Url) -> bool {
    matches!(u.host(), Some(Host::Ipv4(_) | Host::Ipv6(_))) || u.host_str() == Some("localhost")
}

impl BlobEndpoint {
    /// Parse an endpoint. Hosts that are IP addresses or `localhost` are path-style (the account
    /// is the first path segment), everything else host-style (the account is the first DNS
    /// label) — the rule the Azure SDKs use.
    pub fn parse(s: &str) -> Result<Self> {
        let u = parse_url(s)?;
        // Shared Key signatures and SAS tokens ride on every request.
        require_secure("blob endpoint", &u)?;
        if is_ip_or_localhost(&u) {
            let account = u
                .path_segments()
                .and_then(|mut p| p.next())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "path-style blob endpoint {s:?} needs the account as first path segment"
                    ))
                })?
                .to_string();
            Self::path_style(u.clone(), &account)
        } else {
            let host = u.host_str().unwrap_or_default();
            let account = host.split('.').next().unwrap_or_default();
            if account.is_empty() || !host.contains(".blob.") {
                return Err(Error::InvalidInput(format!(
                    "blob endpoint {s:?} is not https://{{account}}.blob.{{suffix}}"
                )));
            }
            let mut root = u.clone();
            root.set_path("/");
            root.set_query(None);
            Ok(Self {
                root,
                account: account.to_string(),
            })
        }
    }

    /// Path-style endpoint for `account` on `base` (`base` may already end in `/{account}`).
    pub fn path_style(base: Url, account: &str) -> Result<Self> {
        require_secure("blob endpoint", &base)?;
        validate_account(account)?;
        let mut root = base;
        root.set_query(None);
        let trimmed = root.path().trim_end_matches('/').to_string();
        let path = if trimmed.ends_with(&format!("/{account}")) {
            format!("{trimmed}/")
        } else {
            format!("{trimmed}/{account}/")
        };
        root.set_path(&path);
        Ok(Self {
            root,
            account: account.to_string(),
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// URL of a container (no trailing slash).
    pub fn container_url(&self, container: &str) -> Result<Url> {
        validate_container(container)?;
        let mut u = self.root.clone();
        u.path_segments_mut()
            .map_err(|_| Error::InvalidInput("endpoint cannot be a base".into()))?
            .pop_if_empty()
            .push(container);
        Ok(u)
    }

    /// URL of a blob; `/` in the name stays a path separator, other characters are escaped.
    pub fn blob_url(&self, container: &str, blob: &str) -> Result<Url> {
        if blob.is_empty() || blob.len() > 1024 {
            return Err(Error::InvalidInput(format!(
                "blob name must be 1..=1024 characters, got {}",
                blob.len()
            )));
        }
        let mut u = self.container_url(container)?;
        {
            let mut segs = u
                .path_segments_mut()
                .map_err(|_| Error::InvalidInput("endpoint cannot be a base".into()))?;
            for part in blob.split('/') {
                segs.push(part);
            }
        }
        Ok(u)
    }
}

fn validate_account(a: &str) -> Result<()> {
    if (3..=24).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "storage account name {a:?} must be 3-24 lowercase letters or digits"
        )))
    }
}

/// Container names: 3-63 of lowercase letters, digits and single dashes (also `$root`, `$logs`).
pub fn validate_container(c: &str) -> Result<()> {
    let ok = c.starts_with('$')
        || ((3..=63).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
            && !c.contains("--"));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!("invalid container name {c:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_style_endpoint() {
        let e = BlobEndpoint::parse("https://data01.blob.local.azurestack.external").unwrap();
        assert_eq!(e.account(), "data01");
        assert_eq!(
            e.blob_url("train", "2024/a b.csv").unwrap().as_str(),
            "https://data01.blob.local.azurestack.external/train/2024/a%20b.csv"
        );
        assert!(BlobEndpoint::parse("https://example.com").is_err());
    }

    #[test]
    fn path_style_endpoint() {
        let e = BlobEndpoint::parse("http://127.0.0.1:10000/devacct").unwrap();
        assert_eq!(e.account(), "devacct");
        assert_eq!(
            e.container_url("train").unwrap().as_str(),
            "http://127.0.0.1:10000/devacct/train"
        );
        let same = BlobEndpoint::path_style(
            Url::parse("http://127.0.0.1:10000/devacct/").unwrap(),
            "devacct",
        )
        .unwrap();
        assert_eq!(same, e);
        let added =
            BlobEndpoint::path_style(Url::parse("http://127.0.0.1:10000").unwrap(), "devacct")
                .unwrap();
        assert_eq!(added, e);
        assert!(BlobEndpoint::parse("http://127.0.0.1:10000/").is_err());
        // Signatures and SAS tokens never travel in plain http off loopback.
        for insecure in [
            "http://data01.blob.local.azurestack.external",
            "http://10.0.0.5:10000/devacct",
            "ftp://127.0.0.1/devacct",
        ] {
            assert!(
                matches!(
                    BlobEndpoint::parse(insecure),
                    Err(Error::UntrustedEndpoint { .. })
                ),
                "{insecure}"
            );
        }
        assert!(
            BlobEndpoint::path_style(Url::parse("http://10.0.0.5:10000").unwrap(), "devacct")
                .is_err()
        );
    }

    #[test]
    fn names_are_validated() {
        let e = BlobEndpoint::parse("http://127.0.0.1:1/acct").unwrap();
        assert!(e.container_url("Bad_Name").is_err());
        assert!(e.container_url("a--b").is_err());
        assert!(e.blob_url("ok-name", "").is_err());
        assert!(BlobEndpoint::parse("ftp://x.blob.y").is_err());
    }
}
