//! A small checker of JSON bodies against the saved Azure OpenAPI files: every property we send
//! must exist with the right type, required ones must be present, read-only ones absent,
//! discriminators must name a known subtype. Only what our bodies need; not the simulator.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// The saved specs: `EDGETRAIN_AZURE_SPECS`, else `shared/reference/azure-specs` found by walking
/// up from this crate (the repo's sibling `shared/`). Panics if absent: tests never skip.
pub fn specs_root() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGETRAIN_AZURE_SPECS") {
        return PathBuf::from(p);
    }
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let cand = d.join("shared/reference/azure-specs");
        if cand.is_dir() {
            return cand;
        }
        dir = d.parent();
    }
    panic!(
        "azure-specs not found: set EDGETRAIN_AZURE_SPECS or keep shared/ beside the repository"
    );
}

pub struct Specs {
    root: PathBuf,
    files: std::cell::RefCell<HashMap<PathBuf, &'static Value>>,
}

impl Specs {
    pub fn new() -> Self {
        Self {
            root: specs_root(),
            files: Default::default(),
        }
    }

    fn file(&self, p: &Path) -> &'static Value {
        let canon = p
            .canonicalize()
            .unwrap_or_else(|e| panic!("spec {}: {e}", p.display()));
        if let Some(v) = self.files.borrow().get(&canon) {
            return v;
        }
        let text = std::fs::read_to_string(&canon).unwrap();
        let v: &'static Value = Box::leak(Box::new(serde_json::from_str(&text).unwrap()));
        self.files.borrow_mut().insert(canon, v);
        v
    }

    /// Resolve `file#/pointer` relative to `from`; returns (file, definition name, schema).
    fn resolve(&self, from: &Path, r: &str) -> (PathBuf, Option<String>, &'static Value) {
        let (f, ptr) = r.split_once('#').unwrap_or((r, ""));
        let file = if f.is_empty() {
            from.to_path_buf()
        } else {
            from.parent().unwrap().join(f)
        };
        let file = file
            .canonicalize()
            .unwrap_or_else(|e| panic!("$ref {r} from {}: {e}", from.display()));
        let doc = self.file(&file);
        let schema = doc
            .pointer(ptr)
            .unwrap_or_else(|| panic!("$ref {r} not found"));
        let def = ptr.strip_prefix("/definitions/").map(str::to_string);
        (file, def, schema)
    }

    /// Whether spec `rel` declares `method` on a path template matching `path`, and every name
    /// in `query` as a query parameter of that operation. Returns what is wrong, if anything.
    pub fn check_operation(
        &self,
        rel: &str,
        method: &str,
        path: &str,
        query: &[String],
    ) -> Result<(), String> {
        let file = self.root.join(rel).canonicalize().unwrap();
        let doc = self.file(&file);
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for (template, ops) in doc["paths"].as_object().unwrap() {
            let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
            let matches = t.len() == segs.len()
                && t.iter().zip(&segs).all(|(a, b)| {
                    (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) || a == b
                });
            if !matches {
                continue;
            }
            let Some(op) = ops.get(method.to_ascii_lowercase()) else {
                return Err(format!("{template} has no {method}"));
            };
            let mut declared = Vec::new();
            let params = ops
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for p in params.chain(
                op.get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            ) {
                let p = match p.get("$ref").and_then(Value::as_str) {
                    Some(r) => self.resolve(&file, r).2,
                    None => p,
                };
                if p["in"] == "query" {
                    declared.push(p["name"].as_str().unwrap().to_string());
                }
            }
            let missing: Vec<_> = query.iter().filter(|q| !declared.contains(q)).collect();
            return if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template}: query {missing:?} not declared (declared {declared:?})"
                ))
            };
        }
        Err(format!("no path template in {rel} matches {path}"))
    }

    /// Validate `value` against definition `def` of spec `rel` (relative to the specs root).
    pub fn check(&self, rel: &str, def: &str, value: &Value) -> Vec<String> {
        let file = self.root.join(rel).canonicalize().unwrap();
        let (file, name, schema) = self.resolve(&file, &format!("#/definitions/{def}"));
        let mut errors = Vec::new();
        self.validate(
            &file,
            name.as_deref(),
            schema,
            value,
            "$",
            false,
            &mut errors,
        );
        errors
    }

    #[allow(clippy::too_many_arguments)]
    fn collect(
        &self,
        file: &Path,
        name: Option<&str>,
        schema: &'static Value,
        props: &mut HashMap<String, (PathBuf, &'static Value)>,
        required: &mut Vec<String>,
        additional: &mut Option<(PathBuf, &'static Value)>,
        discs: &mut Vec<(PathBuf, String, String)>,
        types: &mut Vec<String>,
    ) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let (f, n, s) = self.resolve(file, r);
            self.collect(
                &f,
                n.as_deref(),
                s,
                props,
                required,
                additional,
                discs,
                types,
            );
            return;
        }
        if let (Some(d), Some(n)) = (schema.get("discriminator").and_then(Value::as_str), name) {
            discs.push((file.to_path_buf(), n.to_string(), d.to_string()));
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            types.push(t.to_string());
        }
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.collect(file, None, part, props, required, additional, discs, types);
        }
        if let Some(p) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in p {
                props.insert(k.clone(), (file.to_path_buf(), v));
            }
        }
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            required.push(r.as_str().unwrap().to_string());
        }
        if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            *additional = Some((file.to_path_buf(), a));
        }
    }

    fn subtype(
        &self,
        file: &Path,
        base: &str,
        value: &str,
    ) -> Option<(PathBuf, String, &'static Value)> {
        let doc = self.file(file);
        for (name, def) in doc["definitions"].as_object()? {
            let extends = def
                .get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|p| {
                    p.get("$ref")
                        .and_then(Value::as_str)
                        .is_some_and(|r| r.ends_with(&format!("#/definitions/{base}")))
                });
            let dv = def
                .get("x-ms-discriminator-value")
                .and_then(Value::as_str)
                .unwrap_or(name);
            if extends && dv == value {
                return Some((file.to_path_buf(), name.clone(), def));
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn validate(
        &self,
        file: &Path,
        name: Option<&str>,
        schema: &'static Value,
        value: &Value,
        at: &str,
        dispatched: bool,
        errors: &mut Vec<String>,
    ) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let (f, n, s) = self.resolve(file, r);
            return self.validate(&f, n.as_deref(), s, value, at, dispatched, errors);
        }
        let (mut props, mut required, mut additional, mut discs, mut types) =
            (HashMap::new(), Vec::new(), None, Vec::new(), Vec::new());
        self.collect(
            file,
            name,
            schema,
            &mut props,
            &mut required,
            &mut additional,
            &mut discs,
            &mut types,
        );
        if !dispatched
            && let Some((dfile, base, prop)) = discs.first()
            && let Some(tag) = value.get(prop).and_then(Value::as_str)
        {
            match self.subtype(dfile, base, tag) {
                Some((f, n, s)) => return self.validate(&f, Some(&n), s, value, at, true, errors),
                None => {
                    // A base that is itself concrete (e.g. Compute types with no body) is fine
                    // only if the spec lists the value in the property's enum.
                    errors.push(format!(
                        "{at}.{prop}: no subtype of {base} has discriminator value {tag:?}"
                    ));
                    return;
                }
            }
        }
        let ty = types.first().map(String::as_str).or(if props.is_empty() {
            None
        } else {
            Some("object")
        });
        let type_ok = match ty {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !type_ok {
            errors.push(format!("{at}: expected {}, got {value}", ty.unwrap()));
            return;
        }
        if let (Some(e), Some(s)) = (schema.get("enum").and_then(Value::as_array), value.as_str())
            && !e.iter().any(|x| x == s)
        {
            errors.push(format!("{at}: {s:?} is not one of {e:?}"));
        }
        if let Some(arr) = value.as_array() {
            if let Some(items) = schema.get("items") {
                for (i, v) in arr.iter().enumerate() {
                    self.validate(file, None, items, v, &format!("{at}[{i}]"), false, errors);
                }
            }
            return;
        }
        let Some(obj) = value.as_object() else { return };
        for r in &required {
            if !obj.contains_key(r) {
                errors.push(format!("{at}: missing required property {r:?}"));
            }
        }
        for (k, v) in obj {
            let here = format!("{at}.{k}");
            if let Some((f, s)) = props.get(k) {
                if s.get("readOnly").and_then(Value::as_bool) == Some(true) {
                    errors.push(format!("{here}: read-only property sent"));
                }
                self.validate(f, None, s, v, &here, false, errors);
            } else if let Some((f, s)) = &additional {
                self.validate(f, None, s, v, &here, false, errors);
            } else if !discs.iter().any(|(_, _, p)| p == k) {
                errors.push(format!("{here}: unknown property"));
            }
        }
    }
}
