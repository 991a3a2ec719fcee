//! Building the one reqwest client every Azure client shares.

use std::{path::PathBuf, sync::Once, time::Duration};

use crate::{Error, Result};

/// Transport settings shared by all clients.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Extra PEM bundle trusted in addition to the system roots; Stack Hub stamps commonly use an
    /// enterprise CA.
    pub extra_ca_bundle: Option<PathBuf>,
    /// Per-request timeout; `None` leaves reqwest's default (none).
    pub timeout: Option<Duration>,
}

static RING: Once = Once::new();

/// Install rustls' ring provider once per process (we never build aws-lc-rs).
pub fn install_crypto_provider() {
    RING.call_once(|| {
        // Another crate may already have installed a provider; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpConfig {
    /// A client builder with our TLS and timeout settings applied, so tests can add overrides.
    pub fn builder(&self) -> Result<reqwest::ClientBuilder> {
        install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("edgetrain-azure/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if let Some(path) = &self.extra_ca_bundle {
            let pem = std::fs::read(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::ClientSetup(format!("CA bundle {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::ClientSetup(format!(
                    "CA bundle {} holds no certificate",
                    path.display()
                )));
            }
            b = b.tls_certs_merge(certs);
        }
        Ok(b)
    }

    /// Build the client.
    pub fn build(&self) -> Result<reqwest::Client> {
        self.builder()?
            .build()
            .map_err(|e| Error::ClientSetup(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_bundle_is_a_clear_error() {
        let cfg = HttpConfig {
            extra_ca_bundle: Some("/nonexistent/ca.pem".into()),
            timeout: None,
        };
        let err = cfg.build().unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }

    #[test]
    fn ca_bundle_without_certificates_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "not a pem\n").unwrap();
        let cfg = HttpConfig {
            extra_ca_bundle: Some(p),
            timeout: None,
        };
        assert!(matches!(cfg.build(), Err(Error::ClientSetup(_))));
    }
}
