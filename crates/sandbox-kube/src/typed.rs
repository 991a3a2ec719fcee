//! Shape checks for built-in kinds: the body must decode as the k8s-openapi type, which is
//! what the real server's Go decoder enforces (field types, base64 in Secret data, ...).

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

/// The JSON schema of a built-in kind (schemars form: definitions under `$defs`), from the
/// k8s-openapi types, which carry the official API documentation.
pub fn schema(rt: &ResourceType) -> Option<Value> {
    if rt.is_custom() {
        return None;
    }
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
}
