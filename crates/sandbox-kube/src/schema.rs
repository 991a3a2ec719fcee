//! Structural-schema handling for custom resources: pruning, defaulting, validation and
//! CEL rules (via `kube-cel`). Pure functions; causes use the real server's wording.

use serde_json::{Map, Value};

use crate::api_error::Cause;

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn is_int_or_string(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Removes fields the schema does not declare (unless preserved), like the real server;
/// the removed paths are appended to `removed` (for `fieldValidation=Strict`).
pub fn prune(schema: &Value, value: &mut Value, root: bool, path: &str, removed: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            if let Some(props) = props {
                let keep_unknown = preserves_unknown(schema);
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let meta = (root || embedded)
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                    match props.get(&k) {
                        Some(sub) => {
                            if let Some(v) = map.get_mut(&k) {
                                prune(sub, v, false, &join(path, &k), removed);
                            }
                        }
                        None if meta || keep_unknown => {}
                        None => {
                            map.remove(&k);
                            removed.push(join(path, &k));
                        }
                    }
                }
            } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                for (k, v) in map.iter_mut() {
                    prune(sub, v, false, &join(path, k), removed);
                }
            } else if !preserves_unknown(schema) && additional.is_none() && !embedded {
                // An object schema with no properties keeps nothing but the metadata fields.
                if schema.get("type").and_then(Value::as_str) == Some("object") {
                    map.retain(|k, _| {
                        let keep = root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                        if !keep {
                            removed.push(join(path, k));
                        }
                        keep
                    });
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(sub, v, false, &format!("{path}[{i}]"), removed);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn type_ok(expected: &str, v: &Value) -> bool {
    match expected {
        "integer" => type_name(v) == "integer",
        "number" => matches!(type_name(v), "integer" | "number"),
        other => type_name(v) == other,
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => uuid::Uuid::parse_str(s).is_ok(),
        "byte" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "uri" => s.contains("://") && !s.contains(char::is_whitespace),
        "hostname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "email" => s
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.')),
        // Unknown formats are not validated, as in the real server.
        _ => true,
    }
}

/// Structural validation (OpenAPI v3 subset used by CRDs). Appends causes.
pub fn validate(schema: &Value, value: &Value, path: &str, out: &mut Vec<Cause>) {
    let field = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if schema.get("type").is_some() {
            out.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {field} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if is_int_or_string(schema) {
        if !matches!(type_name(value), "integer" | "string") {
            out.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {}: {field} in body must be of type integer,string: {}",
                    shown(value),
                    shown(value)
                ),
            ));
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !type_ok(t, value)
    {
        out.push(cause(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: {}: {field} in body must be of type {t}: \"{}\"",
                shown(value),
                type_name(value)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(shown).collect();
        out.push(cause(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                list.join(", ")
            ),
        ));
    }
    match value {
        Value::Object(map) => validate_object(schema, map, path, out),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {n}: {field} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                out.push(cause(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {n}: must have at most {max} items"),
                ));
            }
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    validate(sub, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::String(s) => validate_string(schema, s, path, field, out),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                let excl = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                if x < min || (excl && x == min) {
                    let op = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    out.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {n}: {field} in body should be {op} {min}"),
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                let excl = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if x > max || (excl && x == max) {
                    let op = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    out.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {n}: {field} in body should be {op} {max}"),
                    ));
                }
            }
        }
        _ => {}
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(subs) = schema.get(key).and_then(Value::as_array) {
            let results: Vec<Vec<Cause>> = subs
                .iter()
                .map(|s| {
                    let mut c = Vec::new();
                    validate(s, value, path, &mut c);
                    c
                })
                .collect();
            let passing = results.iter().filter(|c| c.is_empty()).count();
            match key {
                "allOf" => out.extend(results.into_iter().flatten()),
                "anyOf" if passing == 0 && !results.is_empty() => out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {field} in body must match at least one schema (anyOf)",
                        shown(value)
                    ),
                )),
                "oneOf" if passing != 1 && !results.is_empty() => out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {field} in body must match exactly one schema (oneOf)",
                        shown(value)
                    ),
                )),
                _ => {}
            }
        }
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                out.push(cause(
                    "FieldValueRequired",
                    &join(path, r),
                    "Required value".into(),
                ));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in map {
        // The root's metadata is validated by the server's own metadata rules, not the schema.
        if path.is_empty() && matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
            continue;
        }
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            validate(sub, v, &join(path, k), out);
        } else if let Some(sub) = additional {
            validate(sub, v, &join(path, k), out);
        }
    }
    let n = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        out.push(cause(
            "FieldValueTooMany",
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
}

fn validate_string(schema: &Value, s: &str, path: &str, field: &str, out: &mut Vec<Cause>) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        out.push(cause(
            "FieldValueInvalid",
            path,
            format!("Invalid value: \"{s}\": {field} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.push(cause(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(p) {
            Ok(re) if !re.is_match(s) => out.push(cause(
                "FieldValueInvalid",
                path,
                format!("Invalid value: \"{s}\": {field} in body should match '{p}'"),
            )),
            Ok(_) => {}
            Err(e) => out.push(cause(
                "FieldValueInvalid",
                path,
                format!("schema pattern {p:?} does not compile: {e}"),
            )),
        }
    }
    if let Some(f) = schema.get("format").and_then(Value::as_str)
        && !format_ok(f, s)
    {
        out.push(cause(
            "FieldValueInvalid",
            path,
            format!("Invalid value: \"{s}\": {field} in body must be of type {f}: \"{s}\""),
        ));
    }
}

/// Runs the schema's `x-kubernetes-validations` (CEL), with `oldSelf` on updates.
pub fn validate_cel(schema: &Value, obj: &Value, old: Option<&Value>, out: &mut Vec<Cause>) {
    if let Err(errors) = kube_cel::validate(schema, obj, old) {
        for e in errors.into_vec() {
            let reason = e
                .reason
                .clone()
                .unwrap_or_else(|| "FieldValueInvalid".into());
            // The real server names the field's type here (`Invalid value: "string": ...`).
            let ty = value_at(obj, &e.field_path).map_or("object", type_name);
            let shown = match e.kind {
                kube_cel::ErrorKind::ValidationFailure => {
                    format!("Invalid value: \"{ty}\": {}", e.message)
                }
                _ => format!(
                    "Invalid value: \"{ty}\": rule {:?} could not be evaluated: {}",
                    e.rule, e.message
                ),
            };
            out.push(cause(&reason, &e.field_path, shown));
        }
    }
}

/// The value at a cause's field path (`spec.items[0].name`), if it can be found.
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, i)| (n, i));
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in indexes.split('[').filter(|i| !i.is_empty()) {
            let idx = idx.trim_end_matches(']');
            cur = match idx.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(idx.trim_matches('"'))?,
            };
        }
    }
    Some(cur)
}

