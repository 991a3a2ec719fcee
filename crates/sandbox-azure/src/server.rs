//! The HTTP server: token and metadata endpoints, ARM (with fault injection, budgets and
//! counters in front), on a hand-written accept loop so a fault can drop a connection.

use std::{collections::HashMap, sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderValue, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    arm_error::ArmError,
    auth::Flavor,
    faults::{BudgetOutcome, Decision, RequestClass},
    ids::ArmPath,
    shared::{Shared, lock},
};

fn router(sh: Arc<Shared>) -> Router {
    Router::new()
        .route("/metadata/endpoints", get(metadata))
        .route("/adfs/oauth2/token", post(token_adfs))
        .route("/{tenant}/oauth2/token", post(token_v1))
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route(INVENTORY_PATH, get(inventory))
        .route(REQUESTS_PATH, get(requests))
        .route(
            &format!("{}/{{*rest}}", crate::mlflow::PREFIX),
            axum::routing::any(crate::mlflow::handle),
        )
        .route(crate::ml::DISCOVERY_PATH, get(discovery))
        .route("/oauth2/exchange", post(crate::acr::exchange))
        .route(
            "/oauth2/token",
            get(crate::acr::token_get).post(crate::acr::token_post),
        )
        .fallback(arm)
        .with_state(sh)
}

/// Every stored resource as JSON, for the demo and for people poking at a running simulator.
/// Not an Azure surface: the leading underscore keeps it apart from ARM paths.
pub const INVENTORY_PATH: &str = "/_sandbox/inventory";

async fn inventory(State(sh): State<Arc<Shared>>) -> Response {
    axum::Json(sh.state().inventory()).into_response()
}

/// Requests served so far by method (`{"GET": n, ..., "total": n, "by_kind": {...}}`), for the
/// demo's request budget. Not an Azure surface either; reading it is not counted.
pub const REQUESTS_PATH: &str = "/_sandbox/requests";

async fn requests(State(sh): State<Arc<Shared>>) -> Response {
    axum::Json(sh.state().counters.summary()).into_response()
}

/// Where a workspace's `discoveryUrl` points (no authentication, like Azure ML's).
async fn discovery(State(sh): State<Arc<Shared>>) -> Response {
    axum::Json(crate::ml::discovery(&sh)).into_response()
}

async fn metadata(State(sh): State<Arc<Shared>>, req: Request<Body>) -> Response {
    sh.state().count("GET", "metadata");
    let query = crate::arm::parse_query(req.uri().query());
    if crate::arm::query_get(&query, "api-version") != Some("2015-01-01") {
        return ArmError::bad_request(
            "InvalidApiVersionParameter",
            "The api-version is invalid. The supported versions are '2015-01-01'.",
        )
        .into_response();
    }
    let base = &sh.base_url;
    axum::Json(json!({
        "galleryEndpoint": format!("{base}/"),
        "graphEndpoint": format!("{base}/"),
        "portalEndpoint": format!("{base}/"),
        "authentication": {
            "loginEndpoint": sh.login_endpoint(),
            "audiences": [sh.config.stack_hub_audience],
        },
    }))
    .into_response()
}

fn token(sh: &Shared, flavor: Flavor, tenant: &str, body: &[u8]) -> Response {
    sh.state().count("POST", "token");
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let audiences = [
        sh.config.stack_hub_audience.as_str(),
        sh.config.public_audience.as_str(),
    ];
    let issued = lock(&sh.tokens).issue(
        flavor,
        tenant,
        &form,
        &audiences,
        sh.config.token_lifetime_secs,
        chrono::Utc::now().timestamp(),
    );
    match issued {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => (e.status, axum::Json(e.body())).into_response(),
    }
}

async fn token_v1(
    State(sh): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: bytes::Bytes,
) -> Response {
    token(&sh, Flavor::AadV1, &tenant, &body)
}

async fn token_v2(
    State(sh): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: bytes::Bytes,
) -> Response {
    token(&sh, Flavor::AadV2, &tenant, &body)
}

async fn token_adfs(State(sh): State<Arc<Shared>>, body: bytes::Bytes) -> Response {
    token(&sh, Flavor::Adfs, "adfs", &body)
}

async fn arm(State(sh): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return ArmError::bad_request(
                "InvalidRequestContent",
                format!("Cannot read the body: {e}"),
            )
            .into_response();
        }
    };
    let mut resp = crate::arm::handle(&sh, parts.method, &parts.uri, &parts.headers, &bytes);
    add_request_ids(&mut resp);
    resp
}

