//! Conversion between core/v1 and events.k8s.io/v1 Events, which share storage (pure).
//! Stored form is core/v1.

use serde_json::Value;

/// (events.k8s.io/v1 field, core/v1 field) pairs that only differ by name.
const RENAMES: [(&str, &str); 6] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for (from, to) in pairs {
            if let Some(v) = m.remove(from) {
                m.insert(to.into(), v);
            }
        }
    }
    o
}

pub fn events_to_core(obj: &Value) -> Value {
    let mut o = rename(obj, RENAMES.into_iter());
    if let Some(m) = o.as_object_mut()
        && let Some(c) = m.remove("reportingController")
    {
        m.insert("reportingComponent".into(), c);
    }
    o
}

pub fn core_to_events(obj: &Value) -> Value {
    let mut o = rename(obj, RENAMES.into_iter().map(|(a, b)| (b, a)));
    if let Some(m) = o.as_object_mut()
        && let Some(c) = m.remove("reportingComponent")
    {
        m.insert("reportingController".into(), c);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_core() {
        let ev = json!({"regarding": {"kind": "Widget", "name": "a"}, "note": "hi", "reason": "Ready",
            "reportingController": "ctl", "deprecatedCount": 2});
        let core = events_to_core(&ev);
        assert_eq!(core["involvedObject"]["name"], "a");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["reportingComponent"], "ctl");
        assert_eq!(core["count"], 2);
        assert_eq!(core_to_events(&core), ev);
    }
}
