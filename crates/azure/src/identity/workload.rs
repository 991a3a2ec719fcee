//! Workload identity (federated credentials), for public Azure (Azure ML): the pod's
//! Kubernetes service-account token, projected into a file (Azure Workload Identity's webhook
//! sets `AZURE_FEDERATED_TOKEN_FILE`), is exchanged for an Entra ID token with the
//! client-credentials grant and a JWT client assertion. AD FS (disconnected Stack Hub) has no
//! workload identity, so an AD FS authority is refused.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    time::OffsetDateTime,
};

use super::{Authority, IdentityProvider, is_fresh, parse_token_response};
use crate::{Error, Result, transport::join_url};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Exchanges the projected service-account token for tokens of `client_id`.
#[derive(Debug)]
pub struct WorkloadIdentityCredential {
    http: reqwest::Client,
    authority: Authority,
    client_id: String,
    token_file: PathBuf,
    skew: Duration,
    cached: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

impl WorkloadIdentityCredential {
    pub fn new(
        http: reqwest::Client,
        authority: Authority,
        client_id: &str,
        token_file: PathBuf,
    ) -> Result<Self> {
        if authority.provider() == IdentityProvider::Adfs {
            return Err(Error::InvalidInput(
                "workload identity needs Entra ID; AD FS has none".into(),
            ));
        }
        if client_id.trim().is_empty() {
            return Err(Error::InvalidInput("client id must not be empty".into()));
        }
        Ok(Self {
            http,
            authority,
            client_id: client_id.trim().to_string(),
            token_file,
            skew: Duration::from_secs(300),
            cached: tokio::sync::Mutex::default(),
        })
    }

    /// The v2 endpoint: client assertions are exchanged for `scope`s there.
    fn token_url(&self) -> Result<url::Url> {
        join_url(
            self.authority.login_endpoint(),
            &format!("{}/oauth2/v2.0/token", self.authority.tenant()),
        )
    }

    async fn request(&self, scope: &str) -> Result<AccessToken> {
        // Read every time: the kubelet rotates the projected token.
        let assertion = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|source| Error::Io {
                path: self.token_file.display().to_string(),
                source,
            })?;
        let url = self.token_url()?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.trim()),
            ("scope", scope),
        ];
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

    /// A token for `scope`, from the cache while fresh.
    pub async fn token(&self, scope: &str) -> Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.get(scope)
            && is_fresh(t, OffsetDateTime::now_utc(), self.skew)
        {
            return Ok(t.clone());
        }
        let t = self.request(scope).await?;
        cached.insert(scope.to_string(), t.clone());
        Ok(t)
    }
}

#[async_trait::async_trait]
impl TokenCredential for WorkloadIdentityCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("expected exactly one scope, got {}", scopes.len()),
            ));
        };
        self.token(scope).await.map_err(|e| {
            azure_core::Error::with_error(
                azure_core::error::ErrorKind::Credential,
                e,
                "workload identity token request failed",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A token endpoint that records each request body and answers with a short-lived token.
    async fn token_endpoint() -> (url::Url, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = url::Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break format!("{}\n{body}", head.lines().next().unwrap());
                        }
                    }
                };
                tx.send(body).unwrap();
                let answer = r#"{"token_type":"Bearer","expires_in":60,"access_token":"tok"}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (base, rx)
    }

    #[tokio::test]
    async fn exchanges_the_projected_token_read_afresh_each_time() {
        crate::transport::install_crypto_provider();
        let (login, mut requests) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "sa-token-1\n").unwrap();
        let cred = WorkloadIdentityCredential::new(
            reqwest::Client::new(),
            Authority::new(login, "tenant-a").unwrap(),
            "app-1",
            file.clone(),
        )
        .unwrap();
        let scope = "https://management.azure.com/.default";
        let t = cred.get_token(&[scope], None).await.unwrap();
        assert_eq!(t.token.secret(), "tok");
        let first = requests.recv().await.unwrap();
        assert!(
            first.starts_with("POST /tenant-a/oauth2/v2.0/token "),
            "{first}"
        );
        for want in [
            "grant_type=client_credentials",
            "client_id=app-1",
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
            "client_assertion=sa-token-1&",
            "scope=https%3A%2F%2Fmanagement.azure.com%2F.default",
        ] {
            assert!(first.contains(want), "{want} missing from {first}");
        }
        // The kubelet rotated the file; a 60 s token is within the 300 s refresh margin, so the
        // next call asks again, with the new assertion.
        std::fs::write(&file, "sa-token-2").unwrap();
        cred.get_token(&[scope], None).await.unwrap();
        let second = requests.recv().await.unwrap();
        assert!(second.contains("client_assertion=sa-token-2&"), "{second}");
    }

    #[test]
    fn adfs_has_no_workload_identity() {
        crate::transport::install_crypto_provider();
        let adfs = Authority::new(
            url::Url::parse("https://adfs.local.azurestack.external/adfs/").unwrap(),
            "x",
        )
        .unwrap();
        let e = WorkloadIdentityCredential::new(
            reqwest::Client::new(),
            adfs,
            "app",
            "/nonexistent".into(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("AD FS"), "{e}");
    }
}
