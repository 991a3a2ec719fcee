//! Long-running operations as a resumable token: the controller stores the token in status and
//! polls once per reconcile; nothing here waits in a loop.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{ArmError, ErrorDetail, retry::parse_retry_after};
use crate::{Error, Result};

/// How the operation is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LroKind {
    /// `Azure-AsyncOperation` status monitor (`{status, error}` body).
    AsyncOperation,
    /// `Location`: 202 while running, 200/204 when done.
    Location,
    /// GET the resource itself and read `properties.provisioningState`.
    ProvisioningState,
}

/// Everything needed to resume polling after a restart. Serialise it into status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LroToken {
    pub kind: LroKind,
    /// Absolute URL to GET.
    pub url: String,
    /// ARM id of the resource the operation acts on.
    pub resource_id: String,
    /// Verb of the initial request: a DELETE whose resource is gone has succeeded.
    pub method: String,
    pub started_at: DateTime<Utc>,
}

/// Result of one poll.
#[derive(Debug, Clone, PartialEq)]
pub enum LroStatus {
    InProgress { retry_after: Option<Duration> },
    Succeeded,
    Failed(Box<ArmError>),
    Canceled,
}

/// What the initial request of a possibly long-running operation produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// Finished synchronously; `body` is the response body (may be empty).
    Done {
        status: u16,
        body: serde_json::Value,
    },
    /// Still running: store the token and poll later, not before `retry_after` when given.
    Pending {
        token: LroToken,
        retry_after: Option<Duration>,
    },
}

fn header_url(headers: &HeaderMap, name: &str, request_url: &Url) -> Result<Option<Url>> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|e| Error::decode(format!("{name} header"), e))?;
    // Relative values are resolved against the request, as HTTP allows for Location.
    request_url.join(s).map(Some).map_err(|source| Error::Url {
        url: s.to_string(),
        source,
    })
}

fn provisioning_state(body: &serde_json::Value) -> Option<&str> {
    body.pointer("/properties/provisioningState")
        .and_then(|v| v.as_str())
}

fn is_terminal_state(s: &str) -> bool {
    s.eq_ignore_ascii_case("Succeeded")
        || s.eq_ignore_ascii_case("Failed")
        || s.eq_ignore_ascii_case("Canceled")
}

fn parse_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
}

/// The resource's own URL for a request on it or on one of its actions
/// (`.../vm1/deallocate` → `.../vm1`), keeping only `api-version`.
fn resource_url(request_url: &Url, resource_id: &str) -> Url {
    let mut u = request_url.clone();
    if let Some(i) = u.path().find(resource_id) {
        let path = u.path()[..i + resource_id.len()].to_string();
        u.set_path(&path);
    }
    let version: Vec<(String, String)> = request_url
        .query_pairs()
        .filter(|(k, _)| k == "api-version")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    if !version.is_empty() {
        u.query_pairs_mut().extend_pairs(version);
    }
    u
}

