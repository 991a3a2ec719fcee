//! Provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate, pushed as an OCI
//! 1.1 referrer (`subject`) of each digest it describes. Unsigned: signing (DSSE/Sigstore or
//! Notation) wraps this statement later.

use std::collections::BTreeMap;

use oci_spec::image::Descriptor;
use serde_json::{Value, json};

use crate::{
    Result,
    manifest::{Blob, ManifestBytes, canonical_json, oci_manifest},
};

pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// What the operator knows about how the artifacts were made.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildFacts {
    pub builder_id: String,
    pub build_type: String,
    /// AML workspace/job/model, base image reference...
    pub external_parameters: Value,
    /// `(uri, sha256 hex or digest string)` of inputs: base image, job outputs, code commit.
    pub resolved_dependencies: Vec<(String, String)>,
    /// CR uid/generation.
    pub invocation_id: String,
}

/// The statement over `subjects` (`(name, "sha256:<hex>")`).
pub fn statement(subjects: &[(String, String)], facts: &BuildFacts) -> Value {
    let digest_obj = |d: &str| {
        let (alg, hex) = d.split_once(':').unwrap_or(("sha256", d));
        json!({ alg: hex })
    };
    json!({
        "_type": STATEMENT_V1,
        "subject": subjects.iter().map(|(name, d)| json!({"name": name, "digest": digest_obj(d)})).collect::<Vec<_>>(),
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": facts.build_type,
                "externalParameters": facts.external_parameters,
                "resolvedDependencies": facts.resolved_dependencies.iter()
                    .map(|(uri, d)| json!({"uri": uri, "digest": digest_obj(d)})).collect::<Vec<_>>(),
            },
            "runDetails": {
                "builder": {"id": facts.builder_id},
                "metadata": {"invocationId": facts.invocation_id},
            },
        },
    })
}

/// The statement as a blob, and one referrer manifest per subject descriptor.
pub fn referrers(statement: &Value, subjects: &[Descriptor]) -> Result<(Blob, Vec<ManifestBytes>)> {
    let layer = Blob::json(IN_TOTO_MEDIA_TYPE, canonical_json(statement)?)?;
    let empty = Blob::empty_config();
    let annotations = BTreeMap::from([(
        "in-toto.io/predicate-type".to_owned(),
        SLSA_PROVENANCE_V1.to_owned(),
    )]);
    let manifests = subjects
        .iter()
        .map(|s| {
            oci_manifest(
                Some(IN_TOTO_MEDIA_TYPE),
                &empty.descriptor,
                vec![layer.descriptor.clone()],
                Some(s.clone()),
                &annotations,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((layer, manifests))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::sha256_digest;

    #[test]
    fn statement_names_both_subjects_and_referrers_point_at_them() {
        let facts = BuildFacts {
            builder_id: "https://edgetrain.dev/operator@v0.1.0".into(),
            build_type: "https://edgetrain.dev/ModelRelease/v1".into(),
            external_parameters: json!({"model": "scorer:3"}),
            resolved_dependencies: vec![("oci://reg/base/tiny".into(), sha256_digest(b"b"))],
            invocation_id: "uid/1".into(),
        };
        let a = sha256_digest(b"artifact");
        let i = sha256_digest(b"image");
        let st = statement(
            &[
                ("models/scorer".into(), a.clone()),
                ("serving/scorer".into(), i.clone()),
            ],
            &facts,
        );
        assert_eq!(
            st["subject"][0]["digest"]["sha256"],
            a.trim_start_matches("sha256:")
        );
        assert_eq!(
            st["subject"][1]["digest"]["sha256"],
            i.trim_start_matches("sha256:")
        );
        assert_eq!(st["predicateType"], SLSA_PROVENANCE_V1);
        let subjects = [
            crate::manifest::descriptor(crate::manifest::OCI_MANIFEST, &a, 10, &BTreeMap::new())
                .unwrap(),
            crate::manifest::descriptor(crate::manifest::OCI_MANIFEST, &i, 11, &BTreeMap::new())
                .unwrap(),
        ];
        let (blob, ms) = referrers(&st, &subjects).unwrap();
        assert_eq!(ms.len(), 2);
        for (m, want) in ms.iter().zip([&a, &i]) {
            let v: Value = serde_json::from_slice(&m.bytes).unwrap();
            assert_eq!(v["subject"]["digest"], **want);
            assert_eq!(v["artifactType"], IN_TOTO_MEDIA_TYPE);
            assert_eq!(v["layers"][0]["digest"], blob.digest());
            assert_eq!(v["config"]["mediaType"], crate::manifest::OCI_EMPTY);
        }
    }
}
