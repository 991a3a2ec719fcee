//! Blob data-plane client (Shared Key or SAS), behind [`BlobApi`].

use async_trait::async_trait;
use azure_core::credentials::Secret;
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use md5::{Digest, Md5};
use url::Url;

use super::{
    endpoint::BlobEndpoint,
    list::{BlobItem, BlobPage, normalize_etag, parse_http_date, parse_list_page},
    sign::{AccountKey, STORAGE_VERSION, rfc1123, shared_key_authorization},
};
use crate::{
    Error, Result,
    arm::{RequestMetrics, RetryPolicy},
    error::parse_url,
    transport::send_with_retries,
};

/// How requests are authorised.
#[derive(Debug, Clone)]
pub enum BlobAuth {
    /// Account key (Stack Hub has no Entra ID for storage).
    SharedKey(AccountKey),
    /// A SAS query string (without `?`), e.g. from Azure ML's pending-upload flow.
    Sas(Secret),
}

/// Get Blob Properties result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProperties {
    pub size: u64,
    pub content_md5: Option<String>,
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub content_type: Option<String>,
    pub blob_type: Option<String>,
}

/// Largest single-request Put Blob at x-ms-version 2019-07-07 (256 MiB).
pub const MAX_PUT_BLOB: usize = 256 * 1024 * 1024;

/// Blob operations the operator needs.
#[async_trait]
pub trait BlobApi: Send + Sync {
    /// One page of List Blobs under `prefix`, starting at `marker`.
    async fn list_page(
        &self,
        container: &str,
        prefix: &str,
        marker: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<BlobPage>;

    /// Every blob under `prefix`, fetched page by page as the stream is polled (a
    /// 100,000-blob listing holds one page in memory, never the whole list).
    fn list(&self, container: &str, prefix: &str) -> BoxStream<'static, Result<BlobItem>>;

    /// HEAD the blob; `None` when it does not exist.
    async fn properties(&self, container: &str, blob: &str) -> Result<Option<BlobProperties>>;

    /// The blob's content as a byte stream.
    async fn read(&self, container: &str, blob: &str) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// The content of the blob exactly as `item` listed it, from `offset` to its end, streamed:
    /// pinned to the listed ETag (`If-Match`), so a blob overwritten since the listing fails
    /// with HTTP 412 instead of yielding other bytes, and its length checked against the listed
    /// size. Every call is a new request, so a caller can read the same bytes again (a second
    /// pass, a resumed upload) without keeping them.
    async fn read_listed(
        &self,
        container: &str,
        item: &BlobItem,
        offset: u64,
    ) -> Result<BoxStream<'static, Result<Bytes>>>;

    /// Upload a block blob in one request (sets Content-MD5). Returns the new ETag.
    async fn put(
        &self,
        container: &str,
        blob: &str,
        data: Bytes,
        content_type: Option<&str>,
    ) -> Result<String>;
}

/// [`BlobApi`] over HTTP.
#[derive(Clone)]
pub struct BlobClient {
    http: reqwest::Client,
    endpoint: BlobEndpoint,
    auth: BlobAuth,
    retry: RetryPolicy,
    metrics: RequestMetrics,
}

impl std::fmt::Debug for BlobClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobClient")
            .field("endpoint", &self.endpoint)
            .field(
                "auth",
                &match self.auth {
                    BlobAuth::SharedKey(_) => "SharedKey(***)",
                    BlobAuth::Sas(_) => "Sas(***)",
                },
            )
            .finish_non_exhaustive()
    }
}

impl BlobClient {
    pub fn new(http: reqwest::Client, endpoint: BlobEndpoint, auth: BlobAuth) -> Self {
        Self {
            http,
            endpoint,
            auth,
            retry: RetryPolicy::default(),
            metrics: RequestMetrics::default(),
        }
    }