fn collect_rule_errors(cs: &kube_cel::CompiledSchema, path: &str, out: &mut Vec<Cause>) {
    for (i, r) in cs.validations.iter().enumerate() {
        if let Err(e) = r {
            out.push(cause(
                "FieldValueInvalid",
                &format!("{path}.x-kubernetes-validations[{i}].rule"),
                format!("Invalid value: \"string\": compilation failed: {e}"),
            ));
        }
    }
    let mut props: Vec<_> = cs.properties.iter().collect();
    props.sort_by(|a, b| a.0.cmp(b.0));
    for (k, sub) in props {
        collect_rule_errors(sub, &format!("{path}.properties[{k}]"), out);
    }
    if let Some(items) = &cs.items {
        collect_rule_errors(items, &format!("{path}.items"), out);
    }
    if let Some(ap) = &cs.additional_properties {
        collect_rule_errors(ap, &format!("{path}.additionalProperties"), out);
    }
    for (name, subs) in [
        ("allOf", &cs.all_of),
        ("anyOf", &cs.any_of),
        ("oneOf", &cs.one_of),
    ] {
        for (i, sub) in subs.iter().enumerate() {
            collect_rule_errors(sub, &format!("{path}.{name}[{i}]"), out);
        }
    }
}

/// CEL rules of a CRD that do not compile: the real server refuses such a CRD.
pub fn crd_rule_errors(crd: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    for (i, v) in versions.into_iter().flatten().enumerate() {
        if let Some(s) = v.pointer("/schema/openAPIV3Schema") {
            let compiled = kube_cel::compile_schema(s);
            collect_rule_errors(
                &compiled,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                &mut out,
            );
        }
    }
    out
}

/// An admitted object and the unknown fields pruned from it.
pub type Admitted = (Value, Vec<String>);

