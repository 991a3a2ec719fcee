//! Kubernetes Events about one object. Failing to publish is logged, never fatal: an event is
//! a courtesy, the condition is the record.

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};

/// Publishes an event with action `Reconcile`.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}
