//! Start a real Azurite blob server for a test, on a free loopback port.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

/// A running Azurite; killed on drop.
pub struct Azurite {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

/// `EDGETRAIN_AZURITE_BLOB` (a path), else `azurite-blob` on PATH; panics with the install
/// command otherwise (tests never skip silently).
pub fn azurite_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGETRAIN_AZURITE_BLOB") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "EDGETRAIN_AZURITE_BLOB={} does not exist",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("azurite-blob"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Azurite not found: set EDGETRAIN_AZURITE_BLOB or install it (npm install -g azurite)"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Azurite {
    /// `accounts`: `AZURITE_ACCOUNTS` value (`name:base64key`). `tls`: (cert PEM, key PEM).
    pub async fn start(accounts: &str, tls: Option<(&Path, &Path)>) -> Self {
        let bin = azurite_binary();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut cmd = tokio::process::Command::new(&bin);
            cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(dir.path())
                .args([
                    "--silent",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                ])
                .env("AZURITE_ACCOUNTS", accounts)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            if let Some((cert, key)) = tls {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            for _ in 0..300 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Self {
                        _child: child,
                        _dir: dir,
                        port,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port race or bad args: try another port
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("Azurite did not start listening");
    }
}
