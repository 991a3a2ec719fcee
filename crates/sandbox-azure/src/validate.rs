//! Generic OpenAPI 2.0 request validation over [`Specs`]: parameters and body schemas with
//! `$ref`, `allOf`, discriminators, required, types, enums, formats, patterns and bounds.
//!
//! Decisions (see README): `readOnly` properties in a request are accepted and ignored (ARM
//! ignores server-owned values so GET → modify → PUT works); unknown properties are rejected;
//! `null` for an optional property counts as absent; property names match case-insensitively
//! like ARM's JSON reader, enum values match exactly unless `x-ms-enum.modelAsString` is true.
//!
//! [`Strictness::Client`] adds two checks for contract tests of clients, which ARM itself does
//! not make: a client must not send `readOnly` members (they are silently dropped, so sending
//! them hides a misunderstanding), nor query parameters the operation does not declare.

use std::collections::HashMap;

use serde_json::Value;

use crate::{
    arm_error::{ArmError, ErrorDetail},
    specs::{Node, Operation, Specs},
};

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: &'static str,
    pub target: String,
    pub message: String,
}

/// How strictly a request is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// What ARM's front door accepts (the simulator serves with this).
    Arm,
    /// ARM's checks plus: no `readOnly` members, no undeclared query parameters.
    Client,
}

/// Validate query/path parameters and the JSON body of a request against `op`.
pub fn validate_request(
    specs: &Specs,
    op: &Operation,
    path_params: &HashMap<String, String>,
    query: &HashMap<String, String>,
    body: Option<&Value>,
    strictness: Strictness,
) -> Result<(), ArmError> {
    let op_json = specs.operation_json(op);
    let mut param_errors = Vec::new();
    let mut body_errors = Vec::new();
    let params = op_json["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut declared_query = Vec::new();
    for raw in &params {
        let Some(param) = specs.deref(Node {
            file: op.file,
            value: raw,
        }) else {
            continue;
        };
        let name = param.value["name"].as_str().unwrap_or_default();
        let required = param.value["required"].as_bool() == Some(true);
        if param.value["in"] == "query" {
            declared_query.push(name);
        }
        match param.value["in"].as_str() {
            Some("path") => {
                if let Some(v) = path_params.get(name) {
                    check_parameter(specs, param, name, v, &mut param_errors);
                }
            }
            Some("query") if name != "api-version" => {
                let found = query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
                match found {
                    Some((_, v)) => check_parameter(specs, param, name, v, &mut param_errors),
                    None if required => param_errors.push(Violation {
                        code: "MissingRequiredParameter",
                        target: name.to_owned(),
                        message: format!("The query parameter '{name}' is required."),
                    }),
                    None => {}
                }
            }
            Some("body") => {
                let schema = Node {
                    file: param.file,
                    value: &param.value["schema"],
                };
                match body {
                    Some(b) => {
                        let mut v = Validator {
                            specs,
                            strictness,
                            out: &mut body_errors,
                        };
                        v.check(schema, b, "", true);
                    }
                    None if required => body_errors.push(Violation {
                        code: "InvalidRequestContent",
                        target: String::new(),
                        message: "The request content is missing: a JSON body is required.".into(),
                    }),
                    None => {}
                }
            }
            _ => {}
        }
    }
    if strictness == Strictness::Client {
        for key in query.keys() {
            let declared = key.eq_ignore_ascii_case("api-version")
                || declared_query.iter().any(|d| d.eq_ignore_ascii_case(key));
            if !declared {
                param_errors.push(Violation {
                    code: "UnknownQueryParameter",
                    target: key.clone(),
                    message: format!(
                        "The query parameter '{key}' is not declared by operation '{}'.",
                        op.operation_id
                    ),
                });
            }
        }
    }
    if !param_errors.is_empty() {
        return Err(envelope("InvalidParameter", op, param_errors));
    }
    if !body_errors.is_empty() {
        return Err(envelope("InvalidRequestContent", op, body_errors));
    }
    Ok(())
}

fn envelope(code: &str, op: &Operation, violations: Vec<Violation>) -> ArmError {
    let first = &violations[0];
    let message = format!(
        "The request is invalid for operation '{}' (api-version {}): {}{}",
        op.operation_id,
        op.api_version,
        first.message,
        if violations.len() > 1 {
            format!(" (and {} more, see details)", violations.len() - 1)
        } else {
            String::new()
        }
    );
    let target = first.target.clone();
    let details = violations
        .into_iter()
        .map(|v| ErrorDetail {
            code: v.code.to_owned(),
            message: v.message,
            target: Some(v.target),
        })
        .collect();
    let err = ArmError::bad_request(code, message).with_details(details);
    if target.is_empty() {
        err
    } else {
        err.with_target(target)
    }
}

fn check_parameter(
    specs: &Specs,
    param: Node<'_>,
    name: &str,
    raw: &str,
    out: &mut Vec<Violation>,
) {
    let value = match param.value["type"].as_str() {
        Some("integer") => match raw.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => {
                out.push(Violation {
                    code: "InvalidParameter",
                    target: name.to_owned(),
                    message: format!("The parameter '{name}' must be an integer, got '{raw}'."),
                });
                return;
            }
        },
        Some("boolean") => match raw.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                out.push(Violation {
                    code: "InvalidParameter",
                    target: name.to_owned(),
                    message: format!("The parameter '{name}' must be true or false, got '{raw}'."),
                });
                return;
            }
        },
        _ => Value::String(raw.to_owned()),
    };
    // Parameters have no readOnly members: ARM strictness is exact here.
    let mut v = Validator {
        specs,
        strictness: Strictness::Arm,
        out,
    };
    v.check(param, &value, name, true);
}

