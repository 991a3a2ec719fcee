//! One job listing per workspace, shared by every TrainingRun in it: a reconcile reads the
//! latest listing and lists again only when it is older than [`MAX_AGE`]; concurrent
//! reconciles of one workspace wait for the same listing (one list call, never one GET per
//! job).
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
use edgetrain_azure::ml::{MlApi, Workspace};
use tracing::{debug, warn};

use super::{decide::Snapshot, observe};
use crate::{Error, Result};

/// How old a listing may be before a reconcile lists again.
pub const MAX_AGE: Duration = Duration::from_secs(5);

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

    /// The latest listing when it is at most [`MAX_AGE`] old at `now`.
    fn fresh(&self, now: DateTime<Utc>) -> Option<Arc<Snapshot>> {
        let max_age = chrono::Duration::from_std(MAX_AGE).expect("constant fits");
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
    /// The workspace's listing, at most [`MAX_AGE`] old at `now` (or, when another
    /// reconcile's listing of it outlasts [`LIST_TIMEOUT`], the previous one).
    pub async fn get(
        &self,
        ml: &dyn MlApi,
        workspace: &Workspace,
        now: DateTime<Utc>,
    ) -> Result<Arc<Snapshot>> {
        let key = workspace
            .id()
            .map_err(|e| Error::azure("workspace id", e))?
            .to_ascii_lowercase();
        self.shared(&key, now, observe::snapshot(ml, workspace, now))
            .await
    }

    /// Single flight for workspace `key`: at most one `list` runs at a time, and nobody waits
    /// for it (or runs it) longer than [`LIST_TIMEOUT`]. Only the time-bounded wait for the
    /// gate and the listing itself happen under it; nothing else awaits while it is held.
    async fn shared(
        &self,
        key: &str,
        now: DateTime<Utc>,
        list: impl Future<Output = Result<Snapshot>>,
    ) -> Result<Arc<Snapshot>> {
        let slot = self.slot(key);
        if let Some(s) = slot.fresh(now) {
            return Ok(s);
        }
        let Ok(_gate) = tokio::time::timeout(self.timeout, slot.listing.lock()).await else {
            warn!(workspace = %key, "another reconcile's job listing is taking too long");
            return slot.latest().ok_or_else(|| self.timed_out(key));
        };
        // The listing this reconcile waited for may be the one it needs.
        if let Some(s) = slot.fresh(now) {
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
        let hung = listings.shared("ws", at(0), pending()).await.unwrap_err();
        assert!(matches!(hung, Error::TimedOut { .. }), "{hung}");
        assert_eq!(hung.handling(), Handling::Retry(None));
        let next = listings
            .shared("ws", at(1), async { Ok(snapshot(at(1))) })
            .await
            .unwrap();
        assert_eq!(next.taken_at, at(1));
    }

    #[tokio::test]
    async fn nobody_queues_behind_a_listing_in_flight_beyond_the_bound() {
        let listings = listings();
        listings
            .shared("ws-a", at(0), async { Ok(snapshot(at(0))) })
            .await
            .unwrap();
        // Another reconcile's listing of ws-a is in flight (and does not end).
        let slot = listings.slot("ws-a");
        let _in_flight = slot.listing.lock().await;
        // A run of ws-a carries on with the previous listing instead of waiting for it...
        let previous = listings
            .shared("ws-a", at(10), async { Ok(snapshot(at(10))) })
            .await
            .unwrap();
        assert_eq!(previous.taken_at, at(0));
        // ...a workspace without a listing yet gets a transient error...
        let slot_c = listings.slot("ws-c");
        let _in_flight_c = slot_c.listing.lock().await;
        let e = listings
            .shared("ws-c", at(10), async { Ok(snapshot(at(10))) })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TimedOut { .. }), "{e}");
        // ...and other workspaces are not held at all.
        let other = listings
            .shared("ws-b", at(10), async { Ok(snapshot(at(10))) })
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
            listings.shared("ws", at(0), list(at(0))),
            listings.shared("ws", at(0), list(at(0)))
        );
        assert_eq!(a.unwrap().taken_at, b.unwrap().taken_at);
        listings.shared("ws", at(4), list(at(4))).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let later = listings.shared("ws", at(5), list(at(5))).await.unwrap();
        assert_eq!(later.taken_at, at(5), "older than MAX_AGE: listed again");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
