//! Azure ML code and environment versions this controller knows exist, per workspace, so that
//! a burst of runs with the same code creates each version once: the first run of a content
//! uploads (or finds) it while the others wait for that answer instead of racing to upload the
//! same files, and later runs skip the existence reads. Code versions are content-addressed
//! and environment versions named after their definition, so a known id stays right unless
//! someone deletes the version in Azure; a failed job submission forgets the ids it used.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use tokio::sync::OnceCell;

use crate::Result;

/// Versions remembered at most; past it the known ones are forgotten (and found again with one
/// read each). Distinct code contents are few; this only bounds a pathological churn.
const MAX_KNOWN: usize = 4096;

/// Asset ids by `workspace id/kind/name/version`, each created by a single flight.
#[derive(Default)]
pub struct KnownAssets {
    cells: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
}

impl KnownAssets {
    /// The id under `key`: known, or `create`d by one caller while concurrent callers of the
    /// same key wait for it. A failed `create` is not remembered (the next caller tries).
    pub async fn get_or_create<F, Fut>(&self, key: String, create: F) -> Result<String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        let cell = {
            let mut cells = self.cells.lock().expect("lock");
            if cells.len() >= MAX_KNOWN && !cells.contains_key(&key) {
                cells.retain(|_, c| !c.initialized());
            }
            cells.entry(key).or_default().clone()
        };
        cell.get_or_try_init(create).await.cloned()
    }

    /// Forgets every key whose id is one of `ids` (a submission that used them failed: they
    /// may be gone in Azure).
    pub fn forget(&self, ids: &[&str]) {
        self.cells
            .lock()
            .expect("lock")
            .retain(|_, c| c.get().is_none_or(|id| !ids.contains(&id.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::Error;

    #[tokio::test]
    async fn concurrent_callers_of_one_key_create_it_once_and_later_ones_reuse_it() {
        let known = KnownAssets::default();
        let created = AtomicUsize::new(0);
        let create = || async {
            created.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok("code-id".to_string())
        };
        let (a, b, c) = tokio::join!(
            known.get_or_create("ws/code/x/1".into(), create),
            known.get_or_create("ws/code/x/1".into(), create),
            known.get_or_create("ws/code/x/1".into(), create),
        );
        for id in [a, b, c] {
            assert_eq!(id.unwrap(), "code-id");
        }
        assert_eq!(created.load(Ordering::SeqCst), 1);
        // Another key is its own flight.
        let other = known
            .get_or_create("ws/code/y/1".into(), || async { Ok("other".to_string()) })
            .await;
        assert_eq!(other.unwrap(), "other");
        assert_eq!(created.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failure_is_not_remembered_and_a_forgotten_id_is_created_again() {
        let known = KnownAssets::default();
        let failed = known
            .get_or_create("k".into(), || async {
                Err(Error::InvalidSpec("upload failed".into()))
            })
            .await;
        assert!(failed.is_err());
        let created = AtomicUsize::new(0);
        let create = || async {
            created.fetch_add(1, Ordering::SeqCst);
            Ok("id".to_string())
        };
        assert_eq!(known.get_or_create("k".into(), create).await.unwrap(), "id");
        known.get_or_create("k".into(), create).await.unwrap();
        assert_eq!(created.load(Ordering::SeqCst), 1);
        known.forget(&["unrelated"]);
        known.get_or_create("k".into(), create).await.unwrap();
        assert_eq!(created.load(Ordering::SeqCst), 1);
        known.forget(&["id"]);
        known.get_or_create("k".into(), create).await.unwrap();
        assert_eq!(created.load(Ordering::SeqCst), 2);
    }
}
