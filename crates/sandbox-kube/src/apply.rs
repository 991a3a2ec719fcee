//! Server-side apply with a simplified field-ownership model (pure).
//!
//! Each manager owns a set of leaf paths (fieldsV1 keys: `f:name`, `k:{..}`, `v:..`).
//! Applying: fields the manager owned before and no longer sends are removed (unless
//! another manager owns them); a field another manager owns with a different value is a
//! conflict unless `force` (which takes it over); one sent with the same value becomes
//! shared; then the configuration is merged into the live object. Numbers compare by value.
//! Non-apply writes record an `Update` entry owning the leaves they changed.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::patch::{ListType, list_type};

pub type FieldPath = Vec<String>;

fn sub_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// JSON equality with numbers compared by value: `30` and `30.0` are the same number, as
/// they are to the real server (its decoder does not keep the spelling).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(i), Some(j), ..) => i == j,
                (.., Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn same_opt(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// A number spelled the way the real server writes it (integral values without `.0`), so
/// fieldsV1 keys (`k:`/`v:`) do not depend on how a client spelled a number.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_none() => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map_or_else(|| v.clone(), |f| Value::from(f as i64)),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        _ => v.clone(),
    }
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), canonical(v));
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Leaf paths set by `value` (what a manager claims when it sends `value`).
pub fn leaves(value: &Value, schema: Option<&Value>) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    walk(value, schema, "", &mut Vec::new(), &mut out);
    out
}

fn walk(
    value: &Value,
    schema: Option<&Value>,
    name: &str,
    prefix: &mut FieldPath,
    out: &mut BTreeSet<FieldPath>,
) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                prefix.push(format!("f:{k}"));
                walk(v, sub_schema(schema, k), k, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let item_schema = schema.and_then(|s| s.get("items"));
            match list_type(schema, name) {
                ListType::Map(keys) if !keys.is_empty() => {
                    for it in items {
                        prefix.push(item_key(it, &keys));
                        match it {
                            Value::Object(m) if m.len() > keys.len() => {
                                walk(it, item_schema, "", prefix, out)
                            }
                            _ => {
                                out.insert(prefix.clone());
                            }
                        }
                        prefix.pop();
                    }
                }
                ListType::Set => {
                    for it in items {
                        prefix.push(format!("v:{}", canonical(it)));
                        out.insert(prefix.clone());
                        prefix.pop();
                    }
                }
                _ => {
                    out.insert(prefix.clone());
                }
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn step<'a>(v: &'a Value, seg: &str) -> Option<&'a Value> {
    if let Some(f) = seg.strip_prefix("f:") {
        return v.get(f);
    }
    let items = v.as_array()?;
    if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return items.iter().find(|i| {
            key.iter()
                .all(|(kk, kv)| i.get(kk).is_some_and(|v| same(v, kv)))
        });
    }
    let want: Value = serde_json::from_str(seg.strip_prefix("v:")?).ok()?;
    items.iter().find(|i| same(i, &want))
}

pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| step(cur, seg))
}

/// Removes the value at `path` (no-op when absent).
pub fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let Some(idx) = index_of(cur, seg) else {
                return;
            };
            cur.get_mut(idx)
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(idx) = index_of(cur, last)
        && let Some(a) = cur.as_array_mut()
    {
        a.remove(idx);
    }
}

fn index_of(v: &Value, seg: &str) -> Option<usize> {
    let target = step(v, seg)? as *const Value;
    v.as_array()?.iter().position(|i| std::ptr::eq(i, target))
}

/// Merges an applied configuration into the live object.
pub fn merge_config(live: &mut Value, config: &Value, schema: Option<&Value>, name: &str) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                let s = sub_schema(schema, k);
                match l.get_mut(k) {
                    Some(lv) if !cv.is_null() => merge_config(lv, cv, s, k),
                    _ => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c)) => match list_type(schema, name) {
            ListType::Map(keys) if !keys.is_empty() => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for ci in c {
                    match l
                        .iter_mut()
                        .find(|li| keys.iter().all(|k| same_opt(li.get(k), ci.get(k))))
                    {
                        Some(li) => merge_config(li, ci, item_schema, ""),
                        None => l.push(ci.clone()),
                    }
                }
            }
            ListType::Set => {
                for ci in c {
                    if !l.iter().any(|li| same(li, ci)) {
                        l.push(ci.clone());
                    }
                }
            }
            _ => *l = c.clone(),
        },
        (l, c) => *l = c.clone(),
    }
}