struct Validator<'s, 'o> {
    specs: &'s Specs,
    strictness: Strictness,
    out: &'o mut Vec<Violation>,
}

/// Properties of an object schema merged over its `allOf` chain.
#[derive(Default)]
struct Merged<'a> {
    properties: Vec<(&'a str, Node<'a>)>,
    required: Vec<&'a str>,
    additional: Additional<'a>,
    declares_properties: bool,
}

#[derive(Default)]
enum Additional<'a> {
    #[default]
    Unspecified,
    Any,
    Schema(Node<'a>),
    Forbidden,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'s> Validator<'s, '_> {
    fn push(&mut self, code: &'static str, target: &str, message: String) {
        self.out.push(Violation {
            code,
            target: target.to_owned(),
            message,
        });
    }

    fn check(&mut self, schema: Node<'s>, inst: &Value, path: &str, dispatch: bool) {
        let Some(schema) = self.specs.deref(schema) else {
            // A reference into a file the repository does not carry (listed in README): accept.
            return;
        };
        let s = schema.value;
        if inst.is_null() {
            if s["x-nullable"].as_bool() != Some(true) {
                self.push(
                    "InvalidPropertyType",
                    path,
                    format!("The value of '{path}' must not be null."),
                );
            }
            return;
        }
        if dispatch
            && let Some(prop) = s["discriminator"].as_str()
            && let Value::Object(map) = inst
        {
            self.dispatch(schema, prop, map, inst, path);
            return;
        }
        let declared = s["type"].as_str().or_else(|| {
            (s.get("properties").is_some()
                || s.get("allOf").is_some()
                || s.get("additionalProperties").is_some())
            .then_some("object")
        });
        if let Some(ty) = declared
            && !type_matches(ty, inst)
        {
            self.push(
                "InvalidPropertyType",
                path,
                format!(
                    "The value of '{}' must be of type '{ty}', got {}.",
                    display(path),
                    kind(inst)
                ),
            );
            return;
        }
        match inst {
            Value::String(text) => self.check_string(s, text, path),
            Value::Number(_) => self.check_number(s, inst, path),
            Value::Array(items) => self.check_array(schema, items, path),
            Value::Object(map) => self.check_object(schema, map, path),
            Value::Bool(_) | Value::Null => {}
        }
        if !inst.is_string() {
            self.check_enum(s, inst, path);
        }
    }

    fn dispatch(
        &mut self,
        base: Node<'s>,
        prop: &str,
        map: &serde_json::Map<String, Value>,
        inst: &Value,
        path: &str,
    ) {
        let target = join(path, prop);
        let Some(value) = lookup(map, prop) else {
            self.push(
                "RequiredPropertyMissing",
                &target,
                format!("The discriminator property '{target}' is required."),
            );
            return;
        };
        let Some(value) = value.as_str() else {
            self.push(
                "InvalidPropertyType",
                &target,
                format!("The discriminator '{target}' must be a string."),
            );
            return;
        };
        let Some(key) = self.specs.key_of(base) else {
            self.check(base, inst, path, false);
            return;
        };
        match self.specs.subtype(key.clone(), value) {
            Some(sub) => self.check(sub, inst, path, false),
            None => {
                let allowed = self.specs.subtype_values(key);
                self.push(
                    "InvalidDiscriminatorValue",
                    &target,
                    format!(
                        "The value '{value}' of '{target}' is not a known type. Allowed values: {}.",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn check_enum(&mut self, s: &Value, inst: &Value, path: &str) {
        let Some(values) = s["enum"].as_array() else {
            return;
        };
        if s["x-ms-enum"]["modelAsString"].as_bool() == Some(true) {
            return;
        }
        if !values.contains(inst) {
            let allowed: Vec<String> = values
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            self.push(
                "InvalidPropertyValue",
                path,
                format!(
                    "The value {inst} of '{}' is not allowed. Allowed values: {}.",
                    display(path),
                    allowed.join(", ")
                ),
            );
        }
    }

    fn check_string(&mut self, s: &Value, text: &str, path: &str) {
        self.check_enum(s, &Value::String(text.to_owned()), path);
        let shown = display(path);
        if let Some(format) = s["format"].as_str()
            && let Err(why) = check_format(format, text)
        {
            self.push(
                "InvalidPropertyValue",
                path,
                format!("The value of '{shown}' is not a valid {format}: {why}."),
            );
        }
        if let Some(pattern) = s["pattern"].as_str()
            && let Some(re) = self.specs.pattern(pattern)
            && !re.is_match(text)
        {
            self.push(
                "InvalidPropertyValue",
                path,
                format!("The value '{text}' of '{shown}' does not match the pattern '{pattern}'."),
            );
        }
        let len = text.chars().count() as u64;
        if let Some(min) = s["minLength"].as_u64()
            && len < min
        {
            self.push(
                "InvalidPropertyValue",
                path,
                format!("The value of '{shown}' must be at least {min} characters long."),
            );
        }
        if let Some(max) = s["maxLength"].as_u64()
            && len > max
        {
            self.push(
                "InvalidPropertyValue",
                path,
                format!("The value of '{shown}' must be at most {max} characters long."),
            );
        }
    }

    fn check_number(&mut self, s: &Value, inst: &Value, path: &str) {
        let Some(n) = inst.as_f64() else { return };
        let shown = display(path);
        if let Some(min) = s["minimum"].as_f64() {
            let exclusive = s["exclusiveMinimum"].as_bool() == Some(true);
            if n < min || (exclusive && n == min) {
                self.push(
                    "InvalidPropertyValue",
                    path,
                    format!("The value {n} of '{shown}' is below the minimum {min}."),
                );
            }
        }
        if let Some(max) = s["maximum"].as_f64() {
            let exclusive = s["exclusiveMaximum"].as_bool() == Some(true);
            if n > max || (exclusive && n == max) {
                self.push(
                    "InvalidPropertyValue",
                    path,
                    format!("The value {n} of '{shown}' is above the maximum {max}."),
                );
            }
        }
        if s["format"].as_str() == Some("int32") && (n < i32::MIN as f64 || n > i32::MAX as f64) {
            self.push(
                "InvalidPropertyValue",
                path,
                format!("The value {n} of '{shown}' does not fit in int32."),
            );
        }
    }

    fn check_array(&mut self, schema: Node<'s>, items: &[Value], path: &str) {
        let s = schema.value;
        let shown = display(path);
        if let Some(min) = s["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            self.push(
                "InvalidPropertyValue",
                path,
                format!("'{shown}' needs at least {min} items."),
            );
        }
        if let Some(max) = s["maxItems"].as_u64()
            && (items.len() as u64) > max
        {
            self.push(
                "InvalidPropertyValue",
                path,
                format!("'{shown}' allows at most {max} items."),
            );
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                let node = Node {
                    file: schema.file,
                    value: item_schema,
                };
                self.check(node, item, &format!("{path}[{i}]"), true);
            }
        }
    }

    fn check_object(&mut self, schema: Node<'s>, map: &serde_json::Map<String, Value>, path: &str) {
        let mut merged = Merged::default();
        self.merge(schema, &mut merged, 0);
        for required in &merged.required {
            if lookup(map, required).is_none_or(Value::is_null) {
                let target = join(path, required);
                self.push(
                    "RequiredPropertyMissing",
                    &target,
                    format!("The property '{target}' is required."),
                );
            }
        }
        for (key, value) in map {
            let target = join(path, key);
            let prop = merged
                .properties
                .iter()
                .find(|(name, _)| *name == key)
                .or_else(|| {
                    merged
                        .properties
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(key))
                });
            match prop {
                Some((name, node)) => {
                    if is_read_only(self.specs, *node) {
                        if self.strictness == Strictness::Client {
                            self.push(
                                "ReadOnlyProperty",
                                &target,
                                format!("'{target}' is read-only: the server sets it, a client must not send it."),
                            );
                        }
                        continue;
                    }
                    if value.is_null() && !merged.required.contains(name) {
                        continue;
                    }
                    self.check(*node, value, &target, true);
                }
                None => match &merged.additional {
                    Additional::Any => {}
                    Additional::Schema(node) => self.check(*node, value, &target, true),
                    Additional::Unspecified if !merged.declares_properties => {}
                    Additional::Unspecified | Additional::Forbidden => self.push(
                        "UnknownProperty",
                        &target,
                        format!(
                            "Could not find member '{key}' on object '{}'.",
                            if path.is_empty() { "(body)" } else { path }
                        ),
                    ),
                },
            }
        }
    }

    fn merge(&self, schema: Node<'s>, merged: &mut Merged<'s>, depth: usize) {
        if depth > 32 {
            return;
        }
        let Some(schema) = self.specs.deref(schema) else {
            // Part of the type lives in an unsaved file: be permissive about extra members.
            merged.additional = Additional::Any;
            return;
        };
        let s = schema.value;
        if let Some(props) = s["properties"].as_object() {
            merged.declares_properties = true;
            for (name, prop) in props {
                merged.properties.push((
                    name.as_str(),
                    Node {
                        file: schema.file,
                        value: prop,
                    },
                ));
            }
        }
        if let Some(req) = s["required"].as_array() {
            merged.required.extend(req.iter().filter_map(Value::as_str));
        }
        match s.get("additionalProperties") {
            Some(Value::Bool(true)) => merged.additional = Additional::Any,
            Some(Value::Bool(false)) => merged.additional = Additional::Forbidden,
            Some(Value::Object(o)) if o.is_empty() => merged.additional = Additional::Any,
            Some(other @ Value::Object(_)) => {
                merged.additional = Additional::Schema(Node {
                    file: schema.file,
                    value: other,
                });
            }
            _ => {}
        }
        if let Some(all_of) = s["allOf"].as_array() {
            for parent in all_of {
                self.merge(
                    Node {
                        file: schema.file,
                        value: parent,
                    },
                    merged,
                    depth + 1,
                );
            }
        }
    }
}

fn is_read_only(specs: &Specs, node: Node<'_>) -> bool {
    node.value["readOnly"].as_bool() == Some(true)
        || specs
            .deref(node)
            .is_some_and(|n| n.value["readOnly"].as_bool() == Some(true))
}

fn lookup<'v>(map: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn display(path: &str) -> &str {
    if path.is_empty() { "(body)" } else { path }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        // `file` and unknown types: nothing to check.
        _ => true,
    }
}

