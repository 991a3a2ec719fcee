//! `meta.k8s.io/v1 Table` rendering (what `kubectl get` prints) and the JSONPath
//! subset CRD printer columns use (pure).

use serde_json::{Value, json};

use crate::resources::{PrinterColumn, ResourceType};

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Field(String),
    Index(usize),
    All,
    Filter(String, Value),
}

fn parse_path(path: &str) -> Result<Vec<Seg>, String> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut segs = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                segs.push(Seg::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("unclosed [ in {path:?}"))?;
            let inner = r[..end].trim();
            // A filter's value may itself contain ']' only inside quotes; CRD columns never do.
            if inner == "*" {
                segs.push(Seg::All);
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = f
                    .split_once("==")
                    .ok_or_else(|| format!("only == filters are supported: {inner:?}"))?;
                let v = v.trim();
                let val = if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    json!(s)
                } else if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    json!(s)
                } else {
                    serde_json::from_str(v).map_err(|_| format!("bad filter value {v:?}"))?
                };
                segs.push(Seg::Filter(k.trim().to_string(), val));
            } else if let Some(s) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                segs.push(Seg::Field(s.to_string()));
            } else {
                segs.push(Seg::Index(
                    inner.parse().map_err(|_| format!("bad index {inner:?}"))?,
                ));
            }
            rest = &r[end + 1..];
        } else {
            return Err(format!("unsupported JSONPath {path:?}"));
        }
    }
    Ok(segs)
}

/// Evaluates a printer-column JSONPath; returns every match.
pub fn eval(path: &str, obj: &Value) -> Result<Vec<Value>, String> {
    let mut cur = vec![obj.clone()];
    for seg in parse_path(path)? {
        let mut next = Vec::new();
        for v in cur {
            match &seg {
                Seg::Field(f) => next.extend(v.get(f).cloned()),
                Seg::Index(i) => next.extend(v.get(*i).cloned()),
                Seg::All => next.extend(v.as_array().cloned().unwrap_or_default()),
                Seg::Filter(k, want) => next.extend(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter(|i| i.pointer(&format!("/{}", k.replace('.', "/"))) == Some(want))
                        .cloned(),
                ),
            }
        }
        cur = next;
    }
    Ok(cur)
}