    /// A client for the container a container SAS URL names; returns it and the container.
    /// The URL may go on below the container (`https://{acct}.blob.{suffix}/{container}/{path}`,
    /// as Azure ML's `sasUri` does: "storage, container/blob path and SAS token"); the
    /// container is the first segment after the account, whatever follows it.
    pub fn from_container_sas_url(http: reqwest::Client, sas_url: &str) -> Result<(Self, String)> {
        let u = parse_url(sas_url)?;
        let query = u
            .query()
            .filter(|q| q.contains("sig="))
            .ok_or_else(|| Error::InvalidInput("container SAS URL carries no signature".into()))?;
        let sas = Secret::new(query.to_string());
        let mut bare = u.clone();
        bare.set_query(None);
        let segs: Vec<String> = bare
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        // Path-style endpoints carry the account as the first segment.
        let account_segments = usize::from(super::endpoint::is_ip_or_localhost(&bare));
        let container = segs
            .get(account_segments)
            .cloned()
            .ok_or_else(|| Error::InvalidInput("SAS URL names no container".into()))?;
        bare.set_path(&format!("/{}", segs[..account_segments].join("/")));
        let endpoint = BlobEndpoint::parse(bare.as_str())?;
        Ok((Self::new(http, endpoint, BlobAuth::Sas(sas)), container))
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_metrics(mut self, metrics: RequestMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn endpoint(&self) -> &BlobEndpoint {
        &self.endpoint
    }

    /// The blob's bytes from `offset` to its end (`x-ms-range: bytes=OFFSET-`), so that a
    /// growing blob (a running job's log) is followed without reading it again from the start.
    /// `None` when the blob does not exist; empty when nothing lies past `offset` (416).
    pub async fn read_from(
        &self,
        container: &str,
        blob: &str,
        offset: u64,
    ) -> Result<Option<Bytes>> {
        let url = self.endpoint.blob_url(container, blob)?;
        let resource = url.path().to_string();
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-range",
            HeaderValue::from_str(&format!("bytes={offset}-")).expect("a range is ASCII"),
        );
        let resp = self
            .send(
                Method::GET,
                url,
                h,
                None,
                &[StatusCode::NOT_FOUND, StatusCode::RANGE_NOT_SATISFIABLE],
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::RANGE_NOT_SATISFIABLE => Ok(Some(Bytes::new())),
            _ => resp
                .bytes()
                .await
                .map(Some)
                .map_err(|source| Error::Transport {
                    method: "GET".into(),
                    url: resource,
                    source: source.without_url(),
                }),
        }
    }

    fn authorise(&self, req: &mut reqwest::Request) -> Result<()> {
        let h = req.headers_mut();
        h.insert("x-ms-version", HeaderValue::from_static(STORAGE_VERSION));
        h.insert(
            "x-ms-date",
            HeaderValue::from_str(&rfc1123(Utc::now())).expect("date is ASCII"),
        );
        match &self.auth {
            BlobAuth::SharedKey(key) => {
                let auth = shared_key_authorization(
                    self.endpoint.account(),
                    key,
                    req.method(),
                    req.url(),
                    req.headers(),
                );
                req.headers_mut().insert(
                    "authorization",
                    HeaderValue::from_str(&auth)
                        .map_err(|e| Error::InvalidInput(format!("authorization header: {e}")))?,
                );
            }
            BlobAuth::Sas(sas) => {
                let url = req.url_mut();
                let q = match url.query() {
                    Some(existing) if !existing.is_empty() => {
                        format!("{existing}&{}", sas.secret())
                    }
                    _ => sas.secret().to_string(),
                };
                url.set_query(Some(&q));
            }
        }
        Ok(())
    }

    /// Send with retries; error statuses other than `allow` become [`Error::Blob`].
    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        allow: &[StatusCode],
    ) -> Result<reqwest::Response> {
        // Path without the SAS, for errors.
        let resource = url.path().to_string();
        let (method, url, headers, body, shown) =
            (&method, &url, &headers, &body, resource.as_str());
        // `move` copies these references into each attempt's future.
        let build = move || async move {
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = body {
                rb = rb.body(b.clone());
            }
            let mut req = rb.build().map_err(|source| Error::Transport {
                method: method.to_string(),
                url: shown.to_string(),
                source: source.without_url(),
            })?;
            self.authorise(&mut req)?;
            Ok(req)
        };
        let resp = send_with_retries(&self.http, &self.retry, &self.metrics, build).await?;
        let status = resp.status();
        if status.is_success() || allow.contains(&status) {
            return Ok(resp);
        }
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        let message = text
            .split_once("<Message>")
            .and_then(|(_, r)| r.split_once("</Message>"))
            .map(|(m, _)| m.to_string())
            .unwrap_or(text);
        Err(Error::Blob {
            method: method.to_string(),
            resource,
            status: status.as_u16(),
            code,
            message,
        })
    }
}

