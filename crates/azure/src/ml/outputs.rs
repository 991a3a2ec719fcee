//! Reading a job's outputs from the datastore they were written to: the datastore as a blob
//! client, and the files under an output URI with their MD5s.

use base64::{Engine, engine::general_purpose::STANDARD};
use futures::TryStreamExt;
use md5::{Digest, Md5};

use super::{MlApi, types::*};
use crate::{
    Error, Result,
    blob::{AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint},
};

/// `azureml://datastores/{name}/paths/{path}` → (`name`, `path`) (pure). The long form with
/// subscription and workspace is not accepted: outputs of our jobs use the short one.
pub fn parse_datastore_uri(uri: &str) -> Result<(String, String)> {
    let rest = uri.strip_prefix("azureml://datastores/").ok_or_else(|| {
        Error::InvalidInput(format!(
            "{uri:?} is not an azureml://datastores/{{name}}/paths/{{path}} URI"
        ))
    })?;
    let (name, path) = rest.split_once("/paths/").ok_or_else(|| {
        Error::InvalidInput(format!("{uri:?} has no /paths/ after the datastore name"))
    })?;
    super::build::validate_name("datastore name", name)?;
    if path.split('/').any(|s| s == "..") {
        return Err(Error::InvalidInput(format!(
            "{uri:?}: path must not contain .."
        )));
    }
    Ok((name.to_string(), path.to_string()))
}

/// A blob client for an `AzureBlob` datastore with account-key or SAS credentials (read with
/// `listSecrets`), and its container.
pub async fn open_datastore(
    ml: &dyn MlApi,
    http: reqwest::Client,
    name: &str,
) -> Result<(BlobClient, String)> {
    let ds = ml
        .get_datastore(name)
        .await?
        .ok_or_else(|| Error::InvalidInput(format!("datastore {name:?} does not exist")))?
        .properties;
    if ds.datastore_type != "AzureBlob" {
        return Err(Error::InvalidInput(format!(
            "datastore {name:?} is {}, not AzureBlob",
            ds.datastore_type
        )));
    }
    let (Some(account), Some(container)) = (ds.account_name, ds.container_name) else {
        return Err(Error::decode(
            "datastore",
            format!("{name:?} has no accountName/containerName"),
        ));
    };
    let endpoint = BlobEndpoint::parse(&format!(
        "{}://{account}.blob.{}",
        ds.protocol.as_deref().unwrap_or("https"),
        ds.endpoint.as_deref().unwrap_or("core.windows.net"),
    ))?;
    let auth = match ml.datastore_secrets(name).await? {
        DatastoreSecrets::AccountKey { key: Some(key) } => {
            BlobAuth::SharedKey(AccountKey::from_base64(key.secret())?)
        }
        DatastoreSecrets::Sas {
            sas_token: Some(sas),
        } => BlobAuth::Sas(sas),
        _ => {
            return Err(Error::InvalidInput(format!(
                "datastore {name:?} has neither an account key nor a SAS"
            )));
        }
    };
    Ok((BlobClient::new(http, endpoint, auth), container))
}

/// One file of an output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Path relative to the output folder.
    pub path: String,
    pub size: u64,
    /// Base64 MD5 of the content.
    pub md5: String,
}

/// Every file under `folder` (a path inside `container`). A blob listed without a Content-MD5
/// is read and hashed here, so a missing MD5 can never hide a copied input.
pub async fn output_files(
    blob: &dyn BlobApi,
    container: &str,
    folder: &str,
) -> Result<Vec<OutputFile>> {
    let prefix = if folder.is_empty() || folder.ends_with('/') {
        folder.to_string()
    } else {
        format!("{folder}/")
    };
    let mut out = Vec::new();
    let mut listing = blob.list(container, &prefix);
    while let Some(item) = listing.try_next().await? {
        let md5 = match item.content_md5 {
            Some(m) => m,
            None => {
                let mut h = Md5::new();
                let mut body = blob.read(container, &item.name).await?;
                while let Some(chunk) = body.try_next().await? {
                    h.update(&chunk);
                }
                STANDARD.encode(h.finalize())
            }
        };
        out.push(OutputFile {
            path: item.name[prefix.len()..].to_string(),
            size: item.size,
            md5,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_uris() {
        assert_eq!(
            parse_datastore_uri("azureml://datastores/workspaceblobstore/paths/azureml/j1/model/")
                .unwrap(),
            ("workspaceblobstore".into(), "azureml/j1/model/".into())
        );
        assert!(parse_datastore_uri("https://a.blob.x/c").is_err());
        assert!(parse_datastore_uri("azureml://datastores/ws").is_err());
        assert!(parse_datastore_uri("azureml://datastores/a/b/paths/x").is_err());
        assert!(parse_datastore_uri("azureml://datastores/ws/paths/../x").is_err());
    }
}
