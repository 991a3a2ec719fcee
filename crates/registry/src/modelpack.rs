//! The model as a CNCF ModelPack v1 artifact: one uncompressed tar layer per weight file, the
//! remaining small files grouped in one `weight.config` layer, a config whose `modelfs.diffIds`
//! are the layer digests. Every timestamp comes from the input, so the same files give the same
//! digests on any day.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use serde_json::json;

use crate::{
    Error, Result,
    content::{LocalFile, RangeSource},
    manifest::{Blob, ManifestBytes, descriptor, oci_manifest},
    tar::{FILE_MODE, TarFile, check_relative_path, tar_layer},
};

pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
pub const WEIGHT_TAR: &str = "application/vnd.cncf.model.weight.v1.tar";
pub const WEIGHT_CONFIG_TAR: &str = "application/vnd.cncf.model.weight.config.v1.tar";
pub const ANNOTATION_FILEPATH: &str = "org.cncf.model.filepath";
pub const ANNOTATION_FILE_METADATA: &str = "org.cncf.model.file.metadata+json";
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

/// Extensions of weight files (AIKit's list plus ONNX/TF/Keras formats).
const WEIGHT_EXTENSIONS: &[&str] = &[
    "safetensors",
    "bin",
    "gguf",
    "pt",
    "pth",
    "ckpt",
    "onnx",
    "pb",
    "h5",
    "keras",
    "tflite",
];

/// Files larger than this are weights whatever their extension (AIKit uses 10 MiB).
pub const WEIGHT_SIZE_THRESHOLD: u64 = 10 * 1024 * 1024;

/// A file of the model, `path` relative to the model directory, its bytes read from `source`
/// (a local file, a datastore blob) whenever a pass needs them.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub path: String,
    pub source: Arc<dyn RangeSource>,
}

impl ModelFile {
    pub fn size(&self) -> u64 {
        self.source.size()
    }
}

/// What the model is, from the training system (never from the clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMeta {
    pub name: String,
    pub version: String,
    /// Seconds since the epoch: tar mtimes and `createdAt` (e.g. the job's end time).
    pub created: i64,
    /// `onnx`, `safetensors`, ...
    pub format: Option<String>,
    pub description: Option<String>,
    /// Manifest annotations (e.g. AML model id, job name, source revision).
    pub annotations: BTreeMap<String, String>,
}

/// Layout choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackOptions {
    /// Directory inside every layer (and inside the serving image), e.g. `model` or
    /// `var/azureml-app/model`; the same blobs then serve as image layers.
    pub prefix: String,
    pub weight_threshold: u64,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self {
            prefix: "model".into(),
            weight_threshold: WEIGHT_SIZE_THRESHOLD,
        }
    }
}

/// List every regular file under `dir` (sorted; symlinks and special files are refused so a
/// package never follows a link out of the model directory).
pub fn files_in_dir(dir: &Path) -> Result<Vec<ModelFile>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<ModelFile>) -> Result<()> {
        let io = |source| Error::Io {
            path: dir.to_owned(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                walk(root, &path, out)?;
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).map_err(|_| {
                    Error::Invalid(format!("{} outside {}", path.display(), root.display()))
                })?;
                let rel = rel
                    .to_str()
                    .ok_or_else(|| Error::Invalid(format!("{} is not UTF-8", path.display())))?;
                out.push(ModelFile {
                    path: rel.to_owned(),
                    source: Arc::new(LocalFile::new(path.clone(), meta.len())),
                });
            } else {
                return Err(Error::Invalid(format!(
                    "{} is not a regular file or directory",
                    path.display()
                )));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// One planned layer: media type, files, annotations. Pure: no I/O.
#[derive(Debug, Clone)]
pub struct LayerPlan {
    pub media_type: &'static str,
    pub files: Vec<TarFile>,
    pub annotations: BTreeMap<String, String>,
}

fn is_weight(f: &ModelFile, threshold: u64) -> bool {
    let ext = f.path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    f.size() > threshold || ext.is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e.as_str()))
}

fn rfc3339(secs: i64) -> Result<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .ok_or_else(|| Error::Invalid(format!("timestamp {secs} out of range")))
}

