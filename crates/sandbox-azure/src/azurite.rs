//! Starts and supervises Azurite (blob) with HTTPS from a generated sandbox CA.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
};

use crate::{
    error::{Error, Result},
    secret::Secret,
};

/// The sandbox CA and the Azurite server certificate, as PEM files in the state dir.
#[derive(Debug, Clone)]
pub struct Certificates {
    pub ca_pem_path: PathBuf,
    pub ca_pem: Vec<u8>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Generate a CA and a server certificate for `localhost`, `*.blob.localhost`, `127.0.0.1`.
pub fn generate_certificates(dir: &Path) -> Result<Certificates> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile {
        path: dir.to_owned(),
        source,
    })?;
    let ca_key = KeyPair::generate().map_err(Error::Certificate)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(Error::Certificate)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "edgetrain sandbox CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(Error::Certificate)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(Error::Certificate)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "*.blob.localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ])
    .map_err(Error::Certificate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .map_err(Error::Certificate)?;

    let write = |name: &str, data: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(|source| Error::WriteFile {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    let ca_pem = ca_cert.pem();
    Ok(Certificates {
        ca_pem_path: write("sandbox-ca.pem", &ca_pem)?,
        ca_pem: ca_pem.into_bytes(),
        cert_path: write("azurite-cert.pem", &server_cert.pem())?,
        key_path: write("azurite-key.pem", &server_key.serialize_pem())?,
    })
}

/// A random base64 account key (64 bytes, like Azure's).
pub fn generate_account_key() -> Secret {
    let mut bytes = Vec::with_capacity(64);
    for _ in 0..4 {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    Secret::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Locate the Azurite blob executable: `EDGETRAIN_AZURITE_BLOB`, else `azurite-blob` on PATH.
pub fn locate() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("EDGETRAIN_AZURITE_BLOB") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::AzuriteNotFound)
        };
    }
    let path_var = std::env::var_os("PATH").ok_or(Error::AzuriteNotFound)?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join("azurite-blob"))
        .find(|p| p.is_file())
        .ok_or(Error::AzuriteNotFound)
}

/// A running, supervised Azurite.
#[derive(Debug)]
pub struct Azurite {
    pub port: u16,
    pub certs: Certificates,
    pub accounts: Vec<(String, Secret)>,
    stop: watch::Sender<bool>,
    stopped: Arc<AtomicBool>,
}

struct Launch {
    program: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    certs: Certificates,
    accounts_env: String,
}

impl Launch {
    fn spawn(&self, port: u16) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|source| Error::WriteFile {
                path: self.log_path.clone(),
                source,
            })?;
        let mut cmd = Command::new(&self.program);
        cmd.arg("--blobHost")
            .arg("127.0.0.1")
            .arg("--blobPort")
            .arg(port.to_string())
            .arg("--location")
            .arg(&self.data_dir)
            .arg("--cert")
            .arg(&self.certs.cert_path)
            .arg("--key")
            .arg(&self.certs.key_path)
            .arg("--disableTelemetry")
            // A real storage account accepts newer x-ms-version values than this Azurite
            // knows (current SDKs send them).
            .arg("--skipApiVersionCheck")
            .env("AZURITE_ACCOUNTS", &self.accounts_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        cmd.spawn().map_err(|source| Error::AzuriteSpawn {
            program: self.program.clone(),
            source,
        })
    }
}

impl Azurite {
    /// Start Azurite with the given accounts and wait until it answers.
    pub async fn start(state_dir: &Path, accounts: Vec<(String, Secret)>) -> Result<Self> {
        let program = locate()?;
        let certs = generate_certificates(&state_dir.join("certs"))?;
        let data_dir = state_dir.join("azurite");
        std::fs::create_dir_all(&data_dir).map_err(|source| Error::WriteFile {
            path: data_dir.clone(),
            source,
        })?;
        let accounts_env = accounts
            .iter()
            .map(|(name, key)| format!("{name}:{}", key.expose()))
            .collect::<Vec<_>>()
            .join(";");
        let launch = Launch {
            program,
            log_path: state_dir.join("azurite.log"),
            data_dir,
            certs: certs.clone(),
            accounts_env,
        };
        let mut child = launch.spawn(0)?;
        let port = read_port(&mut child).await?;
        let (stop, stop_rx) = watch::channel(false);
        let stopped = Arc::new(AtomicBool::new(false));
        tokio::spawn(supervise(launch, child, port, stop_rx, stopped.clone()));
        let azurite = Self {
            port,
            certs,
            accounts,
            stop,
            stopped,
        };
        azurite.wait_ready().await?;
        Ok(azurite)
    }

    /// `https://{account}.blob.localhost:PORT` (production style; needs the name to resolve).
    pub fn host_style_url(&self, account: &str) -> String {
        format!("https://{account}.blob.localhost:{}", self.port)
    }

    /// `https://127.0.0.1:PORT/{account}` (path style; works without DNS).
    pub fn path_style_url(&self, account: &str) -> String {
        format!("https://127.0.0.1:{}/{account}", self.port)
    }

    pub fn key(&self, account: &str) -> Option<&Secret> {
        self.accounts
            .iter()
            .find(|(n, _)| n == account)
            .map(|(_, k)| k)
    }

    async fn wait_ready(&self) -> Result<()> {
        let client = crate::blob::http_client(Some(&self.certs.ca_pem))?;
        let url = format!("https://127.0.0.1:{}/devstoreaccount1?comp=list", self.port);
        let mut last = String::new();
        for _ in 0..300 {
            match client.get(&url).send().await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::AzuriteNotReady(last))
    }

    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Azurite prints "successfully listens on https://127.0.0.1:PORT" once bound.
async fn read_port(child: &mut Child) -> Result<u16> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::AzuriteNotReady("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let wait = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(port) = parse_listen_line(&line) {
                // Keep draining stdout so Azurite never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Ok(port);
            }
        }
        Err(Error::AzuriteNotReady(
            "Azurite exited before listening (see azurite.log in the state dir)".into(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .map_err(|_| Error::AzuriteNotReady("no listen line within 60 s".into()))?
}

pub fn parse_listen_line(line: &str) -> Option<u16> {
    let rest = line.split("listens on ").nth(1)?;
    rest.trim()
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

async fn supervise(
    launch: Launch,
    mut child: Child,
    port: u16,
    mut stop: watch::Receiver<bool>,
    stopped: Arc<AtomicBool>,
) {
    let mut restarts = 0u32;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = child.kill().await;
                return;
            }
            status = child.wait() => {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                restarts += 1;
                tracing::warn!(?status, restarts, "Azurite exited; restarting on the same port");
                if restarts > 5 {
                    tracing::error!("Azurite keeps exiting; giving up");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                match launch.spawn(port) {
                    Ok(mut new_child) => {
                        if let Some(stdout) = new_child.stdout.take() {
                            tokio::spawn(async move {
                                let mut lines = BufReader::new(stdout).lines();
                                while let Ok(Some(_)) = lines.next_line().await {}
                            });
                        }
                        child = new_child;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot restart Azurite");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_line() {
        assert_eq!(
            parse_listen_line(
                "Azurite Blob service successfully listens on https://127.0.0.1:34769"
            ),
            Some(34769)
        );
        assert_eq!(
            parse_listen_line("Azurite Blob service is starting on 127.0.0.1:0"),
            None
        );
    }

    #[test]
    fn writes_ca_and_server_cert() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_certificates(dir.path()).unwrap();
        let ca = std::fs::read_to_string(&certs.ca_pem_path).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            std::fs::read_to_string(&certs.key_path)
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
}
