//! One job listing per workspace, shared by every TrainingRun in it: a reconcile reads the
//! latest listing and lists again only when it is older than its run can accept
//! ([`max_age`]: short while a job starts, longer while it runs); concurrent reconciles of one
//! workspace wait for the same listing (one list call per workspace per interval, never one
//! GET per job).
//!
//! Every wait here is bounded by [`LIST_TIMEOUT`]: a listing request that gets no answer
//! (the transport's read timeout alone is 60 s per read, and a listing has pages) must not
//! hold the workspace's runs — among them a deleted run waiting to cancel its job — for
//! longer than that. A listing that runs out of time ends its reconcile with a transient
//! error; runs that waited for it carry on with the previous listing when there is one (their
//! decisions compare the listing's time with their submissions, so an older listing is safe).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use edgetrain_api::TrainingRunPhase;
use edgetrain_azure::ml::{MlApi, Workspace};
use tracing::{debug, warn};

use super::{decide::Snapshot, observe};
use crate::{Error, Result};

/// The listing interval while a run's job starts (or it is being deleted): its submission and
/// first states must be seen soon.
pub const STARTING: Duration = Duration::from_secs(5);
/// The listing interval while a run's job runs: nothing to do but notice its end.
pub const RUNNING: Duration = Duration::from_secs(20);

/// How old a listing a run in `phase` may act on (and how soon it looks again). A workspace is
/// listed at most once per interval of its most demanding run: with every job running, once
/// per [`RUNNING`].
pub fn max_age(phase: TrainingRunPhase) -> Duration {
    match phase {
        TrainingRunPhase::Running => RUNNING,
        _ => STARTING,
    }
}

/// The longest a listing (all its pages) may take, and the longest a reconcile waits for
/// another reconcile's listing.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(20);

/// One workspace: its latest listing, and the single-flight gate of the next one.
#[derive(Default)]
struct Slot {
    latest: Mutex<Option<Arc<Snapshot>>>,
    listing: tokio::sync::Mutex<()>,
}

impl Slot {
    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.lock().expect("lock").clone()
    }

    /// The latest listing when it is less than `max_age` old at `now`.
    fn fresh(&self, now: DateTime<Utc>, max_age: Duration) -> Option<Arc<Snapshot>> {
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        self.latest()
            .filter(|s| now - s.taken_at < max_age && s.taken_at <= now)
    }
}

/// The latest listing of each workspace (by workspace id).
pub struct JobListings {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// [`LIST_TIMEOUT`]; shorter in tests.
    timeout: Duration,
}

impl Default for JobListings {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            timeout: LIST_TIMEOUT,
        }
    }
}