/// Prunes, defaults and validates a custom resource; returns the admitted object or causes.
pub fn admit(schema: &Value, obj: &Value, old: Option<&Value>) -> Result<Admitted, Vec<Cause>> {
    let mut v = obj.clone();
    let mut removed = Vec::new();
    prune(schema, &mut v, true, "", &mut removed);
    let v = kube_cel::apply_defaults(schema, &v);
    let mut causes = Vec::new();
    validate(schema, &v, "", &mut causes);
    if causes.is_empty() {
        validate_cel(schema, &v, old, &mut causes);
    }
    if causes.is_empty() {
        Ok((v, removed))
    } else {
        Err(causes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "x-kubernetes-validations": [{"rule": "self.size <= 10", "message": "size too big"}],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 100},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "name": {"type": "string", "pattern": "^[a-z]+$"},
                        "port": {"x-kubernetes-int-or-string": true},
                        "at": {"type": "string", "format": "date-time"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "immutable": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]}
                    }
                },
                "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
            }
        })
    }

    fn fields(r: Result<Admitted, Vec<Cause>>) -> Vec<(String, String)> {
        r.unwrap_err()
            .into_iter()
            .map(|c| (c.field, c.reason))
            .collect()
    }

    #[test]
    fn defaults_and_prunes_unknown_fields_but_keeps_preserved_ones() {
        let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"size": 2, "bogus": 1, "free": {"any": {"thing": 1}}}, "extra": true});
        let (out, removed) = admit(&schema(), &obj, None).unwrap();
        assert_eq!(removed, vec!["extra", "spec.bogus"]);
        assert_eq!(out["spec"]["mode"], "a");
        assert!(out["spec"].get("bogus").is_none());
        assert!(out.get("extra").is_none());
        assert_eq!(out["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(out["metadata"]["name"], "a");
    }

    #[test]
    fn rejects_types_required_enum_range_pattern_format() {
        let f = fields(admit(&schema(), &json!({"spec": {"mode": "z"}}), None));
        assert!(f.contains(&("spec.size".into(), "FieldValueRequired".into())));
        assert!(f.contains(&("spec.mode".into(), "FieldValueNotSupported".into())));
        let f = fields(admit(&schema(), &json!({"spec": {"size": "x"}}), None));
        assert_eq!(
            f,
            vec![("spec.size".into(), "FieldValueTypeInvalid".into())]
        );
        let f = fields(admit(
            &schema(),
            &json!({"spec": {"size": 0, "name": "A1", "at": "nope", "port": true}}),
            None,
        ));
        let names: Vec<&str> = f.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            names,
            vec!["spec.at", "spec.name", "spec.port", "spec.size"]
        );
    }

    #[test]
    fn crd_rules_that_do_not_compile_are_reported() {
        let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [{"rule": "self.size <"}, {"rule": "true"}]}}}}}]}});
        let errs = crd_rule_errors(&crd);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].field,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
        );
        assert!(
            crd_rule_errors(
                &json!({"spec": {"versions": [{"schema": {"openAPIV3Schema": schema()}}]}})
            )
            .is_empty()
        );
    }

    #[test]
    fn value_at_follows_fields_and_indexes() {
        let o = json!({"spec": {"items": [{"name": "a"}]}});
        assert_eq!(value_at(&o, "spec.items[0].name"), Some(&json!("a")));
        assert_eq!(value_at(&o, "spec.missing"), None);
    }

    #[test]
    fn int_or_string_accepts_both() {
        assert!(
            admit(
                &schema(),
                &json!({"spec": {"size": 1, "port": "http"}}),
                None
            )
            .is_ok()
        );
        assert!(admit(&schema(), &json!({"spec": {"size": 1, "port": 80}}), None).is_ok());
    }

    #[test]
    fn cel_rules_and_transition_rules() {
        let err = admit(&schema(), &json!({"spec": {"size": 11}}), None).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].message.contains("size too big"), "{err:?}");
        let old = json!({"spec": {"size": 1, "immutable": "x"}});
        let err = admit(
            &schema(),
            &json!({"spec": {"size": 1, "immutable": "y"}}),
            Some(&old),
        )
        .unwrap_err();
        assert!(err[0].message.contains("is immutable"), "{err:?}");
        assert!(
            err[0].message.starts_with("Invalid value: \"string\""),
            "{err:?}"
        );
        assert_eq!(err[0].field, "spec.immutable");
        assert!(
            admit(
                &schema(),
                &json!({"spec": {"size": 1, "immutable": "x"}}),
                Some(&old)
            )
            .is_ok()
        );
    }
}
