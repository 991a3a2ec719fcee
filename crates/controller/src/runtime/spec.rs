//! Reading the parts of a spec every kind shares: durations, the reconcile-policy annotation
//! and the deletion policy.

use std::time::Duration;

use edgetrain_api::{DeletionPolicy, ReconcilePolicy};
use kube::Resource;

use crate::{Error, Result};

/// Go-style duration (`90s`, `5m`, `1h30m`, `2h`), parsed by kube's `metav1.Duration`
/// implementation so every unit the CRD's `format: duration` admits is understood.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::InvalidSpec(format!("{s:?} is not a duration like 30m or 1h30m"));
    // Go rejects the empty string; kube's parser reads it as zero.
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    s.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|_| bad())
}

/// The `edgetrain.dev/reconcile-policy` annotation; a bad value is an invalid spec.
pub fn reconcile_policy<K: Resource>(obj: &K) -> Result<ReconcilePolicy> {
    ReconcilePolicy::from_annotations(obj.meta().annotations.as_ref())
        .map_err(|e| Error::InvalidSpec(e.to_string()))
}

/// `spec.deletionPolicy`, or the controller's default when unset.
pub fn deletion_policy(spec: Option<DeletionPolicy>, default: DeletionPolicy) -> DeletionPolicy {
    spec.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        // Units the CRD pattern admits must parse too.
        assert_eq!(
            parse_duration("1500us").unwrap(),
            Duration::from_micros(1500)
        );
        for bad in ["", "5", "m", "5d", "1h5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_policy_annotation_is_an_invalid_spec() {
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        assert_eq!(reconcile_policy(&cm).unwrap(), ReconcilePolicy::Manage);
        cm.metadata.annotations = Some(
            [(
                edgetrain_api::common::RECONCILE_POLICY_ANNOTATION.to_string(),
                "sometimes".to_string(),
            )]
            .into(),
        );
        assert!(matches!(
            reconcile_policy(&cm).unwrap_err(),
            Error::InvalidSpec(_)
        ));
        assert_eq!(
            deletion_policy(None, DeletionPolicy::Delete),
            DeletionPolicy::Delete
        );
    }
}