/// Decide the layers: each weight file alone, the rest grouped; sorted by path.
pub fn plan_layers(
    files: &[ModelFile],
    meta: &ModelMeta,
    opts: &PackOptions,
) -> Result<Vec<LayerPlan>> {
    if files.is_empty() {
        return Err(Error::Invalid("a model needs at least one file".into()));
    }
    check_relative_path(&opts.prefix)?;
    let mut files = files.to_vec();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mtime = rfc3339(meta.created)?;
    let to_tar = |f: &ModelFile| -> Result<TarFile> {
        check_relative_path(&f.path)?;
        Ok(TarFile {
            path: format!("{}/{}", opts.prefix, f.path),
            source: f.source.clone(),
        })
    };
    let mut plans = Vec::new();
    let mut small = Vec::new();
    for f in &files {
        if is_weight(f, opts.weight_threshold) {
            let tf = to_tar(f)?;
            let name = f.path.rsplit('/').next().unwrap_or(&f.path);
            let metadata = json!({
                "name": name, "mode": FILE_MODE, "uid": 0, "gid": 0, "size": f.size(),
                "mtime": mtime, "typeflag": 48,
            });
            let annotations = BTreeMap::from([
                (ANNOTATION_FILEPATH.to_owned(), tf.path.clone()),
                (
                    ANNOTATION_FILE_METADATA.to_owned(),
                    String::from_utf8(crate::manifest::canonical_json(&metadata)?)
                        .unwrap_or_default(),
                ),
                (ANNOTATION_TITLE.to_owned(), name.to_owned()),
            ]);
            plans.push(LayerPlan {
                media_type: WEIGHT_TAR,
                files: vec![tf],
                annotations,
            });
        } else {
            small.push(to_tar(f)?);
        }
    }
    if !small.is_empty() {
        plans.push(LayerPlan {
            media_type: WEIGHT_CONFIG_TAR,
            files: small,
            annotations: BTreeMap::from([(
                ANNOTATION_FILEPATH.to_owned(),
                format!("{}/", opts.prefix),
            )]),
        });
    }
    Ok(plans)
}

/// A ModelPack artifact ready to push.
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: ManifestBytes,
}

/// How many layers are digested at once (each holds one read buffer).
const DIGEST_CONCURRENCY: usize = 4;

/// Build the artifact: one streaming digest pass per layer (in parallel), then config and
/// manifest.
pub async fn model_artifact(
    files: &[ModelFile],
    meta: &ModelMeta,
    opts: &PackOptions,
) -> Result<ModelArtifact> {
    let plans = plan_layers(files, meta, opts)?;
    let mtime = u64::try_from(meta.created)
        .map_err(|_| Error::Invalid("created must not be before 1970".into()))?;
    // One task per layer, so the hashing runs on every core: futures combined in one task
    // (`buffered`) are polled by that task alone and shared one core (the digest pass took
    // as long in wall time as in CPU time). Dropping the set (an error, a cancelled caller)
    // aborts the remaining tasks.
    let permits = Arc::new(tokio::sync::Semaphore::new(DIGEST_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let count = plans.len();
    for (index, plan) in plans.into_iter().enumerate() {
        let content = tar_layer(&plan.files, mtime)?;
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| Error::Invalid(format!("digest pass: {e}")))?;
            let digest = content.digest().await?;
            let descriptor =
                descriptor(plan.media_type, &digest, content.size(), &plan.annotations)?;
            Ok::<_, Error>((
                index,
                Blob {
                    descriptor,
                    content,
                },
            ))
        });
    }
    let mut layers: Vec<Option<Blob>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, blob) = match joined {
            Ok(done) => done?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(Error::Invalid(format!("digest pass: {e}"))),
        };
        layers[index] = Some(blob);
    }
    assemble(layers.into_iter().flatten().collect(), meta)
}

