//! Per-object failure bookkeeping: consecutive failures for backoff, and the stall gate that
//! keeps a Stalled object from touching Azure until something it depends on changes.

use std::{
    borrow::Cow,
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
    time::Duration,
};

use edgetrain_api::conditions::{STALLED, is_true_for};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use super::status::ObjectStatus;

/// Identifies one object across kinds (two kinds may hold objects with the same name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// Borrowed from the type: one key per cached object, so no allocation per key.
    pub kind: Cow<'static, str>,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Self {
        Self {
            kind: K::kind(&()),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        }
    }
}

/// Consecutive failures per object.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<ObjectKey, u32>>);

impl Failures {
    /// Counts one more failure; returns the count (1 for the first).
    pub fn bump(&self, key: &ObjectKey) -> u32 {
        let mut f = self.0.lock().expect("lock");
        let n = f.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    }

    pub fn reset(&self, key: &ObjectKey) {
        self.0.lock().expect("lock").remove(key);
    }
}

/// Exponential backoff with full jitter, for transient errors without a Retry-After.
/// `failures` counts consecutive failures of one object (1 for the first).
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let policy = edgetrain_azure::arm::RetryPolicy {
        base_delay: base,
        max_delay: cap,
        ..Default::default()
    };
    policy.jittered_backoff(failures, fastrand::f64())
}

/// The requeue delay for a retryable error: the server's Retry-After if it gave one (never
/// earlier), else the backoff.
pub fn retry_delay(retry_after: Option<Duration>, failures: u32) -> Duration {
    match retry_after {
        Some(ra) => ra.max(Duration::from_millis(100)),
        None => backoff(failures, Duration::from_secs(1), Duration::from_secs(300)),
    }
}

/// What a Stalled object waits for: its spec and annotations, and the versions of the Secrets
/// it references (absent ones included, so creating a missing Secret counts as a change). A
/// stable digest (sha256), so that it can be recorded in status and compared after a restart.
pub fn inputs_fingerprint<K: Resource>(
    obj: &K,
    secret_versions: &[(String, Option<String>)],
) -> String {
    let inputs = serde_json::json!([
        obj.meta().generation,
        obj.meta().annotations,
        secret_versions,
    ]);
    format!("sha256:{:x}", Sha256::digest(inputs.to_string().as_bytes()))
}

/// True when `status` records a stall on exactly these inputs: `Stalled` for the object's
/// generation and `stalledInputs` equal to `inputs`. This is the gate that survives a restart.
pub fn stalled_in_status<S: ObjectStatus>(
    status: Option<&S>,
    generation: Option<i64>,
    inputs: &str,
) -> bool {
    status.is_some_and(|s| {
        s.stalled_inputs() == Some(inputs) && is_true_for(s.conditions(), STALLED, generation)
    })
}

/// Objects whose last attempt stalled in this process, with the fingerprint of the inputs it
/// stalled on (in memory: it also holds when the status write recording the stall failed).
#[derive(Default)]
pub struct StallGate(Mutex<HashMap<ObjectKey, String>>);

impl StallGate {
    pub fn stall(&self, key: &ObjectKey, fingerprint: &str) {
        self.0
            .lock()
            .expect("lock")
            .insert(key.clone(), fingerprint.to_owned());
    }

    /// True while the object is stalled on exactly these inputs.
    pub fn holds(&self, key: &ObjectKey, fingerprint: &str) -> bool {
        self.0.lock().expect("lock").get(key).map(String::as_str) == Some(fingerprint)
    }

    pub fn clear(&self, key: &ObjectKey) {
        self.0.lock().expect("lock").remove(key);
    }

    /// How many objects of `kind` are stalled (the `stalled_resources` gauge).
    pub fn count(&self, kind: &str) -> i64 {
        let n = self
            .0
            .lock()
            .expect("lock")
            .keys()
            .filter(|k| k.kind == kind)
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}

/// The newest `resourceVersion` this controller knows of each object (its own status writes,
/// fresh reads), so that a reconcile never acts on an older copy from a lagging watch cache.
///
/// One entry per object ever written, so keys and versions are kept as 64-bit hashes (16
/// bytes an entry instead of four strings), keyed per process so that names cannot be chosen
/// to collide. A key collision costs one extra read; only colliding versions as well (1 in
/// 2^64) could pass an older copy as the newest.
#[derive(Default)]
pub struct KnownVersions {
    hasher: RandomState,
    versions: Mutex<HashMap<u64, u64>>,
}

impl KnownVersions {
    pub fn record(&self, key: &ObjectKey, resource_version: Option<&str>) {
        if let Some(rv) = resource_version {
            let (k, v) = (self.hasher.hash_one(key), self.hasher.hash_one(rv));
            self.versions.lock().expect("lock").insert(k, v);
        }
    }

    /// True when `resource_version` is not the newest one known (the cache is behind, or the
    /// object changed since: either way, read it afresh).
    pub fn is_stale(&self, key: &ObjectKey, resource_version: Option<&str>) -> bool {
        let seen = resource_version.map(|rv| self.hasher.hash_one(rv));
        self.versions
            .lock()
            .expect("lock")
            .get(&self.hasher.hash_one(key))
            .is_some_and(|known| Some(*known) != seen)
    }

