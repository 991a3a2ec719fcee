//! The checked-in CRDs are exactly what the types generate, and the generated CRDs really carry
//! what the API server needs (some derive setups silently drop validations).

use edgetrain_api::crdgen;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    for (file, crd) in crdgen::all() {
        let want = crdgen::render(&crd).unwrap();
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            have == want,
            "crds/{file} is stale: run `make crds` and commit the result"
        );
    }
}

#[test]
fn every_crd_has_status_printer_columns_short_name_and_category() {
    for (file, crd) in crdgen::all() {
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: status"
        );
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            cols.contains(&"Ready") && cols.contains(&"Age"),
            "{file}: {cols:?}"
        );
        assert!(
            cols.contains(&"Reason") || cols.contains(&"Phase"),
            "{file}: {cols:?}"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["edgetrain".to_string()][..])
        );
        assert_eq!(
            crd.spec.names.short_names.as_ref().map(Vec::len),
            Some(1),
            "{file}"
        );
        assert_eq!(crd.spec.scope, "Namespaced");
    }
}

#[test]
fn generated_yaml_carries_the_cel_rules_and_list_map_conditions() {
    let yaml: String = crdgen::all()
        .iter()
        .map(|(_, c)| crdgen::render(c).unwrap())
        .collect();
    for rule in [
        "self.all(c, isCIDR(c))",
        "has(self.configMapRef) != has(self.blobUri)",
        "has(self.trainingRunRef) != has(self.existingModel)",
        "model.version is immutable once set",
        "command is immutable",
        "vm.image is immutable",
        "self >= duration('5m')",
    ] {
        assert!(yaml.contains(rule), "generated CRDs lack rule {rule:?}");
    }
    assert_eq!(yaml.matches("x-kubernetes-list-type: map").count(), 3);
    assert!(yaml.matches("x-kubernetes-validations").count() >= 30);
}