/// Config and manifest around digested layers. Pure.
pub fn assemble(layers: Vec<Blob>, meta: &ModelMeta) -> Result<ModelArtifact> {
    let created = rfc3339(meta.created)?;
    let diff_ids: Vec<String> = layers.iter().map(Blob::digest).collect();
    let mut descriptor_obj = json!({
        "name": meta.name,
        "version": meta.version,
        "createdAt": created,
    });
    if let Some(d) = &meta.description {
        descriptor_obj["description"] = json!(d);
    }
    let mut model_config = json!({});
    if let Some(f) = &meta.format {
        model_config["format"] = json!(f);
    }
    let config_json = json!({
        "descriptor": descriptor_obj,
        "config": model_config,
        "modelfs": {"type": "layers", "diffIds": diff_ids},
    });
    let config = Blob::json(
        CONFIG_MEDIA_TYPE,
        crate::manifest::canonical_json(&config_json)?,
    )?;
    let mut annotations = meta.annotations.clone();
    annotations.insert("org.opencontainers.image.created".into(), created);
    annotations.insert("org.opencontainers.image.title".into(), meta.name.clone());
    annotations.insert(
        "org.opencontainers.image.version".into(),
        meta.version.clone(),
    );
    let manifest = oci_manifest(
        Some(ARTIFACT_TYPE),
        &config.descriptor,
        layers.iter().map(|l| l.descriptor.clone()).collect(),
        None,
        &annotations,
    )?;
    Ok(ModelArtifact {
        layers,
        config,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn meta() -> ModelMeta {
        ModelMeta {
            name: "scorer".into(),
            version: "3".into(),
            created: 1_764_000_000,
            format: Some("onnx".into()),
            description: None,
            annotations: BTreeMap::new(),
        }
    }

    fn mf(path: &str, size: u64) -> ModelFile {
        // Never read: planning is pure.
        ModelFile {
            path: path.into(),
            source: Arc::new(LocalFile::new(format!("/src/{path}"), size)),
        }
    }

    #[test]
    fn weights_get_a_layer_each_and_small_files_are_grouped() {
        let files = [
            mf("tokenizer.json", 100),
            mf("b.onnx", 5),
            mf("a.safetensors", 7),
            mf("huge.dat", 11 << 20),
            mf("sub/README.md", 3),
        ];
        let plans = plan_layers(&files, &meta(), &PackOptions::default()).unwrap();
        let kinds: Vec<(&str, Vec<&str>)> = plans
            .iter()
            .map(|p| {
                (
                    p.media_type,
                    p.files.iter().map(|f| f.path.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (WEIGHT_TAR, vec!["model/a.safetensors"]),
                (WEIGHT_TAR, vec!["model/b.onnx"]),
                (WEIGHT_TAR, vec!["model/huge.dat"]),
                (
                    WEIGHT_CONFIG_TAR,
                    vec!["model/sub/README.md", "model/tokenizer.json"]
                ),
            ]
        );
        assert_eq!(
            plans[0].annotations[ANNOTATION_FILEPATH],
            "model/a.safetensors"
        );
        let md: serde_json::Value =
            serde_json::from_str(&plans[1].annotations[ANNOTATION_FILE_METADATA]).unwrap();
        assert_eq!(md["mtime"], "2025-11-24T16:00:00Z");
        assert_eq!(md["mode"], 420);
        assert_eq!(md["size"], 5);
    }

    #[test]
    fn rejects_bad_paths_and_empty_models() {
        assert!(plan_layers(&[], &meta(), &PackOptions::default()).is_err());
        assert!(plan_layers(&[mf("../x.onnx", 1)], &meta(), &PackOptions::default()).is_err());
        let opts = PackOptions {
            prefix: "/abs".into(),
            ..PackOptions::default()
        };
        assert!(plan_layers(&[mf("x.onnx", 1)], &meta(), &opts).is_err());
    }

    #[tokio::test]
    async fn layers_keep_their_order_and_a_failing_layer_fails_the_pass() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["c.onnx", "a.onnx", "b.onnx", "d.onnx", "e.onnx"]
            .iter()
            .enumerate()
        {
            std::fs::write(dir.path().join(name), vec![i as u8; 1000 + i]).unwrap();
        }
        let files = files_in_dir(dir.path()).unwrap();
        let a = model_artifact(&files, &meta(), &PackOptions::default())
            .await
            .unwrap();
        let titles: Vec<&str> = a
            .layers
            .iter()
            .map(|l| l.descriptor.annotations().as_ref().unwrap()[ANNOTATION_TITLE].as_str())
            .collect();
        assert_eq!(titles, ["a.onnx", "b.onnx", "c.onnx", "d.onnx", "e.onnx"]);
        for l in &a.layers {
            assert_eq!(l.digest(), l.content.digest().await.unwrap());
        }
        // A file that grew after listing: the error comes back from its digest task.
        std::fs::write(dir.path().join("d.onnx"), vec![0u8; 5000]).unwrap();
        let err = model_artifact(&files, &meta(), &PackOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected"), "{err}");
    }

    #[tokio::test]
    async fn same_files_same_digests_and_config_lists_diff_ids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), vec![7u8; 3000]).unwrap();
        std::fs::write(dir.path().join("labels.txt"), b"a\nb\n").unwrap();
        let files = files_in_dir(dir.path()).unwrap();
        let a = model_artifact(&files, &meta(), &PackOptions::default())
            .await
            .unwrap();
        // Touching the files (new mtimes) changes nothing: only meta.created counts.
        std::fs::write(dir.path().join("m.onnx"), vec![7u8; 3000]).unwrap();
        let b = model_artifact(&files, &meta(), &PackOptions::default())
            .await
            .unwrap();
        assert_eq!(a.manifest, b.manifest);
        let m: serde_json::Value = serde_json::from_slice(&a.manifest.bytes).unwrap();
        assert_eq!(m["artifactType"], ARTIFACT_TYPE);
        assert_eq!(m["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(m["layers"].as_array().unwrap().len(), 2);
        let cfg: serde_json::Value = match &a.config.content.stream_from(0).next().await {
            Some(Ok(b)) => serde_json::from_slice(b).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(cfg["modelfs"]["diffIds"][0], m["layers"][0]["digest"]);
        assert_eq!(cfg["descriptor"]["createdAt"], "2025-11-24T16:00:00Z");
        let later = ModelMeta {
            created: meta().created + 86_400,
            ..meta()
        };
        let c = model_artifact(&files, &later, &PackOptions::default())
            .await
            .unwrap();
        assert_ne!(c.manifest.digest, a.manifest.digest);
    }
}