impl JobListings {
    /// The workspace's listing, less than `max_age` old at `now` (or, when another
    /// reconcile's listing of it outlasts [`LIST_TIMEOUT`], the previous one).
    pub async fn get(
        &self,
        ml: &dyn MlApi,
        workspace: &Workspace,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<Arc<Snapshot>> {
        let key = workspace
            .id()
            .map_err(|e| Error::azure("workspace id", e))?
            .to_ascii_lowercase();
        self.shared(&key, now, max_age, observe::snapshot(ml, workspace, now))
            .await
    }

    /// Single flight for workspace `key`: at most one `list` runs at a time, and nobody waits
    /// for it (or runs it) longer than [`LIST_TIMEOUT`]. Only the time-bounded wait for the
    /// gate and the listing itself happen under it; nothing else awaits while it is held.
    async fn shared(
        &self,
        key: &str,
        now: DateTime<Utc>,
        max_age: Duration,
        list: impl Future<Output = Result<Snapshot>>,
    ) -> Result<Arc<Snapshot>> {
        let slot = self.slot(key);
        if let Some(s) = slot.fresh(now, max_age) {
            return Ok(s);
        }
        let Ok(_gate) = tokio::time::timeout(self.timeout, slot.listing.lock()).await else {
            warn!(workspace = %key, "another reconcile's job listing is taking too long");
            return slot.latest().ok_or_else(|| self.timed_out(key));
        };
        // The listing this reconcile waited for may be the one it needs.
        if let Some(s) = slot.fresh(now, max_age) {
            return Ok(s);
        }
        debug!(workspace = %key, "listing the workspace's jobs");
        let started = tokio::time::Instant::now();
        let fresh = match tokio::time::timeout(self.timeout, list).await {
            Ok(listed) => Arc::new(listed?),
            Err(_) => {
                warn!(workspace = %key, "the job listing got no complete answer in time");
                return Err(self.timed_out(key));
            }
        };
        debug!(workspace = %key, jobs = fresh.jobs.len(), elapsed = ?started.elapsed(), "listed the workspace's jobs");
        *slot.latest.lock().expect("lock") = Some(fresh.clone());
        Ok(fresh)
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("lock")
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    fn timed_out(&self, workspace: &str) -> Error {
        Error::TimedOut {
            what: format!("listing the jobs of workspace {workspace}"),
            after: self.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::pending,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use crate::Handling;

    fn snapshot(taken_at: DateTime<Utc>) -> Snapshot {
        Snapshot {
            taken_at,
            jobs: Default::default(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// A short bound, so that the tests wait little; they assert outcomes, never durations.
    fn listings() -> JobListings {
        JobListings {
            timeout: Duration::from_millis(50),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_listing_without_an_answer_ends_transiently_and_frees_its_workspace() {
        let listings = listings();
        let hung = listings
            .shared("ws", at(0), STARTING, pending())
            .await
            .unwrap_err();
        assert!(matches!(hung, Error::TimedOut { .. }), "{hung}");
        assert_eq!(hung.handling(), Handling::Retry(None));
        let next = listings
            .shared("ws", at(1), STARTING, async { Ok(snapshot(at(1))) })
            .await
            .unwrap();
        assert_eq!(next.taken_at, at(1));
    }

    #[tokio::test]
    async fn nobody_queues_behind_a_listing_in_flight_beyond_the_bound() {
        let listings = listings();
        listings
            .shared("ws-a", at(0), STARTING, async { Ok(snapshot(at(0))) })
            .await
            .unwrap();
        // Another reconcile's listing of ws-a is in flight (and does not end).
        let slot = listings.slot("ws-a");
        let _in_flight = slot.listing.lock().await;
        // A run of ws-a carries on with the previous listing instead of waiting for it...
        let previous = listings
            .shared("ws-a", at(10), STARTING, async { Ok(snapshot(at(10))) })
            .await
            .unwrap();
        assert_eq!(previous.taken_at, at(0));
        // ...a workspace without a listing yet gets a transient error...
        let slot_c = listings.slot("ws-c");
        let _in_flight_c = slot_c.listing.lock().await;
        let e = listings
            .shared("ws-c", at(10), STARTING, async { Ok(snapshot(at(10))) })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TimedOut { .. }), "{e}");
        // ...and other workspaces are not held at all.
        let other = listings
            .shared("ws-b", at(10), STARTING, async { Ok(snapshot(at(10))) })
            .await
            .unwrap();
        assert_eq!(other.taken_at, at(10));
    }

    #[tokio::test]
    async fn concurrent_reconciles_share_one_listing_and_a_fresh_one_is_reused() {
        let listings = JobListings::default();
        let calls = AtomicUsize::new(0);
        let list = |t| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(snapshot(t))
            }
        };
        let (a, b) = tokio::join!(
            listings.shared("ws", at(0), STARTING, list(at(0))),
            listings.shared("ws", at(0), STARTING, list(at(0)))
        );
        assert_eq!(a.unwrap().taken_at, b.unwrap().taken_at);
        listings
            .shared("ws", at(4), STARTING, list(at(4)))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let later = listings
            .shared("ws", at(5), STARTING, list(at(5)))
            .await
            .unwrap();
        assert_eq!(
            later.taken_at,
            at(5),
            "as old as the interval: listed again"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A running job's run accepts an older listing; a starting one's does not.
        let running = listings.shared("ws", at(20), RUNNING, list(at(20))).await;
        assert_eq!(running.unwrap().taken_at, at(5));
        let starting = listings.shared("ws", at(20), STARTING, list(at(20))).await;
        assert_eq!(starting.unwrap().taken_at, at(20));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_interval_is_short_while_a_job_starts_and_longer_while_it_runs() {
        use TrainingRunPhase::*;
        for (phase, interval) in [
            (Pending, STARTING),
            (Submitted, STARTING),
            (Queued, STARTING),
            (Running, RUNNING),
            // A finished run lists only when deleted: its cancel check is a starting one.
            (Succeeded, STARTING),
            (Failed, STARTING),
            (Canceled, STARTING),
        ] {
            assert_eq!(max_age(phase), interval, "{phase:?}");
        }
    }
}
