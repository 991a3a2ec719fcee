//! Condition handling shared by every controller.
//!
//! Conventions (kstatus-compatible, so `kubectl wait`, Flux and Argo CD read them right):
//! - `Ready` is the summary; it is `True` only when computed for the current generation.
//! - `Reconciling=True` while the operator is still working towards the spec.
//! - `Stalled=True` when it cannot make progress without a change (invalid spec, missing
//!   credentials, permanent Azure error).
//! - `lastTransitionTime` moves only when status, reason or message changes, so watchers and
//!   GitOps tools do not see churn on every reconcile.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Where a resource stands overall; [`apply_progress`] turns it into the three kstatus conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything the spec asks for is in place.
    Ready { reason: String, message: String },
    /// Work is under way (or waiting on Azure); the next reconcile continues it.
    InProgress { reason: String, message: String },
    /// No progress is possible until something changes (the spec, a Secret, Azure-side state).
    Stalled { reason: String, message: String },
}

impl Progress {
    pub fn ready(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn in_progress(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InProgress {
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn stalled(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Builds a condition for `generation`, stamped `now`.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// Inserts or replaces the condition of the same type. Keeps the old `lastTransitionTime` when
/// status, reason and message are unchanged. Returns whether anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(old) => {
            let transition =
                old.status != new.status || old.reason != new.reason || old.message != new.message;
            if transition {
                *old = new;
                true
            } else if old.observed_generation != new.observed_generation {
                old.observed_generation = new.observed_generation;
                true
            } else {
                false
            }
        }
    }
}

/// Sets `Ready`, `Reconciling` and `Stalled` from one [`Progress`]. Returns whether anything changed.
pub fn apply_progress(
    conditions: &mut Vec<Condition>,
    progress: &Progress,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let (ready, reconciling, stalled, reason, message) = match progress {
        Progress::Ready { reason, message } => (true, false, false, reason, message),
        Progress::InProgress { reason, message } => (false, true, false, reason, message),
        Progress::Stalled { reason, message } => (false, false, true, reason, message),
    };
    let mut changed = set_condition(
        conditions,
        condition(READY, ready, reason, message, generation, now),
    );
    for (type_, status) in [(RECONCILING, reconciling), (STALLED, stalled)] {
        // The abnormal-true conditions carry the reason only while they hold; when False they
        // say so plainly, so `kubectl describe` does not show a stale reason twice.
        let (r, m) = if status {
            (reason.as_str(), message.as_str())
        } else {
            (type_, "")
        };
        let r = if status {
            r.to_string()
        } else {
            format!("Not{r}")
        };
        changed |= set_condition(conditions, condition(type_, status, &r, m, generation, now));
    }
    changed
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition holds and was computed for `generation`.
pub fn is_true_for(conditions: &[Condition], type_: &str, generation: Option<i64>) -> bool {
    find(conditions, type_)
        .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn new_condition_is_added() {
        let mut c = vec![];
        assert!(set_condition(
            &mut c,
            condition(READY, false, "Creating", "vm", Some(1), t(0))
        ));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, "False");
    }

    #[test]
    fn unchanged_condition_keeps_its_transition_time() {
        let mut c = vec![condition(READY, true, "Ready", "ok", Some(1), t(0))];
        assert!(!set_condition(
            &mut c,
            condition(READY, true, "Ready", "ok", Some(1), t(60))
        ));
        assert_eq!(c[0].last_transition_time, Time(t(0)));
    }

    #[test]
    fn new_generation_updates_observed_generation_but_not_the_time() {
        let mut c = vec![condition(READY, true, "Ready", "ok", Some(1), t(0))];
        assert!(set_condition(
            &mut c,
            condition(READY, true, "Ready", "ok", Some(2), t(60))
        ));
        assert_eq!(c[0].observed_generation, Some(2));
        assert_eq!(c[0].last_transition_time, Time(t(0)));
    }

    #[test]
    fn status_reason_or_message_change_moves_the_time() {
        for new in [
            condition(READY, false, "Ready", "ok", Some(1), t(60)),
            condition(READY, true, "Other", "ok", Some(1), t(60)),
            condition(READY, true, "Ready", "different", Some(1), t(60)),
        ] {
            let mut c = vec![condition(READY, true, "Ready", "ok", Some(1), t(0))];
            assert!(set_condition(&mut c, new));
            assert_eq!(c[0].last_transition_time, Time(t(60)));
        }
    }

    #[test]
    fn other_types_are_left_alone() {
        let mut c = vec![condition("VMReady", true, "Running", "", Some(1), t(0))];
        set_condition(
            &mut c,
            condition(READY, false, "Creating", "", Some(1), t(5)),
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            find(&c, "VMReady").unwrap().last_transition_time,
            Time(t(0))
        );
    }

    fn statuses(c: &[Condition]) -> (String, String, String) {
        let s = |ty| find(c, ty).unwrap().status.clone();
        (s(READY), s(RECONCILING), s(STALLED))
    }

    #[test]
    fn progress_maps_to_exactly_one_kstatus_state() {
        let cases = [
            (
                Progress::ready("Ready", "all good"),
                ("True", "False", "False"),
            ),
            (
                Progress::in_progress("CreatingVM", "waiting"),
                ("False", "True", "False"),
            ),
            (
                Progress::stalled("SecretNotFound", "secret x"),
                ("False", "False", "True"),
            ),
        ];
        for (p, (r, rec, st)) in cases {
            let mut c = vec![];
            apply_progress(&mut c, &p, Some(3), t(0));
            assert_eq!(statuses(&c), (r.into(), rec.into(), st.into()), "{p:?}");
            assert!(c.iter().all(|c| c.observed_generation == Some(3)));
        }
    }

    #[test]
    fn stalled_reason_reaches_ready_and_stalled() {
        let mut c = vec![];
        apply_progress(
            &mut c,
            &Progress::stalled("SecretNotFound", "Secret sp"),
            Some(1),
            t(0),
        );
        assert_eq!(find(&c, READY).unwrap().reason, "SecretNotFound");
        assert_eq!(find(&c, STALLED).unwrap().reason, "SecretNotFound");
        assert_eq!(find(&c, RECONCILING).unwrap().reason, "NotReconciling");
    }

    #[test]
    fn repeating_the_same_progress_changes_nothing() {
        let mut c = vec![];
        let p = Progress::in_progress("CreatingVM", "waiting");
        assert!(apply_progress(&mut c, &p, Some(1), t(0)));
        assert!(!apply_progress(&mut c, &p, Some(1), t(30)));
    }

    #[test]
    fn ready_counts_only_for_the_current_generation() {
        let mut c = vec![];
        apply_progress(&mut c, &Progress::ready("Ready", ""), Some(1), t(0));
        assert!(is_true_for(&c, READY, Some(1)));
        assert!(!is_true_for(&c, READY, Some(2)));
        assert!(!is_true_for(&c, STALLED, Some(1)));
    }
}
