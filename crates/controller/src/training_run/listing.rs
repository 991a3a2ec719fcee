//! One job listing per workspace, shared by every TrainingRun in it: a reconcile reads the
//! latest listing and lists again only when it is older than [`MAX_AGE`]; concurrent
//! reconciles of one workspace wait for the same listing (one list call, never one GET per
//! job).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use edgetrain_azure::ml::{MlApi, Workspace};

use super::{decide::Snapshot, observe};
use crate::Result;

/// How old a listing may be before a reconcile lists again.
pub const MAX_AGE: Duration = Duration::from_secs(5);

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Snapshot>>>>;

/// The latest listing of each workspace (by workspace id).
#[derive(Default)]
pub struct JobListings {
    slots: Mutex<HashMap<String, Slot>>,
}

impl JobListings {
    /// The workspace's listing, at most [`MAX_AGE`] old at `now`.
    pub async fn get(
        &self,
        ml: &dyn MlApi,
        workspace: &Workspace,
        now: DateTime<Utc>,
    ) -> Result<Arc<Snapshot>> {
        let key = workspace
            .id()
            .map_err(|e| crate::Error::azure("workspace id", e))?
            .to_ascii_lowercase();
        let slot = self
            .slots
            .lock()
            .expect("lock")
            .entry(key)
            .or_default()
            .clone();
        let mut latest = slot.lock().await;
        let max_age = chrono::Duration::from_std(MAX_AGE).expect("constant fits");
        if let Some(s) = latest.as_ref()
            && now - s.taken_at < max_age
            && s.taken_at <= now
        {
            return Ok(s.clone());
        }
        let fresh = Arc::new(observe::snapshot(ml, workspace, now).await?);
        *latest = Some(fresh.clone());
        Ok(fresh)
    }
}
