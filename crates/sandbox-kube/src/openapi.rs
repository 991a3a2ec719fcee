//! A minimal `/openapi/v3`: per group/version documents carrying each kind's schema
//! (CRD `openAPIV3Schema` with ObjectMeta as metadata, or the k8s-openapi schema for
//! built-ins) and PATCH operations that
//! advertise `fieldValidation`, which is what `kubectl apply` and `kubectl explain` read (pure).

use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

fn gv_path(t: &ResourceType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

fn schema_name(t: &ResourceType) -> String {
    let mut g: Vec<&str> = if t.group.is_empty() {
        vec!["io", "k8s", "api", "core"]
    } else {
        t.group.split('.').collect()
    };
    if !t.group.is_empty() {
        g.reverse();
    }
    format!("{}.{}.{}", g.join("."), t.version, t.kind)
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

fn document(types: &[&ResourceType]) -> Value {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for t in types {
        let mut s = match (&t.schema, crate::typed::schema(t)) {
            (Some(crd), _) => crd.clone(),
            (None, Some(builtin)) => component(builtin, &mut schemas),
            (None, None) => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        if t.schema.is_some() {
            // As the real server publishes CRDs: metadata is the documented ObjectMeta, whatever
            // the CRD's own schema says there (usually a bare object).
            let meta = component(crate::typed::object_meta_schema(), &mut schemas);
            schemas.insert(OBJECT_META.into(), meta);
            if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert(
                    "metadata".into(),
                    json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
                        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
                );
            }
        }
        s["x-kubernetes-group-version-kind"] = json!([gvk(t)]);
        if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
            props.entry("apiVersion").or_insert(json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.entry("kind").or_insert(json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            props
                .entry("metadata")
                .or_insert(json!({"type": "object", "description": "Standard object's metadata."}));
        }
        schemas.insert(schema_name(t), s);
        let base = if t.namespaced {
            format!("/{}/namespaces/{{namespace}}/{}", gv_path(t), t.plural)
        } else {
            format!("/{}/{}", gv_path(t), t.plural)
        };
        let param = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", t.kind),
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")],
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk(t),
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(t))}}}}}
            })
        };
        paths.insert(base.clone(), json!({"post": op("post")}));
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch")}),
        );
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (edgetrain sandbox)", "version": "v1.32.0"},
        "paths": paths, "components": {"schemas": schemas}})
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// A schemars schema as an OpenAPI component: its `$defs` move to `schemas`, references
/// follow them.
fn component(mut schema: Value, schemas: &mut Map<String, Value>) -> Value {
    rewrite_refs(&mut schema);
    if let Some(m) = schema.as_object_mut() {
        if let Some(defs) = m.remove("$defs") {
            for (name, def) in defs.as_object().into_iter().flatten() {
                schemas.insert(name.clone(), def.clone());
            }
        }
        m.remove("$schema");
        m.remove("title");
    }
    schema
}

/// schemars refers to `#/$defs/X`; OpenAPI documents to `#/components/schemas/X`.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/components/schemas/{name}");
            }
            for x in m.values_mut() {
                rewrite_refs(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn hash(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3` (the index) or `/openapi/v3/{api/v1 | apis/g/v}`.
pub fn v3(types: &[ResourceType], rest: &[String]) -> Option<Value> {
    let mut gvs: Vec<String> = Vec::new();
    for t in types {
        let p = gv_path(t);
        if !gvs.contains(&p) {
            gvs.push(p);
        }
    }
    if rest.is_empty() {
        let mut paths = Map::new();
        for gv in gvs {
            let members: Vec<&ResourceType> = types.iter().filter(|t| gv_path(t) == gv).collect();
            let url = format!("/openapi/v3/{gv}?hash={}", hash(&document(&members)));
            paths.insert(gv, json!({"serverRelativeURL": url}));
        }
        return Some(json!({"paths": paths}));
    }
    let want = rest.join("/");
    let members: Vec<&ResourceType> = types.iter().filter(|t| gv_path(t) == want).collect();
    (!members.is_empty()).then(|| document(&members))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;

    #[test]
    fn index_lists_group_versions_and_documents_carry_gvk() {
        let types = builtins();
        let idx = v3(&types, &[]).unwrap();
        assert!(
            idx["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        let doc = v3(
            &types,
            &["apis".into(), "coordination.k8s.io".into(), "v1".into()],
        )
        .unwrap();
        let lease = &doc["components"]["schemas"]["io.k8s.coordination.v1.Lease"];
        assert_eq!(lease["x-kubernetes-group-version-kind"][0]["kind"], "Lease");
        let patch = &doc["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]
            ["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(v3(&types, &["apis".into(), "nope".into(), "v1".into()]).is_none());
    }
}