fn header_str(h: &HeaderMap, n: &str) -> Option<String> {
    h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[async_trait]
impl BlobApi for BlobClient {
    async fn list_page(
        &self,
        container: &str,
        prefix: &str,
        marker: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<BlobPage> {
        let mut url = self.endpoint.container_url(container)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("restype", "container")
                .append_pair("comp", "list");
            if !prefix.is_empty() {
                q.append_pair("prefix", prefix);
            }
            if let Some(m) = marker {
                q.append_pair("marker", m);
            }
            if let Some(n) = max_results {
                if n == 0 {
                    return Err(Error::InvalidInput("maxresults must be positive".into()));
                }
                q.append_pair("maxresults", &n.min(5000).to_string());
            }
        }
        let resp = self
            .send(Method::GET, url, HeaderMap::new(), None, &[])
            .await?;
        let text = resp
            .text()
            .await
            .map_err(|e| Error::decode("List Blobs", e))?;
        parse_list_page(&text)
    }

    fn list(&self, container: &str, prefix: &str) -> BoxStream<'static, Result<BlobItem>> {
        let client = self.clone();
        let container = container.to_string();
        let prefix = prefix.to_string();
        // State: None = done; Some(marker) = fetch the page at marker ("" = first page).
        futures::stream::try_unfold(Some(String::new()), move |state| {
            let client = client.clone();
            let container = container.clone();
            let prefix = prefix.clone();
            async move {
                let Some(marker) = state else {
                    return Ok::<_, Error>(None);
                };
                let m = (!marker.is_empty()).then_some(marker.as_str());
                let page = client.list_page(&container, &prefix, m, None).await?;
                let next = page.next_marker;
                Ok(Some((
                    futures::stream::iter(page.items.into_iter().map(Ok)),
                    next,
                )))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn properties(&self, container: &str, blob: &str) -> Result<Option<BlobProperties>> {
        let url = self.endpoint.blob_url(container, blob)?;
        let resp = self
            .send(
                Method::HEAD,
                url,
                HeaderMap::new(),
                None,
                &[StatusCode::NOT_FOUND],
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let h = resp.headers();
        let size = header_str(h, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::decode("Get Blob Properties", "no Content-Length"))?;
        let last_modified = parse_http_date(
            &header_str(h, "last-modified")
                .ok_or_else(|| Error::decode("Get Blob Properties", "no Last-Modified"))?,
        )?;
        Ok(Some(BlobProperties {
            size,
            content_md5: header_str(h, "content-md5"),
            etag: normalize_etag(&header_str(h, "etag").unwrap_or_default()),
            last_modified,
            content_type: header_str(h, "content-type"),
            blob_type: header_str(h, "x-ms-blob-type"),
        }))
    }

    async fn read(&self, container: &str, blob: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let url = self.endpoint.blob_url(container, blob)?;
        let resource = url.path().to_string();
        let resp = self
            .send(Method::GET, url, HeaderMap::new(), None, &[])
            .await?;
        Ok(body_stream(resp, resource))
    }

    async fn read_listed(
        &self,
        container: &str,
        item: &BlobItem,
        offset: u64,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        if offset > item.size {
            return Err(Error::InvalidInput(format!(
                "offset {offset} is past the end of blob {} ({} bytes)",
                item.name, item.size
            )));
        }
        // Nothing left to read; a range on an empty blob would be answered 416.
        if offset == item.size {
            return Ok(futures::stream::empty().boxed());
        }
        let url = self.endpoint.blob_url(container, &item.name)?;
        let resource = url.path().to_string();
        let etag = normalize_etag(&item.etag);
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-range",
            HeaderValue::from_str(&format!("bytes={offset}-")).expect("a range is ASCII"),
        );
        h.insert(
            "if-match",
            HeaderValue::from_str(&etag)
                .map_err(|e| Error::InvalidInput(format!("ETag {etag:?}: {e}")))?,
        );
        let resp = match self.send(Method::GET, url, h, None, &[]).await {
            Err(Error::Blob {
                method,
                resource,
                status: 412,
                code,
                message,
            }) => {
                return Err(Error::Blob {
                    method,
                    resource,
                    status: 412,
                    code,
                    message: format!(
                        "the blob changed after it was listed (ETag {etag} no longer matches): {message}"
                    ),
                });
            }
            other => other?,
        };
        // The body's framing (Content-Length) is enforced by the HTTP client, so a matching
        // length here means exactly the listed bytes from `offset` arrive or the stream fails.
        let want = item.size - offset;
        let length = header_str(resp.headers(), "content-length").and_then(|v| v.parse().ok());
        if length != Some(want) {
            return Err(Error::decode(
                format!("Get Blob {resource}"),
                format!(
                    "Content-Length {length:?} from offset {offset}, expected {want} (listed size {})",
                    item.size
                ),
            ));
        }
        Ok(body_stream(resp, resource))
    }

    async fn put(
        &self,
        container: &str,
        blob: &str,
        data: Bytes,
        content_type: Option<&str>,
    ) -> Result<String> {
        if data.len() > MAX_PUT_BLOB {
            return Err(Error::InvalidInput(format!(
                "{} bytes exceed the single-request Put Blob limit of {MAX_PUT_BLOB}",
                data.len()
            )));
        }
        let url = self.endpoint.blob_url(container, blob)?;
        let mut h = HeaderMap::new();
        h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
        h.insert(
            "content-type",
            HeaderValue::from_str(content_type.unwrap_or("application/octet-stream"))
                .map_err(|e| Error::InvalidInput(format!("content type: {e}")))?,
        );
        h.insert("content-length", HeaderValue::from(data.len()));
        let md5 = STANDARD.encode(Md5::digest(&data));
        h.insert(
            "content-md5",
            HeaderValue::from_str(&md5).expect("base64 is ASCII"),
        );
        let resp = self.send(Method::PUT, url, h, Some(data), &[]).await?;
        Ok(header_str(resp.headers(), "etag").unwrap_or_default())
    }
}

/// A GET's body as a stream whose errors name the resource (never the URL's SAS query).
fn body_stream(resp: reqwest::Response, resource: String) -> BoxStream<'static, Result<Bytes>> {
    resp.bytes_stream()
        .map_err(move |source| Error::Transport {
            method: "GET".into(),
            url: resource.clone(),
            source: source.without_url(),
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_sas_url_splits_into_endpoint_container_and_secret() {
        let http = crate::transport::HttpConfig::default().build().unwrap();
        let (c, container) = BlobClient::from_container_sas_url(
            http.clone(),
            "https://wsstore.blob.core.windows.net/azureml-blobstore-1?sv=2019-07-07&sr=c&sp=racwl&se=2026-11-26T00%3A00%3A00Z&sig=abc%3D",
        )
        .unwrap();
        assert_eq!(container, "azureml-blobstore-1");
        assert_eq!(c.endpoint().account(), "wsstore");
        assert!(!format!("{c:?}").contains("sig="), "SAS leaked into Debug");
        let (c, container) = BlobClient::from_container_sas_url(
            http.clone(),
            "http://127.0.0.1:10000/devacct/code?sv=2019-07-07&sig=x",
        )
        .unwrap();
        assert_eq!(
            (c.endpoint().account(), container.as_str()),
            ("devacct", "code")
        );
        assert!(
            BlobClient::from_container_sas_url(http.clone(), "https://a.blob.x/c?sv=1").is_err()
        );
        // Azure ML's pending-upload sasUri goes on below the container.
        let (c, container) = BlobClient::from_container_sas_url(
            http.clone(),
            "https://wsstore.blob.core.windows.net/azureml-blobstore-1/LocalUpload/abc?sv=2019-07-07&sr=c&sig=x",
        )
        .unwrap();
        assert_eq!(
            (c.endpoint().account(), container.as_str()),
            ("wsstore", "azureml-blobstore-1")
        );
        let (c, container) = BlobClient::from_container_sas_url(
            http,
            "https://127.0.0.1:10000/devacct/code/LocalUpload/abc?sv=2019-07-07&sig=x",
        )
        .unwrap();
        assert_eq!(
            (c.endpoint().account(), container.as_str()),
            ("devacct", "code")
        );
    }
}
