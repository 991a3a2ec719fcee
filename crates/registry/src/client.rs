//! The registry client: blobs (HEAD, cross-repository mount with the 202 fallback, monolithic
//! or chunked upload with resume), manifests, tags and referrers. Every request is authorised
//! through the [`Authenticator`], which refreshes tokens before they expire.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use reqwest::{Method, StatusCode, header};
use url::Url;

use crate::{
    Error, Result,
    auth::{Authenticator, Challenge, Credential, TokenCache, parse_challenge, repository_scope},
    content::Content,
    error::Target,
    image::BaseImage,
    manifest::{
        ACCEPT_MANIFESTS, Blob, DOCKER_LIST, Family, ManifestBytes, OCI_INDEX, select_platform,
    },
};

/// How blobs are sent. Defaults chosen by measurement (see the crate README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Blobs at least this large go in chunks (resumable); smaller ones in one PUT.
    pub chunked_from: u64,
    /// Chunk size (raised to the registry's `OCI-Chunk-Min-Length`).
    pub chunk_size: u64,
    /// Blobs uploaded at once (across layers only: chunks of one blob stay in order).
    pub concurrency: usize,
    /// Failed chunk attempts (resume or restart) before giving up on a blob.
    pub max_attempts: u32,
    /// Refresh tokens this long before they expire.
    pub refresh_margin: Duration,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            chunked_from: 1 << 30,
            chunk_size: 64 << 20,
            concurrency: 4,
            max_attempts: 5,
            refresh_margin: Duration::from_secs(120),
        }
    }
}

/// One blob's upload plan. Pure; unit-tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Monolithic,
    Chunked { chunk: u64 },
}

