//! Thin I/O: assemble (digest pass) and push what a release ships, and register the version.

use std::{collections::BTreeMap, sync::atomic::Ordering};

use edgetrain_api::{ModelReleaseSpec, model_release::Referrer};
use edgetrain_azure::ml::{MlApi, ModelVersion, Resource};
use edgetrain_registry::{
    BuildFacts, IN_TOTO_MEDIA_TYPE, ModelArtifact, ModelFile, ModelMeta, PackOptions, Registry,
    ServingImage, ServingOptions, model_artifact, referrers, serving_image, statement,
};
use serde_json::json;

use super::desired::{Lineage, PlannedDigests, reference};
use crate::{Error, Result};

/// What is about to be pushed, digests known.
pub struct Assembled {
    pub artifact: ModelArtifact,
    pub image: Option<(edgetrain_registry::BaseImage, ServingImage)>,
}

impl Assembled {
    pub fn digests(&self) -> PlannedDigests {
        PlannedDigests {
            artifact: self.artifact.manifest.digest.clone(),
            image: self.image.as_ref().map(|(_, i)| i.manifest.digest.clone()),
        }
    }
}

/// Wraps a registry failure with what was being done.
fn reg(what: impl Into<String>) -> impl FnOnce(edgetrain_registry::Error) -> Error {
    let what = what.into();
    move |e| Error::registry(what, e)
}

/// `host/repo@sha256:…` of the base → its repository in the release's registry.
fn base_repository<'a>(spec: &ModelReleaseSpec, base: &'a str) -> Result<(&'a str, &'a str)> {
    let (name, digest) = base
        .split_once('@')
        .ok_or_else(|| Error::InvalidSpec(format!("image.base {base:?} is not pinned")))?;
    let repo = name
        .strip_prefix(&format!("{}/", spec.registry.login_server))
        .ok_or_else(|| {
            Error::InvalidSpec(format!(
                "image.base {base:?} must be in the release's registry {} (its layers are mounted, never copied)",
                spec.registry.login_server
            ))
        })?;
    Ok((repo, digest))
}

/// The digest pass over the model files (read from where they are), and the serving image on
/// its base.
pub async fn assemble(
    spec: &ModelReleaseSpec,
    registry: &Registry,
    files: &[ModelFile],
    version: &str,
    created: i64,
    annotations: BTreeMap<String, String>,
) -> Result<Assembled> {
    let prefix = spec.image.as_ref().map_or("models".to_string(), |i| {
        i.model_path.trim_start_matches('/').to_string()
    });
    let meta = ModelMeta {
        name: spec.model.name.clone(),
        version: version.to_string(),
        created,
        format: None,
        description: spec.model.description.clone(),
        annotations,
    };
    let opts = PackOptions {
        prefix,
        ..Default::default()
    };
    let artifact = model_artifact(files, &meta, &opts)
        .await
        .map_err(reg("digesting the model"))?;
    let image = match &spec.image {
        None => None,
        Some(img) => {
            let (repo, digest) = base_repository(spec, &img.base)?;
            let base = registry
                .read_base(repo, digest)
                .await
                .map_err(reg("reading the base image"))?;
            // The image says where its model is (Azure ML's scoring convention) and what it
            // is: the same name, version and lineage the artifact's annotations carry.
            let mut env =
                BTreeMap::from([("AZUREML_MODEL_DIR".to_string(), format!("/{}", opts.prefix))]);
            env.extend(img.env.clone());
            let mut labels = meta.annotations.clone();
            labels.insert(
                "org.opencontainers.image.title".into(),
                spec.model.name.clone(),
            );
            labels.insert("org.opencontainers.image.version".into(), version.into());
            let serving = serving_image(
                &base,
                &artifact.layers,
                &ServingOptions {
                    env,
                    labels,
                    entrypoint: (!img.entrypoint.is_empty()).then(|| img.entrypoint.clone()),
                    created,
                    ..Default::default()
                },
            )
            .map_err(reg("assembling the serving image"))?;
            Some((base, serving))
        }
    };
    Ok(Assembled { artifact, image })
}

/// Registers `version` unless it exists (a lost response, or a restart, is read back as
/// existing by the next reconcile's listing, so this never creates a second version).
pub async fn register(
    ml: &dyn MlApi,
    name: &str,
    version: &str,
    body: ModelVersion,
) -> Result<Option<String>> {
    let created = ml
        .put_model_version(name, version, &Resource::new(body))
        .await
        .map_err(|e| Error::azure(format!("registering model {name} version {version}"), e))?;
    Ok(created.id)
}

/// Archives `version` (Azure ML keeps versions; archiving hides it from listings and new
/// deployments). The version is read and PUT back with `isArchived`, as `azure-ai-ml` does;
/// a version already archived or gone needs nothing.
pub async fn archive(ml: &dyn MlApi, name: &str, version: &str) -> Result<()> {
    let what = || format!("archiving model {name} version {version}");
    let Some(found) = ml
        .get_model_version(name, version)
        .await
        .map_err(|e| Error::azure(what(), e))?
    else {
        return Ok(());
    };
    if found.properties.is_archived == Some(true) {
        return Ok(());
    }
    let mut body = found.properties;
    body.is_archived = Some(true);
    ml.put_model_version(name, version, &Resource::new(body))
        .await
        .map_err(|e| Error::azure(what(), e))?;
    Ok(())
}

