//! Code upload through Azure ML's pending-upload flow.

use bytes::Bytes;

use super::{MlApi, build::*, types::*, workspace::Workspace};
use crate::{
    Error, Result,
    blob::{BlobApi, BlobClient},
};

/// Where `blob_uri` points inside the SAS container: the path below the container, with a
/// trailing `/` when non-empty (pure).
pub fn upload_prefix(blob_uri: &str, container: &str) -> Result<String> {
    let u = crate::error::parse_url(blob_uri)?;
    let path = u.path();
    let marker = format!("/{container}");
    let idx = path.find(&marker).ok_or_else(|| {
        Error::decode(
            "startPendingUpload",
            format!("blobUri {blob_uri} is not inside container {container}"),
        )
    })?;
    let rest = path[idx + marker.len()..].trim_matches('/');
    Ok(if rest.is_empty() {
        String::new()
    } else {
        format!("{rest}/")
    })
}

/// Upload a code snapshot as a content-addressed code version (name = content hash, version
/// `1`) through the pending-upload flow, unless that version already exists. Returns the
/// version's ARM id, for a job's `codeId`.
pub async fn upload_code(
    ml: &dyn MlApi,
    workspace: &Workspace,
    http: reqwest::Client,
    files: &[CodeFile],
) -> Result<String> {
    let name = code_content_hash(files)?;
    let version = "1";
    if let Some(existing) = ml.get_code_version(&name, version).await?
        && existing.properties.code_uri.is_some()
    {
        return workspace.code_version_id(&name, version);
    }
    let pending = ml.start_pending_upload(&name, version).await?;
    let blob_ref = pending
        .blob_reference_for_consumption
        .ok_or_else(|| Error::decode("startPendingUpload", "no blobReferenceForConsumption"))?;
    let blob_uri = blob_ref
        .blob_uri
        .ok_or_else(|| Error::decode("startPendingUpload", "no blobUri"))?;
    let Some(PendingUploadCredential::Sas { sas_uri: Some(sas) }) = blob_ref.credential else {
        return Err(Error::decode("startPendingUpload", "no SAS credential"));
    };
    let (blob, container) = BlobClient::from_container_sas_url(http, sas.secret())?;
    let prefix = upload_prefix(&blob_uri, &container)?;
    for f in files {
        blob.put(
            &container,
            &format!("{prefix}{}", f.path),
            Bytes::clone(&f.content),
            None,
        )
        .await?;
    }
    let body = Resource::new(CodeVersion {
        code_uri: Some(blob_uri),
        is_anonymous: Some(false),
        properties: Some([("edgetrain.dev/content-sha256".to_string(), name.clone())].into()),
        ..Default::default()
    });
    ml.put_code_version(&name, version, &body).await?;
    workspace.code_version_id(&name, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_prefix_from_blob_uri() {
        assert_eq!(
            upload_prefix("https://a.blob.core.windows.net/c1/LocalUpload/abc", "c1").unwrap(),
            "LocalUpload/abc/"
        );
        assert_eq!(
            upload_prefix("http://127.0.0.1:1/acct/c1", "c1").unwrap(),
            ""
        );
        assert!(upload_prefix("https://a.blob.core.windows.net/other/x", "c1").is_err());
    }
}