/// Interpret the initial response (pure). Error statuses become `Err(Error::Arm)`.
pub fn interpret_start(
    method: &Method,
    request_url: &Url,
    resource_id: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Started> {
    if !status.is_success() {
        return Err(Box::new(ArmError::from_response(status, headers, body)).into());
    }
    let retry_after = parse_retry_after(headers, now);
    let pending = |kind, url: &Url| Started::Pending {
        token: LroToken {
            kind,
            url: url.to_string(),
            resource_id: resource_id.to_string(),
            method: method.to_string(),
            started_at: now,
        },
        retry_after,
    };
    // Both present: the async-operation monitor wins (ARM guidance).
    if let Some(u) = header_url(headers, "azure-asyncoperation", request_url)? {
        return Ok(pending(LroKind::AsyncOperation, &u));
    }
    if (status == StatusCode::ACCEPTED || status == StatusCode::CREATED)
        && let Some(u) = header_url(headers, "location", request_url)?
    {
        return Ok(pending(LroKind::Location, &u));
    }
    let json = parse_body(body);
    let running = match provisioning_state(&json) {
        Some(s) => !is_terminal_state(s),
        // A bare 202 with nothing to follow: watch the resource itself.
        None => status == StatusCode::ACCEPTED,
    };
    if running {
        return Ok(pending(
            LroKind::ProvisioningState,
            &resource_url(request_url, resource_id),
        ));
    }
    Ok(Started::Done {
        status: status.as_u16(),
        body: json,
    })
}

/// Interpret one poll response for `token` (pure).
pub fn interpret_poll(
    token: &LroToken,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<LroStatus> {
    let retry_after = parse_retry_after(headers, Utc::now());
    if status == StatusCode::NOT_FOUND
        && token.kind != LroKind::AsyncOperation
        && token.method.eq_ignore_ascii_case("DELETE")
    {
        return Ok(LroStatus::Succeeded);
    }
    if !status.is_success() {
        return Err(Box::new(ArmError::from_response(status, headers, body)).into());
    }
    match token.kind {
        LroKind::Location => Ok(if status == StatusCode::ACCEPTED {
            LroStatus::InProgress { retry_after }
        } else {
            LroStatus::Succeeded
        }),
        LroKind::AsyncOperation => {
            #[derive(Deserialize)]
            struct OpStatus {
                status: String,
                #[serde(default)]
                error: Option<ErrorDetail>,
            }
            let op: OpStatus = serde_json::from_slice(body)
                .map_err(|e| Error::decode(format!("operation status {}", token.url), e))?;
            Ok(terminal_or_progress(
                &op.status,
                op.error,
                headers,
                retry_after,
            ))
        }
        LroKind::ProvisioningState => {
            let json = parse_body(body);
            let error = json
                .pointer("/properties/error")
                .and_then(|e| serde_json::from_value::<ErrorDetail>(e.clone()).ok());
            match provisioning_state(&json) {
                None => Ok(LroStatus::Succeeded),
                Some(s) => Ok(terminal_or_progress(s, error, headers, retry_after)),
            }
        }
    }
}

fn terminal_or_progress(
    state: &str,
    error: Option<ErrorDetail>,
    headers: &HeaderMap,
    retry_after: Option<Duration>,
) -> LroStatus {
    if state.eq_ignore_ascii_case("Succeeded") {
        LroStatus::Succeeded
    } else if state.eq_ignore_ascii_case("Canceled") {
        LroStatus::Canceled
    } else if state.eq_ignore_ascii_case("Failed") {
        let detail = error.unwrap_or_else(|| ErrorDetail {
            code: "OperationFailed".into(),
            message: "the operation reported Failed without an error".into(),
            ..Default::default()
        });
        LroStatus::Failed(Box::new(ArmError::from_operation(detail, headers)))
    } else {
        LroStatus::InProgress { retry_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const VM: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";

    fn url() -> Url {
        Url::parse(&format!("http://127.0.0.1:9{VM}?api-version=2020-06-01")).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hdr(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn async_operation_header_wins_over_location() {
        let h = hdr(&[
            ("azure-asyncoperation", "http://127.0.0.1:9/ops/1"),
            ("location", "http://127.0.0.1:9/loc/1"),
        ]);
        let s = interpret_start(
            &Method::PUT,
            &url(),
            VM,
            StatusCode::CREATED,
            &h,
            b"{}",
            now(),
        )
        .unwrap();
        let Started::Pending { token: t, .. } = s else {
            panic!("{s:?}")
        };
        assert_eq!(t.kind, LroKind::AsyncOperation);
        assert_eq!(t.url, "http://127.0.0.1:9/ops/1");
        assert_eq!(t.resource_id, VM);
    }

    #[test]
    fn relative_location_is_resolved() {
        let h = hdr(&[("location", "/ops/7?api-version=2020-06-01")]);
        let s = interpret_start(
            &Method::POST,
            &url(),
            VM,
            StatusCode::ACCEPTED,
            &h,
            b"",
            now(),
        )
        .unwrap();
        let Started::Pending { token: t, .. } = s else {
            panic!()
        };
        assert_eq!(t.kind, LroKind::Location);
        assert_eq!(t.url, "http://127.0.0.1:9/ops/7?api-version=2020-06-01");
    }

    #[test]
    fn provisioning_state_decides_without_headers() {
        let creating = br#"{"properties":{"provisioningState":"Creating"}}"#;
        let s = interpret_start(
            &Method::PUT,
            &url(),
            VM,
            StatusCode::CREATED,
            &HeaderMap::new(),
            creating,
            now(),
        )
        .unwrap();
        assert!(matches!(
            s,
            Started::Pending {
                token: LroToken {
                    kind: LroKind::ProvisioningState,
                    ..
                },
                ..
            }
        ));
        let done = br#"{"properties":{"provisioningState":"Succeeded"}}"#;
        let s = interpret_start(
            &Method::PUT,
            &url(),
            VM,
            StatusCode::OK,
            &HeaderMap::new(),
            done,
            now(),
        )
        .unwrap();
        assert!(matches!(s, Started::Done { status: 200, .. }));
        let s = interpret_start(
            &Method::DELETE,
            &url(),
            VM,
            StatusCode::NO_CONTENT,
            &HeaderMap::new(),
            b"",
            now(),
        )
        .unwrap();
        assert!(matches!(s, Started::Done { status: 204, .. }));
    }

    #[test]
    fn bare_202_on_an_action_polls_the_resource_itself() {
        let action = Url::parse(&format!(
            "http://127.0.0.1:9{VM}/deallocate?api-version=2020-06-01&x=1"
        ))
        .unwrap();
        let s = interpret_start(
            &Method::POST,
            &action,
            VM,
            StatusCode::ACCEPTED,
            &HeaderMap::new(),
            b"",
            now(),
        )
        .unwrap();
        let Started::Pending { token: t, .. } = s else {
            panic!("{s:?}")
        };
        assert_eq!(t.kind, LroKind::ProvisioningState);
        assert_eq!(t.url, url().as_str());
    }

    #[test]
    fn start_error_is_typed() {
        let e = interpret_start(
            &Method::PUT,
            &url(),
            VM,
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"error":{"code":"InvalidParameter","message":"m"}}"#,
            now(),
        )
        .unwrap_err();
        assert_eq!(e.as_arm().unwrap().code(), "InvalidParameter");
    }

    #[test]
    fn token_round_trips_through_json() {
        let t = LroToken {
            kind: LroKind::AsyncOperation,
            url: "https://management.local/ops/1?api-version=2020-06-01".into(),
            resource_id: VM.into(),
            method: "PUT".into(),
            started_at: now(),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""kind":"AsyncOperation""#), "{json}");
        assert!(json.contains(r#""resourceId""#), "{json}");
        assert_eq!(serde_json::from_str::<LroToken>(&json).unwrap(), t);
    }

    fn token(kind: LroKind, method: &str) -> LroToken {
        LroToken {
            kind,
            url: "http://127.0.0.1:9/x".into(),
            resource_id: VM.into(),
            method: method.into(),
            started_at: now(),
        }
    }

    #[test]
    fn async_operation_statuses() {
        let t = token(LroKind::AsyncOperation, "PUT");
        let h = hdr(&[("retry-after", "4")]);
        assert_eq!(
            interpret_poll(&t, StatusCode::OK, &h, br#"{"status":"InProgress"}"#).unwrap(),
            LroStatus::InProgress {
                retry_after: Some(Duration::from_secs(4))
            }
        );
        assert_eq!(
            interpret_poll(&t, StatusCode::OK, &h, br#"{"status":"Succeeded"}"#).unwrap(),
            LroStatus::Succeeded
        );
        assert_eq!(
            interpret_poll(&t, StatusCode::OK, &h, br#"{"status":"Canceled"}"#).unwrap(),
            LroStatus::Canceled
        );
        match interpret_poll(
            &t,
            StatusCode::OK,
            &h,
            br#"{"status":"Failed","error":{"code":"AllocationFailed","message":"no capacity"}}"#,
        )
        .unwrap()
        {
            LroStatus::Failed(e) => assert_eq!(e.code(), "AllocationFailed"),
            s => panic!("{s:?}"),
        }
        assert!(interpret_poll(&t, StatusCode::OK, &h, b"not json").is_err());
    }

    #[test]
    fn location_and_provisioning_state_polls() {
        let loc = token(LroKind::Location, "POST");
        let none = HeaderMap::new();
        assert!(matches!(
            interpret_poll(&loc, StatusCode::ACCEPTED, &none, b"").unwrap(),
            LroStatus::InProgress { .. }
        ));
        assert_eq!(
            interpret_poll(&loc, StatusCode::NO_CONTENT, &none, b"").unwrap(),
            LroStatus::Succeeded
        );
        let ps = token(LroKind::ProvisioningState, "PUT");
        assert!(matches!(
            interpret_poll(
                &ps,
                StatusCode::OK,
                &none,
                br#"{"properties":{"provisioningState":"Updating"}}"#
            )
            .unwrap(),
            LroStatus::InProgress { .. }
        ));
        assert!(matches!(
            interpret_poll(
                &ps,
                StatusCode::OK,
                &none,
                br#"{"properties":{"provisioningState":"Failed"}}"#
            )
            .unwrap(),
            LroStatus::Failed(_)
        ));
        assert!(interpret_poll(&ps, StatusCode::NOT_FOUND, &none, b"{}").is_err());
        let del = token(LroKind::ProvisioningState, "DELETE");
        assert_eq!(
            interpret_poll(&del, StatusCode::NOT_FOUND, &none, b"{}").unwrap(),
            LroStatus::Succeeded
        );
    }
}
