//! The real CNCF distribution registry (Debian `docker-registry`) as the sandbox's ACR:
//! HTTPS with the sandbox CA, `auth: token` pointing at this simulator's ACR token service,
//! and base images pre-loaded straight into its filesystem storage (built here from files,
//! nothing downloaded).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::{
    acr::RegistryUser,
    error::{Error, Result},
};

/// `[registry]` in the simulator config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Start the registry (needs `docker-registry` on PATH or `EDGETRAIN_DOCKER_REGISTRY`).
    pub enabled: bool,
    pub access_token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
    /// AAD client ids with pull only (AcrPull).
    pub pull_only_clients: Vec<String>,
    pub users: Vec<RegistryUser>,
    /// Images loaded before the registry starts; empty = the built-in tiny base.
    pub base_images: Vec<BaseImageSpec>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            // ACR access tokens last about 75 minutes, refresh tokens about 3 hours.
            access_token_lifetime_secs: 4500,
            refresh_token_lifetime_secs: 10800,
            pull_only_clients: Vec::new(),
            users: Vec::new(),
            base_images: Vec::new(),
        }
    }
}

/// An image made from the files of `dir` (one uncompressed layer), tagged `repository:tag`.
/// The hook for richer bases (e.g. a tiny ONNX scorer): put its files in a directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseImageSpec {
    pub repository: String,
    pub tag: String,
    pub dir: PathBuf,
    /// Env of the image config (`KEY=value`).
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
}

/// The repository and tag of the built-in base.
pub const TINY_BASE_REPOSITORY: &str = "base/tiny";
pub const TINY_BASE_TAG: &str = "1";

/// The files of the built-in base `base/tiny:1` (path in the image, content).
const TINY_BASE_FILES: [(&str, &str); 3] = [
    (
        "etc/os-release",
        "NAME=\"edgetrain tiny base\"\nID=edgetrain-tiny\nVERSION_ID=1\n",
    ),
    // The entrypoint: a small ONNX scorer (stdlib HTTP server + onnx's reference evaluator).
    // The base ships no Python interpreter; see the README's deviations.
    ("bin/serve", include_str!("serve.py")),
    (
        "usr/share/edgetrain/base.txt",
        "edgetrain sandbox base image\n",
    ),
];

/// Files of the built-in base image.
pub fn write_tiny_base_files(dir: &Path) -> Result<()> {
    for (path, text) in TINY_BASE_FILES {
        let p = dir.join(path);
        let io = |source| Error::WriteFile {
            path: p.clone(),
            source,
        };
        std::fs::create_dir_all(p.parent().unwrap_or(dir)).map_err(io)?;
        std::fs::write(&p, text).map_err(io)?;
    }
    Ok(())
}

/// The built-in base's files that are missing from `rootfs` (an unpacked image built on it)
/// or differ there: empty when the base came through intact.
pub fn tiny_base_differences(rootfs: &Path) -> Vec<String> {
    TINY_BASE_FILES
        .iter()
        .filter(|(path, text)| {
            std::fs::read(rootfs.join(path)).ok().as_deref() != Some(text.as_bytes())
        })
        .map(|(path, _)| (*path).to_string())
        .collect()
}