/// What a push reports into status.
pub struct Pushed {
    pub artifact: String,
    pub image: Option<String>,
    pub referrers: Vec<Referrer>,
    pub uploaded: i64,
    pub reused: i64,
}

/// Artifact, serving image, then one provenance referrer per digest.
pub async fn push(
    spec: &ModelReleaseSpec,
    registry: &Registry,
    assembled: &Assembled,
    tags: &[String],
    lineage: &Lineage,
    model_id: &str,
) -> Result<Pushed> {
    let repo = &spec.registry.repository;
    let at = format!("{}/{repo}", registry.name());
    // The identity tag names the artifact; the moving tags point at what is deployed (the
    // image when there is one).
    let (identity, extra) = tags
        .split_first()
        .expect("oci_tags returns the identity first");
    let artifact_tags: Vec<String> = match assembled.image {
        Some(_) => vec![identity.clone()],
        None => tags.to_vec(),
    };
    let artifact = registry
        .push_artifact(repo, &assembled.artifact, &artifact_tags)
        .await
        .map_err(reg(format!("pushing the model artifact to {at}")))?;
    let mut subjects = vec![(
        reference(spec, &artifact),
        assembled
            .artifact
            .manifest
            .descriptor()
            .map_err(reg("describing the artifact"))?,
    )];
    let mut image_digest = None;
    if let Some((base, image)) = &assembled.image {
        let mut image_tags = vec![format!("{identity}-serving")];
        image_tags.extend(extra.iter().cloned());
        let d = registry
            .push_serving_image(repo, base, image, Some(repo), &image_tags)
            .await
            .map_err(reg(format!("pushing the serving image to {at}")))?;
        subjects.push((
            reference(spec, &d),
            image
                .manifest
                .descriptor()
                .map_err(reg("describing the image"))?,
        ));
        image_digest = Some(d);
    }
    let descriptors: Vec<_> = subjects.iter().map(|(_, d)| d.clone()).collect();
    let names: Vec<(String, String)> = subjects
        .iter()
        .zip(&descriptors)
        .map(|((r, _), d)| (r.clone(), d.digest().to_string()))
        .collect();
    let mut deps = vec![(lineage.output_uri.clone(), artifact.clone())];
    if let Some(c) = &lineage.code_digest {
        deps.push((
            format!("azureml://jobs/{}/code", lineage.job_name),
            c.clone(),
        ));
    }
    if let Some(f) = &lineage.data_fingerprint {
        deps.push(("edgetrain:data-fingerprint".into(), f.clone()));
    }
    if let Some(img) = &spec.image {
        deps.push((
            img.base.clone(),
            base_repository(spec, &img.base)?.1.to_string(),
        ));
    }
    let facts = BuildFacts {
        builder_id: "https://edgetrain.dev/controller".into(),
        build_type: "https://edgetrain.dev/ModelRelease/v1".into(),
        external_parameters: json!({
            "model": model_id,
            "job": lineage.job_name,
            "trainingRun": format!("{}/{}", lineage.run_namespace, lineage.run_name),
            "codeDigest": lineage.code_digest,
            "dataFingerprint": lineage.data_fingerprint,
            "dataBlobCount": lineage.data_blob_count,
        }),
        resolved_dependencies: deps,
        // The model version, not the release: two releases of one version ship identical
        // provenance (same digests, nothing uploaded twice).
        invocation_id: model_id.to_string(),
    };
    let st = statement(&names, &facts);
    let (blob, manifests) =
        referrers(&st, &descriptors).map_err(reg(format!("provenance to {at}")))?;
    let list: Vec<_> = descriptors
        .iter()
        .zip(manifests)
        .map(|(d, m)| (repo.clone(), d.clone(), m))
        .collect();
    let digests = registry
        .push_referrers(&blob, &list)
        .await
        .map_err(reg(format!("pushing the provenance to {at}")))?;
    let referrers = digests
        .into_iter()
        .zip(&descriptors)
        .map(|(digest, subject)| Referrer {
            artifact_type: IN_TOTO_MEDIA_TYPE.into(),
            digest,
            subject: subject.digest().to_string(),
        })
        .collect();
    // Counted by the client, blob by blob: "total minus sent" was 0 when the blobs sent
    // (provenance included) outweighed the ones the registry had.
    let stats = registry.stats();
    let uploaded = stats.bytes_sent.load(Ordering::Relaxed);
    let reused = stats.bytes_reused.load(Ordering::Relaxed);
    Ok(Pushed {
        artifact: reference(spec, &artifact),
        image: image_digest.map(|d| reference(spec, &d)),
        referrers,
        uploaded: i64::try_from(uploaded).unwrap_or(i64::MAX),
        reused: i64::try_from(reused).unwrap_or(i64::MAX),
    })
}
