//! Reading back the provenance attached to a pushed digest (for `kubectl edgetrain lineage`):
//! the referrers of the digest, each in-toto referrer's manifest, and its statement layer.
//! Every read is checked against its digest, so a registry cannot substitute a statement.

use oci_spec::image::ImageManifest;
use serde_json::Value;

use crate::{
    Error, Result, Target, client::Registry, manifest::OCI_MANIFEST, provenance::IN_TOTO_MEDIA_TYPE,
};

/// One in-toto statement attached to a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachedStatement {
    /// Digest of the referrer manifest.
    pub referrer: String,
    /// The statement (in-toto Statement v1 JSON).
    pub statement: Value,
}

impl Registry {
    /// The in-toto statements attached to `subject` (a `sha256:` digest) in `repository`.
    pub async fn statements_of(
        &self,
        repository: &str,
        subject: &str,
    ) -> Result<Vec<AttachedStatement>> {
        let protocol = |detail: String| Error::Protocol {
            target: Target {
                registry: self.name().to_owned(),
                repository: repository.to_owned(),
            },
            operation: format!("provenance of {subject}"),
            detail,
        };
        let mut out = Vec::new();
        for d in self.referrers(repository, subject).await? {
            if d.artifact_type().as_ref().map(|t| t.to_string()).as_deref()
                != Some(IN_TOTO_MEDIA_TYPE)
            {
                continue;
            }
            let referrer = d.digest().to_string();
            // `get_manifest` checks the bytes against the digest.
            let m = self.get_manifest(repository, &referrer).await?;
            if m.media_type != OCI_MANIFEST {
                return Err(protocol(format!(
                    "referrer {referrer} is {:?}, not an OCI manifest",
                    m.media_type
                )));
            }
            let manifest: ImageManifest = serde_json::from_slice(&m.bytes)
                .map_err(|e| protocol(format!("referrer {referrer}: {e}")))?;
            // The index could list a manifest that is not about this subject.
            if manifest
                .subject()
                .as_ref()
                .map(|s| s.digest().to_string())
                .as_deref()
                != Some(subject)
            {
                return Err(protocol(format!(
                    "referrer {referrer} does not name {subject} as its subject"
                )));
            }
            for layer in manifest.layers() {
                if layer.media_type().to_string() != IN_TOTO_MEDIA_TYPE {
                    continue;
                }
                // `get_small_blob` checks the content against the digest.
                let bytes = self
                    .get_small_blob(repository, layer.digest().as_ref())
                    .await?;
                let statement = serde_json::from_slice(&bytes)
                    .map_err(|e| protocol(format!("statement in {referrer}: {e}")))?;
                out.push(AttachedStatement {
                    referrer: referrer.clone(),
                    statement,
                });
            }
        }
        Ok(out)
    }
}