/// Locate the registry binary: `EDGETRAIN_DOCKER_REGISTRY`, else `docker-registry` on PATH,
/// else Debian's `/usr/bin/docker-registry`.
pub fn locate() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("EDGETRAIN_DOCKER_REGISTRY") {
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("docker-registry"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/bin/docker-registry")).filter(|p| p.is_file()))
        .ok_or_else(|| {
            Error::RegistryNotReady(
                "docker-registry not found: install the Debian package docker-registry (scripts/install-tools.sh)".into(),
            )
        })
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    let io = |source| Error::WriteFile {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, data).map_err(io)
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// Write an image into distribution's filesystem storage layout
/// (`docker/registry/v2/{blobs,repositories}`), as a push would leave it.
pub async fn load_image(storage_root: &Path, spec: &BaseImageSpec, created: i64) -> Result<String> {
    use edgetrain_registry::{
        Blob, ModelFile, TarFile, files_in_dir, media_types, oci_manifest, tar_layer,
    };
    use futures::TryStreamExt;
    let reg = |e: edgetrain_registry::Error| {
        Error::RegistryNotReady(format!("base image {}: {e}", spec.repository))
    };
    let files: Vec<ModelFile> = files_in_dir(&spec.dir).map_err(reg)?;
    let tar_files: Vec<TarFile> = files
        .iter()
        .map(|f| TarFile {
            path: f.path.clone(),
            source: f.source.clone(),
        })
        .collect();
    let layer = tar_layer(&tar_files, created as u64).map_err(reg)?;
    let layer_digest = layer.digest().await.map_err(reg)?;
    let v2 = storage_root.join("docker/registry/v2");
    let blob_path = |d: &str| {
        v2.join("blobs/sha256")
            .join(&hex(d)[..2])
            .join(hex(d))
            .join("data")
    };
    // Stream the layer to its blob file (no whole-layer buffer).
    {
        let path = blob_path(&layer_digest);
        write(&path, b"")?;
        let mut f = tokio::fs::File::create(&path)
            .await
            .map_err(|source| Error::WriteFile {
                path: path.clone(),
                source,
            })?;
        let mut s = layer.stream_from(0);
        while let Some(chunk) = s.try_next().await.map_err(|source| Error::ReadFile {
            path: spec.dir.clone(),
            source,
        })? {
            tokio::io::AsyncWriteExt::write_all(&mut f, &chunk)
                .await
                .map_err(|source| Error::WriteFile {
                    path: path.clone(),
                    source,
                })?;
        }
    }
    let created_s = chrono::DateTime::from_timestamp(created, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": created_s,
        "config": {"Env": spec.env, "Cmd": spec.cmd},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created_s, "created_by": format!("edgetrain sandbox: files of {}", spec.dir.display())}],
    });
    let config_bytes = edgetrain_registry::canonical_json(&config).map_err(reg)?;
    let config = Blob::json(media_types::OCI_CONFIG, config_bytes.clone()).map_err(reg)?;
    let layer_desc = edgetrain_registry::descriptor(
        media_types::OCI_LAYER_TAR,
        &layer_digest,
        layer.size(),
        &Default::default(),
    )
    .map_err(reg)?;
    let manifest = oci_manifest(
        None,
        &config.descriptor,
        vec![layer_desc],
        None,
        &Default::default(),
    )
    .map_err(reg)?;
    write(&blob_path(&config.digest()), &config_bytes)?;
    write(&blob_path(&manifest.digest), &manifest.bytes)?;
    let repo = v2.join("repositories").join(&spec.repository);
    for d in [&layer_digest, &config.digest()] {
        write(
            &repo.join("_layers/sha256").join(hex(d)).join("link"),
            d.as_bytes(),
        )?;
    }
    let m = &manifest.digest;
    write(
        &repo
            .join("_manifests/revisions/sha256")
            .join(hex(m))
            .join("link"),
        m.as_bytes(),
    )?;
    let tag = repo.join("_manifests/tags").join(&spec.tag);
    write(&tag.join("current/link"), m.as_bytes())?;
    write(
        &tag.join("index/sha256").join(hex(m)).join("link"),
        m.as_bytes(),
    )?;
    Ok(manifest.digest)
}

/// Where the running registry is, for tests and the demo.
#[derive(Debug, Clone)]
pub struct RegistryEndpoints {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`: the login server / token `service`.
    pub host: String,
    /// Directory with `ca.crt` (the sandbox CA) for `skopeo --cert-dir`.
    pub cert_dir: PathBuf,
    pub ca_pem_path: PathBuf,
    /// The registry's log (access log included: one line per request).
    pub log_path: PathBuf,
    /// Its filesystem storage (`rootdirectory`), under the state directory: it outlives the
    /// registry, so another `docker-registry` can serve what was pushed.
    pub storage_dir: PathBuf,
    /// `(repository, tag, manifest digest)` of the pre-loaded images.
    pub base_images: Vec<(String, String, String)>,
}

/// A running registry process.
#[derive(Debug)]
pub struct RegistryProcess {
    pub endpoints: RegistryEndpoints,
    child: std::sync::Mutex<Option<Child>>,
}

impl RegistryProcess {
    pub fn shutdown(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.start_kill();
        }
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Bind {
        addr: "127.0.0.1:0".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| Error::Bind {
            addr: "127.0.0.1:0".into(),
            source,
        })
}

/// Everything `start` needs from the simulator.
pub struct Launch<'a> {
    pub state_dir: &'a Path,
    pub certs: &'a crate::azurite::Certificates,
    /// `http://127.0.0.1:SIM` (the token realm lives there).
    pub sim_base_url: &'a str,
    pub token_cert_pem: &'a str,
    pub config: &'a RegistryConfig,
    /// Base-image timestamp (fixed: the same base digests every run).
    pub created: i64,
}

/// Pick a port (the token `service` must be known before the token service starts).
pub fn reserve_port() -> Result<u16> {
    free_port()
}

