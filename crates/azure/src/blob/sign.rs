//! Shared Key request signing and service SAS, as pure functions.

use std::collections::BTreeMap;

use azure_core::credentials::{Secret, SecretBytes};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use sha2::Sha256;
use url::Url;

use crate::{Error, Result};

/// Blob data-plane version we pin (2020-09-01-hybrid profile).
pub const STORAGE_VERSION: &str = "2019-07-07";

/// A storage account key (base64 in configuration, raw bytes here).
#[derive(Debug, Clone)]
pub struct AccountKey(SecretBytes);

impl AccountKey {
    pub fn from_base64(b64: &str) -> Result<Self> {
        let raw = STANDARD
            .decode(b64.trim())
            .map_err(|_| Error::InvalidInput("storage account key is not valid base64".into()))?;
        if raw.is_empty() {
            return Err(Error::InvalidInput("storage account key is empty".into()));
        }
        Ok(Self(SecretBytes::new(raw)))
    }

    fn hmac_b64(&self, msg: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.bytes()).expect("HMAC takes any key length");
        mac.update(msg.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Shared Key string-to-sign for versions 2015-02-21 and later.
pub fn shared_key_string_to_sign(
    account: &str,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
) -> String {
    let content_length = match header(headers, "content-length") {
        "0" => "",
        v => v,
    };
    let mut s = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        method.as_str(),
        header(headers, "content-encoding"),
        header(headers, "content-language"),
        content_length,
        header(headers, "content-md5"),
        header(headers, "content-type"),
        // Empty when x-ms-date is sent, which we always do.
        if headers.contains_key("x-ms-date") {
            ""
        } else {
            header(headers, "date")
        },
        header(headers, "if-modified-since"),
        header(headers, "if-match"),
        header(headers, "if-none-match"),
        header(headers, "if-unmodified-since"),
        header(headers, "range"),
    );
    let mut ms: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        let name = k.as_str().to_ascii_lowercase();
        if name.starts_with("x-ms-") {
            ms.insert(name, v.to_str().unwrap_or("").trim().to_string());
        }
    }
    for (k, v) in ms {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&format!("/{account}{}", url.path()));
    let mut q: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        q.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut vs) in q {
        vs.sort();
        s.push_str(&format!("\n{k}:{}", vs.join(",")));
    }
    s
}

/// `Authorization` header value for a request.
pub fn shared_key_authorization(
    account: &str,
    key: &AccountKey,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
) -> String {
    let sts = shared_key_string_to_sign(account, method, url, headers);
    format!("SharedKey {account}:{}", key.hmac_b64(&sts))
}

/// RFC 1123 date for `x-ms-date`.
pub fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Service SAS permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SasPermissions {
    pub read: bool,
    pub add: bool,
    pub create: bool,
    pub write: bool,
    pub delete: bool,
    /// Container SAS only.
    pub list: bool,
}

impl SasPermissions {
    /// Read + list: what a training job needs to read its input container.
    pub fn read_list() -> Self {
        Self {
            read: true,
            list: true,
            ..Self::default()
        }
    }

    /// In the order the service requires (`racwdl`).
    pub fn as_str(&self) -> String {
        [
            (self.read, 'r'),
            (self.add, 'a'),
            (self.create, 'c'),
            (self.write, 'w'),
            (self.delete, 'd'),
            (self.list, 'l'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }
}

/// What the SAS grants access to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SasResource {
    Container { container: String },
    Blob { container: String, blob: String },
}

/// `spr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SasProtocol {
    #[default]
    HttpsOnly,
    HttpsAndHttp,
}

/// Inputs of a service SAS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSas {
    pub account: String,
    pub resource: SasResource,
    pub permissions: SasPermissions,
    pub start: Option<DateTime<Utc>>,
    pub expiry: DateTime<Utc>,
    /// `sip`: one address or `from-to` range.
    pub ip: Option<String>,
    pub protocol: SasProtocol,
}

