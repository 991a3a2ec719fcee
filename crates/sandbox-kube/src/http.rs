//! The HTTP front: routes requests to discovery, storage and watch.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State as AxState,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use crate::{
    api_error::{ApiError, ApiResult},
    audit::{self, AuditEvent, AuditLog},
    discovery, openapi,
    path::{self, Route, Target},
    protobuf,
    resources::ResourceType,
    selector::{FieldSelector, LabelSelector, supported_fields},
    store::{ListQuery, State, decode_continue},
    table::{self, Include},
    watch::{self, WatchParams},
    write::{DeleteOpts, PatchType, WriteCtx},
};

/// Shared by every request of one listener generation.
#[derive(Clone)]
pub struct App {
    pub state: Arc<Mutex<State>>,
    pub addr: SocketAddr,
    /// Flips to true when the listener stops: open watches end.
    pub cut: tokio::sync::watch::Receiver<bool>,
    pub bookmark_every: std::time::Duration,
    pub audit: AuditLog,
}

impl App {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (writes are built then stored).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The real API server's request body limit (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn router(app: App) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

async fn handle(
    AxState(app): AxState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let res = if AuditLog::records(&method) {
        let mut log = app.audit.lock();
        let res = dispatch(&app, &method, uri.path(), &query, &headers, &body);
        let code = match &res {
            Ok(Reply::Json(code, _)) => *code,
            Ok(_) => 200,
            Err(e) => e.code,
        };
        audit::push(
            &mut log,
            AuditEvent {
                user: audit::user(&headers),
                method: method.to_string(),
                path: uri.path().to_string(),
                code,
            },
        );
        res
    } else {
        dispatch(&app, &method, uri.path(), &query, &headers, &body)
    };
    tracing::debug!(%method, %uri, "request");
    match res {
        Ok(Reply::Json(code, v)) => json_response(code, &v),
        Ok(Reply::Watch(w)) => watch::stream(app, *w),
        Ok(Reply::Bytes(ct, b)) => ([(header::CONTENT_TYPE, ct)], b).into_response(),
        Ok(Reply::Text(t)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response()
        }
        Err(e) => {
            // The message is not logged: a decode error can quote a Secret's value.
            tracing::debug!(%method, %uri, code = e.code, reason = e.reason, "request failed");
            e.into_response()
        }
    }
}

pub fn json_response(code: u16, v: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

enum Reply {
    Json(u16, Value),
    Text(&'static str),
    Bytes(&'static str, Vec<u8>),
    Watch(Box<watch::Request>),
}

fn ok(v: Value) -> ApiResult<Reply> {
    Ok(Reply::Json(200, v))
}

/// Whether the client's preferred (first) Accept entry asks for `as=<what>`.
fn wants_as(headers: &HeaderMap, what: &str) -> bool {
    let want = format!("as={what}");
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.split(';').any(|p| p.trim() == want))
        })
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if ct.contains("yaml") {
        let v: serde_yaml::Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))?;
        serde_json::to_value(v)
            .map_err(|e| ApiError::bad_request(format!("YAML body is not JSON-compatible: {e}")))
    } else if ct.contains("protobuf") {
        protobuf::decode(body).map_err(ApiError::unsupported_media_type)
    } else if ct.contains("cbor") {
        Err(ApiError::unsupported_media_type(format!(
            "{ct} is not supported by this sandbox; send JSON"
        )))
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

fn patch_type(headers: &HeaderMap, query: &HashMap<String, String>) -> ApiResult<PatchType> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    Ok(match ct {
        "application/merge-patch+json" => PatchType::Merge,
        "application/json-patch+json" => PatchType::Json,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply {
            force: query.get("force").is_some_and(|f| f == "true"),
        },
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            )));
        }
    })
}

fn write_ctx(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    apply: bool,
) -> ApiResult<WriteCtx> {
    let manager = match query.get("fieldManager") {
        Some(m) => m.clone(),
        None if apply => {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
        None => headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
            .unwrap_or_else(|| "unknown".into()),
    };
    Ok(WriteCtx {
        manager,
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
    })
}

fn list_query(
    rt: &ResourceType,
    query: &HashMap<String, String>,
    ns: Option<&str>,
) -> ApiResult<ListQuery> {
    Ok(ListQuery {
        namespace: ns.map(str::to_string),
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse_for(
            query.get("fieldSelector").map_or("", String::as_str),
            supported_fields(&rt.group, &rt.kind),
            |f| {
                if rt.is_events_v1() {
                    f.replace("regarding.", "involvedObject.")
                        .replace("reportingController", "reportingComponent")
                } else {
                    f.to_string()
                }
            },
        )
        .map_err(ApiError::bad_request)?,
        limit: query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0),
        continue_after: match query.get("continue").filter(|c| !c.is_empty()) {
            Some(c) => Some(
                decode_continue(c)
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))?,
            ),
            None => None,
        },
    })
}

