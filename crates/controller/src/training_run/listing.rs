//! One job listing per workspace, shared by every TrainingRun in it: a reconcile reads the
//! latest listing and lists again only when it is older than its run can accept
//! ([`max_age`]: short while a job starts, longer while it runs); concurrent reconciles of one
//! workspace wait for the same listing (one list call per workspace per interval, never one
//! GET per job).
//!
//! The listing interval also keeps the workspace's Azure ML reads under a budget of pages per
//! minute ([`interval`]): a listing of many jobs takes many pages, and ARM throttles reads per
//! subscription, a budget the operator shares with everything else in it. So with many jobs
//! the listing (and the status it feeds) comes less often, and the reads per minute stay
//! bounded whatever the job count.
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

/// Listing pages per minute per workspace unless configured otherwise
/// (`--azure-ml-list-pages-per-minute`): a small share of a subscription's ARM read budget
/// (12,000 an hour, 200 a minute, in public Azure), enough for 10 listings a minute of up to
/// three pages (60 jobs at Azure ML's page size).
pub const DEFAULT_PAGES_PER_MINUTE: u32 = 30;

/// How old a listing a run may act on (`base`: [`max_age`] of its phase), given that the last
/// listing took `last_pages` pages and the workspace may be read `pages_per_minute` pages a
/// minute: never sooner than the run's pace, and spaced so that listings of that size stay
/// within the budget (pure).
pub fn interval(base: Duration, last_pages: u32, pages_per_minute: u32) -> Duration {
    let per_page = Duration::from_secs(60) / pages_per_minute.max(1);
    base.max(per_page * last_pages)
}

/// The longest a listing (all its pages) may take, and the longest a reconcile waits for
/// another reconcile's listing.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(20);

/// A listing and the number of pages it took.
struct Listed {
    snapshot: Arc<Snapshot>,
    pages: u32,
}

/// One workspace: its latest listing, and the single-flight gate of the next one.
#[derive(Default)]
struct Slot {
    latest: Mutex<Option<Listed>>,
    listing: tokio::sync::Mutex<()>,
}

impl Slot {
    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest
            .lock()
            .expect("lock")
            .as_ref()
            .map(|l| l.snapshot.clone())
    }

    fn last_pages(&self) -> u32 {
        self.latest
            .lock()
            .expect("lock")
            .as_ref()
            .map_or(0, |l| l.pages)
    }

    /// The latest listing when it is younger at `now` than the [`interval`] for `base`.
    fn fresh(
        &self,
        now: DateTime<Utc>,
        base: Duration,
        pages_per_minute: u32,
    ) -> Option<Arc<Snapshot>> {
        let max_age = interval(base, self.last_pages(), pages_per_minute);
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        self.latest()
            .filter(|s| now - s.taken_at < max_age && s.taken_at <= now)
    }
}

/// The latest listing of each workspace (by workspace id).
pub struct JobListings {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// The read budget of each workspace's listings (see [`interval`]).
    pages_per_minute: u32,
    /// [`LIST_TIMEOUT`]; shorter in tests.
    timeout: Duration,
}

impl Default for JobListings {
    fn default() -> Self {
        Self::new(DEFAULT_PAGES_PER_MINUTE)
    }
}

fn key_of(workspace: &Workspace) -> Result<String> {
    Ok(workspace
        .id()
        .map_err(|e| Error::azure("workspace id", e))?
        .to_ascii_lowercase())
}

impl JobListings {
    /// Listings that read each workspace at most `pages_per_minute` pages a minute (at least 1).
    pub fn new(pages_per_minute: u32) -> Self {
        Self {
            slots: Mutex::default(),
            pages_per_minute: pages_per_minute.max(1),
            timeout: LIST_TIMEOUT,
        }
    }

    /// The workspace's listing, younger at `now` than the [`interval`] for `base` (or, when
    /// another reconcile's listing of it outlasts [`LIST_TIMEOUT`], the previous one).
    pub async fn get(
        &self,
        ml: &dyn MlApi,
        workspace: &Workspace,
        now: DateTime<Utc>,
        base: Duration,
    ) -> Result<Arc<Snapshot>> {
        let key = key_of(workspace)?;
        self.shared(&key, now, base, observe::snapshot(ml, workspace, now))
            .await
    }

