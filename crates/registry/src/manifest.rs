//! Manifests, descriptors and their canonical bytes. Types come from `oci-spec`; the bytes are
//! ours: keys sorted at every level, no whitespace, so a manifest's digest depends on its
//! content only (oci-spec keeps annotations in a `HashMap`, whose order is random).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use serde::Serialize;
use serde_json::Value;

use crate::{
    Error, Result,
    content::{Content, sha256_digest},
};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// What a manifest GET accepts: both families, single manifests and indexes.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// JSON with keys sorted at every level and no whitespace.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<String, Value> =
                    m.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
            other => other,
        }
    }
    let v = serde_json::to_value(value).map_err(|e| Error::Invalid(format!("json: {e}")))?;
    serde_json::to_vec(&sort(v)).map_err(|e| Error::Invalid(format!("json: {e}")))
}

pub fn parse_digest(d: &str) -> Result<Digest> {
    d.parse()
        .map_err(|e| Error::Invalid(format!("digest {d:?}: {e}")))
}

/// A descriptor with sorted-on-output annotations (empty map → no annotations member).
pub fn descriptor(
    media_type: &str,
    digest: &str,
    size: u64,
    annotations: &BTreeMap<String, String>,
) -> Result<Descriptor> {
    let mut d = Descriptor::new(MediaType::from(media_type), size, parse_digest(digest)?);
    if !annotations.is_empty() {
        d.set_annotations(Some(to_hash_map(annotations)));
    }
    Ok(d)
}

pub fn to_hash_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A blob to push: its descriptor and where its bytes come from.
#[derive(Debug, Clone)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub content: Content,
}

impl Blob {
    /// A small JSON blob (config, statement) held in memory.
    pub fn json(media_type: &str, bytes: Vec<u8>) -> Result<Self> {
        let digest = sha256_digest(&bytes);
        let size = bytes.len() as u64;
        Ok(Self {
            descriptor: descriptor(media_type, &digest, size, &BTreeMap::new())?,
            content: Content::from_bytes(bytes),
        })
    }

    /// The OCI empty descriptor's blob, `{}`.
    pub fn empty_config() -> Self {
        Self::json(OCI_EMPTY, b"{}".to_vec()).expect("static digest parses")
    }

    pub fn digest(&self) -> String {
        self.descriptor.digest().to_string()
    }
}

/// A manifest's bytes with its media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBytes {
    pub media_type: String,
    pub bytes: Bytes,
    pub digest: String,
}

impl ManifestBytes {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&bytes),
            bytes: Bytes::from(bytes),
        }
    }

    pub fn of<T: Serialize>(media_type: &str, value: &T) -> Result<Self> {
        Ok(Self::new(media_type, canonical_json(value)?))
    }

    pub fn descriptor(&self) -> Result<Descriptor> {
        descriptor(
            &self.media_type,
            &self.digest,
            self.bytes.len() as u64,
            &BTreeMap::new(),
        )
    }
}

/// A schema-2 manifest of `media_type` (OCI or Docker) with config and layers.
pub fn image_manifest(
    media_type: &str,
    config: &Descriptor,
    layers: Vec<Descriptor>,
) -> Result<ImageManifest> {
    oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(media_type))
        .config(config.clone())
        .layers(layers)
        .build()
        .map_err(|e| Error::Invalid(format!("manifest: {e}")))
}

/// An OCI image manifest (artifacts are image manifests with `artifactType`, OCI 1.1).
pub fn oci_manifest(
    artifact_type: Option<&str>,
    config: &Descriptor,
    layers: Vec<Descriptor>,
    subject: Option<Descriptor>,
    annotations: &BTreeMap<String, String>,
) -> Result<ManifestBytes> {
    let mut m = image_manifest(OCI_MANIFEST, config, layers)?;
    m.set_artifact_type(artifact_type.map(MediaType::from));
    m.set_subject(subject);
    if !annotations.is_empty() {
        m.set_annotations(Some(to_hash_map(annotations)));
    }
    ManifestBytes::of(OCI_MANIFEST, &m)
}

/// The platform entry of an index, e.g. `linux`/`amd64`.
pub fn select_platform(index: &ImageIndex, os: &str, arch: &str) -> Option<Descriptor> {
    index
        .manifests()
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == os
                    && p.architecture().to_string() == arch
                    && p.variant()
                        .as_deref()
                        .is_none_or(|v| v.is_empty() || v == "v1")
            })
        })
        .cloned()
}

/// The family of a manifest media type: Docker schema 2 or OCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Oci,
    Docker,
}

impl Family {
    pub fn of_manifest(media_type: &str) -> Option<Self> {
        match media_type {
            OCI_MANIFEST => Some(Family::Oci),
            DOCKER_MANIFEST => Some(Family::Docker),
            _ => None,
        }
    }

    pub fn manifest(self) -> &'static str {
        match self {
            Family::Oci => OCI_MANIFEST,
            Family::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            Family::Oci => OCI_CONFIG,
            Family::Docker => DOCKER_CONFIG,
        }
    }

    /// Uncompressed layer type of this family (model weights are never compressed).
    pub fn layer_tar(self) -> &'static str {
        match self {
            Family::Oci => OCI_LAYER_TAR,
            Family::Docker => DOCKER_LAYER_TAR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_whatever_the_map_order() {
        let mut a = BTreeMap::new();
        for i in 0..20 {
            a.insert(format!("k{i}"), i.to_string());
        }
        let d1 = descriptor(OCI_LAYER_TAR, &sha256_digest(b"x"), 1, &a).unwrap();
        let bytes = canonical_json(&d1).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"annotations":{"k0":"0","k1":"1","k10":"10""#),
            "{text}"
        );
        // Rebuilt HashMaps (new random order) give the same bytes.
        for _ in 0..5 {
            let d2 = descriptor(OCI_LAYER_TAR, &sha256_digest(b"x"), 1, &a).unwrap();
            assert_eq!(canonical_json(&d2).unwrap(), bytes);
        }
    }

    #[test]
    fn empty_config_is_the_well_known_descriptor() {
        let e = Blob::empty_config();
        assert_eq!(
            e.digest(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(e.descriptor.size(), 2);
    }

    #[test]
    fn picks_linux_amd64_from_an_index() {
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"arm"), "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"amd"), "size": 2,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        }))
        .unwrap();
        let d = select_platform(&index, "linux", "amd64").unwrap();
        assert_eq!(d.digest().to_string(), sha256_digest(b"amd"));
        assert!(select_platform(&index, "windows", "amd64").is_none());
    }
}
