//! A request-recording HTTP fake for unit-level I/O tests (not the simulator): it records every
//! request and answers from a script the test supplies.

use std::sync::{Arc, Mutex};

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    response::Response,
};
use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    time::{Duration, OffsetDateTime},
};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }
    pub fn query_value(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// What the script answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: String::new(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Script = dyn Fn(&Recorded, &[Recorded]) -> Reply + Send + Sync;

pub struct Fake {
    pub base: url::Url,
    pub log: Arc<Mutex<Vec<Recorded>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Start on 127.0.0.1:0. `script(request, earlier_requests)` gives the answer.
    pub async fn start(
        script: impl Fn(&Recorded, &[Recorded]) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let script: Arc<Script> = Arc::new(script);
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let log2 = log.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let script = script.clone();
            let log = log2.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = to_bytes(body, usize::MAX).await.unwrap();
                let rec = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or("").to_string(),
                    headers: parts.headers.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let earlier = log.lock().unwrap().clone();
                let reply = script(&rec, &earlier);
                log.lock().unwrap().push(rec);
                let mut b = Response::builder().status(reply.status);
                for (k, v) in reply.headers {
                    b = b.header(k, v);
                }
                b.body(Body::from(reply.body)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: url::Url::parse(&format!("http://{addr}/")).unwrap(),
            log,
            _task: task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }
}

/// A credential that always returns `test-token`, counting calls.
#[derive(Debug, Default)]
pub struct StaticCredential;

#[async_trait::async_trait]
impl TokenCredential for StaticCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _o: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            "test-token",
            OffsetDateTime::now_utc() + Duration::hours(1),
        ))
    }
}
