//! edgetrain's OCI push client and the pure functions that assemble what it pushes:
//! a CNCF ModelPack artifact of the model, a serving image on a base image, and an in-toto
//! SLSA provenance statement attached to both as referrers. See README.md for which crate
//! does what and why the uploader is ours.

mod auth;
mod client;
mod content;
mod delete;
mod error;
mod image;
mod manifest;
mod modelpack;
mod provenance;
mod pull_provenance;
mod push;
mod tar;

pub use auth::{
    Challenge, Credential, Secret, TokenCache, check_secure, jwt_expiry, needs_refresh,
    parse_challenge, repository_scope,
};
pub use client::{
    BlobOutcome, Mode, Registry, Stats, UploadPolicy, choose_mode, error_detail, next_offset,
};
pub use content::{
    ByteStream, Content, LocalFile, READ_BUFFER, RangeSource, Segment, sha256_digest,
};
pub use error::{Error, Result, Target};
pub use image::{BaseImage, ServingImage, ServingOptions, serving_image};
pub use manifest::{
    Blob, Family, ManifestBytes, canonical_json, descriptor, oci_manifest, select_platform,
};
pub use modelpack::{
    ARTIFACT_TYPE, LayerPlan, ModelArtifact, ModelFile, ModelMeta, PackOptions, files_in_dir,
    model_artifact, plan_layers,
};
pub use provenance::{BuildFacts, IN_TOTO_MEDIA_TYPE, referrers, statement};
pub use pull_provenance::AttachedStatement;
pub use tar::{TarFile, tar_layer};

/// Media type constants.
pub mod media_types {
    pub use crate::manifest::{
        DOCKER_CONFIG, DOCKER_LAYER_TAR, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_EMPTY,
        OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST,
    };
    pub use crate::modelpack::{CONFIG_MEDIA_TYPE, WEIGHT_CONFIG_TAR, WEIGHT_TAR};
}
