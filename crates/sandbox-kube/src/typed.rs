//! Shape checks for built-in kinds: the body must decode as the k8s-openapi type, which is
//! what the real server's Go decoder enforces (field types, base64 in Secret data, ...).

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{ConfigMap, Event, Namespace, Secret, ServiceAccount},
        events::v1::Event as EventV1,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};

use crate::resources::ResourceType;

fn schema_of<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

/// Generated schemas by (group, kind).
type SchemaCache = HashMap<(String, String), Option<Value>>;

/// The JSON schema of a built-in kind (schemars form: definitions under `$defs`), from the
/// k8s-openapi types, which carry the official API documentation.
pub fn schema(rt: &ResourceType) -> Option<Value> {
    if rt.is_custom() {
        return None;
    }
    // Generating a schema walks the whole type; every write of a built-in needs one.
    static CACHE: OnceLock<Mutex<SchemaCache>> = OnceLock::new();
    let key = (rt.group.clone(), rt.kind.clone());
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return hit.clone();
    }
    let generated = generate(rt);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, generated.clone());
    generated
}

/// ObjectMeta's documented schema (schemars form), which the real server publishes as every
/// custom resource's `metadata`.
pub fn object_meta_schema() -> Value {
    schema_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>()
}

fn generate(rt: &ResourceType) -> Option<Value> {
    Some(match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => schema_of::<Namespace>(),
        ("", "ConfigMap") => schema_of::<ConfigMap>(),
        ("", "Secret") => schema_of::<Secret>(),
        ("", "ServiceAccount") => schema_of::<ServiceAccount>(),
        ("", "Event") => schema_of::<Event>(),
        ("events.k8s.io", "Event") => schema_of::<EventV1>(),
        ("coordination.k8s.io", "Lease") => schema_of::<Lease>(),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            schema_of::<CustomResourceDefinition>()
        }
        _ => return None,
    })
}

fn resolve<'a>(schema: &'a Value, defs: Option<&'a Value>) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs?.get(name))
        .unwrap_or(schema)
}

fn prune_walk(
    schema: &Value,
    value: &mut Value,
    path: &str,
    defs: Option<&Value>,
    out: &mut Vec<String>,
) {
    let schema = resolve(schema, defs);
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    // The server owns metadata; its unknown fields are not this check's business.
                    if path.is_empty() && k == "metadata" {
                        continue;
                    }
                    match props.get(&k) {
                        Some(sub) => {
                            if let Some(v) = m.get_mut(&k) {
                                prune_walk(sub, v, &join(&k), defs, out);
                            }
                        }
                        None => {
                            m.remove(&k);
                            out.push(join(&k));
                        }
                    }
                }
            } else if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, v) in m.iter_mut() {
                    prune_walk(sub, v, &join(k), defs, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_walk(sub, v, &format!("{path}[{i}]"), defs, out);
                }
            }
        }
        _ => {}
    }
}

/// Drops fields a built-in kind does not have (as the real server's decoder does) and
/// returns their paths (`fieldValidation=Strict` rejects them). `obj` is in served form.
/// CRD objects are left alone: their schema type is recursive and decoded by `check`.
pub fn prune(rt: &ResourceType, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    if rt.kind == "CustomResourceDefinition" {
        return out;
    }
    if let Some(schema) = schema(rt) {
        prune_walk(&schema, obj, "", schema.get("$defs"), &mut out);
    }
    out
}

fn decodes<T: DeserializeOwned>(obj: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(obj.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `Err(message)` when a built-in object does not have its kind's shape. `obj` is in the
/// kind's own served form (events.k8s.io Events in their own field names).
pub fn check(rt: &ResourceType, obj: &Value) -> Result<(), String> {
    if rt.is_custom() {
        return Ok(());
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => decodes::<Namespace>(obj),
        ("", "ConfigMap") => decodes::<ConfigMap>(obj),
        ("", "Secret") => decodes::<Secret>(obj),
        ("", "ServiceAccount") => decodes::<ServiceAccount>(obj),
        ("", "Event") => decodes::<Event>(obj),
        ("events.k8s.io", "Event") => decodes::<EventV1>(obj),
        ("coordination.k8s.io", "Lease") => decodes::<Lease>(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            decodes::<CustomResourceDefinition>(obj)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;
    use serde_json::json;

    fn kind(k: &str) -> ResourceType {
        builtins().into_iter().find(|t| t.kind == k).unwrap()
    }

    #[test]
    fn wrong_field_types_and_bad_base64_are_rejected() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": 1}});
        assert!(check(&kind("ConfigMap"), &cm).is_err());
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}, "data": {"k": "%%%"}});
        assert!(check(&kind("Secret"), &s).is_err());
        let ok = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}, "data": {"k": "dg=="}});
        assert!(check(&kind("Secret"), &ok).is_ok());
    }

    #[test]
    fn unknown_built_in_fields_are_pruned_and_reported() {
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a", "labels": {"x": "y"}},
            "data": {"k": "dg=="}, "strinData": {"typo": "v"}});
        assert_eq!(prune(&kind("Secret"), &mut s), vec!["strinData"]);
        assert!(s.get("strinData").is_none());
        assert_eq!(s["data"]["k"], "dg==");
        assert_eq!(s["metadata"]["labels"]["x"], "y");
        let mut l = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
            "spec": {"holderIdentity": "me", "holder": "typo"}});
        assert_eq!(prune(&kind("Lease"), &mut l), vec!["spec.holder"]);
    }
}