fn dispatch(
    app: &App,
    method: &Method,
    p: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let route = path::parse(p).ok_or_else(ApiError::path_not_found)?;
    let objects_route = match route {
        Route::Objects {
            group,
            version,
            rest,
        } => (group, version, rest),
        other => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            let st = app.lock();
            return match other {
                Route::Version => ok(discovery::version()),
                Route::Healthz => Ok(Reply::Text("ok")),
                Route::CoreVersions => ok(discovery::core_versions(&app.addr.to_string())),
                Route::Groups => ok(discovery::group_list(st.types())),
                Route::Group(g) => discovery::group(st.types(), &g)
                    .map(ok)
                    .unwrap_or_else(|| Err(ApiError::path_not_found())),
                Route::Resources { group, version } => {
                    discovery::resource_list(st.types(), &group, &version)
                        .map(ok)
                        .unwrap_or_else(|| Err(ApiError::path_not_found()))
                }
                Route::OpenApiV3(rest) => openapi::v3(st.types(), &rest)
                    .map(ok)
                    .unwrap_or_else(|| Err(ApiError::path_not_found())),
                // An empty Swagger document (an empty protobuf message is zero bytes): kubectl's
                // fallback probe for kinds missing from /openapi/v3 then finds nothing and
                // reports an unknown kind, as against a real server.
                Route::OpenApiV2 => Ok(Reply::Bytes(OPENAPI_V2_PROTOBUF, Vec::new())),
                Route::Objects { .. } => unreachable!("matched above"),
            };
        }
    };
    let (group, version, rest) = objects_route;
    let (rt, target) = {
        let st = app.lock();
        let target = path::target(&rest, |plural| st.is_namespaced(&group, &version, plural))
            .ok_or_else(ApiError::path_not_found)?;
        let rt = st
            .find_type(&group, &version, &target.plural)
            .ok_or_else(ApiError::path_not_found)?;
        (rt, target)
    };
    if target.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::path_not_found());
    }
    match target.subresource.as_deref() {
        None => {}
        Some("status") if rt.status_subresource => {}
        Some(_) => return Err(ApiError::path_not_found()),
    }
    objects(app, method, &rt, &target, query, headers, body)
}