/// One entry of `metadata.managedFields`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: BTreeSet<FieldPath>,
}

fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            cur = cur
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, sub) in m {
                if k == "." {
                    out.insert(prefix.clone());
                    continue;
                }
                prefix.push(k.clone());
                from_fields_v1(sub, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    let Some(entries) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let mut fields = BTreeSet::new();
            if let Some(f) = e.get("fieldsV1") {
                from_fields_v1(f, &mut Vec::new(), &mut fields);
            }
            Managed {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields,
            }
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, managed: &[Managed]) {
    let entries: Vec<Value> = managed
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if !obj.get("metadata").is_some_and(Value::is_object) {
        if entries.is_empty() {
            return;
        }
        obj["metadata"] = json!({});
    }
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            md.remove("managedFields");
        } else {
            md.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// Who identifies the write and when.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: String,
    pub subresource: &'a str,
    pub time: &'a str,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            s.strip_prefix("f:")
                .map_or_else(|| format!("[{s}]"), |f| format!(".{f}"))
        })
        .collect()
}

/// Fields that ownership is tracked for: not the server-managed metadata.
fn tracked(p: &FieldPath) -> bool {
    !matches!(
        p.as_slice(),
        [a, b, ..] if a == "f:metadata" && matches!(b.as_str(), "f:managedFields" | "f:resourceVersion" | "f:uid" | "f:generation" | "f:creationTimestamp" | "f:name" | "f:namespace")
    ) && !matches!(p.as_slice(), [a] if a == "f:apiVersion" || a == "f:kind")
}

/// Whether `p` is a key field of a list-map item (`..., k:{"type":"A"}, f:type`).
fn is_item_key(p: &[String]) -> bool {
    let [.., item, last] = p else {
        return false;
    };
    let (Some(key), Some(field)) = (item.strip_prefix("k:"), last.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.contains_key(field))
}

