//! JSON merge patch, JSON patch and a simplified strategic merge patch (pure).

use serde_json::{Map, Value};

/// How a list is merged: replaced whole, merged by key fields, or as a set of scalars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Map(Vec<String>),
    Set,
}

/// The list semantics of field `name` with (optional) list schema `schema`:
/// the CRD's `x-kubernetes-list-type`, else what the built-in Go types declare
/// for the few lists built-ins carry.
pub fn list_type(schema: Option<&Value>, name: &str) -> ListType {
    if let Some(s) = schema {
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys = s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                return ListType::Map(keys);
            }
            Some("set") => return ListType::Set,
            Some(_) => return ListType::Atomic,
            None => {}
        }
    }
    match name {
        "finalizers" => ListType::Set,
        "ownerReferences" => ListType::Map(vec!["uid".into()]),
        "conditions" => ListType::Map(vec!["type".into()]),
        "containers" | "initContainers" | "env" | "volumes" | "volumeMounts" | "ports" => {
            ListType::Map(vec!["name".into()])
        }
        _ => ListType::Atomic,
    }
}

pub fn json_merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 patch. Like the real server (evanphx/json-patch), a `test` for `null` passes
/// when the path is missing: kube-rs' finalizer helper relies on that.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let p: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    let mut work = target.clone();
    for op in p.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && work.pointer(t.path.as_str()).is_none_or(Value::is_null)
        {
            continue;
        }
        json_patch::patch(&mut work, &[op])
            .map_err(|e| format!("the JSON patch cannot be applied: {e}"))?;
    }
    *target = work;
    Ok(())
}

fn same_key(a: &Value, b: &Value, keys: &[String]) -> bool {
    !keys.is_empty() && keys.iter().all(|k| a.get(k) == b.get(k))
}

/// Strategic merge patch as kubectl sends it: merge-key lists, `$patch`,
/// `$retainKeys`, `$deleteFromPrimitiveList/` and `$setElementOrder/` (ignored: order kept).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    match pmap.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = pmap.clone();
            p.remove("$patch");
            *target = Value::Object(p);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    if let Some(retain) = pmap.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in pmap {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(del)) = (t.get_mut(field), pv.as_array()) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => strategic_merge(tv, pv),
            (Some(Value::Array(items)), Value::Array(patch_items)) => {
                merge_list(items, patch_items, &list_type(None, k))
            }
            _ => {
                let mut v = Value::Null;
                strategic_merge_fresh(&mut v, pv);
                t.insert(k.clone(), v);
            }
        }
    }
}

/// A value inserted where nothing was: directives still have to be stripped.
fn strategic_merge_fresh(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(_) => strategic_merge(target, patch),
        Value::Array(items) => {
            *target = Value::Array(
                items
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .map(|i| {
                        let mut v = Value::Null;
                        strategic_merge_fresh(&mut v, i);
                        v
                    })
                    .collect(),
            )
        }
        other => *target = other.clone(),
    }
}

fn merge_list(items: &mut Vec<Value>, patch_items: &[Value], lt: &ListType) {
    match lt {
        ListType::Atomic => {
            *items = patch_items.to_vec();
        }
        ListType::Set => {
            for p in patch_items {
                if !items.contains(p) {
                    items.push(p.clone());
                }
            }
        }
        ListType::Map(keys) => {
            if patch_items
                .iter()
                .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                *items = patch_items
                    .iter()
                    .filter(|p| p.get("$patch").is_none())
                    .cloned()
                    .collect();
                return;
            }
            for p in patch_items {
                let pos = items.iter().position(|i| same_key(i, p, keys));
                let delete = p.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        items.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_merge(&mut items[i], p),
                    (None, false) => {
                        let mut v = Value::Null;
                        strategic_merge_fresh(&mut v, p);
                        items.push(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_handles_kubectl_directives() {
        let mut t = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"],
            "ownerReferences": [{"uid": "u1", "name": "o"}]}, "data": {"k": "v"}});
        let p = json!({"metadata": {"labels": {"a": null, "c": "3"}, "finalizers": ["y"],
            "$setElementOrder/finalizers": ["x", "y"],
            "ownerReferences": [{"uid": "u1", "$patch": "delete"}]}, "data": {"k2": "v2"}});
        strategic_merge(&mut t, &p);
        assert_eq!(t["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(t["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(t["metadata"]["ownerReferences"], json!([]));
        assert_eq!(t["data"], json!({"k": "v", "k2": "v2"}));
        let p = json!({"$deleteFromPrimitiveList/finalizers": ["x"]});
        strategic_merge(&mut t["metadata"], &p);
        assert_eq!(t["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn json_patch_reports_failures() {
        let mut t = json!({"a": 1});
        json_patch(
            &mut t,
            &json!([{"op": "replace", "path": "/a", "value": 2}]),
        )
        .unwrap();
        assert_eq!(t["a"], 2);
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/zz"}])).is_err());
        assert!(json_patch(&mut t, &json!({"op": "x"})).is_err());
        let add = json!([{"op": "test", "path": "/f", "value": null}, {"op": "add", "path": "/f", "value": ["x"]}]);
        json_patch(&mut t, &add).unwrap();
        assert_eq!(t["f"], json!(["x"]));
        assert!(
            json_patch(&mut t, &add).is_err(),
            "test for null fails once the path holds a value"
        );
    }

    #[test]
    fn list_type_prefers_schema() {
        let s = json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]});
        assert_eq!(
            list_type(Some(&s), "conditions"),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(list_type(None, "args"), ListType::Atomic);
    }
}
