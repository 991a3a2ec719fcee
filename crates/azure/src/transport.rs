//! Building the one reqwest client every Azure client shares.

use std::{path::PathBuf, sync::Once, time::Duration};

use url::Url;

use crate::{
    Error, Result,
    arm::{Attempt, RequestMetrics, RetryPolicy},
};

/// Transport settings shared by all clients.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Extra PEM bundle trusted in addition to the system roots; Stack Hub stamps commonly use an
    /// enterprise CA.
    pub extra_ca_bundle: Option<PathBuf>,
    /// TCP + TLS connect limit.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response; a per-read limit, so long blob downloads that
    /// keep flowing are not cut off.
    pub read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            extra_ca_bundle: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Join a relative path onto a base URL treating the base as a directory.
pub(crate) fn join_url(base: &Url, rel: &str) -> Result<Url> {
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
            .user_agent(concat!("edgetrain-azure/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout);
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

/// Send a request built afresh for every attempt (so auth and rate limiting run per attempt),
/// retrying transport errors and retryable statuses as `policy` says, and counting every
/// attempt in `metrics`. Returns the last response whatever its status.
pub(crate) async fn send_with_retries<F, Fut>(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    metrics: &RequestMetrics,
    mut build: F,
) -> Result<reqwest::Response>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::Request>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = build().await?;
        let method = req.method().clone();
        let host = req.url().host_str().unwrap_or_default().to_string();
        // Without the query: a SAS must never reach errors or logs.
        let mut shown = req.url().clone();
        shown.set_query(None);
        match http.execute(req).await {
            Err(source) => {
                metrics.record(&host, method.as_str(), None);
                if let Some(d) = policy.next_delay(attempt, Attempt::Transport) {
                    tracing::warn!(%method, url = %shown, attempt, ?d, error = %source.without_url(), "transport error, retrying");
                    tokio::time::sleep(d).await;
                    continue;
                }
                return Err(Error::Transport {
                    method: method.to_string(),
                    url: shown.to_string(),
                    source: source.without_url(),
                });
            }
            Ok(resp) => {
                let status = resp.status();
                metrics.record(&host, method.as_str(), Some(status.as_u16()));
                let outcome = Attempt::Response {
                    status,
                    headers: resp.headers(),
                };
                if let Some(d) = policy.next_delay(attempt, outcome) {
                    tracing::info!(%method, url = %shown, status = status.as_u16(), attempt, ?d, "server asked to retry");
                    tokio::time::sleep(d).await;
                    continue;
                }
                tracing::debug!(%method, url = %shown, status = status.as_u16(), attempt, "Azure call");
                return Ok(resp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_bundle_is_a_clear_error() {
        let cfg = HttpConfig {
            extra_ca_bundle: Some("/nonexistent/ca.pem".into()),
            ..HttpConfig::default()
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
            ..HttpConfig::default()
        };
        assert!(matches!(cfg.build(), Err(Error::ClientSetup(_))));
    }
}