/// Write config and base images, start `docker-registry`, wait until `/v2/` answers 401.
pub async fn start(launch: Launch<'_>, port: u16) -> Result<RegistryProcess> {
    let dir = launch.state_dir.join("registry");
    let storage = dir.join("storage");
    let host = format!("127.0.0.1:{port}");
    let mut specs = launch.config.base_images.clone();
    if specs.is_empty() {
        let files = dir.join("base-tiny");
        write_tiny_base_files(&files)?;
        specs.push(BaseImageSpec {
            repository: TINY_BASE_REPOSITORY.into(),
            tag: TINY_BASE_TAG.into(),
            dir: files,
            env: vec![
                "PATH=/usr/local/bin:/usr/bin:/bin".into(),
                "PORT=5001".into(),
            ],
            cmd: vec!["/bin/serve".into()],
        });
    }
    let mut base_images = Vec::new();
    for spec in &specs {
        let digest = load_image(&storage, spec, launch.created).await?;
        base_images.push((spec.repository.clone(), spec.tag.clone(), digest));
    }
    let token_cert = dir.join("token-signer.pem");
    write(&token_cert, launch.token_cert_pem.as_bytes())?;
    let cert_dir = dir.join("certs.d");
    write(&cert_dir.join("ca.crt"), &launch.certs.ca_pem)?;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let config = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {host}\n  secret: {secret}\n  tls:\n    certificate: {cert}\n    key: {key}\n\
         auth:\n  token:\n    realm: {realm}/oauth2/token\n    service: {host}\n    issuer: {issuer}\n    rootcertbundle: {bundle}\n",
        storage = storage.display(),
        cert = launch.certs.cert_path.display(),
        key = launch.certs.key_path.display(),
        realm = launch.sim_base_url,
        issuer = crate::acr::ISSUER,
        bundle = token_cert.display(),
    );
    let config_path = dir.join("config.yml");
    write(&config_path, config.as_bytes())?;
    let log_path = dir.join("registry.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| Error::WriteFile {
            path: log_path.clone(),
            source,
        })?;
    let log2 = log.try_clone().map_err(|source| Error::WriteFile {
        path: log_path.clone(),
        source,
    })?;
    let program = locate()?;
    let child = Command::new(&program)
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::RegistryNotReady(format!("cannot start {}: {e}", program.display())))?;
    let process = RegistryProcess {
        endpoints: RegistryEndpoints {
            url: format!("https://{host}"),
            host,
            cert_dir,
            ca_pem_path: launch.certs.ca_pem_path.clone(),
            log_path,
            storage_dir: storage,
            base_images,
        },
        child: std::sync::Mutex::new(Some(child)),
    };
    wait_ready(&process, &launch.certs.ca_pem).await?;
    Ok(process)
}

async fn wait_ready(p: &RegistryProcess, ca_pem: &[u8]) -> Result<()> {
    let client = crate::blob::http_client(Some(ca_pem))?;
    let url = format!("{}/v2/", p.endpoints.url);
    let mut last = String::new();
    for _ in 0..300 {
        if let Some(c) = p.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(Error::RegistryNotReady(format!(
                "docker-registry exited ({status}); see {}",
                p.endpoints.log_path.display()
            )));
        }
        match client.get(&url).send().await {
            Ok(r) if r.status().as_u16() == 401 => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::RegistryNotReady(format!("{url}: {last}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn base_images_are_deterministic_and_laid_out_like_a_push() {
        let tmp = tempfile::tempdir().unwrap();
        let files = tmp.path().join("files");
        write_tiny_base_files(&files).unwrap();
        let spec = BaseImageSpec {
            repository: "base/tiny".into(),
            tag: "1".into(),
            dir: files,
            env: vec!["PATH=/bin".into()],
            cmd: vec!["/bin/serve".into()],
        };
        let a = load_image(&tmp.path().join("a"), &spec, 1_700_000_000)
            .await
            .unwrap();
        let b = load_image(&tmp.path().join("b"), &spec, 1_700_000_000)
            .await
            .unwrap();
        assert_eq!(a, b);
        let v2 = tmp.path().join("a/docker/registry/v2");
        let tag = v2.join("repositories/base/tiny/_manifests/tags/1/current/link");
        assert_eq!(std::fs::read_to_string(tag).unwrap(), a);
        let manifest = v2
            .join("blobs/sha256")
            .join(&hex(&a)[..2])
            .join(hex(&a))
            .join("data");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let link = v2
            .join("repositories/base/tiny/_layers/sha256")
            .join(hex(layer))
            .join("link");
        assert_eq!(std::fs::read_to_string(link).unwrap(), layer);
        let c = load_image(&tmp.path().join("c"), &spec, 1_700_000_001)
            .await
            .unwrap();
        assert_ne!(c, a);
    }
}
