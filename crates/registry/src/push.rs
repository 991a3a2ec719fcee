//! The push workflow over [`Registry`]: artifact, serving image, provenance referrers.

use oci_spec::image::Descriptor;

use crate::{
    Result,
    auth::repository_scope,
    client::Registry,
    image::{BaseImage, ServingImage},
    manifest::{Blob, ManifestBytes},
    modelpack::ModelArtifact,
};

impl Registry {
    async fn put_tagged(
        &self,
        repository: &str,
        m: &ManifestBytes,
        tags: &[String],
        extra: &[String],
    ) -> Result<()> {
        self.put_manifest(repository, &m.digest, m, extra).await?;
        for tag in tags {
            self.put_manifest(repository, tag, m, extra).await?;
        }
        Ok(())
    }

    /// Push the ModelPack artifact (layers concurrently, then config, then manifest and tags).
    /// Returns the manifest digest.
    pub async fn push_artifact(
        &self,
        repository: &str,
        artifact: &ModelArtifact,
        tags: &[String],
    ) -> Result<String> {
        let mut blobs = artifact.layers.clone();
        blobs.push(artifact.config.clone());
        self.push_blobs(repository, &blobs, None).await?;
        self.put_tagged(repository, &artifact.manifest, tags, &[])
            .await?;
        Ok(artifact.manifest.digest.clone())
    }

    /// Push the serving image: base layers by HEAD/mount from the base's repository (copied
    /// registry-side only if the mount is refused), model layers by mount from `model_repository`
    /// (where the artifact put the same blobs) or upload, then config, manifest and tags.
    pub async fn push_serving_image(
        &self,
        repository: &str,
        base: &BaseImage,
        image: &ServingImage,
        model_repository: Option<&str>,
        tags: &[String],
    ) -> Result<String> {
        use futures::{StreamExt, TryStreamExt};
        let base_layers = base.manifest.layers().clone();
        // Collected first, for `Send` callers (see `push_blobs`).
        let mounts: Vec<_> = base_layers
            .iter()
            .map(|d| self.ensure_blob(repository, d, None, Some(&base.repository)))
            .collect();
        futures::stream::iter(mounts)
            .buffered(4)
            .try_collect::<Vec<_>>()
            .await?;
        self.push_blobs(repository, &image.appended, model_repository)
            .await?;
        self.push_blobs(repository, std::slice::from_ref(&image.config), None)
            .await?;
        let extra = [repository_scope(&base.repository, &["pull"])];
        self.put_tagged(repository, &image.manifest, tags, &extra)
            .await?;
        Ok(image.manifest.digest.clone())
    }

    /// Push one provenance referrer per subject (`(repository, subject descriptor, referrer)`),
    /// with the statement blob. Returns the referrer digests.
    pub async fn push_referrers(
        &self,
        statement: &Blob,
        referrers: &[(String, Descriptor, ManifestBytes)],
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (repository, subject, m) in referrers {
            self.push_blobs(repository, &[statement.clone(), Blob::empty_config()], None)
                .await?;
            self.push_referrer(repository, m, subject.digest().as_ref())
                .await?;
            out.push(m.digest.clone());
        }
        Ok(out)
    }
}
