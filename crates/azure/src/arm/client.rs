//! The ARM HTTP client: auth, client-side rate limit, retries, metrics, LRO start/poll, paging.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use bytes::Bytes;
use chrono::Utc;
use futures::{Stream, TryStreamExt, stream};
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, de::DeserializeOwned};
use url::Url;

use super::{
    ArmError, LroStatus, LroToken, RateLimiter, RequestMetrics, RetryPolicy, Started,
    lro::{interpret_poll, interpret_start},
    throttle::{BucketKey, OperationKind},
};
use crate::{
    Error, Result,
    identity::{
        ClientSecretCredential, ServicePrincipal, TokenCache, require_secure, scope_for_resource,
    },
    transport::send_with_retries,
};

/// A raw ARM response.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ArmResponse {
    /// Decode the body as JSON.
    pub fn json<T: DeserializeOwned>(&self, context: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::decode(context, e))
    }
}

/// `{base}{id}?api-version=..&extra..` (pure). `id` starts with `/subscriptions/...`; a base URL
/// with a path (e.g. a simulator mounted under `/arm`) keeps its path.
///
/// Each segment of `id` is percent-encoded on its own, and empty, `.` and `..` segments (and
/// backslashes, which http(s) URLs treat as `/`) are refused: URL normalisation would otherwise
/// turn `resourceGroups/..` into a request on the subscription itself.
pub fn request_url(base: &Url, id: &str, api_version: &str, query: &[(&str, &str)]) -> Result<Url> {
    let Some(rest) = id.strip_prefix('/') else {
        return Err(Error::InvalidInput(format!(
            "resource id {id:?} must start with '/'"
        )));
    };
    let mut u = base.clone();
    u.set_query(None);
    u.set_fragment(None);
    {
        let mut path = u.path_segments_mut().map_err(|()| {
            Error::InvalidInput(format!("ARM endpoint {base} cannot have a path appended"))
        })?;
        path.pop_if_empty();
        for segment in rest.split('/') {
            if matches!(segment, "" | "." | "..") || segment.contains('\\') {
                return Err(Error::InvalidInput(format!(
                    "resource id {id:?} has an empty, '.', '..' or backslash segment"
                )));
            }
            path.push(segment);
        }
    }
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("api-version", api_version);
        for (k, v) in query {
            q.append_pair(k, v);
        }
    }
    Ok(u)
}