fn add_request_ids(resp: &mut Response) {
    for name in ["x-ms-request-id", "x-ms-correlation-request-id"] {
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            resp.headers_mut().insert(name, v);
        }
    }
}

/// What the fault layer decided before the router sees the request.
enum Gate {
    Pass {
        budget_header: Option<(RequestClass, u64)>,
    },
    Respond(Response),
    Drop,
}

/// Count the request, then apply latency, injected faults and the subscription budget (ARM only).
async fn gate(sh: &Shared, method: &str, path: &str) -> Gate {
    let arm = ArmPath::parse(path);
    let provider = match &arm {
        Some(a) => a.namespace.clone().unwrap_or_else(|| "arm".into()),
        None => {
            return Gate::Pass {
                budget_header: None,
            };
        }
    };
    sh.state().count(method, &provider);
    let (latency, decision, budget) = {
        let mut faults = lock(&sh.faults);
        let decision = faults.decide(method, path);
        let class = RequestClass::of(method);
        let budget = match (&decision, &arm) {
            (Decision::Pass, Some(a)) => {
                Some((class, faults.charge(&a.subscription, class, Instant::now())))
            }
            _ => None,
        };
        (faults.latency(method, path), decision, budget)
    };
    let record = |kind: &str| {
        *sh.state()
            .faults_injected
            .entry(kind.to_owned())
            .or_default() += 1
    };
    if !latency.is_zero() {
        // Counted before the wait: a test sees the request held in flight.
        record("latency");
        tokio::time::sleep(latency).await;
    }
    match decision {
        Decision::Drop => {
            record("drop");
            Gate::Drop
        }
        Decision::Throttle { retry_after } => {
            record("throttle");
            let e = ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The request is being throttled (injected by the simulator's fault configuration).",
            )
            .with_retry_after(retry_after);
            Gate::Respond(e.into_response())
        }
        Decision::ServerError {
            status,
            retry_after,
        } => {
            record("server_error");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                "ServiceUnavailable"
            } else {
                "InternalServerError"
            };
            let mut e = ArmError::new(
                status,
                code,
                "Injected server error (simulator fault configuration).",
            );
            if retry_after > 0 {
                e = e.with_retry_after(retry_after);
            }
            Gate::Respond(e.into_response())
        }
        Decision::Pass => match budget {
            Some((class, BudgetOutcome::Exhausted { retry_after })) => {
                record("budget");
                let e = ArmError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "SubscriptionRequestsThrottled",
                    format!(
                        "Number of {} requests for subscription exceeded the limit. Please try again after '{retry_after}' seconds.",
                        match class {
                            RequestClass::Read => "read",
                            RequestClass::Write => "write",
                            RequestClass::Delete => "delete",
                        }
                    ),
                );
                let mut resp = e.with_retry_after(retry_after).into_response();
                resp.headers_mut()
                    .insert(class.header(), HeaderValue::from(0u64));
                Gate::Respond(resp)
            }
            Some((class, BudgetOutcome::Allowed { remaining })) => Gate::Pass {
                budget_header: Some((class, remaining)),
            },
            _ => Gate::Pass {
                budget_header: None,
            },
        },
    }
}

/// Serve until `stop` turns true.
pub async fn serve(listener: TcpListener, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let app = router(sh.clone());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let app = app.clone();
        let sh = sh.clone();
        let mut conn_stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                let sh = sh.clone();
                async move {
                    let method = req.method().as_str().to_owned();
                    let path = req.uri().path().to_owned();
                    match gate(&sh, &method, &path).await {
                        Gate::Drop => Err(DroppedConnection),
                        Gate::Respond(mut r) => {
                            add_request_ids(&mut r);
                            Ok(r)
                        }
                        Gate::Pass { budget_header } => {
                            use tower::ServiceExt;
                            let req = req.map(Body::new);
                            let mut resp = match app.oneshot(req).await {
                                Ok(r) => r,
                                Err(never) => match never {},
                            };
                            if let Some((class, remaining)) = budget_header {
                                resp.headers_mut()
                                    .insert(class.header(), HeaderValue::from(remaining));
                            }
                            Ok::<_, DroppedConnection>(resp)
                        }
                    }
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.wait_for(|s| *s) => {}
            }
        });
    }
}

/// Error returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DroppedConnection {}
