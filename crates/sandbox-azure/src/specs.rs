//! The official OpenAPI 2.0 files, embedded, with an index of their operations.
//!
//! Operations are indexed by (method, path template, api-version); `$ref`s are resolved
//! across files by their relative paths, exactly as in Azure/azure-rest-api-specs.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use crate::error::{Error, Result};

macro_rules! spec_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../azure-specs/", $path)))),*]
    };
}

/// Every spec file the simulator serves, by repository-relative path.
const FILES: &[(&str, &str)] = spec_files!(
    "specification/common-types/resource-management/v3/types.json",
    "specification/common-types/resource-management/v3/managedidentity.json",
    "specification/compute/resource-manager/Microsoft.Compute/stable/2020-06-01/compute.json",
    // Trimmed (Disks_Get, Disks_Delete), not verbatim: see azure-specs/INDEX.md.
    "specification/compute/resource-manager/Microsoft.Compute/stable/2019-07-01/disk.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2018-11-01/network.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2018-11-01/networkInterface.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2018-11-01/publicIpAddress.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2018-11-01/networkSecurityGroup.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2018-11-01/virtualNetwork.json",
    "specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2025-12-01/machineLearningServices.json",
    "specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2025-12-01/mfe.json",
);

/// A schema (or any node) inside one spec file.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub file: usize,
    pub value: &'a Value,
}

/// A definition's address: file index + JSON pointer.
type DefKey = (usize, String);

/// One operation of one api-version.
#[derive(Debug)]
pub struct Operation {
    pub method: String,
    pub template: String,
    pub api_version: String,
    pub operation_id: String,
    pub file: usize,
    pub long_running: bool,
    /// `x-ms-long-running-operation-options.final-state-via`, lower-cased.
    pub final_state_via: Option<String>,
    pub pageable: bool,
    /// Response status codes the spec declares (e.g. "200", "201", "202").
    pub responses: Vec<String>,
    regex: Regex,
    param_names: Vec<String>,
    literals: usize,
}

/// A request path matched to a spec path template.
#[derive(Debug)]
pub struct PathMatch<'a> {
    pub template: &'a str,
    pub params: HashMap<String, String>,
    /// Operations for that template and method, one per api-version.
    pub operations: Vec<&'a Operation>,
}

#[derive(Debug)]
pub struct Specs {
    paths: Vec<&'static str>,
    docs: Vec<Value>,
    ops: Vec<Operation>,
    /// definition → definitions that list it in `allOf` (polymorphic children).
    children: HashMap<DefKey, Vec<DefKey>>,
    patterns: HashMap<String, Regex>,
}

impl Specs {
    /// Parse the embedded files and build the indexes. Fails on invalid JSON or regex.
    pub fn load() -> Result<Self> {
        let mut docs = Vec::with_capacity(FILES.len());
        for (path, text) in FILES {
            let doc: Value = serde_json::from_str(text).map_err(|source| Error::SpecJson {
                path: (*path).to_owned(),
                source,
            })?;
            docs.push(doc);
        }
        let mut specs = Self {
            paths: FILES.iter().map(|(p, _)| *p).collect(),
            docs,
            ops: Vec::new(),
            children: HashMap::new(),
            patterns: HashMap::new(),
        };
        specs.index_operations()?;
        specs.index_children();
        specs.compile_patterns()?;
        Ok(specs)
    }

    pub fn file_path(&self, file: usize) -> &str {
        self.paths[file]
    }

    pub fn operation_json(&self, op: &Operation) -> &Value {
        &self.docs[op.file]["paths"][&op.template][op.method.to_ascii_lowercase()]
    }

    pub fn pattern(&self, pattern: &str) -> Option<&Regex> {
        self.patterns.get(pattern)
    }

    /// Resource-provider namespaces that have at least one operation (lower-cased).
    pub fn knows_namespace(&self, namespace: &str) -> bool {
        let needle = format!("/providers/{}/", namespace.to_ascii_lowercase());
        self.ops
            .iter()
            .any(|op| op.template.to_ascii_lowercase().contains(&needle))
    }