/// A random UUID v4 string for `x-ms-client-request-id`.
fn client_request_id() -> String {
    let b = fastrand::u128(..).to_be_bytes();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One page of an ARM list (`{value: [...], nextLink?}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(default)]
    pub next_link: Option<String>,
}

/// Same scheme, host and port (where bearer tokens may go).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The next page URL, checked to stay on the ARM endpoint (pure).
pub fn next_page_url(base: &Url, next_link: Option<&str>) -> Result<Option<Url>> {
    let Some(link) = next_link.filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let u = base.join(link).map_err(|source| Error::Url {
        url: link.to_string(),
        source,
    })?;
    if !same_origin(&u, base) {
        return Err(Error::ForeignPollUrl {
            url: u.to_string(),
            arm_host: base.host_str().unwrap_or_default().to_string(),
        });
    }
    Ok(Some(u))
}

/// Client for one ARM endpoint (Stack Hub's or public Azure's).
#[derive(Clone)]
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: Url,
    credential: Arc<dyn TokenCredential>,
    scope: String,
    retry: RetryPolicy,
    limiter: Arc<RateLimiter>,
    /// Who the requests authenticate as, for the limiter's buckets ("" when not told).
    principal: String,
    metrics: RequestMetrics,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("scope", &self.scope)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ArmClient {
    /// `audience`: the token resource for this ARM (Stack Hub: from metadata; public Azure:
    /// `https://management.azure.com/`).
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        credential: Arc<dyn TokenCredential>,
        audience: &str,
    ) -> Self {
        Self {
            http,
            endpoint,
            credential,
            scope: scope_for_resource(audience),
            retry: RetryPolicy::default(),
            limiter: Arc::new(RateLimiter::default()),
            principal: String::new(),
            metrics: RequestMetrics::default(),
        }
    }

    /// Discover the login authority and audience from `{endpoint}/metadata/endpoints` and build
    /// a client authenticated as `principal` (tokens cached in `cache`).
    pub async fn connect(
        http: reqwest::Client,
        endpoint: Url,
        principal: ServicePrincipal,
        cache: Arc<TokenCache>,
    ) -> Result<Self> {
        let id = principal.client_id.clone();
        let (credential, audience) =
            ClientSecretCredential::discover(http.clone(), &endpoint, principal, cache).await?;
        let client = Self::new(http, endpoint, Arc::new(credential), &audience);
        let limiter = client.limiter.clone();
        Ok(client.with_limiter(limiter, &id))
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Share one limiter between all clients of a process. `principal` (the client id the
    /// credential signs in as) keys the buckets with the endpoint and subscription, as ARM
    /// counts them.
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>, principal: &str) -> Self {
        self.limiter = limiter;
        self.principal = principal.to_string();
        self
    }

    pub fn with_metrics(mut self, metrics: RequestMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The same credential, limiter and metrics for another service that takes the ARM token
    /// (Azure ML's MLflow tracking endpoint). Requests stay confined to `endpoint`'s origin.
    pub fn with_endpoint(&self, endpoint: Url) -> Self {
        Self {
            endpoint,
            ..self.clone()
        }
    }

    pub fn metrics(&self) -> &RequestMetrics {
        &self.metrics
    }

    pub fn url(&self, id: &str, api_version: &str, query: &[(&str, &str)]) -> Result<Url> {
        request_url(&self.endpoint, id, api_version, query)
    }

    /// Send with auth, rate limit and retries; returns the final response whatever its status.
    pub async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<ArmResponse> {
        if !same_origin(&url, &self.endpoint) {
            return Err(Error::ForeignPollUrl {
                url: url.to_string(),
                arm_host: self.endpoint.host_str().unwrap_or_default().to_string(),
            });
        }
        // Every request carries a bearer token.
        require_secure("ARM endpoint", &self.endpoint)?;
        let bucket = BucketKey::of(&url, &self.principal);
        let kind = OperationKind::of(&method);
        let (method, url, bucket) = (&method, &url, &bucket);
        // `move` copies these references into each attempt's future.
        let build = move || async move {
            self.limiter.acquire(bucket, kind).await;
            let token = self
                .credential
                .get_token(&[self.scope.as_str()], None)
                .await
                .map_err(|source| Error::Credential {
                    scope: self.scope.clone(),
                    source,
                })?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.token.secret())
                .header("accept", "application/json")
                // Lets Azure support find this exact attempt.
                .header("x-ms-client-request-id", client_request_id());
            if let Some(b) = body {
                req = req.json(b);
            } else if method == Method::POST || method == Method::PUT {
                // ARM rejects bodiless POST/PUT without Content-Length on some front ends.
                req = req.header("content-length", "0");
            }
            req.build().map_err(|source| Error::Transport {
                method: method.to_string(),
                url: url.to_string(),
                source,
            })
        };
        let resp = send_with_retries(&self.http, &self.retry, &self.metrics, build).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|source| Error::Transport {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })?;
        Ok(ArmResponse {
            status,
            headers,
            body,
        })
    }

    /// [`Self::execute`], with error statuses turned into [`ArmError`].
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<ArmResponse> {
        let r = self.execute(method, url, body).await?;
        if r.status.is_success() {
            Ok(r)
        } else {
            Err(Box::new(ArmError::from_response(r.status, &r.headers, &r.body)).into())
        }
    }

    /// GET a resource; `None` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<Option<T>> {
        let ctx = url.path().to_string();
        match self.call(Method::GET, url, None).await {
            Ok(r) => r.json(&ctx).map(Some),
            Err(Error::Arm(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send a synchronous request with a JSON body and decode the JSON answer.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let ctx = url.path().to_string();
        self.call(method, url, body).await?.json(&ctx)
    }

    /// Start a possibly long-running operation.
    pub async fn begin(
        &self,
        method: Method,
        url: Url,
        resource_id: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Started> {
        let r = self.execute(method.clone(), url.clone(), body).await?;
        interpret_start(
            &method,
            &url,
            resource_id,
            r.status,
            &r.headers,
            &r.body,
            Utc::now(),
        )
    }

    /// Poll a stored operation once.
    pub async fn poll(&self, token: &LroToken) -> Result<LroStatus> {
        let url = crate::error::parse_url(&token.url)?;
        let r = self.execute(Method::GET, url, None).await?;
        interpret_poll(token, r.status, &r.headers, &r.body)
    }

    /// One page of a list.
    pub async fn page<T: DeserializeOwned>(&self, url: Url) -> Result<Page<T>> {
        self.send_json(Method::GET, url, None).await
    }

    /// Every item of a paged list, fetched one page at a time as the stream is consumed.
    pub fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        first: Url,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        let client = self.clone();
        stream::try_unfold(Some(first), move |next| {
            let client = client.clone();
            async move {
                let Some(url) = next else {
                    return Ok::<_, Error>(None);
                };
                let page: Page<T> = client.page(url).await?;
                let next = next_page_url(&client.endpoint, page.next_link.as_deref())?;
                Ok(Some((stream::iter(page.value.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_url_joins_id_and_api_version() {
        let base = Url::parse("https://management.local.azurestack.external").unwrap();
        let u = request_url(
            &base,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "2020-06-01",
            &[("$expand", "instanceView")],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://management.local.azurestack.external/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm?api-version=2020-06-01&%24expand=instanceView"
        );
        let sandbox = Url::parse("http://127.0.0.1:8080/arm/").unwrap();
        let u = request_url(&sandbox, "/subscriptions/s", "2019-10-01", &[]).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/arm/subscriptions/s?api-version=2019-10-01"
        );
        assert!(request_url(&base, "subscriptions/s", "x", &[]).is_err());
    }

    #[test]
    fn request_url_refuses_dot_segments_and_encodes_each_segment() {
        let base = Url::parse("https://management.azure.com/").unwrap();
        for id in [
            "/subscriptions/s/resourceGroups/../providers/x",
            "/subscriptions/s/resourceGroups/./providers/x",
            "/subscriptions/s/resourceGroups//providers/x",
            "/subscriptions/s/resourceGroups/rg/",
            "/subscriptions/s/resourceGroups/a\\..\\b",
        ] {
            let err = request_url(&base, id, "v", &[]).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{id}: {err:?}");
        }
        let u = request_url(
            &base,
            "/subscriptions/s/resourceGroups/%2e%2e/providers/a b?c#d",
            "v",
            &[],
        )
        .unwrap();
        assert_eq!(
            u.path(),
            "/subscriptions/s/resourceGroups/%252e%252e/providers/a%20b%3Fc%23d"
        );
        assert_eq!(u.query(), Some("api-version=v"));
        // A base with a query or fragment does not leak them into requests.
        let odd = Url::parse("http://127.0.0.1:1/arm?x=1#f").unwrap();
        assert_eq!(
            request_url(&odd, "/subscriptions/s", "v", &[])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1/arm/subscriptions/s?api-version=v"
        );
    }

    #[test]
    fn client_request_ids_are_uuid_v4() {
        let a = client_request_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, client_request_id());
    }

    #[test]
    fn next_link_paging() {
        let base = Url::parse("http://127.0.0.1:9000").unwrap();
        let p: Page<serde_json::Value> = serde_json::from_str(
            r#"{"value":[{"a":1}],"nextLink":"http://127.0.0.1:9000/x?$skiptoken=abc"}"#,
        )
        .unwrap();
        assert_eq!(
            next_page_url(&base, p.next_link.as_deref())
                .unwrap()
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/x?$skiptoken=abc"
        );
        let last: Page<serde_json::Value> = serde_json::from_str(r#"{"value":[]}"#).unwrap();
        assert_eq!(
            next_page_url(&base, last.next_link.as_deref()).unwrap(),
            None
        );
        assert_eq!(next_page_url(&base, Some("")).unwrap(), None);
        assert!(matches!(
            next_page_url(&base, Some("https://evil.example/x")),
            Err(Error::ForeignPollUrl { .. })
        ));
    }
}