/// Age as kubectl shows it (`45s`, `3m12s`, `5h`, `2d3h`).
pub fn human_age(created: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(created) else {
        return "<invalid>".into();
    };
    let s = (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => {
            if s % 60 == 0 {
                format!("{m}m")
            } else {
                format!("{m}m{}s", s % 60)
            }
        }
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => {
            if m % 60 == 0 {
                format!("{h}h")
            } else {
                format!("{h}h{}m", m % 60)
            }
        }
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => {
            if h % 24 == 0 {
                format!("{d}d")
            } else {
                format!("{d}d{}h", h % 24)
            }
        }
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn col(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn age_column() -> PrinterColumn {
    PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        json_path: ".metadata.creationTimestamp".into(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        priority: 0,
        format: String::new(),
    }
}

/// The columns a kind prints: CRD printer columns, or a small fixed set for built-ins.
pub fn columns(rt: &ResourceType) -> Vec<PrinterColumn> {
    let c = |name: &str, type_: &str, path: &str| PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: path.into(),
        description: String::new(),
        priority: 0,
        format: String::new(),
    };
    if rt.is_custom() {
        if rt.printer_columns.is_empty() {
            return vec![age_column()];
        }
        return rt.printer_columns.clone();
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => vec![c("Status", "string", ".status.phase"), age_column()],
        ("", "Secret") => vec![
            c("Type", "string", ".type"),
            c("Data", "integer", "#data"),
            age_column(),
        ],
        ("", "ConfigMap") => vec![c("Data", "integer", "#data"), age_column()],
        ("coordination.k8s.io", "Lease") => {
            vec![c("Holder", "string", ".spec.holderIdentity"), age_column()]
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            vec![c("Created At", "date", ".metadata.creationTimestamp")]
        }
        (_, "Event") => vec![
            c("Last Seen", "string", "#lastSeen"),
            c("Type", "string", ".type"),
            c("Reason", "string", ".reason"),
            c("Object", "string", "#object"),
            c("Message", "string", "#message"),
        ],
        _ => vec![age_column()],
    }
}

fn cell(column: &PrinterColumn, obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Value {
    match column.json_path.as_str() {
        "#lastSeen" => {
            let at = [
                "/lastTimestamp",
                "/deprecatedLastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| obj.pointer(p).and_then(Value::as_str));
            return at.map_or(Value::Null, |t| json!(human_age(t, now)));
        }
        "#object" => {
            let r = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            let kind = r
                .and_then(|r| r.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = r
                .and_then(|r| r.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            return json!(format!("{}/{name}", kind.to_lowercase()));
        }
        "#message" => {
            return obj
                .get("message")
                .or_else(|| obj.get("note"))
                .cloned()
                .unwrap_or(Value::Null);
        }
        _ => {}
    }
    if let Some(field) = column.json_path.strip_prefix('#') {
        // Built-in count columns (DATA): number of keys in data + binaryData/stringData.
        let n = obj
            .get(field)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
            + obj
                .get("binaryData")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
        return json!(n);
    }
    let found = eval(&column.json_path, obj).unwrap_or_default();
    let Some(first) = found.first() else {
        return Value::Null;
    };
    if column.name == "Created At" {
        return first.clone();
    }
    match (column.type_.as_str(), first) {
        ("date", Value::String(s)) => json!(human_age(s, now)),
        ("string", Value::String(_)) => first.clone(),
        ("string", other) if found.len() == 1 => json!(other.to_string()),
        ("string", _) => json!(
            found
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(",")
        ),
        ("integer" | "number", Value::Number(_)) | ("boolean", Value::Bool(_)) => first.clone(),
        // A value of the wrong type prints nothing, as on the real server.
        _ => Value::Null,
    }
}

/// The `PartialObjectMetadata` form of an object (metadata-only requests).
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_default()})
}

/// What each row carries as `object` (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Renders objects as a Table. `with_columns` is false for watch events after the first.
pub fn render(
    rt: &ResourceType,
    objects: &[Value],
    include: Include,
    with_columns: bool,
    rv: Option<u64>,
    cont: Option<&str>,
) -> Value {
    let now = chrono::Utc::now();
    let cols = columns(rt);
    let mut defs = vec![col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
        0,
    )];
    defs.extend(cols.iter().map(|c| {
        col(
            &c.name,
            if c.name == "Created At" {
                "date"
            } else {
                &c.type_
            },
            &c.format,
            &c.description,
            c.priority,
        )
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(cols.iter().map(|c| cell(c, o, now)));
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Metadata => row["object"] = partial(o),
                Include::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut t =
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "rows": rows});
    if with_columns {
        t["columnDefinitions"] = Value::Array(defs);
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    if let Some(rv) = rv {
        t["metadata"]["resourceVersion"] = json!(rv.to_string());
    }
    if let Some(c) = cont {
        t["metadata"]["continue"] = json!(c);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_fields_indexes_and_filters() {
        let o = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Ok"},
            {"type": "Stalled", "status": "False"}], "phase": "Running"}});
        assert_eq!(eval(".status.phase", &o).unwrap(), vec![json!("Running")]);
        assert_eq!(
            eval(".status.conditions[1].type", &o).unwrap(),
            vec![json!("Stalled")]
        );
        assert_eq!(
            eval(".status.conditions[?(@.type==\"Ready\")].reason", &o).unwrap(),
            vec![json!("Ok")]
        );
        assert_eq!(eval(".status.conditions[*].type", &o).unwrap().len(), 2);
        assert!(eval(".spec.missing", &o).unwrap().is_empty());
        assert!(eval("status", &o).is_err());
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(human_age("2026-01-01T23:59:15Z", now), "45s");
        assert_eq!(human_age("2026-01-01T23:56:48Z", now), "3m12s");
        assert_eq!(human_age("2026-01-01T19:00:00Z", now), "5h");
        assert_eq!(human_age("2025-12-30T21:00:00Z", now), "2d3h");
    }

    #[test]
    fn crd_rows_follow_printer_columns() {
        let rt = ResourceType {
            printer_columns: vec![PrinterColumn {
                name: "Size".into(),
                type_: "integer".into(),
                json_path: ".spec.size".into(),
                description: String::new(),
                priority: 0,
                format: String::new(),
            }],
            crd: Some("widgets.example.com".into()),
            ..crate::resources::builtins().remove(1)
        };
        let t = render(
            &rt,
            &[json!({"metadata": {"name": "a"}, "spec": {"size": 3}})],
            Include::Metadata,
            true,
            Some(7),
            None,
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Size");
        assert_eq!(t["rows"][0]["cells"], json!(["a", 3]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
