//! Lease-based leader election that cannot give two leaders (the client-go rules):
//! - a follower judges expiry by its own monotonic clock, from the moment it saw the Lease
//!   record change, never from the `renewTime` written by another machine (clock skew);
//! - the holder's renewals have a timeout, and once its renew deadline (shorter than the lease)
//!   passes without a renewal it stops: its Kubernetes writes are refused locally at once (the
//!   [`Fence`] on its client) and `run` returns, so the process exits and is restarted;
//! - a graceful stop releases the Lease, so a follower takes over at its next retry.
//!
//! Why the deadline holds: a renewal started at `t` is written after `t`, so a follower sees it
//! at `t_seen >= t` and takes over no earlier than `t_seen + lease_duration`, while the holder's
//! writes end at `t + renew_deadline`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::time::Instant;

use crate::{Error, Result};

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStep {
    Create,
    Renew,
    TakeOver,
    Follow,
}

/// Pure: the Lease as read, this instance's identity, and how long (on the local monotonic
/// clock) the record has been seen unchanged, in; the step out. Timestamps in the record are
/// deliberately not compared with the local clock.
pub fn lease_step(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> LeaseStep {
    let Some(spec) = spec else {
        return LeaseStep::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => LeaseStep::Renew,
        // Released (or never held).
        None | Some("") => LeaseStep::TakeOver,
        Some(_) => {
            let seconds = spec.lease_duration_seconds.unwrap_or(15).max(1);
            let duration = Duration::from_secs(u64::try_from(seconds).unwrap_or(1));
            if unchanged_for >= duration {
                LeaseStep::TakeOver
            } else {
                LeaseStep::Follow
            }
        }
    }
}

/// How long a Lease lasts, how long the holder keeps trying to renew, and how often
/// everyone tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease_duration: Duration,
    /// The holder stops when it has not renewed for this long; shorter than the lease.
    pub renew_deadline: Duration,
    /// Time between attempts, for the holder and the followers.
    pub retry_period: Duration,
}

impl Timing {
    /// client-go's proportions (15 s lease, 10 s renew deadline, 2 s retry), scaled.
    pub fn for_lease(lease_duration: Duration) -> Self {
        Self {
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: (lease_duration * 2 / 15).max(Duration::from_millis(100)),
        }
    }
}

/// The holder's local promise: until `deadline`, no follower can have taken over.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<Mutex<Option<Instant>>>);

impl Fence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while this instance may write.
    pub fn holds(&self) -> bool {
        self.lock().is_some_and(|d| Instant::now() < d)
    }

    fn deadline(&self) -> Option<Instant> {
        *self.lock()
    }

    fn extend(&self, deadline: Instant) {
        *self.lock() = Some(deadline);
    }

    fn revoke(&self) {
        *self.lock() = None;
    }

    /// `client` with every write (anything but GET/HEAD) refused while the fence does not
    /// hold, checked when the request is sent: a holder frozen past its deadline (SIGSTOP, a
    /// long GC pause, a stalled node) writes nothing when it wakes, whatever it was doing.
    pub fn guard(&self, client: Client) -> Client {
        let fence = self.clone();
        let namespace = client.default_namespace().to_string();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (client, fence) = (client.clone(), fence.clone());
            async move {
                let read = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
                if !read && !fence.holds() {
                    return Err(kube::Error::Service(
                        "not the leader (leader Lease not held): write refused".into(),
                    ));
                }
                client.send(req).await
            }
        });
        Client::new(service, namespace)
    }
}

/// One contender for one Lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    fence: Fence,
    /// The record last read (its resourceVersion) and when this instance first saw it.
    observed: Arc<Mutex<Option<(String, Instant)>>>,
}