pub fn choose_mode(size: u64, policy: &UploadPolicy, min_chunk: Option<u64>) -> Mode {
    if size < policy.chunked_from {
        Mode::Monolithic
    } else {
        Mode::Chunked {
            chunk: policy.chunk_size.max(min_chunk.unwrap_or(0)).max(1),
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Existed,
    Mounted,
    Uploaded,
}

/// Counters of a client, cumulative.
#[derive(Debug, Default)]
pub struct Stats {
    /// Blob bytes handed to the network (resent bytes count again).
    pub bytes_sent: AtomicU64,
    /// Blob bytes not sent because the registry had the blob (HEAD) or took it by mount.
    pub bytes_reused: AtomicU64,
    pub blobs_existed: AtomicU64,
    pub blobs_mounted: AtomicU64,
    pub blobs_uploaded: AtomicU64,
    pub resumes: AtomicU64,
    pub restarts: AtomicU64,
}

/// `a-b` of a `Range` header → the next offset `b + 1` (`0-0` after nothing is ambiguous in
/// the spec; distribution sends it for an empty upload, so treat it as 0 unless told more).
pub fn next_offset(range: &str) -> Option<u64> {
    let (a, b) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    if a != 0 || b < a {
        return None;
    }
    Some(if b == 0 { 0 } else { b + 1 })
}

/// The `detail` of an OCI error body (`{"errors":[{"code","message"}]}`), or the text.
pub fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Es {
        errors: Vec<E>,
    }
    if let Ok(es) = serde_json::from_slice::<Es>(body)
        && !es.errors.is_empty()
    {
        return es
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.code.as_deref().unwrap_or("?"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}

/// A URL for error messages: no query (upload state, digests are elsewhere).
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// Client of one registry.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Url,
    name: String,
    http: reqwest::Client,
    /// Carries blob bodies (see [`Registry::with_blob_http`]); `http` unless set.
    blob_http: reqwest::Client,
    auth: Authenticator,
    policy: UploadPolicy,
    stats: Stats,
}

/// A request body that can be built again for a retry.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of `content` from `offset`.
    Stream {
        content: &'a Content,
        offset: u64,
        len: u64,
    },
}

impl Registry {
    /// `base` is `https://<login server>`; `http` carries TLS settings (extra CA) and timeouts.
    pub fn new(
        base: Url,
        http: reqwest::Client,
        credential: Credential,
        cache: Arc<TokenCache>,
        policy: UploadPolicy,
    ) -> Result<Self> {
        Self::with_blob_http(base, http.clone(), http, credential, cache, policy)
    }

    /// Like [`Registry::new`], with blob bodies (monolithic PUTs, chunks, registry-side
    /// copies) sent through `blob_http`, meant to be an HTTP/1.1-only client with the same
    /// TLS roots and timeouts. Over HTTP/2 all concurrent uploads share one TCP connection, one
    /// TLS stream and the server's connection flow-control window (1 MiB on Go servers such as
    /// distribution): they serialise on one core at each end and wait on window updates, and
    /// over a WAN the window caps throughput at window / RTT. Separate HTTP/1.1 connections
    /// measured faster here (crate README, BENCHMARKS.md).
    pub fn with_blob_http(
        base: Url,
        http: reqwest::Client,
        blob_http: reqwest::Client,
        credential: Credential,
        cache: Arc<TokenCache>,
        policy: UploadPolicy,
    ) -> Result<Self> {
        if base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(Error::Invalid(format!("registry URL {base} has no host")));
        }
        // Tokens and passwords travel with every request: https, or http on loopback only.
        if !matches!(credential, Credential::Anonymous) {
            crate::auth::check_secure(&base)?;
        }
        let name = match base.port() {
            Some(p) => format!("{}:{p}", base.host_str().unwrap_or("")),
            None => base.host_str().unwrap_or("").to_owned(),
        };
        let auth = Authenticator::new(
            http.clone(),
            base.clone(),
            credential,
            cache,
            policy.refresh_margin,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                name,
                http,
                blob_http,
                auth,
                policy,
                stats: Stats::default(),
            }),
        })
    }

    /// `host[:port]`, as image references name the registry.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Calls made to the token service so far.
    pub fn token_requests(&self) -> u64 {
        self.inner.auth.token_requests.load(Ordering::Relaxed)
    }

    pub(crate) fn target(&self, repository: &str) -> Target {
        Target {
            registry: self.inner.name.clone(),
            repository: repository.to_owned(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.inner
            .base
            .join(path)
            .map_err(|e| Error::Invalid(format!("URL {path}: {e}")))
    }

    /// Send with auth; on a 401 get a fresh token once and retry once. A second 401 is an
    /// error naming registry, repository and scope: never a loop.
    pub(crate) async fn send(
        &self,
        repository: &str,
        scopes: &[String],
        method: Method,
        url: &Url,
        headers: &[(header::HeaderName, String)],
        body: Body<'_>,
    ) -> Result<reqwest::Response> {
        let target = self.target(repository);
        let mut retried = false;
        loop {
            let auth = self.inner.auth.header(&target, scopes).await?;
            let http = match body {
                Body::Stream { .. } => &self.inner.blob_http,
                _ => &self.inner.http,
            };
            let mut req = http.request(method.clone(), url.clone());
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req = match &body {
                Body::Empty => req.header(header::CONTENT_LENGTH, "0"),
                Body::Bytes(b) => req.body(b.clone()),
                Body::Stream {
                    content,
                    offset,
                    len,
                } => {
                    let counter = self.inner.clone();
                    let stream = take(content.stream_from(*offset), *len).inspect_ok(move |b| {
                        counter
                            .stats
                            .bytes_sent
                            .fetch_add(b.len() as u64, Ordering::Relaxed);
                    });
                    req.header(header::CONTENT_LENGTH, len.to_string())
                        .body(reqwest::Body::wrap_stream(stream))
                }
            };
            let resp = req.send().await.map_err(|source| Error::Transport {
                target: target.clone(),
                method: method_name(&method),
                url: shown(url),
                source: source.without_url(),
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            self.inner.auth.invalidate(scopes);
            if retried {
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge);
                let detail = error_detail(&resp.bytes().await.unwrap_or_default());
                return Err(match challenge {
                    Some(Challenge::Bearer { error: Some(e), .. }) if e == "insufficient_scope" => {
                        Error::Denied {
                            target,
                            scope: scopes.join(" "),
                            detail,
                        }
                    }
                    _ => Error::Unauthorized {
                        target,
                        detail: format!("a freshly obtained credential was refused too: {detail}"),
                    },
                });
            }
            retried = true;
        }
    }

    pub(crate) async fn fail(
        &self,
        repository: &str,
        operation: &str,
        resp: reqwest::Response,
    ) -> Error {
        let status = resp.status().as_u16();
        let detail = error_detail(&resp.bytes().await.unwrap_or_default());
        let target = self.target(repository);
        match status {
            404 => Error::NotFound {
                target,
                what: operation.to_owned(),
                detail,
            },
            403 => Error::Denied {
                target,
                scope: operation.to_owned(),
                detail,
            },
            _ => Error::Status {
                target,
                operation: operation.to_owned(),
                status,
                detail,
            },
        }
    }

    fn push_scopes(repository: &str, mount_from: Option<&str>) -> Vec<String> {
        let mut s = vec![repository_scope(repository, &["pull", "push"])];
        if let Some(src) = mount_from.filter(|s| *s != repository) {
            s.push(repository_scope(src, &["pull"]));
        }
        s
    }

    /// Does the repository hold this blob?
    pub async fn blob_exists(
        &self,
        repository: &str,
        digest: &str,
        scopes: &[String],
    ) -> Result<bool> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"))?;
        let resp = self
            .send(repository, scopes, Method::HEAD, &url, &[], Body::Empty)
            .await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self
                .fail(repository, &format!("HEAD blob {digest}"), resp)
                .await),
        }
    }

    /// Make `blob` present in `repository`: HEAD, else mount from `mount_from`, else upload.
    /// Without content (a base layer) a 202 on mount is filled by streaming from the source.
    pub async fn ensure_blob(
        &self,
        repository: &str,
        descriptor: &Descriptor,
        content: Option<&Content>,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome> {
        let scopes = Self::push_scopes(repository, mount_from);
        let digest = descriptor.digest().to_string();
        let stats = &self.inner.stats;
        let size = descriptor.size();
        if self.blob_exists(repository, &digest, &scopes).await? {
            stats.blobs_existed.fetch_add(1, Ordering::Relaxed);
            stats.bytes_reused.fetch_add(size, Ordering::Relaxed);
            return Ok(BlobOutcome::Existed);
        }
        let mut url = self.url(&format!("/v2/{repository}/blobs/uploads/"))?;
        if let Some(src) = mount_from.filter(|s| *s != repository) {
            url.query_pairs_mut()
                .append_pair("mount", &digest)
                .append_pair("from", src);
        }
        let resp = self
            .send(repository, &scopes, Method::POST, &url, &[], Body::Empty)
            .await?;
        match resp.status().as_u16() {
            201 => {
                stats.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                stats.bytes_reused.fetch_add(size, Ordering::Relaxed);
                return Ok(BlobOutcome::Mounted);
            }
            202 => {}
            _ => return Err(self.fail(repository, "start blob upload", resp).await),
        }
        let session = self.location(repository, &resp)?;
        let min_chunk = resp
            .headers()
            .get("OCI-Chunk-Min-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match content {
            Some(c) => {
                if c.size() != descriptor.size() {
                    return Err(Error::Invalid(format!(
                        "blob {digest}: descriptor says {} bytes, content has {}",
                        descriptor.size(),
                        c.size()
                    )));
                }
                match choose_mode(c.size(), &self.inner.policy, min_chunk) {
                    Mode::Monolithic => {
                        self.put_monolithic(repository, &scopes, session, &digest, c)
                            .await?
                    }
                    Mode::Chunked { chunk } => {
                        self.put_chunked(repository, &scopes, session, &digest, c, chunk)
                            .await?
                    }
                }
            }
            None => {
                let src = mount_from.ok_or_else(|| {
                    Error::Invalid(format!(
                        "blob {digest} has neither content nor a source repository"
                    ))
                })?;
                self.copy_from(repository, &scopes, session, descriptor, src)
                    .await?;
            }
        }
        stats.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        Ok(BlobOutcome::Uploaded)
    }

    fn location(&self, repository: &str, resp: &reqwest::Response) -> Result<Url> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol {
                target: self.target(repository),
                operation: "blob upload".into(),
                detail: format!("HTTP {} without Location", resp.status().as_u16()),
            })?;
        let url = self.inner.base.join(loc).map_err(|e| Error::Protocol {
            target: self.target(repository),
            operation: "blob upload".into(),
            detail: format!("bad Location: {e}"),
        })?;
        // A registry must not steer our credentials to another host.
        if url.host_str() != self.inner.base.host_str()
            || url.port_or_known_default() != self.inner.base.port_or_known_default()
        {
            return Err(Error::Protocol {
                target: self.target(repository),
                operation: "blob upload".into(),
                detail: format!("upload Location points to another host: {}", shown(&url)),
            });
        }
        Ok(url)
    }

    async fn finish(
        &self,
        repository: &str,
        scopes: &[String],
        mut session: Url,
        digest: &str,
        body: Body<'_>,
    ) -> Result<()> {
        session.query_pairs_mut().append_pair("digest", digest);
        let headers = [(header::CONTENT_TYPE, "application/octet-stream".to_owned())];
        let resp = self
            .send(repository, scopes, Method::PUT, &session, &headers, body)
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self
                .fail(repository, &format!("complete upload of {digest}"), resp)
                .await);
        }
        Ok(())
    }

    async fn put_monolithic(
        &self,
        repository: &str,
        scopes: &[String],
        session: Url,
        digest: &str,
        content: &Content,
    ) -> Result<()> {
        let body = Body::Stream {
            content,
            offset: 0,
            len: content.size(),
        };
        self.finish(repository, scopes, session, digest, body).await
    }

    async fn open_session(&self, repository: &str, scopes: &[String]) -> Result<Url> {
        let url = self.url(&format!("/v2/{repository}/blobs/uploads/"))?;
        let resp = self
            .send(repository, scopes, Method::POST, &url, &[], Body::Empty)
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail(repository, "start blob upload", resp).await);
        }
        self.location(repository, &resp)
    }

    /// In-order chunks. After a failure ask the session where it stands (`GET` → `Range`) and
    /// continue from there; if the registry dropped the session, start a new one.
    async fn put_chunked(
        &self,
        repository: &str,
        scopes: &[String],
        mut session: Url,
        digest: &str,
        content: &Content,
        chunk: u64,
    ) -> Result<()> {
        let size = content.size();
        let mut offset = 0u64;
        let mut failures = 0u32;
        let stats = &self.inner.stats;
        while offset < size {
            let len = chunk.min(size - offset);
            let headers = [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_RANGE,
                    format!("{offset}-{}", offset + len - 1),
                ),
            ];
            let sent = self
                .send(
                    repository,
                    scopes,
                    Method::PATCH,
                    &session,
                    &headers,
                    Body::Stream {
                        content,
                        offset,
                        len,
                    },
                )
                .await;
            let problem = match sent {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    session = self.location(repository, &resp)?;
                    let range = resp
                        .headers()
                        .get(header::RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(next_offset);
                    // "0-0" is ambiguous (nothing or one byte); after a chunk it means one.
                    offset = match range {
                        Some(n) if n > 0 => n,
                        _ => offset + len,
                    };
                    continue;
                }
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE =>
                {
                    format!("HTTP {}", resp.status().as_u16())
                }
                Ok(resp) => {
                    return Err(self
                        .fail(repository, &format!("upload chunk of {digest}"), resp)
                        .await);
                }
                Err(e @ Error::Transport { .. }) => e.to_string(),
                Err(e) => return Err(e),
            };
            failures += 1;
            if failures >= self.inner.policy.max_attempts {
                return Err(Error::UploadFailed {
                    target: self.target(repository),
                    digest: digest.to_owned(),
                    attempts: failures,
                    last: problem,
                });
            }
            tracing::warn!(registry = %self.inner.name, repository, digest, offset, %problem, "chunk failed; asking the registry where the upload stands");
            match self.upload_status(repository, scopes, &session).await {
                Some((loc, at)) if at <= size => {
                    stats.resumes.fetch_add(1, Ordering::Relaxed);
                    session = loc;
                    offset = at;
                }
                _ => {
                    stats.restarts.fetch_add(1, Ordering::Relaxed);
                    session = self.open_session(repository, scopes).await?;
                    offset = 0;
                }
            }
        }
        self.finish(repository, scopes, session, digest, Body::Empty)
            .await
    }

    /// `GET <session>` → (new location, next offset), or None when the session is gone.
    async fn upload_status(
        &self,
        repository: &str,
        scopes: &[String],
        session: &Url,
    ) -> Option<(Url, u64)> {
        let resp = self
            .send(repository, scopes, Method::GET, session, &[], Body::Empty)
            .await
            .ok()?;
        if resp.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let at = resp
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(next_offset)
            .unwrap_or(0);
        let loc = self
            .location(repository, &resp)
            .unwrap_or_else(|_| session.clone());
        Some((loc, at))
    }

    /// Fill an upload session with a blob streamed from another repository of this registry.
    async fn copy_from(
        &self,
        repository: &str,
        scopes: &[String],
        session: Url,
        d: &Descriptor,
        src: &str,
    ) -> Result<()> {
        let digest = d.digest().to_string();
        let url = self.url(&format!("/v2/{src}/blobs/{digest}"))?;
        let resp = self
            .send(src, scopes, Method::GET, &url, &[], Body::Empty)
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self.fail(src, &format!("blob {digest}"), resp).await);
        }
        let mut put = session;
        put.query_pairs_mut().append_pair("digest", &digest);
        let counter = self.inner.clone();
        let stream = resp.bytes_stream().inspect_ok(move |b| {
            counter
                .stats
                .bytes_sent
                .fetch_add(b.len() as u64, Ordering::Relaxed);
        });
        let target = self.target(repository);
        let auth = self.inner.auth.header(&target, scopes).await?;
        let mut req = self
            .inner
            .blob_http
            .put(put.clone())
            .header(header::CONTENT_LENGTH, d.size().to_string())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = req.send().await.map_err(|source| Error::Transport {
            target,
            method: "PUT",
            url: shown(&put),
            source: source.without_url(),
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(self
                .fail(repository, &format!("copy blob {digest} from {src}"), resp)
                .await);
        }
        Ok(())
    }

    /// Push blobs concurrently (bounded by the policy).
    pub async fn push_blobs(
        &self,
        repository: &str,
        blobs: &[Blob],
        mount_from: Option<&str>,
    ) -> Result<Vec<BlobOutcome>> {
        // Futures collected before streaming: with a closure in the stream the future is not
        // provably `Send` to callers in a `Send` context (rust-lang/rust#100013).
        let uploads: Vec<_> = blobs
            .iter()
            .map(|b| self.ensure_blob(repository, &b.descriptor, Some(&b.content), mount_from))
            .collect();
        futures::stream::iter(uploads)
            .buffered(self.inner.policy.concurrency.max(1))
            .try_collect()
            .await
    }

    /// GET a manifest by tag or digest: (media type, bytes, digest).
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<ManifestBytes> {
        let scopes = [repository_scope(repository, &["pull"])];
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"))?;
        let headers = [(header::ACCEPT, ACCEPT_MANIFESTS.to_owned())];
        let resp = self
            .send(
                repository,
                &scopes,
                Method::GET,
                &url,
                &headers,
                Body::Empty,
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self
                .fail(repository, &format!("manifest {reference}"), resp)
                .await);
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp.bytes().await.map_err(|source| Error::Transport {
            target: self.target(repository),
            method: "GET",
            url: shown(&url),
            source: source.without_url(),
        })?;
        let m = ManifestBytes::new(&media_type, bytes.to_vec());
        if reference.starts_with("sha256:") && m.digest != reference {
            return Err(Error::Protocol {
                target: self.target(repository),
                operation: format!("manifest {reference}"),
                detail: format!("content digest is {}", m.digest),
            });
        }
        Ok(m)
    }

    /// PUT a manifest under a tag or its digest; checks the digest the registry computed.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        m: &ManifestBytes,
        extra_scopes: &[String],
    ) -> Result<reqwest::header::HeaderMap> {
        let mut scopes = vec![repository_scope(repository, &["pull", "push"])];
        scopes.extend_from_slice(extra_scopes);
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"))?;
        let headers = [(header::CONTENT_TYPE, m.media_type.clone())];
        let resp = self
            .send(
                repository,
                &scopes,
                Method::PUT,
                &url,
                &headers,
                Body::Bytes(m.bytes.clone()),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self
                .fail(repository, &format!("put manifest {reference}"), resp)
                .await);
        }
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            && d != m.digest
        {
            return Err(Error::Protocol {
                target: self.target(repository),
                operation: format!("put manifest {reference}"),
                detail: format!("registry computed {d}, we computed {}", m.digest),
            });
        }
        Ok(resp.headers().clone())
    }

    /// A small blob (config) into memory, capped.
    pub async fn get_small_blob(&self, repository: &str, digest: &str) -> Result<Bytes> {
        const CAP: usize = 16 << 20;
        let scopes = [repository_scope(repository, &["pull"])];
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"))?;
        let resp = self
            .send(repository, &scopes, Method::GET, &url, &[], Body::Empty)
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self.fail(repository, &format!("blob {digest}"), resp).await);
        }
        let mut out = Vec::new();
        let mut s = resp.bytes_stream();
        while let Some(b) = s.next().await {
            let b = b.map_err(|source| Error::Transport {
                target: self.target(repository),
                method: "GET",
                url: shown(&url),
                source: source.without_url(),
            })?;
            out.extend_from_slice(&b);
            if out.len() > CAP {
                return Err(Error::Protocol {
                    target: self.target(repository),
                    operation: format!("blob {digest}"),
                    detail: "config larger than 16 MiB".into(),
                });
            }
        }
        if crate::content::sha256_digest(&out) != digest {
            return Err(Error::Protocol {
                target: self.target(repository),
                operation: format!("blob {digest}"),
                detail: "content does not match its digest".into(),
            });
        }
        Ok(Bytes::from(out))
    }

    /// Read a base image (resolving `linux/amd64` from an index).
    pub async fn read_base(&self, repository: &str, reference: &str) -> Result<BaseImage> {
        let invalid = |d: String| Error::Protocol {
            target: self.target(repository),
            operation: format!("base image {reference}"),
            detail: d,
        };
        let mut m = self.get_manifest(repository, reference).await?;
        if m.media_type == OCI_INDEX || m.media_type == DOCKER_LIST {
            let index: ImageIndex =
                serde_json::from_slice(&m.bytes).map_err(|e| invalid(e.to_string()))?;
            let d = select_platform(&index, "linux", "amd64")
                .ok_or_else(|| invalid("no linux/amd64 manifest in the index".into()))?;
            m = self.get_manifest(repository, d.digest().as_ref()).await?;
        }
        let family = Family::of_manifest(&m.media_type)
            .ok_or_else(|| invalid(format!("unsupported manifest type {:?}", m.media_type)))?;
        let manifest: ImageManifest =
            serde_json::from_slice(&m.bytes).map_err(|e| invalid(e.to_string()))?;
        let config = self
            .get_small_blob(repository, manifest.config().digest().as_ref())
            .await?;
        let config =
            serde_json::from_slice(&config).map_err(|e| invalid(format!("config: {e}")))?;
        Ok(BaseImage {
            repository: repository.to_owned(),
            name: format!("{}/{repository}:{reference}", self.inner.name),
            manifest_digest: m.digest,
            family,
            manifest,
            config,
        })
    }

    /// Push a manifest that has a `subject`. When the registry does not answer `OCI-Subject`
    /// (no referrers API), maintain the `sha256-<hex>` tag-schema index ourselves.
    pub async fn push_referrer(
        &self,
        repository: &str,
        m: &ManifestBytes,
        subject_digest: &str,
    ) -> Result<()> {
        let headers = self.put_manifest(repository, &m.digest, m, &[]).await?;
        if headers.contains_key("OCI-Subject") {
            return Ok(());
        }
        let tag = subject_digest.replacen(':', "-", 1);
        let mut index =
            match self.get_manifest(repository, &tag).await {
                Ok(existing) => serde_json::from_slice::<serde_json::Value>(&existing.bytes)
                    .map_err(|e| Error::Protocol {
                        target: self.target(repository),
                        operation: format!("referrers tag {tag}"),
                        detail: e.to_string(),
                    })?,
                Err(Error::NotFound { .. }) => {
                    serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
                }
                Err(e) => return Err(e),
            };
        let parsed: serde_json::Value =
            serde_json::from_slice(&m.bytes).map_err(|e| Error::Invalid(e.to_string()))?;
        let manifests = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| Error::Protocol {
                target: self.target(repository),
                operation: format!("referrers tag {tag}"),
                detail: "not an index".into(),
            })?;
        if manifests.iter().any(|d| d["digest"] == m.digest.as_str()) {
            return Ok(());
        }
        let mut d = serde_json::json!({"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len()});
        if let Some(t) = parsed.get("artifactType") {
            d["artifactType"] = t.clone();
        }
        if let Some(a) = parsed.get("annotations") {
            d["annotations"] = a.clone();
        }
        manifests.push(d);
        let bytes = ManifestBytes::new(OCI_INDEX, crate::manifest::canonical_json(&index)?);
        self.put_manifest(repository, &tag, &bytes, &[]).await?;
        Ok(())
    }

    /// Referrers of a digest: the referrers API, else the tag schema.
    pub async fn referrers(&self, repository: &str, digest: &str) -> Result<Vec<Descriptor>> {
        let scopes = [repository_scope(repository, &["pull"])];
        let url = self.url(&format!("/v2/{repository}/referrers/{digest}"))?;
        let resp = self
            .send(repository, &scopes, Method::GET, &url, &[], Body::Empty)
            .await?;
        let bytes = if resp.status() == StatusCode::OK {
            resp.bytes()
                .await
                .map_err(|source| Error::Transport {
                    target: self.target(repository),
                    method: "GET",
                    url: shown(&url),
                    source: source.without_url(),
                })?
                .to_vec()
        } else {
            match self
                .get_manifest(repository, &digest.replacen(':', "-", 1))
                .await
            {
                Ok(m) => m.bytes.to_vec(),
                Err(Error::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        };
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            target: self.target(repository),
            operation: format!("referrers of {digest}"),
            detail: e.to_string(),
        })?;
        Ok(index.manifests().clone())
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

/// The first `len` bytes of a stream.
fn take(
    s: crate::content::ByteStream,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    s.scan(len, |left, item| {
        let out = match item {
            Ok(mut b) if *left > 0 => {
                if b.len() as u64 > *left {
                    b.truncate(*left as usize);
                }
                *left -= b.len() as u64;
                Some(Ok(b))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_go_to_plain_http_registries() {
        let basic = Credential::Basic {
            username: "u".into(),
            password: crate::auth::Secret::new("p"),
        };
        let new = |url: &str, c: Credential| {
            Registry::new(
                url.parse().unwrap(),
                edgetrain_azure::transport::HttpConfig::default()
                    .build()
                    .unwrap(),
                c,
                Arc::default(),
                UploadPolicy::default(),
            )
        };
        assert!(new("http://registry.example.com", basic.clone()).is_err());
        assert!(new("http://127.0.0.1:5000", basic.clone()).is_ok());
        assert!(new("https://registry.example.com", basic).is_ok());
        assert!(new("http://registry.example.com", Credential::Anonymous).is_ok());
    }

    #[test]
    fn mode_by_size_and_min_chunk() {
        let p = UploadPolicy {
            chunked_from: 100,
            chunk_size: 10,
            ..Default::default()
        };
        assert_eq!(choose_mode(99, &p, None), Mode::Monolithic);
        assert_eq!(choose_mode(100, &p, None), Mode::Chunked { chunk: 10 });
        assert_eq!(choose_mode(100, &p, Some(32)), Mode::Chunked { chunk: 32 });
    }

    #[test]
    fn range_to_next_offset() {
        assert_eq!(next_offset("0-1023"), Some(1024));
        assert_eq!(next_offset("bytes=0-9"), Some(10));
        assert_eq!(next_offset("0-0"), Some(0));
        assert_eq!(next_offset("5-9"), None);
        assert_eq!(next_offset("junk"), None);
    }

    #[test]
    fn oci_error_bodies_become_details() {
        let b = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{}}]}"#;
        assert_eq!(
            error_detail(b),
            "NAME_UNKNOWN: repository name not known to registry"
        );
        assert_eq!(error_detail(b"plain"), "plain");
    }

    #[tokio::test]
    async fn take_cuts_streams_exactly() {
        let c = Content::from_bytes(vec![1u8; 1000]);
        let got: Vec<Bytes> = take(c.stream_from(100), 50).try_collect().await.unwrap();
        assert_eq!(got.iter().map(|b| b.len()).sum::<usize>(), 50);
    }
}