/// Applies `config` for `w` on top of `live`; returns the new object or the conflicts.
pub fn apply(
    live: &Value,
    config: &Value,
    schema: Option<&Value>,
    w: &Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut managed = read_managed(live);
    let claimed: BTreeSet<FieldPath> = leaves(config, schema).into_iter().filter(tracked).collect();
    let mut conflicts = Vec::new();
    // Fields claimed with a value different from the live one: forcing takes them from their
    // other owners. Fields claimed with the same value become shared.
    let mut changed: BTreeSet<FieldPath> = BTreeSet::new();
    for m in &managed {
        if m.manager == w.manager && m.subresource == w.subresource {
            continue;
        }
        for p in m.fields.intersection(&claimed) {
            if !same_opt(get_path(live, p), get_path(config, p)) {
                changed.insert(p.clone());
                conflicts.push(Conflict {
                    manager: m.manager.clone(),
                    field: dotted(p),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut out = live.clone();
    let previous: BTreeSet<FieldPath> = managed
        .iter()
        .filter(|m| {
            m.manager == w.manager && m.operation == "Apply" && m.subresource == w.subresource
        })
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let others: BTreeSet<FieldPath> = managed
        .iter()
        .filter(|m| {
            !(m.manager == w.manager && m.operation == "Apply" && m.subresource == w.subresource)
        })
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let mut parents = BTreeSet::new();
    for p in previous.difference(&claimed) {
        // Key fields stay until their item is judged as a whole (below).
        if !others.contains(p) && !is_item_key(p) {
            remove_path(&mut out, p);
            for i in 1..p.len() {
                parents.insert(p[..i].to_vec());
            }
        }
    }
    // What nobody owns any more and is left empty (a map, or a list-map item with only its
    // keys) goes too, deepest first.
    let mut by_depth: Vec<FieldPath> = parents.into_iter().collect();
    by_depth.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for parent in by_depth {
        let still_owned = claimed
            .iter()
            .chain(others.iter())
            .any(|p| p.len() > parent.len() && p.starts_with(&parent));
        let key: Map<String, Value> = parent
            .last()
            .and_then(|k| k.strip_prefix("k:"))
            .and_then(|k| serde_json::from_str(k).ok())
            .unwrap_or_default();
        let hollow = match get_path(&out, &parent) {
            Some(Value::Object(o)) => o.keys().all(|k| key.contains_key(k)),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if !still_owned && hollow {
            remove_path(&mut out, &parent);
        }
    }
    merge_config(&mut out, config, schema, "");
    for m in &mut managed {
        if !(m.manager == w.manager && m.subresource == w.subresource) {
            m.fields.retain(|p| !changed.contains(p));
        }
    }
    managed.retain(|m| {
        !(m.manager == w.manager && m.operation == "Apply" && m.subresource == w.subresource)
    });
    managed.push(Managed {
        manager: w.manager.into(),
        operation: "Apply".into(),
        api_version: w.api_version.clone(),
        time: w.time.into(),
        subresource: w.subresource.into(),
        fields: claimed,
    });
    write_managed(&mut out, &managed);
    Ok(out)
}

/// Records a non-apply write: `w` now owns the leaves that differ from `old`.
pub fn record_update(old: Option<&Value>, new: &mut Value, schema: Option<&Value>, w: &Writer<'_>) {
    let mut managed = old.map(read_managed).unwrap_or_default();
    let new_leaves: BTreeSet<FieldPath> = leaves(new, schema).into_iter().filter(tracked).collect();
    let changed: BTreeSet<FieldPath> = new_leaves
        .iter()
        .filter(|p| !same_opt(old.and_then(|o| get_path(o, p)), get_path(new, p)))
        .cloned()
        .collect();
    for m in &mut managed {
        m.fields.retain(|p| new_leaves.contains(p));
        if m.manager != w.manager {
            m.fields.retain(|p| !changed.contains(p));
        }
    }
    if let Some(m) = managed.iter_mut().find(|m| {
        m.manager == w.manager && m.operation == "Update" && m.subresource == w.subresource
    }) {
        m.fields.extend(changed);
        m.time = w.time.into();
    } else if !changed.is_empty() {
        managed.push(Managed {
            manager: w.manager.into(),
            operation: "Update".into(),
            api_version: w.api_version.clone(),
            time: w.time.into(),
            subresource: w.subresource.into(),
            fields: changed,
        });
    }
    write_managed(new, &managed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w<'a>(m: &'a str) -> Writer<'a> {
        Writer {
            manager: m,
            api_version: "v1".into(),
            subresource: "",
            time: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn apply_merges_and_drops_fields_no_longer_sent() {
        let live = json!({"metadata": {"name": "a"}, "data": {"x": "1"}});
        let cfg1 = json!({"metadata": {"name": "a"}, "data": {"a": "1", "b": "2"}});
        let o1 = apply(&live, &cfg1, None, &w("m1"), false).unwrap();
        assert_eq!(o1["data"], json!({"x": "1", "a": "1", "b": "2"}));
        let cfg2 = json!({"metadata": {"name": "a"}, "data": {"a": "1"}});
        let o2 = apply(&o1, &cfg2, None, &w("m1"), false).unwrap();
        assert_eq!(o2["data"], json!({"x": "1", "a": "1"}));
        let m = read_managed(&o2);
        assert_eq!(m.len(), 1);
        assert!(
            m[0].fields
                .contains(&vec!["f:data".to_string(), "f:a".to_string()])
        );
    }

    #[test]
    fn conflicting_manager_needs_force() {
        let live = json!({"metadata": {"name": "a"}, "data": {}});
        let o1 = apply(&live, &json!({"data": {"a": "1"}}), None, &w("m1"), false).unwrap();
        let err = apply(&o1, &json!({"data": {"a": "2"}}), None, &w("m2"), false).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "m1".into(),
                field: ".data.a".into()
            }]
        );
        // Same value is shared ownership, not a conflict.
        assert!(apply(&o1, &json!({"data": {"a": "1"}}), None, &w("m2"), false).is_ok());
        let o2 = apply(&o1, &json!({"data": {"a": "2"}}), None, &w("m2"), true).unwrap();
        assert_eq!(o2["data"]["a"], "2");
        let m = read_managed(&o2);
        assert_eq!(m.len(), 1, "m1 lost its only field: {m:?}");
        assert_eq!(m[0].manager, "m2");
    }

    #[test]
    fn numbers_compare_by_value() {
        let o1 = apply(
            &json!({}),
            &json!({"spec": {"min": 30.0, "l": [1.0, {"a": 2}]}}),
            None,
            &w("m1"),
            false,
        )
        .unwrap();
        // The same numbers spelled as integers: shared, not a conflict.
        let cfg = json!({"spec": {"min": 30, "l": [1, {"a": 2.0}]}});
        assert!(apply(&o1, &cfg, None, &w("m2"), false).is_ok());
        let err = apply(&o1, &json!({"spec": {"min": 30.5}}), None, &w("m2"), false).unwrap_err();
        assert_eq!(err[0].field, ".spec.min");
        assert!(same(&json!(1), &json!(1.0)) && !same(&json!(1), &json!("1")));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn managers_applying_the_same_value_share_it() {
        let cfg = json!({"data": {"a": "1", "b": "2"}});
        let o1 = apply(&json!({}), &cfg, None, &w("m1"), false).unwrap();
        let o2 = apply(&o1, &json!({"data": {"a": "1"}}), None, &w("m2"), false).unwrap();
        let owners = |o: &Value, f: &str| -> Vec<String> {
            let p = vec!["f:data".to_string(), format!("f:{f}")];
            read_managed(o)
                .into_iter()
                .filter(|m| m.fields.contains(&p))
                .map(|m| m.manager)
                .collect()
        };
        assert_eq!(owners(&o2, "a"), vec!["m1", "m2"]);
        // m1 drops both: `a` stays (m2 still owns it), `b` goes.
        let o3 = apply(&o2, &json!({"data": {}}), None, &w("m1"), false).unwrap();
        assert_eq!(o3["data"], json!({"a": "1"}));
        assert_eq!(owners(&o3, "a"), vec!["m2"]);
    }

    #[test]
    fn forcing_takes_only_the_conflicting_fields() {
        let o1 = apply(
            &json!({}),
            &json!({"data": {"a": "1", "b": "2", "c": "3"}}),
            None,
            &w("m1"),
            false,
        )
        .unwrap();
        let o2 = apply(
            &o1,
            &json!({"data": {"a": "9", "b": "2"}}),
            None,
            &w("m2"),
            true,
        )
        .unwrap();
        let m1 = read_managed(&o2)
            .into_iter()
            .find(|m| m.manager == "m1")
            .unwrap();
        let f = |k: &str| vec!["f:data".to_string(), format!("f:{k}")];
        assert_eq!(m1.fields, BTreeSet::from([f("b"), f("c")]));
    }

    #[test]
    fn list_map_items_merge_by_key() {
        let schema = json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}}}}}});
        let live = json!({"status": {"conditions": [{"type": "A", "status": "True"}]}});
        let cfg = json!({"status": {"conditions": [{"type": "B", "status": "False"}]}});
        let out = apply(&live, &cfg, Some(&schema), &w("m"), false).unwrap();
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
        let p = vec![
            "f:status".to_string(),
            "f:conditions".into(),
            "k:{\"type\":\"B\"}".into(),
            "f:status".into(),
        ];
        assert_eq!(get_path(&out, &p), Some(&json!("False")));
        let mut o = out.clone();
        remove_path(&mut o, &p[..3]);
        assert_eq!(o["status"]["conditions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn dropping_a_list_map_item_removes_it() {
        let schema = json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}}}}}});
        let both = json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]}});
        let o1 = apply(&json!({}), &both, Some(&schema), &w("m"), false).unwrap();
        let one = json!({"status": {"conditions": [{"type": "A", "status": "True"}]}});
        let o2 = apply(&o1, &one, Some(&schema), &w("m"), false).unwrap();
        assert_eq!(
            o2["status"]["conditions"],
            json!([{"type": "A", "status": "True"}])
        );
        // Dropping everything under status removes it rather than leaving it empty.
        let o3 = apply(
            &o2,
            &json!({"spec": {"x": 1}}),
            Some(&schema),
            &w("m"),
            false,
        )
        .unwrap();
        assert!(o3.get("status").is_none(), "{o3}");
        assert_eq!(o3["spec"]["x"], 1);
    }

    #[test]
    fn update_takes_ownership_of_changed_fields() {
        let o1 = apply(
            &json!({}),
            &json!({"data": {"a": "1"}}),
            None,
            &w("m1"),
            false,
        )
        .unwrap();
        let mut new = o1.clone();
        new["data"]["a"] = json!("9");
        record_update(Some(&o1), &mut new, None, &w("editor"));
        let m = read_managed(&new);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].manager, "editor");
        assert_eq!(m[0].operation, "Update");
    }
}
