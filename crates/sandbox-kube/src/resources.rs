//! The kinds the server serves: fixed built-ins plus one entry per served CRD version.

use serde_json::Value;

/// One `additionalPrinterColumns` entry of a CRD.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
    pub format: String,
}

/// Everything the server needs to know to serve one group/version/resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// `openAPIV3Schema` of a CRD version; built-ins are not schema-validated.
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    /// Whether `metadata.generation` is maintained (CRs, CRDs, Namespaces).
    pub tracks_generation: bool,
    /// Name of the CRD that defines it; `None` for built-ins.
    pub crd: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// Storage is shared by every version of a group/resource, as in etcd; events.k8s.io
    /// Events share core Events' storage, as on the real server.
    pub fn storage_key(&self) -> (String, String) {
        if self.is_events_v1() {
            return (String::new(), "events".into());
        }
        (self.group.clone(), self.plural.clone())
    }

    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io" && self.kind == "Event"
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short_names: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: false,
        schema: None,
        printer_columns: Vec::new(),
        tracks_generation: false,
        crd: None,
    }
}

/// The built-in kinds this server offers.
pub fn builtins() -> Vec<ResourceType> {
    let mut ns = builtin("", "v1", "Namespace", "namespaces", false, &["ns"]);
    ns.status_subresource = true;
    let mut crd = builtin(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
    );
    crd.status_subresource = true;
    crd.tracks_generation = true;
    vec![
        ns,
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
        builtin("", "v1", "Secret", "secrets", true, &[]),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
        builtin("", "v1", "Event", "events", true, &["ev"]),
        builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"]),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
        crd,
    ]
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn strings_at(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The resource types a CRD object serves (one per served version).
/// Returns an error message when the CRD lacks what the real server requires.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let name = str_at(crd, "/metadata/name").ok_or("metadata.name is required")?;
    let group = str_at(crd, "/spec/group").ok_or("spec.group is required")?;
    let kind = str_at(crd, "/spec/names/kind").ok_or("spec.names.kind is required")?;
    let plural = str_at(crd, "/spec/names/plural").ok_or("spec.names.plural is required")?;
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let scope = str_at(crd, "/spec/scope").ok_or("spec.scope is required")?;
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => return Err(format!("spec.scope: Unsupported value: \"{other}\"")),
    };
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?;
    let singular = str_at(crd, "/spec/names/singular")
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = str_at(crd, "/spec/names/listKind")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let mut out = Vec::new();
    for v in versions {
        let vname = str_at(v, "/name").ok_or("spec.versions[].name is required")?;
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: str_at(c, "/name").unwrap_or_default().to_string(),
                        type_: str_at(c, "/type").unwrap_or("string").to_string(),
                        json_path: str_at(c, "/jsonPath").unwrap_or_default().to_string(),
                        description: str_at(c, "/description").unwrap_or_default().to_string(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        format: str_at(c, "/format").unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceType {
            group: group.into(),
            version: vname.into(),
            kind: kind.into(),
            list_kind: list_kind.clone(),
            plural: plural.into(),
            singular: singular.clone(),
            namespaced,
            short_names: strings_at(crd, "/spec/names/shortNames"),
            categories: strings_at(crd, "/spec/names/categories"),
            status_subresource: v.pointer("/subresources/status").is_some(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns,
            tracks_generation: true,
            crd: Some(name.into()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"], "categories": ["all"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn crd_serves_only_served_versions_with_its_names() {
        let types = from_crd(&crd()).unwrap();
        assert_eq!(types.len(), 1);
        let t = &types[0];
        assert_eq!(t.api_version(), "example.com/v1");
        assert_eq!(t.singular, "widget");
        assert_eq!(t.short_names, vec!["wd"]);
        assert!(t.status_subresource);
        assert_eq!(t.printer_columns[0].json_path, ".spec.size");
    }

    #[test]
    fn crd_name_must_match_plural_and_group() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong.example.com");
        assert!(from_crd(&c).unwrap_err().contains("spec.names.plural"));
    }
}
