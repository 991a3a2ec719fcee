//! Thin I/O: what a release reads — its TrainingRun and EdgeComputeTarget (from the stores),
//! the Azure ML workspace client, the model's versions, the registry credentials, and the
//! model files, read from the workspace datastore as streams.

use std::sync::Arc;

use edgetrain_api::{EdgeComputeTarget, ModelRelease, TrainingRun};
use edgetrain_azure::{
    blob::{AccountKey, BlobApi, BlobItem},
    ml::{DatastoreSecrets, MlApi, ModelVersion},
};
use edgetrain_registry::{ByteStream, ModelFile, RangeSource};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{ResourceExt, runtime::reflector::ObjectRef};

use crate::{
    Error, Result,
    context::Context,
    runtime::{
        classify::chain,
        factory::RegistryCredentials,
        secrets::{Credentials, secret_value},
    },
};

/// The release's TrainingRun from the watch cache (`None`: it does not exist).
pub fn training_run(ctx: &Context, mr: &ModelRelease) -> Option<Arc<TrainingRun>> {
    let name = &mr.spec.training_run_ref.as_ref()?.name;
    let ns = mr.namespace().unwrap_or_default();
    ctx.stores
        .training_runs
        .get(&ObjectRef::new(name).within(&ns))
}

/// The EdgeComputeTarget whose workspace holds the model.
pub fn compute_target(ctx: &Context, ns: &str, name: &str) -> Result<Arc<EdgeComputeTarget>> {
    ctx.stores
        .edge_compute_targets
        .get(&ObjectRef::new(name).within(ns))
        .ok_or_else(|| Error::Blocked {
            reason: "ComputeTargetNotFound",
            message: format!("EdgeComputeTarget {ns}/{name} not found"),
        })
}

/// Every version of `name` (all pages).
pub async fn versions(ml: &dyn MlApi, name: &str) -> Result<Vec<(String, ModelVersion)>> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = ml
            .list_model_versions_page(name, next.as_deref())
            .await
            .map_err(|e| Error::azure(format!("listing versions of model {name}"), e))?;
        out.extend(
            page.value
                .into_iter()
                .filter_map(|r| r.name.clone().map(|n| (n, r.properties))),
        );
        match page.next_link {
            Some(n) => next = Some(n),
            None => return Ok(out),
        }
    }
}

/// Registry credentials from a Secret: a service principal (`tenantId`, `clientId`,
/// `clientSecret`, exchanged with Azure AD at `arm_endpoint`'s authority) or
/// `username`/`password`.
pub fn registry_credentials(secret: &Secret, arm_endpoint: &str) -> Result<RegistryCredentials> {
    let has = |k: &str| secret.data.as_ref().is_some_and(|d| d.contains_key(k));
    if has("clientSecret") {
        return Ok(RegistryCredentials::AzureAd {
            arm_endpoint: arm_endpoint.to_string(),
            principal: Credentials::from_secret(secret)?,
        });
    }
    if has("username") || has("password") {
        return Ok(RegistryCredentials::Basic {
            username: secret_value(secret, "username")?,
            password: secret_value(secret, "password")?,
        });
    }
    Err(Error::SecretInvalid {
        namespace: secret.namespace().unwrap_or_default(),
        name: secret.name_any(),
        reason: "needs tenantId/clientId/clientSecret or username/password".into(),
    })
}

/// `azureml://datastores/{datastore}/paths/{path}` → (datastore, path).
pub fn datastore_path(uri: &str) -> Result<(&str, &str)> {
    uri.strip_prefix("azureml://datastores/")
        .and_then(|r| r.split_once("/paths/"))
        .filter(|(ds, path)| !ds.is_empty() && !path.split('/').any(|s| s == ".."))
        .ok_or_else(|| Error::Blocked {
            reason: "UnsupportedOutputUri",
            message: format!(
                "model URI {uri:?} is not azureml://datastores/<datastore>/paths/<path>"
            ),
        })
}