    pub fn forget(&self, key: &ObjectKey) {
        let k = self.hasher.hash_one(key);
        self.versions.lock().expect("lock").remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    fn meta<K: Resource<DynamicType = ()> + Default>(name: &str, generation: i64) -> K {
        let mut k = K::default();
        k.meta_mut().name = Some(name.into());
        k.meta_mut().namespace = Some("ns".into());
        k.meta_mut().generation = Some(generation);
        k
    }

    #[test]
    fn keys_differ_by_kind() {
        let a = ObjectKey::of(&meta::<ConfigMap>("x", 1));
        let b = ObjectKey::of(&meta::<Secret>("x", 1));
        assert_ne!(a, b);
        let f = Failures::default();
        assert_eq!(f.bump(&a), 1);
        assert_eq!(f.bump(&a), 2);
        assert_eq!(f.bump(&b), 1, "another kind's object counts separately");
        f.reset(&a);
        assert_eq!(f.bump(&a), 1);
    }

    #[test]
    fn the_gate_opens_on_a_spec_or_secret_change() {
        let obj = meta::<ConfigMap>("x", 1);
        let key = ObjectKey::of(&obj);
        let secrets = vec![("sp".to_string(), Some("10".to_string()))];
        let gate = StallGate::default();
        gate.stall(&key, &inputs_fingerprint(&obj, &secrets));
        assert!(gate.holds(&key, &inputs_fingerprint(&obj, &secrets)));
        let rotated = vec![("sp".to_string(), Some("11".to_string()))];
        assert!(!gate.holds(&key, &inputs_fingerprint(&obj, &rotated)));
        let deleted = vec![("sp".to_string(), None)];
        assert!(!gate.holds(&key, &inputs_fingerprint(&obj, &deleted)));
        let edited = meta::<ConfigMap>("x", 2);
        assert!(!gate.holds(&key, &inputs_fingerprint(&edited, &secrets)));
        let mut annotated = meta::<ConfigMap>("x", 1);
        annotated
            .annotations_mut()
            .insert("edgetrain.dev/retry".into(), "1".into());
        assert!(!gate.holds(&key, &inputs_fingerprint(&annotated, &secrets)));
        assert_eq!(gate.count(&key.kind), 1);
        assert_eq!(gate.count("Secret"), 0, "counted per kind");
        gate.clear(&key);
        assert!(!gate.holds(&key, &inputs_fingerprint(&obj, &secrets)));
        assert_eq!(gate.count(&key.kind), 0);
    }

    #[test]
    fn a_stall_recorded_in_status_holds_only_for_its_generation_and_inputs() {
        use edgetrain_api::{EdgeComputeTargetStatus, conditions::Progress};

        let stalled = |generation: i64, inputs: &str| {
            let mut s = EdgeComputeTargetStatus::default();
            super::super::status::stamp_progress(
                &mut s,
                &Progress::stalled("NotOwned", "tags name another target"),
                Some(generation),
            );
            s.stalled_inputs = Some(inputs.into());
            s
        };
        let mut reconciling = stalled(3, "x");
        super::super::status::stamp_progress(
            &mut reconciling,
            &Progress::in_progress("Provisioning", "creating"),
            Some(3),
        );
        let cases: [(&str, Option<EdgeComputeTargetStatus>, i64, &str, bool); 6] = [
            (
                "recorded stall, same inputs",
                Some(stalled(3, "x")),
                3,
                "x",
                true,
            ),
            (
                "inputs changed (Secret, annotation)",
                Some(stalled(3, "x")),
                3,
                "y",
                false,
            ),
            ("spec changed since", Some(stalled(3, "x")), 4, "x", false),
            ("no longer Stalled", Some(reconciling), 3, "x", false),
            (
                "never stalled",
                Some(EdgeComputeTargetStatus::default()),
                3,
                "x",
                false,
            ),
            ("no status", None, 3, "x", false),
        ];
        for (case, status, generation, inputs, holds) in cases {
            assert_eq!(
                stalled_in_status(status.as_ref(), Some(generation), inputs),
                holds,
                "{case}"
            );
        }
    }

    #[test]
    fn a_copy_older_than_our_last_write_is_stale() {
        let key = ObjectKey::of(&meta::<ConfigMap>("x", 1));
        let known = KnownVersions::default();
        assert!(!known.is_stale(&key, Some("5")), "nothing known yet");
        known.record(&key, Some("7"));
        assert!(known.is_stale(&key, Some("5")));
        assert!(!known.is_stale(&key, Some("7")));
        known.forget(&key);
        assert!(!known.is_stale(&key, Some("5")));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(10);
        for _ in 0..50 {
            let d1 = backoff(1, Duration::from_secs(1), cap);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d10 = backoff(10, Duration::from_secs(1), cap);
            assert!(d10 >= Duration::from_secs(5) && d10 <= cap, "{d10:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        assert_eq!(
            retry_delay(Some(Duration::from_secs(7)), 1),
            Duration::from_secs(7)
        );
        assert!(retry_delay(None, 1) <= Duration::from_secs(1));
    }
}
