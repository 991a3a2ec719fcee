//! Watch streams: newline-delimited JSON events, bookmarks, timeouts and 410 Gone.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::{
    api_error::{ApiError, ApiResult},
    http::App,
    resources::ResourceType,
    selector::labels_of,
    store::{Event, ListQuery, present},
    table::{self, Include},
};

/// Watch query parameters.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub send_initial_events: bool,
}

impl WatchParams {
    pub fn parse(q: &HashMap<String, String>) -> ApiResult<Self> {
        let rv = match q.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
            ),
        };
        Ok(Self {
            resource_version: rv,
            bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
            timeout: q
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs),
            send_initial_events: q.get("sendInitialEvents").is_some_and(|v| v == "true"),
        })
    }
}

/// Everything a watch needs once the request is parsed.
#[derive(Debug)]
pub struct Request {
    pub rt: ResourceType,
    pub query: ListQuery,
    pub params: WatchParams,
    pub table: bool,
    pub metadata_only: bool,
    pub include: Include,
}

fn selected(req: &Request, obj: &Value) -> bool {
    req.query.labels.matches(&labels_of(obj)) && req.query.fields.matches(obj)
}

/// The event type this watch sees for `ev`, if any: an object entering or leaving the
/// selection is ADDED or DELETED, as on the real server.
fn seen_as(req: &Request, ev: &Event) -> Option<&'static str> {
    if ev.storage != req.rt.storage_key()
        || req
            .query
            .namespace
            .as_deref()
            .is_some_and(|ns| ns != ev.namespace)
    {
        return None;
    }
    let now = selected(req, &ev.object);
    let before = ev.previous.as_ref().map_or(now, |p| selected(req, p));
    match (ev.type_, before, now) {
        ("MODIFIED", true, true) => Some("MODIFIED"),
        ("MODIFIED", false, true) => Some("ADDED"),
        ("MODIFIED", true, false) => Some("DELETED"),
        (t, _, true) if t != "MODIFIED" => Some(t),
        _ => None,
    }
}

struct Encoder {
    table: bool,
    metadata_only: bool,
    include: Include,
    columns_sent: bool,
}

impl Encoder {
    fn line(&mut self, rt: &ResourceType, type_: &str, obj: &Value) -> Bytes {
        let object = if self.table && type_ != "BOOKMARK" && type_ != "ERROR" {
            let t = table::render(
                rt,
                std::slice::from_ref(obj),
                self.include,
                !self.columns_sent,
                None,
                None,
            );
            self.columns_sent = true;
            t
        } else if self.metadata_only && type_ != "ERROR" {
            table::partial(obj)
        } else {
            obj.clone()
        };
        let mut s = json!({"type": type_, "object": object}).to_string();
        s.push('\n');
        Bytes::from(s)
    }
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Value {
    let mut md = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": md})
}

/// Starts the watch: the response streams while a task feeds it.
pub fn stream(app: App, req: Request) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut enc = Encoder {
        table: req.table,
        metadata_only: req.metadata_only,
        include: req.include,
        columns_sent: false,
    };
    // Everything up to the subscription happens under the lock, so no event is missed or doubled.
    let setup = {
        let st = app.lock();
        let initial: Vec<Value> = if req.params.resource_version.is_none() {
            st.list(
                &req.rt,
                &ListQuery {
                    namespace: req.query.namespace.clone(),
                    labels: req.query.labels.clone(),
                    fields: req.query.fields.clone(),
                    ..Default::default()
                },
            )
            .items
        } else {
            Vec::new()
        };
        let from = req.params.resource_version.unwrap_or(st.resource_version());
        st.watch_from(from)
            .map(|(backlog, live)| (initial, backlog, live, from, st.resource_version()))
    };
    let (initial, backlog, live, from, start_rv) = match setup {
        Ok(s) => s,
        Err(e) => {
            // A too-old resourceVersion is answered inside the watch stream, as the real server does.
            let line = enc.line(&req.rt, "ERROR", &e.status_body());
            return respond(futures::stream::iter([Ok::<_, Infallible>(line)]));
        }
    };
    let mut pre: Vec<Bytes> = initial
        .iter()
        .map(|o| enc.line(&req.rt, "ADDED", o))
        .collect();
    if req.params.send_initial_events && req.params.bookmarks {
        pre.push(enc.line(&req.rt, "BOOKMARK", &bookmark(&req.rt, start_rv, true)));
    }
    tokio::spawn(pump(app, req, enc, pre, (from, backlog), live, tx));
    respond(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }))
}

fn respond<S>(s: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(s))
        .expect("static response parts are valid")
}

async fn pump(
    app: App,
    req: Request,
    mut enc: Encoder,
    pre: Vec<Bytes>,
    (from, backlog): (u64, Vec<Arc<Event>>),
    mut live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut cut = app.cut.clone();
    // Highest resourceVersion this stream has passed (matching or not): safe to bookmark.
    let mut last_rv = backlog.last().map_or(from, |e| e.rv.max(from));
    for line in pre {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    for ev in &backlog {
        let Some(type_) = seen_as(&req, ev) else {
            continue;
        };
        let line = enc.line(&req.rt, type_, &present(&req.rt, &ev.object));
        if tx.send(line).await.is_err() {
            return;
        }
    }
    let deadline = req.params.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut ticker = tokio::time::interval(app.bookmark_every);
    ticker.tick().await;
    loop {
        let sleep_until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        let line = tokio::select! {
            _ = cut.changed() => return,
            // The client went away: stop now rather than at the next event.
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(sleep_until) => return,
            _ = ticker.tick(), if req.params.bookmarks => {
                enc.line(&req.rt, "BOOKMARK", &bookmark(&req.rt, last_rv, false))
            }
            ev = live.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    let Some(type_) = seen_as(&req, &ev) else {
                        continue;
                    };
                    enc.line(&req.rt, type_, &present(&req.rt, &ev.object))
                }
                // Fell behind or the store is gone: end the stream; the client re-watches.
                Err(_) => return,
            },
        };
        if tx.send(line).await.is_err() {
            return;
        }
    }
}
