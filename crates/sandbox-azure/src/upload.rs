//! `edgetrain-sandbox upload`: put local files into a storage account of a running simulator,
//! as a user's data would already sit in Stack Hub storage. A real client of the blob API
//! (account SAS signed with the key), not a side door into the simulator.

use std::path::PathBuf;

use crate::{
    SandboxInfo,
    blob::{self, ContainerSas},
    error::{Error, Result},
    secret::Secret,
};

/// Environment variable `edgetrain-sandbox upload` takes the account key from (the name the
/// Azure CLI uses), so it never shows in a process list.
pub const ACCOUNT_KEY_ENV: &str = "AZURE_STORAGE_KEY";

/// `edgetrain-sandbox upload` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    /// State directory of the running simulator (it holds `sandbox.json`).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Storage account; default: the simulator's "Stack Hub" account.
    #[arg(long)]
    pub account: Option<String>,
    /// Container (created when missing).
    #[arg(long)]
    pub container: String,
    /// Blob name prefix, e.g. `churn/2026-11/`; each blob is named prefix + file name.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Files to upload.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Upload `args.files` with the account's `key`; returns `(blob name, bytes)` of each.
pub async fn upload(args: &UploadArgs, key: &Secret) -> Result<Vec<(String, usize)>> {
    let info = SandboxInfo::read(&args.state_dir)?;
    let storage = info.storage.ok_or_else(|| {
        Error::InvalidConfig("the simulator runs without Azurite (azurite = false)".into())
    })?;
    let account = args.account.as_ref().unwrap_or(&storage.stack_hub_account);
    let ca = std::fs::read(&storage.ca_pem_path).map_err(|source| Error::ReadFile {
        path: storage.ca_pem_path.clone(),
        source,
    })?;
    let http = blob::http_client(Some(&ca))?;
    let target = ContainerSas::for_account_key(
        &format!("{}/{account}", storage.path_style),
        account,
        &args.container,
        key,
    )?;
    target.create_container(&http).await?;
    let mut done = Vec::new();
    for file in &args.files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::InvalidConfig(format!("{} has no file name", file.display())))?;
        let data = std::fs::read(file).map_err(|source| Error::ReadFile {
            path: file.clone(),
            source,
        })?;
        let blob = format!("{}{name}", args.prefix);
        let len = data.len();
        target.put(&http, &blob, data).await?;
        done.push((blob, len));
    }
    Ok(done)
}
