//! The real controller binary as a child process, for tests that SIGKILL it.

use crate::common::World;

/// The real `edgetrain-controller` binary as a child process, SIGKILLed when dropped.
pub struct ControllerProcess {
    child: std::process::Child,
    log: std::path::PathBuf,
    tmp: std::path::PathBuf,
}

impl ControllerProcess {
    pub fn start(w: &World, dir: &std::path::Path, n: usize) -> Self {
        let proxy = w.sim.blob_proxy().expect("the simulator runs Azurite");
        let kubeconfig = dir.join("controller.kubeconfig");
        std::fs::write(&kubeconfig, w.kube.kubeconfig_as("controller")).unwrap();
        let log = dir.join(format!("controller-{n}.log"));
        let storage = w.sim.storage_endpoints().unwrap();
        let out = std::fs::File::create(&log).unwrap();
        // Its own temp dir, so a test can see what the process leaves on disk.
        let tmp = dir.join(format!("tmp-{n}"));
        std::fs::create_dir_all(&tmp).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_edgetrain-controller"))
            .args(["--metrics-addr", "127.0.0.1:0", "--no-leader-election"])
            .env("KUBECONFIG", &kubeconfig)
            .env("TMPDIR", &tmp)
            .env("SSL_CERT_FILE", &storage.ca_pem_path)
            // Azure ML hands out `{account}.blob.localhost` URLs: the process reaches them
            // through the simulator's proxy (their "DNS"); everything on 127.0.0.1 goes direct.
            // ALL_PROXY, not HTTPS_PROXY: the Kubernetes client takes the latter as its own.
            .env("ALL_PROXY", format!("http://{proxy}"))
            .env("NO_PROXY", "127.0.0.1")
            // Azure calls too: a stall shows which request it waited for.
            .env(
                "RUST_LOG",
                "info,edgetrain_controller=debug,edgetrain_azure=debug",
            )
            // The log goes to stdout.
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the edgetrain-controller binary runs");
        Self { child, log, tmp }
    }

    /// What the process has put in its temp dir (`TMPDIR`).
    pub fn temp_entries(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&self.tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// SIGKILL and reap: the process gets no chance to finish anything it started.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