impl Elector {
    /// `client` must not be guarded by this elector's fence (the elector writes to win it).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            fence: Fence::default(),
            observed: Arc::default(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The fence that is up while this instance holds the Lease.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// How long the record with `version` has been seen unchanged, as of `now`.
    fn unchanged_for(&self, version: &str, now: Instant) -> Duration {
        let mut seen = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match seen.as_ref() {
            Some((v, at)) if v == version => now.saturating_duration_since(*at),
            _ => {
                *seen = Some((version.to_string(), now));
                Duration::ZERO
            }
        }
    }

    /// One attempt to acquire or renew; true while this instance holds the Lease (the fence
    /// then holds until `start + renew_deadline`). Writes carry the read resourceVersion, so
    /// of two racing contenders only one succeeds.
    pub async fn try_acquire(&self) -> Result<bool> {
        // Taken before anything is sent: the renewal is written later than this.
        let start = Instant::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| Error::kube("reading the leader Lease", e))?;
        let unchanged_for = current.as_ref().map_or(Duration::ZERO, |l| {
            self.unchanged_for(
                l.metadata.resource_version.as_deref().unwrap_or_default(),
                Instant::now(),
            )
        });
        let step = lease_step(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            unchanged_for,
        );
        let now = MicroTime(Timestamp::now());
        let seconds =
            i32::try_from(self.timing.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let result = match (step, current) {
            (LeaseStep::Follow, _) => {
                self.fence.revoke();
                return Ok(false);
            }
            (LeaseStep::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
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
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(now);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (_, None) => return Ok(false),
        };
        match result {
            Ok(()) => {
                self.fence.extend(start + self.timing.renew_deadline);
                Ok(true)
            }
            // Someone else wrote first (create race or stale resourceVersion).
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(Error::kube("writing the leader Lease", e)),
        }
    }

    /// Waits until this instance holds the Lease, trying every retry period.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            match tokio::time::timeout(self.timing.renew_deadline, self.try_acquire()).await {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election attempt failed"),
                Err(_) => tracing::warn!("leader election attempt timed out"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews every retry period; returns (an error) when the Lease is lost or was not renewed
    /// before the renew deadline. Each attempt is bounded by the time left to the deadline.
    pub async fn keep(&self) -> Result<()> {
        let lost = |why: &str| {
            self.fence.revoke();
            Err(Error::Startup(format!("leadership lost: {why}")))
        };
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            let Some(deadline) = self.fence.deadline().filter(|d| Instant::now() < *d) else {
                return lost("the renew deadline passed");
            };
            match tokio::time::timeout_at(deadline, self.try_acquire()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return lost("the Lease was taken by another instance"),
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the leader Lease failed"),
                Err(_) => return lost("renewing the Lease timed out at the renew deadline"),
            }
        }
    }

    /// Gives the Lease up (graceful stop) so a follower takes over at its next attempt instead
    /// of waiting for expiry. Writes stop first; a Lease someone else holds is left alone.
    pub async fn release(&self) -> Result<()> {
        self.fence.revoke();
        let attempt = async {
            let Some(mut lease) = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| Error::kube("reading the leader Lease", e))?
            else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            // resourceVersion from the read: a Lease taken over meanwhile is not touched.
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(|e| Error::kube("releasing the leader Lease", e))
        };
        tokio::time::timeout(self.timing.renew_deadline, attempt)
            .await
            .map_err(|_| Error::Startup("releasing the leader Lease timed out".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let t = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago);
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(t)),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn lease_steps() {
        let s = Duration::from_secs;
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            ..spec("x", 0, 15)
        };
        let cases: &[(Option<LeaseSpec>, Duration, LeaseStep, &str)] = &[
            (None, s(0), LeaseStep::Create, "no Lease yet"),
            (
                Some(spec("a", 100, 15)),
                s(100),
                LeaseStep::Renew,
                "mine, even if stale",
            ),
            (
                Some(spec("b", 5, 15)),
                s(5),
                LeaseStep::Follow,
                "held and fresh",
            ),
            (
                Some(spec("b", 20, 15)),
                s(20),
                LeaseStep::TakeOver,
                "unchanged for a lease",
            ),
            (
                Some(spec("b", 0, 15)),
                s(15),
                LeaseStep::TakeOver,
                "exactly one lease",
            ),
            // Clock skew: the holder's clock is an hour behind ours, but we only just saw
            // the record change, so it is alive.
            (
                Some(spec("b", 3600, 15)),
                s(1),
                LeaseStep::Follow,
                "old renewTime, just changed",
            ),
            // The holder's clock is ahead: a renewTime in our future does not keep a dead
            // holder alive once the record stops changing.
            (
                Some(spec("b", -3600, 15)),
                s(16),
                LeaseStep::TakeOver,
                "future renewTime, dead",
            ),
            (
                Some(spec("b", 0, 2)),
                s(3),
                LeaseStep::TakeOver,
                "the record's own duration",
            ),
            (Some(released), s(0), LeaseStep::TakeOver, "released"),
            (
                Some(LeaseSpec::default()),
                s(0),
                LeaseStep::TakeOver,
                "empty",
            ),
        ];
        for (spec, unchanged, want, why) in cases {
            assert_eq!(lease_step(spec.as_ref(), "a", *unchanged), *want, "{why}");
        }
    }

    #[test]
    fn timing_keeps_the_renew_deadline_inside_the_lease() {
        let t = Timing::for_lease(Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(2));
        let short = Timing::for_lease(Duration::from_millis(300));
        assert!(short.renew_deadline < short.lease_duration);
        assert_eq!(short.retry_period, Duration::from_millis(100));
    }

    #[test]
    fn the_fence_holds_until_its_deadline_only() {
        let f = Fence::default();
        assert!(!f.holds(), "down until the Lease is won");
        f.extend(Instant::now() + Duration::from_secs(3600));
        assert!(f.holds());
        f.extend(Instant::now());
        assert!(!f.holds(), "down from the deadline on");
        f.extend(Instant::now() + Duration::from_secs(3600));
        f.revoke();
        assert!(!f.holds());
    }
}
