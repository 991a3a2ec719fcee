//! The real controller binary as a child process, for tests that SIGKILL it.

use crate::common::World;

/// The real `edgetrain-controller` binary as a child process, SIGKILLed when dropped.
pub struct ControllerProcess {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl ControllerProcess {
    pub fn start(w: &World, dir: &std::path::Path, proxy: std::net::SocketAddr, n: usize) -> Self {
        let kubeconfig = dir.join("controller.kubeconfig");
        std::fs::write(&kubeconfig, w.kube.kubeconfig_as("controller")).unwrap();
        let log = dir.join(format!("controller-{n}.log"));
        let storage = w.sim.storage_endpoints().unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_edgetrain-controller"))
            .args(["--metrics-addr", "127.0.0.1:0", "--no-leader-election"])
            .env("KUBECONFIG", &kubeconfig)
            .env("SSL_CERT_FILE", &storage.ca_pem_path)
            // Azure ML hands out `{account}.blob.localhost` URLs: the process reaches them
            // through the test's tunnel (its "DNS"); everything on 127.0.0.1 goes direct.
            // ALL_PROXY, not HTTPS_PROXY: the Kubernetes client takes the latter as its own.
            .env("ALL_PROXY", format!("http://{proxy}"))
            .env("NO_PROXY", "127.0.0.1")
            .env("RUST_LOG", "info,edgetrain_controller=debug")
            // The log goes to stdout.
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the edgetrain-controller binary runs");
        Self { child, log }
    }

    /// SIGKILL and reap: the process gets no chance to finish anything it started.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP CONNECT tunnel that takes `localhost` and `*.blob.localhost` names to loopback and refuses any
/// other name (test configuration standing in for DNS).
pub async fn blob_tunnel() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if inbound.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let port = head
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|authority| authority.rsplit_once(':'))
                    .filter(|(host, _)| *host == "localhost" || host.ends_with(".blob.localhost"))
                    .and_then(|(_, port)| port.parse::<u16>().ok());
                let Some(port) = port else {
                    let _ = inbound.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                };
                let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                else {
                    let _ = inbound.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if inbound
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}