fn objects(
    app: &App,
    method: &Method,
    rt: &ResourceType,
    t: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let ns = t.namespace.as_deref();
    let sub = t.subresource.as_deref();
    let table = wants_as(headers, "Table");
    let metadata_only = wants_as(headers, "PartialObjectMetadata")
        || wants_as(headers, "PartialObjectMetadataList");
    let include = Include::parse(query.get("includeObject").map(String::as_str));
    if rt.namespaced && ns.is_none() && t.name.is_some() {
        return Err(ApiError::path_not_found());
    }
    match (method.clone(), t.name.as_deref()) {
        (Method::GET, None) => {
            let q = list_query(rt, query, ns)?;
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                let params = WatchParams::parse(query)?;
                return Ok(Reply::Watch(Box::new(watch::Request {
                    rt: rt.clone(),
                    query: q,
                    params,
                    table,
                    metadata_only,
                    include,
                })));
            }
            let page = app.lock().list(rt, &q);
            if table {
                return ok(table::render(
                    rt,
                    &page.items,
                    include,
                    true,
                    Some(page.resource_version),
                    page.continue_token.as_deref(),
                ));
            }
            let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(c) = page.continue_token {
                meta["continue"] = json!(c);
                meta["remainingItemCount"] = json!(page.remaining);
            }
            if metadata_only {
                let items: Vec<Value> = page.items.iter().map(table::partial).collect();
                return ok(
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
                );
            }
            ok(
                json!({"kind": rt.list_kind, "apiVersion": rt.api_version(), "metadata": meta, "items": page.items}),
            )
        }
        (Method::GET, Some(name)) => {
            let obj = app.lock().get(rt, ns, name)?;
            if table {
                return ok(table::render(rt, &[obj], include, true, None, None));
            }
            if metadata_only {
                return ok(table::partial(&obj));
            }
            ok(obj)
        }
        (Method::POST, None) => {
            let body = parse_body(headers, body)?;
            let ctx = write_ctx(headers, query, false)?;
            let created = app.lock().create(rt, ns, body, &ctx)?;
            Ok(Reply::Json(201, created))
        }
        (Method::PUT, Some(name)) => {
            let body = parse_body(headers, body)?;
            let ctx = write_ctx(headers, query, false)?;
            ok(app.lock().update(rt, ns, name, body, sub, &ctx)?)
        }
        (Method::PATCH, Some(name)) => {
            let pt = patch_type(headers, query)?;
            let body = parse_body(headers, body)?;
            let ctx = write_ctx(headers, query, matches!(pt, PatchType::Apply { .. }))?;
            ok(app.lock().patch(rt, ns, name, pt, &body, sub, &ctx)?)
        }
        (Method::DELETE, name) if sub.is_none() => {
            let opts = delete_opts(query, body)?;
            let mut st = app.lock();
            match name {
                Some(name) => ok(st.delete(rt, ns, name, &opts)?),
                None => {
                    let q = list_query(rt, query, ns)?;
                    let page = st.list(rt, &q);
                    let mut deleted = Vec::new();
                    for o in page.items {
                        let n = o
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        let ons = o
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        deleted.push(st.delete(rt, ons.as_deref(), &n, &opts)?);
                    }
                    ok(
                        json!({"kind": rt.list_kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": st.resource_version().to_string()}, "items": deleted}),
                    )
                }
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn delete_opts(query: &HashMap<String, String>, body: &Bytes) -> ApiResult<DeleteOpts> {
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let propagation = b
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| query.get("propagationPolicy").cloned())
        .or_else(
            || match b.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some("Orphan".into()),
                _ => None,
            },
        );
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{p}\""
        )));
    }
    let dry = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|x| x == "All"))
        || query.get("dryRun").is_some_and(|d| d == "All");
    Ok(DeleteOpts {
        propagation,
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: dry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn accept_as_uses_the_preferred_entry() {
        let h = headers(&[(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )]);
        assert!(wants_as(&h, "Table"));
        let h = headers(&[(
            header::ACCEPT,
            "application/json,application/json;as=Table;v=v1;g=meta.k8s.io",
        )]);
        assert!(!wants_as(&h, "Table"));
        let h = headers(&[(
            header::ACCEPT,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )]);
        assert!(
            wants_as(&h, "PartialObjectMetadataList") && !wants_as(&h, "PartialObjectMetadata")
        );
    }

    #[test]
    fn patch_types_by_content_type() {
        let q = HashMap::from([("force".to_string(), "true".to_string())]);
        let h = headers(&[(header::CONTENT_TYPE, "application/apply-patch+yaml")]);
        assert_eq!(
            patch_type(&h, &q).unwrap(),
            PatchType::Apply { force: true }
        );
        let h = headers(&[(
            header::CONTENT_TYPE,
            "application/merge-patch+json; charset=utf-8",
        )]);
        assert_eq!(patch_type(&h, &HashMap::new()).unwrap(), PatchType::Merge);
        let h = headers(&[(header::CONTENT_TYPE, "text/plain")]);
        assert_eq!(patch_type(&h, &HashMap::new()).unwrap_err().code, 415);
    }

    #[test]
    fn delete_options_from_body_or_query() {
        let body = Bytes::from(
            r#"{"propagationPolicy":"Orphan","preconditions":{"uid":"u"},"dryRun":["All"]}"#,
        );
        let o = delete_opts(&HashMap::new(), &body).unwrap();
        assert_eq!(o.propagation.as_deref(), Some("Orphan"));
        assert_eq!(o.precondition_uid.as_deref(), Some("u"));
        assert!(o.dry_run);
        let q = HashMap::from([("propagationPolicy".to_string(), "Sideways".to_string())]);
        assert_eq!(delete_opts(&q, &Bytes::new()).unwrap_err().code, 400);
    }

    #[test]
    fn apply_requires_a_field_manager() {
        let h = HeaderMap::new();
        assert_eq!(write_ctx(&h, &HashMap::new(), true).unwrap_err().code, 400);
        let h = headers(&[(header::USER_AGENT, "kubectl/v1.32.4 (linux/amd64)")]);
        assert_eq!(
            write_ctx(&h, &HashMap::new(), false).unwrap().manager,
            "kubectl"
        );
    }
}
