//! `fingerprint`, `fingerprint-rss`, `fingerprint-bound`: N small blobs in Azurite, listed and
//! fingerprinted by a separate process running the controller's code
//! (`edgetrain_azure::blob::{BlobClient, fingerprint}`), by Microsoft's Python SDK listing the
//! same container with the same fields and hashing the sorted listing (both digests must
//! agree), and — the floor — by curl fetching the same list pages raw.
//!
//! Generating 100,000 blobs takes minutes, so the Azurite folder stays under
//! `target/bench/fingerprint-N/` between runs (with a fixed account key) and is filled once.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use bytes::Bytes;
use edgetrain_azure::{
    blob::{AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint, fingerprint},
    transport::HttpConfig,
};
use edgetrain_sandbox_azure::{AzureSim, LroConfig, Secret, sign_account_sas};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::{
    Error, Result,
    figure::Figure,
    measure::measured,
    world::{repo_root, sim_config},
};

const CONTAINER: &str = "fingerprint";
/// The account key of the bench's own Azurite (loopback only, holds generated data): fixed so
/// the folder kept between runs stays readable.
const BENCH_KEY: &str = "ZWRnZXRyYWluLWJlbmNoLWF6dXJpdGUtYWNjb3VudC1rZXktbG9vcGJhY2stb25seQ==";
const KEY_ENV: &str = "BENCH_ACCOUNT_KEY";
const SDK_REQUIREMENTS: &str = "crates/sandbox-azure/tests/python/requirements.txt";
/// Uploads in flight while generating.
const UPLOADS: usize = 32;

struct Data {
    sim: AzureSim,
    /// `https://127.0.0.1:PORT/ACCOUNT`.
    account_url: String,
    account: String,
    ca: PathBuf,
}

fn http(ca: &Path) -> Result<reqwest::Client> {
    Ok(HttpConfig {
        extra_ca_bundle: Some(ca.to_owned()),
        ..Default::default()
    }
    .build()?)
}

fn client(account_url: &str, key: &str, ca: &Path) -> Result<BlobClient> {
    Ok(BlobClient::new(
        http(ca)?,
        BlobEndpoint::parse(account_url)?,
        BlobAuth::SharedKey(AccountKey::from_base64(key)?),
    ))
}

/// The simulator over the kept Azurite folder, filled with `blobs` blobs when it is not yet.
async fn data(blobs: usize) -> Result<Data> {
    let dir = repo_root().join(format!("target/bench/fingerprint-{blobs}"));
    let mut cfg = sim_config(&dir, LroConfig::default());
    cfg.azurite = true;
    cfg.storage.stack_hub_key = Some(Secret::new(BENCH_KEY));
    let sim = AzureSim::start(cfg).await?;
    let storage = sim
        .storage_endpoints()
        .ok_or_else(|| Error::Sandbox("no Azurite".into()))?;
    let account = storage.stack_hub_account.clone();
    let data = Data {
        account_url: storage.path_style(&account),
        account,
        ca: storage.ca_pem_path.clone(),
        sim,
    };
    let done = dir.join("generated");
    if !done.exists() {
        eprintln!(
            "fingerprint: generating {blobs} blobs in {} (once)",
            dir.display()
        );
        // The first Put Blob creates the container.
        data.sim
            .seed_blob(&data.account, CONTAINER, &blob_name(0), content(0))
            .await?;
        let c = client(&data.account_url, BENCH_KEY, &data.ca)?;
        futures::stream::iter(1..blobs)
            .map(|i| {
                let c = c.clone();
                async move {
                    c.put(CONTAINER, &blob_name(i), Bytes::from(content(i)), None)
                        .await
                }
            })
            .buffer_unordered(UPLOADS)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        std::fs::write(&done, blobs.to_string()).map_err(|source| Error::Io {
            path: done.clone(),
            source,
        })?;
    }
    Ok(data)
}

fn blob_name(i: usize) -> String {
    format!("telemetry/part-{i:07}.csv")
}

fn content(i: usize) -> Vec<u8> {
    format!("ts,value\n{i},{}\n", i % 97).into_bytes()
}

/// The child measured as "ours": list + fingerprint, printing `{"sha256", "blobs"}`.
pub async fn list_child(account_url: &str, container: &str, ca: &Path) -> Result<()> {
    let key = std::env::var(KEY_ENV).map_err(|_| Error::Child {
        what: "fingerprint-list".into(),
        detail: format!("the account key goes in {KEY_ENV}"),
    })?;
    let c = client(account_url, &key, ca)?;
    let fp = fingerprint(c.list(container, "")).await?;
    println!(
        "{}",
        serde_json::json!({"sha256": fp.sha256, "blobs": fp.blob_count})
    );
    Ok(())
}

/// The pinned SDK version; the installed one must match it.
fn sdk_pin() -> Result<String> {
    let path = repo_root().join(SDK_REQUIREMENTS);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("azure-storage-blob=="))
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_owned())
        .ok_or_else(|| Error::Child {
            what: "python SDK".into(),
            detail: format!("no azure-storage-blob pin in {}", path.display()),
        })
}

