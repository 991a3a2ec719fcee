//! Lease-based leader election: only the holder runs controllers. A holder that cannot renew
//! before its lease expires stops (the process exits and is restarted), so two replicas never
//! both write.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

use crate::{Error, Result};

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStep {
    Create,
    Renew,
    TakeOver,
    Follow,
}

fn to_chrono(t: &MicroTime) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_nanos(t.0.as_nanosecond() as i64)
}

/// Pure: holder, expiry and identity in, the step out.
pub fn lease_step(spec: Option<&LeaseSpec>, me: &str, now: DateTime<Utc>) -> LeaseStep {
    let Some(spec) = spec else {
        return LeaseStep::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => LeaseStep::Renew,
        None | Some("") => LeaseStep::TakeOver,
        Some(_) => {
            let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            match renewed {
                Some(t) if to_chrono(t) + chrono::Duration::seconds(duration) > now => {
                    LeaseStep::Follow
                }
                _ => LeaseStep::TakeOver,
            }
        }
    }
}

/// One contender for one Lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    pub fn lease_duration(&self) -> Duration {
        self.duration
    }

    /// One attempt to acquire or renew; true while this instance holds the Lease. Writes use
    /// the read resourceVersion, so of two racing contenders only one succeeds.
    pub async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| Error::kube("reading the leader Lease", e))?;
        let step = lease_step(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            Utc::now(),
        );
        let seconds = self.duration.as_secs().max(1) as i32;
        let result = match (step, current) {
            (LeaseStep::Follow, _) => return Ok(false),
            (LeaseStep::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (step, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                if step == LeaseStep::TakeOver {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(MicroTime(now));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (_, None) => return Ok(false),
        };
        match result {
            Ok(()) => Ok(true),
            // Someone else wrote first (create race or stale resourceVersion).
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(Error::kube("writing the leader Lease", e)),
        }
    }

    /// Waits until this instance holds the Lease, trying every `retry`.
    pub async fn acquire(&self, retry: Duration) -> Result<()> {
        loop {
            match self.try_acquire().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews every `duration / 3`; returns (an error) when the Lease is lost or could not be
    /// renewed before it expired.
    pub async fn keep(&self) -> Result<()> {
        let period = self.duration / 3;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    return Err(Error::Startup(
                        "leader Lease taken by another instance".into(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the leader Lease failed");
                    // Stop before the Lease can expire, so a new leader never overlaps us.
                    if last_ok.elapsed() + period >= self.duration {
                        return Err(Error::Startup(
                            "could not renew the leader Lease in time".into(),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let t = Timestamp::now() - jiff_secs(renewed_secs_ago);
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(t)),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    fn jiff_secs(s: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_secs(s)
    }

    #[test]
    fn lease_steps() {
        let now = Utc::now();
        assert_eq!(lease_step(None, "a", now), LeaseStep::Create);
        assert_eq!(
            lease_step(Some(&spec("a", 100, 15)), "a", now),
            LeaseStep::Renew
        );
        assert_eq!(
            lease_step(Some(&spec("b", 5, 15)), "a", now),
            LeaseStep::Follow
        );
        assert_eq!(
            lease_step(Some(&spec("b", 20, 15)), "a", now),
            LeaseStep::TakeOver
        );
        let empty = LeaseSpec::default();
        assert_eq!(lease_step(Some(&empty), "a", now), LeaseStep::TakeOver);
    }
}
