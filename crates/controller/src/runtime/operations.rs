//! Long-running Azure operations kept in status, for any kind: record what a write started,
//! resume polling on the next reconcile (once, never in a loop), expire what can no longer be
//! followed. The kind says which client polls an operation; nothing here knows the kinds.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use edgetrain_api::common::PendingOperation;
use edgetrain_azure::arm::{LroStatus, LroToken, Started};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{Error, Result};

/// Polls one stored operation (an Azure client of the service that started it).
#[async_trait]
pub trait OperationPoller: Send + Sync {
    async fn poll(&self, token: &LroToken) -> edgetrain_azure::Result<LroStatus>;
}

#[async_trait]
impl OperationPoller for Arc<dyn edgetrain_azure::stackhub::StackHubApi> {
    async fn poll(&self, token: &LroToken) -> edgetrain_azure::Result<LroStatus> {
        edgetrain_azure::stackhub::StackHubApi::poll(&**self, token).await
    }
}

#[async_trait]
impl OperationPoller for Arc<dyn edgetrain_azure::ml::MlApi> {
    async fn poll(&self, token: &LroToken) -> edgetrain_azure::Result<LroStatus> {
        edgetrain_azure::ml::MlApi::poll(&**self, token).await
    }
}

/// Converts a chrono instant into a `metav1.Time`.
pub fn to_time(now: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(
            now.timestamp_nanos_opt().unwrap_or_default(),
        ))
        .unwrap_or_default(),
    )
}

pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_nanos(t.0.as_nanosecond() as i64)
}

/// Operations one reconcile started, and the earliest time to look again.
#[derive(Debug, Default)]
pub struct Applied {
    pub pending: Vec<PendingOperation>,
    pub retry_after: Option<Duration>,
}

/// The earlier of two optional delays.
pub fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Applied {
    /// Keeps the poller of an operation that did not finish synchronously.
    pub fn record(
        &mut self,
        started: Started,
        resource_id: &str,
        action: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Started::Pending { token, retry_after } = started {
            let poller = serde_json::to_string(&token)
                .map_err(|e| Error::Internal(format!("serialising a poller: {e}")))?;
            self.pending.push(PendingOperation {
                resource_id: resource_id.to_string(),
                action: action.to_string(),
                poller,
                started_at: to_time(now),
            });
            self.retry_after = min_opt(self.retry_after, retry_after);
        }
        Ok(())
    }
}

/// An operation that ended without success.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedOperation {
    pub resource_id: String,
    pub action: String,
    /// The Azure error (`None`: canceled).
    pub error: Option<Box<edgetrain_azure::arm::ArmError>>,
}

impl FailedOperation {
    /// Azure's error code (`Canceled` for a canceled operation).
    pub fn code(&self) -> &str {
        self.error.as_ref().map_or("Canceled", |e| e.code())
    }

    /// Azure's error message.
    pub fn message(&self) -> &str {
        self.error
            .as_ref()
            .map_or("the operation was canceled", |e| e.error.message.as_str())
    }
}

impl std::fmt::Display for FailedOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Some(_) => write!(
                f,
                "{} of {} failed: {}: {}",
                self.action,
                self.resource_id,
                self.code(),
                self.message()
            ),
            None => write!(f, "{} of {} was canceled", self.action, self.resource_id),
        }
    }
}

/// Why an operation was dropped without an outcome; the resource is read afresh instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// Older than the bound: Azure keeps operation records for a limited time.
    TooOld,
    /// The monitor URL answers 404 (the record expired) or points outside the client's
    /// endpoint (the spec's endpoint changed).
    Gone,
    /// The stored poller does not parse (status edited or written by another version).
    Unreadable,
}

/// Outcome of [`resume`].
#[derive(Debug, Default)]
pub struct Resumed {
    pub still_pending: Vec<PendingOperation>,
    pub succeeded: Vec<PendingOperation>,
    pub failed: Vec<FailedOperation>,
    pub expired: Vec<(PendingOperation, Expired)>,
    /// Earliest time to look again, from the servers' Retry-After.
    pub retry_after: Option<Duration>,
}

/// Polls each operation once with the poller `route` picks for it. Operations older than
/// `max_age`, unreadable, or whose monitor is gone are dropped as expired; any other poll
/// failure ends the reconcile (it is retried).
pub async fn resume<'a, F>(
    pending: &[PendingOperation],
    route: F,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Resumed>
where
    F: Fn(&PendingOperation) -> &'a dyn OperationPoller,
{
    let mut out = Resumed::default();
    for op in pending {
        let age = (now - from_time(&op.started_at))
            .to_std()
            .unwrap_or_default();
        if age > max_age {
            out.expired.push((op.clone(), Expired::TooOld));
            continue;
        }
        let Ok(token) = serde_json::from_str::<LroToken>(&op.poller) else {
            out.expired.push((op.clone(), Expired::Unreadable));
            continue;
        };
        let status = match route(op).poll(&token).await {
            Ok(s) => s,
            Err(e) if is_gone(&e) => {
                out.expired.push((op.clone(), Expired::Gone));
                continue;
            }
            Err(e) => {
                return Err(Error::azure(
                    format!("polling {} of {}", op.action, op.resource_id),
                    e,
                ));
            }
        };
        match status {
            LroStatus::InProgress { retry_after } => {
                out.retry_after = min_opt(out.retry_after, retry_after);
                out.still_pending.push(op.clone());
            }
            LroStatus::Succeeded => out.succeeded.push(op.clone()),
            LroStatus::Failed(e) => out.failed.push(FailedOperation {
                resource_id: op.resource_id.clone(),
                action: op.action.clone(),
                error: Some(e),
            }),
            LroStatus::Canceled => out.failed.push(FailedOperation {
                resource_id: op.resource_id.clone(),
                action: op.action.clone(),
                error: None,
            }),
        }
    }
    Ok(out)
}