    /// When a run of `workspace` whose pace is `base` should look again: when a newer listing
    /// will be taken for it.
    pub fn interval(&self, workspace: &Workspace, base: Duration) -> Duration {
        let pages = key_of(workspace).map_or(0, |k| self.slot(&k).last_pages());
        interval(base, pages, self.pages_per_minute)
    }

    /// Single flight for workspace `key`: at most one `list` runs at a time, and nobody waits
    /// for it (or runs it) longer than [`LIST_TIMEOUT`]. Only the time-bounded wait for the
    /// gate and the listing itself happen under it; nothing else awaits while it is held.
    async fn shared(
        &self,
        key: &str,
        now: DateTime<Utc>,
        base: Duration,
        list: impl Future<Output = Result<(Snapshot, u32)>>,
    ) -> Result<Arc<Snapshot>> {
        let slot = self.slot(key);
        let budget = self.pages_per_minute;
        if let Some(s) = slot.fresh(now, base, budget) {
            return Ok(s);
        }
        let Ok(_gate) = tokio::time::timeout(self.timeout, slot.listing.lock()).await else {
            warn!(workspace = %key, "another reconcile's job listing is taking too long");
            return slot.latest().ok_or_else(|| self.timed_out(key));
        };
        // The listing this reconcile waited for may be the one it needs.
        if let Some(s) = slot.fresh(now, base, budget) {
            return Ok(s);
        }
        debug!(workspace = %key, "listing the workspace's jobs");
        let started = tokio::time::Instant::now();
        let (fresh, pages) = match tokio::time::timeout(self.timeout, list).await {
            Ok(listed) => {
                let (snapshot, pages) = listed?;
                (Arc::new(snapshot), pages)
            }
            Err(_) => {
                warn!(workspace = %key, "the job listing got no complete answer in time");
                return Err(self.timed_out(key));
            }
        };
        debug!(workspace = %key, jobs = fresh.jobs.len(), pages, elapsed = ?started.elapsed(), "listed the workspace's jobs");
        *slot.latest.lock().expect("lock") = Some(Listed {
            snapshot: fresh.clone(),
            pages,
        });
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

    /// A listing of one page.
    fn snapshot(taken_at: DateTime<Utc>) -> (Snapshot, u32) {
        (
            Snapshot {
                taken_at,
                jobs: Default::default(),
            },
            1,
        )
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

    #[test]
    fn the_interval_keeps_pages_per_minute_within_the_budget_and_never_below_the_pace() {
        let s = Duration::from_secs;
        // Small listings: the run's own pace.
        assert_eq!(interval(STARTING, 1, 30), STARTING);
        assert_eq!(interval(RUNNING, 5, 30), RUNNING);
        // 50 pages at 30 a minute: one listing every 100 s, whatever the run's pace.
        assert_eq!(interval(STARTING, 50, 30), s(100));
        assert_eq!(interval(RUNNING, 50, 30), s(100));
        // The pages a minute those intervals give stay within the budget.
        for pages in [1, 3, 10, 20, 50, 500] {
            for budget in [1, 7, 30, 600] {
                let every = interval(STARTING, pages, budget).as_secs_f64();
                let per_minute = f64::from(pages) * 60.0 / every;
                assert!(
                    per_minute <= f64::from(budget) + 1e-9,
                    "{pages} pages, budget {budget}: {per_minute}/min"
                );
            }
        }
        // No listing yet, or a zero budget (refused by the flag), still gives a finite pace.
        assert_eq!(interval(STARTING, 0, 30), STARTING);
        assert_eq!(interval(STARTING, 2, 0), s(120));
    }

    #[tokio::test]
    async fn a_listing_of_many_pages_is_reused_for_longer() {
        let listings = JobListings::new(30);
        let many = |t| async move {
            let (snapshot, _) = snapshot(t);
            Ok((snapshot, 50))
        };
        let first = listings.shared("ws", at(0), STARTING, many(at(0))).await;
        assert_eq!(first.unwrap().taken_at, at(0));
        // 50 pages at 30 a minute: a starting run takes that listing for 100 s.
        let reused = listings.shared("ws", at(99), STARTING, many(at(99))).await;
        assert_eq!(reused.unwrap().taken_at, at(0));
        let next = listings
            .shared("ws", at(100), STARTING, many(at(100)))
            .await;
        assert_eq!(next.unwrap().taken_at, at(100));
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
