//! The README's field tables (the "### Fields" section) name every spec field of the CRDs, two
//! levels deep, so that a field added to the API cannot go undocumented for users.

use serde_yaml::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `name` occurs in `text` as a whole identifier (not inside a longer one).
fn names(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn properties(schema: &Value) -> Vec<(String, Value)> {
    let schema = match schema.get("items") {
        Some(items) => items,
        None => schema,
    };
    schema
        .get("properties")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn readme_fields_section_names_every_spec_field() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("### Fields")
        .expect("README has a ### Fields section");
    let end = readme[start + 1..]
        .find("\n#")
        .map_or(readme.len(), |e| start + 1 + e);
    let section = &readme[start..end];
    let mut checked = 0;
    let mut missing = Vec::new();
    for crd in ["edgecomputetargets", "trainingruns", "modelreleases"] {
        let text = std::fs::read_to_string(root().join(format!("crds/{crd}.yaml"))).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let spec = &doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for (field, schema) in properties(spec) {
            for (name, path) in std::iter::once((field.clone(), field.clone())).chain(
                properties(&schema)
                    .into_iter()
                    .map(|(sub, _)| (sub.clone(), format!("{field}.{sub}"))),
            ) {
                checked += 1;
                if !names(section, &name) {
                    missing.push(format!("{crd}: spec.{path}"));
                }
            }
        }
    }
    assert!(checked > 50, "the CRDs were not read: {checked} fields");
    assert!(
        missing.is_empty(),
        "not in README's ### Fields: {missing:#?}"
    );
}
