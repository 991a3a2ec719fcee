//! Label and field selectors (pure parsing and matching).

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (equality- and set-based).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Req>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("expected (values) in {s:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn check_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("invalid label key {k:?}"));
    }
    Ok(k.to_string())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                Req::NotExists(check_key(k)?)
            } else if let Some((k, v)) = p.split_once("!=") {
                Req::NotEq(check_key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once("==") {
                Req::Eq(check_key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once('=') {
                Req::Eq(check_key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once(" notin ") {
                Req::NotIn(check_key(k)?, set_values(v)?)
            } else if let Some((k, v)) = p.split_once(" in ") {
                Req::In(check_key(k)?, set_values(v)?)
            } else {
                Req::Exists(check_key(p)?)
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// A parsed `fieldSelector`; only the fields the real server supports for every kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Field-selector fields the real server supports per kind, besides metadata.name/namespace.
/// For events.k8s.io Events the names are given in core/v1 spelling (the stored form).
pub fn supported_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Event") | ("events.k8s.io", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses `s`; `extra` are the kind's supported fields; `rename` maps a requested
    /// field to the stored spelling (events.k8s.io `regarding.*` to core `involvedObject.*`).
    pub fn parse_for(
        s: &str,
        extra: &[&str],
        rename: impl Fn(&str) -> String,
    ) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid field selector {part:?}"));
            };
            let field = rename(field.trim());
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !extra.contains(&field.as_str())
            {
                return Err(format!("field label not supported: {field}"));
            }
            reqs.push((field, eq, value.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    #[cfg(test)]
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::parse_for(s, &[], str::to_string)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let ptr = format!("/{}", field.replace('.', "/"));
            let actual = match obj.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                // `source` selects on source.component.
                Some(Value::Object(o)) => o
                    .get("component")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *eq
        })
    }
}

/// Labels of an object as a map (missing or malformed labels count as none).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_set_based_label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(LabelSelector::parse("app=web").unwrap().matches(&l));
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&l));
        assert!(
            LabelSelector::parse("app in (web, db),tier")
                .unwrap()
                .matches(&l)
        );
        assert!(
            !LabelSelector::parse("tier notin (front)")
                .unwrap()
                .matches(&l)
        );
        assert!(
            LabelSelector::parse("!missing,app==web")
                .unwrap()
                .matches(&l)
        );
        assert!(!LabelSelector::parse("missing").unwrap().matches(&l));
        assert!(LabelSelector::parse("a in x").is_err());
    }

    #[test]
    fn field_selector_on_name_and_namespace_only() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert!(FieldSelector::parse("metadata.name=a").unwrap().matches(&o));
        assert!(
            !FieldSelector::parse("metadata.namespace!=ns")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("status.phase=Running").is_err());
        let ev = json!({"involvedObject": {"name": "w", "uid": "u"}, "type": "Normal"});
        let f = FieldSelector::parse_for(
            "regarding.name=w,type=Normal",
            supported_fields("events.k8s.io", "Event"),
            |f| f.replace("regarding.", "involvedObject."),
        )
        .unwrap();
        assert!(f.matches(&ev));
    }
}
