//! The serving image, assembled without a daemon (like `crane append`): the base image's
//! layers by reference, the model layers appended as uncompressed image layers (the very blobs
//! of the ModelPack artifact), a new config (env, labels, `rootfs.diff_ids`, history) and a
//! manifest in the base's media-type family, since mixed OCI/Docker manifests are rejected by
//! CRI-O and skopeo.

use std::collections::BTreeMap;

use oci_spec::image::ImageManifest;
use serde_json::{Value, json};

use crate::{
    Error, Result,
    manifest::{
        Blob, Family, ManifestBytes, canonical_json, descriptor, image_manifest, to_hash_map,
    },
};

/// A base image as read from the registry (one platform).
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Repository holding the base, in the same registry (the mount source).
    pub repository: String,
    /// What `org.opencontainers.image.base.name` says, e.g. `myacr.azurecr.io/base/py:3.11`.
    pub name: String,
    pub manifest_digest: String,
    pub family: Family,
    pub manifest: ImageManifest,
    /// The config as JSON, kept whole so fields we do not know survive.
    pub config: Value,
}

/// What the serving image adds to the base.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingOptions {
    /// Set (or replace) in `config.Env`, e.g. `AZUREML_MODEL_DIR=/model`.
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Replace the base's entrypoint / command when given.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// Seconds since the epoch, from the input (the model's creation), never the clock.
    pub created: i64,
    /// Manifest annotations (OCI family only; Docker manifests have none).
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ServingImage {
    pub config: Blob,
    pub manifest: ManifestBytes,
    /// Descriptors of the appended layers as the image references them.
    pub appended: Vec<Blob>,
}

fn set_env(env: &mut Vec<Value>, key: &str, value: &str) {
    let prefix = format!("{key}=");
    env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
    env.push(json!(format!("{key}={value}")));
}

