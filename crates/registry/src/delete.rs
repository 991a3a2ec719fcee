//! Taking back what was pushed: manifest DELETE by digest and the tag-schema referrers index
//! kept consistent with it. Separate from the push path on purpose (additive).

use reqwest::{Method, StatusCode};

use crate::{
    Error, Result,
    auth::repository_scope,
    client::{Body, Registry},
    manifest::{ManifestBytes, OCI_INDEX, canonical_json},
};

impl Registry {
    /// `DELETE /v2/<repo>/manifests/<digest>`: the manifest and every tag pointing at it.
    /// `Ok(false)` when the registry does not have it (already deleted: not an error, so a
    /// cleanup interrupted half-way can run again). Only digests are accepted: a tag would
    /// delete whatever it points at now, which may not be what the caller pushed.
    pub async fn delete_manifest(&self, repository: &str, digest: &str) -> Result<bool> {
        if !digest.starts_with("sha256:") {
            return Err(Error::Invalid(format!(
                "manifests are deleted by digest, not {digest:?}"
            )));
        }
        let scopes = [repository_scope(repository, &["delete"])];
        let url = self.url(&format!("/v2/{repository}/manifests/{digest}"))?;
        let resp = self
            .send(repository, &scopes, Method::DELETE, &url, &[], Body::Empty)
            .await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .fail(repository, &format!("delete manifest {digest}"), resp)
                .await),
        }
    }

    /// Removes `referrer` from the tag-schema index (`sha256-<hex>` tag) of `subject`, which
    /// [`Registry::push_referrer`] maintains on registries without the referrers API; the index
    /// goes when nothing is left in it. Nothing to do when there is no such index.
    pub async fn unlist_referrer(
        &self,
        repository: &str,
        subject: &str,
        referrer: &str,
    ) -> Result<()> {
        let tag = subject.replacen(':', "-", 1);
        let existing = match self.get_manifest(repository, &tag).await {
            Ok(m) => m,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let protocol = |detail: String| Error::Protocol {
            target: self.target(repository),
            operation: format!("referrers tag {tag}"),
            detail,
        };
        let mut index: serde_json::Value =
            serde_json::from_slice(&existing.bytes).map_err(|e| protocol(e.to_string()))?;
        let manifests = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| protocol("not an index".into()))?;
        let before = manifests.len();
        manifests.retain(|d| d["digest"] != referrer);
        if manifests.len() == before {
            return Ok(());
        }
        if manifests.is_empty() {
            self.delete_manifest(repository, &existing.digest).await?;
        } else {
            let bytes = ManifestBytes::new(OCI_INDEX, canonical_json(&index)?);
            self.put_manifest(repository, &tag, &bytes, &[]).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_digests_are_deleted_never_tags() {
        // No server behind it: the refusal comes before any request.
        let r = Registry::new(
            "http://127.0.0.1:9".parse().unwrap(),
            edgetrain_azure::transport::HttpConfig::default()
                .build()
                .unwrap(),
            crate::Credential::Anonymous,
            Default::default(),
            Default::default(),
        )
        .unwrap();
        for reference in ["latest", "churn-1", "sha512:abc"] {
            assert!(matches!(
                r.delete_manifest("models/churn", reference).await,
                Err(Error::Invalid(_))
            ));
        }
    }
}