fn sas_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl ServiceSas {
    /// A training job's access to its input data: the one container, read + list only,
    /// https only, usable only from `ip` (the address the storage account sees the VM
    /// connect from), until `expiry`.
    pub fn job_input(account: &str, container: &str, ip: &str, expiry: DateTime<Utc>) -> Self {
        Self {
            account: account.to_string(),
            resource: SasResource::Container {
                container: container.to_string(),
            },
            permissions: SasPermissions::read_list(),
            start: None,
            expiry,
            ip: Some(ip.to_string()),
            protocol: SasProtocol::HttpsOnly,
        }
    }

    fn checked(&self) -> Result<(&'static str, String, String)> {
        let perms = self.permissions.as_str();
        if perms.is_empty() {
            return Err(Error::InvalidInput(
                "SAS needs at least one permission".into(),
            ));
        }
        if let Some(s) = self.start
            && s >= self.expiry
        {
            return Err(Error::InvalidInput(
                "SAS start must be before expiry".into(),
            ));
        }
        let (sr, canonical) = match &self.resource {
            SasResource::Container { container } => {
                super::endpoint::validate_container(container)?;
                ("c", format!("/blob/{}/{container}", self.account))
            }
            SasResource::Blob { container, blob } => {
                super::endpoint::validate_container(container)?;
                if self.permissions.list {
                    return Err(Error::InvalidInput(
                        "list permission applies to containers only".into(),
                    ));
                }
                ("b", format!("/blob/{}/{container}/{blob}", self.account))
            }
        };
        Ok((sr, perms, canonical))
    }

    /// String-to-sign for versions 2018-11-09 through 2020-10-02 (we sign as 2019-07-07).
    pub fn string_to_sign(&self) -> Result<String> {
        let (sr, perms, canonical) = self.checked()?;
        let spr = match self.protocol {
            SasProtocol::HttpsOnly => "https",
            SasProtocol::HttpsAndHttp => "https,http",
        };
        Ok([
            perms.as_str(),
            &self.start.map(sas_time).unwrap_or_default(),
            &sas_time(self.expiry),
            &canonical,
            "", // si
            self.ip.as_deref().unwrap_or(""),
            spr,
            STORAGE_VERSION,
            sr,
            "", // snapshot time
            "", // rscc
            "", // rscd
            "", // rsce
            "", // rscl
            "", // rsct
        ]
        .join("\n"))
    }

    /// The signed query string (without `?`). It is a credential: keep it in a [`Secret`].
    pub fn sign(&self, key: &AccountKey) -> Result<Secret> {
        let (sr, perms, _) = self.checked()?;
        let sig = key.hmac_b64(&self.string_to_sign()?);
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("sv", STORAGE_VERSION);
        q.append_pair("sr", sr);
        q.append_pair("sp", &perms);
        if let Some(st) = self.start {
            q.append_pair("st", &sas_time(st));
        }
        q.append_pair("se", &sas_time(self.expiry));
        if let Some(ip) = &self.ip {
            q.append_pair("sip", ip);
        }
        q.append_pair(
            "spr",
            match self.protocol {
                SasProtocol::HttpsOnly => "https",
                SasProtocol::HttpsAndHttp => "https,http",
            },
        );
        q.append_pair("sig", &sig);
        Ok(Secret::new(q.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // Azurite's well-known development key; vectors below were computed independently with
    // Python: base64.b64encode(hmac.new(base64.b64decode(KEY), sts.encode(), hashlib.sha256).digest()).
    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn shared_key_string_to_sign_and_signature() {
        let url = Url::parse("https://myaccount.blob.core.windows.net/mycontainer?restype=container&comp=list&prefix=data%2F&maxresults=10").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-ms-version", HeaderValue::from_static("2019-07-07"));
        h.insert(
            "x-ms-date",
            HeaderValue::from_static("Wed, 25 Nov 2026 03:00:00 GMT"),
        );
        let sts = shared_key_string_to_sign("myaccount", &Method::GET, &url, &h);
        assert_eq!(
            sts,
            "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Wed, 25 Nov 2026 03:00:00 GMT\nx-ms-version:2019-07-07\n/myaccount/mycontainer\ncomp:list\nmaxresults:10\nprefix:data/\nrestype:container"
        );
        let key = AccountKey::from_base64(KEY).unwrap();
        assert_eq!(
            shared_key_authorization("myaccount", &key, &Method::GET, &url, &h),
            "SharedKey myaccount:IO3Rs7mdsYurr1kvO00xPWM9lzUojcj4ZEuzISzTzLQ="
        );
    }

    #[test]
    fn put_blob_string_to_sign_has_length_type_md5() {
        let url = Url::parse("http://127.0.0.1:10000/acct/c/dir/file.txt").unwrap();
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("11"));
        h.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(
            "content-md5",
            HeaderValue::from_static("XrY7u+Ae7tCTyyK7j1rNww=="),
        );
        h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
        h.insert(
            "x-ms-date",
            HeaderValue::from_static("Wed, 25 Nov 2026 03:00:00 GMT"),
        );
        h.insert("x-ms-version", HeaderValue::from_static("2019-07-07"));
        assert_eq!(
            shared_key_string_to_sign("acct", &Method::PUT, &url, &h),
            "PUT\n\n\n11\nXrY7u+Ae7tCTyyK7j1rNww==\napplication/octet-stream\n\n\n\n\n\n\nx-ms-blob-type:BlockBlob\nx-ms-date:Wed, 25 Nov 2026 03:00:00 GMT\nx-ms-version:2019-07-07\n/acct/acct/c/dir/file.txt"
        );
    }

    #[test]
    fn service_sas_container_vector() {
        let sas = ServiceSas {
            account: "myaccount".into(),
            resource: SasResource::Container {
                container: "training".into(),
            },
            permissions: SasPermissions::read_list(),
            start: Some(t("2026-11-25T03:00:00Z")),
            expiry: t("2026-11-25T05:00:00Z"),
            ip: Some("203.0.113.7".into()),
            protocol: SasProtocol::HttpsOnly,
        };
        assert_eq!(
            sas.string_to_sign().unwrap(),
            "rl\n2026-11-25T03:00:00Z\n2026-11-25T05:00:00Z\n/blob/myaccount/training\n\n203.0.113.7\nhttps\n2019-07-07\nc\n\n\n\n\n\n"
        );
        let key = AccountKey::from_base64(KEY).unwrap();
        let q = sas.sign(&key).unwrap();
        assert_eq!(
            q.secret(),
            "sv=2019-07-07&sr=c&sp=rl&st=2026-11-25T03%3A00%3A00Z&se=2026-11-25T05%3A00%3A00Z&sip=203.0.113.7&spr=https&sig=zm8oSZYvCHNWv6tcVBlPFC0%2BEho1b64KdO%2BHzNf0Aio%3D"
        );
    }

    #[test]
    fn sas_input_errors() {
        let base = ServiceSas {
            account: "a".into(),
            resource: SasResource::Blob {
                container: "ccc".into(),
                blob: "b".into(),
            },
            permissions: SasPermissions::read_list(),
            start: None,
            expiry: t("2026-11-25T05:00:00Z"),
            ip: None,
            protocol: SasProtocol::HttpsOnly,
        };
        assert!(base.string_to_sign().is_err(), "list on a blob");
        let mut empty = base.clone();
        empty.permissions = SasPermissions::default();
        assert!(empty.string_to_sign().is_err());
        let mut backwards = base.clone();
        backwards.permissions = SasPermissions {
            read: true,
            ..Default::default()
        };
        backwards.start = Some(t("2026-11-26T00:00:00Z"));
        assert!(backwards.string_to_sign().is_err());
        assert!(AccountKey::from_base64("not base64!").is_err());
        let perms = SasPermissions {
            read: true,
            add: true,
            create: true,
            write: true,
            delete: true,
            list: true,
        };
        assert_eq!(perms.as_str(), "racwdl");
    }

    #[test]
    fn rfc1123_format() {
        assert_eq!(
            rfc1123(t("2026-11-25T03:04:05Z")),
            "Wed, 25 Nov 2026 03:04:05 GMT"
        );
    }
}