/// Assemble config and manifest. Pure: the layers come digested.
pub fn serving_image(
    base: &BaseImage,
    model_layers: &[Blob],
    opts: &ServingOptions,
) -> Result<ServingImage> {
    let created = chrono::DateTime::from_timestamp(opts.created, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .ok_or_else(|| Error::Invalid(format!("timestamp {} out of range", opts.created)))?;
    let mut config = base.config.clone();
    let root = config
        .as_object_mut()
        .ok_or_else(|| Error::Invalid("base image config is not a JSON object".into()))?;
    let diff_ids = root
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}))
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::Invalid("base image config has no rootfs.diff_ids".into()))?;
    // Uncompressed layers: the diff id is the layer digest.
    diff_ids.extend(model_layers.iter().map(|l| json!(l.digest())));
    let history = root
        .entry("history")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| Error::Invalid("base image config history is not a list".into()))?;
    for layer in model_layers {
        let what = layer
            .descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::modelpack::ANNOTATION_FILEPATH))
            .cloned()
            .unwrap_or_else(|| layer.digest());
        history.push(json!({"created": created, "created_by": format!("edgetrain: add {what}")}));
    }
    root.insert("created".into(), json!(created));
    let cfg = root
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Error::Invalid("base image config.config is not an object".into()))?;
    if !opts.env.is_empty() {
        let env = cfg.entry("Env").or_insert_with(|| json!([]));
        if env.is_null() {
            *env = json!([]);
        }
        let env = env
            .as_array_mut()
            .ok_or_else(|| Error::Invalid("base image Env is not a list".into()))?;
        for (k, v) in &opts.env {
            set_env(env, k, v);
        }
    }
    if !opts.labels.is_empty() {
        let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
        if labels.is_null() {
            *labels = json!({});
        }
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| Error::Invalid("base image Labels is not an object".into()))?;
        for (k, v) in &opts.labels {
            labels.insert(k.clone(), json!(v));
        }
    }
    if let Some(e) = &opts.entrypoint {
        cfg.insert("Entrypoint".into(), json!(e));
    }
    if let Some(c) = &opts.cmd {
        cfg.insert("Cmd".into(), json!(c));
    }
    let family = base.family;
    let config = Blob::json(family.config(), canonical_json(&config)?)?;
    let appended = model_layers
        .iter()
        .map(|l| {
            let mut annotations = BTreeMap::new();
            if family == Family::Oci {
                annotations.extend(l.descriptor.annotations().clone().unwrap_or_default());
            }
            Ok(Blob {
                descriptor: descriptor(
                    family.layer_tar(),
                    &l.digest(),
                    l.descriptor.size(),
                    &annotations,
                )?,
                content: l.content.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut layers = base.manifest.layers().clone();
    layers.extend(appended.iter().map(|b| b.descriptor.clone()));
    let mut m = image_manifest(family.manifest(), &config.descriptor, layers)?;
    if family == Family::Oci {
        let mut annotations = opts.annotations.clone();
        annotations.insert(
            "org.opencontainers.image.base.name".into(),
            base.name.clone(),
        );
        annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            base.manifest_digest.clone(),
        );
        annotations.insert("org.opencontainers.image.created".into(), created);
        m.set_annotations(Some(to_hash_map(&annotations)));
    }
    Ok(ServingImage {
        manifest: ManifestBytes::of(family.manifest(), &m)?,
        config,
        appended,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        content::{Content, sha256_digest},
        manifest::{DOCKER_LAYER_TAR, OCI_LAYER_TAR},
    };

    fn base(family: Family) -> BaseImage {
        let layer = sha256_digest(b"base-layer");
        let manifest: ImageManifest = serde_json::from_value(json!({
            "schemaVersion": 2,
            "mediaType": family.manifest(),
            "config": {"mediaType": family.config(), "digest": sha256_digest(b"cfg"), "size": 3},
            "layers": [{"mediaType": family.layer_tar(), "digest": layer, "size": 10}],
        }))
        .unwrap();
        BaseImage {
            repository: "base/tiny".into(),
            name: "reg/base/tiny:1".into(),
            manifest_digest: sha256_digest(b"m"),
            family,
            manifest,
            config: json!({
                "architecture": "amd64", "os": "linux", "x-unknown": 1,
                "config": {"Env": ["PATH=/bin", "AZUREML_MODEL_DIR=/old"], "Cmd": ["/bin/serve"]},
                "rootfs": {"type": "layers", "diff_ids": [layer]},
                "history": [{"created_by": "base"}],
            }),
        }
    }

    fn model_layer() -> Blob {
        let bytes = b"tar-bytes".to_vec();
        let mut ann = BTreeMap::new();
        ann.insert(
            crate::modelpack::ANNOTATION_FILEPATH.to_owned(),
            "model/m.onnx".to_owned(),
        );
        Blob {
            descriptor: descriptor(
                crate::modelpack::WEIGHT_TAR,
                &sha256_digest(&bytes),
                9,
                &ann,
            )
            .unwrap(),
            content: Content::from_bytes(bytes),
        }
    }

    fn opts() -> ServingOptions {
        ServingOptions {
            env: BTreeMap::from([("AZUREML_MODEL_DIR".into(), "/model".into())]),
            labels: BTreeMap::from([("org.example.model".into(), "scorer:3".into())]),
            created: 1_764_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn appends_layer_and_updates_config_keeping_unknown_fields() {
        let img = serving_image(&base(Family::Oci), &[model_layer()], &opts()).unwrap();
        let m: Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(m["mediaType"], Family::Oci.manifest());
        assert_eq!(m["layers"].as_array().unwrap().len(), 2);
        assert_eq!(m["layers"][1]["mediaType"], OCI_LAYER_TAR);
        assert_eq!(m["layers"][1]["digest"], model_layer().digest());
        assert_eq!(
            m["annotations"]["org.opencontainers.image.base.name"],
            "reg/base/tiny:1"
        );
        let cfg: Value = futures::executor::block_on(async {
            use futures::StreamExt;
            let bytes = img
                .config
                .content
                .stream_from(0)
                .next()
                .await
                .unwrap()
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        });
        assert_eq!(cfg["x-unknown"], 1);
        assert_eq!(
            cfg["config"]["Env"],
            json!(["PATH=/bin", "AZUREML_MODEL_DIR=/model"])
        );
        assert_eq!(cfg["config"]["Cmd"], json!(["/bin/serve"]));
        assert_eq!(cfg["config"]["Labels"]["org.example.model"], "scorer:3");
        assert_eq!(cfg["rootfs"]["diff_ids"][1], model_layer().digest());
        assert_eq!(
            cfg["history"][1]["created_by"],
            "edgetrain: add model/m.onnx"
        );
        assert_eq!(cfg["created"], "2025-11-24T16:00:00Z");
    }

    #[test]
    fn docker_bases_stay_docker() {
        let img = serving_image(&base(Family::Docker), &[model_layer()], &opts()).unwrap();
        let m: Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(img.manifest.media_type, Family::Docker.manifest());
        assert_eq!(m["config"]["mediaType"], Family::Docker.config());
        assert_eq!(m["layers"][1]["mediaType"], DOCKER_LAYER_TAR);
        assert!(m.get("annotations").is_none());
        assert!(m["layers"][1].get("annotations").is_none());
    }

    #[test]
    fn deterministic() {
        let a = serving_image(&base(Family::Oci), &[model_layer()], &opts()).unwrap();
        let b = serving_image(&base(Family::Oci), &[model_layer()], &opts()).unwrap();
        assert_eq!(a.manifest, b.manifest);
    }
}
