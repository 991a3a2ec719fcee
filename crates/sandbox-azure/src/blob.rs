//! Just enough Blob REST for the simulator: service SAS signing (account key, HMAC-SHA256),
//! and upload / download / list through SAS URLs against Azurite.

use std::{net::SocketAddr, path::Path, sync::Arc};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    error::{Error, Result},
    secret::Secret,
};

/// Blob service version the simulator speaks (the 2020-09-01-hybrid profile's data-plane version).
pub const X_MS_VERSION: &str = "2019-07-07";

/// Fields of a service SAS (versions 2018-11-09 … 2020-10-02 string-to-sign layout).
#[derive(Debug, Clone)]
pub struct SasFields<'a> {
    pub account: &'a str,
    pub container: &'a str,
    /// `None` for a container SAS (`sr=c`).
    pub blob: Option<&'a str>,
    pub permissions: &'a str,
    pub start: Option<&'a str>,
    pub expiry: &'a str,
    pub ip: Option<&'a str>,
    pub protocol: Option<&'a str>,
}

/// Sign a service SAS with the account key; returns the query string (without `?`).
pub fn sign_service_sas(fields: &SasFields<'_>, account_key: &Secret) -> Result<Secret> {
    let resource = match fields.blob {
        Some(blob) => format!("/blob/{}/{}/{}", fields.account, fields.container, blob),
        None => format!("/blob/{}/{}", fields.account, fields.container),
    };
    let sr = if fields.blob.is_some() { "b" } else { "c" };
    let string_to_sign = [
        fields.permissions,
        fields.start.unwrap_or(""),
        fields.expiry,
        &resource,
        "",
        fields.ip.unwrap_or(""),
        fields.protocol.unwrap_or(""),
        X_MS_VERSION,
        sr,
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = hmac_base64(account_key, &string_to_sign)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("sv", X_MS_VERSION);
    query.append_pair("sr", sr);
    query.append_pair("sp", fields.permissions);
    if let Some(st) = fields.start {
        query.append_pair("st", st);
    }
    query.append_pair("se", fields.expiry);
    if let Some(ip) = fields.ip {
        query.append_pair("sip", ip);
    }
    if let Some(spr) = fields.protocol {
        query.append_pair("spr", spr);
    }
    query.append_pair("sig", &sig);
    Ok(Secret::new(query.finish()))
}

/// Sign an account SAS (blob service, all resource types) — used to create containers, which a
/// service SAS cannot do. String-to-sign layout of versions before 2020-12-06.
pub fn sign_account_sas(
    account: &str,
    permissions: &str,
    expiry: &str,
    account_key: &Secret,
) -> Result<Secret> {
    let string_to_sign =
        format!("{account}\n{permissions}\nb\nsco\n\n{expiry}\n\nhttps\n{X_MS_VERSION}\n");
    let sig = hmac_base64(account_key, &string_to_sign)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("sv", X_MS_VERSION)
        .append_pair("ss", "b")
        .append_pair("srt", "sco")
        .append_pair("sp", permissions)
        .append_pair("se", expiry)
        .append_pair("spr", "https")
        .append_pair("sig", &sig);
    Ok(Secret::new(query.finish()))
}

fn hmac_base64(account_key: &Secret, string_to_sign: &str) -> Result<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(account_key.expose())
        .map_err(|e| Error::InvalidConfig(format!("storage account key is not base64: {e}")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| Error::InvalidConfig(format!("storage account key: {e}")))?;
    mac.update(string_to_sign.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Resolves `*.localhost` to loopback, so production-style URLs
/// (`https://{account}.blob.localhost:PORT`) work without touching /etc/hosts.
#[derive(Debug)]
struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let addrs: reqwest::dns::Addrs =
                    Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
                return Ok(addrs);
            }
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs = Box::new(resolved.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

/// Install rustls' ring provider once (reqwest is built with `rustls-no-provider`).
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTPS client that trusts the sandbox CA.
pub fn http_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder().dns_resolver(Arc::new(LocalhostResolver));
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(Error::HttpClient)?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(Error::HttpClient)
}

/// A container reachable through a SAS.
#[derive(Debug, Clone)]
pub struct ContainerSas {
    /// `https://host:port/{account}/{container}` or `https://{account}.blob.host:port/{container}`.
    pub container_url: String,
    pub sas: Secret,
}

impl ContainerSas {
    /// A container of `account` at `account_url` (`https://host:port/{account}`), through an
    /// account SAS signed with its key: read, write, create and list everything in it.
    pub fn for_account_key(
        account_url: &str,
        account: &str,
        container: &str,
        key: &Secret,
    ) -> Result<Self> {
        Ok(Self {
            container_url: format!("{account_url}/{container}"),
            sas: sign_account_sas(account, "rwdlac", "2099-01-01T00:00:00Z", key)?,
        })
    }

    fn blob_url(&self, name: &str) -> String {
        let encoded: Vec<String> = name
            .split('/')
            .map(|seg| url::form_urlencoded::byte_serialize(seg.as_bytes()).collect())
            .collect();
        format!(
            "{}/{}?{}",
            self.container_url,
            encoded.join("/"),
            self.sas.expose()
        )
    }

    pub async fn create_container(&self, client: &reqwest::Client) -> Result<()> {
        let url = format!(
            "{}?restype=container&{}",
            self.container_url,
            self.sas.expose()
        );
        let what = format!("create container {}", self.container_url);
        let resp = client
            .put(url)
            .header("x-ms-version", X_MS_VERSION)
            .header("content-length", "0")
            .send()
            .await
            .map_err(|source| Error::Blob {
                what: what.clone(),
                source: source.without_url(),
            })?;
        let status = resp.status().as_u16();
        if status == 201 || status == 409 {
            return Ok(());
        }
        Err(Error::BlobStatus {
            what,
            status,
            body: resp.text().await.unwrap_or_default(),
        })
    }

    pub async fn put(&self, client: &reqwest::Client, name: &str, data: Vec<u8>) -> Result<()> {
        let what = format!("put blob {name}");
        let resp = client
            .put(self.blob_url(name))
            .header("x-ms-version", X_MS_VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            // Explicit even for 0 bytes (an empty job log): without it the request carries no
            // length at all and Azurite answers 411.
            .header("content-length", data.len())
            .body(data)
            .send()
            .await
            .map_err(|source| Error::Blob {
                what: what.clone(),
                source: source.without_url(),
            })?;
        check(resp, what).await.map(|_| ())
    }

    pub async fn get(&self, client: &reqwest::Client, name: &str) -> Result<Vec<u8>> {
        let what = format!("get blob {name}");
        let resp = client
            .get(self.blob_url(name))
            .header("x-ms-version", X_MS_VERSION)
            .send()
            .await
            .map_err(|source| Error::Blob {
                what: what.clone(),
                source: source.without_url(),
            })?;
        let resp = check(resp, what.clone()).await?;
        let bytes = resp.bytes().await.map_err(|source| Error::Blob {
            what,
            source: source.without_url(),
        })?;
        Ok(bytes.to_vec())
    }

    /// Names of all blobs under `prefix` (follows `NextMarker`).
    pub async fn list(&self, client: &reqwest::Client, prefix: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut url = format!(
                "{}?restype=container&comp=list&prefix={}&{}",
                self.container_url,
                url::form_urlencoded::byte_serialize(prefix.as_bytes()).collect::<String>(),
                self.sas.expose()
            );
            if !marker.is_empty() {
                url.push_str("&marker=");
                url.push_str(
                    &url::form_urlencoded::byte_serialize(marker.as_bytes()).collect::<String>(),
                );
            }
            let what = format!("list blobs {prefix}");
            let resp = client
                .get(url)
                .header("x-ms-version", X_MS_VERSION)
                .send()
                .await
                .map_err(|source| Error::Blob {
                    what: what.clone(),
                    source: source.without_url(),
                })?;
            let text = check(resp, what.clone())
                .await?
                .text()
                .await
                .map_err(|source| Error::Blob {
                    what,
                    source: source.without_url(),
                })?;
            let (page, next) = parse_list(&text)?;
            names.extend(page);
            match next {
                Some(m) if !m.is_empty() => marker = m,
                _ => return Ok(names),
            }
        }
    }

    /// Upload every file under `dir` to `{prefix}{relative path}`; returns the uploaded names.
    pub async fn upload_dir(
        &self,
        client: &reqwest::Client,
        dir: &Path,
        prefix: &str,
    ) -> Result<Vec<String>> {
        let mut uploaded = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(current) = stack.pop() {
            let entries = std::fs::read_dir(&current).map_err(|source| Error::Io {
                context: format!("read directory {}", current.display()),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| Error::Io {
                    context: format!("read directory {}", current.display()),
                    source,
                })?;
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.is_file() {
                    let rel = path
                        .strip_prefix(dir)
                        .map(|p| p.to_string_lossy().replace('\\', "/"))
                        .unwrap_or_default();
                    let data = std::fs::read(&path).map_err(|source| Error::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                    let name = format!("{prefix}{rel}");
                    self.put(client, &name, data).await?;
                    uploaded.push(name);
                }
            }
        }
        uploaded.sort();
        Ok(uploaded)
    }
}

async fn check(resp: reqwest::Response, what: String) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    Err(Error::BlobStatus { what, status, body })
}

/// Blob names and `NextMarker` from a List Blobs XML answer.
pub fn parse_list(xml: &str) -> Result<(Vec<String>, Option<String>)> {
    use quick_xml::events::Event;
    let bad = |e: &dyn std::fmt::Display| Error::InvalidConfig(format!("blob list XML: {e}"));
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut names = Vec::new();
    let mut next = None;
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                stack.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                text.clear();
            }
            Ok(Event::End(_)) => {
                let path: Vec<&str> = stack.iter().map(String::as_str).collect();
                match path.as_slice() {
                    [.., "Blob", "Name"] => names.push(std::mem::take(&mut text)),
                    [.., "NextMarker"] => next = Some(std::mem::take(&mut text)),
                    _ => {}
                }
                stack.pop();
                text.clear();
            }
            Ok(Event::Text(t)) => text.push_str(&t.decode().map_err(|e| bad(&e))?),
            // quick-xml reports entities (`&amp;`, `&#38;`) as separate events.
            Ok(Event::GeneralRef(r)) => {
                let name = r.decode().map_err(|e| bad(&e))?;
                if let Some(c) = r.resolve_char_ref().map_err(|e| bad(&e))? {
                    text.push(c);
                } else if let Some(v) = quick_xml::escape::resolve_predefined_entity(&name) {
                    text.push_str(v);
                } else {
                    return Err(bad(&format!("unknown entity &{name};")));
                }
            }
            Ok(Event::CData(c)) => text.push_str(&String::from_utf8_lossy(&c)),
            Ok(Event::Eof) => break,
            Err(e) => return Err(bad(&e)),
            _ => {}
        }
    }
    Ok((names, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_container_sas_deterministically() {
        let key =
            Secret::new(base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef"));
        let fields = SasFields {
            account: "acct",
            container: "data",
            blob: None,
            permissions: "rl",
            start: None,
            expiry: "2030-01-01T00:00:00Z",
            ip: Some("127.0.0.1"),
            protocol: Some("https"),
        };
        let a = sign_service_sas(&fields, &key).unwrap();
        let b = sign_service_sas(&fields, &key).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert!(a.expose().contains("sr=c"));
        assert!(a.expose().contains("sip=127.0.0.1"));
        assert!(a.expose().contains("spr=https"));
        let other = SasFields {
            permissions: "r",
            ..fields
        };
        assert_ne!(sign_service_sas(&other, &key).unwrap().expose(), a.expose());
    }

    #[test]
    fn parses_listing() {
        let xml = r#"<?xml version="1.0"?><EnumerationResults><Blobs><Blob><Name>a/b &amp; c.txt</Name><Properties/></Blob><BlobPrefix><Name>x/</Name></BlobPrefix></Blobs><NextMarker>m1</NextMarker></EnumerationResults>"#;
        let (names, next) = parse_list(xml).unwrap();
        assert_eq!(names, vec!["a/b & c.txt"]);
        assert_eq!(next.as_deref(), Some("m1"));
    }
}