/// Formats the simulator can check. Others (`arm-id`, `uri`, ...) are accepted: the specs' own
/// examples use placeholders like "string" there.
pub fn check_format(format: &str, text: &str) -> Result<(), String> {
    match format {
        "uuid" => uuid::Uuid::parse_str(text)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "date-time" => chrono::DateTime::parse_from_rfc3339(text)
            .map(|_| ())
            .or_else(|_| {
                // ARM also accepts date-times without an offset (taken as UTC).
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|_| ())
            })
            .map_err(|e| e.to_string()),
        "duration" => parse_iso8601_duration(text)
            .map(|_| ())
            .ok_or_else(|| "expected an ISO 8601 duration such as PT2H".to_owned()),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

/// Parse an ISO 8601 duration (`P[nD][T[nH][nM][n[.n]S]]`, also `PnW`) into seconds.
pub fn parse_iso8601_duration(text: &str) -> Option<f64> {
    let rest = text.strip_prefix('P').or_else(|| text.strip_prefix('p'))?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => {
            if t.is_empty() {
                return None;
            }
            (d, t)
        }
        None => (rest, ""),
    };
    fn units(part: &str, table: &[(char, f64)]) -> Option<f64> {
        let mut total = 0.0;
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
            } else {
                let unit = table.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?.1;
                total += number.parse::<f64>().ok()? * unit;
                number.clear();
            }
        }
        number.is_empty().then_some(total)
    }
    let days = units(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 7.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    let secs = units(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    Some(days + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_iso8601_duration("PT2H"), Some(7200.0));
        assert_eq!(parse_iso8601_duration("P1DT30M"), Some(88200.0));
        assert_eq!(parse_iso8601_duration("PT1.5S"), Some(1.5));
        assert_eq!(parse_iso8601_duration("2 hours"), None);
        assert_eq!(parse_iso8601_duration("PT"), None);
        assert_eq!(parse_iso8601_duration("P"), None);
    }

    #[test]
    fn checks_formats() {
        assert!(check_format("uuid", "00000000-0000-0000-0000-000000000000").is_ok());
        assert!(check_format("uuid", "nope").is_err());
        assert!(check_format("date-time", "2020-01-01T00:00:00Z").is_ok());
        assert!(check_format("date-time", "yesterday").is_err());
        assert!(check_format("byte", "aGVsbG8=").is_ok());
        assert!(check_format("byte", "%%%").is_err());
    }
}