/// The blob container of the workspace's default datastore, which must be `datastore`.
pub async fn datastore(
    ctx: &Context,
    ml: &dyn MlApi,
    datastore: &str,
) -> Result<(Arc<dyn BlobApi>, String)> {
    let ds = ml
        .default_datastore()
        .await
        .map_err(|e| Error::azure("reading the default datastore", e))?
        .ok_or_else(|| Error::InvalidSpec("the workspace has no default datastore".into()))?;
    if ds.name.as_deref() != Some(datastore) {
        return Err(Error::InvalidSpec(format!(
            "the model is on datastore {datastore:?}; only the default datastore ({:?}) is read",
            ds.name
        )));
    }
    let p = &ds.properties;
    let (Some(account), Some(container)) = (&p.account_name, &p.container_name) else {
        return Err(Error::InvalidSpec(format!(
            "datastore {datastore} is not a blob datastore"
        )));
    };
    let key = match ml
        .datastore_secrets(datastore)
        .await
        .map_err(|e| Error::azure(format!("reading the secrets of datastore {datastore}"), e))?
    {
        DatastoreSecrets::AccountKey { key: Some(k) } => AccountKey::from_base64(k.secret())
            .map_err(|e| Error::azure("datastore account key", e))?,
        _ => {
            return Err(Error::InvalidSpec(format!(
                "datastore {datastore} has no account key"
            )));
        }
    };
    let endpoint = blob_endpoint(
        p.protocol.as_deref().unwrap_or("https"),
        account,
        p.endpoint.as_deref().unwrap_or("core.windows.net"),
    );
    Ok((ctx.factories.blob.blob(&endpoint, key)?, container.clone()))
}

/// A datastore's blob endpoint: `{protocol}://{account}.blob.{suffix}`, or path-style
/// `{protocol}://{host}/{account}` when the suffix is a loopback host (a local emulator, as the
/// Azure SDKs treat development storage).
pub fn blob_endpoint(protocol: &str, account: &str, suffix: &str) -> String {
    let host = suffix.rsplit_once(':').map_or(suffix, |(h, _)| h);
    if host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        format!("{protocol}://{suffix}/{account}")
    } else {
        format!("{protocol}://{account}.blob.{suffix}")
    }
}

/// The model files under `prefix`: one listing (names, sizes, ETags), each file read from the
/// datastore whenever a pass needs its bytes (the digest pass, the push, a resumed upload),
/// pinned to the listed ETag. Nothing is copied to disk or kept in memory.
pub async fn model_files(
    blob: Arc<dyn BlobApi>,
    container: &str,
    prefix: &str,
) -> Result<Vec<ModelFile>> {
    let prefix = format!("{}/", prefix.trim_end_matches('/'));
    let items: Vec<_> = blob
        .list(container, &prefix)
        .try_collect()
        .await
        .map_err(|e| Error::azure(format!("listing {container}/{prefix}"), e))?;
    if items.is_empty() {
        return Err(Error::Blocked {
            reason: "OutputNotFound",
            message: format!("no model files under {container}/{prefix}"),
        });
    }
    items
        .into_iter()
        .map(|item| {
            Ok(ModelFile {
                path: model_path(&prefix, &item.name)?.to_string(),
                source: Arc::new(DatastoreBlob {
                    blob: blob.clone(),
                    container: container.to_string(),
                    item,
                }),
            })
        })
        .collect()
}

/// The path inside the model of output blob `name` listed under `prefix` (ending in `/`).
/// Blob names come from the job: one that could land outside the model directory is refused.
pub fn model_path<'a>(prefix: &str, name: &'a str) -> Result<&'a str> {
    let rel = name.strip_prefix(prefix).unwrap_or(name);
    if rel.is_empty()
        || rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(Error::InvalidSpec(format!(
            "output blob {name:?} has an unusable name"
        )));
    }
    Ok(rel)
}

/// One listed output blob as the registry's [`RangeSource`].
struct DatastoreBlob {
    blob: Arc<dyn BlobApi>,
    container: String,
    item: BlobItem,
}

impl std::fmt::Debug for DatastoreBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl RangeSource for DatastoreBlob {
    fn size(&self) -> u64 {
        self.item.size
    }

    fn read_from(&self, offset: u64) -> ByteStream {
        let (blob, container, item) =
            (self.blob.clone(), self.container.clone(), self.item.clone());
        let io = |e: edgetrain_azure::Error| std::io::Error::other(chain(&e));
        let open = async move {
            blob.read_listed(&container, &item, offset)
                .await
                .map(|body| body.map_err(io))
                .map_err(io)
        };
        Box::pin(futures::stream::once(open).try_flatten())
    }

    fn describe(&self) -> String {
        format!("datastore blob {}/{}", self.container, self.item.name)
    }
}