fn is_gone(e: &edgetrain_azure::Error) -> bool {
    match e {
        edgetrain_azure::Error::ForeignPollUrl { .. } => true,
        edgetrain_azure::Error::Arm(a) => a.status == 404,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use edgetrain_azure::arm::{ArmError, LroKind};

    /// Answers each poll from a script keyed by URL, and remembers what it was asked.
    struct Scripted {
        answers: Vec<(&'static str, edgetrain_azure::Result<LroStatus>)>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl OperationPoller for Scripted {
        async fn poll(&self, token: &LroToken) -> edgetrain_azure::Result<LroStatus> {
            self.asked.lock().unwrap().push(token.url.clone());
            let (_, answer) = self
                .answers
                .iter()
                .find(|(u, _)| *u == token.url)
                .expect("scripted");
            match answer {
                Ok(s) => Ok(s.clone()),
                Err(edgetrain_azure::Error::Arm(a)) => Err(edgetrain_azure::Error::Arm(a.clone())),
                Err(edgetrain_azure::Error::ForeignPollUrl { url, arm_host }) => {
                    Err(edgetrain_azure::Error::ForeignPollUrl {
                        url: url.clone(),
                        arm_host: arm_host.clone(),
                    })
                }
                Err(_) => Err(edgetrain_azure::Error::InvalidInput("scripted".into())),
            }
        }
    }

    fn op(url: &str, started: DateTime<Utc>) -> PendingOperation {
        let token = LroToken {
            kind: LroKind::AsyncOperation,
            url: url.into(),
            resource_id: format!("/r/{url}"),
            method: "PUT".into(),
            started_at: started,
        };
        let mut s = Applied::default();
        s.record(
            Started::Pending {
                token,
                retry_after: None,
            },
            &format!("/r/{url}"),
            "put",
            started,
        )
        .unwrap();
        s.pending.remove(0)
    }

    fn arm(status: u16) -> edgetrain_azure::Error {
        edgetrain_azure::Error::Arm(Box::new(ArmError::from_response(
            http::StatusCode::from_u16(status).unwrap(),
            &http::HeaderMap::new(),
            b"{}",
        )))
    }

    #[tokio::test]
    async fn each_outcome_lands_in_its_bucket() {
        let now = Utc::now();
        let p = Scripted {
            answers: vec![
                (
                    "run",
                    Ok(LroStatus::InProgress {
                        retry_after: Some(Duration::from_secs(3)),
                    }),
                ),
                ("ok", Ok(LroStatus::Succeeded)),
                ("bad", Ok(LroStatus::Canceled)),
                ("gone", Err(arm(404))),
            ],
            asked: Mutex::default(),
        };
        let mut unreadable = op("x", now);
        unreadable.poller = "{not json".into();
        let old = op("run", now - chrono::Duration::hours(3));
        let ops = vec![
            op("run", now),
            op("ok", now),
            op("bad", now),
            op("gone", now),
            unreadable,
            old,
        ];
        let r = resume(&ops, |_| &p, Duration::from_secs(3600), now)
            .await
            .unwrap();
        assert_eq!(r.still_pending.len(), 1);
        assert_eq!(r.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(r.succeeded.len(), 1);
        assert_eq!(r.failed.len(), 1);
        assert!(r.failed[0].to_string().contains("canceled"));
        let expired: Vec<Expired> = r.expired.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(
            expired,
            vec![Expired::Gone, Expired::Unreadable, Expired::TooOld]
        );
        // The expired ones were not polled.
        assert_eq!(p.asked.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn other_poll_failures_end_the_reconcile_as_azure_errors() {
        let now = Utc::now();
        let p = Scripted {
            answers: vec![("busy", Err(arm(503)))],
            asked: Mutex::default(),
        };
        let e = resume(&[op("busy", now)], |_| &p, Duration::from_secs(60), now)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Azure { .. }), "{e}");
        // Never an invalid spec: the user's spec is not at fault.
        assert!(!matches!(e, Error::InvalidSpec(_)));
    }

    /// A stale poller never wedges the object and is never the user's fault: one whose URL is
    /// on another endpoint than the client's (the spec moved), one Azure answers 404 for (the
    /// record expired), one past the age bound, one that does not parse. Each is dropped and
    /// the others are still polled.
    #[tokio::test]
    async fn stale_pollers_are_dropped_and_never_fatal() {
        let now = Utc::now();
        let p = Scripted {
            answers: vec![
                (
                    "moved",
                    Err(edgetrain_azure::Error::ForeignPollUrl {
                        url: "https://old.example/op".into(),
                        arm_host: "management.local.azurestack.external".into(),
                    }),
                ),
                ("expired", Err(arm(404))),
                ("fresh", Ok(LroStatus::InProgress { retry_after: None })),
            ],
            asked: Mutex::default(),
        };
        let mut unreadable = op("fresh", now);
        unreadable.poller = "{\"url\": 7}".into();
        let ops = vec![
            op("moved", now),
            op("expired", now),
            op(
                "fresh",
                now - chrono::Duration::hours(2) - chrono::Duration::seconds(1),
            ),
            unreadable,
            op("fresh", now - chrono::Duration::minutes(5)),
        ];
        let r = resume(&ops, |_| &p, Duration::from_secs(2 * 3600), now)
            .await
            .expect("stale pollers are not errors");
        let expired: Vec<Expired> = r.expired.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(
            expired,
            vec![
                Expired::Gone,
                Expired::Gone,
                Expired::TooOld,
                Expired::Unreadable
            ]
        );
        assert_eq!(r.still_pending.len(), 1, "the fresh one is still followed");
        assert!(r.failed.is_empty());
    }
}