    fn index_operations(&mut self) -> Result<()> {
        for (file, doc) in self.docs.iter().enumerate() {
            let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
                continue;
            };
            let api_version = doc["info"]["version"]
                .as_str()
                .ok_or_else(|| Error::Spec {
                    path: self.paths[file].to_owned(),
                    message: "info.version missing".into(),
                })?
                .to_owned();
            for (template, item) in paths {
                let (regex, param_names, literals) = template_regex(template)?;
                let Some(methods) = item.as_object() else {
                    continue;
                };
                for (method, op) in methods {
                    if method == "parameters" {
                        continue;
                    }
                    self.ops.push(Operation {
                        method: method.to_ascii_uppercase(),
                        template: template.clone(),
                        api_version: api_version.clone(),
                        operation_id: op["operationId"].as_str().unwrap_or_default().to_owned(),
                        file,
                        long_running: op["x-ms-long-running-operation"].as_bool() == Some(true),
                        final_state_via:
                            op["x-ms-long-running-operation-options"]["final-state-via"]
                                .as_str()
                                .map(str::to_ascii_lowercase),
                        pageable: op.get("x-ms-pageable").is_some(),
                        responses: op["responses"]
                            .as_object()
                            .map(|r| r.keys().cloned().collect())
                            .unwrap_or_default(),
                        regex: regex.clone(),
                        param_names: param_names.clone(),
                        literals,
                    });
                }
            }
        }
        Ok(())
    }

    fn index_children(&mut self) {
        let mut children: HashMap<DefKey, Vec<DefKey>> = HashMap::new();
        for (file, doc) in self.docs.iter().enumerate() {
            let Some(defs) = doc.get("definitions").and_then(Value::as_object) else {
                continue;
            };
            for (name, def) in defs {
                let Some(all_of) = def.get("allOf").and_then(Value::as_array) else {
                    continue;
                };
                for parent in all_of {
                    if let Some(reference) = parent.get("$ref").and_then(Value::as_str)
                        && let Some(key) = self.ref_key(file, reference)
                    {
                        children
                            .entry(key)
                            .or_default()
                            .push((file, format!("/definitions/{name}")));
                    }
                }
            }
        }
        self.children = children;
    }

    fn compile_patterns(&mut self) -> Result<()> {
        fn collect(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(p)) = map.get("pattern") {
                        out.push(p.clone());
                    }
                    map.values().for_each(|v| collect(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        self.docs.iter().for_each(|d| collect(d, &mut all));
        for pattern in all {
            if self.patterns.contains_key(&pattern) {
                continue;
            }
            let regex = Regex::new(&pattern).map_err(|e| Error::Spec {
                path: "(pattern)".into(),
                message: format!("pattern {pattern:?} does not compile: {e}"),
            })?;
            self.patterns.insert(pattern, regex);
        }
        Ok(())
    }

    /// Find the operations whose template matches `path` for `method`. The template with the most
    /// literal segments wins when several match.
    pub fn match_path(&self, method: &str, path: &str) -> Option<PathMatch<'_>> {
        let mut best: Option<(&Operation, regex::Captures<'_>)> = None;
        for op in self.ops.iter().filter(|op| op.method == method) {
            if let Some(caps) = op.regex.captures(path)
                && best.as_ref().is_none_or(|(b, _)| op.literals > b.literals)
            {
                best = Some((op, caps));
            }
        }
        let (op, caps) = best?;
        let params = op
            .param_names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                caps.get(i + 1).map(|m| {
                    let value = percent_decode(m.as_str());
                    (name.clone(), value)
                })
            })
            .collect();
        let operations = self
            .ops
            .iter()
            .filter(|o| o.method == method && o.template.eq_ignore_ascii_case(&op.template))
            .collect();
        Some(PathMatch {
            template: &op.template,
            params,
            operations,
        })
    }

    /// Does any method have this path?
    pub fn path_exists_any_method(&self, path: &str) -> bool {
        self.ops.iter().any(|op| op.regex.is_match(path))
    }

    /// Follow `$ref`s until a node without one. `None` when a reference points into a file or
    /// definition that is not part of the saved set.
    pub fn deref<'a>(&'a self, mut node: Node<'a>) -> Option<Node<'a>> {
        for _ in 0..64 {
            let Some(reference) = node.value.get("$ref").and_then(Value::as_str) else {
                return Some(node);
            };
            let (file, pointer) = self.ref_key(node.file, reference)?;
            let value = self.docs[file].pointer(&pointer)?;
            node = Node { file, value };
        }
        None
    }

    /// Polymorphic subtype of `base` whose discriminator value is `value` (searched transitively).
    pub fn subtype<'a>(&'a self, base: DefKey, value: &str) -> Option<Node<'a>> {
        let mut stack = self.children.get(&base).cloned().unwrap_or_default();
        while let Some(key) = stack.pop() {
            let def = self.docs[key.0].pointer(&key.1)?;
            if discriminator_value(&key.1, def) == value {
                return Some(Node {
                    file: key.0,
                    value: def,
                });
            }
            if let Some(more) = self.children.get(&key) {
                stack.extend(more.iter().cloned());
            }
        }
        None
    }

    /// All discriminator values below `base` (for error messages).
    pub fn subtype_values(&self, base: DefKey) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = self.children.get(&base).cloned().unwrap_or_default();
        while let Some(key) = stack.pop() {
            if let Some(def) = self.docs[key.0].pointer(&key.1) {
                out.push(discriminator_value(&key.1, def).to_owned());
            }
            if let Some(more) = self.children.get(&key) {
                stack.extend(more.iter().cloned());
            }
        }
        out.sort();
        out
    }

    /// Address of the node, if it is a definition of some file (used as discriminator base key).
    pub fn key_of(&self, node: Node<'_>) -> Option<DefKey> {
        let defs = self.docs[node.file].get("definitions")?.as_object()?;
        defs.iter()
            .find(|(_, v)| std::ptr::eq(*v, node.value))
            .map(|(name, _)| (node.file, format!("/definitions/{name}")))
    }

    /// Resolve a `$ref` string relative to the file it appears in.
    fn ref_key(&self, from: usize, reference: &str) -> Option<DefKey> {
        let (file_part, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let file = if file_part.is_empty() {
            from
        } else {
            let target = join_relative(self.paths[from], file_part);
            self.paths.iter().position(|p| *p == target)?
        };
        Some((file, pointer.to_owned()))
    }

    /// `$ref`s (outside `x-ms-examples`) that point at files or definitions not in the saved set.
    pub fn unresolved_refs(&self) -> Vec<String> {
        fn walk(specs: &Specs, file: usize, value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        if k == "x-ms-examples" {
                            continue;
                        }
                        if k == "$ref"
                            && let Some(r) = v.as_str()
                        {
                            let ok = specs
                                .ref_key(file, r)
                                .and_then(|(f, p)| specs.docs[f].pointer(&p))
                                .is_some();
                            if !ok {
                                out.push(format!("{} -> {r}", specs.paths[file]));
                            }
                        } else {
                            walk(specs, file, v, out);
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(specs, file, v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for (file, doc) in self.docs.iter().enumerate() {
            walk(self, file, doc, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }
}

fn discriminator_value<'a>(pointer: &'a str, def: &'a Value) -> &'a str {
    def.get("x-ms-discriminator-value")
        .and_then(Value::as_str)
        .unwrap_or_else(|| pointer.rsplit('/').next().unwrap_or_default())
}

/// Join `relative` onto the directory of `from`, resolving `.` and `..`.
fn join_relative(from: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for seg in relative.split('/') {
        match seg {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// Compile a path template into a case-insensitive anchored regex (ARM paths are case-insensitive).
fn template_regex(template: &str) -> Result<(Regex, Vec<String>, usize)> {
    let mut pattern = String::from("(?i)^");
    let mut names = Vec::new();
    let mut literals = 0;
    for segment in template.split('/').filter(|s| !s.is_empty()) {
        pattern.push('/');
        if !segment.contains('{') {
            literals += 1;
        }
        let mut rest = segment;
        while let Some(start) = rest.find('{') {
            pattern.push_str(&regex::escape(&rest[..start]));
            let end = rest[start..]
                .find('}')
                .map(|e| start + e)
                .ok_or_else(|| Error::Spec {
                    path: template.to_owned(),
                    message: "unbalanced braces in path template".into(),
                })?;
            names.push(rest[start + 1..end].to_owned());
            pattern.push_str("([^/]+)");
            rest = &rest[end + 1..];
        }
        pattern.push_str(&regex::escape(rest));
    }
    pattern.push('$');
    let regex = Regex::new(&pattern).map_err(|e| Error::Spec {
        path: template.to_owned(),
        message: e.to_string(),
    })?;
    Ok((regex, names, literals))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_relative_paths() {
        assert_eq!(
            join_relative(
                "specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2025-12-01/mfe.json",
                "../../../../../common-types/resource-management/v3/types.json"
            ),
            "specification/common-types/resource-management/v3/types.json"
        );
        assert_eq!(join_relative("a/b/c.json", "./d.json"), "a/b/d.json");
    }

    #[test]
    fn template_matches_case_insensitively() {
        let (re, names, literals) = template_regex(
            "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/vms/{vmName}",
        )
        .unwrap();
        assert!(re.is_match("/SUBSCRIPTIONS/s1/providers/microsoft.compute/VMS/a"));
        assert!(!re.is_match("/subscriptions/s1/providers/microsoft.compute/vms/a/b"));
        assert_eq!(names, vec!["subscriptionId", "vmName"]);
        assert_eq!(literals, 4);
    }

    #[test]
    fn loads_and_indexes_the_saved_specs() {
        let specs = Specs::load().unwrap();
        let m = specs
            .match_path(
                "PUT",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
            )
            .unwrap();
        assert_eq!(m.params["vmName"], "vm1");
        assert_eq!(m.operations.len(), 1);
        assert_eq!(m.operations[0].api_version, "2020-06-01");
        assert!(m.operations[0].long_running);
        let disk = specs
            .match_path(
                "DELETE",
                "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/disks/vm1_OsDisk_1_0a",
            )
            .unwrap();
        assert_eq!(disk.operations[0].api_version, "2019-07-01");
        assert!(disk.operations[0].long_running);
        assert!(specs.knows_namespace("microsoft.network"));
        assert!(!specs.knows_namespace("Microsoft.Storage"));
    }

    #[test]
    fn only_documented_refs_are_unresolved() {
        let specs = Specs::load().unwrap();
        let unresolved = specs.unresolved_refs();
        // The index says which siblings were not saved; nothing else may be missing.
        let allowed = [
            "applicationGateway.json",
            "loadBalancer.json",
            "applicationSecurityGroup.json",
            "virtualNetworkTap.json",
            "interfaceEndpoint.json",
            "routeTable.json",
            "serviceEndpointPolicy.json",
            "networkProfile.json",
            "registries.json",
            "#/definitions/DdoSSettings",
        ];
        assert!(!unresolved.is_empty());
        for r in &unresolved {
            assert!(
                allowed.iter().any(|a| r.contains(a)),
                "unexpected unresolved ref {r}"
            );
        }
    }
}