fn check_sdk(pin: &str) -> Result<()> {
    let out = Command::new("python3")
        .args([
            "-c",
            "from importlib.metadata import version; print(version('azure-storage-blob'))",
        ])
        .output()
        .map_err(|e| Error::Child {
            what: "python3".into(),
            detail: e.to_string(),
        })?;
    let installed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if installed != pin {
        return Err(Error::Child {
            what: "python SDK".into(),
            detail: format!(
                "azure-storage-blob {installed:?} installed, {pin} pinned: run `make tools` (PATH must start with tools/venv/bin)"
            ),
        });
    }
    Ok(())
}

fn digest(stdout: &str, who: &str) -> Result<(String, u64)> {
    let v: Value = serde_json::from_str(stdout.trim()).map_err(|e| Error::Child {
        what: who.into(),
        detail: format!("output {stdout:?}: {e}"),
    })?;
    match (v["sha256"].as_str(), v["blobs"].as_u64()) {
        (Some(d), Some(n)) => Ok((d.to_owned(), n)),
        _ => Err(Error::Child {
            what: who.into(),
            detail: format!("output {stdout:?} lacks sha256/blobs"),
        }),
    }
}

/// The floor: every list page fetched by curl, only the next marker picked out of each.
const RAW_PAGES: &str = r#"m=""
while :; do
  curl -sS --fail -G --cacert "$CA" "$URL?restype=container&comp=list&$SAS" --data-urlencode "marker=$m" -o "$PAGE"
  m=$(grep -o '<NextMarker>[^<]*' "$PAGE" | cut -c13-) || true
  [ -n "$m" ] || break
done"#;

pub async fn figures(blobs: usize) -> Result<Vec<Figure>> {
    let pin = sdk_pin()?;
    check_sdk(&pin)?;
    let d = data(blobs).await?;
    let me = std::env::current_exe().map_err(|source| Error::Io {
        path: "current executable".into(),
        source,
    })?;
    let mut ours_cmd = Command::new(me);
    ours_cmd
        .arg("fingerprint-list")
        .arg(&d.account_url)
        .arg(CONTAINER)
        .arg(&d.ca)
        .env(KEY_ENV, BENCH_KEY);
    let ours = measured(&ours_cmd)?;
    let (our_digest, listed) = digest(&ours.stdout, "ours")?;

    let mut sdk_cmd = Command::new("python3");
    sdk_cmd
        .arg(repo_root().join("crates/bench/fingerprint_sdk.py"))
        .arg(&d.account_url)
        .arg(CONTAINER)
        .arg(&d.ca)
        .env(KEY_ENV, BENCH_KEY);
    let sdk = measured(&sdk_cmd)?;
    let (sdk_digest, sdk_listed) = digest(&sdk.stdout, "azure-storage-blob")?;
    if (our_digest.as_str(), listed) != (sdk_digest.as_str(), sdk_listed) {
        return Err(Error::Child {
            what: "fingerprint".into(),
            detail: format!(
                "ours {our_digest} over {listed} blobs, the SDK's {sdk_digest} over {sdk_listed}: the same listing must hash the same"
            ),
        });
    }

    let sas = sign_account_sas(
        &d.account,
        "rl",
        "2099-01-01T00:00:00Z",
        &Secret::new(BENCH_KEY),
    )?;
    let page = tempfile::NamedTempFile::new().map_err(|source| Error::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut raw_cmd = Command::new("sh");
    raw_cmd
        .args(["-eu", "-c", RAW_PAGES])
        .env("URL", format!("{}/{CONTAINER}", d.account_url))
        .env("CA", &d.ca)
        // In the environment, not on a command line other users can read.
        .env("SAS", sas.expose())
        .env("PAGE", page.path());
    let raw = measured(&raw_cmd)?;
    d.sim.shutdown().await;

    let input = format!(
        "{listed} blobs of ~20 bytes in one Azurite container (loopback, TLS), listed in 5,000-blob pages; \
         ours = a separate process (edgetrain_azure BlobClient list + fingerprint), peer = azure-storage-blob {pin} \
         (list, sort, same record hash; digests checked equal)"
    );
    eprintln!(
        "fingerprint: ours {:.2} s / {:.1} MiB, SDK {:.2} s / {:.1} MiB, raw pages {:.2} s",
        ours.secs, ours.rss_mib, sdk.secs, sdk.rss_mib, raw.secs
    );
    let sdk_name = format!("Python azure-storage-blob {pin}");
    Ok(vec![
        Figure::new("fingerprint", ours.secs, sdk.secs, &sdk_name, "s", &input),
        Figure::new(
            "fingerprint-rss",
            ours.rss_mib,
            sdk.rss_mib,
            &sdk_name,
            "MiB",
            &input,
        ),
        Figure::new(
            "fingerprint-bound",
            ours.secs,
            raw.secs,
            "curl fetching the same list pages raw (no parsing)",
            "s",
            &input,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_output_needs_both_fields() {
        assert_eq!(
            digest("{\"sha256\":\"ab\",\"blobs\":3}\n", "x").unwrap(),
            ("ab".to_string(), 3)
        );
        assert!(digest("{\"sha256\":\"ab\"}", "x").is_err());
        assert!(digest("oops", "x").is_err());
    }

    #[test]
    fn the_sdk_pin_is_read_from_the_contract_suite_requirements() {
        let pin = sdk_pin().unwrap();
        assert!(pin.starts_with("12."), "{pin}");
    }
}
